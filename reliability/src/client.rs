//! Subscribed clients, as phones and pages behave: Socket.IO over WebSocket that
//! reconnects by itself and resumes with `since`, SSE that resumes with
//! `Last-Event-ID`, slow readers, and dead clients that never read nor answer pings.
//! Each records every session and every event it received.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alert_core::{Event, Offset};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{net::TcpStream, sync::watch, task::JoinHandle};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

use crate::{
    endpoints::Endpoints,
    record::{ClientKind, ClientRecord, Received, Session},
};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longer than notify's heartbeat (2 s + 2 s in a run): a silent connection is dead.
const SILENCE: Duration = Duration::from_secs(6);
const CONNECT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub kind: ClientKind,
    pub locations: Option<BTreeSet<String>>,
    /// The notify it tries first; the others after a failed attempt.
    pub home: usize,
}

/// Where a client stands: the last position it has (an event, or a snapshot).
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub joined: bool,
    pub epoch: Option<String>,
    pub offset: Option<Offset>,
}

pub struct Client {
    pub spec: Spec,
    pub progress: Arc<Mutex<Progress>>,
    pub task: JoinHandle<ClientRecord>,
}

pub fn spawn(spec: Spec, notify: Endpoints, stop: watch::Receiver<bool>, began: Instant) -> Client {
    let progress = Arc::new(Mutex::new(Progress::default()));
    let task = tokio::spawn(run(spec.clone(), notify, stop, progress.clone(), began));
    Client {
        spec,
        progress,
        task,
    }
}

/// What a session ended with, and whether it ever joined.
enum Attempt {
    Joined(Session),
    Failed,
}

async fn run(
    spec: Spec,
    notify: Endpoints,
    mut stop: watch::Receiver<bool>,
    progress: Arc<Mutex<Progress>>,
    began: Instant,
) -> ClientRecord {
    let mut record = ClientRecord {
        name: spec.name.clone(),
        kind: spec.kind,
        locations: spec.locations.clone(),
        sessions: Vec::new(),
        failed_connects: 0,
    };
    let mut rng = fastrand::Rng::new();
    let mut failures = 0usize;
    loop {
        if *stop.borrow() {
            break;
        }
        let (index, addr) = notify.pick(spec.home + failures);
        let at_ms = began.elapsed().as_millis() as u64;
        let attempt = match spec.kind {
            ClientKind::Sse => sse(&spec, addr, index, at_ms, &progress, &mut stop).await,
            ClientKind::SocketIo | ClientKind::Slow => {
                socketio(&spec, addr, index, at_ms, &progress, &mut stop).await
            }
        };
        let pause = match attempt {
            Attempt::Joined(mut session) => {
                session.ended_ms = began.elapsed().as_millis() as u64;
                record.sessions.push(session);
                failures = 0;
                rng.u64(100..500)
            }
            Attempt::Failed => {
                record.failed_connects += 1;
                failures += 1;
                rng.u64(100..500) * (failures.min(4) as u64)
            }
        };
        tokio::select! {
            _ = stopping(&mut stop) => {}
            _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
        }
    }
    record
}

fn resume_point(progress: &Mutex<Progress>) -> (Option<String>, Option<Offset>) {
    let progress = progress.lock().unwrap();
    (progress.epoch.clone(), progress.offset)
}

fn advance(progress: &Mutex<Progress>, epoch: Option<String>, offset: Option<Offset>) {
    let mut progress = progress.lock().unwrap();
    progress.joined = true;
    if offset.is_some() {
        progress.epoch = epoch;
        progress.offset = offset;
    }
}

async fn socketio(
    spec: &Spec,
    addr: SocketAddr,
    index: usize,
    at_ms: u64,
    progress: &Mutex<Progress>,
    stop: &mut watch::Receiver<bool>,
) -> Attempt {
    let (since_epoch, since) = resume_point(progress);
    let mut auth = json!({});
    if let Some(locations) = &spec.locations {
        auth["locations"] = json!(locations);
    }
    if let Some(offset) = since {
        auth["since"] = json!({"epoch": since_epoch, "offset": offset});
    }
    let Some(mut ws) = handshake(addr, &auth).await else {
        return Attempt::Failed;
    };
    let mut session = Session::new(index, at_ms, since, since_epoch);
    let slow = (spec.kind == ClientKind::Slow).then(|| Duration::from_millis(50));
    session.ended = loop {
        let message = tokio::select! {
            _ = stopping(stop) => {
                let _ = ws.close(None).await;
                break "stopped".into();
            }
            message = tokio::time::timeout(SILENCE, ws.next()) => message,
        };
        let text = match message {
            Err(_) => break "silent".into(),
            Ok(None) => break "closed".into(),
            Ok(Some(Err(error))) => break format!("error: {error}"),
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(Message::Close(_)))) => break "closed".into(),
            Ok(Some(Ok(_))) => continue,
        };
        let text = text.as_str();
        if text == "2" {
            if ws.send(Message::text("3")).await.is_err() {
                break "closed".into();
            }
            continue;
        }
        if text.starts_with("41") || text == "1" {
            break "disconnected by the server".into();
        }
        let Some(packet) = text.strip_prefix("42") else {
            continue;
        };
        let Ok(mut array) = serde_json::from_str::<Vec<Value>>(packet) else {
            break format!("bad packet: {packet}");
        };
        let name = array
            .first()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let data = array.drain(..).nth(1).unwrap_or(Value::Null);
        match name.as_str() {
            "snapshot" => {
                session.joined.epoch = data["epoch"].as_str().map(str::to_owned);
                session.joined.offset = data["offset"].as_str().and_then(|o| o.parse().ok());
                session.joined.recovered = data["recovered"].as_bool();
                if let Some(missed) = data["missed"].as_array() {
                    for event in missed {
                        if let Ok(event) = serde_json::from_value::<Event>(event.clone()) {
                            session.received.push(Received::from(&event));
                        }
                    }
                }
                let last = session.received.last();
                let (epoch, offset) = match last {
                    Some(event) => (Some(event.epoch.clone()), Some(event.offset)),
                    None => (session.joined.epoch.clone(), session.joined.offset),
                };
                advance(progress, epoch, offset);
            }
            "alert" => {
                let Ok(event) = serde_json::from_value::<Event>(data) else {
                    break "bad alert event".into();
                };
                advance(progress, Some(event.epoch.clone()), Some(event.offset));
                session.received.push(Received::from(&event));
                if let Some(pause) = slow {
                    tokio::time::sleep(pause).await;
                }
            }
            _ => {}
        }
    };
    Attempt::Joined(session)
}

