//! The types of the contract: what travels on the queue (`QueueMessage`), a location's
//! aggregate (`Window`) and what clients receive (`Event`), with their JSON forms.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::offset::Offset;

/// `type` shown for a window that holds more than one kind of threat.
pub const MIXED_THREATS: &str = "Mixed Threats";

/// One message on the raw queue: what the listener accepted, already validated and
/// normalised, stamped with its UUID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum QueueMessage {
    Alert(Alert),
    Cancel(Cancel),
}

impl QueueMessage {
    pub fn id(&self) -> Uuid {
        match self {
            QueueMessage::Alert(alert) => alert.id,
            QueueMessage::Cancel(cancel) => cancel.id,
        }
    }

    pub fn idempotency_key(&self) -> Option<&str> {
        match self {
            QueueMessage::Alert(alert) => alert.idempotency_key.as_deref(),
            QueueMessage::Cancel(cancel) => cancel.idempotency_key.as_deref(),
        }
    }
}

/// An alert for one or more locations, valid from `start` to `end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub id: Uuid,
    pub locations: Vec<String>,
    #[serde(rename = "type")]
    pub alert_type: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Dedupe key: the same key within the dedupe TTL is the same alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Key by which a later Cancel refers to this alert (CAP `sender,identifier`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    pub received_at: DateTime<Utc>,
}

impl Alert {
    /// An alert for one location without the optional fields: a new time-ordered UUID,
    /// received now (what tests and tools build; sources go through `input`).
    pub fn new(
        location: impl Into<String>,
        alert_type: impl Into<String>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Alert {
        Alert {
            id: Uuid::now_v7(),
            locations: vec![location.into()],
            alert_type: alert_type.into(),
            start,
            end,
            idempotency_key: None,
            reference: None,
            source: None,
            severity: None,
            title: None,
            instructions: None,
            category: None,
            received_at: Utc::now(),
        }
    }
}

/// Closes at once the windows that the referenced alerts contributed to (CAP Cancel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cancel {
    pub id: Uuid,
    /// `Alert::reference` values of the cancelled alerts.
    pub references: Vec<String>,
    /// Locations named by the Cancel itself: closed when no referenced alert is known.
    #[serde(default)]
    pub locations: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// A location's aggregate: the union of the overlapping alerts for it. On the wire it
/// also carries `sentTime` and `duration` ([`OriginalTimes`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct Window {
    /// The UUID of the alert that opened the window: its identity across updates.
    pub id: Uuid,
    pub location: String,
    #[serde(rename = "startTime")]
    pub start: DateTime<Utc>,
    #[serde(rename = "endTime")]
    pub end: DateTime<Utc>,
    pub types: BTreeSet<String>,
    pub alert_count: u64,
    pub severity: Option<String>,
    pub title: Option<String>,
    pub instructions: Option<String>,
}

impl Window {
    /// The single type, or "Mixed Threats" when the window holds several.
    pub fn display_type(&self) -> &str {
        match self.types.len() {
            1 => self
                .types
                .first()
                .map(String::as_str)
                .unwrap_or(MIXED_THREATS),
            _ => MIXED_THREATS,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Open,
    Update,
    Close,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Open => "open",
            EventType::Update => "update",
            EventType::Close => "close",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CloseReason {
    Expired,
    Cancelled,
}

/// What the aggregation rules decided to announce, before the event log gives it an
/// id, offset and epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDraft {
    pub event_type: EventType,
    pub reason: Option<CloseReason>,
    pub window: Window,
    /// The alert that caused it; `None` for a close on expiry.
    pub alert_id: Option<Uuid>,
}

/// The `alert` event clients receive (ARCHITECTURE.md, "Client contract"). On the wire
/// it also carries `sentTime` and `duration` ([`OriginalTimes`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct Event {
    pub id: Uuid,
    pub offset: Offset,
    pub epoch: String,
    pub event_type: EventType,
    pub location: String,
    pub window_id: Uuid,
    #[serde(rename = "type")]
    pub display_type: String,
    pub types: Vec<String>,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub alert_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<CloseReason>,
    pub severity: Option<String>,
    pub title: Option<String>,
    pub instructions: Option<String>,
    /// The alert that caused the event, so one UUID traces a POST to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<Uuid>,
    /// When the event was decided; clients and metrics measure delivery lag from it.
    pub created_at: DateTime<Utc>,
}

impl Event {
    pub fn new(
        draft: EventDraft,
        id: Uuid,
        offset: Offset,
        epoch: String,
        created_at: DateTime<Utc>,
    ) -> Self {
        let window = draft.window;
        Event {
            id,
            offset,
            epoch,
            event_type: draft.event_type,
            display_type: window.display_type().to_owned(),
            types: window.types.into_iter().collect(),
            location: window.location,
            window_id: window.id,
            start_time: window.start,
            end_time: window.end,
            alert_count: window.alert_count,
            reason: draft.reason,
            severity: window.severity,
            title: window.title,
            instructions: window.instructions,
            alert_id: draft.alert_id,
            created_at,
        }
    }
}

/// The original system's names for a window's two instants, written after the fields of
/// a [`Window`] or an [`Event`] so that its web page works unmodified: `sentTime` is
/// `startTime` and `duration` is `endTime`, ISO text (the page passes both to
/// `new Date(...)`). Reading ignores them: `startTime` and `endTime` are the truth, and
/// JSON written before they existed (standalone's snapshot file) still reads.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OriginalTimes<'a, T> {
    #[serde(flatten)]
    fields: T,
    sent_time: &'a DateTime<Utc>,
    duration: &'a DateTime<Utc>,
}

