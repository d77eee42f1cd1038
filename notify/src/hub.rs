//! The state every transport shares: the last position fanned out, the fan-out itself
//! (Socket.IO rooms and the SSE channel) and resume from the event log.

use std::{
    cmp::Ordering,
    collections::HashSet,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering as AtomicOrdering},
    },
    time::Duration,
};

use alert_core::{Event, EventLog, StateError, Window, state::offset_key};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use socketioxide::{SendError, SocketError, SocketIo, extract::SocketRef};
use tokio::sync::broadcast;

use crate::metrics::Metrics;

/// The room of the clients that subscribed to nothing: they receive every event.
/// Locations are non-empty trimmed strings, so no location can be named this.
pub(crate) const ALL_ROOM: &str = "\u{0}all";

/// Events read from the log per request while filling a gap or replaying.
const PAGE: u64 = 500;

/// Orders two offsets numerically; unparsable offsets sort first.
pub(crate) fn compare_offsets(a: &str, b: &str) -> Ordering {
    offset_key(a).cmp(&offset_key(b))
}

/// Orders two optional offsets; `None` (nothing fanned out yet) comes first.
fn compare_positions(a: &Option<String>, b: &Option<String>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => compare_offsets(a, b),
        (a, b) => a.is_some().cmp(&b.is_some()),
    }
}

/// Open windows, shared between the clients that asked at the same position.
#[derive(Debug, Clone, Default)]
pub(crate) struct Windows(pub(crate) Arc<Vec<Window>>);

impl Serialize for Windows {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.as_slice().serialize(serializer)
    }
}

/// Where the fan-out stands: the epoch and offset of the last event sent to clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Position {
    pub(crate) epoch: Option<String>,
    pub(crate) offset: Option<String>,
}

/// A client's resume point: the last event it has seen.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Since {
    #[serde(default)]
    pub(crate) epoch: Option<String>,
    pub(crate) offset: String,
}

/// The answer to a resume: the events after `since` (up to the fan-out position), or
/// `recovered: false` when they cannot all be given and the snapshot is the truth.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub(crate) missed: Vec<Event>,
    pub(crate) recovered: bool,
}

/// One event as the transports send it: serialised once, shared by every client.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) location: String,
    pub(crate) offset: String,
    pub(crate) json: Box<RawValue>,
}

/// What the SSE streams receive.
#[derive(Debug, Clone)]
pub(crate) enum Fanout {
    Event(Arc<Outgoing>),
    /// Events were lost for good (the log was trimmed past the feed): every client
    /// must resynchronise from a snapshot.
    Resync,
}

#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_locations: usize,
    pub(crate) replay_limit: u64,
}

pub(crate) struct Hub {
    pub(crate) store: Arc<dyn EventLog>,
    pub(crate) io: SocketIo,
    pub(crate) metrics: Metrics,
    pub(crate) limits: Limits,
    position: RwLock<Position>,
    sse: broadcast::Sender<Fanout>,
    feed_up: AtomicBool,
    /// Every open window, and the fan-out offset before it was read.
    all_active: tokio::sync::Mutex<Option<(Option<String>, Windows)>>,
}

impl Hub {
    pub(crate) fn new(
        store: Arc<dyn EventLog>,
        io: SocketIo,
        limits: Limits,
        sse_buffer: usize,
    ) -> Hub {
        Hub {
            store,
            io,
            metrics: Metrics::new(),
            limits,
            position: RwLock::new(Position::default()),
            sse: broadcast::channel(sse_buffer.max(16)).0,
            feed_up: AtomicBool::new(false),
            all_active: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) fn position(&self) -> Position {
        self.position.read().expect("position lock").clone()
    }

    pub(crate) fn set_position(&self, position: Position) {
        *self.position.write().expect("position lock") = position;
    }

    pub(crate) fn is_feed_up(&self) -> bool {
        self.feed_up.load(AtomicOrdering::SeqCst)
    }

    pub(crate) fn set_feed_up(&self, up: bool) {
        self.feed_up.store(up, AtomicOrdering::SeqCst);
        self.metrics.feed_up.set(i64::from(up));
    }

    /// Runs `join` (joining rooms, subscribing to the SSE channel) while no event is
    /// being fanned out, and returns the position at that instant: every event after
    /// it reaches what `join` registered, every event up to it must come from the log.
    pub(crate) fn join_at_position<T>(&self, join: impl FnOnce() -> T) -> (Position, T) {
        let position = self.position.read().expect("position lock");
        let joined = join();
        (position.clone(), joined)
    }

    pub(crate) fn sse_receiver(&self) -> broadcast::Receiver<Fanout> {
        self.sse.subscribe()
    }

    /// Fans `event` out unless it was already sent (offset not after the position).
    /// Returns whether it was sent.
    pub(crate) fn publish(&self, event: &Event) -> bool {
        let mut position = self.position.write().expect("position lock");
        if let Some(last) = &position.offset
            && compare_offsets(&event.offset, last) != Ordering::Greater
        {
            return false;
        }
        let json = match serde_json::value::to_raw_value(event) {
            Ok(json) => json,
            Err(error) => {
                tracing::error!(%error, offset = %event.offset, "cannot serialise an event");
                return false;
            }
        };
        let mut delivered = 0u64;
        for socket in self
            .io
            .to([event.location.clone(), ALL_ROOM.to_owned()])
            .sockets()
        {
            match socket.emit("alert", &json) {
                Ok(()) => delivered += 1,
                Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                    self.evict_slow(socket);
                }
                Err(SendError::Socket(SocketError::Closed)) => {}
                Err(error) => tracing::warn!(%error, sid = %socket.id, "cannot emit an event"),
            }
        }
        self.metrics
            .deliveries
            .with_label_values(&["socketio"])
            .inc_by(delivered);
        let _ = self.sse.send(Fanout::Event(Arc::new(Outgoing {
            location: event.location.clone(),
            offset: event.offset.clone(),
            json,
        })));
        position.offset = Some(event.offset.clone());
        position.epoch = Some(event.epoch.clone());
        drop(position);
        self.metrics
            .events_in
            .with_label_values(&[event.event_type.as_str()])
            .inc();
        let lag = (Utc::now() - event.created_at)
            .num_microseconds()
            .unwrap_or(0);
        self.metrics.feed_lag.observe(lag.max(0) as f64 / 1e6);
        tracing::debug!(
            event_id = %event.id,
            alert_id = ?event.alert_id,
            offset = %event.offset,
            location = %event.location,
            delivered,
            "event fanned out"
        );
        true
    }

