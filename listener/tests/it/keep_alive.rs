//! Keep-alive after a refusal: a source's HTTP client reuses its connection, so the
//! listener either keeps it usable or says `connection: close`; never a silent close
//! (the client's next request on it would fail, or be retried blind).

use alert_core::Secret;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

use crate::helpers::{AMQP_URL, TestApp, alert, config, unique};

const KEY: &str = "kasource-0123456789abcdef";

/// One response read off a raw connection.
struct Answer {
    status: u16,
    closes: bool,
}

async fn read_answer(reader: &mut BufReader<TcpStream>) -> Option<Answer> {
    let mut status_line = String::new();
    if reader.read_line(&mut status_line).await.ok()? == 0 {
        return None;
    }
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let (mut length, mut closes) = (0usize, false);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.ok()?;
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("content-length:") {
            length = value.trim().parse().ok()?;
        }
        if line.starts_with("connection:") && line.contains("close") {
            closes = true;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await.ok()?;
    Some(Answer { status, closes })
}

/// Sends `request` on a fresh connection, then, unless the answer said
/// `connection: close`, a `GET /livez` on the same one, which must be answered.
async fn refused_then_reused(app: &TestApp, request: Vec<u8>) -> Answer {
    let stream = TcpStream::connect(app.addr).await.unwrap();
    let mut reader = BufReader::new(stream);
    reader.get_mut().write_all(&request).await.unwrap();
    let answer = read_answer(&mut reader).await.expect("an answer");
    if !answer.closes {
        let next = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n";
        let reused = match reader.get_mut().write_all(next).await {
            Ok(()) => read_answer(&mut reader).await.map(|a| a.status),
            Err(_) => None,
        };
        assert_eq!(
            reused,
            Some(200),
            "{}: kept alive without connection: close, but the next request failed",
            answer.status
        );
    }
    answer
}

fn post(path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

#[tokio::test]
async fn every_refusal_keeps_the_connection_usable_or_says_close() {
    let mut config = config(&unique("keep-alive"), AMQP_URL);
    config.ingest.api_keys = Secret::new(format!("kasource={KEY}"));
    let app = TestApp::spawn(config).await;
    app.wait_ready().await;
    let key = format!("X-Api-Key: {KEY}\r\n");
    let json = format!("{key}Content-Type: application/json\r\n");
    let good = alert("KeepAlive").to_string().into_bytes();
    let mut over_limit =
        format!("POST /api/alerts HTTP/1.1\r\nHost: x\r\n{json}Content-Length: 2000000\r\n\r\n")
            .into_bytes();
    over_limit.extend_from_slice(&[b' '; 1000]); // the rest never comes
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "no API key",
            post("/api/alerts", "Content-Type: application/json\r\n", &good),
            401,
        ),
        (
            "text/plain",
            post(
                "/api/alerts",
                &format!("{key}Content-Type: text/plain\r\n"),
                &good,
            ),
            415,
        ),
        ("unknown path", post("/api/nope", &json, &good), 404),
        (
            "invalid JSON",
            post("/api/alerts", &json, b"{\"location\":"),
            400,
        ),
        ("valid", post("/api/alerts", &json, &good), 202),
        ("declared over the limit", over_limit, 413),
    ];
    for (case, request, status) in cases {
        let answer = refused_then_reused(&app, request).await;
        assert_eq!(answer.status, status, "{case}");
        if status == 400 || status == 202 {
            assert!(
                !answer.closes,
                "{case}: a body read to its end keeps the connection"
            );
        }
    }
    app.stop().await;
}
