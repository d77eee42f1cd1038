//! The end-to-end contract (ARCHITECTURE.md) as test cases over the public interfaces
//! only: `POST /api/alerts` on the ingest address, Socket.IO, SSE and REST on the
//! clients address. The distributed services (notify's tests) and the standalone
//! process (standalone's tests) each run every case through [`contract_tests!`].
//!
//! Each case uses locations of its own, so cases may share a running system.

use std::net::SocketAddr;

use alert_core::{CloseReason, Event, EventType, model::MIXED_THREATS};
use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};

use crate::{SioClient, WAIT, eventually, unique};

/// Where a running system listens.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    pub ingest: SocketAddr,
    pub clients: SocketAddr,
}

/// A deployment under test: started by the harness, stopped after each case.
pub trait System {
    fn endpoints(&self) -> Endpoints;
    fn stop(self) -> impl std::future::Future<Output = ()>;
}

/// One `#[tokio::test]` per contract case, each on a system from `$start` (an async
/// fn returning a [`System`]).
#[macro_export]
macro_rules! contract_tests {
    ($start:path) => {
        $crate::contract_tests!(@cases $start;
            posted_alerts_open_update_and_close,
            snapshot_and_resume_with_since,
            subscribed_clients_get_only_their_locations,
            a_retried_post_is_one_alert,
            bad_input_is_refused_with_the_field,
            server_sent_events_carry_the_same_events,
        );
    };
    (@cases $start:path; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let system = $start().await;
                $crate::contract::$case(
                    $crate::contract::System::endpoints(&system)).await;
                $crate::contract::System::stop(system).await;
            }
        )+
    };
}

/// A location no other case or run uses.
fn place(name: &str) -> String {
    unique(name)
}

/// POSTs `body` as JSON with optional extra headers; returns status and body.
async fn post(endpoints: Endpoints, body: &Value, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/api/alerts", endpoints.ingest))
        .json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("POST /api/alerts");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// POSTs an alert that must be accepted; returns its id.
async fn accepted(endpoints: Endpoints, body: Value) -> String {
    let (status, answer) = post(endpoints, &body, &[]).await;
    assert_eq!(status, 202, "{answer}");
    answer["ids"][0].as_str().expect("an id").to_owned()
}

fn alert(location: &str, alert_type: &str, seconds: i64) -> Value {
    json!({
        "location": location, "type": alert_type,
        "timestamp": Utc::now().to_rfc3339(), "durationSeconds": seconds,
    })
}

async fn client(endpoints: Endpoints, auth: Value) -> (SioClient, Value) {
    let mut client = SioClient::connect(endpoints.clients, auth)
        .await
        .expect("socket.io connect");
    let snapshot = client.expect("snapshot").await;
    (client, snapshot)
}

pub async fn posted_alerts_open_update_and_close(endpoints: Endpoints) {
    let city = place("Tel Aviv");
    let (mut client, _) = client(endpoints, json!({ "locations": [city] })).await;
    let start = Utc::now();
    let first = accepted(
        endpoints,
        json!({ "location": city, "type": "Rocket Alert",
                "timestamp": start.to_rfc3339(), "durationSeconds": 3 }),
    )
    .await;
    let open = client.expect("alert").await;
    original_names(&open);
    let open: Event = serde_json::from_value(open).unwrap();
    assert_eq!(open.event_type, EventType::Open);
    assert_eq!(open.location, city);
    assert_eq!(open.display_type, "Rocket Alert");
    assert_eq!(open.alert_count, 1);
    assert_eq!(open.alert_id.unwrap().to_string(), first);
    assert_eq!(open.end_time - open.start_time, TimeDelta::seconds(3));

    let second = accepted(
        endpoints,
        json!({ "location": city, "type": "Hostile Aircraft",
                "timestamp": start.to_rfc3339(), "durationSeconds": 4 }),
    )
    .await;
    let update = client.alerts(1).await.remove(0);
    assert_eq!(update.event_type, EventType::Update);
    assert_eq!(update.display_type, MIXED_THREATS);
    assert_eq!(update.alert_count, 2);
    assert_eq!(update.alert_id.unwrap().to_string(), second);

    // Inside the window, with a known type: counted, nothing announced.
    accepted(
        endpoints,
        json!({ "location": city, "type": "Rocket Alert",
                "timestamp": start.to_rfc3339(), "durationSeconds": 3 }),
    )
    .await;

    // The window closes by itself when it ends (in about 4 s).
    let close = client.alerts(1).await.remove(0);
    assert_eq!(close.event_type, EventType::Close);
    assert_eq!(close.reason, Some(CloseReason::Expired));
    assert_eq!(close.alert_count, 3);
    assert_eq!(close.types, ["Hostile Aircraft", "Rocket Alert"]);
    assert_eq!(close.window_id, open.window_id);
    assert_eq!(close.end_time - close.start_time, TimeDelta::seconds(4));
    assert!(client.drain_alerts().await.is_empty());

    let history = get(endpoints, &format!("/api/history?location={city}")).await;
    let changes: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["merged", "updated", "opened"], "{history}");
}

