//! What a run observed, from the outside: what the sources were told, what every client
//! received, and what the state holds at the end. The verdict reads only this.

use std::collections::{BTreeMap, BTreeSet};

use alert_core::{Event, EventType, Offset};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// An alert a listener answered 202 for: the source was promised delivery.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub id: Uuid,
    pub locations: Vec<String>,
    pub end: DateTime<Utc>,
}

/// A CAP Cancel a listener answered 202 for, and the location of the alert it cancels.
#[derive(Debug, Clone, Serialize)]
pub struct AcceptedCancel {
    pub id: Uuid,
    pub location: String,
}

/// What the sources saw: every request and how it ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Posts {
    /// POSTs planned (a retry is not a new one).
    pub planned: u64,
    /// HTTP requests sent, retries included.
    pub requests: u64,
    pub accepted: u64,
    /// Requests retried because the source may retry them: 5xx, timeout, refused.
    pub retried: u64,
    pub status_5xx: u64,
    pub status_503: u64,
    pub timeouts: u64,
    pub refused: u64,
    /// Answers a source must not retry (4xx): a bug in the plan or the listener.
    pub refused_4xx: u64,
    /// POSTs that never got a 202 before the source gave up.
    pub gave_up: u64,
    /// Deliberate second POSTs of an accepted body with the same key.
    pub resent: u64,
}

/// One event as a client received it.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    pub id: Uuid,
    pub offset: Offset,
    pub epoch: String,
    pub location: String,
    pub event_type: EventType,
    pub window_id: Uuid,
}

impl From<&Event> for Received {
    fn from(event: &Event) -> Self {
        Received {
            id: event.id,
            offset: event.offset,
            epoch: event.epoch.clone(),
            location: event.location.clone(),
            event_type: event.event_type,
            window_id: event.window_id,
        }
    }
}

/// How a connection began: the snapshot (Socket.IO `snapshot`, SSE `event: snapshot`)
/// or, for an SSE resume that was served, none.
#[derive(Debug, Clone, Serialize)]
pub struct Joined {
    /// What the client asked to resume from (`since`, `Last-Event-ID`).
    pub since: Option<Offset>,
    pub since_epoch: Option<String>,
    /// The position the server says the client joined at.
    pub offset: Option<Offset>,
    pub epoch: Option<String>,
    /// `Some(true)`: the gap was filled; `Some(false)`: the snapshot is the truth;
    /// `None`: a first connection.
    pub recovered: Option<bool>,
}

/// One connection of a client, from its join to its end.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub notify: usize,
    /// When it joined and when it ended, in milliseconds since the run began.
    pub at_ms: u64,
    pub ended_ms: u64,
    pub joined: Joined,
    /// Events in the order they arrived (the replay of a resume first).
    pub received: Vec<Received>,
    pub ended: String,
}

impl Session {
    /// A connection to notify `notify` begun at `at_ms`, resuming from `since`.
    pub fn new(
        notify: usize,
        at_ms: u64,
        since: Option<Offset>,
        since_epoch: Option<String>,
    ) -> Self {
        Session {
            notify,
            at_ms,
            joined: Joined {
                since,
                since_epoch,
                offset: None,
                epoch: None,
                recovered: None,
            },
            received: Vec::new(),
            ended: String::new(),
            ended_ms: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientKind {
    /// Socket.IO over WebSocket, resuming with `since`.
    SocketIo,
    /// Server-Sent Events, resuming with `Last-Event-ID`.
    Sse,
    /// Socket.IO, reading one event at a time with a pause: falls behind.
    Slow,
}

/// Whether a client subscribed to `locations` (`None`: to nothing) receives events of
/// `location`: the contract's rule, as the checker applies it.
pub fn receives(locations: Option<&BTreeSet<String>>, location: &str) -> bool {
    locations.is_none_or(|locations| locations.contains(location))
}

#[derive(Debug, Clone, Serialize)]
pub struct ClientRecord {
    pub name: String,
    pub kind: ClientKind,
    /// `None`: subscribed to nothing, so it receives every event.
    pub locations: Option<BTreeSet<String>>,
    pub sessions: Vec<Session>,
    /// Connection attempts that failed (refused, connect_error, timeout).
    pub failed_connects: u64,
}

/// One history entry, as the state holds it.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub alert_id: Uuid,
    pub change: String,
}

/// Everything a run observed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recording {
    pub accepted: Vec<Accepted>,
    pub cancels: Vec<AcceptedCancel>,
    pub posts: Posts,
    /// The event log at the end (its current epoch), oldest first.
    pub log: Vec<Event>,
    /// Every epoch the log had during the run, in order.
    pub epochs: Vec<String>,
    /// Each location's history, newest first.
    pub history: BTreeMap<String, Vec<Applied>>,
    /// Windows still open at the end.
    pub still_open: Vec<String>,
    pub clients: Vec<ClientRecord>,
    /// Unresponsive clients, and how many of them the server had closed by the end.
    pub dead_clients: u64,
    pub dead_clients_closed: u64,
}
