use std::{net::SocketAddr, path::PathBuf};

use alert_core::{RetentionArgs, ServiceArgs};
use alert_listener::IngestArgs;
use alert_notify::ClientArgs;

/// Standalone settings: every flag has an environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "alert-standalone",
    version,
    about = "The whole alert broadcaster in one process: ingest on :4000, clients and the \
             live page on :4002, no RabbitMQ or Redis"
)]
pub struct Config {
    /// Address of the ingest API (`POST /api/alerts`).
    #[arg(long, env = "INGEST_LISTEN_ADDR", default_value = "0.0.0.0:4000")]
    pub ingest_listen: SocketAddr,
    /// Address for Socket.IO, SSE, REST and the live page.
    #[arg(long, env = "CLIENTS_LISTEN_ADDR", default_value = "0.0.0.0:4002")]
    pub clients_listen: SocketAddr,
    /// Keep accepted alerts and open windows here, across restarts (a journal synced
    /// before each 202, and snapshots). Without it everything is in memory only.
    #[arg(long, env = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Accepted but not yet processed location updates (an alert counts once per
    /// location), at most; beyond it ingest answers 503.
    #[arg(long, env = "QUEUE_CAPACITY", default_value_t = 100_000)]
    pub queue_capacity: usize,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// With `--data-dir`: how often the state is snapshotted (the journal is replayed
    /// from the last snapshot on start).
    #[arg(long, env = "SNAPSHOT_INTERVAL_MS", default_value_t = 1000)]
    pub snapshot_interval_ms: u64,
    #[command(flatten)]
    pub ingest: IngestArgs,
    #[command(flatten)]
    pub clients: ClientArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
}

impl Config {
    /// The defaults, as `alert-standalone` with no flags and no environment would use.
    pub fn defaults() -> Self {
        alert_core::service::defaults_without_env()
    }
}