pub async fn snapshot_and_resume_with_since(endpoints: Endpoints) {
    let (early, late) = (place("Nahariya"), place("Akko"));
    accepted(endpoints, alert(&early, "Rocket Alert", 600)).await;
    // A client connecting now finds the open window in its snapshot.
    let (mut first, snapshot) = client(endpoints, json!({ "locations": [early, late] })).await;
    let active = snapshot["active"].as_array().unwrap();
    if active.is_empty() {
        // Accepted is not yet processed: then the open event follows.
        assert_eq!(first.alerts(1).await[0].location, early);
    } else {
        // The snapshot may already hold a window whose open event is still on its way
        // (clients apply events idempotently): skipped below.
        assert_eq!(active[0]["location"], json!(early), "{snapshot}");
        original_names(&active[0]);
    }
    accepted(endpoints, alert(&late, "Rocket Alert", 600)).await;
    let seen = loop {
        let event = first.alerts(1).await.remove(0);
        if event.location == late {
            break event;
        }
        assert_eq!(event.location, early);
        assert_eq!(event.event_type, EventType::Open);
    };
    drop(first);

    // Missed while away: an update for each location.
    accepted(endpoints, alert(&early, "Earthquake", 600)).await;
    accepted(endpoints, alert(&late, "Rocket Alert", 1200)).await;
    let since = json!({ "epoch": seen.epoch, "offset": seen.offset });
    let missed = eventually(WAIT, "both updates replayed", || async {
        let (mut back, snapshot) = client(
            endpoints,
            json!({ "locations": [early, late], "since": since }),
        )
        .await;
        assert_eq!(snapshot["recovered"], true, "{snapshot}");
        snapshot["missed"]
            .as_array()
            .unwrap()
            .iter()
            .for_each(original_names);
        let mut missed: Vec<Event> = serde_json::from_value(snapshot["missed"].clone()).unwrap();
        // Events after the snapshot's position arrive live.
        missed.extend(back.drain_alerts().await);
        (missed.len() == 2).then_some(missed)
    })
    .await;
    assert!(
        missed
            .iter()
            .all(|event| event.event_type == EventType::Update)
    );
    assert_eq!(missed[0].location, early);
    assert_eq!(missed[1].location, late);

    // A position from another epoch is not recovered: the snapshot is the truth.
    let stale = json!({ "locations": [early], "since": { "epoch": "gone", "offset": "1-0" } });
    let (_, snapshot) = client(endpoints, stale).await;
    assert_eq!(snapshot["recovered"], false, "{snapshot}");
    assert_eq!(snapshot["active"][0]["location"], json!(early));
}

pub async fn subscribed_clients_get_only_their_locations(endpoints: Endpoints) {
    let (haifa, eilat) = (place("Haifa"), place("Eilat"));
    let (mut mine, _) = client(endpoints, json!({ "locations": [haifa] })).await;
    let (mut everything, _) = client(endpoints, json!({})).await;
    accepted(endpoints, alert(&eilat, "Earthquake", 600)).await;
    accepted(endpoints, alert(&haifa, "Rocket Alert", 600)).await;

    let received = mine.alerts(1).await;
    assert_eq!(received[0].location, haifa);
    // The default client gets every location (other cases' too): find ours.
    let mut all = Vec::new();
    while !all.iter().any(|e: &Event| e.location == haifa) {
        all.extend(everything.alerts(1).await);
    }
    let ours: Vec<&str> = all
        .iter()
        .map(|e| e.location.as_str())
        .filter(|l| [eilat.as_str(), haifa.as_str()].contains(l))
        .collect();
    assert_eq!(ours, [eilat.as_str(), haifa.as_str()]);
    assert_eq!(
        all.iter().find(|e| e.location == haifa).unwrap(),
        &received[0],
        "every copy of an event is identical"
    );
    assert!(mine.drain_alerts().await.is_empty());
}

