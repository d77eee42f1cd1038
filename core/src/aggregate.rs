//! The aggregation rules (ARCHITECTURE.md, "Aggregation semantics") as pure functions,
//! and `Aggregator`, the in-memory state machine built from them.
//!
//! The processor's Redis script implements the same rules for atomicity; a test feeds
//! both the same sequences. Keep the two in step: change a rule here, change it there.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::model::{Alert, Cancel, CloseReason, EventDraft, EventType, QueueMessage, Window};

/// The result of applying one alert to one location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The location's window afterwards (`None`: no open window).
    pub window: Option<Window>,
    /// What to announce, in order: possibly the close of an ended window, then an
    /// open or update.
    pub events: Vec<EventDraft>,
    pub change: Change,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// A new window: `open` emitted.
    Opened,
    /// The window grew (end later, start earlier) or gained a type: `update` emitted.
    Updated,
    /// Fully inside the window with a known type: counted, nothing emitted.
    Merged,
    /// The alert had ended before it was processed: kept in history only.
    Expired,
}

/// Applies `alert` to `location`, whose current window is `current`, at time `now`.
pub fn apply_alert(
    current: Option<Window>,
    alert: &Alert,
    location: &str,
    now: DateTime<Utc>,
) -> Outcome {
    let mut events = Vec::new();
    // A window that has ended but whose close the closer has not emitted yet is closed
    // here, so the new alert opens a fresh window rather than reviving an ended one.
    let current = match current
        .as_ref()
        .and_then(|window| close_if_due(window, now))
    {
        Some(closed) => {
            events.push(closed);
            None
        }
        None => current,
    };
    if alert.end <= now {
        return Outcome {
            window: current,
            events,
            change: Change::Expired,
        };
    }
    let Some(mut window) = current else {
        let window = Window {
            id: alert.id,
            location: location.to_owned(),
            start: alert.start,
            end: alert.end,
            types: [alert.alert_type.clone()].into(),
            alert_count: 1,
            severity: alert.severity.clone(),
            title: alert.title.clone(),
            instructions: alert.instructions.clone(),
        };
        events.push(EventDraft {
            event_type: EventType::Open,
            reason: None,
            window: window.clone(),
            alert_id: Some(alert.id),
        });
        return Outcome {
            window: Some(window),
            events,
            change: Change::Opened,
        };
    };
    let grows = alert.end > window.end
        || alert.start < window.start
        || !window.types.contains(&alert.alert_type);
    window.start = window.start.min(alert.start);
    window.end = window.end.max(alert.end);
    window.types.insert(alert.alert_type.clone());
    window.alert_count += 1;
    if !grows {
        return Outcome {
            window: Some(window),
            events,
            change: Change::Merged,
        };
    }
    // Only an announced change replaces the texts, so clients always hold the latest.
    for (field, value) in [
        (&mut window.severity, &alert.severity),
        (&mut window.title, &alert.title),
        (&mut window.instructions, &alert.instructions),
    ] {
        if value.is_some() {
            field.clone_from(value);
        }
    }
    events.push(EventDraft {
        event_type: EventType::Update,
        reason: None,
        window: window.clone(),
        alert_id: Some(alert.id),
    });
    Outcome {
        window: Some(window),
        events,
        change: Change::Updated,
    }
}

/// The close event of `window` if it has ended at `now`.
pub fn close_if_due(window: &Window, now: DateTime<Utc>) -> Option<EventDraft> {
    (window.end <= now).then(|| close(window.clone(), CloseReason::Expired, None))
}

/// The close event of `window` for `reason`.
pub fn close(window: Window, reason: CloseReason, alert_id: Option<Uuid>) -> EventDraft {
    EventDraft {
        event_type: EventType::Close,
        reason: Some(reason),
        window,
        alert_id,
    }
}

/// A window an alert joined: (location, window id).
type Joined = (String, Uuid);

