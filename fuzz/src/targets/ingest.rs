//! `POST /api/alerts`: content types, `Idempotency-Key`, `X-Api-Key` and
//! `Authorization`, `Content-Length` oddities and bodies; in-process on the router,
//! over loopback on the real listener, and as raw bytes for HTTP framing.

use std::{net::SocketAddr, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{HeaderName, HeaderValue, Request},
};
use tower::ServiceExt;

use super::{Verdict, check_error_body, exchange, parse};
use crate::{
    case::{Blob, Case, HttpCase},
    http1::Conn,
    stack::API_KEY,
    synth::{self, Context, Gen},
};

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    " application/json ",
    "application/json;",
    "application/json; charset=latin1; x=y",
    "application/cap+xml",
    "application/cap+xml; charset=utf-8",
    "application/xml",
    "text/xml",
    "text/xml; charset=iso-8859-1",
    "application/json, application/xml",
    "application/problem+json",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded",
    "*/*",
    ";",
    "",
    "application/\u{e9}json",
];

/// A body that usually matches its content type.
fn body_for(g: &mut Gen, ctx: &Context, content_type: &str) -> Vec<u8> {
    let xml = content_type.to_ascii_lowercase().contains("xml");
    let matching = g.chance(85);
    match (xml == matching, g.chance(3)) {
        (_, true) => Vec::new(),
        (true, _) => parse::cap_body(g, ctx),
        (false, _) => parse::json_body(g, ctx),
    }
}

/// Header values hyper and the `http` crate accept (no CR, LF, NUL or other controls).
fn header_ok(value: &[u8]) -> bool {
    HeaderValue::from_bytes(value).is_ok()
}

fn push(headers: &mut Vec<(String, Blob)>, name: &str, value: impl Into<Vec<u8>>) {
    let value = value.into();
    if header_ok(&value) {
        headers.push((name.to_owned(), Blob(value)));
    }
}

/// `POST /api/alerts` with generated headers. `framing`: add Content-Length oddities.
fn post(g: &mut Gen, ctx: &Context, keyed: bool, framing: bool) -> HttpCase {
    let mut headers = Vec::new();
    let content_type = if g.chance(3) {
        None
    } else if g.chance(5) {
        Some(synth::string(g))
    } else {
        Some(g.pick(CONTENT_TYPES).to_owned())
    };
    if let Some(content_type) = &content_type {
        push(&mut headers, "content-type", content_type.as_bytes());
        if g.chance(3) {
            push(
                &mut headers,
                "content-type",
                g.pick(CONTENT_TYPES).as_bytes(),
            );
        }
    }
    if g.chance(30) {
        let key = match g.below(5) {
            0 => String::new(),
            1 => " ".repeat(g.range(1, 3)),
            2 => "k".repeat(g.pick(&[255usize, 256, 257, 10_000])),
            _ => synth::string(g),
        };
        push(&mut headers, "idempotency-key", key.into_bytes());
    }
    if keyed || g.chance(5) {
        let key = match g.below(6) {
            0..=2 => API_KEY.to_owned(),
            3 => "other-key-0123456789abcdef".to_owned(),
            4 => format!("{API_KEY} "),
            _ => synth::string(g),
        };
        match g.below(5) {
            0 | 1 => push(&mut headers, "x-api-key", key.into_bytes()),
            2 | 3 => push(
                &mut headers,
                "authorization",
                format!("Bearer {key}").into_bytes(),
            ),
            _ => {
                let scheme = g.pick(&["bearer", "Basic", "Bearer  ", "", "Bearer"]);
                push(
                    &mut headers,
                    "authorization",
                    format!("{scheme} {key}").into_bytes(),
                );
                push(&mut headers, "x-api-key", synth::string(g).into_bytes());
            }
        }
    }
    let body = body_for(g, ctx, content_type.as_deref().unwrap_or(""));
    if framing && g.chance(25) {
        let len = body.len();
        let declared = match g.below(9) {
            0 => "0".to_owned(),
            1 => len.saturating_sub(1).to_string(),
            2 => (len + 1).to_string(),
            3 => "1048577".to_owned(),
            4 => "99999999999999999999".to_owned(),
            5 => "-1".to_owned(),
            6 => "abc".to_owned(),
            7 => format!("{len}, {len}"),
            _ => format!(" {len} "),
        };
        push(&mut headers, "content-length", declared.into_bytes());
    }
    if g.chance(10) {
        let name = g.pick(&[
            "accept",
            "expect",
            "connection",
            "content-encoding",
            "transfer-encoding",
            "x-forwarded-for",
            "origin",
        ]);
        let value = match name {
            "expect" => "100-continue".to_owned(),
            "content-encoding" => g.pick(&["gzip", "br", "identity"]).to_owned(),
            _ => synth::string(g),
        };
        push(&mut headers, name, value.into_bytes());
    }
    HttpCase {
        method: "POST".into(),
        target: "/api/alerts".into(),
        headers,
        body: Blob(body),
    }
}