pub async fn a_retried_post_is_one_alert(endpoints: Endpoints) {
    let city = place("Sderot");
    let (mut client, _) = client(endpoints, json!({ "locations": [city] })).await;
    let body = alert(&city, "Rocket Alert", 600);
    let key = unique("retry");
    let (status, first) = post(endpoints, &body, &[("Idempotency-Key", &key)]).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = post(endpoints, &body, &[("Idempotency-Key", &key)]).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(
        first["ids"], again["ids"],
        "a retry is answered with the same ids"
    );
    // The source's own id does the same without the header.
    let sourced = json!({ "location": city, "type": "Earthquake", "timestamp": Utc::now().to_rfc3339(),
                          "durationSeconds": 600, "id": "quake-1", "source": "seismo" });
    accepted(endpoints, sourced.clone()).await;
    accepted(endpoints, sourced).await;

    let events = client.alerts(2).await;
    assert_eq!(events[0].event_type, EventType::Open);
    assert_eq!(events[1].event_type, EventType::Update);
    assert_eq!(events[1].alert_count, 2, "each alert counted once");
    assert!(client.drain_alerts().await.is_empty());
    // A duplicate that slipped through would merge silently: count what is open.
    let active = get(endpoints, &format!("/api/active?locations={city}")).await;
    assert_eq!(active["active"][0]["alertCount"], 2, "{active}");
    original_names(&active["active"][0]);
}

pub async fn bad_input_is_refused_with_the_field(endpoints: Endpoints) {
    let city = place("Ashdod");
    let cases = [
        (
            json!({ "type": "Rocket Alert", "timestamp": Utc::now().to_rfc3339(), "duration": 1 }),
            "locations",
        ),
        (
            json!({ "location": city, "timestamp": Utc::now().to_rfc3339(), "duration": 1 }),
            "type",
        ),
        (
            json!({ "location": city, "type": "Rocket Alert", "duration": 1 }),
            "timestamp",
        ),
        (
            json!({ "location": city, "type": "Rocket Alert", "timestamp": "yesterday", "duration": 1 }),
            "timestamp",
        ),
        (
            json!({ "location": city, "type": "Rocket Alert", "timestamp": Utc::now().to_rfc3339(), "duration": -5 }),
            "duration",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = post(endpoints, &body, &[]).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["field"], json!(field), "{body} -> {answer}");
    }
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/alerts", endpoints.ingest))
        .header("content-type", "text/plain")
        .body("rockets!")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    // Nothing of it reached clients.
    let active = get(endpoints, &format!("/api/active?locations={city}")).await;
    assert_eq!(active["active"], json!([]), "{active}");
}

pub async fn server_sent_events_carry_the_same_events(endpoints: Endpoints) {
    use futures::StreamExt;
    let city = place("Beersheba");
    let (mut socket, _) = client(endpoints, json!({ "locations": [city] })).await;
    let response = reqwest::Client::new()
        .get(format!(
            "http://{}/api/stream?locations={city}",
            endpoints.clients
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let mut next_alert = async || loop {
        if let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            if frame.contains("event: alert") {
                return frame;
            }
            continue;
        }
        let chunk = tokio::time::timeout(WAIT, body.next())
            .await
            .expect("an SSE frame in time")
            .expect("the stream stays open")
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    };
    accepted(endpoints, alert(&city, "Rocket Alert", 600)).await;
    let frame = next_alert().await;
    let live = socket.alerts(1).await.remove(0);
    let data = frame
        .lines()
        .find_map(|line| line.strip_prefix("data: "))
        .expect("data line");
    original_names(&serde_json::from_str(data).unwrap());
    let sse: Event = serde_json::from_str(data).unwrap();
    assert_eq!(sse, live, "SSE and Socket.IO carry the same event");
    assert!(frame.contains(&format!("id: {}", live.offset)), "{frame}");
}

/// A window or event also carries the original system's names for its two instants
/// (ARCHITECTURE.md): `sentTime` is `startTime`, `duration` is `endTime`, as ISO text.
fn original_names(item: &Value) {
    assert!(item["startTime"].is_string(), "{item}");
    assert_eq!(item["sentTime"], item["startTime"], "{item}");
    assert_eq!(item["duration"], item["endTime"], "{item}");
}

async fn get(endpoints: Endpoints, path: &str) -> Value {
    reqwest::get(format!("http://{}{path}", endpoints.clients))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}