/// The result of ingesting one queue message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Same UUID or idempotency key seen within the dedupe TTL: nothing changed.
    Duplicate,
    /// Applied; per location, what happened, and the events in emission order.
    Applied {
        changes: Vec<Change>,
        events: Vec<EventDraft>,
    },
}

/// In-memory aggregation state for every location: windows, dedupe keys and the
/// locations each referenceable alert contributed to. Used by the standalone mode and
/// as the reference model the Redis script is checked against. It serialises, so the
/// standalone mode can snapshot it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Aggregator {
    windows: BTreeMap<String, Window>,
    /// Dedupe key -> when it expires.
    #[serde(with = "pairs")]
    seen: HashMap<DedupeKey, DateTime<Utc>>,
    /// `Alert::reference` -> the windows it joined, and when that is forgotten.
    references: HashMap<String, (Vec<Joined>, DateTime<Utc>)>,
    #[serde(with = "milliseconds")]
    dedupe_ttl: TimeDelta,
    /// When expired dedupe keys were last dropped: at most once a second, since it
    /// scans them all (expired keys count as absent anyway).
    #[serde(skip)]
    pruned_at: Option<DateTime<Utc>>,
}

mod milliseconds {
    use chrono::TimeDelta;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(ttl: &TimeDelta, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(ttl.num_milliseconds())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TimeDelta, D::Error> {
        i64::deserialize(d).map(TimeDelta::milliseconds)
    }
}

impl Aggregator {
    pub fn new(dedupe_ttl: TimeDelta) -> Self {
        Aggregator {
            windows: BTreeMap::new(),
            seen: HashMap::new(),
            references: HashMap::new(),
            dedupe_ttl,
            pruned_at: None,
        }
    }

    /// Remembers dedupe keys and references for `ttl` from now on (a restored
    /// aggregator takes the configured value, not the one it was saved with).
    pub fn set_dedupe_ttl(&mut self, ttl: TimeDelta) {
        self.dedupe_ttl = ttl;
    }

    pub fn ingest(&mut self, message: &QueueMessage, now: DateTime<Utc>) -> Ingested {
        if !self.remember(message, now) {
            return Ingested::Duplicate;
        }
        match message {
            QueueMessage::Alert(alert) => self.apply(alert, now),
            QueueMessage::Cancel(cancel) => self.cancel(cancel, now),
        }
    }

    /// Closes every window that has ended at `now`, in order of end time.
    pub fn close_due(&mut self, now: DateTime<Utc>) -> Vec<EventDraft> {
        let mut closes: Vec<EventDraft> = self
            .windows
            .values()
            .filter_map(|window| close_if_due(window, now))
            .collect();
        for closed in &closes {
            self.windows.remove(&closed.window.location);
        }
        closes.sort_by(|a, b| {
            (a.window.end, &a.window.location).cmp(&(b.window.end, &b.window.location))
        });
        if self
            .pruned_at
            .is_none_or(|at| now - at >= TimeDelta::seconds(1))
        {
            self.seen.retain(|_, expires| *expires > now);
            self.references.retain(|_, (_, expires)| *expires > now);
            self.pruned_at = Some(now);
        }
        closes
    }

    pub fn window(&self, location: &str) -> Option<&Window> {
        self.windows.get(location)
    }

    pub fn windows(&self) -> impl Iterator<Item = &Window> {
        self.windows.values()
    }

    /// Records the message's dedupe keys in order, stopping at the first one already
    /// live (then it is a duplicate: false).
    fn remember(&mut self, message: &QueueMessage, now: DateTime<Utc>) -> bool {
        let expires = now + self.dedupe_ttl;
        for key in dedupe_keys(message) {
            if self
                .seen
                .get(&key)
                .is_some_and(|live_until| *live_until > now)
            {
                return false;
            }
            self.seen.insert(key, expires);
        }
        true
    }

