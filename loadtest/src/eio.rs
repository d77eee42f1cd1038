//! Engine.IO v4 / Socket.IO v4 packets as this client sees them, classified by
//! their first bytes, and the run tag found in an `alert` frame without parsing
//! its JSON.

use memchr::memmem::Finder;

/// What a text frame from the server is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packet {
    /// `0{"sid":...}`: Engine.IO open; answer with a Socket.IO connect.
    Open,
    /// `2`: Engine.IO ping; answer `3`.
    Ping,
    /// `40{...}`: connected to the namespace.
    Connected,
    /// `44{...}`: connection refused by the namespace.
    ConnectError,
    /// `41`: disconnected by the server.
    Disconnect,
    /// `42["alert",...]`.
    Alert,
    /// `42["snapshot",...]`.
    Snapshot,
    /// `43<id>[...]`: an ack.
    Ack,
    Other,
}

pub(crate) fn classify(payload: &[u8]) -> Packet {
    match payload {
        [b'2'] => Packet::Ping,
        [b'0', ..] => Packet::Open,
        [b'4', b'2', rest @ ..] if rest.starts_with(b"[\"alert\"") => Packet::Alert,
        [b'4', b'2', rest @ ..] if rest.starts_with(b"[\"snapshot\"") => Packet::Snapshot,
        [b'4', b'0', ..] => Packet::Connected,
        [b'4', b'1', ..] => Packet::Disconnect,
        [b'4', b'3', ..] => Packet::Ack,
        [b'4', b'4', ..] => Packet::ConnectError,
        _ => Packet::Other,
    }
}

/// The Socket.IO connect packet, with the locations and the token as handshake `auth`.
pub(crate) fn connect_packet(locations: &[String], token: Option<&str>) -> String {
    let mut auth = serde_json::Map::new();
    if !locations.is_empty() {
        auth.insert("locations".into(), serde_json::json!(locations));
    }
    if let Some(token) = token {
        auth.insert("token".into(), token.into());
    }
    if auth.is_empty() {
        "40".to_owned()
    } else {
        format!("40{}", serde_json::Value::Object(auth))
    }
}

/// `subscribe` with ack id 1.
pub(crate) fn subscribe_packet(locations: &[String]) -> String {
    format!(
        "421{}",
        serde_json::json!(["subscribe", { "locations": locations }])
    )
}

/// The alert title this tool posts: `lt:<run>:<seq>:<sent unix µs>`. The sending
/// time rides along, so any client process on this machine can compute latency
/// without talking to the process that posted.
pub(crate) fn title(run: u32, seq: u64, sent_us: u64) -> String {
    format!("lt:{run}:{seq}:{sent_us}")
}

/// A tag found in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tag {
    pub(crate) seq: u64,
    pub(crate) sent_us: u64,
}

/// Finds this run's tags in raw frames (memmem, no JSON parse).
#[derive(Debug)]
pub(crate) struct Matcher {
    title: Finder<'static>,
    close: Finder<'static>,
    end_time: Finder<'static>,
}

impl Matcher {
    pub(crate) fn new(run: u32) -> Self {
        Self {
            title: Finder::new(format!("\"title\":\"lt:{run}:").as_bytes()).into_owned(),
            close: Finder::new(b"\"eventType\":\"close\"").into_owned(),
            end_time: Finder::new(b"\"endTime\":\"").into_owned(),
        }
    }

    /// The tag of this run in `frame`, if any.
    pub(crate) fn tag(&self, frame: &[u8]) -> Option<Tag> {
        let start = self.title.find(frame)? + self.title.needle().len();
        let rest = &frame[start..];
        let (seq, used) = parse_u64(rest)?;
        let rest = rest.get(used..)?.strip_prefix(b":")?;
        let (sent_us, used) = parse_u64(rest)?;
        rest.get(used..)?
            .starts_with(b"\"")
            .then_some(Tag { seq, sent_us })
    }

    pub(crate) fn is_close(&self, frame: &[u8]) -> bool {
        self.close.find(frame).is_some()
    }

