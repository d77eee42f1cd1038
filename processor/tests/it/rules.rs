//! One set of rules: the Redis script and alert-core's pure functions, fed the same
//! random sequences, must produce the same windows and the same events.

use std::sync::OnceLock;

use alert_core::{Aggregator, Cancel, EventDraft, Ingested, QueueMessage, Window};
use alert_redis::{Keys, Store, StoreSettings};
use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use crate::helpers::{REDIS_URL, alert_at, unique};

#[derive(Debug, Clone)]
enum Step {
    /// location, type, start offset (s from now), duration (s), has a reference.
    Alert(usize, usize, i64, i64, bool),
    /// Re-deliver the n-th message sent so far.
    Duplicate(prop::sample::Index),
    /// Cancel the n-th referenced alert so far.
    Cancel(prop::sample::Index),
    /// Let time pass (s) and run the closer.
    Tick(i64),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        6 => (0..3usize, 0..3usize, -5..5i64, 1..20i64, any::<bool>()).prop_map(|(l, t, s, d, r)| Step::Alert(l, t, s, d, r)),
        1 => any::<prop::sample::Index>().prop_map(Step::Duplicate),
        1 => any::<prop::sample::Index>().prop_map(Step::Cancel),
        2 => (1..15i64).prop_map(Step::Tick),
    ];
    prop::collection::vec(step, 1..40)
}

/// What both sides must agree on (event ids and offsets belong to the log).
fn comparable(mut drafts: Vec<EventDraft>) -> Vec<EventDraft> {
    // A cancel closes its windows in set order in Redis: compare as a set.
    drafts.sort_by(|a, b| {
        (a.event_type as u8, &a.window.location).cmp(&(b.event_type as u8, &b.window.location))
    });
    drafts
}

struct Shared {
    runtime: tokio::runtime::Runtime,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| Shared {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    })
}

async fn new_drafts(store: &Store, seen: &mut usize) -> Vec<EventDraft> {
    let events = store
        .events_after(alert_core::Offset::START, 100_000)
        .await
        .unwrap();
    let fresh: Vec<_> = events[*seen..]
        .iter()
        .map(|e| EventDraft {
            event_type: e.event_type,
            reason: e.reason,
            window: Window {
                id: e.window_id,
                location: e.location.clone(),
                start: e.start_time,
                end: e.end_time,
                types: e.types.iter().cloned().collect(),
                alert_count: e.alert_count,
                severity: e.severity.clone(),
                title: e.title.clone(),
                instructions: e.instructions.clone(),
            },
            alert_id: e.alert_id,
        })
        .collect();
    *seen = events.len();
    fresh
}

async fn check(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let store = Store::connect(
        REDIS_URL,
        Keys::new(format!("{}:", unique("rules"))),
        StoreSettings::default(),
    )
    .await
    .unwrap();
    let mut model = Aggregator::new(TimeDelta::hours(24));
    let t0: DateTime<Utc> = alert_core::input::whole_millis(Utc::now());
    let mut now = t0;
    let mut sent: Vec<QueueMessage> = Vec::new();
    let mut referenced: Vec<String> = Vec::new();
    let mut seen = 0;
    let locations = ["A", "B", "C"];
    let kinds = ["Rocket", "Quake", "Flood"];
    for step in steps {
        let (expected, message) = match step {
            Step::Tick(seconds) => {
                now += TimeDelta::seconds(seconds);
                let expected = model.close_due(now);
                store.close_due(Some(now), 1000).await.unwrap();
                (expected, None)
            }
            Step::Alert(l, t, start, duration, with_reference) => {
                let mut alert = alert_at(
                    locations[l],
                    kinds[t],
                    now + TimeDelta::seconds(start),
                    TimeDelta::seconds(duration),
                );
                if with_reference {
                    alert.reference = Some(format!("ref:{}", alert.id));
                    referenced.push(alert.reference.clone().unwrap());
                }
                (Vec::new(), Some(QueueMessage::Alert(alert)))
            }
            Step::Duplicate(index) if !sent.is_empty() => {
                (Vec::new(), Some(index.get(&sent).clone()))
            }
            Step::Cancel(index) if !referenced.is_empty() => {
                let cancel = Cancel {
                    id: Uuid::now_v7(),
                    references: vec![index.get(&referenced).clone()],
                    locations: vec![],
                    idempotency_key: None,
                    received_at: now,
                };
                (Vec::new(), Some(QueueMessage::Cancel(cancel)))
            }
            Step::Duplicate(_) | Step::Cancel(_) => continue,
        };
        let expected = match message {
            Some(message) => {
                let applied = store.apply(&message, Some(now)).await.unwrap();
                let events = match model.ingest(&message, now) {
                    Ingested::Duplicate => {
                        prop_assert!(
                            applied.duplicate,
                            "the model saw a duplicate, Redis did not"
                        );
                        Vec::new()
                    }
                    Ingested::Applied { events, .. } => events,
                };
                sent.push(message);
                events
            }
            None => expected,
        };
        let actual = new_drafts(&store, &mut seen).await;
        prop_assert_eq!(comparable(actual), comparable(expected));
    }
    let mut in_redis = store.active(None).await.unwrap();
    in_redis.sort_by(|a, b| a.location.cmp(&b.location));
    let in_model: Vec<Window> = model.windows().cloned().collect();
    prop_assert_eq!(in_redis, in_model);
    store.delete_all().await.unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn redis_script_follows_the_core_rules(steps in steps()) {
        shared().runtime.block_on(check(steps))?;
    }
}
