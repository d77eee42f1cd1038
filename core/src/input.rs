//! Parsing and validation of what sources POST: JSON (one alert or a batch) and CAP 1.2
//! XML, into queue messages stamped with their UUIDs. Every error names the field.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::model::{Alert, QueueMessage};

/// Limits on everything a source controls.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_batch: usize,
    pub max_locations: usize,
    pub max_type_chars: usize,
    pub max_text_chars: usize,
    pub max_duration: TimeDelta,
    /// How far in the future an alert may start (sources' clocks drift; scheduled
    /// drills exist), so that a typo in a year cannot pin a window open forever.
    pub max_future_start: TimeDelta,
    /// End of a CAP alert without `expires`.
    pub cap_default_duration: TimeDelta,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch: 1000,
            max_locations: 1000,
            max_type_chars: 128,
            max_text_chars: 4096,
            max_duration: TimeDelta::hours(24),
            max_future_start: TimeDelta::hours(24),
            cap_default_duration: TimeDelta::hours(1),
        }
    }
}

/// Invalid input: answered with 400 and never queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidInput {
    /// Path of the offending field, e.g. `[3].locations[0]`; `None` for the whole body.
    pub field: Option<String>,
    pub message: String,
}

impl InvalidInput {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidInput {
            field: Some(field.into()).filter(|f: &String| !f.is_empty()),
            message: message.into(),
        }
    }

    pub fn body(message: impl Into<String>) -> Self {
        InvalidInput {
            field: None,
            message: message.into(),
        }
    }

    fn prefixed(mut self, prefix: &str) -> Self {
        self.field = Some(match self.field {
            Some(field) if field.starts_with('[') => format!("{prefix}{field}"),
            Some(field) => format!("{prefix}.{field}"),
            None => prefix.to_owned(),
        });
        self
    }
}

/// What the request carries besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub now: DateTime<Utc>,
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// The source the request authenticated as: it replaces the body's `source`, so
    /// one source's ids and keys never collide with another's.
    pub source: Option<String>,
}

/// Namespace of the UUIDs derived from idempotency keys.
const KEYED_ALERTS: Uuid = Uuid::from_u128(0x6a1e_47b0_5d2c_4f7e_9a61_3c0d_8e2f_1b45);

/// The alert's UUID: derived from its idempotency key when it has one, so a retried
/// request is answered with the same ids; otherwise new and time-ordered.
pub fn alert_id(idempotency_key: Option<&str>) -> Uuid {
    match idempotency_key {
        Some(key) => Uuid::new_v5(&KEYED_ALERTS, key.as_bytes()),
        None => Uuid::now_v7(),
    }
}

/// One alert as a source writes it (ARCHITECTURE.md, "Ingest contract").
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertInput {
    /// One location (or use `locations`).
    pub location: Option<String>,
    /// Several locations; each trimmed, non-empty, at most 128 characters.
    pub locations: Option<Vec<String>>,
    /// Kind of threat, e.g. "Rocket Alert".
    #[serde(rename = "type")]
    pub alert_type: Option<String>,
    /// RFC 3339: when the alert starts.
    #[schema(example = "2026-11-22T10:00:00Z")]
    pub timestamp: Option<String>,
    /// Duration in minutes (> 0); or use `durationSeconds`.
    pub duration: Option<f64>,
    /// Duration in seconds (> 0).
    pub duration_seconds: Option<i64>,
    /// The source's own id of the alert; with `source`, the idempotency key.
    #[schema(value_type = Option<String>)]
    pub id: Option<SourceId>,
    pub source: Option<String>,
    pub severity: Option<String>,
    pub title: Option<String>,
    pub instructions: Option<String>,
    pub category: Option<String>,
}

/// A source's alert id: sources send strings or numbers.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SourceId {
    Text(String),
    Number(serde_json::Number),
}

impl SourceId {
    fn into_string(self) -> String {
        match self {
            SourceId::Text(text) => text,
            SourceId::Number(number) => number.to_string(),
        }
    }
}

