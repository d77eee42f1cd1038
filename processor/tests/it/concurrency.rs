use std::collections::{BTreeMap, HashSet};

use alert_core::{Aggregator, EventType, QueueMessage};
use chrono::{TimeDelta, Utc};
use proptest::{
    strategy::{Strategy, ValueTree},
    test_runner::TestRunner,
};

use crate::helpers::{Env, Running, alert_at, eventually, message};

/// 4 processors consume 2,000 alerts over 20 locations, published shuffled: every
/// window opens once and closes once, no event is emitted twice, offsets only grow,
/// and each closing aggregate is what the core rules compute for the same alerts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processors_agree_on_every_window() {
    let env = Env::new("concurrency").await;
    let now = Utc::now();
    let kinds = ["Rocket Alert", "Earthquake", "Flood"];
    let mut alerts: Vec<_> = (0..2000)
        .map(|i| {
            let start = now + TimeDelta::milliseconds((i * 7 % 1000) as i64);
            // Every alert ends 6-8 s from now, long after all are processed, so each
            // location has exactly one window.
            let duration = TimeDelta::milliseconds(6000 + (i * 13 % 2000) as i64) - (start - now);
            alert_at(&format!("City {}", i % 20), kinds[i % 3], start, duration)
        })
        .collect();
    let mut runner = TestRunner::deterministic();
    alerts = proptest::strategy::Just(alerts)
        .prop_shuffle()
        .new_tree(&mut runner)
        .unwrap()
        .current();

    let mut expected = Aggregator::new(TimeDelta::hours(24));
    for alert in &alerts {
        expected.ingest(&QueueMessage::Alert(alert.clone()), now);
    }

    let processors = futures::future::join_all((0..4).map(|_| Running::start(env.config()))).await;
    for processor in &processors {
        processor.wait_ready().await;
    }
    let messages: Vec<_> = alerts.iter().cloned().map(message).collect();
    env.publish(&messages).await;

    let events = eventually(std::time::Duration::from_secs(60), "20 closes", || async {
        let events = env.events().await;
        (events
            .iter()
            .filter(|e| e.event_type == EventType::Close)
            .count()
            >= 20)
            .then_some(events)
    })
    .await;
    for processor in processors {
        processor.stop().await;
    }

    let ids: HashSet<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), events.len(), "no event twice");
    assert!(
        events.windows(2).all(|w| w[0].offset < w[1].offset),
        "offsets grow"
    );
    let mut per_location: BTreeMap<&str, Vec<EventType>> = BTreeMap::new();
    for event in &events {
        per_location
            .entry(&event.location)
            .or_default()
            .push(event.event_type);
    }
    assert_eq!(per_location.len(), 20);
    for (location, kinds) in &per_location {
        assert_eq!(kinds.first(), Some(&EventType::Open), "{location}");
        assert_eq!(
            kinds.iter().filter(|k| **k == EventType::Open).count(),
            1,
            "{location}: {kinds:?}"
        );
        assert_eq!(
            kinds.iter().filter(|k| **k == EventType::Close).count(),
            1,
            "{location}: {kinds:?}"
        );
        assert_eq!(kinds.last(), Some(&EventType::Close), "{location}");
    }
    for close in events.iter().filter(|e| e.event_type == EventType::Close) {
        let window = expected.window(&close.location).unwrap();
        assert_eq!(
            (close.start_time, close.end_time, close.alert_count),
            (window.start, window.end, window.alert_count),
            "{}",
            close.location
        );
        assert_eq!(
            close.types,
            window.types.iter().cloned().collect::<Vec<_>>()
        );
    }
    env.cleanup().await;
}
