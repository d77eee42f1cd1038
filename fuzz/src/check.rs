//! After the run: good input still gets its good answer, end to end.

use std::time::Duration;

use axum::{body::Body, http::Request};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt;

use crate::stack::{self, API_KEY, Stack};

fn good_alert(location: &str) -> serde_json::Value {
    serde_json::json!({
        "location": location,
        "type": "Rocket Alert",
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "duration": 5,
    })
}

/// A good alert is accepted (202) by both in-process routers and by the real listener;
/// a WebSocket client gets its snapshot, its `subscribe` acked, and that alert as an
/// `alert` event; `/api/active` answers 200. `Ok` lists what was checked.
pub async fn good_input(stack: &Stack, timeout: Duration) -> Result<Vec<String>, String> {
    let mut checked = Vec::new();
    for (name, router, key) in [
        ("in-process", &stack.open, None),
        ("in-process keyed", &stack.keyed, Some(API_KEY)),
    ] {
        // The keyed source may still be over its rate from the run: its bucket refills.
        let mut status = 0;
        for _ in 0..50 {
            let mut request =
                Request::post("/api/alerts").header("content-type", "application/json");
            if let Some(key) = key {
                request = request.header("x-api-key", key);
            }
            let request = request
                .body(Body::from(good_alert("Fuzz City").to_string()))
                .expect("a request");
            status = router
                .clone()
                .oneshot(request)
                .await
                .expect("infallible")
                .status()
                .as_u16();
            if status != 429 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if status != 202 {
            return Err(format!("{name} ingest answered a good alert with {status}"));
        }
        checked.push(format!("{name} POST 202"));
    }
    let Some(services) = &stack.services else {
        return Ok(checked);
    };
    let location = format!(
        "Fuzz check {}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket",
        services.notify
    );
    let wait = Duration::from_secs(10).max(timeout);
    let (mut ws, _) = tokio::time::timeout(wait, tokio_tungstenite::connect_async(url))
        .await
        .map_err(|_| "no WebSocket handshake in time".to_owned())?
        .map_err(|e| format!("WebSocket handshake: {e}"))?;
    let auth = serde_json::json!({ "locations": [location] });
    next_text(&mut ws, wait, |t| t.starts_with('0')).await?;
    ws.send(Message::text(format!("40{auth}")))
        .await
        .map_err(|e| e.to_string())?;
    next_text(&mut ws, wait, |t| t.starts_with("42[\"snapshot\""))
        .await
        .map_err(|e| format!("snapshot: {e}"))?;
    checked.push("Socket.IO snapshot".into());
    let subscribe = serde_json::json!(["subscribe", { "locations": [location, "Haifa"] }]);
    ws.send(Message::text(format!("421{subscribe}")))
        .await
        .map_err(|e| e.to_string())?;
    let ack = next_text(&mut ws, wait, |t| t.starts_with("431["))
        .await
        .map_err(|e| format!("subscribe ack: {e}"))?;
    let ack: serde_json::Value =
        serde_json::from_str(&ack[3..]).map_err(|e| format!("subscribe ack: {e}"))?;
    if !ack[0]["error"].is_null() || !ack[0]["active"].is_array() {
        return Err(format!("subscribe answered {ack}"));
    }
    checked.push("subscribe acked".into());
    let response = stack::post_json(services.listener, &good_alert(&location))
        .await
        .map_err(|e| format!("listener: {e}"))?;
    if response.status != 202 {
        return Err(format!(
            "the listener answered a good alert with {}",
            response.status
        ));
    }
    checked.push("listener POST 202".into());
    let wanted = format!(
        "\"location\":{}",
        serde_json::Value::from(location.as_str())
    );
    next_text(&mut ws, wait, |t| {
        t.starts_with("42[\"alert\"") && t.contains(&wanted)
    })
    .await
    .map_err(|e| format!("the good alert as an event: {e}"))?;
    checked.push("its alert event delivered".into());
    let _ = ws.close(None).await;
    let target = format!("/api/active?locations={}", location.replace(' ', "%20"));
    let response = stack::get(services.notify, &target)
        .await
        .map_err(|e| format!("REST: {e}"))?;
    if response.status != 200 || !String::from_utf8_lossy(&response.body).contains(&location) {
        return Err(format!("/api/active answered {}", response.status));
    }
    checked.push("/api/active 200".into());
    Ok(checked)
}

/// The next text frame that satisfies `wanted`, skipping others.
async fn next_text<S>(
    ws: &mut S,
    wait: Duration,
    wanted: impl Fn(&str) -> bool,
) -> Result<String, String>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let reading = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) if wanted(text.as_str()) => {
                    return Ok(text.as_str().to_owned());
                }
                Some(Ok(_)) => {}
                other => return Err(format!("the WebSocket ended: {other:?}")),
            }
        }
    };
    tokio::time::timeout(wait, reading)
        .await
        .map_err(|_| "nothing in time".to_owned())?
}
