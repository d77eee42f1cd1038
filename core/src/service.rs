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

/// What the state remembers and for how long: flattened into the processor's and the
/// standalone mode's configuration, so each setting has one name.
#[derive(Debug, Clone, clap::Args)]
pub struct RetentionArgs {
    /// How long an alert UUID or idempotency key is remembered for dedupe.
    #[arg(long, env = "DEDUPE_TTL_SECONDS", default_value_t = 86_400)]
    pub dedupe_ttl_seconds: u64,
    /// Events kept in the log for replay (`since`, `Last-Event-ID`); approximate in
    /// Redis, where the stream is trimmed lazily.
    #[arg(long, env = "EVENT_LOG_MAX_LEN", default_value_t = 100_000)]
    pub event_log_max_len: u64,
    /// Entries kept per location for `GET /api/history`.
    #[arg(long, env = "HISTORY_LEN", default_value_t = 100)]
    pub history_len: u64,
}

impl RetentionArgs {
    pub fn dedupe_ttl(&self) -> Duration {
        Duration::from_secs(self.dedupe_ttl_seconds)
    }
}

/// A binary's settings as it would take them with no flags and no environment: the
/// tests' starting point. clap reads the environment while parsing, so without this a
/// `REDIS_URL` left in a shell would change every test.
pub fn defaults_without_env<C: clap::Parser>() -> C {
    let command = C::command().mut_args(|arg| arg.env(None));
    let name = command.get_name().to_owned();
    let matches = command
        .try_get_matches_from([name])
        .expect("every setting has a default");
    C::from_arg_matches(&matches).expect("the defaults parse")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `PATH` is set in every environment a test runs in.
    #[derive(Debug, clap::Parser)]
    struct Settings {
        #[arg(long, env = "PATH", default_value = "the default")]
        path: String,
    }

    #[test]
    fn the_defaults_ignore_the_environment() {
        let from_env = <Settings as clap::Parser>::parse_from(["settings"]);
        assert_ne!(from_env.path, "the default", "PATH is read when parsing");
        assert_eq!(defaults_without_env::<Settings>().path, "the default");
    }
}
