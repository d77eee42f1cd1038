//! Socket.IO over real WebSocket connections (socketioxide parses behind the
//! transport, so nothing short of a connection reaches it): the handshake query, the
//! connect packet's `auth`, `subscribe` / `unsubscribe` payloads with and without
//! acks, binary attachments, Engine.IO packets and garbage. And Engine.IO
//! long-polling: fuzzed handshake queries and payloads posted to a fresh session.
//!
//! A session is judged by a probe: after the fuzzed frames, a well-formed
//! `unsubscribe` with an ack id of its own must be acked, or the server must close the
//! connection, within the timeout. Frames after which silence is correct (a
//! disconnect, a binary event still waiting for its attachments) skip the probe.

use std::{net::SocketAddr, time::Duration};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, Message};

use super::{Verdict, exchange};
use crate::{
    case::{Blob, Case, Frame, HttpCase, PollCase, SocketCase},
    http1::Conn,
    synth::{self, Context, Gen, LOCATIONS, Node},
};

const PROBE_ID: u64 = 987_654_321;

fn location_list(g: &mut Gen) -> Node {
    let n = match g.below(20) {
        0 => g.pick(&[100usize, 101, 1000]),
        _ => g.range(0, 4),
    };
    Node::Arr(
        (0..n)
            .map(|i| {
                if n > 10 {
                    Node::Str(format!("L{i}"))
                } else if g.chance(60) {
                    Node::Str(g.pick(LOCATIONS).to_owned())
                } else if g.chance(80) {
                    Node::Str(synth::string(g))
                } else {
                    Node::Num(g.pick(synth::NUMBERS).to_owned())
                }
            })
            .collect(),
    )
}

fn since(g: &mut Gen, ctx: &Context) -> Node {
    let epoch = match g.below(5) {
        0..=2 => ctx.epoch.clone().map_or(Node::Null, Node::Str),
        3 => Node::Str(synth::string(g)),
        _ => synth::json_leaf(g, ctx),
    };
    let offset = match g.below(5) {
        0 | 1 if !ctx.offsets.is_empty() => {
            Node::Str(ctx.offsets[g.below(ctx.offsets.len())].clone())
        }
        2 => Node::Str(g.pick(synth::STRINGS).to_owned()),
        3 => synth::json_leaf(g, ctx),
        _ => Node::Str("0-0".into()),
    };
    let mut fields = Vec::new();
    if g.chance(90) {
        fields.push(("epoch".to_owned(), epoch));
    }
    if g.chance(90) {
        fields.push(("offset".to_owned(), offset));
    }
    Node::Obj(fields)
}

/// The `auth` object and the `subscribe` payload: `{locations?, since?}`.
fn subscription(g: &mut Gen, ctx: &Context) -> Node {
    let mut fields = Vec::new();
    if g.chance(80) {
        let locations = if g.chance(85) {
            location_list(g)
        } else {
            synth::json_leaf(g, ctx)
        };
        fields.push(("locations".to_owned(), locations));
    }
    if g.chance(30) {
        let since = if g.chance(85) {
            since(g, ctx)
        } else {
            synth::json_leaf(g, ctx)
        };
        fields.push(("since".to_owned(), since));
    }
    if g.chance(5) {
        fields.push((synth::string(g), synth::json_leaf(g, ctx)));
    }
    let node = Node::Obj(fields);
    match g.below(20) {
        0 => synth::json_leaf(g, ctx),
        1 => {
            let mut node = node;
            synth::mutate_json(g, ctx, &mut node);
            node
        }
        _ => node,
    }
}

fn event(g: &mut Gen, ctx: &Context) -> String {
    let ack = match g.below(4) {
        0 | 1 => g.below(1000).to_string(),
        2 => String::new(),
        _ => g
            .pick(&[
                "0",
                "4294967295",
                "4294967296",
                "18446744073709551616",
                "-1",
                "01",
            ])
            .to_owned(),
    };
    let name = match g.below(10) {
        0..=5 => "subscribe",
        6..=7 => "unsubscribe",
        8 => "snapshot",
        _ => "alert",
    };
    let payload = subscription(g, ctx);
    let array = match g.below(12) {
        0 => Node::Arr(vec![Node::Str(name.into())]),
        1 => Node::Arr(vec![Node::Str(name.into()), payload.clone(), payload]),
        2 => Node::Arr(vec![]),
        3 => Node::Arr(vec![Node::Num("1".into()), payload]),
        4 => payload,
        _ => Node::Arr(vec![Node::Str(name.into()), payload]),
    };
    let namespace = if g.chance(5) {
        g.pick(&["/,", "/admin,", "/\u{0},", "/"]).to_owned()
    } else {
        String::new()
    };
    format!("42{namespace}{ack}{}", array.text())
}

