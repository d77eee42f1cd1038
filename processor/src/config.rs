use std::{net::SocketAddr, time::Duration};

use alert_amqp::AmqpArgs;
use alert_core::ServiceArgs;
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
    /// How long a UUID or idempotency key is remembered for dedupe.
    #[arg(long, env = "DEDUPE_TTL_SECONDS", default_value_t = 86_400)]
    pub dedupe_ttl_seconds: u64,
    /// Approximate number of events kept in the log for replay.
    #[arg(long, env = "EVENT_LOG_MAX_LEN", default_value_t = 100_000)]
    pub event_log_max_len: u64,
    /// Alerts kept per location for the history API.
    #[arg(long, env = "HISTORY_LEN", default_value_t = 100)]
    pub history_len: u64,
    /// Longest pause of the closer between runs (bounds the close lag).
    #[arg(long, env = "CLOSE_POLL_MS", default_value_t = 100)]
    pub close_poll_ms: u64,
    #[command(flatten)]
    pub service: ServiceArgs,
}

impl Config {
    /// The defaults, as `alert-processor` with no flags and no environment would use.
    pub fn defaults() -> Self {
        <Config as clap::Parser>::parse_from(["alert-processor"])
    }

    pub fn store_settings(&self) -> StoreSettings {
        StoreSettings {
            dedupe_ttl: Duration::from_secs(self.dedupe_ttl_seconds),
            log_max_len: self.event_log_max_len,
            history_len: self.history_len,
        }
    }
}
