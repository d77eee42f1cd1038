//! CAP 1.2 (and older, upgraded) XML into queue messages, with the `oasiscap` crate.
//!
//! - `msgType` Alert / Update: one alert per `info` block in the message's first
//!   language (other languages are translations of the same alert): `event` is the
//!   type, every `areaDesc` and geocode value a location, `onset` (else `effective`,
//!   else `sent`) the start, `expires` the end.
//! - Cancel: closes the windows of the referenced messages at once.
//! - `identifier` + `sender` are the idempotency key, and the reference a Cancel uses.
//! - Only `status` Actual is broadcast: a Test or Exercise must never reach phones as real.

use chrono::{DateTime, Utc};
use oasiscap::v1dot2;

use crate::input::{
    InvalidInput, Limits, RequestContext, alert_id, optional_text, required_text,
    validate_locations, whole_millis,
};
use crate::model::{Alert, Cancel, QueueMessage};

/// The key by which CAP messages refer to each other (`references` = sender,identifier,sent).
pub fn cap_key(sender: &str, identifier: &str) -> String {
    format!("cap:{}:{sender}:{identifier}", sender.len())
}

pub fn parse_cap(
    body: &[u8],
    request: &RequestContext,
    limits: &Limits,
) -> Result<Vec<QueueMessage>, InvalidInput> {
    let text = std::str::from_utf8(body)
        .map_err(|e| InvalidInput::body(format!("CAP body is not UTF-8: {e}")))?;
    let alert: oasiscap::Alert = text
        .parse()
        .map_err(|e| InvalidInput::body(format!("not a valid CAP message: {e}")))?;
    let alert: v1dot2::Alert = alert.into_latest();
    if alert.status != v1dot2::Status::Actual {
        return Err(InvalidInput::new(
            "status",
            format!(
                "only Actual messages are broadcast, this one is {:?}",
                alert.status
            ),
        ));
    }
    let key = cap_key(alert.sender.as_str(), alert.identifier.as_str());
    match alert.message_type {
        v1dot2::MessageType::Alert | v1dot2::MessageType::Update => {
            alerts(alert, key, request, limits)
        }
        v1dot2::MessageType::Cancel => cancel(alert, key, request, limits),
        other => Err(InvalidInput::new(
            "msgType",
            format!("{other:?} messages carry no alert"),
        )),
    }
}

fn alerts(
    alert: v1dot2::Alert,
    key: String,
    request: &RequestContext,
    limits: &Limits,
) -> Result<Vec<QueueMessage>, InvalidInput> {
    let Some(language) = alert.info.first().map(|info| info.language.clone()) else {
        return Err(InvalidInput::new(
            "info",
            "a CAP Alert or Update needs at least one info block",
        ));
    };
    let sent: DateTime<Utc> = chrono::DateTime::from(alert.sent).with_timezone(&Utc);
    alert
        .info
        .into_iter()
        .filter(|info| info.language == language)
        .enumerate()
        .map(|(index, info)| {
            let field = |name: &str| format!("info[{index}].{name}");
            let start = info
                .onset
                .or(info.effective)
                .map_or(sent, |t| chrono::DateTime::from(t).with_timezone(&Utc));
            let start = whole_millis(start);
            let end = match info.expires {
                Some(expires) => whole_millis(chrono::DateTime::from(expires).with_timezone(&Utc)),
                None => start + limits.cap_default_duration,
            };
            if end <= start {
                return Err(InvalidInput::new(
                    field("expires"),
                    "expires must be after onset",
                ));
            }
            if end - start > limits.max_duration {
                return Err(InvalidInput::new(
                    field("expires"),
                    format!(
                        "the alert lasts longer than the limit of {} s",
                        limits.max_duration.num_seconds()
                    ),
                ));
            }
            if start > request.now + limits.max_future_start {
                return Err(InvalidInput::new(
                    field("onset"),
                    "the alert starts too far in the future",
                ));
            }
            let locations =
                area_locations(&info.areas, limits).map_err(|e| retarget(e, &field("area")))?;
            let idempotency_key = format!("{key}#{index}");
            Ok(QueueMessage::Alert(Alert {
                id: alert_id(Some(&idempotency_key)),
                locations,
                alert_type: required_text(
                    &field("event"),
                    Some(info.event),
                    limits.max_type_chars,
                )?,
                start,
                end,
                idempotency_key: Some(idempotency_key),
                reference: Some(key.clone()),
                source: Some(alert.sender.as_str().to_owned()),
                severity: Some(info.severity.to_string()),
                title: optional_text(&field("headline"), info.headline, limits.max_text_chars)?,
                instructions: optional_text(
                    &field("instruction"),
                    info.instruction,
                    limits.max_text_chars,
                )?,
                category: info.categories.first().map(|c| format!("{c:?}")),
                received_at: request.now,
            }))
        })
        .collect()
}

fn cancel(
    alert: v1dot2::Alert,
    key: String,
    request: &RequestContext,
    limits: &Limits,
) -> Result<Vec<QueueMessage>, InvalidInput> {
    let references: Vec<String> = alert
        .references
        .iter()
        .flat_map(|references| references.iter())
        .map(|r| cap_key(r.sender.as_str(), r.identifier.as_str()))
        .collect();
    if references.is_empty() {
        return Err(InvalidInput::new(
            "references",
            "a Cancel must reference the messages it cancels",
        ));
    }
    let areas: Vec<v1dot2::Area> = alert.info.into_iter().flat_map(|info| info.areas).collect();
    let locations = if areas.is_empty() {
        Vec::new()
    } else {
        area_locations(&areas, limits)?
    };
    Ok(vec![QueueMessage::Cancel(Cancel {
        id: alert_id(Some(&key)),
        references,
        locations,
        idempotency_key: Some(key),
        received_at: request.now,
    })])
}