/// One fuzzed frame.
fn frame(g: &mut Gen, ctx: &Context) -> Frame {
    match g.below(20) {
        0..=8 => Frame::Text(event(g, ctx)),
        9 => Frame::Text(
            g.pick(&[
                "2", "3", "3probe", "5", "6", "1", "4", "40", "41", "44", "43", "43[]", "430[]",
                "46",
            ])
            .to_owned(),
        ),
        10 => {
            let n = g.range(1, 3);
            let placeholders: Vec<String> = (0..n)
                .map(|i| format!("{{\"_placeholder\":true,\"num\":{i}}}"))
                .collect();
            Frame::Text(format!(
                "45{n}-[\"subscribe\",{{\"locations\":[{}]}}]",
                placeholders.join(",")
            ))
        }
        11 => Frame::Binary(Blob(g.bytes_in(0, 64))),
        12 => Frame::Text(format!(
            "43{}[{}]",
            g.below(100),
            subscription(g, ctx).text()
        )),
        13..=15 => {
            let corpus = &ctx.corpus.socketio;
            let mut line = corpus[g.below(corpus.len())].clone().into_bytes();
            let other = corpus[g.below(corpus.len())].clone().into_bytes();
            synth::mutate_bytes(
                g,
                &mut line,
                &["4", "2", "[", "]", "{", "}", ",", "\"", "/", "-", "\u{1e}"],
                &other,
            );
            Frame::Text(String::from_utf8_lossy(&line).into_owned())
        }
        16 => Frame::Text(format!(
            "42[\"subscribe\",{{\"locations\":[\"{}\"]}}]",
            "x".repeat(g.pick(&[16_300usize, 16_384, 16_385, 40_000]))
        )),
        _ => Frame::Text(g.text_in(0, 64)),
    }
}

pub fn generate_socket(g: &mut Gen, ctx: &Context) -> Case {
    let query = match g.below(30) {
        0 => "EIO=3&transport=websocket".to_owned(),
        1 => "EIO=4".to_owned(),
        2 => "EIO=4&transport=websocket&sid=bogus".to_owned(),
        3 => {
            let text = synth::string(g);
            format!("EIO=4&transport=websocket&{}", synth::query_value(g, &text))
        }
        _ => "EIO=4&transport=websocket".to_owned(),
    };
    // http::Uri takes at most 64 KiB: beyond, the client itself refuses.
    let mut query = query;
    query.truncate(60_000);
    let mut frames = Vec::new();
    let connect = match g.below(10) {
        0..=5 => format!("40{}", subscription(g, ctx).text()),
        6 => "40".to_owned(),
        7 => format!(
            "40{}",
            g.pick(&["/admin,", "/,", "/", "{", "[]", "null", "\"x\""])
        ),
        _ => match frame(g, ctx) {
            Frame::Text(text) => text,
            Frame::Binary(_) => "40".to_owned(),
        },
    };
    frames.push(Frame::Text(connect));
    for _ in 0..g.count(4) {
        frames.push(frame(g, ctx));
    }
    Case::Socketio(SocketCase { query, frames })
}

/// Frames after which no ack is owed: disconnects, binary events awaiting their
/// attachments, connects, transport upgrades and closes.
fn silences(frame: &Frame) -> bool {
    match frame {
        Frame::Binary(_) => true,
        Frame::Text(text) => ["1", "41", "45", "46", "40", "5"]
            .iter()
            .any(|p| text.starts_with(p)),
    }
}

enum Heard {
    Text(String),
    Closed,
}

/// Waits for a text frame that satisfies `wanted` (others are skipped: snapshots,
/// alerts, acks of fuzzed frames), or the connection's end.
async fn hear<S>(ws: &mut S, wanted: impl Fn(&str) -> bool, timeout: Duration) -> Result<Heard, ()>
where
    S: futures::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let listening = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) if wanted(text.as_str()) => {
                    return Heard::Text(text.as_str().to_owned());
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Heard::Closed,
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(timeout, listening)
        .await
        .map_err(|_| ())
}