/// Parses a JSON body: one alert object or an array of them.
pub fn parse_json(
    body: &[u8],
    request: &RequestContext,
    limits: &Limits,
) -> Result<Vec<QueueMessage>, InvalidInput> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| InvalidInput::body(format!("body is not valid JSON: {e}")))?;
    let (items, batch) = match value {
        serde_json::Value::Array(items) => (items, true),
        object @ serde_json::Value::Object(_) => (vec![object], false),
        _ => {
            return Err(InvalidInput::body(
                "body must be an alert object or an array of alerts",
            ));
        }
    };
    if items.is_empty() {
        return Err(InvalidInput::body("the batch is empty"));
    }
    if items.len() > limits.max_batch {
        return Err(InvalidInput::body(format!(
            "a batch holds at most {} alerts, this one has {}",
            limits.max_batch,
            items.len()
        )));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let namespace = request
                .source
                .as_deref()
                .map(|source| format!("{source}:"))
                .unwrap_or_default();
            let header_key = request.idempotency_key.as_deref().map(|key| {
                if batch {
                    format!("hdr:{namespace}{key}#{index}")
                } else {
                    format!("hdr:{namespace}{key}")
                }
            });
            let parsed = AlertInput::deserialize(item)
                .map_err(|e| InvalidInput::body(e.to_string()))
                .and_then(|input| validate(input, header_key, request, limits));
            parsed.map(QueueMessage::Alert).map_err(|e| {
                if batch {
                    e.prefixed(&format!("[{index}]"))
                } else {
                    e
                }
            })
        })
        .collect()
}

fn validate(
    input: AlertInput,
    header_key: Option<String>,
    request: &RequestContext,
    limits: &Limits,
) -> Result<Alert, InvalidInput> {
    let now = request.now;
    let locations = validate_locations(input.location, input.locations, limits)?;
    let alert_type = required_text("type", input.alert_type, limits.max_type_chars)?;
    let timestamp = input
        .timestamp
        .ok_or_else(|| InvalidInput::new("timestamp", "timestamp is required (RFC 3339)"))?;
    let start = DateTime::parse_from_rfc3339(timestamp.trim())
        .map_err(|e| {
            InvalidInput::new(
                "timestamp",
                format!("timestamp {timestamp:?} is not RFC 3339: {e}"),
            )
        })?
        .with_timezone(&Utc);
    let start = whole_millis(start);
    if start > now + limits.max_future_start {
        return Err(InvalidInput::new(
            "timestamp",
            format!(
                "timestamp is more than {} s in the future",
                limits.max_future_start.num_seconds()
            ),
        ));
    }
    let duration = match (input.duration, input.duration_seconds) {
        (Some(_), Some(_)) => {
            return Err(InvalidInput::new(
                "duration",
                "give duration (minutes) or durationSeconds, not both",
            ));
        }
        (Some(minutes), None) => {
            if minutes <= 0.0 || !minutes.is_finite() {
                return Err(InvalidInput::new(
                    "duration",
                    format!("duration must be a positive number of minutes, got {minutes}"),
                ));
            }
            let millis = (minutes * 60_000.0).round();
            if millis > limits.max_duration.num_milliseconds() as f64 {
                return Err(too_long("duration", limits));
            }
            TimeDelta::milliseconds((millis as i64).max(1))
        }
        (None, Some(seconds)) => {
            if seconds <= 0 {
                return Err(InvalidInput::new(
                    "durationSeconds",
                    format!("durationSeconds must be positive, got {seconds}"),
                ));
            }
            if seconds > limits.max_duration.num_seconds() {
                return Err(too_long("durationSeconds", limits));
            }
            TimeDelta::seconds(seconds)
        }
        (None, None) => {
            return Err(InvalidInput::new(
                "duration",
                "duration (minutes) or durationSeconds is required",
            ));
        }
    };
    let source = match &request.source {
        Some(authenticated) => Some(authenticated.clone()),
        None => optional_text("source", input.source, limits.max_type_chars)?,
    };
    let source_id = optional_text(
        "id",
        input.id.map(SourceId::into_string),
        limits.max_type_chars,
    )?;
    let idempotency_key = match source_id {
        Some(id) => Some(source_key(source.as_deref().unwrap_or(""), &id)),
        None => header_key,
    };
    Ok(Alert {
        id: alert_id(idempotency_key.as_deref()),
        locations,
        alert_type,
        start,
        end: start + duration,
        idempotency_key,
        reference: None,
        source,
        severity: optional_text("severity", input.severity, limits.max_type_chars)?,
        title: optional_text("title", input.title, limits.max_text_chars)?,
        instructions: optional_text("instructions", input.instructions, limits.max_text_chars)?,
        category: optional_text("category", input.category, limits.max_type_chars)?,
        received_at: now,
    })
}

