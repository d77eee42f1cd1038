use std::net::SocketAddr;

use alert_amqp::AmqpArgs;
use alert_core::{RetentionArgs, ServiceArgs};
use alert_redis::{RedisArgs, StoreSettings};

/// Processor settings: every flag has an environment variable, for Helm.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "alert-processor",
    version,
    about = "Alert aggregation: dedupes, aggregates per location in Redis, closes windows"
)]
pub struct Config {
    /// Address for health and metrics.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:4001")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub amqp: AmqpArgs,
    /// Unacknowledged messages in flight (the pipelining depth towards Redis).
    #[arg(long, env = "AMQP_PREFETCH", default_value_t = 256)]
    pub prefetch: u16,
    /// Most messages applied in one script call (one Redis round trip).
    #[arg(long, env = "APPLY_BATCH", default_value_t = 64)]
    pub apply_batch: usize,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Longest pause of the closer between runs (bounds the close lag).
    #[arg(long, env = "CLOSE_POLL_MS", default_value_t = 100)]
    pub close_poll_ms: u64,
    #[command(flatten)]
    pub service: ServiceArgs,
}

impl Config {
    /// The defaults, as `alert-processor` with no flags and no environment would use.
    pub fn defaults() -> Self {
        alert_core::service::defaults_without_env()
    }

    pub fn store_settings(&self) -> StoreSettings {
        StoreSettings {
            dedupe_ttl: self.retention.dedupe_ttl(),
            log_max_len: self.retention.event_log_max_len,
            history_len: self.retention.history_len,
        }
    }
}
