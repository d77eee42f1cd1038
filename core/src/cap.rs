//! CAP 1.2 (and older, upgraded) XML into queue messages, with the `oasiscap` crate.
//!
//! - `msgType` Alert / Update: one alert per `info` block in the message's first
//!   language (other languages are translations of the same alert): `event` is the
//!   type, every `areaDesc` and geocode value a location, `onset` (else `effective`,
//!   else `sent`) the start, `expires` the end.
//! - Cancel: closes the windows of the referenced messages at once.
//! - `identifier` + `sender` are the idempotency key, and the reference a Cancel uses.
//! - Only `status` Actual is broadcast: a Test or Exercise must never reach phones as real.
//! - A body is exactly one well-formed XML document without a DOCTYPE (CAP 1.2 has
//!   none; a DTD's entities could expand a 64 KB body into hundreds of MB), checked
//!   before `oasiscap` sees it, which stops reading after the first element.

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
    check_one_document(text)?;
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

/// Refuses a DOCTYPE, a second root element, and anything but comments, processing
/// instructions and whitespace after the root. No text or attribute may grow longer
/// than the body itself: without a DTD only built-in entities and character
/// references exist, and these never expand, so this bounds the parser's memory by
/// the body limit whatever the input.
fn check_one_document(text: &str) -> Result<(), InvalidInput> {
    let mut reader = xml::reader::ParserConfig2::new()
        .allow_multiple_root_elements(false)
        .max_data_length(text.len())
        .max_attribute_length(text.len())
        .create_reader(text.as_bytes());
    let doctype = || InvalidInput::new("DOCTYPE", "a CAP message must not have a DOCTYPE");
    let mut root_seen = false;
    loop {
        match reader.next() {
            Ok(xml::reader::XmlEvent::StartElement { .. }) if !root_seen => {
                // Known only once the root element starts, before any entity in
                // its content is expanded.
                if reader.doctype().is_some() {
                    return Err(doctype());
                }
                root_seen = true;
            }
            Ok(xml::reader::XmlEvent::EndDocument) => return Ok(()),
            Ok(_) => {}
            Err(_) if reader.doctype().is_some() => return Err(doctype()),
            Err(e) => {
                return Err(InvalidInput::body(format!(
                    "the body must be exactly one well-formed XML document: {e}"
                )));
            }
        }
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
            std::iter::once(area.description.as_str())
                .chain((&area.geocode).into_iter().map(|(_, value)| value))
        })
        .map(collapse_xml_whitespace)
        .filter(|name| !name.is_empty())
        .collect();
    validate_locations(None, Some(names), limits)
}

/// Line breaks and indentation inside an element are the feed's layout, not part of
/// the place's name (and a name with a line break is refused as a location).
fn collapse_xml_whitespace(text: &str) -> String {
    let words: Vec<&str> = text
        .split([' ', '\t', '\n', '\r'])
        .filter(|word| !word.is_empty())
        .collect();
    words.join(" ")
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

    /// A "billion laughs" in miniature: 64 KB that expanded to 250 MB and took seconds.
    pub(crate) fn entity_bomb() -> String {
        let entity = "x".repeat(50_000);
        let references = "&a;".repeat(5_000);
        let body = INFO.replace("<areaDesc>Haifa", &format!("<areaDesc>{references}"));
        format!(
            "<!DOCTYPE alert [<!ENTITY a \"{entity}\">]>{}",
            cap("Alert", &body).replace(r#"<?xml version="1.0" encoding="UTF-8"?>"#, "")
        )
    }

    #[test]
    fn a_doctype_is_refused_before_anything_is_expanded() {
        let bomb = entity_bomb();
        assert!(bomb.len() < 70_000);
        let error = parse(&bomb).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("DOCTYPE"), "{error}");
        // In an attribute of the root, expanded before the root element is reported.
        let in_attribute = bomb.replacen(
            "<alert ",
            &format!("<alert x=\"{}\" ", "&a;".repeat(5_000)),
            1,
        );
        assert_eq!(
            parse(&in_attribute).unwrap_err().field.as_deref(),
            Some("DOCTYPE")
        );
        let harmless = format!(
            "<!DOCTYPE alert>{}",
            cap("Alert", INFO).split_once("?>").unwrap().1
        );
        assert_eq!(
            parse(&harmless).unwrap_err().field.as_deref(),
            Some("DOCTYPE")
        );
    }

    #[test]
    fn a_body_is_exactly_one_document() {
        let one = cap("Alert", INFO);
        let other = cap("Alert", INFO).replace("KSTO1055887203", "KSTO1055887204");
        let second_root = other.split_once("?>").unwrap().1;
        for (case, body) in [
            ("two alerts", format!("{one}{second_root}")),
            ("trailing text", format!("{one}garbage")),
            ("trailing tag", format!("{one}<x/>")),
            ("trailing unclosed tag", format!("{one}<alert>")),
            ("trailing close tag", format!("{one}</alert>")),
        ] {
            let error = parse(&body).expect_err(case);
            assert_eq!(error.field, None, "{case}: {error}");
        }
        let epilogue = format!("{one}\n  <!-- signed elsewhere -->\n<?audit id=\"7\"?>\n");
        assert_eq!(
            parse(&epilogue).unwrap().len(),
            1,
            "comments, PIs and whitespace after"
        );
    }

    #[test]
    fn area_names_follow_the_location_rule() {
        let wrapped = INFO.replace("<areaDesc>Haifa", "<areaDesc>\n      Haifa\n      Bay");
        let messages = parse(&cap("Alert", &wrapped)).unwrap();
        let [QueueMessage::Alert(alert)] = messages.as_slice() else {
            panic!("{messages:?}")
        };
        assert_eq!(alert.locations, ["Haifa Bay", "006109"], "layout collapsed");
        let control = INFO.replace("<areaDesc>Haifa", "<areaDesc>Hai\u{85}fa");
        let error = parse(&cap("Alert", &control)).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("info[0].area"), "{error}");
        assert_eq!(
            error.message,
            crate::LocationError::ControlCharacter.to_string()
        );
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
