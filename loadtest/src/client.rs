//! One Socket.IO client connection: Engine.IO v4 over the lean WebSocket client.
//! State per connection: the socket, a read buffer, and 16 bytes of duplicate
//! detection. Alert frames are matched by memmem, never parsed as JSON.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    sync::{OwnedSemaphorePermit, watch},
};

use crate::{
    eio::{self, Matcher, Packet},
    stats::{self, Seen, SeenWindow},
    ws::{self, Opcode},
};

/// Largest frame accepted (a snapshot can be large).
const MAX_FRAME: usize = 16 << 20;
/// Read-buffer capacity kept between reads; grows for big frames and shrinks back.
const BUF_KEEP: usize = 2048;

/// What the clients of a run do with alert frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Record latency of every tagged alert (fan-out / e2e).
    Deliveries,
    /// Record close events' lag behind their `endTime`.
    CloseLag,
    /// Only keep the connection alive.
    Idle,
}

/// Counters shared by all connections of the process.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connected: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Connections the server closed (or that broke) before the run ended.
    pub(crate) dropped: AtomicU64,
    pub(crate) pings: AtomicU64,
}

/// What every connection of a run shares (leaked: it lives as long as the process).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) matcher: Matcher,
    pub(crate) role: Role,
    pub(crate) counters: Counters,
}

/// Where and how one client connects.
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) target: SocketAddr,
    pub(crate) source: IpAddr,
    /// Empty: receive everything.
    pub(crate) locations: Vec<String>,
    /// Subscribe with a `subscribe` event and wait for its ack, instead of `auth`.
    pub(crate) subscribe_event: bool,
    /// The handshake's `auth.token`.
    pub(crate) token: Option<Arc<str>>,
}

