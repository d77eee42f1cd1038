//! The live feed: Redis pub/sub for speed, the event log for completeness.
//!
//! # Gap detection
//! Every live message carries its event's log offset. The hub remembers the offset
//! of the last event fanned out and drops anything not after it, so an event reaches
//! each client once whichever path brought it. Offsets are not contiguous, so a lost
//! message cannot be seen in the sequence; instead the feed asks the log itself:
//! - after every (re)connection of the subscriber (fred resubscribes by itself),
//! - when the local pub/sub buffer overflowed (a lagged receiver),
//! - and every `gap_check` (1 s by default) as a safety net: the newest entry of the
//!   log (`XREVRANGE + - COUNT 1`) is compared with the last offset fanned out.
//!
//! When the log is ahead, the missing events are read with `XRANGE (last +` in pages
//! and fanned out in offset order before any newer live message. If the log was
//! trimmed past the last offset, events were lost for good and every client is told
//! to resynchronise from a snapshot. `/readyz` fails while the subscriber is down or
//! the log cannot be read.

use std::{sync::Arc, time::Duration};

use alert_redis::parse_live_message;
use fred::{
    clients::SubscriberClient,
    interfaces::{ClientLike, EventInterface},
    types::Message,
};
use tokio::sync::{broadcast::error::RecvError, watch};

use crate::hub::{Hub, Position, compare_offsets};

const PAGE: u64 = 500;

/// Sets the hub's position to the newest event in the log: events before this pod
/// started are history, reachable with `since`, not live news.
pub(crate) async fn start_position(hub: &Hub) -> Result<(), fred::error::Error> {
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

/// Runs the feed until `closing` turns true.
pub(crate) async fn run(
    hub: Arc<Hub>,
    subscriber: SubscriberClient,
    gap_check: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let mut messages = subscriber.message_rx();
    let mut reconnects = subscriber.reconnect_rx();
    let mut errors = subscriber.error_rx();
    let mut tick = tokio::time::interval(gap_check);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // `suspect`: the log may hold events the feed has not fanned out; live messages
    // wait for a successful catch-up (they are in the log too). `check`: try now.
    let (mut suspect, mut check) = (true, true);
    loop {
        if check {
            check = false;
            // Take the live messages already here first, so an event merely in
            // flight is not counted as a gap (it would be harmless: dropped as a
            // duplicate, but the gap metrics would lie).
            while !suspect && let Ok(message) = messages.try_recv() {
                live(&hub, &message);
            }
            suspect = !catch_up(&hub).await;
            hub.set_feed_up(!suspect && subscriber.is_connected());
        }
        tokio::select! {
            _ = closing.wait_for(|closing| *closing) => break,
            message = messages.recv() => match message {
                // While suspect, a live message is not fanned out ahead of the events
                // before it; the catch-up reads it from the log in order.
                Ok(message) if !suspect => live(&hub, &message),
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "live feed buffer overflowed; filling from the log");
                    (suspect, check) = (true, true);
                }
                Err(RecvError::Closed) => {
                    tracing::error!("live feed closed");
                    break;
                }
            },
            reconnect = reconnects.recv() => {
                if reconnect.is_ok() {
                    tracing::info!("live feed (re)connected; checking the log for missed events");
                }
                (suspect, check) = (true, true);
            }
            error = errors.recv() => {
                if let Ok((error, _)) = error {
                    tracing::warn!(%error, "live feed connection lost; reconnecting");
                }
                hub.set_feed_up(false);
                suspect = true;
            }
            _ = tick.tick() => check = true,
        }
    }
    hub.set_feed_up(false);
    let _ = subscriber.quit().await;
}

fn live(hub: &Hub, message: &Message) {
    let Some(payload) = message.value.as_str() else {
        tracing::error!("live message that is not a string");
        return;
    };
    match parse_live_message(&payload) {
        Ok(event) => {
            hub.publish(&event);
        }
        Err(error) => tracing::error!(%error, "unreadable live message"),
    }
}

/// Fans out every event of the log after the hub's position. Returns false when the
/// log could not be read (the check is retried on the next tick).
async fn catch_up(hub: &Hub) -> bool {
    match fill(hub).await {
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

async fn fill(hub: &Hub) -> Result<u64, fred::error::Error> {
    let Some(newest) = hub.store.latest_events(1).await?.pop() else {
        return Ok(0);
    };
    let last = hub.position().offset;
    if let Some(last) = &last
        && compare_offsets(&newest.offset, last) != std::cmp::Ordering::Greater
    {
        return Ok(0);
    }
    if let Some(last) = &last
        && let Some((oldest, _)) = hub.store.log_bounds().await?
        && compare_offsets(&oldest, last) == std::cmp::Ordering::Greater
    {
        // The events right after `last` may be gone: nobody can be sure to have all.
        hub.set_position(Position {
            epoch: Some(newest.epoch.clone()),
            offset: None,
        });
        hub.resync_all().await;
        hub.set_position(Position {
            epoch: Some(newest.epoch),
            offset: Some(newest.offset),
        });
        return Ok(0);
    }
    // Nothing fanned out yet: the log was empty when this pod started, so all of it
    // is new.
    let last = last.unwrap_or_else(|| "0-0".to_owned());
    let mut filled = 0;
    let mut from = last;
    loop {
        let page = hub.store.events_after(&from, PAGE).await?;
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
