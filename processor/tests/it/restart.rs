//! A real Redis restart: a private redis-server killed -9 and started again on the same
//! data (its script cache empty, as after any restart), while the processor runs.

use std::collections::HashMap;

use alert_core::{CloseReason, EventType};
use chrono::{TimeDelta, Utc};

use crate::helpers::{
    CapturedLogs, Env, PrivateRedis, Running, WAIT, alert_at, eventually, message,
};

/// While Redis is down /readyz answers 503 and the outage is logged once; alerts posted
/// meanwhile are applied after it exactly once, the window that ended during it is
/// closed (late, once), /readyz is 200 again and the end of the outage is logged once.
#[tokio::test]
async fn redis_restart_fails_readiness_then_applies_held_alerts_and_overdue_closes() {
    let logs = CapturedLogs::start();
    let mut redis = PrivateRedis::start().await;
    let env = Env::on("restart", &redis.url).await;
    let processor = Running::start(env.config()).await;
    processor.wait_ready().await;

    // A window that ends while Redis is down: its close is overdue at the restart.
    let ending = alert_at("Ending", "Rocket Alert", Utc::now(), TimeDelta::seconds(2));
    env.publish(&[message(ending.clone())]).await;
    env.wait_events(1).await;

    redis.kill().await;
    eventually(WAIT, "/readyz 503 while Redis is down", || async {
        (processor.get("/readyz").await.0 == 503).then_some(())
    })
    .await;
    let held: Vec<_> = (0..5)
        .map(|i| {
            alert_at(
                &format!("Held {i}"),
                "Earthquake",
                Utc::now(),
                TimeDelta::minutes(10),
            )
        })
        .collect();
    env.publish(&held.iter().cloned().map(message).collect::<Vec<_>>())
        .await;
    eventually(WAIT, "the first window's end to pass", || async {
        (Utc::now() > ending.end).then_some(())
    })
    .await;
    assert_eq!(
        processor.get("/readyz").await.0,
        503,
        "still down, still not ready"
    );

    redis.restart().await;
    processor.wait_ready().await;
    let events = env.wait_events(1 + 1 + held.len()).await;
    eventually(WAIT, "every held alert handled", || async {
        let (_, metrics) = processor.get("/metrics").await;
        let handled: u64 = ["applied", "duplicate"]
            .iter()
            .filter_map(|outcome| {
                let name = format!("alerts_processor_messages_total{{outcome=\"{outcome}\"}} ");
                metrics
                    .lines()
                    .find_map(|l| l.strip_prefix(&name)?.parse::<u64>().ok())
            })
            .sum();
        (handled > held.len() as u64).then_some(())
    })
    .await;
    let events_now = env.events().await;
    assert_eq!(
        events_now.len(),
        events.len(),
        "nothing more: {events_now:#?}"
    );

    let mut per_location: HashMap<&str, Vec<EventType>> = HashMap::new();
    for event in &events {
        per_location
            .entry(event.location.as_str())
            .or_default()
            .push(event.event_type);
    }
    assert_eq!(
        per_location["Ending"],
        [EventType::Open, EventType::Close],
        "{events:#?}"
    );
    for alert in &held {
        assert_eq!(
            per_location[alert.locations[0].as_str()],
            [EventType::Open],
            "each held alert applied exactly once: {events:#?}"
        );
    }
    let close = events
        .iter()
        .find(|e| e.event_type == EventType::Close)
        .unwrap();
    assert_eq!(close.reason, Some(CloseReason::Expired));
    assert!(
        close.created_at > ending.end,
        "closed after the restart, not before its end"
    );
    assert_eq!(
        env.store.active(None).await.unwrap().len(),
        held.len(),
        "the held alerts' windows are open"
    );

    processor.stop().await;
    let lines = logs.lines();
    let from_processor = |level: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| {
                l["level"] == level
                    && l["target"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("alert_processor"))
            })
            .collect()
    };
    let warnings = from_processor("WARN");
    assert_eq!(
        warnings.len(),
        1,
        "one warning for the outage: {warnings:#?}"
    );
    let recoveries: Vec<_> = from_processor("INFO")
        .into_iter()
        .filter(|l| l["fields"]["outage_ms"].is_u64())
        .collect();
    assert_eq!(recoveries.len(), 1, "one line for its end: {lines:#?}");
    env.cleanup().await;
}