pub fn generate_in_process(g: &mut Gen, ctx: &Context) -> Case {
    let keyed = g.chance(30);
    Case::Ingest {
        keyed,
        request: post(g, ctx, keyed, true),
    }
}

pub fn generate_http(g: &mut Gen, ctx: &Context) -> Case {
    let mut request = post(g, ctx, false, false);
    // The connection's framing is the raw target's: here it stays correct.
    request.headers.retain(|(n, _)| {
        !matches!(
            n.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "expect"
        )
    });
    Case::IngestHttp { request }
}

/// What a listener may answer to `POST /api/alerts` (README, "Errors"). 503 is in the
/// contract, but only while the broker is away: here it never is, so a 503 is the
/// service blaming its broker for the client's input, and a failure too.
fn judge(status: u16, body: &[u8], keyed: bool) -> Verdict {
    let allowed: &[u16] = if keyed {
        &[202, 400, 401, 413, 415, 429]
    } else {
        &[202, 400, 413, 415]
    };
    if !allowed.contains(&status) {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    if status == 202 {
        let accepted: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| "202 without JSON".to_owned())?;
        if accepted["ids"].as_array().is_none_or(Vec::is_empty) {
            return Err(format!("202 without ids: {accepted}"));
        }
    } else {
        check_error_body(status, body)?;
    }
    Ok(status.to_string())
}

pub async fn execute_in_process(
    router: &Router,
    case: &HttpCase,
    keyed: bool,
    timeout: Duration,
) -> Verdict {
    let mut request = Request::builder()
        .method(case.method.as_str())
        .uri(case.target.as_str());
    for (name, value) in &case.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("bad case: {e}"))?;
        let value = HeaderValue::from_bytes(&value.0).map_err(|e| format!("bad case: {e}"))?;
        request = request.header(name, value);
    }
    let request = request
        .body(Body::from(case.body.0.clone()))
        .map_err(|e| format!("bad case: {e}"))?;
    let router = router.clone();
    let task = tokio::spawn(async move {
        let response = router.oneshot(request).await.expect("infallible");
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 16 << 20).await;
        (status, body)
    });
    match tokio::time::timeout(timeout, task).await {
        Err(_) => Err(format!("hang: no answer within {timeout:?}")),
        Ok(Err(join)) if join.is_panic() => Err(format!("panic: {}", crate::panic_text(join))),
        Ok(Err(join)) => Err(format!("request task failed: {join}")),
        Ok(Ok((_, Err(error)))) => Err(format!("unreadable answer body: {error}")),
        Ok(Ok((status, Ok(body)))) => judge(status, &body, keyed),
    }
}

pub async fn execute_http(
    addr: SocketAddr,
    conn: &mut Option<Conn>,
    case: &HttpCase,
    timeout: Duration,
) -> Verdict {
    match exchange(addr, conn, case, false, timeout).await? {
        None => Ok("closed".into()),
        Some(response) => judge(response.status, &response.body, false),
    }
}

pub fn generate_raw(g: &mut Gen, ctx: &Context) -> Case {
    let corpus = &ctx.corpus.raw;
    if g.chance(20) {
        let mut bytes = corpus[g.below(corpus.len())].clone();
        let other = &corpus[g.below(corpus.len())];
        synth::mutate_bytes(g, &mut bytes, RAW_TOKENS, other);
        return Case::IngestRaw { bytes: Blob(bytes) };
    }
    let mut out = Vec::new();
    for n in 0..if g.chance(15) { 2 } else { 1 } {
        out.extend(raw_request(g, ctx, n > 0));
    }
    if g.chance(10) {
        let other = &corpus[g.below(corpus.len())];
        synth::mutate_bytes(g, &mut out, RAW_TOKENS, other);
    }
    Case::IngestRaw { bytes: Blob(out) }
}

const RAW_TOKENS: &[&str] = &[
    "\r\n",
    "\n",
    "\r",
    "\r\n\r\n",
    ":",
    " ",
    "\t",
    "content-length: 5\r\n",
    "transfer-encoding: chunked\r\n",
    "0\r\n\r\n",
    "ffffffffffffffffff\r\n",
    "\u{0}",
    "HTTP/1.1",
    "HTTP/1.0",
    "POST",
    "GET",
];

