//! The state every transport shares: the last position fanned out, the fan-out itself
//! (Socket.IO rooms and the SSE channel) and resume from the event log.
//!
//! # Order per client
//! A Socket.IO client receives, after connect or subscribe, its `snapshot` (or the
//! subscribe ack, with `missed`) first, then live events strictly newer than its
//! offset, in offset order, none twice and none skipped. Two things would break that if
//! events went straight to the rooms, and both are handled by *holding* the socket:
//! taking it out of its rooms and queueing its events here, in order, under the same
//! lock that orders the fan-out:
//! - **Joining**: between the instant a client joins (its snapshot's position) and the
//!   instant its snapshot is sent, newer events would overtake the snapshot.
//! - **Behind**: a client whose send buffer is full would have to skip events. It is
//!   held instead, and a drain task hands it the queue as its buffer empties; a client
//!   that was keeping up catches up from a burst (a gap filled after a Redis outage)
//!   without noticing. Only when its queue passes `backlog` is its transport closed:
//!   stock clients then reconnect by themselves and resume with `since`.

use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicBool, Ordering as AtomicOrdering},
    },
    time::Duration,
};

use alert_core::{Event, EventLog, Offset, StateError, Window};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use socketioxide::{SendError, SocketError, SocketIo, extract::SocketRef, socket::Sid};
use tokio::sync::{Notify, broadcast};

use crate::metrics::Metrics;

/// The room of the clients that subscribed to nothing: they receive every event.
/// Locations are non-empty trimmed strings, so no location can be named this.
pub(crate) const ALL_ROOM: &str = "\u{0}all";

/// Events read from the log per request while filling a gap or replaying.
const PAGE: u64 = 500;

/// How often the queues of clients that are behind are handed on. A client that keeps
/// up empties its send buffer (`CLIENT_BUFFER` packets) in well under this on a LAN.
const DRAIN_INTERVAL: Duration = Duration::from_millis(5);

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
    pub(crate) offset: Option<Offset>,
}

/// A client's resume point: the last event it has seen. An offset that does not parse
/// resumes nothing (`recovered: false`), as an unknown epoch does.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Since {
    #[serde(default)]
    pub(crate) epoch: Option<String>,
    #[serde(deserialize_with = "lenient_offset")]
    pub(crate) offset: Option<Offset>,
}

fn lenient_offset<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Offset>, D::Error> {
    Ok(String::deserialize(d)?.trim().parse().ok())
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
    pub(crate) offset: Offset,
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
    /// `subscribe` / `unsubscribe` calls per client.
    pub(crate) subscribes: Option<alert_core::RateLimit>,
    pub(crate) replay_limit: u64,
    /// Events queued for one held client before its transport is closed.
    pub(crate) backlog: usize,
}

/// Why a socket is out of its rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Its snapshot (or subscribe ack) is being read; it goes first.
    Joining,
    /// Its send buffer was full; the drain task hands on the queue.
    Behind,
}

/// A socket out of its rooms, with the events it must still get, in order.
struct Held {
    socket: SocketRef,
    hold: Hold,
    /// The rooms it returns to; empty: every location ([`ALL_ROOM`]).
    locations: BTreeSet<String>,
    queue: VecDeque<Arc<Outgoing>>,
}

impl Held {
    fn wants(&self, location: &str) -> bool {
        self.locations.is_empty() || self.locations.contains(location)
    }

    /// Sends queued events while the socket's buffer takes them (up to `upto` when
    /// given). `Err` when the buffer filled or the socket closed.
    fn send_queue(&mut self, upto: Option<Offset>, sent: &mut u64) -> Result<(), SocketError> {
        while let Some(out) = self.queue.front() {
            if upto.is_some_and(|upto| out.offset > upto) {
                break;
            }
            match self.socket.emit("alert", &out.json) {
                Ok(()) => *sent += 1,
                Err(SendError::Socket(error)) => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, sid = %self.socket.id, "cannot emit an event");
                }
            }
            self.queue.pop_front();
        }
        Ok(())
    }
}

/// What the fan-out lock guards: the position and the held sockets change together.
struct Fan {
    position: Position,
    held: HashMap<Sid, Held>,
}

