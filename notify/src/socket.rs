//! The Socket.IO protocol (ARCHITECTURE.md, "Client contract"): `snapshot` on
//! connect, `subscribe` / `unsubscribe` with acks, the same fields in the handshake
//! `auth`, one room per location plus [`ALL_ROOM`] for clients that chose nothing.
//!
//! socketioxide acknowledges the connect before it runs the connect handler (in a task
//! of its own), and a client may send `subscribe` the instant it has the ack. So the
//! socket's event handlers are registered in the handshake middleware, which runs
//! before the ack: none is dropped for arriving early. Joins of one socket (the connect's snapshot, then each
//! subscribe, each unsubscribe) run one at a time, in the order they arrived, so each
//! reply is followed only by events newer than it.
//!
//! With authentication ([`crate::auth`]) the handshake also checks the token
//! (`auth.token`, else the cookie) into a [`Session`]: the locations the socket may
//! read, and a deadline at which its transport is closed (never a DISCONNECT: stock
//! clients reconnect, with a fresh token when `auth` is a function) unless an `auth`
//! event brings a fresh token first. A client limited to some locations that subscribes
//! to nothing gets those, not everything.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex as StdMutex},
};

use alert_core::{Event, LocationError};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use socketioxide::{
    ParserError, SendError, SocketError,
    extract::{AckSender, SocketRef, TryData},
    handler::ConnectHandler,
    socket::{DisconnectReason, Sid},
};
use tokio::{
    sync::{Mutex, OwnedMutexGuard},
    time::Instant,
};

use crate::{
    auth::{Access, Auth, AuthError, CookieToken, Grant},
    hub::{Hub, Joining, Since, Windows},
};

/// The handshake `auth` object, and the `subscribe` payload.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Subscription {
    #[serde(default)]
    pub(crate) locations: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) since: Option<Since>,
    /// The JWT, in the handshake only (with `CLIENT_AUTH=jwt`).
    #[serde(default)]
    pub(crate) token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Unsubscribe {
    locations: Vec<String>,
}

/// The `auth` event: a fresh token before the current one expires.
#[derive(Debug, Deserialize)]
struct Reauthenticate {
    token: String,
}

/// The `auth` ack.
#[derive(Debug, Serialize)]
struct Reauthenticated {
    ok: bool,
    exp: Option<u64>,
}

/// `snapshot` on connect, and the `subscribe` ack.
#[derive(Debug, Serialize)]
pub(crate) struct Snapshot {
    pub(crate) epoch: Option<String>,
    pub(crate) offset: Option<alert_core::Offset>,
    pub(crate) active: Windows,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) missed: Option<Vec<Event>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) recovered: Option<bool>,
}

#[derive(Debug, Serialize)]
struct ErrorAck {
    error: String,
}

/// Why a subscription is refused; the text is what the client is told.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SubscriptionError {
    /// Not the shape of a `subscribe` / `unsubscribe` payload.
    #[error("invalid {event} payload: {error}")]
    Payload {
        event: &'static str,
        error: ParserError,
    },
    #[error(transparent)]
    Location(#[from] LocationError),
    /// Over the limit of locations per client.
    #[error("at most {0} locations per client")]
    TooMany(usize),
    /// A location the client's token does not allow.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Over `SUBSCRIBES_PER_SECOND`: nothing changed; retry after the wait.
    #[error("too many subscribe/unsubscribe calls; retry in {} ms", .0.as_millis())]
    TooFast(std::time::Duration),
}

/// A client's budget of `subscribe` / `unsubscribe` calls, checked before the call
/// waits for its turn, so that a flood is answered at once and queues nothing.
#[derive(Clone)]
struct Calls(
    Option<(
        alert_core::RateLimit,
        Arc<StdMutex<alert_core::TokenBucket>>,
    )>,
);

impl Calls {
    fn new(limit: Option<alert_core::RateLimit>) -> Calls {
        Calls(limit.map(|limit| {
            let bucket = alert_core::TokenBucket::full(limit, std::time::Instant::now());
            (limit, Arc::new(StdMutex::new(bucket)))
        }))
    }

    fn take(&self, hub: &Hub) -> Result<(), SubscriptionError> {
        let Some((limit, bucket)) = &self.0 else {
            return Ok(());
        };
        let taken = lock(bucket).take(1.0, *limit, std::time::Instant::now());
        taken.map_err(|wait| {
            hub.metrics.limited.with_label_values(&["subscribes"]).inc();
            SubscriptionError::TooFast(wait)
        })
    }
}

