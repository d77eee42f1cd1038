//! `alert-notify`: fans the broadcaster's events out to clients.
//!
//! # Data flow
//! The processor appends every event to the event log (a stream; the entry id is the
//! event's `offset`) and publishes it on the live channel in the same atomic script.
//! [`alert_core::state`] is the boundary: Redis here ([`run`]), in-process state in
//! standalone mode (which calls [`serve`]). [`feed`] subscribes to the channel, fills
//! any gap from the log (see its docs for how gaps are found) and hands each event, in
//! offset order and once, to the hub, which serialises it once and sends it to:
//! - Socket.IO clients (default namespace, event `alert`): the room of the event's
//!   location, plus the clients that subscribed to nothing (they get everything);
//! - Server-Sent Events streams (`GET /api/stream`).
//!
//! On connect a client gets a `snapshot` of the open windows; `subscribe` /
//! `unsubscribe` change its rooms; `since: {epoch, offset}` (in `subscribe` or the
//! handshake `auth`) replays what it missed from the log, or answers
//! `recovered: false` when the epoch changed or the log no longer reaches back.
//! `GET /api/active`, `/api/events` and `/api/history` read the same state.
//!
//! Each client gets its snapshot first, then only newer events, in order (see [`hub`]
//! for how: sockets are *held* out of their rooms with a queue while their snapshot is
//! read, and while their send buffer is full). A client more than `CLIENT_BACKLOG`
//! events behind has its transport closed (stock clients reconnect by themselves and
//! resume with `since`); an SSE stream that falls behind is ended and resumes with
//! `Last-Event-ID`.
//!
//! # Authentication
//! `CLIENT_AUTH=none` (the default): every client reads everything. With `jwt`, [`auth`]
//! checks the token of each Socket.IO handshake (`auth.token`, else the `JWT_COOKIE`
//! cookie), SSE stream and REST read (`Authorization: Bearer`, else the cookie) into the
//! locations the client may read; a socket's transport is closed when its token
//! expires unless it sent a fresh one in an `auth` event.
//!
//! # Origins
//! One rule ([`AllowedOrigins`], `CORS_ORIGINS`) for every transport: a request whose
//! `Origin` is neither allowed nor the request's own host is refused with 403 before the
//! Socket.IO layer (WebSocket upgrades included), SSE or REST see it. Requests without
//! `Origin` (native apps) pass.
//!
//! # Transports and scaling
//! WebSocket is the transport for scale: each connection lives on one pod, and any
//! pod serves any client. HTTP long-polling works, but its requests must all reach
//! the pod that holds the session: with more than one pod it needs sticky sessions
//! (e.g. ingress cookie affinity); without them a polling client fails its handshake
//! and should be configured for `transports: ["websocket"]`.
//!
//! # Shutdown
//! On the shutdown signal the pod stops accepting, disconnects every Socket.IO
//! client (they reconnect, to another pod) and ends every SSE stream, then drains
//! within `SHUTDOWN_TIMEOUT_SECONDS`.

mod auth;
mod config;
mod expiry;
mod feed;
mod http;
mod hub;
mod limits;
mod metrics;
mod origin;
mod page;
mod socket;

use std::{future::Future, sync::Arc, time::Duration};

use alert_core::{
    EventLog, LiveFeed, StateError,
    supervise::{Serving, Supervisor, TaskFailed},
};
use alert_redis::{LiveSubscriber, Store, StoreSettings};
use axum::http::{HeaderValue, header};
use socketioxide::SocketIo;
use tokio::{net::TcpListener, sync::watch};

pub use auth::AuthSettingsError;
pub use config::{AddressLimitArgs, AuthArgs, ClientArgs, ClientAuth, Config};
pub use limits::{InvalidProxy, TrustedProxies};
pub use origin::{AllowedOrigins, InvalidOrigins};

