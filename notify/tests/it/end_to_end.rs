//! POST to the real listener -> RabbitMQ -> (the processor's step, store.apply) ->
//! Redis -> notify -> a Socket.IO client.

use std::time::Duration;

use alert_core::{EventType, QueueMessage};
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeleteOptions};
use serde_json::json;

use crate::helpers::{TestApp, WAIT, eventually, unique};

async fn listener(queue: &str) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let mut config = alert_listener::Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.queue = queue.to_owned();
    config.shutdown_timeout_seconds = 2;
    let socket = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(alert_listener::run(config, socket, async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

#[tokio::test]
async fn posted_alerts_reach_a_socket_io_client_as_open_update_close() {
    let app = TestApp::ready("e2e").await;
    let queue = unique("notify-e2e");
    let (listener_addr, stop_listener) = listener(&queue).await;
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(20), "listener ready", || async {
        let response = http
            .get(format!("http://{listener_addr}/readyz"))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    let connection = alert_amqp::connect(alert_testkit::AMQP_URL, "notify e2e")
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();

    let mut client = app.client(json!({ "locations": ["Tel Aviv"] })).await;
    client.expect("snapshot").await;

    let start = chrono::Utc::now();
    let post_and_process = async |body: serde_json::Value| {
        let response = http
            .post(format!("http://{listener_addr}/api/alerts"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let ids: serde_json::Value = response.json().await.unwrap();
        // The processor's step, done here: take the message, apply it, ack.
        let message = eventually(WAIT, "queued message", || async {
            channel
                .basic_get(queue.as_str().into(), BasicGetOptions::default())
                .await
                .unwrap()
        })
        .await;
        let parsed: QueueMessage = serde_json::from_slice(&message.delivery.data).unwrap();
        app.apply(&parsed).await;
        message
            .delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
        ids["ids"][0].as_str().unwrap().to_owned()
    };
    let first = post_and_process(json!({
        "location": "Tel Aviv", "type": "Rocket Alert",
        "timestamp": start.to_rfc3339(), "duration": 10
    }))
    .await;
    let open = client.alerts(1).await.remove(0);
    assert_eq!(open.event_type, EventType::Open);
    assert_eq!(open.location, "Tel Aviv");
    assert_eq!(open.display_type, "Rocket Alert");
    assert_eq!(open.alert_count, 1);
    assert_eq!(open.alert_id.unwrap().to_string(), first);
    assert_eq!(
        open.end_time - open.start_time,
        chrono::TimeDelta::minutes(10)
    );

    let second = post_and_process(json!({
        "location": "Tel Aviv", "type": "Hostile Aircraft",
        "timestamp": start.to_rfc3339(), "duration": 15
    }))
    .await;
    let update = client.alerts(1).await.remove(0);
    assert_eq!(update.event_type, EventType::Update);
    assert_eq!(update.display_type, alert_core::model::MIXED_THREATS);
    assert_eq!(update.alert_count, 2);
    assert_eq!(update.alert_id.unwrap().to_string(), second);

    // The processor's closer, with the clock moved past the window's end.
    let closed = app
        .store
        .close_due(Some(start + chrono::TimeDelta::minutes(16)), 100)
        .await
        .unwrap();
    assert_eq!(closed.closes, 1);
    let close = client.alerts(1).await.remove(0);
    assert_eq!(close.event_type, EventType::Close);
    assert_eq!(close.reason, Some(alert_core::CloseReason::Expired));
    assert_eq!(close.alert_count, 2);
    assert_eq!(close.types, ["Hostile Aircraft", "Rocket Alert"]);
    assert_eq!(close.window_id, open.window_id);
    assert_eq!(
        close.end_time - close.start_time,
        chrono::TimeDelta::minutes(15)
    );

    let _ = stop_listener.send(());
    for name in [queue.clone(), format!("{queue}.dead")] {
        let _ = channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    app.stop().await;
}