pub async fn execute_socket(addr: SocketAddr, case: &SocketCase, timeout: Duration) -> Verdict {
    let url = format!("ws://{addr}/socket.io/?{}", case.query);
    let connecting = tokio::time::timeout(timeout, tokio_tungstenite::connect_async(url)).await;
    let mut ws = match connecting {
        Err(_) => {
            return Err(format!(
                "hang: the WebSocket handshake took over {timeout:?}"
            ));
        }
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            if status >= 500 {
                return Err(format!("handshake refused with {status}"));
            }
            return Ok(format!("refused {status}"));
        }
        Ok(Err(error)) => return Err(format!("handshake failed: {error}")),
        Ok(Ok((ws, _))) => ws,
    };
    match hear(&mut ws, |t| t.starts_with('0'), timeout).await {
        Err(()) => return Err("hang: no Engine.IO open packet".into()),
        Ok(Heard::Closed) => return Err("closed before the open packet".into()),
        Ok(Heard::Text(_)) => {}
    }
    let verdict = session(&mut ws, case, timeout).await;
    let _ = tokio::time::timeout(Duration::from_millis(100), ws.close(None)).await;
    verdict
}

async fn send<S>(ws: &mut S, frame: &Frame) -> bool
where
    S: futures::Sink<Message> + Unpin,
{
    let message = match frame {
        Frame::Text(text) => Message::text(text.clone()),
        Frame::Binary(bytes) => Message::binary(bytes.0.clone()),
    };
    ws.send(message).await.is_ok()
}

async fn session<S>(ws: &mut S, case: &SocketCase, timeout: Duration) -> Verdict
where
    S: futures::Stream<Item = Result<Message, tungstenite::Error>> + futures::Sink<Message> + Unpin,
{
    let mut frames = case.frames.iter();
    let first = frames.next();
    // The connect packet (fuzzed, or ours after a fuzzed first frame) must be answered:
    // a connect ack, a connect_error, or a close.
    let mut connected = false;
    let mut pending = first.cloned().into_iter().collect::<Vec<_>>();
    if !first.is_some_and(|f| matches!(f, Frame::Text(t) if t.starts_with("40"))) {
        pending.push(Frame::Text("40".into()));
    }
    for frame in &pending {
        if !send(ws, frame).await {
            return Ok("closed".into());
        }
    }
    match hear(ws, |t| t.starts_with("40") || t.starts_with("44"), timeout).await {
        Err(()) => {
            if pending.len() > 1 && silences(&pending[0]) {
                return Ok("silent".into());
            }
            return Err("hang: the connect packet was not answered".into());
        }
        Ok(Heard::Closed) => return Ok("closed".into()),
        Ok(Heard::Text(text)) if text.starts_with("40{") => connected = true,
        Ok(Heard::Text(text)) if text.starts_with("44{") => return Ok("connect_error".into()),
        Ok(Heard::Text(_)) => {}
    }
    let mut silent = !connected;
    for frame in frames {
        silent |= silences(frame);
        if !send(ws, frame).await {
            return Ok("closed".into());
        }
    }
    if silent {
        return Ok("unprobed".into());
    }
    let probe = format!("42{PROBE_ID}[\"unsubscribe\",{{\"locations\":[]}}]");
    if !send(ws, &Frame::Text(probe)).await {
        return Ok("closed".into());
    }
    let ack = format!("43{PROBE_ID}[");
    match hear(ws, |t| t.starts_with(&ack), timeout).await {
        Err(()) => Err(format!(
            "hang: the probe was not acked within {timeout:?} and the connection is open"
        )),
        Ok(Heard::Closed) => Ok("closed".into()),
        Ok(Heard::Text(_)) => Ok("acked".into()),
    }
}