/// Idempotency key of a source's own alert id. Length-prefixed so that no two
/// (source, id) pairs share a key.
pub fn source_key(source: &str, id: &str) -> String {
    format!("src:{}:{source}:{id}", source.len())
}

fn too_long(field: &str, limits: &Limits) -> InvalidInput {
    InvalidInput::new(
        field,
        format!(
            "{field} is longer than the limit of {} s",
            limits.max_duration.num_seconds()
        ),
    )
}

/// Truncates to milliseconds: the precision of windows everywhere (Redis keeps ms).
pub fn whole_millis(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(time.timestamp_millis()).unwrap_or(time)
}

/// Longest location name, in characters (ARCHITECTURE.md, "Ingest contract").
pub const MAX_LOCATION_CHARS: usize = 128;

/// Why a location name is refused; the text is what the user is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// Nothing but whitespace: name the place.
    #[error("a location must not be empty")]
    Empty,
    /// Over [`MAX_LOCATION_CHARS`]: use the shorter name clients subscribe to.
    #[error("a location is at most {MAX_LOCATION_CHARS} characters")]
    TooLong,
    /// NUL, newline, escape...: never part of a place name, and refused by clients'
    /// `subscribe`, so an alert named so could reach no one.
    #[error("a location must not contain control characters")]
    ControlCharacter,
}

/// The one location rule, for ingest and for clients' subscriptions alike: trimmed,
/// non-empty, at most [`MAX_LOCATION_CHARS`] characters, no control characters.
pub fn clean_location(raw: &str) -> Result<&str, LocationError> {
    let location = raw.trim();
    if location.is_empty() {
        return Err(LocationError::Empty);
    }
    if location.chars().any(char::is_control) {
        return Err(LocationError::ControlCharacter);
    }
    if location.chars().count() > MAX_LOCATION_CHARS {
        return Err(LocationError::TooLong);
    }
    Ok(location)
}

