//! Routes besides Socket.IO: Server-Sent Events, REST reads, health and metrics.
//!
//! With authentication the event routes (`/api/stream`, `/api/active`, `/api/events`,
//! `/api/history`) take the token from `Authorization: Bearer` or the cookie: 401 with
//! `WWW-Authenticate: Bearer` without a good one, 403 for a location outside it. Health,
//! metrics and the page stay open.

use std::{convert::Infallible, sync::Arc};

use alert_core::{Event, HistoryEntry, StateError};
use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
    routing::{get, post},
};
use futures::{Stream, StreamExt, stream};
use prometheus::IntGauge;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast::error::RecvError, watch};

use crate::{
    auth::{Access, Auth, AuthError, Grant},
    hub::{Fanout, Hub, Since},
    socket::{Snapshot, SubscriptionError, clean_locations},
};

/// Most history entries one request may ask for.
const MAX_HISTORY: u64 = 100;

pub(crate) fn router(hub: Arc<Hub>, auth: Arc<Auth>, closing: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/api/stream", get(stream_events))
        .route("/api/active", get(active))
        .route("/api/events", get(events))
        .route("/api/history", get(history))
        .route("/api/session", post(start_session).delete(end_session))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::page::router())
        .with_state(AppState { hub, auth, closing })
}

#[derive(Clone)]
struct AppState {
    hub: Arc<Hub>,
    auth: Arc<Auth>,
    closing: watch::Receiver<bool>,
}