pub fn generate_polling(g: &mut Gen, ctx: &Context) -> Case {
    if g.chance(30) {
        let eio = g.pick(&["4", "4", "3", "5", "", "x", "04", "4.0"]);
        let transport = g.pick(&[
            "polling",
            "polling",
            "websocket",
            "webtransport",
            "",
            "POLLING",
        ]);
        let mut query = format!("EIO={eio}&transport={transport}");
        match g.below(6) {
            0 => {
                let text = synth::string(g);
                query.push_str(&format!("&sid={}", synth::query_value(g, &text)));
            }
            1 => query.push_str("&t=abc&b64=1"),
            2 => {
                let text = synth::string(g);
                query.push_str(&format!("&{}", synth::query_value(g, &text)));
            }
            3 => {
                let text = synth::string(g);
                query = synth::query_value(g, &text);
            }
            _ => {}
        }
        return Case::Polling(PollCase::Get { query });
    }
    let corpus = &ctx.corpus.polling;
    let body = match g.below(4) {
        0 => {
            let mut line = corpus[g.below(corpus.len())].clone().into_bytes();
            let other = corpus[g.below(corpus.len())].clone().into_bytes();
            synth::mutate_bytes(
                g,
                &mut line,
                &["\u{1e}", "b", "4", "2", "=", "[", "]", "\u{ff}"],
                &other,
            );
            line
        }
        1 => {
            let packets: Vec<String> = (0..g.range(1, 4))
                .map(|_| match frame(g, ctx) {
                    Frame::Text(text) => text,
                    Frame::Binary(bytes) => format!(
                        "b{}",
                        synth::query_value(g, &String::from_utf8_lossy(&bytes.0))
                    ),
                })
                .collect();
            packets.join("\u{1e}").into_bytes()
        }
        2 => corpus[g.below(corpus.len())].clone().into_bytes(),
        _ => g.bytes_in(0, 64),
    };
    let content_type = match g.below(10) {
        0 => None,
        1 => Some("application/octet-stream".to_owned()),
        2 => Some(synth::string(g)).filter(|c| axum::http::HeaderValue::from_str(c).is_ok()),
        _ => Some("text/plain;charset=UTF-8".to_owned()),
    };
    Case::Polling(PollCase::Post {
        content_type,
        body: Blob(body),
    })
}

fn get(target: String) -> HttpCase {
    HttpCase {
        method: "GET".into(),
        target,
        headers: Vec::new(),
        body: Blob::default(),
    }
}

pub async fn execute_polling(
    addr: SocketAddr,
    conn: &mut Option<Conn>,
    case: &PollCase,
    timeout: Duration,
) -> Verdict {
    let check = |status: u16, body: &[u8]| -> Result<(), String> {
        if status >= 500 {
            return Err(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        }
        Ok(())
    };
    match case {
        PollCase::Get { query } => {
            let response = exchange(
                addr,
                conn,
                &get(format!("/socket.io/?{query}")),
                false,
                timeout,
            )
            .await?
            .ok_or("notify closed the connection without an answer")?;
            check(response.status, &response.body)?;
            if response.status == 200 && response.body.first() == Some(&b'0') {
                // A new session: end it rather than leave it to the ping timeout.
                if let Some(sid) = open_sid(&response.body) {
                    close_session(addr, conn, &sid, timeout).await?;
                }
            }
            Ok(format!("get {}", response.status))
        }
        PollCase::Post { content_type, body } => {
            let response = exchange(
                addr,
                conn,
                &get("/socket.io/?EIO=4&transport=polling".into()),
                false,
                timeout,
            )
            .await?
            .ok_or("no polling handshake")?;
            let sid = open_sid(&response.body)
                .ok_or_else(|| format!("polling handshake answered {}", response.status))?;
            let mut post = HttpCase {
                method: "POST".into(),
                target: format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
                headers: Vec::new(),
                body: body.clone(),
            };
            if let Some(content_type) = content_type {
                post.headers
                    .push(("content-type".into(), Blob::from(content_type.clone())));
            }
            let response = exchange(addr, conn, &post, false, timeout)
                .await?
                .ok_or("notify closed the connection without an answer")?;
            check(response.status, &response.body)?;
            // 413: over `maxPayload`.
            if !matches!(response.status, 200 | 400 | 413) {
                return Err(format!("status {}", response.status));
            }
            close_session(addr, conn, &sid, timeout).await?;
            Ok(format!("post {}", response.status))
        }
    }
}

fn open_sid(body: &[u8]) -> Option<String> {
    let open: serde_json::Value = serde_json::from_slice(body.strip_prefix(b"0")?).ok()?;
    open["sid"].as_str().map(str::to_owned)
}

/// Posts the Engine.IO close packet (the session may be gone already: 400 then).
async fn close_session(
    addr: SocketAddr,
    conn: &mut Option<Conn>,
    sid: &str,
    timeout: Duration,
) -> Result<(), String> {
    let close = HttpCase {
        method: "POST".into(),
        target: format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        headers: vec![(
            "content-type".into(),
            Blob::from("text/plain;charset=UTF-8".to_owned()),
        )],
        body: Blob::from("1".to_owned()),
    };
    let response = exchange(addr, conn, &close, false, timeout)
        .await?
        .ok_or("no answer to the close packet")?;
    if response.status >= 500 {
        return Err(format!("the close packet was answered {}", response.status));
    }
    Ok(())
}
