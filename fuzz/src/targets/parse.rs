//! JSON and CAP bodies into `alert_core::input::parse_json` / `alert_core::cap::parse_cap`
//! directly, and the generators of those bodies (shared with the ingest targets).
//! Besides "no panic, no hang", what the parsers accept must hold the contract: every
//! alert has 1..=max locations that pass the location rule, a type, and
//! `start < end <= start + max duration`.

use std::time::Duration;

use alert_core::{Limits, QueueMessage, RequestContext, cap::parse_cap, input::parse_json};

use super::Verdict;
use crate::{
    case::{Blob, Case},
    synth::{self, Context, Gen, Node},
};

pub fn generate(g: &mut Gen, ctx: &Context) -> Case {
    let cap = g.chance(40);
    let body = if cap {
        cap_body(g, ctx)
    } else {
        json_body(g, ctx)
    };
    Case::Parse {
        cap,
        body: Blob(body),
        idempotency_key: g.chance(20).then(|| synth::string(g)),
        source: g.chance(20).then(|| synth::string(g)),
    }
}

const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "null",
    "true",
    "1e309",
    "-0",
    "\"location\":",
    "\"locations\":[",
    "\"type\":",
    "\"timestamp\":",
    "\"duration\":",
    "\"durationSeconds\":",
    "\"id\":",
    "\u{0}",
    "\u{feff}",
    "\u{85}",
    "\r\n",
    " ",
    "]]]]",
    "{{{{",
];

/// A JSON body: generated, a corpus seed mutated as a tree or as bytes, or arbitrary.
pub fn json_body(g: &mut Gen, ctx: &Context) -> Vec<u8> {
    let corpus = &ctx.corpus.json;
    let seed = &corpus[g.below(corpus.len())];
    let mut body = match g.below(10) {
        0..=3 => {
            let node = if g.chance(70) {
                synth::json_alert(g, ctx)
            } else {
                let n = match g.below(20) {
                    0 => 0,
                    1 => 1000,
                    2 => 1001,
                    _ => g.range(1, 5),
                };
                Node::Arr((0..n).map(|_| synth::json_alert(g, ctx)).collect())
            };
            node.text().into_bytes()
        }
        4..=6 => match serde_json::from_slice::<serde_json::Value>(seed) {
            Ok(value) => {
                let mut node = Node::from_value(&value);
                synth::mutate_json(g, ctx, &mut node);
                node.text().into_bytes()
            }
            Err(_) => seed.clone(),
        },
        7 | 8 => {
            let mut bytes = seed.clone();
            let other = &corpus[g.below(corpus.len())];
            synth::mutate_bytes(g, &mut bytes, JSON_TOKENS, other);
            bytes
        }
        _ => {
            let len = g.range(0, 300);
            if g.chance(50) {
                g.arbitrary::<String>(len).into_bytes()
            } else {
                g.bytes(len)
            }
        }
    };
    if g.chance(8) {
        let other = &corpus[g.below(corpus.len())];
        synth::mutate_bytes(g, &mut body, JSON_TOKENS, other);
    }
    body.truncate(MAX_BODY);
    body
}

