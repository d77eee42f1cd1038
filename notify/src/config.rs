use std::{net::SocketAddr, time::Duration};

use alert_core::{Secret, ServiceArgs};
use alert_redis::RedisArgs;

use crate::{AllowedOrigins, TrustedProxies};

/// Notify settings: every flag has an environment variable, for Helm.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "alert-notify",
    version,
    about = "Alert fan-out: Socket.IO, Server-Sent Events and REST over the Redis event log"
)]
pub struct Config {
    /// Address for Socket.IO, SSE, REST, health and metrics.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:4002")]
    pub listen: SocketAddr,
    /// `--redis-url` / `REDIS_URL` and `--redis-prefix` / `REDIS_PREFIX` (the
    /// processor's prefix: the event log, windows and live channel live under it).
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub clients: ClientArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
}

impl Config {
    /// The defaults, as `alert-notify` with no flags and no environment would use.
    pub fn defaults() -> Self {
        alert_core::service::defaults_without_env()
    }
}

/// What notify offers clients, and its limits: shared by the standalone mode.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Web origins allowed to connect (Socket.IO, SSE, REST), comma separated, like
    /// `https://alerts.example.org`; `*` for any (without cookies); empty: same origin
    /// only. Requests without `Origin` (apps, servers) are always allowed.
    #[arg(
        long,
        env = "CORS_ORIGINS",
        default_value = "",
        hide_default_value = true
    )]
    pub cors_origins: AllowedOrigins,
    #[command(flatten)]
    pub addresses: AddressLimitArgs,
    /// Most locations one client may subscribe to.
    #[arg(long, env = "MAX_LOCATIONS_PER_CLIENT", default_value_t = 100)]
    pub max_locations_per_client: usize,
    /// `subscribe` and `unsubscribe` calls one client may make per second (bursts of
    /// two seconds' worth); more are answered with an error ack at once. 0: no limit.
    #[arg(long, env = "SUBSCRIBES_PER_SECOND", default_value_t = 10.0)]
    pub subscribes_per_second: f64,
    /// Most events replayed to one client on resume (`since`, `Last-Event-ID`) and
    /// most events `GET /api/events` answers; beyond it the client gets a snapshot.
    #[arg(long, env = "REPLAY_LIMIT", default_value_t = 1000)]
    pub replay_limit: u64,
    /// Largest Socket.IO packet a client may send.
    #[arg(long, env = "MAX_PAYLOAD_BYTES", default_value_t = 16 * 1024)]
    pub max_payload_bytes: u64,
    /// Packets buffered per client for its transport to send. When it is full the
    /// client's events are held for it, in order, and handed on as it empties.
    #[arg(long, env = "CLIENT_BUFFER", default_value_t = 256)]
    pub client_buffer: usize,
    /// Events held for one client whose buffer is full before its transport is closed
    /// (it reconnects and resumes with `since`). Enough for a client that keeps up to
    /// take the burst of a gap filled after a Redis outage; each held event is a shared
    /// pointer, not a copy.
    #[arg(long, env = "CLIENT_BACKLOG", default_value_t = 10_000)]
    pub client_backlog: usize,
    /// Read buffer of each WebSocket connection (socketioxide's default is 4 KiB);
    /// clients send little (pongs, subscriptions), so a small one saves memory per
    /// connection. Larger packets are read in several steps.
    #[arg(long, env = "WS_READ_BUFFER_BYTES", default_value_t = 256)]
    pub ws_read_buffer_bytes: usize,
    /// How often the live feed is compared with the event log to find gaps.
    #[arg(long, env = "GAP_CHECK_MS", default_value_t = 1000)]
    pub gap_check_ms: u64,
    /// How often each Socket.IO client is pinged (Engine.IO `pingInterval`).
    #[arg(long, env = "PING_INTERVAL_MS", default_value_t = 25_000,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub ping_interval_ms: u64,
    /// How long a client has to answer a ping before it is disconnected as gone
    /// (Engine.IO `pingTimeout`).
    #[arg(long, env = "PING_TIMEOUT_MS", default_value_t = 20_000,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub ping_timeout_ms: u64,
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// `CLIENT_AUTH`: whether clients present a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ClientAuth {
    /// Anyone reads every location (public alerts), as without this setting.
    #[default]
    None,
    /// Every Socket.IO handshake, SSE stream and REST read presents a JWT.
    Jwt,
}

