//! What one generated input is, in a form a failure file keeps and `replay` runs again.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes, written as a JSON string when they are UTF-8 and as `{"hex": ...}` otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => {
                let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
                #[derive(Serialize)]
                struct Hex {
                    hex: String,
                }
                Hex { hex }.serialize(serializer)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Blob, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Hex { hex: String },
        }
        match Repr::deserialize(deserializer)? {
            Repr::Text(text) => Ok(Blob(text.into_bytes())),
            Repr::Hex { hex } => (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
                .collect::<Result<Vec<u8>, _>>()
                .map(Blob)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl From<Vec<u8>> for Blob {
    fn from(bytes: Vec<u8>) -> Blob {
        Blob(bytes)
    }
}

impl From<String> for Blob {
    fn from(text: String) -> Blob {
        Blob(text.into_bytes())
    }
}

/// An HTTP request: method, request target (path and query), headers, body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpCase {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, Blob)>,
    pub body: Blob,
}

/// One WebSocket frame a client sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frame {
    Text(String),
    Binary(Blob),
}

/// One Socket.IO session over WebSocket: the handshake query, then the frames (the
/// first is the connect packet, fuzzed or not).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SocketCase {
    pub query: String,
    pub frames: Vec<Frame>,
}

/// One Engine.IO polling request: a GET with a fuzzed query, or a POST of a fuzzed
/// payload on a fresh session.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PollCase {
    Get {
        query: String,
    },
    Post {
        content_type: Option<String>,
        body: Blob,
    },
}

/// One input of one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Case {
    /// A body straight into core's parsers.
    Parse {
        cap: bool,
        body: Blob,
        idempotency_key: Option<String>,
        source: Option<String>,
    },
    /// A request to the listener's router in-process (`keyed`: the router that
    /// requires API keys).
    Ingest { keyed: bool, request: HttpCase },
    /// A request to the real listener over loopback (RabbitMQ behind it).
    IngestHttp { request: HttpCase },
    /// Bytes on a TCP connection to the real listener (framing oddities).
    IngestRaw { bytes: Blob },
    /// A request to notify's SSE and REST routes over loopback.
    Rest { request: HttpCase },
    /// A Socket.IO session over WebSocket.
    Socketio(SocketCase),
    /// An Engine.IO polling request.
    Polling(PollCase),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_as_text_or_hex() {
        for bytes in [b"{\"a\":1}".to_vec(), vec![0xff, 0x00, 0xc3], Vec::new()] {
            let json = serde_json::to_string(&Blob(bytes.clone())).unwrap();
            assert_eq!(serde_json::from_str::<Blob>(&json).unwrap(), Blob(bytes));
        }
        assert_eq!(
            serde_json::to_string(&Blob(vec![0xff, 1])).unwrap(),
            r#"{"hex":"ff01"}"#
        );
    }
}