    fn apply(&mut self, alert: &Alert, now: DateTime<Utc>) -> Ingested {
        let mut changes = Vec::with_capacity(alert.locations.len());
        let mut events = Vec::new();
        let mut joined = Vec::new();
        for location in &alert.locations {
            let current = self.windows.remove(location);
            let outcome = apply_alert(current, alert, location, now);
            changes.push(outcome.change);
            events.extend(outcome.events);
            if let Some(window) = outcome.window {
                if outcome.change != Change::Expired {
                    joined.push((location.clone(), window.id));
                }
                self.windows.insert(location.clone(), window);
            }
        }
        if let Some(reference) = &alert.reference {
            let entry = self.references.entry(reference.clone()).or_default();
            if entry.1 <= now {
                entry.0.clear(); // expired but not pruned yet: as if gone, like in Redis
            }
            entry.0.extend(joined);
            entry.1 = now + self.dedupe_ttl;
        }
        Ingested::Applied { changes, events }
    }

    fn cancel(&mut self, cancel: &Cancel, now: DateTime<Utc>) -> Ingested {
        let mut targets: Vec<(String, Option<Uuid>)> = cancel
            .references
            .iter()
            .filter_map(|reference| self.references.get(reference))
            .filter(|(_, expires)| *expires > now)
            .flat_map(|(joined, _)| joined.iter().map(|(l, id)| (l.clone(), Some(*id))))
            .collect();
        if targets.is_empty() {
            targets = cancel.locations.iter().map(|l| (l.clone(), None)).collect();
        }
        let mut events = Vec::new();
        for (location, window_id) in targets {
            // Only the window the cancelled alert joined: a later window stays open.
            let matches = self
                .windows
                .get(&location)
                .is_some_and(|window| window_id.is_none_or(|id| window.id == id));
            if let Some(window) = matches.then(|| self.windows.remove(&location)).flatten() {
                let reason = if window.end <= now {
                    CloseReason::Expired
                } else {
                    CloseReason::Cancelled
                };
                events.push(close(window, reason, Some(cancel.id)));
            }
        }
        Ingested::Applied {
            changes: Vec::new(),
            events,
        }
    }
}

/// A key under which a message is remembered for dedupe. Typed rather than a string
/// such as `"id:<uuid>"`: one is kept per alert for the whole TTL, so its size matters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DedupeKey {
    Id(Uuid),
    Key(String),
}

/// The keys under which a message is remembered for dedupe: its UUID and, if it has
/// one, its idempotency key.
pub fn dedupe_keys(message: &QueueMessage) -> Vec<DedupeKey> {
    let mut keys = vec![DedupeKey::Id(message.id())];
    if let Some(key) = message.idempotency_key() {
        keys.push(DedupeKey::Key(key.to_owned()));
    }
    keys
}

