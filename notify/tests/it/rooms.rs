use alert_core::EventType;
use serde_json::json;

use crate::helpers::{TestApp, alert};

#[tokio::test]
async fn subscribed_client_gets_its_location_and_the_default_client_gets_all() {
    let app = TestApp::ready("rooms").await;
    let mut haifa = app.client(json!({ "locations": ["Haifa"] })).await;
    let mut everything = app.client(json!({})).await;
    let mut later = app.client(json!({})).await;
    haifa.expect("snapshot").await;
    everything.expect("snapshot").await;
    later.expect("snapshot").await;
    let ack = later
        .emit_with_ack("subscribe", json!({ "locations": ["Eilat"] }))
        .await;
    assert_eq!(ack["recovered"], false, "{ack}");

    app.apply(&alert("Tel Aviv", "Rocket Alert", 10)).await;
    app.apply(&alert("Haifa", "Rocket Alert", 10)).await;
    app.apply(&alert("Eilat", "Earthquake", 10)).await;

    let all = everything.alerts(3).await;
    let locations: Vec<_> = all.iter().map(|e| e.location.as_str()).collect();
    assert_eq!(locations, ["Tel Aviv", "Haifa", "Eilat"]);
    assert!(all.iter().all(|e| e.event_type == EventType::Open));

    let mine = haifa.alerts(1).await;
    assert_eq!(mine[0].location, "Haifa");
    assert_eq!(mine[0], all[1], "live copies are identical");
    let eilat = later.alerts(1).await;
    assert_eq!(eilat[0].location, "Eilat");

    // Nothing else arrives for the subscribed clients.
    assert!(haifa.drain_alerts().await.is_empty());
    assert!(later.drain_alerts().await.is_empty());

    // After unsubscribing from its only location, a client receives everything again.
    let ack = haifa
        .emit_with_ack("unsubscribe", json!({ "locations": ["Haifa"] }))
        .await;
    assert_eq!(ack["locations"], json!([]));
    app.apply(&alert("Ashdod", "Rocket Alert", 10)).await;
    assert_eq!(haifa.alerts(1).await[0].location, "Ashdod");
    app.stop().await;
}

#[tokio::test]
async fn snapshot_on_connect_holds_the_windows_already_open() {
    let app = TestApp::ready("snapshot").await;
    app.apply(&alert("Sderot", "Rocket Alert", 10)).await;
    app.apply(&alert("Ofakim", "Rocket Alert", 10)).await;

    let mut client = app.client(json!({ "locations": ["Sderot"] })).await;
    let snapshot = client.expect("snapshot").await;
    let active = snapshot["active"].as_array().unwrap();
    assert_eq!(active.len(), 1, "{snapshot}");
    assert_eq!(active[0]["location"], "Sderot");
    assert_eq!(active[0]["types"], json!(["Rocket Alert"]));
    assert_eq!(active[0]["alertCount"], 1);
    assert!(active[0]["startTime"].is_string() && active[0]["endTime"].is_string());
    assert!(
        snapshot["epoch"].is_string() && snapshot["offset"].is_string(),
        "{snapshot}"
    );

    let mut all = app.client(json!({})).await;
    let snapshot = all.expect("snapshot").await;
    assert_eq!(
        snapshot["active"].as_array().unwrap().len(),
        2,
        "{snapshot}"
    );

    let (status, body) = app.get_json("/api/active?locations=Ofakim").await;
    assert_eq!(status, 200);
    assert_eq!(body["active"][0]["location"], "Ofakim");
    app.stop().await;
}

