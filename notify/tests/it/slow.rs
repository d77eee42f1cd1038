//! Slow clients are held, then have their transports closed, never skipped; shutdown
//! closes clients.

use serde_json::{Value, json};

use crate::helpers::{TestApp, WAIT, alert, config, eventually, unique};

/// Engine.IO v4 long-polling by hand: a client that stops polling stops taking its
/// events, which is the slowest client there is.
struct Polling<'a> {
    app: &'a TestApp,
    sid: String,
}

impl<'a> Polling<'a> {
    async fn connect(app: &'a TestApp) -> Polling<'a> {
        let url = app.url("/socket.io/?EIO=4&transport=polling");
        let open = alert_testkit::get_text(&app.http, &url).await;
        let handshake: Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
        let polling = Polling {
            app,
            sid: handshake["sid"].as_str().unwrap().to_owned(),
        };
        polling.post("40{}").await;
        polling
    }

    fn url(&self) -> String {
        self.app.url(&format!(
            "/socket.io/?EIO=4&transport=polling&sid={}",
            self.sid
        ))
    }

    async fn post(&self, body: &str) {
        let response = self
            .app
            .http
            .post(self.url())
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    /// One poll: the packets waiting for this client; `None` once the session is gone.
    async fn poll(&self) -> Option<Vec<String>> {
        let response = self.app.http.get(self.url()).send().await.unwrap();
        if !response.status().is_success() {
            return None;
        }
        let body = response.text().await.unwrap();
        Some(body.split('\u{1e}').map(str::to_owned).collect())
    }
}

/// The `alert` events among polled packets.
fn alerts_in(packets: &[String]) -> Vec<alert_core::Event> {
    packets
        .iter()
        .filter_map(|packet| packet.strip_prefix("42"))
        .map(|event| serde_json::from_str::<Vec<Value>>(event).unwrap())
        .filter(|array| array[0] == "alert")
        .map(|array| serde_json::from_value(array[1].clone()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_client_with_a_full_buffer_is_disconnected_and_resumes_without_a_gap() {
    let mut config = config(&format!("{}:", unique("slow")), crate::helpers::REDIS_URL);
    config.clients.client_buffer = 8;
    // Held events beyond the buffer: a client that never polls passes this at once.
    config.clients.client_backlog = 4;
    let app = TestApp::spawn(config).await;
    let slow = Polling::connect(&app).await;
    let mut fast = app.client(json!({})).await;
    fast.expect("snapshot").await;

    // The slow client takes one event while it still polls: its resume point. (A
    // closed transport drops what was still buffered for it, so that may be all.)
    app.apply(&alert("City start", "Rocket Alert", 10)).await;
    let mut received = Vec::new();
    while received.is_empty() {
        received.extend(alerts_in(&slow.poll().await.expect("session open")));
    }
    let total = 21;
    for i in 1..total {
        app.apply(&alert(&format!("City {i}"), "Rocket Alert", 10))
            .await;
    }
    let all = fast.alerts(total).await;
    eventually(WAIT, "the slow client counted as slow", || async {
        let evicted = app
            .metric("alerts_notify_slow_client_disconnects_total{transport=\"socketio\"}")
            .await;
        (evicted >= 1.0).then_some(())
    })
    .await;

    // The slow client now polls: what it gets is a gap-free prefix, then its transport
    // closes (an Engine.IO close, or the session gone), never a Socket.IO DISCONNECT,
    // after which stock clients would not reconnect.
    let polls = async {
        while let Some(packets) = slow.poll().await {
            received.extend(alerts_in(&packets));
            assert!(
                !packets.iter().any(|p| p.starts_with("41")),
                "a Socket.IO DISCONNECT was sent"
            );
            if packets.iter().any(|p| p == "1") {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, polls)
        .await
        .expect("the transport closed after the buffered events");
    assert!(
        !received.is_empty() && received.len() < total,
        "{} received",
        received.len()
    );
    assert_eq!(
        received[..],
        all[..received.len()],
        "a prefix, in order, no gap"
    );

    // Resuming from the last event it got gives exactly the rest.
    let last = received.last().unwrap();
    let mut back = app
        .client(json!({ "since": { "epoch": last.epoch, "offset": last.offset } }))
        .await;
    let snapshot = back.expect("snapshot").await;
    assert_eq!(snapshot["recovered"], true, "{snapshot}");
    let missed: Vec<alert_core::Event> =
        serde_json::from_value(snapshot["missed"].clone()).unwrap();
    assert_eq!(missed[..], all[received.len()..]);
    assert!(missed.windows(2).all(|w| w[0].offset < w[1].offset));
    app.stop().await;
}

#[tokio::test]
async fn shutdown_disconnects_clients_so_they_reconnect_elsewhere() {
    let app = TestApp::ready("shutdown").await;
    let mut client = app.client(json!({})).await;
    client.expect("snapshot").await;
    let sse = app.http.get(app.url("/api/stream")).send().await.unwrap();
    app.stop().await;
    client.expect("disconnect").await;
    // The SSE stream ended too (the body completes instead of hanging).
    tokio::time::timeout(WAIT, sse.text())
        .await
        .expect("SSE stream ended")
        .unwrap();
}
