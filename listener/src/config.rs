use std::{net::SocketAddr, path::PathBuf, time::Duration};

use alert_amqp::AmqpArgs;
use alert_core::{AlertQueue, Limits, Secret, ServiceArgs};
use chrono::TimeDelta;

use crate::{ApiKeysError, Ingest};

/// Listener settings: every flag has an environment variable, for Helm.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "alert-listener",
    version,
    about = "Alert ingest: validates, stamps UUIDs, queues durably in RabbitMQ"
)]
pub struct Config {
    /// Address for the ingest API, health and metrics.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:4000")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub amqp: AmqpArgs,
    /// Publisher channels on the one connection (publishes are pipelined on each).
    #[arg(long, env = "AMQP_CHANNELS", default_value_t = 4)]
    pub amqp_channels: usize,
    /// Wait this long for RabbitMQ's confirms before answering 503.
    #[arg(long, env = "CONFIRM_TIMEOUT_MS", default_value_t = 5000)]
    pub confirm_timeout_ms: u64,
    #[command(flatten)]
    pub ingest: IngestArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
}

impl Config {
    /// The defaults, as `alert-listener` with no flags and no environment would use.
    pub fn defaults() -> Self {
        alert_core::service::defaults_without_env()
    }

    pub fn confirm_timeout(&self) -> Duration {
        Duration::from_millis(self.confirm_timeout_ms)
    }
}

/// What ingest accepts, from whom, and how it answers: shared by the standalone mode.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Largest accepted request body.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most alerts in one JSON array.
    #[arg(long, env = "MAX_BATCH", default_value_t = 1000)]
    pub max_batch: usize,
    /// Most locations in one alert.
    #[arg(long, env = "MAX_LOCATIONS", default_value_t = 1000)]
    pub max_locations: usize,
    /// Longest accepted alert duration.
    #[arg(long, env = "MAX_DURATION_SECONDS", default_value_t = 86_400)]
    pub max_duration_seconds: i64,
    /// Duration of a CAP alert that has no `expires`.
    #[arg(long, env = "CAP_DEFAULT_DURATION_SECONDS", default_value_t = 3_600)]
    pub cap_default_duration_seconds: i64,
    /// Source API keys, `source=key` pairs separated by commas (keys of 16+ characters).
    /// Empty, and no `SOURCE_SECRETS`: authentication and per-source rate limits are off.
    #[arg(long, env = "API_KEYS", default_value = "", hide_default_value = true)]
    pub api_keys: Secret,
    /// A file holding `API_KEYS` (a mounted Secret), instead of the variable.
    #[arg(long, env = "API_KEYS_FILE", conflicts_with = "api_keys")]
    pub api_keys_file: Option<PathBuf>,
    /// Source signing secrets, `source=secret` pairs separated by commas (secrets of 32+
    /// characters): such a source signs each request (`X-Source`, `X-Signature`) instead
    /// of sending a key.
    #[arg(
        long,
        env = "SOURCE_SECRETS",
        default_value = "",
        hide_default_value = true
    )]
    pub source_secrets: Secret,
    /// A file holding `SOURCE_SECRETS`, instead of the variable.
    #[arg(long, env = "SOURCE_SECRETS_FILE", conflicts_with = "source_secrets")]
    pub source_secrets_file: Option<PathBuf>,
    /// Alerts per second each authenticated source may post (bursts up to twice that,
    /// and at least one full batch).
    #[arg(long, env = "SOURCE_RATE_LIMIT", default_value_t = 2000.0)]
    pub source_rate_limit: f64,
    /// CAP XML bodies parsed at once (on the blocking pool, off the request path); more
    /// wait for a turn.
    #[arg(long, env = "CAP_PARSERS", default_value_t = crate::http::DEFAULT_CAP_PARSERS)]
    pub cap_parsers: usize,
    /// `Retry-After` sent with 503 while the broker is unreachable.
    #[arg(long, env = "RETRY_AFTER_SECONDS", default_value_t = 1)]
    pub retry_after_seconds: u32,
}

impl IngestArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_batch: self.max_batch,
            max_locations: self.max_locations,
            max_duration: TimeDelta::seconds(self.max_duration_seconds),
            cap_default_duration: TimeDelta::seconds(self.cap_default_duration_seconds),
            ..Limits::default()
        }
    }

    /// The ingest endpoint over `queue`; `Err` names a bad `API_KEYS` or
    /// `SOURCE_SECRETS` entry, or a file that cannot be read.
    pub fn ingest<Q: AlertQueue>(&self, queue: Q) -> Result<Ingest<Q>, ApiKeysError> {
        let api_keys = read_secret("API_KEYS_FILE", &self.api_keys, &self.api_keys_file)?;
        let secrets = read_secret(
            "SOURCE_SECRETS_FILE",
            &self.source_secrets,
            &self.source_secrets_file,
        )?;
        Ingest::new(
            queue,
            self.limits(),
            self.max_body_bytes,
            self.retry_after_seconds,
        )
        .with_cap_parsers(self.cap_parsers)
        .with_sources(&api_keys, &secrets, self.source_rate_limit)
    }
}

/// `value`, or the contents of `file` when one is given.
fn read_secret(
    setting: &'static str,
    value: &Secret,
    file: &Option<PathBuf>,
) -> Result<Secret, ApiKeysError> {
    let Some(path) = file else {
        return Ok(value.clone());
    };
    std::fs::read_to_string(path)
        .map(|contents| Secret::new(contents.trim()))
        .map_err(|error| ApiKeysError::File {
            setting,
            path: path.clone(),
            error: error.kind(),
        })
}