/// Puts `socket` in the rooms of `locations`, or in [`ALL_ROOM`] when there are none.
pub(crate) fn set_rooms(socket: &SocketRef, locations: &BTreeSet<String>) {
    if locations.is_empty() {
        socket.join(ALL_ROOM);
    } else {
        socket.leave(ALL_ROOM);
        socket.join(locations.iter().cloned().collect::<Vec<_>>());
    }
}

/// The locations a socket is subscribed to (its rooms, less the everything room).
pub(crate) fn rooms_of(socket: &SocketRef) -> BTreeSet<String> {
    socket
        .rooms()
        .into_iter()
        .filter(|room| room != ALL_ROOM)
        .map(|room| room.into_owned())
        .collect()
}

/// A join in progress: the socket is held from [`Hub::hold_for_join`] until
/// [`Hub::finish_join`] sends its reply.
pub(crate) struct Joining {
    pub(crate) position: Position,
}

pub(crate) struct Hub {
    pub(crate) store: Arc<dyn EventLog>,
    pub(crate) io: SocketIo,
    pub(crate) metrics: Metrics,
    pub(crate) limits: Limits,
    fan: Mutex<Fan>,
    sse: broadcast::Sender<Fanout>,
    feed_up: AtomicBool,
    /// Wakes the drain task when a client falls behind.
    behind: Arc<Notify>,
    /// Every open window, and the fan-out offset before it was read.
    all_active: tokio::sync::Mutex<Option<(Option<Offset>, Windows)>>,
    /// When authenticated sockets' tokens expire.
    pub(crate) expiries: crate::expiry::Expiries,
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
            fan: Mutex::new(Fan {
                position: Position::default(),
                held: HashMap::new(),
            }),
            sse: broadcast::channel(sse_buffer.max(16)).0,
            feed_up: AtomicBool::new(false),
            behind: Arc::new(Notify::new()),
            all_active: tokio::sync::Mutex::new(None),
            expiries: crate::expiry::Expiries::default(),
        }
    }

    fn fan(&self) -> MutexGuard<'_, Fan> {
        self.fan.lock().expect("fan-out lock")
    }

    pub(crate) fn position(&self) -> Position {
        self.fan().position.clone()
    }

    pub(crate) fn set_position(&self, position: Position) {
        self.fan().position = position;
    }

    pub(crate) fn is_feed_up(&self) -> bool {
        self.feed_up.load(AtomicOrdering::SeqCst)
    }

    pub(crate) fn set_feed_up(&self, up: bool) {
        self.feed_up.store(up, AtomicOrdering::SeqCst);
        self.metrics.feed_up.set(i64::from(up));
    }

    /// Subscribes to the SSE channel at the current position: every event after the
    /// returned position reaches the receiver, every event up to it must come from
    /// the log.
    pub(crate) fn sse_at_position(&self) -> (Position, broadcast::Receiver<Fanout>) {
        let fan = self.fan();
        (fan.position.clone(), self.sse.subscribe())
    }

    /// Takes `socket` out of its rooms until [`Hub::finish_join`]: the events after the
    /// returned position are queued for `locations` (all when empty) meanwhile. One
    /// join per socket at a time (the caller serialises them).
    pub(crate) fn hold_for_join(&self, socket: &SocketRef, locations: BTreeSet<String>) -> Joining {
        let mut fan = self.fan();
        socket.leave_all();
        let held = fan.held.entry(socket.id).or_insert_with(|| Held {
            socket: socket.clone(),
            hold: Hold::Joining,
            locations: BTreeSet::new(),
            queue: VecDeque::new(),
        });
        held.hold = Hold::Joining;
        held.locations = locations;
        Joining {
            position: fan.position.clone(),
        }
    }

    /// Sends `reply` (the snapshot, or the subscribe ack), then the events queued since
    /// the join, and puts the socket back in its rooms. Events that were still queued
    /// from before the join (it was behind) go before the reply. A socket whose buffer
    /// cannot take the reply has its transport closed; one that cannot take the queue is
    /// left behind, for the drain task.
    pub(crate) fn finish_join(
        &self,
        socket: &SocketRef,
        joining: Joining,
        reply: impl FnOnce() -> Result<(), SocketError>,
    ) {
        let mut fan = self.fan();
        let Some(mut held) = fan.held.remove(&socket.id) else {
            return; // closed meanwhile, or evicted for its backlog
        };
        let mut sent = 0;
        let upto = joining.position.offset.unwrap_or(Offset::START);
        let outcome = held
            .send_queue(Some(upto), &mut sent)
            .and_then(|()| reply())
            .map_err(|error| (error, true))
            .and_then(|()| held.send_queue(None, &mut sent).map_err(|e| (e, false)));
        self.count_deliveries(sent);
        match outcome {
            Ok(()) => set_rooms(socket, &held.locations),
            Err((SocketError::InternalChannelFull, false)) => {
                held.hold = Hold::Behind;
                fan.held.insert(socket.id, held);
                self.behind.notify_one();
            }
            Err((SocketError::InternalChannelFull, true)) => self.evict(socket),
            Err((SocketError::Closed, _)) => {}
        }
    }

    /// The locations `socket` is subscribed to (empty: all), held or not.
    pub(crate) fn locations_of(&self, socket: &SocketRef) -> BTreeSet<String> {
        let fan = self.fan();
        match fan.held.get(&socket.id) {
            Some(held) => held.locations.clone(),
            None => rooms_of(socket),
        }
    }

    /// Leaves the rooms of `gone`; returns the locations that remain (none: all). A
    /// socket left with none gets `nothing`: what subscribing to nothing means for it
    /// (empty: every location; a client limited by its token: those it may read).
    pub(crate) fn unsubscribe(
        &self,
        socket: &SocketRef,
        gone: &[String],
        nothing: &BTreeSet<String>,
    ) -> BTreeSet<String> {
        let mut fan = self.fan();
        if let Some(held) = fan.held.get_mut(&socket.id) {
            held.locations.retain(|location| !gone.contains(location));
            if held.locations.is_empty() {
                held.locations = nothing.clone();
            }
            return held.locations.clone();
        }
        socket.leave(gone.to_vec());
        let mut remaining = rooms_of(socket);
        if remaining.is_empty() {
            remaining = nothing.clone();
        }
        set_rooms(socket, &remaining);
        remaining
    }

    /// Forgets a socket that has gone.
    pub(crate) fn forget(&self, sid: Sid) {
        self.fan().held.remove(&sid);
    }

    /// Fans `event` out unless it was already sent (offset not after the position).
    /// Returns whether it was sent.
    pub(crate) fn publish(&self, event: &Event) -> bool {
        let mut fan = self.fan();
        if Some(event.offset) <= fan.position.offset {
            return false;
        }
        let json = match serde_json::value::to_raw_value(event) {
            Ok(json) => json,
            Err(error) => {
                tracing::error!(%error, offset = %event.offset, "cannot serialise an event");
                return false;
            }
        };
        let out = Arc::new(Outgoing {
            location: event.location.clone(),
            offset: event.offset,
            json,
        });
        if !fan.held.is_empty() {
            self.queue_for_held(&mut fan, &out);
        }
        let mut delivered = 0u64;
        for socket in self
            .io
            .to([event.location.clone(), ALL_ROOM.to_owned()])
            .sockets()
        {
            match socket.emit("alert", &out.json) {
                Ok(()) => delivered += 1,
                Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                    self.hold_behind(&mut fan, socket, out.clone());
                }
                Err(SendError::Socket(SocketError::Closed)) => {}
                Err(error) => tracing::warn!(%error, sid = %socket.id, "cannot emit an event"),
            }
        }
        self.count_deliveries(delivered);
        let _ = self.sse.send(Fanout::Event(out));
        fan.position = Position {
            epoch: Some(event.epoch.clone()),
            offset: Some(event.offset),
        };
        drop(fan);
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

    fn count_deliveries(&self, sent: u64) {
        self.metrics
            .deliveries
            .with_label_values(&["socketio"])
            .inc_by(sent);
    }

    /// Queues `out` for every held socket that wants it; a socket whose queue is full
    /// is evicted.
    fn queue_for_held(&self, fan: &mut Fan, out: &Arc<Outgoing>) {
        let backlog = self.limits.backlog.max(1);
        let mut over = Vec::new();
        for (sid, held) in fan.held.iter_mut() {
            if held.wants(&out.location) {
                if held.queue.len() >= backlog {
                    over.push(*sid);
                } else {
                    held.queue.push_back(out.clone());
                }
            }
        }
        for sid in over {
            if let Some(held) = fan.held.remove(&sid) {
                self.evict(&held.socket);
            }
        }
    }

    /// A socket whose buffer is full leaves its rooms (so what it has is a gap-free
    /// prefix) and gets the rest from its queue as the buffer empties.
    fn hold_behind(&self, fan: &mut Fan, socket: SocketRef, first: Arc<Outgoing>) {
        let locations = rooms_of(&socket);
        socket.leave_all();
        self.metrics.clients_behind.inc();
        tracing::debug!(sid = %socket.id, "client behind; holding its events");
        fan.held.insert(
            socket.id,
            Held {
                socket,
                hold: Hold::Behind,
                locations,
                queue: VecDeque::from([first]),
            },
        );
        self.behind.notify_one();
    }

    /// Closes the transport of a client that cannot keep up: stock clients reconnect by
    /// themselves and resume with `since`. (A Socket.IO DISCONNECT would tell them to
    /// stay away.)
    fn evict(&self, socket: &SocketRef) {
        socket.leave_all();
        self.metrics
            .slow_clients
            .with_label_values(&["socketio"])
            .inc();
        tracing::warn!(sid = %socket.id, "client too slow for its events; closing its transport");
        socket.close_transport();
    }

    /// Hands on the queues of the clients that are behind; returns how many still are.
    fn drain_behind(&self) -> usize {
        let mut fan = self.fan();
        let mut sent = 0;
        let mut caught_up = Vec::new();
        for (sid, held) in fan.held.iter_mut() {
            if held.hold != Hold::Behind {
                continue;
            }
            match held.send_queue(None, &mut sent) {
                Ok(()) => {
                    set_rooms(&held.socket, &held.locations);
                    caught_up.push(*sid);
                }
                Err(SocketError::Closed) => caught_up.push(*sid),
                Err(SocketError::InternalChannelFull) => {}
            }
        }
        for sid in caught_up {
            fan.held.remove(&sid);
        }
        self.count_deliveries(sent);
        fan.held.values().filter(|h| h.hold == Hold::Behind).count()
    }

    /// Runs while the hub lives: drains the queues of clients that are behind.
    pub(crate) async fn run_drain(hub: Weak<Hub>) {
        let Some(behind) = hub.upgrade().map(|hub| hub.behind.clone()) else {
            return;
        };
        loop {
            // Wakes now and then to notice that the hub is gone.
            let _ = tokio::time::timeout(Duration::from_secs(1), behind.notified()).await;
            if hub.strong_count() == 0 {
                return;
            }
            loop {
                tokio::time::sleep(DRAIN_INTERVAL).await;
                let Some(hub) = hub.upgrade() else { return };
                if hub.drain_behind() == 0 {
                    break;
                }
            }
        }
    }

    /// Every client must resynchronise: Socket.IO clients have their transports closed
    /// (they reconnect with `since` and get `recovered: false` and a snapshot), SSE
    /// streams end.
    pub(crate) fn resync_all(&self) {
        tracing::error!("the feed fell behind the retained event log; every client resynchronises");
        self.fan().held.clear();
        let _ = self.sse.send(Fanout::Resync);
        for socket in self.io.sockets() {
            socket.close_transport();
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
            && *read_at >= at.offset
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
        let Some(from) = since.offset else {
            return Ok(lost);
        };
        // The client's last event (or snapshot position) must still be in the log. If it
        // was trimmed away, the events right after it may be too; if the state came back
        // without it, what the client saw after it may be gone from the state as well.
        // Either way only a snapshot is the truth.
        if !self.store.holds(from).await? {
            return Ok(lost);
        }
        let up_to_date = Replay {
            missed: Vec::new(),
            recovered: true,
        };
        let Some(upto) = upto.offset else {
            return Ok(up_to_date); // nothing fanned out yet: nothing to miss
        };
        if from >= upto {
            return Ok(up_to_date);
        }
        let wanted: Option<HashSet<&str>> =
            locations.map(|l| l.iter().map(String::as_str).collect());
        let mut missed = Vec::new();
        let mut from = from;
        let mut scanned = 0u64;
        'pages: loop {
            let page = self.store.events_after(from, PAGE).await?;
            let full = page.len() as u64 == PAGE;
            for event in page {
                if event.offset > upto {
                    break 'pages;
                }
                from = event.offset;
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
