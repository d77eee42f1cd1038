//! One module per public input. Each generates [`Case`]s and judges what the service
//! did with one; a judgement is `Ok(outcome)` (a short label, counted) or `Err(what
//! went wrong)`, which becomes a failure file.

pub mod ingest;
pub mod parse;
pub mod rest;
pub mod socketio;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{case::Case, http1::Conn, stack::Stack, synth::Context, synth::Gen};

pub type Verdict = Result<String, String>;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// JSON and CAP bodies straight into core's parsers (in-process).
    Parse,
    /// POST /api/alerts on the listener's router, in-process (headers, keys, bodies).
    Ingest,
    /// POST /api/alerts on the real listener over loopback, RabbitMQ behind it.
    IngestHttp,
    /// Raw bytes to the real listener: Content-Length / chunked oddities, pipelining.
    IngestRaw,
    /// notify's SSE and REST query strings and Last-Event-ID, over loopback.
    Rest,
    /// Socket.IO sessions over real WebSocket connections to notify.
    Socketio,
    /// Engine.IO long-polling requests to notify.
    Polling,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::Parse,
        Target::Ingest,
        Target::IngestHttp,
        Target::IngestRaw,
        Target::Rest,
        Target::Socketio,
        Target::Polling,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Parse => "parse",
            Target::Ingest => "ingest",
            Target::IngestHttp => "ingest-http",
            Target::IngestRaw => "ingest-raw",
            Target::Rest => "rest",
            Target::Socketio => "socketio",
            Target::Polling => "polling",
        }
    }

    pub fn needs_services(self) -> bool {
        !matches!(self, Target::Parse | Target::Ingest)
    }

    /// Share of `--seconds` this target gets: the slow loopback targets get more time
    /// than their share of inputs.
    pub fn time_share(self) -> f64 {
        match self {
            Target::Parse => 0.15,
            Target::Ingest => 0.20,
            Target::IngestHttp => 0.12,
            Target::IngestRaw => 0.08,
            Target::Rest => 0.15,
            Target::Socketio => 0.20,
            Target::Polling => 0.10,
        }
    }

    /// Share of `--inputs`.
    pub fn input_share(self) -> f64 {
        match self {
            Target::Parse => 0.35,
            Target::Ingest => 0.35,
            Target::IngestHttp => 0.07,
            Target::IngestRaw => 0.03,
            Target::Rest => 0.08,
            Target::Socketio => 0.08,
            Target::Polling => 0.04,
        }
    }

    /// Cases in flight at once.
    pub fn concurrency(self) -> usize {
        match self {
            Target::Parse | Target::Ingest => 4,
            _ => 16,
        }
    }

    pub fn generate(self, g: &mut Gen, ctx: &Context) -> Case {
        match self {
            Target::Parse => parse::generate(g, ctx),
            Target::Ingest => ingest::generate_in_process(g, ctx),
            Target::IngestHttp => ingest::generate_http(g, ctx),
            Target::IngestRaw => ingest::generate_raw(g, ctx),
            Target::Rest => rest::generate(g, ctx),
            Target::Socketio => socketio::generate_socket(g, ctx),
            Target::Polling => socketio::generate_polling(g, ctx),
        }
    }
}

impl Case {
    pub fn target(&self) -> Target {
        match self {
            Case::Parse { .. } => Target::Parse,
            Case::Ingest { .. } => Target::Ingest,
            Case::IngestHttp { .. } => Target::IngestHttp,
            Case::IngestRaw { .. } => Target::IngestRaw,
            Case::Rest { .. } => Target::Rest,
            Case::Socketio(_) => Target::Socketio,
            Case::Polling(_) => Target::Polling,
        }
    }
}

/// What a worker keeps between its cases: keep-alive connections.
#[derive(Default)]
pub struct Worker {
    pub listener: Option<Conn>,
    pub notify: Option<Conn>,
}

/// Runs one case; every wait inside is bounded by `timeout`.
pub async fn execute(
    stack: &Stack,
    case: &Case,
    worker: &mut Worker,
    timeout: Duration,
) -> Verdict {
    match case {
        Case::Parse {
            cap,
            body,
            idempotency_key,
            source,
        } => parse::execute(*cap, body, idempotency_key, source, timeout).await,
        Case::Ingest { keyed, request } => {
            let router = if *keyed { &stack.keyed } else { &stack.open };
            ingest::execute_in_process(router, request, *keyed, timeout).await
        }
        Case::IngestHttp { request } => {
            let services = stack.services().map_err(|e| e.to_string())?;
            ingest::execute_http(services.listener, &mut worker.listener, request, timeout).await
        }
        Case::IngestRaw { bytes } => {
            let services = stack.services().map_err(|e| e.to_string())?;
            ingest::execute_raw(services.listener, bytes, timeout).await
        }
        Case::Rest { request } => {
            let services = stack.services().map_err(|e| e.to_string())?;
            rest::execute(services.notify, &mut worker.notify, request, timeout).await
        }
        Case::Socketio(session) => {
            let services = stack.services().map_err(|e| e.to_string())?;
            socketio::execute_socket(services.notify, session, timeout).await
        }
        Case::Polling(poll) => {
            let services = stack.services().map_err(|e| e.to_string())?;
            socketio::execute_polling(services.notify, &mut worker.notify, poll, timeout).await
        }
    }
}

/// An HTTP exchange on a kept-alive connection (reconnecting when the server closed
/// it): `Ok(None)` if the server closed without answering.
pub async fn exchange(
    addr: std::net::SocketAddr,
    conn: &mut Option<Conn>,
    request: &crate::case::HttpCase,
    head_only: bool,
    timeout: Duration,
) -> Result<Option<crate::http1::Response>, String> {
    let bytes = crate::http1::encode(request, &addr.to_string());
    let attempt = async {
        // A kept-alive connection the server closed meanwhile fails at once: retry
        // once on a new one.
        for fresh in [false, true] {
            if fresh || conn.is_none() {
                *conn = Some(
                    Conn::connect(addr)
                        .await
                        .map_err(|e| format!("connect: {e}"))?,
                );
            }
            let c = conn.as_mut().expect("connected");
            if c.send(&bytes).await.is_err() {
                continue;
            }
            match c.read(head_only).await {
                Ok(Some(response)) => {
                    if (head_only && response.status == 200) || response.closes() {
                        *conn = None;
                    }
                    return Ok(Some(response));
                }
                Ok(None) if !fresh => continue,
                Ok(None) => {
                    *conn = None;
                    return Ok(None);
                }
                Err(error) => {
                    *conn = None;
                    return Err(format!("unreadable answer: {error}"));
                }
            }
        }
        *conn = None;
        Ok(None)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => {
            *conn = None;
            Err(format!("hang: no answer within {timeout:?}"))
        }
    }
}

/// An error answer must be JSON with an `error` text (README, "Errors are JSON").
pub fn check_error_body(status: u16, body: &[u8]) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        format!(
            "{status} without a JSON body: {:?}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })?;
    match value["error"].as_str() {
        Some(_) => Ok(()),
        None => Err(format!("{status} without an `error` text: {value}")),
    }
}
