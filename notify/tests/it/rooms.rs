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