#[tokio::test]
async fn too_many_locations_are_refused_with_an_error_not_a_disconnect() {
    let mut config = crate::helpers::config(
        &format!("{}:", crate::helpers::unique("limits")),
        crate::helpers::REDIS_URL,
    );
    config.clients.max_locations_per_client = 2;
    let app = TestApp::spawn(config).await;
    let mut client = app.client(json!({ "locations": ["A"] })).await;
    client.expect("snapshot").await;
    let ack = client
        .emit_with_ack("subscribe", json!({ "locations": ["B", "C"] }))
        .await;
    assert!(
        ack["error"].as_str().unwrap().contains("at most 2"),
        "{ack}"
    );
    let ack = client
        .emit_with_ack("subscribe", json!({ "locations": "not a list" }))
        .await;
    assert!(ack["error"].is_string(), "{ack}");
    // Still connected and still subscribed to A.
    let ack = client
        .emit_with_ack("subscribe", json!({ "locations": ["B"] }))
        .await;
    assert!(ack.get("error").is_none(), "{ack}");

    let refused =
        crate::helpers::SioClient::connect(app.addr, json!({ "locations": ["A", "B", "C"] })).await;
    let error = refused.err().expect("handshake refused");
    assert!(
        error["message"].as_str().unwrap().contains("at most 2"),
        "{error}"
    );
    app.stop().await;
}

/// A raw WebSocket session that sends `subscribe` the instant the connect ack arrives
/// (as a stock client flushes what it buffered before the ack). Returns whether the
/// subscribe was acked, and then whether an event for `location` arrived.
async fn subscribe_on_connect_ack(
    app: &TestApp,
    location: &str,
    acked_tx: tokio::sync::mpsc::Sender<()>,
    published: tokio::sync::watch::Receiver<bool>,
) -> (bool, bool) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr);
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let (mut tx, mut rx) = ws.split();
    tx.send(Message::text("40")).await.unwrap();
    let mut next = async || loop {
        match tokio::time::timeout(crate::helpers::WAIT, rx.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some(text.as_str().to_owned()),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    };
    while !next().await.expect("connect ack").starts_with("40") {}
    let subscribe = format!(r#"421["subscribe",{{"locations":["{location}"]}}]"#);
    tx.send(Message::text(subscribe)).await.unwrap();
    let mut acked = false;
    while let Some(text) = next().await {
        if text.starts_with("431") {
            acked = true;
            break;
        }
    }
    acked_tx.send(()).await.unwrap();
    let _ = published.clone().wait_for(|p| *p).await;
    let alert = format!(r#""location":"{location}""#);
    let mut got_event = false;
    while acked && let Some(text) = next().await {
        if text.starts_with(r#"42["alert""#) && text.contains(&alert) {
            got_event = true;
            break;
        }
    }
    (acked, got_event)
}

/// Issue 19, section 7.1: socketioxide acknowledges the connect before it runs the
/// connect handler, and a subscribe sent right after the ack was sometimes dropped (no
/// ack, no room). Thousands of sessions subscribe at the instant of their ack: every
/// one is acked and gets its location's event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_sent_the_instant_of_the_connect_ack_is_never_dropped() {
    let app = std::sync::Arc::new(TestApp::ready("subscribe-race").await);
    let rounds = 20;
    let sessions = 100;
    for round in 0..rounds {
        let location = format!("Race {round}");
        let (published_tx, published) = tokio::sync::watch::channel(false);
        let (acked_tx, mut acks) = tokio::sync::mpsc::channel(sessions);
        let mut running = tokio::task::JoinSet::new();
        for _ in 0..sessions {
            let (app, location) = (app.clone(), location.clone());
            let (published, acked) = (published.clone(), acked_tx.clone());
            running.spawn(async move {
                subscribe_on_connect_ack(&app, &location, acked, published).await
            });
        }
        // Publish only once every session has its ack (or has given up): an event
        // before a session joined would rightly reach it only through its snapshot.
        for _ in 0..sessions {
            acks.recv().await.expect("a session reports");
        }
        app.apply(&alert(&location, "Rocket Alert", 10)).await;
        published_tx.send_replace(true);
        while let Some(outcome) = running.join_next().await {
            let (acked, got_event) = outcome.unwrap();
            assert!(acked, "round {round}: a subscribe was not acked");
            assert!(
                got_event,
                "round {round}: a subscribed session missed its event"
            );
        }
    }
    std::sync::Arc::into_inner(app).unwrap().stop().await;
}
