//! The Engine.IO heartbeat: a client that answers pings stays connected, one that has
//! gone silent (a phone that lost its network) is disconnected.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

#[tokio::test]
async fn silent_clients_are_dropped_and_answering_ones_stay() {
    let mut config = config(&format!("{}:", unique("heartbeat")), REDIS_URL);
    config.clients.ping_interval_ms = 100;
    config.clients.ping_timeout_ms = 200;
    let app = TestApp::spawn(config).await;
    let mut answering = app.client(json!({})).await;
    answering.expect("snapshot").await;

    // Connects at the Socket.IO level, then never answers a ping.
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr);
    let (mut silent, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    silent.send(Message::text("40")).await.unwrap();
    let pings_until_closed = tokio::time::timeout(WAIT, async {
        let mut pings = 0;
        while let Some(Ok(message)) = silent.next().await {
            match message {
                Message::Text(text) if text.as_str() == "2" => pings += 1,
                Message::Close(_) => break,
                _ => {}
            }
        }
        pings
    })
    .await
    .expect("the silent client is still connected");
    assert_eq!(pings_until_closed, 1, "one unanswered ping is enough");

    // Many ping intervals later the answering client is still there.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    app.apply(&alert("Heartbeat", "Rocket Alert", 5)).await;
    let alerts = answering.alerts(1).await;
    assert_eq!(alerts[0].location, "Heartbeat");
    app.stop().await;
}