/// Engine.IO open and Socket.IO connect with `auth`; `None` if refused or silent.
async fn handshake(addr: SocketAddr, auth: &Value) -> Option<Ws> {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let attempt = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.ok()?;
        let open = next_text(&mut ws).await?;
        if !open.starts_with('0') {
            return None;
        }
        ws.send(Message::text(format!("40{auth}"))).await.ok()?;
        loop {
            let text = next_text(&mut ws).await?;
            if text == "2" {
                ws.send(Message::text("3")).await.ok()?;
            } else if text.starts_with("40") {
                return Some(ws);
            } else {
                return None; // connect_error
            }
        }
    };
    tokio::time::timeout(CONNECT, attempt).await.ok().flatten()
}

async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(text)) => return Some(text.as_str().to_owned()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// One SSE stream; an `event: snapshot` first means the gap (if any) was not filled.
async fn sse(
    spec: &Spec,
    addr: SocketAddr,
    index: usize,
    at_ms: u64,
    progress: &Mutex<Progress>,
    stop: &mut watch::Receiver<bool>,
) -> Attempt {
    let (since_epoch, since) = resume_point(progress);
    let mut url = format!("http://{addr}/api/stream");
    if let Some(locations) = &spec.locations {
        let list: Vec<&str> = locations.iter().map(String::as_str).collect();
        url.push_str(&format!("?locations={}", list.join(",")));
    }
    let http = reqwest::Client::builder()
        .connect_timeout(CONNECT)
        .build()
        .expect("an HTTP client");
    let mut request = http.get(url);
    if let Some(offset) = since {
        request = request.header("last-event-id", offset.to_string());
    }
    let response = match tokio::time::timeout(CONNECT, request.send()).await {
        Ok(Ok(response)) if response.status() == 200 => response,
        _ => return Attempt::Failed,
    };
    let mut session = Session::new(index, at_ms, since, since_epoch.clone());
    if since.is_some() {
        // A resume without a snapshot first was served, in the epoch asked for.
        session.joined.recovered = Some(true);
        session.joined.epoch = since_epoch;
    }
    advance(progress, None, None);
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut first = true;
    session.ended = 'stream: loop {
        let chunk = tokio::select! {
            _ = stopping(stop) => break "stopped".into(),
            // Keep-alive comments come every 15 s.
            chunk = tokio::time::timeout(Duration::from_secs(20), body.next()) => chunk,
        };
        let chunk = match chunk {
            Err(_) => break "silent".into(),
            Ok(None) => break "ended".into(),
            Ok(Some(Err(error))) => break format!("error: {error}"),
            Ok(Some(Ok(chunk))) => chunk,
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let (mut name, mut data) = ("message", String::new());
            for line in frame.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = value.trim();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.strip_prefix(' ').unwrap_or(value));
                }
            }
            if data.is_empty() {
                continue; // a keep-alive comment
            }
            let Ok(value) = serde_json::from_str::<Value>(&data) else {
                break 'stream "bad data".into();
            };
            if name == "snapshot" {
                if first {
                    session.joined.recovered = since.map(|_| false);
                }
                session.joined.epoch = value["epoch"].as_str().map(str::to_owned);
                session.joined.offset = value["offset"].as_str().and_then(|o| o.parse().ok());
                advance(
                    progress,
                    session.joined.epoch.clone(),
                    session.joined.offset,
                );
            } else if name == "alert" {
                let Ok(event) = serde_json::from_value::<Event>(value) else {
                    break 'stream "bad alert event".into();
                };
                advance(progress, Some(event.epoch.clone()), Some(event.offset));
                session.received.push(Received::from(&event));
            }
            first = false;
        }
    };
    Attempt::Joined(session)
}

/// A client that completes the handshake, then never reads nor answers a ping. It
/// says at the end whether the server had closed it.
pub fn spawn_dead(addr: SocketAddr, mut stop: watch::Receiver<bool>) -> JoinHandle<bool> {
    tokio::spawn(async move {
        let Some(mut ws) = handshake(addr, &json!({})).await else {
            return false;
        };
        stopping(&mut stop).await;
        // Whatever the server sent before it gave up is still buffered; a live
        // connection goes quiet, a closed one ends.
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
        false
    })
}

/// Resolves once the run stops the clients.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}