/// Serialises a map as a list of pairs (JSON object keys must be strings).
mod pairs {
    use std::{collections::HashMap, hash::Hash};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &HashMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub(super) fn deserialize<'de, K, V, D>(d: D) -> Result<HashMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap()
    }

    fn alert(n: u128, location: &str, kind: &str, start: i64, end: i64) -> Alert {
        Alert {
            id: Uuid::from_u128(n),
            received_at: at(start),
            ..Alert::new(location, kind, at(start), at(end))
        }
    }

    fn kinds(events: &[EventDraft]) -> Vec<EventType> {
        events.iter().map(|e| e.event_type).collect()
    }

    /// The standalone mode's snapshot: windows, dedupe keys and references survive.
    #[test]
    fn a_serialised_aggregator_keeps_its_windows_and_dedupe() {
        let mut aggregator = Aggregator::new(TimeDelta::hours(24));
        let mut keyed = alert(2, "B", "Rocket", 0, 10);
        keyed.idempotency_key = Some("src:7".into());
        for message in [alert(1, "A", "Rocket", 0, 10), keyed.clone()] {
            aggregator.ingest(&QueueMessage::Alert(message), at(0));
        }
        let json = serde_json::to_string(&aggregator).unwrap();
        let mut restored: Aggregator = serde_json::from_str(&json).unwrap();
        assert_eq!(
            restored.windows().collect::<Vec<_>>(),
            aggregator.windows().collect::<Vec<_>>()
        );
        let again = QueueMessage::Alert(alert(1, "A", "Rocket", 0, 10));
        assert_eq!(restored.ingest(&again, at(1)), Ingested::Duplicate);
        keyed.id = Uuid::from_u128(3); // a retry: new UUID, same key
        assert_eq!(
            restored.ingest(&QueueMessage::Alert(keyed), at(1)),
            Ingested::Duplicate
        );
    }

    #[test]
    fn first_alert_opens_at_once() {
        let out = apply_alert(None, &alert(1, "A", "Rocket", 0, 10), "A", at(0));
        assert_eq!(out.change, Change::Opened);
        assert_eq!(kinds(&out.events), [EventType::Open]);
        let window = out.window.unwrap();
        assert_eq!(
            (window.start, window.end, window.alert_count),
            (at(0), at(10), 1)
        );
        assert_eq!(window.id, Uuid::from_u128(1));
    }

    #[test]
    fn later_end_or_new_type_updates_and_inside_merges() {
        let open = apply_alert(None, &alert(1, "A", "Rocket", 0, 10), "A", at(0)).window;
        let later = apply_alert(open.clone(), &alert(2, "A", "Rocket", 1, 12), "A", at(1));
        assert_eq!(later.change, Change::Updated);
        assert_eq!(later.window.as_ref().unwrap().end, at(12));
        let new_type = apply_alert(open.clone(), &alert(3, "A", "Quake", 1, 5), "A", at(1));
        assert_eq!(new_type.change, Change::Updated);
        assert_eq!(
            new_type.window.as_ref().unwrap().display_type(),
            "Mixed Threats"
        );
        let inside = apply_alert(open, &alert(4, "A", "Rocket", 2, 8), "A", at(2));
        assert_eq!(inside.change, Change::Merged);
        assert!(inside.events.is_empty());
        let window = inside.window.unwrap();
        assert_eq!(
            (window.start, window.end, window.alert_count),
            (at(0), at(10), 2)
        );
    }

    #[test]
    fn window_never_shrinks() {
        let open = apply_alert(None, &alert(1, "A", "Rocket", 0, 10), "A", at(0)).window;
        let shorter = apply_alert(open, &alert(2, "A", "Rocket", 0, 3), "A", at(1));
        assert_eq!(shorter.window.unwrap().end, at(10));
    }

    #[test]
    fn expired_on_arrival_emits_nothing() {
        let out = apply_alert(None, &alert(1, "A", "Rocket", 0, 10), "A", at(11));
        assert_eq!(out.change, Change::Expired);
        assert!(out.events.is_empty() && out.window.is_none());
    }

    #[test]
    fn alert_after_an_unclosed_ended_window_closes_it_then_opens() {
        let open = apply_alert(None, &alert(1, "A", "Rocket", 0, 10), "A", at(0)).window;
        let out = apply_alert(open, &alert(2, "A", "Rocket", 20, 30), "A", at(20));
        assert_eq!(kinds(&out.events), [EventType::Close, EventType::Open]);
        assert_eq!(out.events[0].reason, Some(CloseReason::Expired));
        assert_eq!(out.window.unwrap().id, Uuid::from_u128(2));
    }

    #[test]
    fn close_is_due_exactly_at_the_end() {
        let window = apply_alert(None, &alert(1, "A", "Rocket", 0, 10), "A", at(0))
            .window
            .unwrap();
        assert!(close_if_due(&window, at(10) - TimeDelta::milliseconds(1)).is_none());
        let closed = close_if_due(&window, at(10)).unwrap();
        assert_eq!(closed.reason, Some(CloseReason::Expired));
        assert_eq!(closed.window.alert_count, 1);
    }

    #[test]
    fn cancel_closes_the_referenced_window_only() {
        let mut agg = Aggregator::new(TimeDelta::hours(24));
        let mut first = alert(1, "A", "Rocket", 0, 10);
        first.reference = Some("cap:s:1".into());
        agg.ingest(&QueueMessage::Alert(first), at(0));
        assert!(agg.close_due(at(10)).len() == 1);
        agg.ingest(
            &QueueMessage::Alert(alert(2, "A", "Rocket", 11, 20)),
            at(11),
        );
        let cancel = |n| Cancel {
            id: Uuid::from_u128(n),
            references: vec!["cap:s:1".into()],
            locations: vec![],
            idempotency_key: None,
            received_at: at(12),
        };
        // The referenced window is gone: the new one stays open.
        assert_eq!(
            agg.ingest(&QueueMessage::Cancel(cancel(3)), at(12)),
            Ingested::Applied {
                changes: vec![],
                events: vec![]
            }
        );
        assert!(agg.window("A").is_some());

        let mut other = alert(4, "B", "Rocket", 12, 20);
        other.reference = Some("cap:s:1".into());
        agg.ingest(&QueueMessage::Alert(other), at(12));
        let Ingested::Applied { events, .. } = agg.ingest(&QueueMessage::Cancel(cancel(5)), at(13))
        else {
            panic!("cancel was taken for a duplicate");
        };
        assert_eq!(kinds(&events), [EventType::Close]);
        assert_eq!(events[0].reason, Some(CloseReason::Cancelled));
        assert_eq!(events[0].window.location, "B");
        assert!(agg.window("B").is_none());
    }

    #[test]
    fn duplicate_uuid_or_key_is_ignored_until_the_ttl_passes() {
        let mut agg = Aggregator::new(TimeDelta::minutes(60));
        let mut first = alert(1, "A", "Rocket", 0, 10);
        first.idempotency_key = Some("src:1".into());
        assert!(matches!(
            agg.ingest(&QueueMessage::Alert(first.clone()), at(0)),
            Ingested::Applied { .. }
        ));
        assert_eq!(
            agg.ingest(&QueueMessage::Alert(first.clone()), at(1)),
            Ingested::Duplicate
        );
        let mut same_key = alert(2, "A", "Quake", 0, 30);
        same_key.idempotency_key = Some("src:1".into());
        assert_eq!(
            agg.ingest(&QueueMessage::Alert(same_key.clone()), at(1)),
            Ingested::Duplicate
        );
        assert_eq!(agg.window("A").unwrap().alert_count, 1);
        agg.close_due(at(61));
        assert!(matches!(
            agg.ingest(&QueueMessage::Alert(same_key), at(61)),
            Ingested::Applied { .. }
        ));
    }

    /// Alerts over a few locations and types, starting within the first hour.
    fn alerts(max: usize) -> impl Strategy<Value = Vec<Alert>> {
        let one = (0..3usize, 0..3usize, 0..60i64, 1..30i64);
        prop::collection::vec(one, 1..max).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(n, (l, t, start, len))| {
                    let location = ["A", "B", "C"][l];
                    let kind = ["Rocket", "Quake", "Flood"][t];
                    alert(n as u128 + 1, location, kind, start, start + len)
                })
                .collect()
        })
    }

    /// The windows without their ids (which alert opened a window depends on order).
    fn summary(agg: &Aggregator) -> Vec<Window> {
        agg.windows()
            .map(|w| Window {
                id: Uuid::nil(),
                ..w.clone()
            })
            .collect()
    }

    proptest! {
        #[test]
        fn final_window_does_not_depend_on_order(
            (alerts, shuffled) in alerts(40).prop_flat_map(|a| (Just(a.clone()), Just(a).prop_shuffle()))
        ) {
            // All processed while open (now before every end), in two different orders.
            let now = at(0);
            let mut a = Aggregator::new(TimeDelta::hours(24));
            let mut b = Aggregator::new(TimeDelta::hours(24));
            for alert in &alerts { a.ingest(&QueueMessage::Alert(alert.clone()), now); }
            for alert in &shuffled { b.ingest(&QueueMessage::Alert(alert.clone()), now); }
            prop_assert_eq!(summary(&a), summary(&b));
            for window in a.windows() {
                let mine: Vec<&Alert> = alerts.iter().filter(|x| x.locations[0] == window.location).collect();
                prop_assert_eq!(window.start, mine.iter().map(|x| x.start).min().unwrap());
                prop_assert_eq!(window.end, mine.iter().map(|x| x.end).max().unwrap());
                prop_assert_eq!(window.alert_count, mine.len() as u64);
            }
        }

        #[test]
        fn every_window_has_exactly_one_open_and_one_close(
            (alerts, dups) in alerts(60).prop_flat_map(|a| { let n = a.len(); (Just(a), prop::collection::vec(0..n, 0..20)) })
        ) {
            // Processed as time passes (each at its start), with closes in between and
            // duplicates re-delivered: per window, open first, close last, once each.
            let mut sorted = alerts.clone();
            sorted.sort_by_key(|a| a.start);
            let mut agg = Aggregator::new(TimeDelta::hours(24));
            let mut events = Vec::new();
            for (i, alert) in sorted.iter().enumerate() {
                events.extend(agg.close_due(alert.start));
                if let Ingested::Applied { events: e, .. } = agg.ingest(&QueueMessage::Alert(alert.clone()), alert.start) {
                    events.extend(e);
                }
                for &d in dups.iter().filter(|&&d| d <= i) {
                    prop_assert_eq!(agg.ingest(&QueueMessage::Alert(sorted[d].clone()), alert.start), Ingested::Duplicate);
                }
            }
            events.extend(agg.close_due(at(1000)));
            prop_assert_eq!(agg.windows().count(), 0);
            let mut per_window: HashMap<Uuid, Vec<EventType>> = HashMap::new();
            for event in &events {
                per_window.entry(event.window.id).or_default().push(event.event_type);
            }
            let merged_away: u64 = events.iter().filter(|e| e.event_type == EventType::Close).map(|e| e.window.alert_count).sum();
            prop_assert_eq!(merged_away, alerts.len() as u64, "every alert counted in exactly one closed window");
            for kinds in per_window.values() {
                prop_assert_eq!(kinds.first(), Some(&EventType::Open));
                prop_assert_eq!(kinds.last(), Some(&EventType::Close));
                prop_assert_eq!(kinds.iter().filter(|k| **k == EventType::Open).count(), 1);
                prop_assert_eq!(kinds.iter().filter(|k| **k == EventType::Close).count(), 1);
            }
        }

        #[test]
        fn duplicates_change_nothing(alerts in alerts(30), repeat in prop::collection::vec(any::<prop::sample::Index>(), 1..10)) {
            let now = at(0);
            let mut once = Aggregator::new(TimeDelta::hours(24));
            let mut twice = Aggregator::new(TimeDelta::hours(24));
            let mut events_once = Vec::new();
            let mut events_twice = Vec::new();
            for alert in &alerts {
                if let Ingested::Applied { events, .. } = once.ingest(&QueueMessage::Alert(alert.clone()), now) { events_once.extend(events); }
                if let Ingested::Applied { events, .. } = twice.ingest(&QueueMessage::Alert(alert.clone()), now) { events_twice.extend(events); }
                for index in &repeat {
                    let again = index.get(&alerts);
                    if again.id <= alert.id {
                        prop_assert_eq!(twice.ingest(&QueueMessage::Alert(again.clone()), now), Ingested::Duplicate);
                    }
                }
            }
            prop_assert_eq!(events_once, events_twice);
            prop_assert_eq!(summary(&once), summary(&twice));
        }
    }
}
