//! The records the script writes, and their conversion to the contract's types.

use std::collections::BTreeSet;

use alert_core::{
    Change, CloseReason, Event, EventDraft, EventType, HistoryEntry, Offset, Window,
    model::event_id,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A window as the script stores it: times in milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredWindow {
    pub id: Uuid,
    pub location: String,
    pub start: i64,
    pub end: i64,
    pub types: Vec<String>,
    pub alert_count: u64,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub instructions: Option<String>,
}

impl From<StoredWindow> for Window {
    fn from(stored: StoredWindow) -> Self {
        Window {
            id: stored.id,
            location: stored.location,
            start: millis(stored.start),
            end: millis(stored.end),
            types: stored.types.into_iter().collect::<BTreeSet<_>>(),
            alert_count: stored.alert_count,
            severity: stored.severity,
            title: stored.title,
            instructions: stored.instructions,
        }
    }
}

/// One event log entry (also the body of a live pub/sub message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogRecord {
    pub event_type: EventType,
    #[serde(default)]
    pub reason: Option<CloseReason>,
    pub window: StoredWindow,
    #[serde(default)]
    pub alert_id: Option<Uuid>,
    pub created_at: i64,
    pub epoch: String,
}

impl LogRecord {
    pub fn draft(&self) -> EventDraft {
        EventDraft {
            event_type: self.event_type,
            reason: self.reason,
            window: self.window.clone().into(),
            alert_id: self.alert_id,
        }
    }

    /// The client event, at `offset` in the log.
    pub fn into_event(self, offset: Offset) -> Event {
        let id = event_id(&self.epoch, offset);
        let created_at = millis(self.created_at);
        let draft = self.draft();
        Event::new(draft, id, offset, self.epoch, created_at)
    }
}

/// Why a live message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LiveMessageError {
    #[error("live message without an offset")]
    NoOffset,
    #[error("live message offset {text:?}: {error}")]
    Offset {
        text: String,
        error: alert_core::offset::InvalidOffset,
    },
    #[error("bad live record: {0}")]
    Record(#[from] serde_json::Error),
}

/// Splits a live message, `"<offset> <record JSON>"`, into its event.
pub fn parse_live_message(payload: &str) -> Result<Event, LiveMessageError> {
    let (offset, body) = payload.split_once(' ').ok_or(LiveMessageError::NoOffset)?;
    let offset = offset.parse().map_err(|error| LiveMessageError::Offset {
        text: offset.to_owned(),
        error,
    })?;
    let record: LogRecord = serde_json::from_str(body)?;
    Ok(record.into_event(offset))
}

/// A history entry as the script stores it: times in milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredHistory {
    alert_id: Uuid,
    #[serde(rename = "type")]
    alert_type: String,
    start: i64,
    end: i64,
    processed_at: i64,
    change: Change,
}

impl From<StoredHistory> for HistoryEntry {
    fn from(stored: StoredHistory) -> Self {
        HistoryEntry {
            alert_id: stored.alert_id,
            alert_type: stored.alert_type,
            start: millis(stored.start),
            end: millis(stored.end),
            processed_at: millis(stored.processed_at),
            change: stored.change,
        }
    }
}

pub(crate) fn millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