    /// A client whose send buffer is full is taken out of every room at once (it gets
    /// nothing more, so what it has is a gap-free prefix) and disconnected as soon as
    /// its buffer has room for the disconnect packet; it then resumes with `since`.
    pub(crate) fn evict_slow(&self, socket: SocketRef) {
        socket.leave_all();
        self.metrics
            .slow_clients
            .with_label_values(&["socketio"])
            .inc();
        tracing::warn!(sid = %socket.id, "client too slow for its events; disconnecting it");
        tokio::spawn(async move {
            // Engine.IO's heartbeat closes a client that takes nothing within its ping
            // timeout, so this ends either way.
            for _ in 0..600 {
                if !socket.connected() {
                    return;
                }
                match socket.clone().disconnect() {
                    Err(SocketError::InternalChannelFull) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    _ => return,
                }
            }
        });
    }

    /// Every client must resynchronise: Socket.IO clients are disconnected (they
    /// reconnect with `since` and get `recovered: false` and a snapshot), SSE streams end.
    pub(crate) async fn resync_all(&self) {
        tracing::error!("the feed fell behind the retained event log; every client resynchronises");
        let _ = self.sse.send(Fanout::Resync);
        if let Err(error) = self.io.disconnect().await {
            tracing::warn!(%error, "cannot disconnect every client");
        }
    }

    /// Open windows for `locations` (all when `None`), at least as new as `at`.
    ///
    /// Windows change only through events, so the answer for all locations is
    /// shared by every request whose position it covers: a reconnect storm of
    /// default clients costs one state read per event, not one per client.
    pub(crate) async fn active(
        &self,
        locations: Option<&[String]>,
        at: &Position,
    ) -> Result<Windows, StateError> {
        if locations.is_some() {
            return Ok(Windows(Arc::new(self.store.active(locations).await?)));
        }
        let mut cached = self.all_active.lock().await;
        if let Some((read_at, windows)) = &*cached
            && compare_positions(read_at, &at.offset) != Ordering::Less
        {
            return Ok(windows.clone());
        }
        // Whatever the state holds now is at least as new as this position.
        let read_at = self.position().offset;
        let windows = Windows(Arc::new(self.store.active(None).await?));
        *cached = Some((read_at, windows.clone()));
        Ok(windows)
    }

    /// The events after `since` up to `upto` (the position at which the client joined
    /// the live feed), for `locations` (all when `None`).
    pub(crate) async fn replay(
        &self,
        since: &Since,
        upto: &Position,
        locations: Option<&[String]>,
    ) -> Result<Replay, StateError> {
        let lost = Replay {
            missed: Vec::new(),
            recovered: false,
        };
        let epoch = self.store.epoch().await?;
        if since.epoch.is_none() || since.epoch != epoch {
            return Ok(lost);
        }
        if offset_key(&since.offset).is_none() {
            return Ok(lost);
        }
        let Some(upto) = upto.offset.as_deref() else {
            // Nothing fanned out yet: nothing to miss.
            return Ok(Replay {
                missed: Vec::new(),
                recovered: true,
            });
        };
        if compare_offsets(&since.offset, upto) != Ordering::Less {
            return Ok(Replay {
                missed: Vec::new(),
                recovered: true,
            });
        }
        match self.store.log_bounds().await? {
            Some((oldest, _)) if compare_offsets(&since.offset, &oldest) != Ordering::Less => {}
            _ => return Ok(lost), // trimmed past the client's position
        }
        let wanted: Option<HashSet<&str>> =
            locations.map(|l| l.iter().map(String::as_str).collect());
        let mut missed = Vec::new();
        let mut from = since.offset.clone();
        let mut scanned = 0u64;
        'pages: loop {
            let page = self.store.events_after(&from, PAGE).await?;
            let full = page.len() as u64 == PAGE;
            for event in page {
                if compare_offsets(&event.offset, upto) == Ordering::Greater {
                    break 'pages;
                }
                from = event.offset.clone();
                scanned += 1;
                if wanted
                    .as_ref()
                    .is_none_or(|w| w.contains(event.location.as_str()))
                {
                    missed.push(event);
                }
                if missed.len() as u64 > self.limits.replay_limit
                    || scanned > self.limits.replay_limit.max(PAGE) * 50
                {
                    return Ok(lost); // too much to replay: the snapshot is cheaper
                }
            }
            if !full {
                break;
            }
        }
        Ok(Replay {
            missed,
            recovered: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_compare_as_numbers_not_strings() {
        assert_eq!(compare_offsets("9-0", "10-0"), Ordering::Less);
        assert_eq!(compare_offsets("10-2", "10-10"), Ordering::Less);
        assert_eq!(compare_offsets("10-10", "10-10"), Ordering::Equal);
        assert_eq!(compare_offsets("11-0", "10-99"), Ordering::Greater);
        assert_eq!(offset_key("junk"), None);
    }
}
