//! Command line: every run is bounded in count and time.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "alert-loadtest",
    version,
    about = "Load generator and end-to-end latency meter (loopback only)"
)]
pub(crate) struct Cli {
    /// Tokio worker threads.
    #[arg(long, env = "LOADTEST_THREADS", default_value_t = 2, global = true)]
    pub(crate) threads: usize,
    /// Report path without extension: writes <out>.json and <out>.svg.
    #[arg(long, global = true)]
    pub(crate) out: Option<PathBuf>,
    /// Hard limit on the whole run, seconds.
    #[arg(long, default_value_t = 600, global = true, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) max_seconds: u64,
    #[command(subcommand)]
    pub(crate) mode: Mode,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Mode {
    /// POST alerts at a fixed rate; accepted/s, statuses, POST latency.
    Ingest(IngestArgs),
    /// Socket.IO clients receive tagged broadcasts: delivered/missing/duplicate, e2e latency.
    #[command(alias = "e2e")]
    Fanout(FanoutArgs),
    /// Hold connections; the server's memory per connection and idle CPU.
    Idle(IdleArgs),
    /// Short alerts; close events' lag behind their end time.
    CloseLag(CloseLagArgs),
    /// The floor: plain threads write pre-encoded frames to raw loopback sockets.
    Wire(WireArgs),
    /// Merge fanout reports from several client processes into one.
    Merge(MergeArgs),
}

#[derive(Debug, Clone, Args)]
pub(crate) struct PostArgs {
    /// Listener base URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:4000")]
    pub(crate) listener: String,
    /// POSTs per second.
    #[arg(long, default_value_t = 20.0)]
    pub(crate) rate: f64,
    /// Keep-alive connections (concurrent POSTs).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub(crate) connections: u64,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ClientArgs {
    /// notify addresses (host:port, loopback only), comma separated; clients are spread round-robin.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:4002")]
    pub(crate) notify: Vec<String>,
    /// Socket.IO clients to open.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=200_000))]
    pub(crate) clients: u64,
    /// Bind clients round-robin to 127.0.0.<first-source> .. + N-1 (about 28k ports each).
    #[arg(long, default_value_t = 8)]
    pub(crate) source_addrs: u32,
    #[arg(long, default_value_t = 1)]
    pub(crate) first_source: u32,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    pub(crate) connect_concurrency: usize,
    /// Give up connecting after this many seconds (the run goes on with what connected).
    #[arg(long, default_value_t = 120)]
    pub(crate) connect_timeout: u64,
    /// A token (JWT) every client presents in its handshake `auth`, for notify with
    /// `CLIENT_AUTH=jwt`.
    #[arg(long)]
    pub(crate) token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Subscribe {
    /// No subscription: every client receives every event; each broadcast goes to a new location.
    None,
    /// Locations in the handshake `auth`.
    Auth,
    /// A `subscribe` event, waiting for its ack.
    Event,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct FanoutArgs {
    #[command(flatten)]
    pub(crate) clients: ClientArgs,
    #[command(flatten)]
    pub(crate) post: PostArgs,
    /// Broadcasts (POSTs) to send.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) broadcasts: u64,
    /// How clients choose what they receive.
    #[arg(long, value_enum, default_value_t = Subscribe::None)]
    pub(crate) subscribe: Subscribe,
    /// With a subscription: clients and broadcasts spread over this many locations.
    #[arg(long, default_value_t = 10)]
    pub(crate) groups: u64,
    /// durationSeconds of each alert.
    #[arg(long, default_value_t = 2)]
    pub(crate) alert_seconds: u64,
    /// Only receive (another process posts with the same --run-id and --broadcasts).
    #[arg(long)]
    pub(crate) no_post: bool,
    /// Run id shared by the processes of one run; default: random.
    #[arg(long)]
    pub(crate) run_id: Option<u32>,
    /// With --no-post: seconds to wait for the broadcasts after connecting.
    #[arg(long, default_value_t = 120)]
    pub(crate) wait: u64,
    /// Seconds to wait after the last POST for deliveries still in flight.
    #[arg(long, default_value_t = 5)]
    pub(crate) grace: u64,
    /// Touch this file once every client is connected (for multi-process runs).
    #[arg(long)]
    pub(crate) ready_file: Option<PathBuf>,
    /// Before posting, wait until these files exist (the receivers' --ready-file), at most --connect-timeout.
    #[arg(long, value_delimiter = ',')]
    pub(crate) wait_for: Vec<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct IngestArgs {
    #[command(flatten)]
    pub(crate) post: PostArgs,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub(crate) duration: u64,
    /// At most this many POSTs.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) count: u64,
    /// Alerts per POST (a JSON array when > 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(crate) batch: u64,
    /// Distinct locations cycled through.
    #[arg(long, default_value_t = 500)]
    pub(crate) locations: u64,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct IdleArgs {
    #[command(flatten)]
    pub(crate) clients: ClientArgs,
    /// Seconds to hold the connections.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) hold: u64,
    /// Seconds to let the server settle after connecting, before measuring.
    #[arg(long, default_value_t = 3)]
    pub(crate) settle: u64,
    /// pids of the notify processes, comma separated (memory and CPU from /proc).
    #[arg(long, value_delimiter = ',')]
    pub(crate) server_pid: Vec<u32>,
    /// Touch this file once every client is connected.
    #[arg(long)]
    pub(crate) ready_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct CloseLagArgs {
    #[command(flatten)]
    pub(crate) clients: ClientArgs,
    #[command(flatten)]
    pub(crate) post: PostArgs,
    /// Short alerts to post, each for a new location.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(crate) count: u64,
    /// Alerts last 1 .. this many seconds (cycling).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub(crate) max_alert_seconds: u64,
    /// Seconds to wait for closes after the last alert ended.
    #[arg(long, default_value_t = 5)]
    pub(crate) grace: u64,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct MergeArgs {
    /// fanout reports (JSON) of one run.
    #[arg(required = true)]
    pub(crate) reports: Vec<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct WireArgs {
    /// Connections (two open files each, both ends in this process).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=9_000))]
    pub(crate) clients: u64,
    /// Broadcasts per second.
    #[arg(long, default_value_t = 20.0)]
    pub(crate) rate: f64,
    /// Broadcasts to send.
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) broadcasts: u64,
    /// Bytes per frame: an alert event's Socket.IO packet is ~590 bytes since events
    /// carry `sentTime` and `duration` too (~515 before).
    #[arg(long, default_value_t = 590, value_parser = clap::value_parser!(u64).range(16..=65_536))]
    pub(crate) bytes: u64,
    /// Threads writing frames (notify runs one tokio worker per core).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub(crate) server_threads: u64,
    /// Seconds to wait after the last broadcast for frames still in flight.
    #[arg(long, default_value_t = 5)]
    pub(crate) grace: u64,
}
