//! The live feed: pub/sub for speed, the event log for completeness.
//!
//! # Gap detection
//! Every live message carries its event's log offset. The hub remembers the offset
//! of the last event fanned out and drops anything not after it, so an event reaches
//! each client once whichever path brought it. Offsets are not contiguous, so a lost
//! message cannot be seen in the sequence; instead the feed asks the log itself:
//! - after every (re)connection of the subscriber (fred resubscribes by itself),
//! - when the local pub/sub buffer overflowed (a lagged receiver),
//! - and every `gap_check` (1 s by default) as a safety net: the newest entry of the
//!   log (`XREVRANGE + - COUNT 1`) is compared with the last offset fanned out; an
//!   entry ahead of it is a gap only if it is still ahead a check later (under load
//!   some events are always in flight between the log and the live feed).
//!
//! When the log is ahead, the missing events are read with `XRANGE (last +` in pages
//! and fanned out in offset order before any newer live message. If the log was
//! trimmed past the last offset, or no longer holds it (Redis restarted without its
//! newest writes), events were lost for good and every client is told to
//! resynchronise from a snapshot. `/readyz` fails while the subscriber is down or
//! the log cannot be read.

use std::{sync::Arc, time::Duration};

use alert_core::{Event, LiveFeed, LiveSignal, StateError};
use tokio::sync::watch;

use alert_core::Offset;

use crate::hub::{Hub, Position};

const PAGE: u64 = 500;

/// Sets the hub's position to the newest event in the log: events before this pod
/// started are history, reachable with `since`, not live news.
pub(crate) async fn start_position(hub: &Hub) -> Result<(), StateError> {
    let newest = hub.store.latest_events(1).await?;
    let position = match newest.into_iter().next_back() {
        Some(event) => Position {
            epoch: Some(event.epoch),
            offset: Some(event.offset),
        },
        None => Position {
            epoch: hub.store.epoch().await?,
            offset: None,
        },
    };
    hub.set_position(position);
    Ok(())
}

/// The feed's view of the log: `suspect` while the log may hold events not fanned
/// out (live events then wait for a catch-up: they are in the log too); `check` to
/// try that catch-up now.
struct Gap {
    suspect: bool,
    check: bool,
    /// The check is the periodic safety net, not a reaction to a reconnect or a lag.
    periodic: bool,
    /// The newest log entry the last periodic check saw ahead of the fan-out.
    ahead: Option<Offset>,
}

impl Gap {
    /// Handles one signal; false when the feed has ended.
    fn on(&mut self, hub: &Hub, signal: LiveSignal) -> bool {
        match signal {
            // While suspect, a live event is not fanned out ahead of the events before
            // it; the catch-up reads it from the log in order.
            LiveSignal::Event(event) if !self.suspect => {
                hub.publish(&event);
            }
            LiveSignal::Event(_) => {}
            LiveSignal::Lagged => {
                tracing::warn!("live feed lagged; filling from the log");
                (self.suspect, self.check, self.periodic) = (true, true, false);
            }
            LiveSignal::Reconnected => {
                tracing::info!("live feed (re)connected; checking the log for missed events");
                (self.suspect, self.check, self.periodic) = (true, true, false);
            }
            LiveSignal::Lost => {
                hub.set_feed_up(false);
                self.suspect = true;
            }
            LiveSignal::Closed => {
                tracing::error!("live feed closed");
                return false;
            }
        }
        true
    }
}