/// Why notify could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Redis unreachable or misconfigured at start: fix `REDIS_URL`, or let the pod
    /// restart until Redis is up.
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    /// The state could not be read at start.
    #[error("state: {0}")]
    State(StateError),
    /// Client authentication settings that cannot work (main checks them first).
    #[error(transparent)]
    Settings(#[from] AuthSettingsError),
    /// The live feed or the HTTP server ended: the pod restarts.
    #[error(transparent)]
    Task(#[from] TaskFailed),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Where notify reads events from: the state and its live feed.
pub struct Backend {
    pub log: Arc<dyn EventLog>,
    pub live: Box<dyn LiveFeed>,
}

/// Runs notify over Redis on `listener` until `shutdown` completes, then closes
/// client connections (so they reconnect elsewhere) and drains.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let url = config.redis.redis_url.expose();
    let keys = config.redis.keys();
    let store = Store::connect(url, keys.clone(), StoreSettings::default()).await?;
    let live = LiveSubscriber::connect(url, &keys).await?;
    tracing::info!(prefix = %config.redis.redis_prefix, "notify reading Redis");
    let backend = Backend {
        log: Arc::new(store),
        live: Box::new(live),
    };
    serve(
        backend,
        &config.clients,
        axum::Router::new(),
        listener,
        shutdown,
        config.service.shutdown_timeout(),
        Serving::default(),
    )
    .await
}

/// Serves clients from `backend` on `listener` until `shutdown` completes, then
/// closes client connections and drains within `drain`. `extra` routes are served
/// beside notify's own (standalone adds `POST /api/alerts`). The live feed and the
/// HTTP server are supervised: if either ends first, this returns an error naming it,
/// and `serving` (shared with the rest of the process, for `/readyz`) turns false.
pub async fn serve(
    backend: Backend,
    settings: &ClientArgs,
    extra: axum::Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
    serving: Serving,
) -> Result<(), RunError> {
    let auth = Arc::new(auth::Auth::new(&settings.auth)?);
    let (layer, io) = SocketIo::builder()
        .max_buffer_size(settings.client_buffer)
        .max_payload(settings.max_payload_bytes)
        .ws_read_buffer_size(settings.ws_read_buffer_bytes)
        .ping_interval(Duration::from_millis(settings.ping_interval_ms))
        .ping_timeout(Duration::from_millis(settings.ping_timeout_ms))
        .build_layer();
    let limits = hub::Limits {
        max_locations: settings.max_locations_per_client,
        subscribes: alert_core::RateLimit::per_second(settings.subscribes_per_second, 2.0),
        replay_limit: settings.replay_limit,
        backlog: settings.client_backlog,
    };
    let hub = Arc::new(hub::Hub::new(
        backend.log,
        io.clone(),
        limits,
        settings.client_buffer * 16,
    ));
    feed::start_position(&hub).await.map_err(RunError::State)?;
    socket::register(hub.clone(), auth.clone());
    let warm_up = auth.clone();
    tokio::spawn(async move { warm_up.warm_up().await });

    let mut tasks = Supervisor::within(serving);
    let (closing_tx, closing) = watch::channel(false);
    tasks.spawn(
        "live feed",
        feed::run(
            hub.clone(),
            backend.live,
            settings.gap_check(),
            closing.clone(),
        ),
    );
    let limits = Arc::new(limits::AddressLimits::new(
        &settings.addresses,
        hub.metrics.limited.clone(),
    ));
    let router = router(
        http::router(hub.clone(), auth.clone(), closing).merge(extra),
        layer,
        limits,
        &settings.cors_origins,
        &auth,
    );
    let router = tasks.serving().gate(router);
    tracing::info!(addr = %listener.local_addr()?, origins = %settings.cors_origins, "notify serving");
    let stopping = tasks.stopping();
    let close_clients = async move {
        stopping.await;
        tracing::info!("closing client connections");
        let _ = closing_tx.send(true);
        tokio::spawn(async move { io.close().await });
    };
    tasks.spawn(
        "clients HTTP server",
        alert_core::shutdown::serve(listener, router, close_clients, drain),
    );
    tasks.run(shutdown).await?;
    Ok(())
}

/// The routes behind the Socket.IO layer, the per-address limits and the origin rule.
/// The origin check is the outermost layer: it must see `Origin` before
/// [`own_request_head`] drops it, and refuse a WebSocket upgrade before the Socket.IO
/// layer accepts it. With authentication, the token cookie is kept before the other
/// headers go. The limits, outside that, read `X-Forwarded-For` before it goes too, and
/// refuse a flood before any token is looked at.
fn router(
    routes: axum::Router,
    socket_io: socketioxide::layer::SocketIoLayer,
    limits: Arc<limits::AddressLimits>,
    allowed: &AllowedOrigins,
    auth: &auth::Auth,
) -> axum::Router {
    let mut router = routes
        .layer(socket_io)
        .layer(axum::middleware::map_request(own_request_head));
    if let Some(cookie) = auth.cookie_name() {
        router = router.layer(axum::middleware::map_request_with_state(
            Arc::<str>::from(cookie),
            keep_token_cookie,
        ));
    }
    router = router.layer(axum::middleware::from_fn_with_state(limits, limits::check));
    if let Some(cors) = allowed.cors() {
        router = router.layer(cors);
    }
    router.layer(axum::middleware::from_fn_with_state(
        Arc::new(allowed.clone()),
        origin::check,
    ))
}

/// The request headers the Socket.IO stack reads (engineioxide: the WebSocket key, and
/// a polling POST's content type); socketioxide keeps every socket's request head.
const SOCKET_IO_HEADERS: [header::HeaderName; 4] = [
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
];

/// Copies a Socket.IO request's URI, and only the headers in [`SOCKET_IO_HEADERS`], out
/// of hyper's read buffer.
///
/// hyper parses them zero-copy, as slices of the connection's read buffer (16 KiB), and
/// socketioxide keeps each socket's request head for the socket's life: without the
/// copy every idle connection pins that whole buffer (measured with heaptrack: 16 of
/// ~30 KiB per connection). The other headers (cookies, user agent, ...) are dropped so
/// that what a client sends does not decide what its connection holds; the origin
/// check and CORS, the outer layers, have seen them already. Socket handlers must not read request headers.
async fn own_request_head(mut request: axum::extract::Request) -> axum::extract::Request {
    if request.uri().path().starts_with("/socket.io") {
        if let Ok(uri) = request.uri().to_string().parse::<axum::http::Uri>() {
            // axum's copy of the URI shares the buffer too.
            request
                .extensions_mut()
                .insert(axum::extract::OriginalUri(uri.clone()));
            *request.uri_mut() = uri;
        }
        let headers = SOCKET_IO_HEADERS
            .iter()
            .filter_map(|name| {
                let value = request.headers().get(name)?;
                let value = HeaderValue::from_bytes(value.as_bytes()).ok()?;
                Some((name.clone(), value))
            })
            .collect();
        *request.headers_mut() = headers;
    }
    request
}

/// Whether a request opens a Socket.IO session: an Engine.IO handshake, without a
/// `sid` yet (a request with one belongs to a session that exists).
fn opens_session(uri: &axum::http::Uri) -> bool {
    uri.path().starts_with("/socket.io")
        && !uri
            .query()
            .unwrap_or("")
            .split('&')
            .any(|pair| pair.starts_with("sid="))
}

/// Keeps a Socket.IO request's token cookie, alone, as an extension that the handshake
/// middleware reads (the headers themselves are dropped, see [`own_request_head`]). It
/// stays in the socket's request head, a token's size, for the socket's life.
async fn keep_token_cookie(
    axum::extract::State(name): axum::extract::State<Arc<str>>,
    mut request: axum::extract::Request,
) -> axum::extract::Request {
    // Only a handshake creates a socket and keeps its request head.
    if opens_session(request.uri())
        && let Some(token) = auth::cookie(request.headers(), &name)
    {
        let token = auth::CookieToken(token.into());
        request.extensions_mut().insert(token);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{body::Body, extract::OriginalUri, http::Request};

    fn request(path: &str) -> axum::extract::Request {
        Request::builder()
            .uri(path)
            .header(header::COOKIE, "session=".to_owned() + &"x".repeat(4000))
            .header(header::USER_AGENT, "test")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn a_session_is_opened_by_a_handshake_without_a_sid() {
        let opens = |uri: &str| opens_session(&uri.parse().unwrap());
        assert!(opens("/socket.io/?EIO=4&transport=websocket"));
        assert!(opens("/socket.io/?EIO=4&transport=polling&xsid=1"));
        assert!(!opens("/socket.io/?EIO=4&transport=polling&sid=abc"));
        assert!(!opens("/socket.io/?sid=abc&EIO=4"));
        assert!(!opens("/api/stream"));
    }

    #[tokio::test]
    async fn socket_io_requests_keep_only_the_headers_the_stack_reads() {
        let path = "/socket.io/?EIO=4&transport=websocket";
        let kept = own_request_head(request(path)).await;
        let names: Vec<&str> = kept.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["sec-websocket-key", "content-type"]);
        assert_eq!(
            kept.headers()[header::SEC_WEBSOCKET_KEY],
            "dGhlIHNhbXBsZSBub25jZQ=="
        );
        assert_eq!(kept.uri(), path);
        let original = kept.extensions().get::<OriginalUri>().unwrap();
        assert_eq!(original.0, path);

        let other = own_request_head(request("/api/stream")).await;
        assert_eq!(
            other.headers().len(),
            4,
            "only Socket.IO requests are trimmed"
        );
    }
}