/// Every `areaDesc` and geocode value, validated like JSON locations.
fn area_locations(areas: &[v1dot2::Area], limits: &Limits) -> Result<Vec<String>, InvalidInput> {
    let names: Vec<String> = areas
        .iter()
        .flat_map(|area| {
            std::iter::once(area.description.clone()).chain(
                (&area.geocode)
                    .into_iter()
                    .map(|(_, value)| value.to_owned()),
            )
        })
        .filter(|name| !name.trim().is_empty())
        .collect();
    validate_locations(None, Some(names), limits)
}

fn retarget(mut error: InvalidInput, field: &str) -> InvalidInput {
    error.field = Some(field.to_owned());
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn cap(msg_type: &str, body: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>KSTO1055887203</identifier>
  <sender>KSTO@NWS.NOAA.GOV</sender>
  <sent>2026-11-22T10:00:00-00:00</sent>
  <status>Actual</status>
  <msgType>{msg_type}</msgType>
  <scope>Public</scope>
  {body}
</alert>"#
        )
    }

    const INFO: &str = r#"<info>
    <category>Met</category>
    <event>Flood Warning</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Observed</certainty>
    <onset>2026-11-22T10:00:00-00:00</onset>
    <expires>2026-11-22T11:30:00-00:00</expires>
    <headline>Flood warning</headline>
    <instruction>Move to higher ground</instruction>
    <area>
      <areaDesc>Haifa</areaDesc>
      <geocode><valueName>SAME</valueName><value>006109</value></geocode>
    </area>
  </info>"#;

    fn request() -> RequestContext {
        RequestContext {
            now: "2026-11-22T10:00:05Z".parse().unwrap(),
            idempotency_key: None,
            source: None,
        }
    }

    fn parse(xml: &str) -> Result<Vec<QueueMessage>, InvalidInput> {
        parse_cap(xml.as_bytes(), &request(), &Limits::default())
    }

    #[test]
    fn cap_alert_becomes_an_alert() {
        let messages = parse(&cap("Alert", INFO)).unwrap();
        let [QueueMessage::Alert(alert)] = messages.as_slice() else {
            panic!("{messages:?}")
        };
        assert_eq!(alert.alert_type, "Flood Warning");
        assert_eq!(alert.locations, ["Haifa", "006109"]);
        assert_eq!(
            alert.start,
            "2026-11-22T10:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            alert.end,
            "2026-11-22T11:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(alert.severity.as_deref(), Some("Severe"));
        assert_eq!(alert.instructions.as_deref(), Some("Move to higher ground"));
        assert_eq!(
            alert.reference.as_deref(),
            Some("cap:17:KSTO@NWS.NOAA.GOV:KSTO1055887203")
        );
        assert_eq!(
            alert.idempotency_key.as_deref(),
            Some("cap:17:KSTO@NWS.NOAA.GOV:KSTO1055887203#0")
        );
        assert_eq!(
            parse(&cap("Alert", INFO)).unwrap()[0].id(),
            alert.id,
            "same message, same UUID"
        );
    }

    #[test]
    fn cancel_references_the_earlier_message() {
        let references =
            "<references>KSTO@NWS.NOAA.GOV,KSTO1055887200,2026-11-22T09:00:00-00:00</references>";
        let messages = parse(&cap("Cancel", references)).unwrap();
        let [QueueMessage::Cancel(cancel)] = messages.as_slice() else {
            panic!("{messages:?}")
        };
        assert_eq!(
            cancel.references,
            ["cap:17:KSTO@NWS.NOAA.GOV:KSTO1055887200"]
        );
        assert!(cancel.locations.is_empty());
        assert_eq!(
            parse(&cap("Cancel", "")).unwrap_err().field.as_deref(),
            Some("references")
        );
    }

    #[test]
    fn bad_cap_is_rejected_with_a_reason() {
        assert_eq!(
            parse(&cap("Alert", "")).unwrap_err().field.as_deref(),
            Some("info")
        );
        assert!(parse("<alert>garbage").is_err());
        assert!(parse("not xml at all").is_err());
        assert_eq!(
            parse(&cap("Ack", "")).unwrap_err().field.as_deref(),
            Some("msgType")
        );
        let test = cap("Alert", INFO).replace("<status>Actual</status>", "<status>Test</status>");
        assert_eq!(parse(&test).unwrap_err().field.as_deref(), Some("status"));
        let backwards = cap("Alert", &INFO.replace("11:30:00", "09:30:00"));
        assert_eq!(
            parse(&backwards).unwrap_err().field.as_deref(),
            Some("info[0].expires")
        );
        assert!(parse_cap(b"\xff\xfe<alert/>", &request(), &Limits::default()).is_err());
    }

    /// These made xml_serde 1.4.1 loop forever (see vendor/xml_serde/PATCHED.md).
    #[test]
    fn stray_text_and_broken_tags_are_rejected_not_looped_on() {
        for inner in [
            "a\u{feff}b",
            "stray text",
            "a</\u{7f}b",
            "a<\u{feff}b",
            "a<I<=b",
        ] {
            let xml =
                format!(r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">{inner}</alert>"#);
            assert!(parse(&xml).is_err(), "{inner:?}");
        }
        let stray_in_info = cap("Alert", &INFO.replace("<event>", "stray<event>"));
        let _ = parse(&stray_in_info); // accepted or rejected, but answered
    }
}
