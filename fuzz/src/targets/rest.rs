//! notify's reads without Socket.IO: `GET /api/stream` (SSE; query and
//! `Last-Event-ID`), `/api/active?locations=`, `/api/events?since=&limit=`,
//! `/api/history?location=&limit=`, over loopback with Redis behind.

use std::{net::SocketAddr, time::Duration};

use super::{Verdict, check_error_body, exchange};
use crate::{
    case::{Blob, Case, HttpCase},
    http1::Conn,
    synth::{self, Context, Gen, LOCATIONS},
};

const PATHS: &[&str] = &["/api/stream", "/api/active", "/api/events", "/api/history"];

fn locations(g: &mut Gen) -> String {
    let n = match g.below(20) {
        0 => g.pick(&[100usize, 101, 1000]),
        _ => g.range(0, 4),
    };
    let names: Vec<String> = (0..n)
        .map(|i| {
            if n > 10 {
                format!("L{i}")
            } else if g.chance(60) {
                g.pick(LOCATIONS).to_owned()
            } else {
                synth::string(g)
            }
        })
        .collect();
    names.join(if g.chance(95) { "," } else { ";" })
}

fn offset(g: &mut Gen, ctx: &Context) -> String {
    match g.below(5) {
        4 => g
            .pick(&[
                "18446744073709551615-18446744073709551615",
                "18446744073709551615-0",
                "0-18446744073709551615",
                "0-0",
                "0-1",
            ])
            .to_owned(),
        0 if !ctx.offsets.is_empty() => ctx.offsets[g.below(ctx.offsets.len())].clone(),
        1 => {
            let ms = ctx.now.timestamp_millis() as u64 + g.below(100_000) as u64 - 50_000;
            format!("{ms}-{}", g.below(3))
        }
        _ => synth::string(g),
    }
}

fn limit(g: &mut Gen) -> String {
    g.pick(&[
        "0",
        "1",
        "20",
        "100",
        "101",
        "1000",
        "1001",
        "-1",
        "1e3",
        "18446744073709551615",
        "18446744073709551616",
        "",
        "x",
        " 5",
    ])
    .to_owned()
}

/// One `key=value` pair, or a broken one.
fn param(g: &mut Gen, key: &str, value: &str) -> String {
    match g.below(30) {
        0 => synth::query_value(g, key),
        1 => format!("{}=", synth::query_value(g, key)),
        2 => format!(
            "{}={}",
            synth::query_value(g, key),
            synth::query_value(g, value)
        ),
        // Keys are ours (ASCII); generated ones go through the `2` arm.
        _ => format!(
            "{}={}",
            synth::query_value(g, key),
            synth::query_value(g, value)
        ),
    }
}

pub fn generate(g: &mut Gen, ctx: &Context) -> Case {
    let path = g.pick(PATHS);
    let mut params = Vec::new();
    if g.chance(10) {
        let corpus = &ctx.corpus.rest;
        let mut line = corpus[g.below(corpus.len())].clone().into_bytes();
        let other = corpus[g.below(corpus.len())].clone().into_bytes();
        synth::mutate_bytes(
            g,
            &mut line,
            &["&", "=", "%", ",", "%2C", "%00", "?", "#"],
            &other,
        );
        // Keep it a request target the http crate takes: other bytes percent-encoded.
        params.push(
            line.iter()
                .map(|&b| {
                    if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect(),
        );
    } else {
        match path {
            "/api/stream" | "/api/active" => {
                if g.chance(80) {
                    let value = locations(g);
                    params.push(param(g, "locations", &value));
                }
                if path == "/api/stream" && g.chance(20) {
                    let value = offset(g, ctx);
                    params.push(param(g, "lastEventId", &value));
                }
            }
            "/api/events" => {
                if g.chance(80) {
                    let value = offset(g, ctx);
                    params.push(param(g, "since", &value));
                }
                if g.chance(40) {
                    let value = limit(g);
                    params.push(param(g, "limit", &value));
                }
            }
            _ => {
                if g.chance(90) {
                    let value = if g.chance(50) {
                        g.pick(LOCATIONS).to_owned()
                    } else {
                        synth::string(g)
                    };
                    params.push(param(g, "location", &value));
                }
                if g.chance(40) {
                    let value = limit(g);
                    params.push(param(g, "limit", &value));
                }
            }
        }
        if g.chance(10) && !params.is_empty() {
            let again = params[g.below(params.len())].clone();
            params.push(again);
        }
        if g.chance(10) {
            let (key, value) = (synth::string(g), synth::string(g));
            params.push(param(g, &key, &value));
        }
    }
    let mut target = path.to_owned();
    if g.chance(3) {
        target.push_str(g.pick(&["/", "/x", "%2F"]));
    }
    if !params.is_empty() || g.chance(5) {
        target.push('?');
        target.push_str(&params.join("&"));
    }
    let mut headers: Vec<(String, Blob)> = Vec::new();
    if path == "/api/stream" && g.chance(50) {
        let id = offset(g, ctx);
        if axum::http::HeaderValue::from_str(&id).is_ok() {
            headers.push(("last-event-id".into(), Blob::from(id)));
        }
    }
    if g.chance(5) {
        let origin = g
            .pick(&["http://evil.example", "null", "http://127.0.0.1", ""])
            .to_owned();
        headers.push(("origin".into(), Blob::from(origin)));
    }
    if g.chance(10) {
        headers.push((
            "accept".into(),
            Blob::from(
                g.pick(&["text/event-stream", "application/json", "*/*", "text/html"])
                    .to_owned(),
            ),
        ));
    }
    Case::Rest {
        request: HttpCase {
            method: "GET".into(),
            target,
            headers,
            body: Blob::default(),
        },
    }
}

/// 200 (JSON, or an event stream), 400 with a JSON error, 403 for a foreign `Origin`,
/// 404 off the routes, 414 / 431 from hyper; never a 5xx. A 503 would mean Redis is down, which it is not
/// during a run: notify blamed Redis for the client's input.
pub async fn execute(
    addr: SocketAddr,
    conn: &mut Option<Conn>,
    case: &HttpCase,
    timeout: Duration,
) -> Verdict {
    let path = case.target.split('?').next().unwrap_or_default();
    let stream = path == "/api/stream";
    let response = match exchange(addr, conn, case, stream, timeout).await? {
        Some(response) => response,
        None => return Err("notify closed the connection without an answer".into()),
    };
    let status = response.status;
    let origin = case.headers.iter().any(|(n, _)| n == "origin");
    match status {
        200 if stream => {
            if response.header("content-type") != Some("text/event-stream") {
                return Err(format!(
                    "200 stream with content type {:?}",
                    response.header("content-type")
                ));
            }
        }
        200 => {
            serde_json::from_slice::<serde_json::Value>(&response.body)
                .map_err(|_| "200 without JSON".to_owned())?;
        }
        400 => check_error_body(status, &response.body)?,
        403 if origin => check_error_body(status, &response.body)?,
        404 if !PATHS.contains(&path) => {}
        // hyper's limits on the request target and head.
        414 | 431 => {}
        _ => {
            return Err(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&response.body[..response.body.len().min(300)])
            ));
        }
    }
    Ok(format!("{} {status}", path.trim_start_matches("/api/")))
}
