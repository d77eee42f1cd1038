//! The verdict, Jepsen style: what the sources were promised and what the clients got,
//! compared with the event log and the history at the end of a run.
//!
//! - Every accepted alert is in the history of each of its locations exactly once
//!   (`lost`, `duplicated`).
//! - Every window has one `open`, then updates, then one `close`, in log order, and an
//!   expiry close is not earlier than the window's end; a location has one window at a
//!   time.
//! - Every client got every event of its locations after it first joined, once and in
//!   order, unless a resume told it `recovered: false` for the gap (then the snapshot is
//!   the truth: `reported`). An event it got that the log no longer holds (`unlogged`)
//!   was forgotten by the state; it is honest only if the client was told afterwards.

use std::collections::{BTreeMap, HashMap, HashSet};

use alert_core::{CloseReason, Event, EventType, Offset};
use serde::Serialize;
use uuid::Uuid;

use crate::record::{Applied, ClientKind, ClientRecord, Posts, Recording, receives};

/// The failure line of accepted alerts the state does not hold.
pub const LOST: &str = "accepted alert-locations lost";

/// How many examples each figure keeps, for the report.
const EXAMPLES: usize = 5;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub passed: bool,
    /// One line per broken promise; empty when the run passed.
    pub failures: Vec<String>,
    pub posts: Posts,
    pub alerts: Alerts,
    pub windows: Windows,
    pub clients: Clients,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Alerts {
    pub accepted: u64,
    /// (alert, location) pairs the history must hold.
    pub expected: u64,
    pub applied_once: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Applied after their end: in history only, by the rules no client saw them.
    pub applied_expired: u64,
    pub cancels_accepted: u64,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Windows {
    pub windows: u64,
    pub events: u64,
    pub cancelled: u64,
    /// Windows whose events are not one open, updates, one close.
    pub malformed: u64,
    /// Expiry closes earlier than the window's end.
    pub closed_early: u64,
    /// Two windows of one location open at once.
    pub overlapping: u64,
    /// Windows still open at the end of the run.
    pub never_closed: u64,
    /// How long after its end an expiry close was written.
    pub close_late_ms_p99: i64,
    pub close_late_ms_max: i64,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Clients {
    pub clients: u64,
    pub sessions: u64,
    pub resumed_recovered: u64,
    pub resumed_unrecovered: u64,
    pub failed_connects: u64,
    /// Events the clients should have got (their locations, after they joined).
    pub expected: u64,
    pub delivered: u64,
    /// In a gap a resume reported with `recovered: false`: the snapshot replaced them.
    pub reported: u64,
    /// Neither delivered nor reported, with later events delivered: silent loss.
    pub missing: u64,
    /// Not delivered when the run stopped the client, after everything it did get:
    /// still in flight to a reader too slow to keep up (a failure for any other
    /// client: its deliveries stalled).
    pub in_flight_slow: u64,
    pub in_flight_stalled: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Received, then forgotten by the log; `told`: a later join said so.
    pub unlogged_told: u64,
    pub unlogged_untold: u64,
    pub dead_clients: u64,
    pub dead_clients_closed: u64,
    pub examples: Vec<String>,
}

fn example(examples: &mut Vec<String>, text: impl FnOnce() -> String) {
    if examples.len() < EXAMPLES {
        examples.push(text());
    }
}

pub fn judge(recording: &Recording) -> Verdict {
    let alerts = alerts(recording);
    let windows = windows(recording);
    let clients = clients(recording);
    let posts = recording.posts.clone();
    let mut failures = Vec::new();
    let mut fail = |count: u64, what: &str| {
        if count > 0 {
            failures.push(format!("{count} {what}"));
        }
    };
    fail(
        alerts.lost,
        "accepted alert-locations lost (not in history)",
    );
    fail(alerts.duplicated, "alert-locations applied more than once");
    fail(windows.malformed, "windows not open..close in order");
    fail(windows.closed_early, "windows closed before their end");
    fail(windows.overlapping, "windows open twice at one location");
    fail(windows.never_closed, "windows never closed");
    fail(clients.missing, "events missing at clients, not reported");
    fail(
        clients.in_flight_stalled,
        "events never delivered to clients that keep up",
    );
    fail(clients.duplicated, "events delivered twice to a client");
    fail(clients.out_of_order, "events delivered out of order");
    fail(
        clients.unlogged_untold,
        "events delivered then forgotten by the log, client not told",
    );
    fail(posts.refused_4xx, "POSTs refused with 4xx");
    fail(posts.gave_up, "POSTs never accepted (the source gave up)");
    Verdict {
        passed: failures.is_empty(),
        failures,
        posts,
        alerts,
        windows,
        clients,
    }
}

fn alerts(recording: &Recording) -> Alerts {
    let mut figures = Alerts {
        accepted: recording.accepted.len() as u64,
        cancels_accepted: recording.cancels.len() as u64,
        ..Alerts::default()
    };
    let applied = applications(&recording.history);
    figures.applied_expired = recording
        .history
        .values()
        .flatten()
        .filter(|entry| entry.change == "expired")
        .count() as u64;
    for alert in &recording.accepted {
        for location in &alert.locations {
            figures.expected += 1;
            match applied
                .get(&(location.as_str(), alert.id))
                .copied()
                .unwrap_or(0)
            {
                0 => {
                    figures.lost += 1;
                    example(&mut figures.examples, || {
                        format!("lost: alert {} at {location}", alert.id)
                    });
                }
                1 => figures.applied_once += 1,
                n => {
                    figures.duplicated += 1;
                    example(&mut figures.examples, || {
                        format!("applied {n} times: alert {} at {location}", alert.id)
                    });
                }
            }
        }
    }
    figures
}

/// How many times each (location, alert) is in the history.
pub fn applications(history: &BTreeMap<String, Vec<Applied>>) -> HashMap<(&str, Uuid), u64> {
    let mut applied = HashMap::new();
    for (location, entries) in history {
        for entry in entries {
            *applied
                .entry((location.as_str(), entry.alert_id))
                .or_default() += 1;
        }
    }
    applied
}

fn windows(recording: &Recording) -> Windows {
    let mut figures = Windows {
        events: recording.log.len() as u64,
        never_closed: recording.still_open.len() as u64,
        ..Windows::default()
    };
    for location in &recording.still_open {
        example(&mut figures.examples, || {
            format!("never closed: {location}")
        });
    }
    // A window's id is its first alert's: an alert for two locations opens two windows
    // with one id, so a window is a location and an id.
    let mut by_window: BTreeMap<(&str, Uuid), Vec<&Event>> = BTreeMap::new();
    let mut open_at: HashMap<&str, Uuid> = HashMap::new();
    for event in &recording.log {
        by_window
            .entry((event.location.as_str(), event.window_id))
            .or_default()
            .push(event);
        let location = event.location.as_str();
        match event.event_type {
            EventType::Open => {
                if let Some(other) = open_at.insert(location, event.window_id) {
                    figures.overlapping += 1;
                    example(&mut figures.examples, || {
                        format!(
                            "window {} opened at {location} while {other} was open",
                            event.window_id
                        )
                    });
                }
            }
            EventType::Close => {
                open_at.remove(location);
            }
            EventType::Update => {}
        }
    }
    let mut late = Vec::new();
    for ((location, id), events) in &by_window {
        figures.windows += 1;
        let types: Vec<EventType> = events.iter().map(|e| e.event_type).collect();
        let well_formed = types.first() == Some(&EventType::Open)
            && types.last() == Some(&EventType::Close)
            && types.len() >= 2
            && types[1..types.len() - 1]
                .iter()
                .all(|t| *t == EventType::Update);
        if !well_formed {
            figures.malformed += 1;
            example(&mut figures.examples, || {
                format!("window {id} at {location}: {types:?}")
            });
            continue;
        }
        let close = events[events.len() - 1];
        match close.reason {
            Some(CloseReason::Cancelled) => figures.cancelled += 1,
            _ => {
                let lateness = (close.created_at - close.end_time).num_milliseconds();
                if lateness < 0 {
                    figures.closed_early += 1;
                    example(&mut figures.examples, || {
                        format!(
                            "window {id} at {location} closed {} ms before its end",
                            -lateness
                        )
                    });
                }
                late.push(lateness);
            }
        }
    }
    late.sort_unstable();
    figures.close_late_ms_max = late.last().copied().unwrap_or(0);
    figures.close_late_ms_p99 = percentile(&late, 0.99);
    figures
}

/// The `q` quantile of ascending `sorted` (nearest rank); the default when empty.
pub fn percentile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn clients(recording: &Recording) -> Clients {
    let mut figures = Clients {
        clients: recording.clients.len() as u64,
        dead_clients: recording.dead_clients,
        dead_clients_closed: recording.dead_clients_closed,
        ..Clients::default()
    };
    let logged: HashSet<Uuid> = recording.log.iter().map(|e| e.id).collect();
    for client in &recording.clients {
        judge_client(client, recording, &logged, &mut figures);
    }
    figures
}

fn judge_client(
    client: &ClientRecord,
    recording: &Recording,
    logged: &HashSet<Uuid>,
    figures: &mut Clients,
) {
    let Some(first) = client.sessions.first() else {
        return;
    };
    figures.sessions += client.sessions.len() as u64;
    figures.failed_connects += client.failed_connects;

    // Gaps the server reported: a resume answered `recovered: false` covers the events
    // after what the client asked for, up to where it joined.
    let mut reported_gaps: Vec<(Option<Offset>, Option<Offset>)> = Vec::new();
    for session in &client.sessions[1..] {
        match session.joined.recovered {
            Some(true) => figures.resumed_recovered += 1,
            _ => {
                figures.resumed_unrecovered += 1;
                reported_gaps.push((session.joined.since, session.joined.offset));
            }
        }
    }

    // Duplicates, order, and what the log forgot.
    let mut seen: HashMap<Uuid, u64> = HashMap::new();
    let mut last: Option<(String, Offset)> = None;
    for (index, session) in client.sessions.iter().enumerate() {
        for event in &session.received {
            let count = seen.entry(event.id).or_default();
            *count += 1;
            if *count > 1 {
                figures.duplicated += 1;
                example(&mut figures.examples, || {
                    format!("{}: event {} twice", client.name, event.offset)
                });
                continue;
            }
            if let Some((epoch, offset)) = &last
                && *epoch == event.epoch
                && event.offset < *offset
            {
                figures.out_of_order += 1;
                example(&mut figures.examples, || {
                    format!("{}: {} after {offset}", client.name, event.offset)
                });
            }
            last = Some((event.epoch.clone(), event.offset));
            if !logged.contains(&event.id) {
                // Told if a later join did not resume it, or came from another epoch.
                let told = client.sessions[index + 1..].iter().any(|later| {
                    later.joined.recovered != Some(true)
                        || later.joined.epoch.as_deref() != Some(event.epoch.as_str())
                });
                if told {
                    figures.unlogged_told += 1;
                } else {
                    figures.unlogged_untold += 1;
                    example(&mut figures.examples, || {
                        format!(
                            "{}: got {} {} at {}, which the log no longer holds",
                            client.name,
                            event.event_type.as_str(),
                            event.offset,
                            event.location
                        )
                    });
                }
            }
        }
    }

    // Every event of its locations after it first joined. Those after the last one it
    // got, when the run stopped it mid-session, were still on their way.
    let joined_at = first.joined.offset;
    let last_session = &client.sessions[client.sessions.len() - 1];
    let stopped_after = (last_session.ended == "stopped").then(|| {
        client
            .sessions
            .iter()
            .flat_map(|s| s.received.iter().map(|e| e.offset))
            .chain(last_session.joined.offset)
            .max()
    });
    for event in &recording.log {
        if !receives(client.locations.as_ref(), &event.location) || Some(event.offset) <= joined_at
        {
            continue;
        }
        figures.expected += 1;
        if seen.contains_key(&event.id) {
            figures.delivered += 1;
        } else if reported_gaps
            .iter()
            .any(|(since, upto)| *since < Some(event.offset) && Some(event.offset) <= *upto)
        {
            figures.reported += 1;
        } else if stopped_after.is_some_and(|last| Some(event.offset) > last) {
            match client.kind {
                ClientKind::Slow => figures.in_flight_slow += 1,
                _ => {
                    figures.in_flight_stalled += 1;
                    example(&mut figures.examples, || {
                        format!(
                            "{}: never got {} at {}",
                            client.name, event.offset, event.location
                        )
                    });
                }
            }
        } else {
            figures.missing += 1;
            example(&mut figures.examples, || {
                format!(
                    "{}: missing {} {} at {}",
                    client.name,
                    event.event_type.as_str(),
                    event.offset,
                    event.location
                )
            });
        }
    }
}

#[cfg(test)]
mod tests {
    //! The checker checked: recordings of deliberately broken pipelines are caught and
    //! classified; a faithful one passes.

    use std::collections::BTreeSet;

    use alert_core::{Window, model::event_id};
    use chrono::{DateTime, TimeDelta, Utc};

    use super::*;
    use crate::record::{
        Accepted, Applied, ClientKind, ClientRecord, Joined, Received, Recording, Session,
    };

    const EPOCH: &str = "e1";

    fn at(ms: u64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms as i64).unwrap()
    }

    /// A faithful run: `n` locations, each one alert, opened at `i`, closed 1 s after its
    /// end; one client of everything got every event.
    fn faithful(n: u64) -> Recording {
        let mut recording = Recording::default();
        let mut offset = 0;
        let mut event = |kind, location: &str, window: &Window, created: DateTime<Utc>| {
            offset += 1;
            let draft = alert_core::EventDraft {
                event_type: kind,
                reason: (kind == EventType::Close).then_some(CloseReason::Expired),
                window: window.clone(),
                alert_id: None,
            };
            let offset = Offset::new(offset, 0);
            let _ = location;
            Event::new(
                draft,
                event_id(EPOCH, offset),
                offset,
                EPOCH.into(),
                created,
            )
        };
        for i in 0..n {
            let location = format!("loc-{i}");
            let id = Uuid::from_u128(i as u128 + 1);
            let window = Window {
                id: Uuid::from_u128(1000 + i as u128),
                location: location.clone(),
                start: at(i * 10),
                end: at(i * 10 + 500),
                types: BTreeSet::from(["Rocket Alert".to_owned()]),
                alert_count: 1,
                severity: None,
                title: None,
                instructions: None,
            };
            recording
                .log
                .push(event(EventType::Open, &location, &window, at(i * 10)));
            recording.accepted.push(Accepted {
                id,
                locations: vec![location.clone()],
                end: window.end,
            });
            recording.history.insert(
                location.clone(),
                vec![Applied {
                    alert_id: id,
                    change: "opened".into(),
                }],
            );
            let close = event(
                EventType::Close,
                &location,
                &window,
                window.end + TimeDelta::milliseconds(1000),
            );
            recording.log.push(close);
        }
        recording.log.sort_by_key(|e| e.offset);
        let received = recording.log.iter().map(Received::from).collect();
        recording.clients.push(ClientRecord {
            name: "all".into(),
            kind: ClientKind::SocketIo,
            locations: None,
            sessions: vec![session(None, None, None, received)],
            failed_connects: 0,
        });
        recording
    }

    fn session(
        since: Option<Offset>,
        offset: Option<Offset>,
        recovered: Option<bool>,
        received: Vec<Received>,
    ) -> Session {
        Session {
            notify: 0,
            at_ms: 0,
            joined: Joined {
                since,
                since_epoch: since.map(|_| EPOCH.to_owned()),
                offset,
                epoch: Some(EPOCH.into()),
                recovered,
            },
            received,
            ended: "stopped".into(),
            ended_ms: 0,
        }
    }

    /// Splits the one client's session after `k` events into a resume.
    fn resume_after(recording: &mut Recording, k: usize, recovered: bool, skip: usize) {
        let client = &mut recording.clients[0];
        let all = client.sessions[0].received.clone();
        let since = all[k - 1].offset;
        let joined_at = all[k - 1 + skip].offset;
        client.sessions[0].received = all[..k].to_vec();
        client.sessions.push(session(
            Some(since),
            Some(joined_at),
            Some(recovered),
            all[k + skip..].to_vec(),
        ));
    }

    #[test]
    fn a_faithful_run_passes() {
        let verdict = judge(&faithful(50));
        assert!(verdict.passed, "{:?}", verdict.failures);
        assert_eq!(verdict.alerts.applied_once, 50);
        assert_eq!(verdict.windows.windows, 50);
        assert_eq!(verdict.windows.close_late_ms_max, 1000);
        assert_eq!(verdict.clients.expected, 100);
        assert_eq!(verdict.clients.delivered, 100);
    }

    #[test]
    fn an_ack_before_commit_loses_alerts_and_is_caught() {
        // The processor acked, then died before the script ran: no trace in the state.
        let mut recording = faithful(50);
        recording.history.remove("loc-7");
        let verdict = judge(&recording);
        assert!(!verdict.passed);
        assert_eq!(verdict.alerts.lost, 1);
        assert!(
            verdict.failures[0].contains("lost"),
            "{:?}",
            verdict.failures
        );
    }

    #[test]
    fn an_alert_applied_twice_is_caught() {
        let mut recording = faithful(10);
        let entry = recording.history["loc-3"][0].clone();
        recording.history.get_mut("loc-3").unwrap().push(entry);
        let verdict = judge(&recording);
        assert_eq!(verdict.alerts.duplicated, 1);
        assert!(!verdict.passed);
    }

    #[test]
    fn a_notify_dropping_every_hundredth_event_is_caught() {
        let mut recording = faithful(200);
        let received = &mut recording.clients[0].sessions[0].received;
        let before = received.len();
        let mut n = 0;
        received.retain(|_| {
            n += 1;
            n % 100 != 50
        });
        assert_eq!(before - received.len(), 4);
        let verdict = judge(&recording);
        assert_eq!(verdict.clients.missing, 4);
        assert_eq!(verdict.clients.delivered, 396);
        assert!(!verdict.passed);
    }

    #[test]
    fn a_gap_reported_with_recovered_false_is_honest_and_one_claimed_recovered_is_not() {
        let mut honest = faithful(20);
        resume_after(&mut honest, 10, false, 5);
        let verdict = judge(&honest);
        assert!(verdict.passed, "{:?}", verdict.failures);
        assert_eq!(verdict.clients.reported, 5);
        assert_eq!(verdict.clients.resumed_unrecovered, 1);

        let mut silent = faithful(20);
        resume_after(&mut silent, 10, true, 5);
        let verdict = judge(&silent);
        assert_eq!(verdict.clients.missing, 5);
        assert_eq!(verdict.clients.resumed_recovered, 1);
        assert!(!verdict.passed);
    }

    #[test]
    fn events_still_on_their_way_to_a_slow_reader_are_not_missing_but_a_stall_is() {
        let mut recording = faithful(20);
        recording.clients[0].sessions[0].received.truncate(30);
        let verdict = judge(&recording);
        assert_eq!(verdict.clients.in_flight_stalled, 10);
        assert_eq!(verdict.clients.missing, 0);
        assert!(
            !verdict.passed,
            "a client that keeps up must get everything"
        );

        recording.clients[0].kind = ClientKind::Slow;
        let verdict = judge(&recording);
        assert_eq!(verdict.clients.in_flight_slow, 10);
        assert!(verdict.passed, "{:?}", verdict.failures);

        // A hole before what it got is loss, slow or not.
        recording.clients[0].sessions[0].received.remove(5);
        assert_eq!(judge(&recording).clients.missing, 1);
    }

    #[test]
    fn one_alert_for_two_locations_opens_two_windows_with_one_id() {
        let mut recording = faithful(2);
        let id = recording.log[0].window_id;
        for event in recording.log.iter_mut().filter(|e| e.location == "loc-1") {
            event.window_id = id;
        }
        let verdict = judge(&recording);
        assert_eq!(verdict.windows.windows, 2);
        assert!(verdict.passed, "{:?}", verdict.failures);
    }

    #[test]
    fn duplicates_and_reordering_at_a_client_are_caught() {
        let mut recording = faithful(20);
        let received = &mut recording.clients[0].sessions[0].received;
        let again = received[3].clone();
        received.insert(8, again);
        received.swap(12, 13);
        let verdict = judge(&recording);
        assert_eq!(verdict.clients.duplicated, 1);
        assert_eq!(verdict.clients.out_of_order, 1);
        assert!(!verdict.passed);
    }

    #[test]
    fn events_the_log_forgot_are_honest_only_if_the_client_was_told() {
        // Redis lost the tail of its log after the client had it (AOF everysec).
        let mut untold = faithful(20);
        let forgotten = untold.log.split_off(36);
        untold.history.retain(|l, _| l != "loc-18" && l != "loc-19");
        untold.accepted.truncate(18);
        let verdict = judge(&untold);
        assert_eq!(verdict.clients.unlogged_untold, forgotten.len() as u64);
        assert!(!verdict.passed);

        let mut told = untold.clone();
        told.clients[0]
            .sessions
            .push(session(Some(Offset::new(40, 0)), None, Some(false), vec![]));
        let verdict = judge(&told);
        assert_eq!(verdict.clients.unlogged_told, forgotten.len() as u64);
        assert_eq!(verdict.clients.unlogged_untold, 0);
    }

    #[test]
    fn malformed_early_overlapping_and_unclosed_windows_are_caught() {
        let mut recording = faithful(5);
        // A second open for loc-0's window, a close 2 s early for loc-1's.
        let open = recording.log[0].clone();
        recording.log.insert(1, open);
        let close = recording
            .log
            .iter_mut()
            .find(|e| e.location == "loc-1" && e.event_type == EventType::Close)
            .unwrap();
        close.created_at = close.end_time - TimeDelta::milliseconds(2000);
        recording.still_open.push("loc-4".into());
        recording.clients.clear();
        let verdict = judge(&recording);
        assert_eq!(verdict.windows.malformed, 1);
        assert_eq!(verdict.windows.overlapping, 1);
        assert_eq!(verdict.windows.closed_early, 1);
        assert_eq!(verdict.windows.never_closed, 1);
        assert!(!verdict.passed);
    }
}
