//! The settings every binary shares.

use std::time::Duration;

use crate::telemetry::LogFormat;

/// Shutdown and logging: flattened into each service's configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// On SIGTERM, how long in-flight work (requests, messages, client connections) gets
    /// to finish.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 20)]
    pub shutdown_timeout_seconds: u64,
    /// `text` or `json`.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

impl ServiceArgs {
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_seconds)
    }
}