fn raw_request(g: &mut Gen, ctx: &Context, second: bool) -> Vec<u8> {
    let line = match g.below(14) {
        0 => "POST /api/alerts HTTP/1.0",
        1 => "GET /api/alerts HTTP/1.1",
        2 => "POST /api/alerts?x=%zz HTTP/1.1",
        3 => "POST http://localhost/api/alerts HTTP/1.1",
        4 => "post /api/alerts HTTP/1.1",
        5 => "PUT /api/alerts HTTP/1.1",
        6 => "POST //api//alerts HTTP/1.1",
        _ => "POST /api/alerts HTTP/1.1",
    };
    let mut head = format!("{line}\r\n");
    if g.chance(95) {
        head.push_str("host: localhost\r\n");
    }
    let json = g.chance(60);
    let body = if json {
        parse::json_body(g, ctx)
    } else {
        parse::cap_body(g, ctx)
    };
    head.push_str(if json {
        "content-type: application/json\r\n"
    } else {
        "content-type: application/cap+xml\r\n"
    });
    let chunked = g.chance(25);
    let len = body.len();
    let length = match g.below(12) {
        _ if chunked && g.chance(70) => None,
        0 => Some("0".to_owned()),
        1 => Some(len.saturating_sub(g.range(1, 10)).to_string()),
        2 => Some((len + g.range(1, 10)).to_string()),
        3 => Some("1048577".to_owned()),
        4 => Some("18446744073709551616".to_owned()),
        5 => Some("-1".to_owned()),
        6 => Some(format!("{len}, {}", len + 1)),
        7 => Some(format!("+{len}")),
        _ => Some(len.to_string()),
    };
    if let Some(length) = length {
        head.push_str(&format!("content-length: {length}\r\n"));
        if g.chance(5) {
            head.push_str(&format!("content-length: {}\r\n", len + 1));
        }
    }
    if chunked {
        let te = g.pick(&[
            "chunked",
            "chunked",
            "gzip, chunked",
            "chunked, gzip",
            " chunked",
            "CHUNKED",
            "identity",
            "chunked\t",
        ]);
        head.push_str(&format!("transfer-encoding: {te}\r\n"));
    }
    match g.below(20) {
        0 => head.push_str("expect: 100-continue\r\n"),
        1 => head.push_str("connection: close\r\n"),
        2 => head.push_str("connection: upgrade\r\nupgrade: websocket\r\n"),
        3 => head.push_str("x-folded: a\r\n b\r\n"),
        4 => head.push_str("bad header line\r\n"),
        5 => head.push_str("x-space : 1\r\n"),
        6 => head.push_str(&format!(
            "x-long: {}\r\n",
            "a".repeat(g.pick(&[8_000usize, 70_000, 500_000]))
        )),
        7 => {
            for i in 0..g.pick(&[99usize, 100, 101, 1000]) {
                head.push_str(&format!("x-h{i}: v\r\n"));
            }
        }
        8 => head.push_str("idempotency-key: \u{e9}\u{e9}\r\n"),
        9 if !second => head.push_str("x-api-key: \u{0}\r\n"),
        _ => {}
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if chunked {
        let mut rest = body.as_slice();
        while !rest.is_empty() {
            let n = g.range(1, rest.len().min(4096));
            let size = match g.below(30) {
                0 => format!("{:x}", n + 1),
                1 => "zz".to_owned(),
                2 => format!("{n:x};ext=1"),
                3 => format!("{:X}", n),
                _ => format!("{n:x}"),
            };
            out.extend_from_slice(size.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(if g.chance(97) { b"\r\n" } else { b"\n" });
            rest = &rest[n..];
        }
        match g.below(10) {
            0 => {}
            1 => out.extend_from_slice(b"0\r\nx-trailer: 1\r\n\r\n"),
            2 => out.extend_from_slice(b"ffffffffffffffffff\r\n"),
            _ => out.extend_from_slice(b"0\r\n\r\n"),
        }
    } else {
        out.extend_from_slice(&body);
    }
    out
}

/// Raw bytes, then the end of the stream from this side; the server answers each
/// request it could read, or closes. Any 5xx (505 aside, for a version that is not
/// HTTP/1.x) is a failure, as is no answer and no close within the timeout.
pub async fn execute_raw(addr: SocketAddr, bytes: &Blob, timeout: Duration) -> Verdict {
    let exchange = async {
        let mut conn = Conn::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        // The server may answer (431, 413) and close before it read everything.
        let _ = conn.send(&bytes.0).await;
        let _ = conn.finish().await;
        let mut statuses = Vec::new();
        loop {
            match conn.read(false).await {
                Ok(Some(response)) => {
                    let status = response.status;
                    let version_ok = bytes.0.split(|&b| b == b'\n').next().is_some_and(|line| {
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        line.ends_with(b"HTTP/1.1") || line.ends_with(b"HTTP/1.0")
                    });
                    let unsupported_version = status == 505 && !version_ok;
                    if status >= 500 && !unsupported_version {
                        return Err(format!(
                            "status {status}: {}",
                            String::from_utf8_lossy(&response.body)
                        ));
                    }
                    if status >= 400
                        && !response.body.is_empty()
                        && response.header("content-type") == Some("application/json")
                    {
                        check_error_body(status, &response.body)?;
                    }
                    statuses.push(status.to_string());
                    if response.closes() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    statuses.push("reset".into());
                    break;
                }
            }
        }
        Ok(if statuses.is_empty() {
            "closed".to_owned()
        } else {
            statuses.join("+")
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(verdict) => verdict,
        Err(_) => Err(format!(
            "hang: neither an answer nor a close within {timeout:?}"
        )),
    }
}