pub(crate) fn validate_locations(
    one: Option<String>,
    many: Option<Vec<String>>,
    limits: &Limits,
) -> Result<Vec<String>, InvalidInput> {
    let given = one.is_some() as usize + many.as_ref().map_or(0, Vec::len);
    if given == 0 {
        return Err(InvalidInput::new(
            "locations",
            "location or locations is required",
        ));
    }
    if given > limits.max_locations {
        return Err(InvalidInput::new(
            "locations",
            format!(
                "an alert names at most {} locations, this one {given}",
                limits.max_locations
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut locations = Vec::with_capacity(given);
    let named = one.map(|l| ("location".to_owned(), l));
    let listed = many
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, l)| (format!("locations[{i}]"), l));
    for (field, location) in named.into_iter().chain(listed) {
        let location =
            clean_location(&location).map_err(|e| InvalidInput::new(field, e.to_string()))?;
        if seen.insert(location.to_owned()) {
            locations.push(location.to_owned());
        }
    }
    Ok(locations)
}

pub(crate) fn required_text(
    field: &str,
    value: Option<String>,
    max_chars: usize,
) -> Result<String, InvalidInput> {
    optional_text(field, value, max_chars)?
        .ok_or_else(|| InvalidInput::new(field, format!("{field} is required")))
}

/// Trims; empty means absent.
pub(crate) fn optional_text(
    field: &str,
    value: Option<String>,
    max_chars: usize,
) -> Result<Option<String>, InvalidInput> {
    let Some(value) = value else { return Ok(None) };
    let value = value.trim();
    if value.chars().count() > max_chars {
        return Err(InvalidInput::new(
            field,
            format!("{field} is longer than {max_chars} characters"),
        ));
    }
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request() -> RequestContext {
        RequestContext {
            now: "2026-11-22T10:00:00Z".parse().unwrap(),
            idempotency_key: None,
            source: None,
        }
    }

    fn parse(body: serde_json::Value) -> Result<Vec<Alert>, InvalidInput> {
        parse_with(body, request())
    }

    fn parse_with(
        body: serde_json::Value,
        request: RequestContext,
    ) -> Result<Vec<Alert>, InvalidInput> {
        let messages = parse_json(body.to_string().as_bytes(), &request, &Limits::default())?;
        Ok(messages
            .into_iter()
            .map(|m| match m {
                QueueMessage::Alert(alert) => alert,
                QueueMessage::Cancel(_) => panic!("JSON gave a cancel"),
            })
            .collect())
    }

    fn valid() -> serde_json::Value {
        json!({"location": "Tel Aviv", "type": "Rocket Alert", "timestamp": "2026-11-22T10:00:00Z", "duration": 10})
    }

    fn error_field(body: serde_json::Value) -> Option<String> {
        parse(body).expect_err("accepted invalid input").field
    }

    #[test]
    fn parses_one_alert_with_duration_in_minutes() {
        let alerts = parse(valid()).unwrap();
        let alert = &alerts[0];
        assert_eq!(alert.locations, ["Tel Aviv"]);
        assert_eq!(alert.alert_type, "Rocket Alert");
        assert_eq!(alert.end - alert.start, TimeDelta::minutes(10));
        assert_eq!(alert.idempotency_key, None);
    }

    #[test]
    fn parses_a_batch_with_locations_and_seconds() {
        let mut second = valid();
        second.as_object_mut().unwrap().remove("location");
        second["locations"] = json!([" Haifa ", "Acre", "Haifa"]);
        second.as_object_mut().unwrap().remove("duration");
        second["durationSeconds"] = json!(90);
        let alerts = parse(json!([valid(), second])).unwrap();
        assert_eq!(alerts.len(), 2);
        assert_eq!(
            alerts[1].locations,
            ["Haifa", "Acre"],
            "trimmed and deduplicated"
        );
        assert_eq!(alerts[1].end - alerts[1].start, TimeDelta::seconds(90));
        assert_ne!(alerts[0].id, alerts[1].id);
    }

    #[test]
    fn source_id_is_the_idempotency_key_and_fixes_the_uuid() {
        let mut body = valid();
        body["id"] = json!(42);
        body["source"] = json!("sirens");
        let first = parse(body.clone()).unwrap();
        let again = parse(body).unwrap();
        assert_eq!(first[0].idempotency_key.as_deref(), Some("src:6:sirens:42"));
        assert_eq!(first[0].id, again[0].id, "a retry gets the same UUID");
    }

    #[test]
    fn authenticated_source_replaces_the_bodys_and_namespaces_keys() {
        let mut body = valid();
        body["id"] = json!("7");
        body["source"] = json!("someone-else");
        let request = RequestContext {
            source: Some("sirens".into()),
            ..request()
        };
        let alerts = parse_with(body, request.clone()).unwrap();
        assert_eq!(alerts[0].source.as_deref(), Some("sirens"));
        assert_eq!(alerts[0].idempotency_key.as_deref(), Some("src:6:sirens:7"));
        let keyed = RequestContext {
            idempotency_key: Some("k".into()),
            ..request
        };
        let alerts = parse_with(valid(), keyed).unwrap();
        assert_eq!(alerts[0].idempotency_key.as_deref(), Some("hdr:sirens:k"));
    }

    #[test]
    fn header_key_is_per_position_in_a_batch() {
        let request = RequestContext {
            idempotency_key: Some("k1".into()),
            ..request()
        };
        let alerts = parse_with(json!([valid(), valid()]), request).unwrap();
        assert_eq!(alerts[0].idempotency_key.as_deref(), Some("hdr:k1#0"));
        assert_eq!(alerts[1].idempotency_key.as_deref(), Some("hdr:k1#1"));
    }

    #[test]
    fn each_invalid_field_is_named() {
        let with = |key: &str, value: serde_json::Value| {
            let mut body = valid();
            body[key] = value;
            body
        };
        let without = |key: &str| {
            let mut body = valid();
            body.as_object_mut().unwrap().remove(key);
            body
        };
        assert_eq!(
            error_field(without("location")).as_deref(),
            Some("locations")
        );
        assert_eq!(
            error_field(with("location", json!("  "))).as_deref(),
            Some("location")
        );
        assert_eq!(
            error_field(with("location", json!("x".repeat(129)))).as_deref(),
            Some("location")
        );
        assert!(
            parse(with("location", json!("é".repeat(128)))).is_ok(),
            "128 characters, not bytes"
        );
        assert_eq!(error_field(without("type")).as_deref(), Some("type"));
        assert_eq!(
            error_field(without("timestamp")).as_deref(),
            Some("timestamp")
        );
        assert_eq!(
            error_field(with("timestamp", json!("yesterday"))).as_deref(),
            Some("timestamp")
        );
        assert_eq!(
            error_field(with("timestamp", json!("2099-01-01T00:00:00Z"))).as_deref(),
            Some("timestamp")
        );
        assert_eq!(
            error_field(without("duration")).as_deref(),
            Some("duration")
        );
        for bad in [json!(0), json!(-5), json!(100000)] {
            assert_eq!(
                error_field(with("duration", bad)).as_deref(),
                Some("duration")
            );
        }
        let seconds = |v| {
            with("durationSeconds", v)
                .as_object()
                .unwrap()
                .clone()
                .into_iter()
                .filter(|(k, _)| k != "duration")
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        assert_eq!(
            error_field(seconds(json!(0))).as_deref(),
            Some("durationSeconds")
        );
        assert_eq!(
            error_field(seconds(json!(86401))).as_deref(),
            Some("durationSeconds")
        );
        assert_eq!(
            error_field(with("durationSeconds", json!(60))).as_deref(),
            Some("duration")
        );
        let locations: Vec<String> = (0..10_000).map(|i| format!("L{i}")).collect();
        assert_eq!(
            error_field(with("locations", json!(locations))).as_deref(),
            Some("locations")
        );
    }

    #[test]
    fn one_location_rule() {
        assert_eq!(clean_location("  Tel Aviv\t"), Ok("Tel Aviv"));
        assert_eq!(clean_location(&"é".repeat(128)).map(str::len), Ok(256));
        assert_eq!(clean_location(" \n "), Err(LocationError::Empty));
        assert_eq!(
            clean_location(&"x".repeat(129)),
            Err(LocationError::TooLong)
        );
        for bad in ["A\u{0}B", "A\nB", "A\u{1b}[31mB", "A\u{7f}", "A\u{85}B"] {
            assert_eq!(
                clean_location(bad),
                Err(LocationError::ControlCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn control_characters_in_locations_are_refused() {
        let mut one = valid();
        one["location"] = json!("A\u{0}B");
        let error = parse(one).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("location"));
        assert_eq!(error.message, LocationError::ControlCharacter.to_string());
        let mut many = valid();
        many.as_object_mut().unwrap().remove("location");
        many["locations"] = json!(["Haifa", "Acre\r\nX"]);
        assert_eq!(error_field(many).as_deref(), Some("locations[1]"));
    }

    #[test]
    fn wrong_types_are_reported_not_panicked_on() {
        let mut body = valid();
        body["duration"] = json!("ten");
        let err = parse(body).unwrap_err();
        assert!(err.message.contains("invalid type"), "{err}");
        let mut bad = valid();
        bad["locations"] = json!(["ok", 7]);
        assert!(parse(bad).is_err());
    }

    #[test]
    fn batch_errors_carry_the_index() {
        let mut bad = valid();
        bad["timestamp"] = json!("nope");
        assert_eq!(
            error_field(json!([valid(), bad])).as_deref(),
            Some("[1].timestamp")
        );
        let too_many: Vec<_> = (0..1001).map(|_| valid()).collect();
        assert!(
            parse(json!(too_many))
                .unwrap_err()
                .message
                .contains("at most 1000")
        );
        assert!(parse(json!([])).is_err());
        assert!(parse(json!("a string")).is_err());
    }

    #[test]
    fn truncated_or_non_utf8_json_is_rejected() {
        let request = request();
        let limits = Limits::default();
        assert!(parse_json(b"{\"location\": \"Tel", &request, &limits).is_err());
        assert!(parse_json(b"{\"location\": \"\xff\xfe\"}", &request, &limits).is_err());
    }
}