/// Runs the feed until `closing` turns true.
pub(crate) async fn run(
    hub: Arc<Hub>,
    mut live: Box<dyn LiveFeed>,
    gap_check: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(gap_check);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gap = Gap {
        suspect: true,
        check: true,
        periodic: false,
        ahead: None,
    };
    loop {
        if gap.check {
            gap.check = false;
            // Take the live events already here first, so an event merely in flight
            // is not counted as a gap (it would be harmless: dropped as a duplicate,
            // but the gap metrics would lie).
            while !gap.suspect
                && let Some(signal) = live.try_next()
            {
                if !gap.on(&hub, signal) {
                    break;
                }
            }
            let ahead = (gap.periodic && !gap.suspect).then_some(&mut gap.ahead);
            gap.suspect = !catch_up(&hub, ahead).await;
            gap.periodic = false;
            hub.set_feed_up(!gap.suspect && live.is_connected());
        }
        tokio::select! {
            _ = closing.wait_for(|closing| *closing) => break,
            signal = live.next() => if !gap.on(&hub, signal) { break },
            _ = tick.tick() => (gap.check, gap.periodic) = (true, true),
        }
    }
    hub.set_feed_up(false);
    live.close().await;
}

/// Fans out every event of the log after the hub's position. Returns false when the
/// log could not be read (the check is retried on the next tick). `ahead`: see [`fill`].
async fn catch_up(hub: &Hub, ahead: Option<&mut Option<Offset>>) -> bool {
    match fill(hub, ahead).await {
        Ok(0) => true,
        Ok(filled) => {
            hub.metrics.gaps_filled.inc();
            hub.metrics.gap_events.inc_by(filled);
            tracing::warn!(
                events = filled,
                "filled a gap in the live feed from the event log"
            );
            true
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the event log; feed not ready");
            false
        }
    }
}

/// With `ahead` (the periodic check), an event the log has and the feed has not yet
/// brought counts only if it is still missing a tick later: under load some events are
/// always between the log and the live feed, and would be "filled" (and dropped as
/// duplicates when they arrive) about once every few seconds.
async fn fill(hub: &Hub, ahead: Option<&mut Option<Offset>>) -> Result<u64, StateError> {
    let newest = hub.store.latest_events(1).await?.pop();
    let last = hub.position().offset;
    // The log's newest entry is the position itself in the steady state: held.
    if let Some(last) = last
        && newest.as_ref().map(|event| event.offset) != Some(last)
        && !hub.store.holds(last).await?
    {
        let trimmed = hub
            .store
            .log_bounds()
            .await?
            .is_some_and(|(oldest, _)| oldest > last);
        if !trimmed {
            // Redis came back without its newest writes (an AOF that had not reached
            // the disk): clients were sent events the state no longer has. A resume from
            // a forgotten offset answers `recovered: false` (Hub::replay).
            tracing::error!(
                position = %last,
                "the event log no longer holds events this pod delivered (Redis lost its newest writes)"
            );
            hub.metrics.log_regressions.inc();
        }
        // Either way the events right after `last` may be gone: nobody can be sure to
        // have all, and only a snapshot is the truth.
        resync_at(hub, newest).await?;
        return Ok(0);
    }
    let Some(newest) = newest else {
        return Ok(0);
    };
    if Some(newest.offset) <= last {
        return Ok(0);
    }
    if let Some(ahead) = ahead {
        match ahead.replace(newest.offset) {
            Some(seen) if last < Some(seen) => {} // still missing: a real gap
            _ => return Ok(0),
        }
    }
    // Nothing fanned out yet: the log was empty when this pod started, so all of it
    // is new.
    let mut from = last.unwrap_or(Offset::START);
    let mut filled = 0;
    loop {
        let page = hub.store.events_after(from, PAGE).await?;
        let full = page.len() as u64 == PAGE;
        for event in &page {
            filled += u64::from(hub.publish(event));
        }
        match page.into_iter().next_back() {
            Some(event) if full => from = event.offset,
            _ => break,
        }
    }
    Ok(filled)
}

/// Every client resynchronises from a snapshot; the feed goes on from `newest`.
async fn resync_at(hub: &Hub, newest: Option<Event>) -> Result<(), StateError> {
    let epoch = match &newest {
        Some(event) => Some(event.epoch.clone()),
        None => hub.store.epoch().await?,
    };
    hub.set_position(Position {
        epoch: epoch.clone(),
        offset: None,
    });
    hub.resync_all();
    hub.set_position(Position {
        epoch,
        offset: newest.map(|event| event.offset),
    });
    Ok(())
}