const CAP_TOKENS: &[&str] = &[
    "<info>",
    "</info>",
    "<area>",
    "</area>",
    "<areaDesc>",
    "</areaDesc>",
    "<geocode><valueName>SAME</valueName><value>",
    "</value></geocode>",
    "<!DOCTYPE alert>",
    "<!DOCTYPE alert [<!ENTITY a \"aaaaaaaa\">]>",
    "&a;",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
    "<?xml version=\"1.0\" encoding=\"UTF-16\"?>",
    "<?pi x?>",
    "&amp;",
    "&lt;",
    "&#0;",
    "&#x85;",
    "&#x9;",
    "&#1114111;",
    "&#1114112;",
    "&#xD800;",
    "&#99999999999;",
    "\u{0}",
    "\u{feff}",
    "<msgType>Cancel</msgType>",
    "<msgType>Update</msgType>",
    "<msgType>Ack</msgType>",
    "<status>Test</status>",
    "<references>a@b,X1,2026-11-22T10:00:00-00:00</references>",
    "<references> </references>",
    "<expires>",
    "</expires>",
    "<onset>",
    "</onset>",
    "xmlns=\"urn:oasis:names:tc:emergency:cap:1.1\"",
    "xmlns=\"urn:oasis:names:tc:emergency:cap:1.0\"",
    "xmlns:x=\"y\"",
    " a=\"b\"",
    "</alert>",
    "<alert>",
    "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">",
    "<event></event>",
    "<severity>Unknown</severity>",
    "<language>he-IL</language>",
    "<category>Geo</category><category>Met</category>",
    "9999-12-31T23:59:59+14:00",
    "0000-01-01T00:00:00-00:00",
    "2026-11-22T10:00:00",
    "\r\n",
    "<",
    ">",
    "/>",
];

/// Element names whose text the CAP mutator replaces.
const CAP_TEXT_ELEMENTS: &[&str] = &[
    "identifier",
    "sender",
    "sent",
    "status",
    "msgType",
    "scope",
    "references",
    "category",
    "event",
    "urgency",
    "severity",
    "certainty",
    "onset",
    "effective",
    "expires",
    "headline",
    "instruction",
    "areaDesc",
    "valueName",
    "value",
    "language",
];

/// A CAP body: a corpus seed with its instants moved near the run's clock, then text,
/// element and byte mutations.
pub fn cap_body(g: &mut Gen, ctx: &Context) -> Vec<u8> {
    let corpus = &ctx.corpus.cap;
    let mut text = String::from_utf8_lossy(&corpus[g.below(corpus.len())]).into_owned();
    if g.chance(70) {
        let start = ctx.now + chrono::TimeDelta::seconds(g.range(0, 3600) as i64 - 1800);
        let end = start + chrono::TimeDelta::seconds(g.range(1, 7200) as i64);
        let fmt =
            |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string();
        for (element, value) in [
            ("sent", fmt(start)),
            ("onset", fmt(start)),
            ("effective", fmt(start)),
            ("expires", fmt(end)),
        ] {
            text = replace_text(&text, element, &value, usize::MAX);
        }
    }
    for _ in 0..g.count(3) {
        match g.below(6) {
            0 | 1 => {
                let element = g.pick(CAP_TEXT_ELEMENTS);
                let value = match g.below(4) {
                    0 => synth::timestamp(g, ctx),
                    1 => xml_escape(&synth::string(g)),
                    2 => synth::string(g),
                    _ => g.pick(CAP_TOKENS).to_owned(),
                };
                let nth = g.below(3);
                text = replace_text(&text, element, &value, nth);
            }
            2 => {
                // Repeat an info, area or geocode block.
                let element = g.pick(&["info", "area", "geocode", "parameter"]);
                if let Some(block) = element_block(&text, element) {
                    let copies = g.pick(&[1usize, 2, 10, 1000]);
                    let copies =
                        copies.min(MAX_BODY.saturating_sub(text.len()) / block.len().max(1));
                    let end = text.find(&block).map(|i| i + block.len()).unwrap_or(0);
                    text.insert_str(end, &block.repeat(copies));
                }
            }
            3 => {
                let element = match g.chance(30) {
                    true => g.pick(&["info", "area"]),
                    false => g.pick(CAP_TEXT_ELEMENTS),
                };
                if let Some(block) = element_block(&text, element) {
                    text = text.replacen(&block, "", 1);
                }
            }
            _ => {
                let at = char_boundary(&text, g.below(text.len() + 1));
                text.insert_str(at, g.pick(CAP_TOKENS));
            }
        }
    }
    let mut body = text.into_bytes();
    if g.chance(20) {
        let other = &corpus[g.below(corpus.len())];
        synth::mutate_bytes(g, &mut body, CAP_TOKENS, other);
    }
    body.truncate(MAX_BODY);
    body
}