/// Why a handshake (or an `auth` event) is refused: the `connect_error` (or the error
/// ack) the client sees.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("invalid auth: {0}")]
    Auth(#[from] ParserError),
    #[error(transparent)]
    Subscription(#[from] SubscriptionError),
    /// No token, or a bad or expired one.
    #[error(transparent)]
    Token(#[from] AuthError),
}

/// What one socket was granted (only with authentication).
struct Session {
    auth: Arc<Auth>,
    access: StdMutex<Access>,
    /// When its token stops being accepted (as entered in the hub's expiries).
    deadline: StdMutex<Option<Instant>>,
}

impl Session {
    fn new(auth: Arc<Auth>, grant: Grant) -> Session {
        Session {
            auth,
            access: StdMutex::new(grant.access),
            deadline: StdMutex::new(grant.deadline),
        }
    }

    /// Moves the socket's deadline to `new` (`None`: the socket has gone).
    fn set_deadline(&self, hub: &Hub, sid: Sid, new: Option<Instant>) {
        let mut deadline = lock(&self.deadline);
        hub.expiries.set(sid, *deadline, new);
        *deadline = new;
    }
}

/// What `socket` may read: everything without authentication.
fn access_of(session: Option<&Session>) -> Access {
    session.map_or(Access::All, |session| lock(&session.access).clone())
}

/// Checks (core's one location rule), trims and dedupes requested locations.
pub(crate) fn clean_locations(
    requested: &[String],
    max: usize,
) -> Result<BTreeSet<String>, SubscriptionError> {
    let mut locations = BTreeSet::new();
    for location in requested {
        locations.insert(alert_core::clean_location(location)?.to_owned());
    }
    if locations.len() > max {
        return Err(SubscriptionError::TooMany(max));
    }
    Ok(locations)
}

fn as_filter(locations: &BTreeSet<String>) -> Option<Vec<String>> {
    (!locations.is_empty()).then(|| locations.iter().cloned().collect())
}

/// Serialises a reply once, outside the fan-out lock.
fn encode<T: Serialize>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("replies serialise")
}

/// A send's outcome as the hub reads it: serialisation cannot fail for raw JSON.
fn sent(result: Result<(), SendError>) -> Result<(), SocketError> {
    match result {
        Ok(()) => Ok(()),
        Err(SendError::Socket(error)) => Err(error),
        Err(error) => {
            tracing::warn!(%error, "cannot encode a reply");
            Ok(())
        }
    }
}

/// What the handshake middleware leaves for the connect handler.
struct Connecting {
    first_turn: OwnedMutexGuard<()>,
    joining: Joining,
    locations: BTreeSet<String>,
    since: Option<Since>,
}

/// Registers the default namespace.
pub(crate) fn register(hub: Arc<Hub>, auth: Arc<Auth>) {
    tokio::spawn(Hub::run_drain(Arc::downgrade(&hub)));
    tokio::spawn(crate::expiry::Expiries::run(Arc::downgrade(&hub)));
    let io = hub.io.clone();
    let connecting = Arc::new(StdMutex::new(HashMap::<Sid, Connecting>::new()));
    let on_handshake = (hub.clone(), auth, connecting.clone());
    // socketioxide awaits the middleware before it acknowledges the connect, and spawns
    // the connect handler after: the middleware is where the socket is set up.
    let check = move |socket: SocketRef, TryData(handshake): TryData<Subscription>| {
        let (hub, auth, connecting) = on_handshake.clone();
        async move {
            // A bad handshake is refused with a `connect_error` the client sees; stock
            // clients do not retry that by themselves (no reconnect storm).
            let handshake = handshake?;
            let cookie = socket.req_parts().extensions.get::<CookieToken>();
            let token = handshake
                .token
                .as_deref()
                .or(cookie.map(|cookie| &*cookie.0));
            let grant = auth
                .grant(token)
                .await
                .map_err(|error| hub.metrics.refused(error))?;
            let requested = clean_locations(
                handshake.locations.as_deref().unwrap_or_default(),
                hub.limits.max_locations,
            )?;
            grant
                .access
                .check(&requested)
                .map_err(|error| hub.metrics.refused(error))?;
            let locations = match requested.is_empty() {
                true => grant.access.nothing_subscribed(),
                false => requested,
            };
            let session = auth
                .is_required()
                .then(|| Arc::new(Session::new(auth.clone(), grant)));
            let set_up = set_up(&hub, &socket, locations, handshake.since, session);
            lock(&connecting).insert(socket.id, set_up);
            Ok::<(), HandshakeError>(())
        }
    };
    let connect = move |socket: SocketRef| {
        let (hub, connecting) = (hub.clone(), connecting.clone());
        async move {
            let Some(set_up) = lock(&connecting).remove(&socket.id) else {
                return;
            };
            let _turn = set_up.first_turn;
            let since = set_up.since.as_ref();
            send_snapshot(&hub, &socket, set_up.joining, &set_up.locations, since).await;
        }
    };
    io.ns("/", connect.with(check));
}

fn lock<T>(mutex: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().expect("connecting lock")
}

/// Registers the socket's handlers and holds it for its snapshot, before the client
/// knows it is connected (see the module docs).
fn set_up(
    hub: &Arc<Hub>,
    socket: &SocketRef,
    locations: BTreeSet<String>,
    since: Option<Since>,
    session: Option<Arc<Session>>,
) -> Connecting {
    let gauge = hub.metrics.clients.with_label_values(&["socketio"]);
    gauge.inc();
    let (on_disconnect, gone) = (hub.clone(), session.clone());
    socket.on_disconnect(
        move |socket: SocketRef, reason: DisconnectReason| async move {
            gauge.dec();
            on_disconnect.forget(socket.id);
            if let Some(session) = gone {
                session.set_deadline(&on_disconnect, socket.id, None);
            }
            tracing::debug!(sid = %socket.id, ?reason, "client disconnected");
        },
    );
    // One join at a time per socket; the connect's snapshot takes the first turn now,
    // before any subscribe can.
    let turns = Arc::new(Mutex::new(()));
    let first_turn = turns.clone().try_lock_owned().expect("a new lock is free");
    let calls = Calls::new(hub.limits.subscribes);
    let (on_subscribe, subscribe_turns) = (hub.clone(), turns.clone());
    let (subscriber, subscribe_calls) = (session.clone(), calls.clone());
    socket.on(
        "subscribe",
        move |socket: SocketRef, TryData(request): TryData<Subscription>, ack: AckSender| {
            let (hub, turns) = (on_subscribe.clone(), subscribe_turns.clone());
            let session = subscriber.clone();
            let allowed = subscribe_calls.take(&hub);
            async move {
                if let Err(error) = allowed {
                    return reply_error(ack, error);
                }
                let _turn = turns.lock().await;
                match request {
                    Ok(request) => {
                        let access = access_of(session.as_deref());
                        subscribe(&hub, &socket, &access, request, ack).await
                    }
                    Err(error) => {
                        let event = "subscribe";
                        reply_error(ack, SubscriptionError::Payload { event, error })
                    }
                }
            }
        },
    );
    let (on_unsubscribe, unsubscribe_turns) = (hub.clone(), turns.clone());
    let unsubscriber = session.clone();
    socket.on(
        "unsubscribe",
        move |socket: SocketRef, TryData(request): TryData<Unsubscribe>, ack: AckSender| {
            let (hub, turns) = (on_unsubscribe.clone(), unsubscribe_turns.clone());
            let nothing = access_of(unsubscriber.as_deref()).nothing_subscribed();
            let allowed = calls.take(&hub);
            async move {
                if let Err(error) = allowed {
                    return reply_error(ack, error);
                }
                let _turn = turns.lock().await;
                let request = match request {
                    Ok(request) => request,
                    Err(error) => {
                        let event = "unsubscribe";
                        return reply_error(ack, SubscriptionError::Payload { event, error });
                    }
                };
                let gone: Vec<String> = request
                    .locations
                    .iter()
                    .map(|l| l.trim().to_owned())
                    .collect();
                let remaining = hub.unsubscribe(&socket, &gone, &nothing);
                if let Err(error) = ack.send(&serde_json::json!({ "locations": remaining })) {
                    tracing::debug!(%error, sid = %socket.id, "cannot answer unsubscribe");
                }
            }
        },
    );
    if let Some(session) = &session {
        watch_token(hub, socket, session, turns);
    }
    let joining = hub.hold_for_join(socket, locations.clone());
    Connecting {
        first_turn,
        joining,
        locations,
        since,
    }
}

/// With authentication: the `auth` event (a fresh token moves the deadline), and the
/// deadline entered where the hub's expiry task finds it.
fn watch_token(hub: &Arc<Hub>, socket: &SocketRef, session: &Arc<Session>, turns: Arc<Mutex<()>>) {
    let (on_auth, auth_session) = (hub.clone(), session.clone());
    socket.on(
        "auth",
        move |socket: SocketRef, TryData(request): TryData<Reauthenticate>, ack: AckSender| {
            let (hub, session, turns) = (on_auth.clone(), auth_session.clone(), turns.clone());
            async move {
                // In turn with subscriptions: the new access must cover the rooms.
                let _turn = turns.lock().await;
                let sent = match reauthenticate(&hub, &socket, &session, request).await {
                    Ok(exp) => ack.send(&Reauthenticated { ok: true, exp }),
                    Err(error) => ack.send(&ErrorAck {
                        error: error.to_string(),
                    }),
                };
                if let Err(error) = sent {
                    tracing::debug!(%error, sid = %socket.id, "cannot answer auth");
                }
            }
        },
    );
    hub.expiries.set(socket.id, None, *lock(&session.deadline));
}

async fn reauthenticate(
    hub: &Hub,
    socket: &SocketRef,
    session: &Session,
    request: Result<Reauthenticate, ParserError>,
) -> Result<Option<u64>, HandshakeError> {
    let request = request?;
    let grant = session
        .auth
        .grant(Some(&request.token))
        .await
        .map_err(|error| hub.metrics.refused(error))?;
    if !grant.access.covers(&hub.locations_of(socket)) {
        return Err(hub.metrics.refused(AuthError::Narrower).into());
    }
    *lock(&session.access) = grant.access;
    session.set_deadline(hub, socket.id, grant.deadline);
    Ok(grant.exp)
}

async fn send_snapshot(
    hub: &Hub,
    socket: &SocketRef,
    joining: Joining,
    locations: &BTreeSet<String>,
    since: Option<&Since>,
) {
    match read_snapshot(hub, &joining, locations, since).await {
        Ok(snapshot) => {
            let snapshot = encode(&snapshot);
            hub.finish_join(socket, joining, || sent(socket.emit("snapshot", &snapshot)));
        }
        Err(error) => {
            // Without a snapshot the client could miss an open alert: let it reconnect,
            // most likely to a pod whose state backend is healthy.
            tracing::warn!(%error, sid = %socket.id, "cannot build a snapshot; closing the transport");
            hub.forget(socket.id);
            socket.close_transport();
        }
    }
}

/// The open windows for `locations` (all when empty) at the join, and with `since` the
/// events missed up to it.
async fn read_snapshot(
    hub: &Hub,
    joining: &Joining,
    locations: &BTreeSet<String>,
    since: Option<&Since>,
) -> Result<Snapshot, alert_core::StateError> {
    let filter = as_filter(locations);
    let position = &joining.position;
    let active = hub.active(filter.as_deref(), position).await?;
    let (missed, recovered) = match since {
        Some(since) => {
            let replay = hub.replay(since, position, filter.as_deref()).await?;
            (Some(replay.missed), Some(replay.recovered))
        }
        None => (None, None),
    };
    Ok(Snapshot {
        epoch: position.epoch.clone(),
        offset: position.offset,
        active,
        missed,
        recovered,
    })
}

fn reply_error(ack: AckSender, error: SubscriptionError) {
    let error = error.to_string();
    if let Err(error) = ack.send(&ErrorAck { error }) {
        tracing::debug!(%error, "cannot answer a request");
    }
}

async fn subscribe(
    hub: &Hub,
    socket: &SocketRef,
    access: &Access,
    request: Subscription,
    ack: AckSender,
) {
    let requested = match clean_locations(
        request.locations.as_deref().unwrap_or_default(),
        hub.limits.max_locations,
    ) {
        Ok(requested) => requested,
        Err(error) => return reply_error(ack, error),
    };
    if let Err(error) = access.check(&requested) {
        return reply_error(ack, hub.metrics.refused(error).into());
    }
    // A limited client that chose nothing is in the rooms of all it may read: what it
    // chooses now replaces them, as it replaces "everything" for the others.
    let nothing = access.nothing_subscribed();
    let mut locations = hub.locations_of(socket);
    if locations == nothing {
        locations.clear();
    }
    locations.extend(requested);
    if locations.len() > hub.limits.max_locations {
        return reply_error(ack, SubscriptionError::TooMany(hub.limits.max_locations));
    }
    if locations.is_empty() {
        locations = nothing;
    }
    let joining = hub.hold_for_join(socket, locations.clone());
    let snapshot = read_snapshot(hub, &joining, &locations, request.since.as_ref()).await;
    let reply = match snapshot {
        Ok(mut snapshot) => {
            // Without `since` nothing was resumed: the snapshot is the truth.
            snapshot.missed.get_or_insert_with(Vec::new);
            snapshot.recovered.get_or_insert(false);
            encode(&snapshot)
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the state for a subscribe");
            encode(&ErrorAck {
                error: "temporarily unavailable; retry".into(),
            })
        }
    };
    hub.finish_join(socket, joining, || sent(ack.send(&reply)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::ALL_ROOM;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn locations_are_trimmed_deduped_and_bounded() {
        let clean = clean_locations(&strings(&[" Haifa ", "Haifa", "Eilat"]), 2).unwrap();
        assert_eq!(clean.into_iter().collect::<Vec<_>>(), ["Eilat", "Haifa"]);
        assert!(clean_locations(&strings(&["A", "B", "C"]), 2).is_err());
        assert!(clean_locations(&strings(&["  "]), 2).is_err());
        assert!(clean_locations(&["x".repeat(129)], 2).is_err());
        assert!(clean_locations(&[], 2).unwrap().is_empty());
    }

    #[test]
    fn no_location_can_be_the_everything_room() {
        assert!(clean_locations(&[ALL_ROOM.to_owned()], 2).is_err());
    }
}