/// Runs one client until `stop` turns true or the server closes it. The permit
/// (connect concurrency) is released once the client is subscribed.
pub(crate) async fn run(
    spec: Spec,
    shared: &'static Shared,
    mut stop: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
    seed: u32,
) {
    let counters = &shared.counters;
    let stream = tokio::select! {
        stream = connect(&spec) => stream,
        _ = stop.wait_for(|s| *s) => return,
    };
    let mut stream = match stream {
        Ok(stream) => stream,
        Err(_) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut conn = Conn {
        shared,
        mask: seed,
        seen: SeenWindow::default(),
        ready: false,
        permit: Some(permit),
        out: Vec::new(),
        spec: &spec,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(BUF_KEEP);
    // The upgrade response.
    let head = loop {
        match tokio::select! {
            read = stream.read_buf(&mut buf) => read,
            _ = stop.wait_for(|s| *s) => return,
        } {
            Ok(0) | Err(_) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(_) => {}
        }
        match ws::parse_upgrade_response(&buf) {
            Ok(Some(len)) => break len,
            Ok(None) if buf.len() < 8192 => continue,
            _ => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    };
    buf.drain(..head);
    let mut fragment: Option<Vec<u8>> = None;
    let outcome = loop {
        match conn.process(&mut buf, &mut fragment) {
            Ok(true) => {}
            Ok(false) => break Closed::ByServer,
            Err(_) => break Closed::Error,
        }
        if !conn.out.is_empty() {
            if stream.write_all(&conn.out).await.is_err() {
                break Closed::Error;
            }
            conn.out.clear();
            conn.out.shrink_to(64);
        }
        if buf.is_empty() && buf.capacity() > BUF_KEEP * 4 {
            buf = Vec::with_capacity(BUF_KEEP);
        }
        buf.reserve(1024);
        let read = tokio::select! {
            read = stream.read_buf(&mut buf) => read,
            _ = stop.wait_for(|s| *s) => break Closed::Stopped,
        };
        match read {
            Ok(0) => break Closed::ByServer,
            Ok(_) => {}
            Err(_) => break Closed::Error,
        }
    };
    if conn.ready {
        counters.connected.fetch_sub(1, Ordering::Relaxed);
        if outcome != Closed::Stopped {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    } else if outcome != Closed::Stopped {
        counters.failed.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Closed {
    Stopped,
    ByServer,
    Error,
}

async fn connect(spec: &Spec) -> std::io::Result<TcpStream> {
    let socket = match spec.target {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }?;
    if spec.target.is_ipv4() {
        socket.bind(SocketAddr::new(spec.source, 0))?;
    }
    let mut stream = socket.connect(spec.target).await?;
    stream.set_nodelay(true)?;
    let request = ws::upgrade_request(&spec.target.to_string());
    stream.write_all(request.as_bytes()).await?;
    Ok(stream)
}

struct Conn<'a> {
    shared: &'static Shared,
    spec: &'a Spec,
    mask: u32,
    seen: SeenWindow,
    ready: bool,
    permit: Option<OwnedSemaphorePermit>,
    out: Vec<u8>,
}

impl Conn<'_> {
    /// Handles every complete frame in `buf`; `Ok(false)` when the server closed.
    fn process(
        &mut self,
        buf: &mut Vec<u8>,
        fragment: &mut Option<Vec<u8>>,
    ) -> Result<bool, String> {
        let mut pos = 0;
        let mut open = true;
        while open {
            let Some(frame) = ws::parse_frame(&buf[pos..], MAX_FRAME)? else {
                break;
            };
            if buf.len() - pos < frame.total_len() {
                break;
            }
            let start = pos + frame.header_len;
            let end = pos + frame.total_len();
            if let Some(key) = frame.mask {
                ws::apply_mask(&mut buf[start..end], key);
            }
            let payload = &buf[start..end];
            match frame.opcode {
                Opcode::Text | Opcode::Binary if frame.fin => open = self.packet(payload),
                Opcode::Text | Opcode::Binary => *fragment = Some(payload.to_vec()),
                Opcode::Continuation => {
                    if let Some(mut data) = fragment.take() {
                        data.extend_from_slice(payload);
                        if frame.fin {
                            open = self.packet(&data);
                        } else {
                            *fragment = Some(data);
                        }
                    }
                }
                Opcode::Ping => {
                    let key = ws::mask_key(&mut self.mask);
                    ws::encode_client_frame(&mut self.out, Opcode::Pong, payload, key);
                }
                Opcode::Close => open = false,
                Opcode::Pong | Opcode::Other(_) => {}
            }
            pos = end;
        }
        buf.drain(..pos);
        Ok(open)
    }

    fn send_text(&mut self, text: &[u8]) {
        let key = ws::mask_key(&mut self.mask);
        ws::encode_client_frame(&mut self.out, Opcode::Text, text, key);
    }

    fn mark_ready(&mut self) {
        if !self.ready {
            self.ready = true;
            self.permit = None;
            self.shared
                .counters
                .connected
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One Engine.IO packet; false when the session ended.
    fn packet(&mut self, payload: &[u8]) -> bool {
        match eio::classify(payload) {
            Packet::Ping => {
                self.shared.counters.pings.fetch_add(1, Ordering::Relaxed);
                self.send_text(b"3");
            }
            Packet::Alert => self.alert(payload),
            Packet::Open => {
                let token = self.spec.token.as_deref();
                let connect = if self.spec.subscribe_event {
                    eio::connect_packet(&[], token)
                } else {
                    eio::connect_packet(&self.spec.locations, token)
                };
                self.send_text(connect.as_bytes());
            }
            Packet::Connected => {
                if self.spec.subscribe_event && !self.spec.locations.is_empty() {
                    let subscribe = eio::subscribe_packet(&self.spec.locations);
                    self.send_text(subscribe.as_bytes());
                } else {
                    self.mark_ready();
                }
            }
            Packet::Ack => self.mark_ready(),
            Packet::ConnectError | Packet::Disconnect => return false,
            Packet::Snapshot | Packet::Other => {}
        }
        true
    }

    fn alert(&mut self, frame: &[u8]) {
        let shared = self.shared;
        if shared.role == Role::Idle {
            return;
        }
        let Some(tag) = shared.matcher.tag(frame) else {
            return;
        };
        let now = stats::now_us();
        let latency = match shared.role {
            // A close carries the same title; only the broadcast itself counts.
            Role::Deliveries if shared.matcher.is_close(frame) => return,
            Role::Deliveries => now.saturating_sub(tag.sent_us),
            Role::CloseLag => {
                if !shared.matcher.is_close(frame) {
                    return;
                }
                match shared.matcher.end_time_us(frame) {
                    Some(end) => now.saturating_sub(end),
                    None => return,
                }
            }
            Role::Idle => return,
        };
        match self.seen.see(tag.seq) {
            Seen::First => stats::with_local(|r| r.record(tag.seq, latency, now)),
            Seen::Duplicate => stats::with_local(|r| r.duplicates += 1),
            Seen::TooOld => stats::with_local(|r| {
                r.out_of_window += 1;
                r.record(tag.seq, latency, now);
            }),
        }
    }
}
