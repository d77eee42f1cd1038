//! Bad input at the Socket.IO edge (issue 19, section 7), from raw clients: the
//! packet limit (`maxPayload`, 16 KiB) holds on WebSocket as on polling, malformed
//! polling packets are the client's error (400), and notify keeps serving good clients.
//! The fuzz cases at the end generate these classes so each stays fixed; their
//! listener-side siblings are in listener/tests/it/fuzz.rs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, protocol::frame::coding::CloseCode},
};

use crate::helpers::*;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client connected at the Socket.IO level, and the `maxPayload` the
/// server announced in its Engine.IO open packet.
async fn connected(app: &TestApp) -> (Ws, usize) {
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let open = next_text(&mut ws).await;
    let open: Value = serde_json::from_str(open.strip_prefix('0').expect("open packet")).unwrap();
    let max_payload = open["maxPayload"].as_u64().expect("maxPayload") as usize;
    ws.send(Message::text("40")).await.unwrap();
    // notify registers its handlers before it emits the snapshot.
    while !next_text(&mut ws).await.starts_with(r#"42["snapshot""#) {}
    (ws, max_payload)
}

async fn next_text(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Text(text))) => return text.as_str().to_owned(),
            Some(Ok(_)) => {}
            other => panic!("websocket ended: {other:?}"),
        }
    }
}

/// What a client saw after sending one message: whether it was acked, and the close
/// code if the server closed.
#[derive(Debug, PartialEq)]
struct Outcome {
    acked: bool,
    closed_with: Option<CloseCode>,
}

/// Sends `subscribe` with ack id 1, padded to exactly `size` bytes, while reading
/// (a client writing 10 MB must not have to finish before it can see the close).
async fn subscribe_of_size(ws: Ws, size: usize) -> Outcome {
    let head = r#"421["subscribe",{"locations":[""#;
    let tail = r#""]}]"#;
    let message = format!("{head}{}{tail}", "x".repeat(size - head.len() - tail.len()));
    assert_eq!(message.len(), size);
    let (mut sink, mut stream) = ws.split();
    let sender = tokio::spawn(async move {
        let _ = sink.send(Message::text(message)).await; // may fail: the server closed
        sink
    });
    let outcome = tokio::time::timeout(WAIT, async {
        let mut acked = false;
        while let Some(message) = stream.next().await {
            match message {
                Ok(Message::Text(text)) if text.as_str().starts_with("431") => {
                    acked = true;
                    break;
                }
                Ok(Message::Close(frame)) => {
                    return Outcome {
                        acked,
                        closed_with: frame.map(|f| f.code),
                    };
                }
                Ok(_) => {}
                Err(error) => panic!("the connection ended without a close frame: {error}"),
            }
        }
        Outcome {
            acked,
            closed_with: None,
        }
    })
    .await
    .expect("an ack or a close in time");
    sender.abort();
    outcome
}

#[tokio::test]
async fn websocket_messages_over_max_payload_close_the_connection_unacked() {
    let app = TestApp::ready("edge-ws-size").await;
    let (ws, max_payload) = connected(&app).await;
    assert_eq!(max_payload, 16 * 1024, "notify's default");
    // At the limit: parsed and answered (with an error: the location is too long).
    let at_limit = subscribe_of_size(ws, max_payload).await;
    assert_eq!(
        at_limit,
        Outcome {
            acked: true,
            closed_with: None
        }
    );
    for size in [max_payload + 1, 1 << 20, 10 << 20] {
        let (ws, _) = connected(&app).await;
        assert_eq!(
            subscribe_of_size(ws, size).await,
            Outcome {
                acked: false,
                closed_with: Some(CloseCode::Size)
            },
            "{size} bytes"
        );
    }
    // A normal subscribe on a new connection still works.
    let mut client = app.client(json!({})).await;
    client.expect("snapshot").await;
    let ack = client
        .emit_with_ack("subscribe", json!({ "locations": ["Edge"] }))
        .await;
    assert!(ack["error"].is_null(), "{ack}");
    app.apply(&alert("Edge", "Rocket Alert", 5)).await;
    assert_eq!(client.alerts(1).await[0].location, "Edge");
    app.stop().await;
}

