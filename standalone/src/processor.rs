//! The processor: applies accepted batches in order, closes windows when they end,
//! and with a data directory snapshots the state and lets the journal shrink.

use std::{path::PathBuf, sync::Arc, time::Duration};

use chrono::Utc;
use tokio::sync::{mpsc, watch};

use crate::{journal::JournalHandle, pipeline::Batch, snapshot, state::State};

/// Most messages applied under one lock.
const GROUP: usize = 1024;
/// Longest sleep of the closer: new windows are noticed after each batch anyway.
const MAX_SLEEP: Duration = Duration::from_secs(1);

enum Wake {
    Close,
    Batch(Option<Batch>),
    Snapshot,
    Stop,
}

pub(crate) struct Persist {
    pub(crate) dir: PathBuf,
    pub(crate) journal: JournalHandle,
    pub(crate) interval: Duration,
}

/// Runs until `stop` turns true, then applies what is still queued and, with a data
/// directory, saves a last snapshot.
pub(crate) async fn run(
    state: Arc<State>,
    mut batches: mpsc::UnboundedReceiver<Batch>,
    persist: Option<Persist>,
    mut stop: watch::Receiver<bool>,
) {
    let mut applied = 0;
    let mut dirty = false;
    let mut next_end = state.next_end();
    let period = persist
        .as_ref()
        .map_or(Duration::from_secs(3600), |p| p.interval);
    let mut snapshots = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    // After a quiet spell, one snapshot, not one per missed tick.
    snapshots.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let close_wait = next_end.map_or(MAX_SLEEP, |end| {
            let until_end = (end - Utc::now()).to_std().unwrap_or_default();
            until_end.min(MAX_SLEEP)
        });
        let wake = tokio::select! {
            // Closes first: a steady stream of batches must not delay them.
            biased;
            _ = tokio::time::sleep(close_wait) => Wake::Close,
            batch = batches.recv() => Wake::Batch(batch),
            _ = snapshots.tick(), if persist.is_some() && dirty => Wake::Snapshot,
            _ = stop.wait_for(|stop| *stop) => Wake::Stop,
        };
        match wake {
            Wake::Close => {
                dirty |= state.close_due(Utc::now()) > 0;
                next_end = state.next_end();
            }
            Wake::Batch(Some(batch)) => {
                applied = apply(&state, batch, &mut batches).max(applied);
                next_end = state.next_end();
                dirty = true;
            }
            Wake::Snapshot => {
                if let Some(persist) = &persist {
                    dirty = !save(&state, persist, applied).await;
                }
            }
            Wake::Batch(None) => break,
            Wake::Stop => {
                while let Ok(batch) = batches.try_recv() {
                    applied = apply(&state, batch, &mut batches).max(applied);
                }
                break;
            }
        }
    }
    if let Some(persist) = &persist {
        save(&state, persist, applied).await;
    }
}

/// Applies `first` and whatever else is queued (up to `GROUP` messages) in one go;
/// returns the journal sequence number reached. The batches free their room in the
/// queue when dropped, after they are applied.
fn apply(state: &State, first: Batch, batches: &mut mpsc::UnboundedReceiver<Batch>) -> u64 {
    let mut seq = first.seq;
    let mut messages = first.messages;
    let mut rooms = vec![first.room];
    while messages.len() < GROUP
        && let Ok(batch) = batches.try_recv()
    {
        seq = seq.max(batch.seq);
        messages.extend(batch.messages);
        rooms.push(batch.room);
    }
    state.apply(&messages, Utc::now());
    drop(rooms);
    seq
}

/// Writes a snapshot and lets the journal drop what it covers; false on failure (the
/// journal keeps everything, so nothing is lost, and the next tick retries).
async fn save(state: &State, persist: &Persist, applied: u64) -> bool {
    let aggregator = state.aggregator();
    let dir = persist.dir.clone();
    let written = tokio::task::spawn_blocking(move || {
        let bytes = snapshot::encode(applied, &aggregator).map_err(std::io::Error::other)?;
        snapshot::write(&dir, &bytes)
    });
    match written.await {
        Ok(Ok(())) => {
            persist.journal.compact(applied).await;
            true
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "cannot write the snapshot");
            false
        }
        Err(error) => {
            tracing::error!(%error, "snapshot task failed");
            false
        }
    }
}