    /// The event's `endTime` in unix µs (parsed only for close events).
    pub(crate) fn end_time_us(&self, frame: &[u8]) -> Option<u64> {
        let start = self.end_time.find(frame)? + self.end_time.needle().len();
        let rest = &frame[start..];
        let end = memchr::memchr(b'"', rest)?;
        let text = std::str::from_utf8(&rest[..end]).ok()?;
        let time = chrono::DateTime::parse_from_rfc3339(text).ok()?;
        u64::try_from(time.timestamp_micros()).ok()
    }
}

fn parse_u64(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    let mut used = 0;
    for &b in bytes.iter().take(20) {
        if !b.is_ascii_digit() {
            break;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        used += 1;
    }
    (used > 0).then_some((value, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALERT: &[u8] = br#"42["alert",{"id":"e1","offset":"1-0","epoch":"x","eventType":"update","location":"lt-7-0","type":"Rocket Alert","types":["Rocket Alert"],"startTime":"2026-11-25T10:00:00Z","endTime":"2026-11-25T10:00:30.250Z","alertCount":2,"severity":null,"title":"lt:7:42:1764064800123456","instructions":null,"alertId":"a"}]"#;

    #[test]
    fn classifies_packets() {
        assert_eq!(classify(b"2"), Packet::Ping);
        assert_eq!(
            classify(br#"0{"sid":"x","pingInterval":25000}"#),
            Packet::Open
        );
        assert_eq!(classify(br#"40{"sid":"y"}"#), Packet::Connected);
        assert_eq!(classify(ALERT), Packet::Alert);
        assert_eq!(
            classify(br#"42["snapshot",{"active":[]}]"#),
            Packet::Snapshot
        );
        assert_eq!(classify(br#"431[{"recovered":false}]"#), Packet::Ack);
        assert_eq!(classify(br#"44{"message":"no"}"#), Packet::ConnectError);
        assert_eq!(classify(b"41"), Packet::Disconnect);
        assert_eq!(classify(b"6"), Packet::Other);
        assert_eq!(classify(b""), Packet::Other);
    }

    #[test]
    fn finds_the_runs_tag_only() {
        assert_eq!(
            Matcher::new(7).tag(ALERT),
            Some(Tag {
                seq: 42,
                sent_us: 1_764_064_800_123_456
            })
        );
        assert_eq!(Matcher::new(8).tag(ALERT), None);
        assert_eq!(
            Matcher::new(7).tag(br#"42["alert",{"title":"lt:7:42:"}]"#),
            None
        );
        assert_eq!(
            Matcher::new(7).tag(br#"42["alert",{"title":"lt:7:42:9x"}]"#),
            None
        );
        assert_eq!(Matcher::new(7).tag(br#"42["alert",{"title":null}]"#), None);
        let text = title(7, 42, 1_764_064_800_123_456);
        let frame = format!(r#"42["alert",{{"title":"{text}"}}]"#);
        assert_eq!(
            Matcher::new(7).tag(frame.as_bytes()).map(|t| t.seq),
            Some(42)
        );
    }

    #[test]
    fn close_events_and_end_time() {
        let matcher = Matcher::new(7);
        assert!(!matcher.is_close(ALERT));
        let close = br#"42["alert",{"eventType":"close","endTime":"2026-11-25T10:00:30.250Z"}]"#;
        assert!(matcher.is_close(close));
        let expected = chrono::DateTime::parse_from_rfc3339("2026-11-25T10:00:30.250Z")
            .unwrap()
            .timestamp_micros() as u64;
        assert_eq!(matcher.end_time_us(close), Some(expected));
    }

    #[test]
    fn packets_we_send() {
        assert_eq!(connect_packet(&[], None), "40");
        assert_eq!(
            connect_packet(&["A".into()], None),
            r#"40{"locations":["A"]}"#
        );
        assert_eq!(connect_packet(&[], Some("t")), r#"40{"token":"t"}"#);
        assert_eq!(
            subscribe_packet(&["A".into()]),
            r#"421["subscribe",{"locations":["A"]}]"#
        );
    }
}