/// A new Engine.IO polling session: its sid.
async fn polling_session(app: &TestApp) -> String {
    let response = app
        .http
        .get(app.url("/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let open: Value = serde_json::from_str(text.strip_prefix('0').expect("open packet")).unwrap();
    open["sid"].as_str().unwrap().to_owned()
}

async fn post_polling(app: &TestApp, sid: &str, body: Vec<u8>) -> u16 {
    app.http
        .post(app.url(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}")))
        .header("content-type", "text/plain;charset=UTF-8")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn malformed_polling_packets_are_400() {
    let app = TestApp::ready("edge-polling").await;
    // (body, status): each on a session of its own, as a bad packet ends its session.
    let cases: [(&str, u16); 6] = [
        ("bnot-base64!", 400),
        ("b====", 400),
        ("42[\"a\u{1e}b\"]", 400),
        // A second pong the server never asked for.
        ("3\u{1e}3", 400),
        // The client's own disconnect, then a close: the session ends, no 500.
        ("41\u{1e}1", 200),
        ("40", 200),
    ];
    for (body, status) in cases {
        let sid = polling_session(&app).await;
        assert_eq!(
            post_polling(&app, &sid, body.into()).await,
            status,
            "{body:?}"
        );
    }
    app.stop().await;
}

/// Found by alert-fuzz (issue 12, section 5): a 6-byte packet whose first character
/// is longer than one byte (`€3[]`) panicked engineioxide's packet parser (a str slice
/// at byte 1), killing the task of the connection (polling: no answer at all). It is
/// a bad packet like any other: a polling POST of it is answered 400, a WebSocket
/// sending it is closed as for `9xyz`, and notify serves on.
#[tokio::test]
async fn a_multibyte_first_character_is_a_bad_packet_not_a_panic() {
    let app = TestApp::ready("edge-multibyte").await;
    for packet in ["9xyz", "\u{20ac}3[]", "\u{e9}probe", "\u{20ac}"] {
        let sid = polling_session(&app).await;
        assert_eq!(
            post_polling(&app, &sid, packet.into()).await,
            400,
            "{packet:?}"
        );
        let (mut ws, _) = connected(&app).await;
        ws.send(Message::text(packet)).await.unwrap();
        let ended = tokio::time::timeout(WAIT, async {
            while let Some(Ok(message)) = ws.next().await {
                if message.is_close() {
                    break;
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "{packet:?}: the WebSocket is closed");
    }
    let mut client = app.client(json!({ "locations": ["Multibyte"] })).await;
    client.expect("snapshot").await;
    app.apply(&alert("Multibyte", "Rocket Alert", 5)).await;
    assert_eq!(client.alerts(1).await[0].location, "Multibyte");
    app.stop().await;
}

/// xorshift64*: enough randomness for generating inputs, no dependency.
struct Gen(u64);

impl Gen {
    fn seeded() -> (Gen, u64) {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        (Gen(seed), seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A polling body built from the pieces that broke the decoder: packet types,
/// base64 prefixes and padding, record separators, JSON fragments, invalid UTF-8.
fn polling_body(g: &mut Gen) -> Vec<u8> {
    const PIECES: &[&[u8]] = &[
        b"b",
        b"b4",
        b"4",
        b"42",
        b"40",
        b"41",
        b"2",
        b"3",
        b"1",
        b"6",
        b"=",
        b"====",
        b"\x1e",
        b"\x1e\x1e",
        b"[",
        b"]",
        b"\"",
        b"{",
        b"}",
        b"subscribe",
        b"!",
        b"\xff",
        b"\xc3",
        b"\xe2\x82",
        b"\0",
        b"AAAA",
        b"not-base64!",
        b"0",
        b"9999999999",
    ];
    let mut body = Vec::new();
    for _ in 0..1 + g.below(12) {
        body.extend_from_slice(PIECES[g.below(PIECES.len())]);
    }
    body
}

/// Generated malformed polling bodies and oversize WebSocket messages: never a 5xx,
/// never an ack beyond the limit, and notify keeps serving a good client.
#[tokio::test]
async fn fuzz_socket_io_edge() {
    let app = TestApp::ready("edge-fuzz").await;
    let (mut g, seed) = Gen::seeded();
    for _ in 0..300 {
        let body = polling_body(&mut g);
        let sid = polling_session(&app).await;
        let status = post_polling(&app, &sid, body.clone()).await;
        assert!(
            matches!(status, 200 | 400),
            "seed {seed}: {status} for {:?}",
            String::from_utf8_lossy(&body)
        );
    }
    let max_payload = 16 * 1024;
    for _ in 0..10 {
        let size = max_payload + 1 + g.below(4 * max_payload);
        let (ws, _) = connected(&app).await;
        let outcome = subscribe_of_size(ws, size).await;
        assert_eq!(
            outcome,
            Outcome {
                acked: false,
                closed_with: Some(CloseCode::Size)
            },
            "seed {seed}: {size} bytes"
        );
    }
    assert_eq!(app.readyz().await, 200);
    let mut client = app.client(json!({ "locations": ["Fuzzed"] })).await;
    client.expect("snapshot").await;
    app.apply(&alert("Fuzzed", "Rocket Alert", 5)).await;
    let alerts = tokio::time::timeout(Duration::from_secs(10), client.alerts(1))
        .await
        .expect("a good client is still served");
    assert_eq!(alerts[0].location, "Fuzzed");
    app.stop().await;
}

/// Two WebSocket upgrades of one polling session at once: one is refused, the other
/// carries the session. (The waiting one used to hold the send channel while the
/// first one's writer started, and that writer panicked: a session that never answered.)
#[tokio::test]
async fn two_upgrades_of_one_session_at_once_leave_one_working_transport() {
    let app = TestApp::ready("double-upgrade").await;
    for _ in 0..20 {
        let sid = polling_session(&app).await;
        let url = format!(
            "ws://{}/socket.io/?EIO=4&transport=websocket&sid={sid}",
            app.addr
        );
        let upgrade = || async {
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.ok()?;
            ws.send(Message::text("2probe")).await.ok()?;
            let probe = tokio::time::timeout(WAIT, ws.next()).await.ok()??.ok()?;
            (probe.to_text().ok()? == "3probe").then_some(())?;
            ws.send(Message::text("5")).await.ok()?;
            Some(ws)
        };
        let (first, second) = tokio::join!(upgrade(), upgrade());
        let mut upgraded: Vec<Ws> = [first, second].into_iter().flatten().collect();
        assert_eq!(upgraded.len(), 1, "exactly one upgrade goes through");
        let ws = &mut upgraded[0];
        ws.send(Message::text("40")).await.unwrap();
        while !next_text(ws).await.starts_with(r#"42["snapshot""#) {}
    }
    app.stop().await;
}
