use alert_core::QueueMessage;
use axum::{body::Body, http::Request};
use lapin::types::AMQPValue;
use serde_json::json;

use crate::helpers::{InProcess, TestApp, alert, ids, take_all, take_entries};

#[tokio::test]
async fn valid_alert_is_queued_persistent_with_its_uuid() {
    let app = TestApp::ready("valid").await;
    let accepted = ids(app.post_json(&alert("Tel Aviv")).await).await;
    assert_eq!(accepted.len(), 1);

    let queued = take_all(&app.queue).await;
    assert_eq!(queued.len(), 1);
    let (properties, parsed) = &queued[0];
    assert_eq!(parsed.id(), accepted[0]);
    let QueueMessage::Alert(queued_alert) = parsed else {
        panic!("not an alert: {parsed:?}")
    };
    assert_eq!(queued_alert.locations, ["Tel Aviv"]);
    assert_eq!(
        queued_alert.end - queued_alert.start,
        chrono::TimeDelta::minutes(10)
    );
    assert_eq!(properties.delivery_mode(), &Some(2), "persistent");
    assert_eq!(
        properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned()),
        Some(accepted[0].to_string())
    );
    assert_eq!(
        properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .as_deref(),
        Some("application/json")
    );
    app.stop().await;
}

#[tokio::test]
async fn batch_is_queued_in_order() {
    let app = TestApp::ready("batch").await;
    let batch: Vec<_> = (0..50).map(|i| alert(&format!("City {i}"))).collect();
    let accepted = ids(app.post_json(&json!(batch)).await).await;
    assert_eq!(accepted.len(), 50);

    // A source's batch is one queue entry: one broker message and one confirm.
    let entries = take_entries(&app.queue).await;
    assert_eq!(entries.len(), 1);
    let queued: Vec<_> = entries[0].1.iter().map(|m| m.id()).collect();
    assert_eq!(queued, accepted);
    app.stop().await;
}

/// Concurrent single-alert requests share queue entries (group commit), and each
/// alert is queued exactly once.
#[tokio::test]
async fn concurrent_requests_share_queue_entries() {
    let app = TestApp::ready("grouped").await;
    let posts = (0..200).map(|i| {
        let body = alert(&format!("Town {i}"));
        let app = &app;
        async move { ids(app.post_json(&body).await).await }
    });
    let mut accepted: Vec<_> = futures::future::join_all(posts)
        .await
        .into_iter()
        .flatten()
        .collect();
    let entries = take_entries(&app.queue).await;
    let mut queued: Vec<_> = entries
        .iter()
        .flat_map(|(_, messages)| messages.iter().map(|m| m.id()))
        .collect();
    accepted.sort();
    queued.sort();
    assert_eq!(queued, accepted, "every alert queued once");
    assert!(
        entries.len() < 200,
        "200 concurrent requests took {} entries",
        entries.len()
    );
    app.stop().await;
}

#[tokio::test]
async fn idempotency_key_travels_with_the_message_and_a_retry_gets_the_same_ids() {
    let app = TestApp::ready("idempotency").await;
    let send = || {
        app.http
            .post(app.url("/api/alerts"))
            .header("content-type", "application/json")
            .header("idempotency-key", "retry-42")
            .body(alert("Haifa").to_string())
            .send()
    };
    let first = ids(send().await.unwrap()).await;
    let retry = ids(send().await.unwrap()).await;
    assert_eq!(
        first, retry,
        "a retried request is answered with the same UUIDs"
    );

    let queued = take_all(&app.queue).await;
    assert_eq!(
        queued.len(),
        2,
        "both are queued; the processor drops the second"
    );
    for (properties, parsed) in &queued {
        assert_eq!(parsed.idempotency_key(), Some("hdr:retry-42"));
        let headers = properties.headers().clone().unwrap();
        let header = headers.inner().get("idempotency-key").cloned();
        assert_eq!(header, Some(AMQPValue::LongString("hdr:retry-42".into())));
    }
    app.stop().await;
}

const CAP_ALERT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>TEST-1</identifier>
  <sender>sirens@example.org</sender>
  <sent>2026-11-22T10:00:00+00:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <category>Safety</category>
    <event>Rocket Alert</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Observed</certainty>
    <expires>2099-01-01T00:00:00+00:00</expires>
    <area><areaDesc>Sderot</areaDesc></area>
  </info>
</alert>"#;

