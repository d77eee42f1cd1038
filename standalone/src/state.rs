//! The in-process state: core's `Aggregator`, a bounded event log, each location's
//! history, and the live bus. One mutex guards it; every critical section is short
//! and never awaits.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Mutex, MutexGuard},
};

use alert_core::{
    Aggregator, Event, EventDraft, EventLog, HistoryEntry, Ingested, LiveFeed, LiveSignal, Offset,
    QueueMessage, StateError, Window, model::event_id,
};
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

/// Live events buffered per reader before it counts as lagging (it then catches up
/// from the log).
const BUS_BUFFER: usize = 8192;

#[derive(Debug, Clone)]
pub struct StateSettings {
    pub dedupe_ttl: TimeDelta,
    /// Events the log keeps for replay.
    pub log_len: usize,
    /// Entries kept per location for `GET /api/history`.
    pub history_len: usize,
}

pub struct State {
    inner: Mutex<Inner>,
    bus: broadcast::Sender<Event>,
    settings: StateSettings,
}

struct Inner {
    aggregator: Aggregator,
    epoch: String,
    log: VecDeque<Event>,
    /// The last offset given out.
    last: Offset,
    history: HashMap<String, VecDeque<HistoryEntry>>,
}

impl State {
    /// A state over `aggregator` (empty, or restored from a snapshot). The log starts
    /// empty under a new epoch, so clients resynchronise from a snapshot.
    pub fn new(aggregator: Aggregator, settings: StateSettings) -> State {
        State {
            inner: Mutex::new(Inner {
                aggregator,
                epoch: uuid::Uuid::new_v4().simple().to_string(),
                log: VecDeque::new(),
                last: Offset::START,
                history: HashMap::new(),
            }),
            bus: broadcast::channel(BUS_BUFFER).0,
            settings,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `messages` in order at `now`, logs and broadcasts their events.
    /// Returns how many were duplicates.
    pub fn apply(&self, messages: &[QueueMessage], now: DateTime<Utc>) -> usize {
        let mut duplicates = 0;
        let mut inner = self.lock();
        for message in messages {
            match inner.aggregator.ingest(message, now) {
                Ingested::Duplicate => duplicates += 1,
                Ingested::Applied { changes, events } => {
                    if let QueueMessage::Alert(alert) = message {
                        for (location, change) in alert.locations.iter().zip(changes) {
                            let entry = HistoryEntry {
                                alert_id: alert.id,
                                alert_type: alert.alert_type.clone(),
                                start: alert.start,
                                end: alert.end,
                                processed_at: now,
                                change,
                            };
                            inner.remember(location, entry, self.settings.history_len);
                        }
                    }
                    for draft in events {
                        self.emit(&mut inner, draft, now);
                    }
                }
            }
        }
        duplicates
    }

    /// Closes the windows that have ended at `now`; returns how many.
    pub fn close_due(&self, now: DateTime<Utc>) -> usize {
        let mut inner = self.lock();
        let closes = inner.aggregator.close_due(now);
        let closed = closes.len();
        for draft in closes {
            self.emit(&mut inner, draft, now);
        }
        closed
    }

    /// When the earliest open window ends: when the closer looks again.
    pub fn next_end(&self) -> Option<DateTime<Utc>> {
        self.lock()
            .aggregator
            .windows()
            .map(|window| window.end)
            .min()
    }

    /// A copy of the aggregation state, for the data directory's snapshot: copied under
    /// the lock, encoded and written outside it.
    pub(crate) fn aggregator(&self) -> Aggregator {
        self.lock().aggregator.clone()
    }

    fn emit(&self, inner: &mut Inner, draft: EventDraft, now: DateTime<Utc>) {
        let offset = inner.next_offset(now);
        let id = event_id(&inner.epoch, offset);
        let event = Event::new(draft, id, offset, inner.epoch.clone(), now);
        if inner.log.len() >= self.settings.log_len.max(1) {
            inner.log.pop_front();
        }
        inner.log.push_back(event.clone());
        // No receiver (no notify yet) is fine: the log has it.
        let _ = self.bus.send(event);
    }

    /// The live feed for notify.
    pub fn subscribe(&self) -> Feed {
        Feed {
            bus: self.bus.subscribe(),
        }
    }
}

impl Inner {
    /// Offsets imitate Redis stream ids, `<ms>-<seq>`, increasing even if the clock
    /// steps back.
    fn next_offset(&mut self, now: DateTime<Utc>) -> Offset {
        let ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        self.last = if ms > self.last.ms {
            Offset::new(ms, 0)
        } else {
            Offset::new(self.last.ms, self.last.seq + 1)
        };
        self.last
    }

    fn remember(&mut self, location: &str, entry: HistoryEntry, len: usize) {
        let history = self.history.entry(location.to_owned()).or_default();
        if history.len() >= len.max(1) {
            history.pop_back();
        }
        history.push_front(entry);
    }

    /// Index of the first event after `offset` (offsets increase along the log).
    fn after(&self, offset: Offset) -> usize {
        self.log.partition_point(|event| event.offset <= offset)
    }
}

#[async_trait::async_trait]
impl EventLog for State {
    async fn epoch(&self) -> Result<Option<String>, StateError> {
        Ok(Some(self.lock().epoch.clone()))
    }

    async fn events_after(&self, after: Offset, limit: u64) -> Result<Vec<Event>, StateError> {
        let inner = self.lock();
        let from = inner.after(after);
        Ok(inner
            .log
            .range(from..)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn latest_events(&self, limit: u64) -> Result<Vec<Event>, StateError> {
        let inner = self.lock();
        let from = inner.log.len().saturating_sub(limit as usize);
        Ok(inner.log.range(from..).cloned().collect())
    }

    async fn log_bounds(&self) -> Result<Option<(Offset, Offset)>, StateError> {
        let inner = self.lock();
        Ok(inner
            .log
            .front()
            .zip(inner.log.back())
            .map(|(first, last)| (first.offset, last.offset)))
    }

    async fn active(&self, locations: Option<&[String]>) -> Result<Vec<Window>, StateError> {
        let inner = self.lock();
        Ok(match locations {
            Some(locations) => locations
                .iter()
                .filter_map(|location| inner.aggregator.window(location).cloned())
                .collect(),
            None => inner.aggregator.windows().cloned().collect(),
        })
    }

    async fn history(&self, location: &str, limit: u64) -> Result<Vec<HistoryEntry>, StateError> {
        let inner = self.lock();
        Ok(inner
            .history
            .get(location)
            .map(|history| history.iter().take(limit as usize).cloned().collect())
            .unwrap_or_default())
    }
}

/// The live bus as notify's feed; in process it is never disconnected.
pub struct Feed {
    bus: broadcast::Receiver<Event>,
}

#[async_trait::async_trait]
impl LiveFeed for Feed {
    async fn next(&mut self) -> LiveSignal {
        match self.bus.recv().await {
            Ok(event) => LiveSignal::Event(Box::new(event)),
            Err(RecvError::Lagged(_)) => LiveSignal::Lagged,
            Err(RecvError::Closed) => LiveSignal::Closed,
        }
    }

    fn try_next(&mut self) -> Option<LiveSignal> {
        match self.bus.try_recv() {
            Ok(event) => Some(LiveSignal::Event(Box::new(event))),
            Err(TryRecvError::Lagged(_)) => Some(LiveSignal::Lagged),
            Err(TryRecvError::Closed) => Some(LiveSignal::Closed),
            Err(TryRecvError::Empty) => None,
        }
    }

    fn is_connected(&self) -> bool {
        true
    }

    async fn close(&mut self) {}
}
