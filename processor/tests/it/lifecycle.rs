use alert_core::{Cancel, CloseReason, EventType, QueueMessage};
use chrono::{TimeDelta, Utc};
use uuid::Uuid;

use crate::helpers::{Env, Running, alert_at, kinds, message};

/// open, update (later end), update (new type), merge (no event), close with the
/// aggregate once the window ends.
#[tokio::test]
async fn window_opens_updates_merges_and_closes_with_its_aggregate() {
    let env = Env::new("lifecycle").await;
    let processor = Running::start(env.config()).await;
    let now = Utc::now();
    let first = alert_at("Tel Aviv", "Rocket Alert", now, TimeDelta::seconds(3));
    env.publish(&[message(first.clone())]).await;
    let events = env.wait_events(1).await;
    assert_eq!(kinds(&events), [EventType::Open]);
    let open = &events[0];
    assert_eq!(
        (
            open.location.as_str(),
            open.display_type.as_str(),
            open.alert_count
        ),
        ("Tel Aviv", "Rocket Alert", 1)
    );
    assert_eq!((open.start_time, open.end_time), (first.start, first.end));
    assert_eq!(open.alert_id, Some(first.id));
    assert_eq!(open.window_id, first.id);

    let later = alert_at("Tel Aviv", "Rocket Alert", now, TimeDelta::seconds(4));
    env.publish(&[message(later.clone())]).await;
    env.wait_events(2).await;
    let quake = alert_at("Tel Aviv", "Earthquake", now, TimeDelta::seconds(3));
    env.publish(&[message(quake)]).await;
    env.wait_events(3).await;
    let inside = alert_at("Tel Aviv", "Rocket Alert", now, TimeDelta::seconds(3));
    env.publish(&[message(inside)]).await;

    let events = env.wait_events(4).await;
    assert_eq!(
        kinds(&events),
        [
            EventType::Open,
            EventType::Update,
            EventType::Update,
            EventType::Close
        ]
    );
    assert_eq!(events[1].end_time, later.end);
    assert_eq!(events[2].display_type, "Mixed Threats");
    let close = &events[3];
    assert_eq!(close.reason, Some(CloseReason::Expired));
    assert_eq!(
        close.alert_count, 4,
        "the merged alert counted without an event of its own"
    );
    assert_eq!(close.types, ["Earthquake", "Rocket Alert"]);
    assert_eq!((close.start_time, close.end_time), (first.start, later.end));
    assert!(close.created_at >= later.end, "closed at or after its end");
    assert!(env.store.active(None).await.unwrap().is_empty());

    processor.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn alert_ended_before_processing_emits_nothing_but_is_in_history() {
    let env = Env::new("expired").await;
    let processor = Running::start(env.config()).await;
    let old = alert_at(
        "Eilat",
        "Flood",
        Utc::now() - TimeDelta::hours(2),
        TimeDelta::minutes(10),
    );
    env.publish(&[message(old.clone())]).await;
    let history = crate::helpers::eventually(crate::helpers::WAIT, "history entry", || async {
        let history = env.store.history("Eilat", 10).await.unwrap();
        (!history.is_empty()).then_some(history)
    })
    .await;
    assert_eq!(
        (history[0].alert_id, history[0].change),
        (old.id, alert_core::Change::Expired)
    );
    assert!(
        env.events().await.is_empty(),
        "no live event for an alert that already ended"
    );
    processor.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn duplicate_uuid_or_idempotency_key_changes_nothing() {
    let env = Env::new("duplicates").await;
    let processor = Running::start(env.config()).await;
    let now = Utc::now();
    let mut keyed = alert_at("Haifa", "Rocket Alert", now, TimeDelta::minutes(5));
    keyed.idempotency_key = Some("src:6:sirens:1".into());
    let mut same_key = alert_at("Haifa", "Earthquake", now, TimeDelta::minutes(9));
    same_key.idempotency_key = keyed.idempotency_key.clone();
    let marker = alert_at("Acre", "Rocket Alert", now, TimeDelta::minutes(5));
    let messages = [
        message(keyed.clone()),
        message(keyed.clone()),
        message(same_key),
        message(marker),
    ];
    env.publish(&messages).await;

    crate::helpers::eventually(
        crate::helpers::WAIT,
        "all four messages handled",
        || async {
            let (_, metrics) = processor.get("/metrics").await;
            (metrics.contains(r#"alerts_processor_messages_total{outcome="duplicate"} 2"#)
                && metrics.contains(r#"alerts_processor_messages_total{outcome="applied"} 2"#))
            .then_some(())
        },
    )
    .await;
    let events = env.events().await;
    assert_eq!(kinds(&events), [EventType::Open, EventType::Open]);
    assert_eq!(events[0].alert_count, 1);
    assert_eq!(events[0].types, ["Rocket Alert"]);
    let haifa = env.store.active(Some(&["Haifa".to_owned()])).await.unwrap();
    assert_eq!((haifa[0].alert_count, haifa[0].end), (1, keyed.end));
    processor.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn cap_cancel_closes_the_referenced_window_at_once() {
    let env = Env::new("cancel").await;
    let processor = Running::start(env.config()).await;
    let mut alert = alert_at("Sderot", "Rocket Alert", Utc::now(), TimeDelta::hours(1));
    alert.reference = Some("cap:5:siren:A-1".into());
    env.publish(&[message(alert.clone())]).await;
    env.wait_events(1).await;
    let cancel = Cancel {
        id: Uuid::now_v7(),
        references: vec!["cap:5:siren:A-1".into()],
        locations: vec![],
        idempotency_key: Some("cap:5:siren:A-2".into()),
        received_at: Utc::now(),
    };
    env.publish(&[QueueMessage::Cancel(cancel.clone())]).await;
    let events = env.wait_events(2).await;
    assert_eq!(kinds(&events), [EventType::Open, EventType::Close]);
    assert_eq!(events[1].reason, Some(CloseReason::Cancelled));
    assert_eq!(events[1].alert_id, Some(cancel.id));
    assert!(
        events[1].created_at < alert.end,
        "closed long before its end"
    );
    processor.stop().await;
    env.cleanup().await;
}
