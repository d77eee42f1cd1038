//! The boundary between processing and fan-out: what notify reads and listens to.
//! Redis implements it in production (`alert-redis`), in-process state in standalone
//! mode (`alert-standalone`).
//!
//! The event log is ordered by [`Offset`] and belongs to an `epoch`: when the epoch
//! changes, offsets from before it mean nothing and clients resynchronise.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    aggregate::Change,
    model::{Event, Window},
    offset::Offset,
};

/// A backend failure; every one means "unavailable now, retry" to the caller.
pub type StateError = Box<dyn std::error::Error + Send + Sync>;

/// One alert's effect on one location, newest first in `GET /api/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub alert_id: Uuid,
    #[serde(rename = "type")]
    pub alert_type: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub processed_at: DateTime<Utc>,
    pub change: Change,
}

/// The readable state: the event log, the open windows and each location's history.
#[async_trait::async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// The log's current epoch; `None` before the first event.
    async fn epoch(&self) -> Result<Option<String>, StateError>;
    /// Up to `limit` events after `offset`, oldest first.
    async fn events_after(&self, after: Offset, limit: u64) -> Result<Vec<Event>, StateError>;
    /// The newest `limit` events, oldest first.
    async fn latest_events(&self, limit: u64) -> Result<Vec<Event>, StateError>;
    /// Offsets of the oldest and newest events still in the log.
    async fn log_bounds(&self) -> Result<Option<(Offset, Offset)>, StateError>;
    /// The open windows, of `locations` only when given.
    async fn active(&self, locations: Option<&[String]>) -> Result<Vec<Window>, StateError>;
    /// A location's newest `limit` history entries, newest first.
    async fn history(&self, location: &str, limit: u64) -> Result<Vec<HistoryEntry>, StateError>;
    /// Whether the log still holds the event at `offset`. An offset someone was given
    /// (a client's resume point, notify's fan-out position) that the log no longer
    /// holds, though not trimmed, means the state came back without its newest writes
    /// (Redis restarted from an AOF that missed them): what was delivered after it may
    /// be forgotten, and nobody may resume from it.
    async fn holds(&self, offset: Offset) -> Result<bool, StateError> {
        let Some(before) = offset.before() else {
            return Ok(false);
        };
        let next = self.events_after(before, 1).await?;
        Ok(next.first().is_some_and(|event| event.offset == offset))
    }
}

/// What the live feed delivers: events as they are appended, and the conditions under
/// which some may have been missed (the reader then catches up from the log).
#[derive(Debug, Clone, PartialEq)]
pub enum LiveSignal {
    Event(Box<Event>),
    /// The feed dropped messages (a local buffer overflowed).
    Lagged,
    /// The feed's connection came back: messages sent meanwhile were missed.
    Reconnected,
    /// The feed's connection was lost; `Reconnected` follows when it is back.
    Lost,
    /// The feed has ended for good.
    Closed,
}

/// The live feed of appended events. Delivery is best effort: ordering and
/// completeness come from the log, read after any signal other than `Event`.
#[async_trait::async_trait]
pub trait LiveFeed: Send + 'static {
    async fn next(&mut self) -> LiveSignal;
    /// A signal already received, without waiting.
    fn try_next(&mut self) -> Option<LiveSignal>;
    fn is_connected(&self) -> bool;
    async fn close(&mut self);
}
