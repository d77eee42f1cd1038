use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{InProcess, TestApp, alert, cap_alert, entity_bomb, without_declaration};

fn with(key: &str, value: Value) -> Value {
    let mut body = alert("Tel Aviv");
    body[key] = value;
    body
}

fn without(key: &str) -> Value {
    let mut body = alert("Tel Aviv");
    body.as_object_mut().unwrap().remove(key);
    body
}

/// Posts each bad body, expects its status and error, then one good alert: the
/// queue must hold exactly that one.
#[tokio::test]
async fn bad_input_gets_a_4xx_naming_the_problem_and_nothing_is_queued() {
    let app = InProcess::new();
    let json = "application/json";
    let cap = "application/cap+xml";
    let many_locations: Vec<String> = (0..10_000).map(|i| format!("L{i}")).collect();
    let big_batch: Vec<Value> = (0..1001).map(|_| alert("A")).collect();
    let one_cap = cap_alert("ONE", "Sderot");
    let two_caps = format!(
        "{one_cap}{}",
        without_declaration(&cap_alert("TWO", "Ashkelon"))
    );
    // (case, content type, body, expected status, expected field)
    type Case<'a> = (&'a str, &'a str, Vec<u8>, u16, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("truncated JSON", json, br#"{"location": "Tel Av"#.to_vec(), 400, None),
        ("wrong type", json, with("duration", json!("ten")).to_string().into_bytes(), 400, None),
        ("missing type", json, without("type").to_string().into_bytes(), 400, Some("type")),
        ("missing location", json, without("location").to_string().into_bytes(), 400, Some("locations")),
        ("empty location", json, with("location", json!("")).to_string().into_bytes(), 400, Some("location")),
        ("129-char location", json, with("location", json!("x".repeat(129))).to_string().into_bytes(), 400, Some("location")),
        ("zero duration", json, with("duration", json!(0)).to_string().into_bytes(), 400, Some("duration")),
        ("negative duration", json, with("duration", json!(-3)).to_string().into_bytes(), 400, Some("duration")),
        ("absurd duration", json, with("duration", json!(1e9)).to_string().into_bytes(), 400, Some("duration")),
        ("bad timestamp", json, with("timestamp", json!("31/12/2026")).to_string().into_bytes(), 400, Some("timestamp")),
        ("batch over 1000", json, json!(big_batch).to_string().into_bytes(), 400, None),
        ("10,000 locations", json, with("locations", json!(many_locations)).to_string().into_bytes(), 400, Some("locations")),
        ("invalid UTF-8", json, b"{\"location\": \"\xff\xfe\", \"type\": \"x\"}".to_vec(), 400, None),
        ("unknown content type", "text/plain", alert("A").to_string().into_bytes(), 415, None),
        ("garbage XML", cap, b"<alert><identifier>x</alert".to_vec(), 400, None),
        (
            "CAP without info",
            cap,
            br#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>X</identifier><sender>s</sender><sent>2026-11-22T10:00:00+00:00</sent><status>Actual</status><msgType>Alert</msgType><scope>Public</scope></alert>"#.to_vec(),
            400,
            Some("info"),
        ),
        ("body over the limit", json, vec![b' '; 1024 * 1024 + 1], 413, None),
        ("control character in location", json, with("location", json!("A\u{0}B")).to_string().into_bytes(), 400, Some("location")),
        ("control character in CAP area", cap, cap_alert("CTL", "A&#x85;B").into_bytes(), 400, Some("info[0].area")),
        ("CAP with a DOCTYPE", cap, entity_bomb().into_bytes(), 400, Some("DOCTYPE")),
        ("two CAP alerts in one body", cap, two_caps.into_bytes(), 400, None),
        ("garbage after the CAP alert", cap, format!("{one_cap}garbage").into_bytes(), 400, None),
    ];
    for (name, content_type, body, status, field) in cases {
        let response = app.post(Some(content_type), body).await;
        assert_eq!(response.status.as_u16(), status, "{name}");
        let error = response.body;
        assert!(
            error.is_object(),
            "{name}: error body is not a JSON object: {error}"
        );
        assert!(
            !error["error"].as_str().unwrap_or("").is_empty(),
            "{name}: no message in {error}"
        );
        if let Some(field) = field {
            assert_eq!(error["field"], field, "{name}: {error}");
        }
    }
    let good = app.post_json(&alert("Good")).await.ids();
    assert_eq!(app.queued(), good, "only the valid alert reached the queue");
}

#[tokio::test]
async fn missing_content_type_is_415() {
    let app = InProcess::new();
    let response = app.post(None, alert("A").to_string()).await;
    assert_eq!(response.status, 415);
}

/// A chunked body has no Content-Length to check up front: the limit must still hold.
#[tokio::test]
async fn chunked_body_over_the_limit_is_413() {
    let app = TestApp::ready("chunked").await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = "POST /api/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..20 {
        let header = format!("{:x}\r\n", chunk.len());
        if stream.write_all(header.as_bytes()).await.is_err()
            || stream.write_all(&chunk).await.is_err()
            || stream.write_all(b"\r\n").await.is_err()
        {
            break; // the server answered and closed early: fine
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = vec![0u8; 1024];
    let n = stream.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "the rest of the body is unread, so the connection cannot be reused: {answer}"
    );
    app.stop().await;
}

/// Hostile CAP bodies posted at once are refused, and meanwhile a valid alert and
/// `/livez` are answered: CAP parsing neither blocks the runtime nor anyone else.
#[tokio::test]
async fn entity_bombs_are_refused_and_good_input_still_flows() {
    let app = InProcess::new();
    let cap = Some("application/cap+xml");
    let bombs = futures::future::join_all((0..3).map(|_| async {
        let response = app.post(cap, entity_bomb()).await;
        (response.status.as_u16(), response.body["field"].clone())
    }));
    let good = async { app.post_json(&alert("Unstalled")).await.ids() };
    let livez = app.get("/livez");
    let (bombs, good, livez) = tokio::join!(bombs, good, livez);
    for (status, field) in bombs {
        assert_eq!((status, field), (400, json!("DOCTYPE")));
    }
    assert_eq!(livez, 200);
    assert_eq!(app.queued(), good);
    let cap = app.post(cap, cap_alert("AFTER", "Sderot")).await.ids();
    assert_eq!(cap.len(), 1, "valid CAP is still parsed");
}
