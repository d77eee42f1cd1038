use futures::StreamExt;
use serde_json::json;

use crate::helpers::{TestApp, WAIT, alert};

/// One parsed Server-Sent Event.
#[derive(Debug, Default)]
struct Sse {
    id: Option<String>,
    event: String,
    data: String,
}

/// Reads SSE frames from a streaming response.
struct SseReader {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl SseReader {
    fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200);
        SseReader {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let mut sse = Sse::default();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        sse.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        sse.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        sse.data.push_str(v.trim_start());
                    }
                }
                if sse.event.is_empty() && sse.data.is_empty() {
                    continue; // keep-alive comment
                }
                return sse;
            }
            let chunk = tokio::time::timeout(WAIT, self.body.next())
                .await
                .expect("SSE frame in time")
                .expect("SSE stream open")
                .unwrap();
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    async fn alert(&mut self) -> (String, alert_core::Event) {
        loop {
            let sse = self.next().await;
            if sse.event == "alert" {
                return (sse.id.unwrap(), serde_json::from_str(&sse.data).unwrap());
            }
        }
    }
}

#[tokio::test]
async fn sse_streams_and_resumes_with_last_event_id() {
    let app = TestApp::ready("sse").await;
    let stream = app
        .http
        .get(app.url("/api/stream?locations=Rehovot"))
        .send()
        .await
        .unwrap();
    let mut reader = SseReader::new(stream);
    let snapshot = reader.next().await;
    assert_eq!(snapshot.event, "snapshot");

    app.apply(&alert("Lod", "Rocket Alert", 10)).await;
    app.apply(&alert("Rehovot", "Rocket Alert", 10)).await;
    let (id, first) = reader.alert().await;
    assert_eq!(first.location, "Rehovot");
    assert_eq!(id, first.offset.to_string());
    drop(reader);

    app.apply(&alert("Rehovot", "Earthquake", 10)).await;
    app.apply(&alert("Lod", "Earthquake", 10)).await;
    app.apply(&alert("Rehovot", "Rocket Alert", 30)).await;
    let resumed = app
        .http
        .get(app.url("/api/stream?locations=Rehovot"))
        .header("Last-Event-ID", id)
        .send()
        .await
        .unwrap();
    let mut reader = SseReader::new(resumed);
    let (_, a) = reader.alert().await;
    let (_, b) = reader.alert().await;
    assert_eq!(
        (a.location.as_str(), b.location.as_str()),
        ("Rehovot", "Rehovot")
    );
    assert_eq!(a.types, ["Earthquake", "Rocket Alert"]);
    assert!(first.offset < a.offset && a.offset < b.offset);

    // Then live.
    app.apply(&alert("Rehovot", "Hostile Aircraft", 10)).await;
    let (_, c) = reader.alert().await;
    assert!(c.types.contains(&"Hostile Aircraft".to_owned()));
    drop(reader);

    // REST reads of the same log.
    let (status, body) = app
        .get_json(&format!("/api/events?since={}&limit=10", first.offset))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["events"].as_array().unwrap().len(), 4, "{body}");
    let (status, body) = app.get_json("/api/history?location=Rehovot&limit=10").await;
    assert_eq!(status, 200);
    assert_eq!(body["history"].as_array().unwrap().len(), 4, "{body}");
    let (status, body) = app.get_json("/api/events?limit=1000000").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(app.get_json("/api/history").await.0, 400);
    // A query string that does not parse is a JSON 400 too (`get_json` reads JSON).
    for bad in ["/api/events?limit=-1", "/api/history?location=A&limit=x"] {
        let (status, body) = app.get_json(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
    let _ = json!({});
    app.stop().await;
}

/// Found by alert-fuzz (issue 12, section 5): `since` at the last possible offset
/// (`u64::MAX-u64::MAX`) was sent to Redis as `XRANGE (max-max +`, which Redis refuses
/// ("invalid start ID"), and the client's input was answered 503 as if Redis were down.
/// Nothing can come after it: an empty page. Offsets just below still read normally.
#[tokio::test]
async fn events_since_the_last_possible_offset_are_none_not_a_503() {
    let app = TestApp::ready("rest-max-offset").await;
    app.apply(&alert("Ashdod", "Earthquake", 10)).await;
    let max = u64::MAX;
    for since in [
        format!("{max}-{max}"),
        format!("{max}-0"),
        format!("0-{max}"),
    ] {
        let (status, body) = app.get_json(&format!("/api/events?since={since}")).await;
        assert_eq!(status, 200, "{since}: {body}");
        let events = body["events"].as_array().unwrap().len();
        let expected = if since.starts_with('0') { 1 } else { 0 };
        assert_eq!(events, expected, "{since}: {body}");
    }
    app.stop().await;
}