/// A value serialised with its derived field list (`remote = "Self"` makes the derive
/// an inherent `serialize`, which the `Serialize` impls below wrap).
struct Fields<'a, T>(&'a T);

impl Serialize for Fields<'_, Window> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Window::serialize(self.0, serializer)
    }
}

impl Serialize for Fields<'_, Event> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Event::serialize(self.0, serializer)
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        OriginalTimes {
            fields: Fields(self),
            sent_time: &self.start,
            duration: &self.end,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Window::deserialize(deserializer)
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        OriginalTimes {
            fields: Fields(self),
            sent_time: &self.start_time,
            duration: &self.end_time,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Event::deserialize(deserializer)
    }
}

/// Namespace of event ids.
const EVENTS: Uuid = Uuid::from_u128(0x3f0c_9d2e_6b1a_4c85_a7e4_52d1_0b9f_e613);

/// An event's id: derived from its place in the log, so every reader of the log (live
/// feed, replay, SSE) gives the same event the same id.
pub fn event_id(epoch: &str, offset: Offset) -> Uuid {
    Uuid::new_v5(&EVENTS, format!("{epoch}/{offset}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn window(types: &[&str]) -> Window {
        Window {
            id: Uuid::nil(),
            location: "Tel Aviv".into(),
            start: "2026-11-22T10:00:00Z".parse().unwrap(),
            end: "2026-11-22T10:10:00Z".parse().unwrap(),
            types: types.iter().map(|t| t.to_string()).collect(),
            alert_count: 3,
            severity: None,
            title: None,
            instructions: None,
        }
    }

    #[test]
    fn event_json_has_the_contract_field_names() {
        let draft = EventDraft {
            event_type: EventType::Close,
            reason: Some(CloseReason::Expired),
            window: window(&["Rocket Alert"]),
            alert_id: None,
        };
        let created = "2026-11-22T10:10:00.100Z".parse().unwrap();
        let event = Event::new(draft, Uuid::nil(), Offset::new(1, 0), "e1".into(), created);
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            json!({
                "id": "00000000-0000-0000-0000-000000000000",
                "offset": "1-0", "epoch": "e1", "eventType": "close",
                "location": "Tel Aviv", "windowId": "00000000-0000-0000-0000-000000000000",
                "type": "Rocket Alert", "types": ["Rocket Alert"],
                "startTime": "2026-11-22T10:00:00Z", "endTime": "2026-11-22T10:10:00Z",
                "alertCount": 3, "reason": "expired",
                "severity": null, "title": null, "instructions": null,
                "createdAt": "2026-11-22T10:10:00.100Z",
                "sentTime": "2026-11-22T10:00:00Z", "duration": "2026-11-22T10:10:00Z"
            })
        );
        let back: Event = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, event);
        let mut without_original_names = json;
        let fields = without_original_names.as_object_mut().unwrap();
        fields.remove("sentTime");
        fields.remove("duration");
        let back: Event = serde_json::from_value(without_original_names).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn window_json_carries_the_original_names_and_reads_without_them() {
        let window = window(&["Rocket Alert"]);
        let json = serde_json::to_value(&window).unwrap();
        assert_eq!(
            json,
            json!({
                "id": "00000000-0000-0000-0000-000000000000", "location": "Tel Aviv",
                "startTime": "2026-11-22T10:00:00Z", "endTime": "2026-11-22T10:10:00Z",
                "types": ["Rocket Alert"], "alertCount": 3,
                "severity": null, "title": null, "instructions": null,
                "sentTime": "2026-11-22T10:00:00Z", "duration": "2026-11-22T10:10:00Z"
            })
        );
        assert_eq!(serde_json::from_value::<Window>(json).unwrap(), window);
        // As standalone's snapshot file held it before the original names existed.
        let earlier = json!({
            "id": "00000000-0000-0000-0000-000000000000", "location": "Tel Aviv",
            "startTime": "2026-11-22T10:00:00Z", "endTime": "2026-11-22T10:10:00Z",
            "types": ["Rocket Alert"], "alertCount": 3,
            "severity": null, "title": null, "instructions": null
        });
        assert_eq!(serde_json::from_value::<Window>(earlier).unwrap(), window);
    }

    #[test]
    fn several_types_show_as_mixed_threats() {
        assert_eq!(window(&["Rocket Alert"]).display_type(), "Rocket Alert");
        assert_eq!(
            window(&["Rocket Alert", "Earthquake"]).display_type(),
            MIXED_THREATS
        );
    }

    #[test]
    fn queue_message_round_trips_with_a_kind_tag() {
        let message = QueueMessage::Cancel(Cancel {
            id: Uuid::nil(),
            references: vec!["cap:a:b".into()],
            locations: vec![],
            idempotency_key: None,
            received_at: "2026-11-22T10:00:00Z".parse().unwrap(),
        });
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(json["kind"], "cancel");
        assert_eq!(
            serde_json::from_value::<QueueMessage>(json).unwrap(),
            message
        );
    }
}
