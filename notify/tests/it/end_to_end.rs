//! POST to the real listener -> RabbitMQ -> the real processor -> Redis -> notify ->
//! a Socket.IO client, each service on its own port with its own queue and prefix.

use std::{net::SocketAddr, time::Duration};

use alert_core::{CloseReason, EventType, model::MIXED_THREATS};
use lapin::options::QueueDeleteOptions;
use serde_json::json;
use tokio::{net::TcpListener, sync::oneshot};

use crate::helpers::{TestApp, config, eventually, unique};

async fn bind() -> (TcpListener, SocketAddr) {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

async fn wait_ready(http: &reqwest::Client, addr: SocketAddr, what: &str) {
    eventually(Duration::from_secs(20), what, || async {
        let response = http
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn posted_alerts_reach_a_socket_io_client_as_open_update_close() {
    let queue = unique("notify-e2e");
    let prefix = format!("{queue}:");
    let http = reqwest::Client::new();

    let mut listener_config = alert_listener::Config::defaults();
    listener_config.amqp.queue = queue.clone();
    listener_config.shutdown_timeout_seconds = 2;
    let (socket, listener_addr) = bind().await;
    let (stop_listener, stopped) = oneshot::channel::<()>();
    let listener = tokio::spawn(alert_listener::run(listener_config, socket, async move {
        let _ = stopped.await;
    }));

    let mut processor_config = alert_processor::Config::defaults();
    processor_config.amqp.queue = queue.clone();
    processor_config.redis.redis_prefix = prefix.clone();
    processor_config.shutdown_timeout_seconds = 2;
    let (socket, processor_addr) = bind().await;
    let (stop_processor, stopped) = oneshot::channel::<()>();
    let processor = tokio::spawn(alert_processor::run(processor_config, socket, async move {
        let _ = stopped.await;
    }));

    let app = TestApp::spawn(config(&prefix, crate::helpers::REDIS_URL)).await;
    wait_ready(&http, listener_addr, "listener ready").await;
    wait_ready(&http, processor_addr, "processor ready").await;
    let mut client = app.client(json!({ "locations": ["Tel Aviv"] })).await;
    client.expect("snapshot").await;

    let post = async |body: serde_json::Value| -> String {
        let response = http
            .post(format!("http://{listener_addr}/api/alerts"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let ids: serde_json::Value = response.json().await.unwrap();
        ids["ids"][0].as_str().unwrap().to_owned()
    };
    let start = chrono::Utc::now();
    let first = post(json!({
        "location": "Tel Aviv", "type": "Rocket Alert",
        "timestamp": start.to_rfc3339(), "durationSeconds": 4
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
        chrono::TimeDelta::seconds(4)
    );

    let second = post(json!({
        "location": "Tel Aviv", "type": "Hostile Aircraft",
        "timestamp": start.to_rfc3339(), "durationSeconds": 5
    }))
    .await;
    let update = client.alerts(1).await.remove(0);
    assert_eq!(update.event_type, EventType::Update);
    assert_eq!(update.display_type, MIXED_THREATS);
    assert_eq!(update.alert_count, 2);
    assert_eq!(update.alert_id.unwrap().to_string(), second);

    // The processor closes the window when it ends (in about 5 s).
    let close = client.alerts(1).await.remove(0);
    assert_eq!(close.event_type, EventType::Close);
    assert_eq!(close.reason, Some(CloseReason::Expired));
    assert_eq!(close.alert_count, 2);
    assert_eq!(close.types, ["Hostile Aircraft", "Rocket Alert"]);
    assert_eq!(close.window_id, open.window_id);
    assert_eq!(
        close.end_time - close.start_time,
        chrono::TimeDelta::seconds(5)
    );

    let _ = stop_listener.send(());
    let _ = stop_processor.send(());
    listener.await.unwrap().unwrap();
    processor.await.unwrap().unwrap();
    let connection = alert_amqp::connect(alert_testkit::AMQP_URL, "notify e2e")
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    for name in [queue.clone(), format!("{queue}.dead")] {
        let _ = channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    app.stop().await;
}