#[tokio::test]
async fn cap_alert_and_cancel_are_queued() {
    let app = TestApp::ready("cap").await;
    let now = chrono::Utc::now();
    let cap = CAP_ALERT
        .replace("2026-11-22T10:00:00+00:00", &now.to_rfc3339())
        .replace(
            "2099-01-01T00:00:00+00:00",
            &(now + chrono::TimeDelta::minutes(5)).to_rfc3339(),
        );
    let accepted = ids(app.post("application/cap+xml", cap).await).await;
    let cancel = CAP_ALERT
        .replace("<msgType>Alert</msgType>", "<msgType>Cancel</msgType>")
        .replace("TEST-1", "TEST-2")
        .replace(
            "<scope>Public</scope>",
            "<scope>Public</scope><references>sirens@example.org,TEST-1,2026-11-22T10:00:00+00:00</references>",
        );
    let cancelled = ids(app.post("application/xml", cancel).await).await;

    let queued = take_all(&app.queue).await;
    assert_eq!(queued.len(), 2);
    let (QueueMessage::Alert(alert), QueueMessage::Cancel(cancel)) = (&queued[0].1, &queued[1].1)
    else {
        panic!(
            "expected an alert then a cancel: {queued:?}",
            queued = queued.iter().map(|q| &q.1).collect::<Vec<_>>()
        );
    };
    assert_eq!((alert.id, cancel.id), (accepted[0], cancelled[0]));
    assert_eq!(alert.locations, ["Sderot"]);
    assert_eq!(
        alert.reference.as_deref(),
        Some("cap:18:sirens@example.org:TEST-1")
    );
    assert_eq!(cancel.references, ["cap:18:sirens@example.org:TEST-1"]);
    app.stop().await;
}

#[tokio::test]
async fn openapi_document_describes_the_ingest_route() {
    let app = InProcess::new();
    let answer = app
        .send(
            Request::get("/api/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, 200);
    let doc = answer.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let post = &doc["paths"]["/api/alerts"]["post"];
    assert!(post["responses"]["202"].is_object() && post["responses"]["503"].is_object());
    assert!(
        doc["components"]["schemas"]["AlertInput"]["properties"]["durationSeconds"].is_object()
    );
}

#[tokio::test]
async fn metrics_count_requests_by_status() {
    let app = TestApp::ready("metrics").await;
    ids(app.post_json(&alert("Eilat")).await).await;
    assert_eq!(app.post_json(&json!({"type": "x"})).await.status(), 400);
    let text = alert_testkit::get_text(&app.http, &app.url("/metrics")).await;
    assert!(
        text.contains(r#"alerts_listener_requests_total{status="202"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"alerts_listener_requests_total{status="400"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("alerts_listener_alerts_accepted_total 1"),
        "{text}"
    );
    assert!(text.contains("alerts_listener_queue_ready 1"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn api_keys_authenticate_sources_and_rate_limit_them() {
    let mut args = alert_listener::Config::defaults().ingest;
    args.api_keys = alert_core::Secret::new("sirens=sirens-key-0123456789");
    args.source_rate_limit = 5.0;
    args.max_batch = 10;
    let app = InProcess::with(&args);
    let post = |key: Option<&'static str>, body: serde_json::Value| {
        let mut request = Request::post("/api/alerts").header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        app.send(request.body(Body::from(body.to_string())).unwrap())
    };
    let missing = post(None, alert("A")).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    assert_eq!(post(Some("not-a-key"), alert("A")).await.status, 401);

    let mut body = alert("A");
    body["source"] = json!("pretender");
    body["id"] = json!("1");
    let accepted = post(Some("sirens-key-0123456789"), body).await.ids();
    let batch: Vec<_> = (0..9).map(|i| alert(&format!("B{i}"))).collect();
    post(Some("sirens-key-0123456789"), json!(batch))
        .await
        .ids();
    // The burst (one full batch of 10) is spent: the next alert waits.
    let limited = post(Some("sirens-key-0123456789"), alert("C")).await;
    assert_eq!(limited.status, 429);
    assert!(
        limited.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );

    let queued = app.queued_messages();
    assert_eq!(queued.len(), 10, "nothing from refused requests");
    let QueueMessage::Alert(first) = &queued[0] else {
        panic!("not an alert")
    };
    assert_eq!(first.id, accepted[0]);
    assert_eq!(
        first.source.as_deref(),
        Some("sirens"),
        "the key names the source, not the body"
    );
    assert_eq!(first.idempotency_key.as_deref(), Some("src:6:sirens:1"));
}
