//! The Socket.IO protocol (ARCHITECTURE.md, "Client contract"): `snapshot` on
//! connect, `subscribe` / `unsubscribe` with acks, the same fields in the handshake
//! `auth`, one room per location plus [`ALL_ROOM`] for clients that chose nothing.

use std::{collections::BTreeSet, sync::Arc};

use alert_core::Event;
use serde::{Deserialize, Serialize};
use socketioxide::{
    extract::{AckSender, SocketRef, TryData},
    handler::ConnectHandler,
    socket::DisconnectReason,
};

use crate::hub::{ALL_ROOM, Hub, Since, Windows};

/// Longest location name (the ingest contract's limit).
const MAX_LOCATION_CHARS: usize = 128;

/// The handshake `auth` object, and the `subscribe` payload.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Subscription {
    #[serde(default)]
    pub(crate) locations: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) since: Option<Since>,
}

#[derive(Debug, Deserialize)]
struct Unsubscribe {
    locations: Vec<String>,
}

/// `snapshot` on connect, and the `subscribe` ack.
#[derive(Debug, Serialize)]
pub(crate) struct Snapshot {
    pub(crate) epoch: Option<String>,
    pub(crate) offset: Option<String>,
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

/// Trims, checks and dedupes requested locations.
pub(crate) fn clean_locations(
    requested: &[String],
    max: usize,
) -> Result<BTreeSet<String>, String> {
    let mut locations = BTreeSet::new();
    for location in requested {
        let location = location.trim();
        if location.is_empty() {
            return Err("a location must not be empty".into());
        }
        if location.chars().any(char::is_control) {
            return Err("a location must not contain control characters".into());
        }
        if location.chars().count() > MAX_LOCATION_CHARS {
            return Err(format!(
                "a location is at most {MAX_LOCATION_CHARS} characters"
            ));
        }
        locations.insert(location.to_owned());
    }
    if locations.len() > max {
        return Err(format!("at most {max} locations per client"));
    }
    Ok(locations)
}

/// The locations a socket is subscribed to (its rooms, less the everything room).
fn subscribed(socket: &SocketRef) -> BTreeSet<String> {
    socket
        .rooms()
        .into_iter()
        .filter(|room| room != ALL_ROOM)
        .map(|room| room.into_owned())
        .collect()
}

/// Puts `socket` in the rooms of `locations`, or in [`ALL_ROOM`] when there are none.
fn set_rooms(socket: &SocketRef, locations: &BTreeSet<String>) {
    if locations.is_empty() {
        socket.join(ALL_ROOM);
    } else {
        socket.leave(ALL_ROOM);
        socket.join(locations.iter().cloned().collect::<Vec<_>>());
    }
}

fn as_filter(locations: &BTreeSet<String>) -> Option<Vec<String>> {
    (!locations.is_empty()).then(|| locations.iter().cloned().collect())
}

/// Registers the default namespace.
pub(crate) fn register(hub: Arc<Hub>) {
    let io = hub.io.clone();
    let max = hub.limits.max_locations;
    // A bad handshake is refused with a `connect_error` the client sees; stock
    // clients do not retry that by themselves (no reconnect storm).
    let check = move |TryData(auth): TryData<Subscription>| async move {
        let auth = auth.map_err(|e| format!("invalid auth: {e}"))?;
        clean_locations(auth.locations.as_deref().unwrap_or_default(), max).map(|_| ())
    };
    let connect = move |socket: SocketRef, TryData(auth): TryData<Subscription>| {
        let hub = hub.clone();
        async move { on_connect(hub, socket, auth.unwrap_or_default()).await }
    };
    io.ns("/", connect.with(check));
}

async fn on_connect(hub: Arc<Hub>, socket: SocketRef, auth: Subscription) {
    let gauge = hub.metrics.clients.with_label_values(&["socketio"]);
    gauge.inc();
    socket.on_disconnect(
        move |socket: SocketRef, reason: DisconnectReason| async move {
            gauge.dec();
            tracing::debug!(sid = %socket.id, ?reason, "client disconnected");
        },
    );
    let on_subscribe = hub.clone();
    socket.on(
        "subscribe",
        move |socket: SocketRef, TryData(request): TryData<Subscription>, ack: AckSender| {
            let hub = on_subscribe.clone();
            async move {
                let reply = match request {
                    Ok(request) => subscribe(&hub, &socket, request).await,
                    Err(error) => Err(format!("invalid subscribe payload: {error}")),
                };
                let sent = match reply {
                    Ok(snapshot) => ack.send(&snapshot),
                    Err(error) => ack.send(&ErrorAck { error }),
                };
                if let Err(error) = sent {
                    tracing::debug!(%error, sid = %socket.id, "cannot answer subscribe");
                }
            }
        },
    );
    socket.on(
        "unsubscribe",
        move |socket: SocketRef, TryData(request): TryData<Unsubscribe>, ack: AckSender| async move {
            let sent = match request {
                Ok(request) => {
                    let gone: Vec<String> = request.locations.iter().map(|l| l.trim().to_owned()).collect();
                    socket.leave(gone);
                    let remaining = subscribed(&socket);
                    set_rooms(&socket, &remaining);
                    ack.send(&serde_json::json!({ "locations": remaining }))
                }
                Err(error) => ack.send(&ErrorAck { error: format!("invalid unsubscribe payload: {error}") }),
            };
            if let Err(error) = sent {
                tracing::debug!(%error, sid = %socket.id, "cannot answer unsubscribe");
            }
        },
    );

    let locations = clean_locations(
        auth.locations.as_deref().unwrap_or_default(),
        hub.limits.max_locations,
    )
    .unwrap_or_default();
    let (position, ()) = hub.join_at_position(|| set_rooms(&socket, &locations));
    let filter = as_filter(&locations);
    let snapshot = async {
        let active = hub.active(filter.as_deref(), &position).await?;
        let (missed, recovered) = match &auth.since {
            Some(since) => {
                let replay = hub.replay(since, &position, filter.as_deref()).await?;
                (Some(replay.missed), Some(replay.recovered))
            }
            None => (None, None),
        };
        Ok::<_, alert_core::StateError>(Snapshot {
            epoch: position.epoch.clone(),
            offset: position.offset.clone(),
            active,
            missed,
            recovered,
        })
    };
    match snapshot.await {
        Ok(snapshot) => {
            if let Err(error) = socket.emit("snapshot", &snapshot) {
                tracing::debug!(%error, sid = %socket.id, "cannot send the snapshot");
            }
        }
        Err(error) => {
            // Without a snapshot the client could miss an open alert: let it retry,
            // most likely on a pod whose state backend is healthy.
            tracing::warn!(%error, sid = %socket.id, "cannot build a snapshot; disconnecting");
            let _ = socket.disconnect();
        }
    }
}

async fn subscribe(
    hub: &Hub,
    socket: &SocketRef,
    request: Subscription,
) -> Result<Snapshot, String> {
    let requested = clean_locations(
        request.locations.as_deref().unwrap_or_default(),
        hub.limits.max_locations,
    )?;
    let mut locations = subscribed(socket);
    locations.extend(requested);
    if locations.len() > hub.limits.max_locations {
        return Err(format!(
            "at most {} locations per client",
            hub.limits.max_locations
        ));
    }
    let (position, ()) = hub.join_at_position(|| set_rooms(socket, &locations));
    let filter = as_filter(&locations);
    let unavailable = |error: alert_core::StateError| {
        tracing::warn!(%error, "cannot read the state for a subscribe");
        "temporarily unavailable; retry".to_owned()
    };
    let active = hub
        .active(filter.as_deref(), &position)
        .await
        .map_err(unavailable)?;
    let replay = match &request.since {
        Some(since) => hub
            .replay(since, &position, filter.as_deref())
            .await
            .map_err(unavailable)?,
        None => Default::default(),
    };
    Ok(Snapshot {
        epoch: position.epoch,
        offset: position.offset,
        active,
        missed: Some(replay.missed),
        recovered: Some(replay.recovered),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