/// Client authentication (see `auth.rs` and the README): with `CLIENT_AUTH=jwt`,
/// `JWT_SECRET` or `OIDC_ISSUER` (or both) is required.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    #[arg(long, env = "CLIENT_AUTH", value_enum, default_value_t = ClientAuth::None)]
    pub client_auth: ClientAuth,
    /// Shared secret for HS256 tokens (at least 32 bytes).
    #[arg(long, env = "JWT_SECRET")]
    pub jwt_secret: Option<Secret>,
    /// OIDC issuer URL for RS256/ES256 tokens: its keys come from
    /// `<issuer>/.well-known/openid-configuration`; tokens must name it in `iss`.
    #[arg(long, env = "OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// The `iss` tokens must carry, without an OIDC issuer.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The `aud` tokens must carry (set it with an OIDC issuer, whose tokens for other
    /// services would pass otherwise).
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[arg(long, env = "JWT_LEEWAY_SECONDS", default_value_t = 30)]
    pub jwt_leeway_seconds: u64,
    /// Claim with the token's roles (a string or an array); `a.b` reaches into objects.
    #[arg(long, env = "JWT_ROLES_CLAIM", default_value = "roles")]
    pub jwt_roles_claim: String,
    /// The role that reads every location.
    #[arg(long, env = "JWT_ADMIN_ROLE", default_value = "admin")]
    pub jwt_admin_role: String,
    /// Claim with the locations a token may read (an array of strings); a token
    /// without it reads every location.
    #[arg(long, env = "JWT_LOCATIONS_CLAIM", default_value = "locations")]
    pub jwt_locations_claim: String,
    /// Cookie a browser's token may come in (http-only, set by the site's login).
    #[arg(long, env = "JWT_COOKIE", default_value = "alert_token")]
    pub jwt_cookie: String,
}

/// What one client address may hold and how fast it may connect (see `limits.rs`);
/// 0 turns a limit off.
#[derive(Debug, Clone, clap::Args)]
pub struct AddressLimitArgs {
    /// Proxies whose `X-Forwarded-For` is believed (addresses or networks, comma
    /// separated, like `10.0.0.0/8`); from anyone else the header is ignored.
    #[arg(
        long,
        env = "TRUSTED_PROXIES",
        default_value = "",
        hide_default_value = true
    )]
    pub trusted_proxies: TrustedProxies,
    /// Socket.IO sessions one address (an IPv6 /64) may hold. Generous: carrier-grade
    /// NAT puts many phones behind one address.
    #[arg(long, env = "MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 5000)]
    pub max_connections_per_address: usize,
    /// SSE streams one address may hold.
    #[arg(long, env = "MAX_STREAMS_PER_ADDRESS", default_value_t = 1000)]
    pub max_streams_per_address: usize,
    /// Socket.IO sessions one address may start per second (bursts of five seconds'
    /// worth): enough for a NAT's phones reconnecting after a pod restart.
    #[arg(
        long,
        env = "HANDSHAKES_PER_SECOND_PER_ADDRESS",
        default_value_t = 200.0
    )]
    pub handshakes_per_second_per_address: f64,
}

impl AddressLimitArgs {
    /// No per-address limit: for tests and harnesses whose every client is 127.0.0.1.
    pub fn off() -> AddressLimitArgs {
        AddressLimitArgs {
            trusted_proxies: TrustedProxies::default(),
            max_connections_per_address: 0,
            max_streams_per_address: 0,
            handshakes_per_second_per_address: 0.0,
        }
    }
}

impl ClientArgs {
    pub fn gap_check(&self) -> Duration {
        Duration::from_millis(self.gap_check_ms.max(10))
    }
}