/// Why a read request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The client must fix the request: 400.
    #[error("{0}")]
    Invalid(String),
    /// A location the client must fix: 400.
    #[error(transparent)]
    Locations(#[from] SubscriptionError),
    /// The state backend (Redis) is unreachable: 503; retry, or another pod.
    #[error("temporarily unavailable")]
    Unavailable(#[from] StateError),
    /// No good token: 401; a location outside it: 403; the issuer's keys cannot be
    /// fetched: 503.
    #[error(transparent)]
    Auth(AuthError),
    /// `/api/session` while `CLIENT_AUTH=none`: 404.
    #[error("client authentication is off (CLIENT_AUTH=none): there is no session to start")]
    NoSessions,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Invalid(_) | ApiError::Locations(_) => StatusCode::BAD_REQUEST,
            ApiError::NoSessions => StatusCode::NOT_FOUND,
            ApiError::Unavailable(error) => {
                tracing::warn!(%error, "cannot read the state for a request");
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Auth(AuthError::Forbidden(_) | AuthError::Narrower) => StatusCode::FORBIDDEN,
            ApiError::Auth(AuthError::KeysUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Auth(_) => StatusCode::UNAUTHORIZED,
        };
        let mut response = (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: a missing token gets the bare challenge, a bad one says so.
            let challenge = match &self {
                ApiError::Auth(AuthError::Missing) => "Bearer",
                _ => "Bearer error=\"invalid_token\"",
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// `POST /api/session` with `Authorization: Bearer <token>`: the token, once checked,
/// goes into the http-only cookie notify reads, so that a page's script never holds it
/// (the live page's SSE and a same-origin Socket.IO handshake then send it by
/// themselves). `SameSite=Strict`: no other site's page makes the browser send it;
/// `Secure`: only over HTTPS (browsers count localhost as secure); `Max-Age`: until the
/// token's `exp`. Answers 204, or 401 like every read.
async fn start_session(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cookie = state.auth.cookie_name().ok_or(ApiError::NoSessions)?;
    let token = crate::auth::bearer(&headers);
    let grant = state
        .auth
        .grant(token)
        .await
        .map_err(|error| ApiError::Auth(state.hub.metrics.refused(error)))?;
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let max_age = grant.exp.map_or(0, |exp| exp.saturating_sub(now));
    let token = token.expect("a granted jwt session had a token");
    Ok(session_cookie(cookie, token, max_age))
}

/// `DELETE /api/session`: the cookie is cleared (signing out).
async fn end_session(State(state): State<AppState>) -> Result<Response, ApiError> {
    let cookie = state.auth.cookie_name().ok_or(ApiError::NoSessions)?;
    Ok(session_cookie(cookie, "", 0))
}

fn session_cookie(name: &str, value: &str, max_age: u64) -> Response {
    let cookie =
        format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict");
    match HeaderValue::from_str(&cookie) {
        Ok(cookie) => (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response(),
        Err(_) => ApiError::Invalid("the token cannot be a cookie".into()).into_response(),
    }
}

/// Who asks: the grant of the request's token; everything without authentication.
struct Caller(Grant);

impl axum::extract::FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let token = state.auth.token_in(&parts.headers);
        match state.auth.grant(token).await {
            Ok(grant) => Ok(Caller(grant)),
            Err(error) => Err(ApiError::Auth(state.hub.metrics.refused(error))),
        }
    }
}

impl Caller {
    /// A request's location filter (`None`: all) within what the caller may read.
    fn limit(
        &self,
        hub: &Hub,
        filter: Option<Vec<String>>,
    ) -> Result<Option<Vec<String>>, ApiError> {
        self.0
            .access
            .limit(filter)
            .map_err(|error| ApiError::Auth(hub.metrics.refused(error)))
    }
}

/// `Query`, with a malformed query string answered like every other bad input: 400
/// with a JSON error (axum's own rejection is plain text).
struct ApiQuery<T>(T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(query)) => Ok(ApiQuery(query)),
            Err(rejection) => Err(ApiError::Invalid(rejection.body_text())),
        }
    }
}

/// `?locations=a,b` into a checked filter; `None` for all.
fn location_filter(hub: &Hub, raw: Option<&str>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(raw) = raw.filter(|raw| !raw.trim().is_empty()) else {
        return Ok(None);
    };
    let requested: Vec<String> = raw.split(',').map(str::to_owned).collect();
    let locations = clean_locations(&requested, hub.limits.max_locations)?;
    Ok(Some(locations.into_iter().collect()))
}

fn bounded(limit: Option<u64>, default: u64, max: u64) -> Result<u64, ApiError> {
    match limit.unwrap_or(default) {
        0 => Err(ApiError::Invalid("limit must be at least 1".into())),
        limit if limit > max => Err(ApiError::Invalid(format!("limit is at most {max}"))),
        limit => Ok(limit),
    }
}

#[derive(Debug, Deserialize)]
struct LocationsQuery {
    locations: Option<String>,
}

/// `GET /api/active?locations=a,b`: `{epoch, offset, active}` like the `snapshot`.
async fn active(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<LocationsQuery>,
) -> Result<Json<Snapshot>, ApiError> {
    let hub = &state.hub;
    let filter = caller.limit(hub, location_filter(hub, query.locations.as_deref())?)?;
    let position = hub.position();
    let active = hub.active(filter.as_deref(), &position).await?;
    Ok(Json(Snapshot {
        epoch: position.epoch,
        offset: position.offset,
        active,
        missed: None,
        recovered: None,
    }))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    since: Option<String>,
    limit: Option<u64>,
}

#[derive(Debug, Serialize)]
struct EventsPage {
    epoch: Option<String>,
    events: Vec<Event>,
}

/// `GET /api/events?since=<offset>&limit=`: events after `since` (oldest first), or
/// the newest `limit` without `since`. A caller limited to some locations gets only
/// theirs: after `since`, up to `limit` of them (the log is read on until it has them,
/// so paging with the last offset goes on); without `since`, those among the newest
/// `limit` events.
async fn events(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Json<EventsPage>, ApiError> {
    let hub = &state.hub;
    let limit = bounded(query.limit, 100, hub.limits.replay_limit)?;
    let mut events = match query.since.as_deref() {
        Some(since) => {
            let since = since.parse().map_err(|_| {
                ApiError::Invalid("since must be an offset like 1700000000000-0".into())
            })?;
            match &caller.access {
                Access::All => hub.store.events_after(since, limit).await?,
                Access::Only(_) => events_for(hub, &caller.access, since, limit).await?,
            }
        }
        None => hub.store.latest_events(limit).await?,
    };
    events.retain(|event| caller.access.allows(&event.location));
    Ok(Json(EventsPage {
        epoch: hub.store.epoch().await?,
        events,
    }))
}

/// Up to `limit` events after `since` that `access` allows, reading at most as many
/// pages as a replay would scan.
async fn events_for(
    hub: &Hub,
    access: &Access,
    mut since: alert_core::Offset,
    limit: u64,
) -> Result<Vec<Event>, StateError> {
    let most_scanned = hub.limits.replay_limit.max(limit) * 50;
    let (mut found, mut scanned) = (Vec::new(), 0);
    loop {
        let page = hub.store.events_after(since, limit).await?;
        let full = page.len() as u64 == limit;
        scanned += page.len() as u64;
        if let Some(last) = page.last() {
            since = last.offset;
        }
        found.extend(page.into_iter().filter(|e| access.allows(&e.location)));
        if !full || found.len() as u64 >= limit || scanned >= most_scanned {
            found.truncate(limit as usize);
            return Ok(found);
        }
    }
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    location: Option<String>,
    limit: Option<u64>,
}

#[derive(Debug, Serialize)]
struct History {
    location: String,
    history: Vec<HistoryEntry>,
}

/// `GET /api/history?location=&limit=`: the newest alerts for one location.
async fn history(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<History>, ApiError> {
    let location = query.location.unwrap_or_default();
    let location = clean_locations(&[location], 1)?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Invalid("location is required".into()))?;
    caller.limit(&state.hub, Some(vec![location.clone()]))?;
    let limit = bounded(query.limit, 20, MAX_HISTORY)?;
    let history = state.hub.store.history(&location, limit).await?;
    Ok(Json(History { location, history }))
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    locations: Option<String>,
    /// For EventSource polyfills that cannot set the header.
    #[serde(rename = "lastEventId")]
    last_event_id: Option<String>,
}

/// Counts an SSE client while its stream lives.
struct Connected(IntGauge);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `GET /api/stream?locations=a,b`: `event: alert`, `id: <offset>`, data = the event.
/// With `Last-Event-ID` the missed events come first; without it, or when they
/// cannot all be given, an `event: snapshot` (`{epoch, offset, active}`) comes first.
/// A client that falls too far behind has its stream ended, so that it resumes; so does
/// one whose token expires (it reconnects with a fresh one).
async fn stream_events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let hub = state.hub.clone();
    let filter = caller.limit(&hub, location_filter(&hub, query.locations.as_deref())?)?;
    let last_id = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or(query.last_event_id)
        .filter(|id| !id.trim().is_empty());
    let (position, live) = hub.sse_at_position();

    let mut first = Vec::new();
    let replay = match last_id {
        Some(offset) => {
            let since = Since {
                epoch: hub.store.epoch().await?,
                offset: offset.trim().parse().ok(),
            };
            Some(hub.replay(&since, &position, filter.as_deref()).await?)
        }
        None => None,
    };
    match replay {
        Some(replay) if replay.recovered => {
            for event in &replay.missed {
                let data = serde_json::to_string(event).unwrap_or_default();
                first.push(
                    SseEvent::default()
                        .id(event.offset.to_string())
                        .event("alert")
                        .data(data),
                );
            }
        }
        _ => {
            let active = hub.active(filter.as_deref(), &position).await?;
            let snapshot = Snapshot {
                epoch: position.epoch.clone(),
                offset: position.offset,
                active,
                missed: None,
                recovered: None,
            };
            let data = serde_json::to_string(&snapshot).unwrap_or_default();
            let mut event = SseEvent::default().event("snapshot").data(data);
            if let Some(offset) = &position.offset {
                event = event.id(offset.to_string());
            }
            first.push(event);
        }
    }

    let gauge = hub.metrics.clients.with_label_values(&["sse"]);
    gauge.inc();
    let connected = Connected(gauge);
    let deliveries = hub.metrics.deliveries.with_label_values(&["sse"]);
    let slow = hub.metrics.slow_clients.with_label_values(&["sse"]);
    let state = LiveState {
        live,
        filter,
        expires: caller.0.deadline,
        closing: state.closing.clone(),
        deliveries,
        slow,
        _connected: connected,
    };
    let live = stream::unfold(state, |mut state| async move {
        let event = state.next().await?;
        Some((Ok(event), state))
    });
    let stream = stream::iter(first.into_iter().map(Ok)).chain(live);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

struct LiveState {
    live: tokio::sync::broadcast::Receiver<Fanout>,
    filter: Option<Vec<String>>,
    /// When the client's token expires.
    expires: Option<tokio::time::Instant>,
    closing: watch::Receiver<bool>,
    deliveries: prometheus::IntCounter,
    slow: prometheus::IntCounter,
    _connected: Connected,
}

impl LiveState {
    /// The next event for this client; `None` ends the stream.
    async fn next(&mut self) -> Option<SseEvent> {
        let expires = self.expires;
        let expired = async move {
            match expires {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        loop {
            let fanout = tokio::select! {
                _ = self.closing.wait_for(|closing| *closing) => return None,
                () = &mut expired => return None,
                fanout = self.live.recv() => fanout,
            };
            match fanout {
                Ok(Fanout::Event(out)) => {
                    if self
                        .filter
                        .as_ref()
                        .is_some_and(|f| !f.contains(&out.location))
                    {
                        continue;
                    }
                    self.deliveries.inc();
                    return Some(
                        SseEvent::default()
                            .id(out.offset.to_string())
                            .event("alert")
                            .data(out.json.get()),
                    );
                }
                Ok(Fanout::Resync) | Err(RecvError::Closed) => return None,
                Err(RecvError::Lagged(_)) => {
                    // Never skip silently: end the stream; the browser resumes with
                    // Last-Event-ID.
                    self.slow.inc();
                    return None;
                }
            }
        }
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.hub.is_feed_up() {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "live feed down").into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    alert_core::telemetry::metrics_response(&state.hub.metrics.registry)
}