/// The listener's default body limit: nothing longer reaches a parser.
pub const MAX_BODY: usize = 1024 * 1024;

fn char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Replaces the text of the `nth` `<element>` (every one with `usize::MAX`).
fn replace_text(text: &str, element: &str, value: &str, nth: usize) -> String {
    let open = format!("<{element}>");
    let close = format!("</{element}>");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut seen = 0;
    while let Some(i) = rest.find(&open) {
        let after = i + open.len();
        let Some(j) = rest[after..].find(&close) else {
            break;
        };
        out.push_str(&rest[..after]);
        if nth == usize::MAX || seen == nth {
            out.push_str(value);
        } else {
            out.push_str(&rest[after..after + j]);
        }
        seen += 1;
        rest = &rest[after + j..];
    }
    out.push_str(rest);
    out
}

/// The first `<element>...</element>` of `text`.
fn element_block(text: &str, element: &str) -> Option<String> {
    let open = format!("<{element}>");
    let close = format!("</{element}>");
    let i = text.find(&open)?;
    let j = text[i..].find(&close)? + i + close.len();
    Some(text[i..j].to_owned())
}

pub async fn execute(
    cap: bool,
    body: &Blob,
    idempotency_key: &Option<String>,
    source: &Option<String>,
    timeout: Duration,
) -> Verdict {
    let body = body.0.clone();
    let request = RequestContext {
        now: chrono::Utc::now(),
        idempotency_key: idempotency_key.clone(),
        source: source.clone(),
    };
    let parsing = tokio::task::spawn_blocking(move || {
        let limits = Limits::default();
        let parsed = match cap {
            true => parse_cap(&body, &request, &limits),
            false => parse_json(&body, &request, &limits),
        };
        parsed.map(|messages| check_messages(&messages, &limits))
    });
    match tokio::time::timeout(timeout, parsing).await {
        Err(_) => Err(format!(
            "hang: the parser did not return within {timeout:?}"
        )),
        Ok(Err(join)) if join.is_panic() => Err(format!("panic: {}", crate::panic_text(join))),
        Ok(Err(join)) => Err(format!("parser task failed: {join}")),
        Ok(Ok(Ok(Ok(())))) => Ok("accepted".into()),
        Ok(Ok(Ok(Err(broken)))) => Err(format!(
            "accepted an alert that breaks the contract: {broken}"
        )),
        Ok(Ok(Err(invalid))) => {
            if invalid.message.is_empty() {
                return Err("refused without saying why".into());
            }
            Ok("refused".into())
        }
    }
}

/// What every accepted message must satisfy.
pub fn check_messages(messages: &[QueueMessage], limits: &Limits) -> Result<(), String> {
    if messages.is_empty() {
        return Err("no messages".into());
    }
    for message in messages {
        match message {
            QueueMessage::Alert(alert) => {
                if alert.locations.is_empty() || alert.locations.len() > limits.max_locations {
                    return Err(format!("{} locations", alert.locations.len()));
                }
                for location in &alert.locations {
                    if alert_core::clean_location(location) != Ok(location.as_str()) {
                        return Err(format!("location {location:?} breaks the location rule"));
                    }
                }
                if alert.alert_type.trim().is_empty() {
                    return Err("empty type".into());
                }
                if alert.end <= alert.start || alert.end - alert.start > limits.max_duration {
                    return Err(format!("window {} .. {}", alert.start, alert.end));
                }
            }
            QueueMessage::Cancel(cancel) => {
                if cancel.references.is_empty() {
                    return Err("a cancel without references".into());
                }
                for location in &cancel.locations {
                    if alert_core::clean_location(location) != Ok(location.as_str()) {
                        return Err(format!("location {location:?} breaks the location rule"));
                    }
                }
            }
        }
    }
    Ok(())
}
