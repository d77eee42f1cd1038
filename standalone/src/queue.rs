//! The in-process queue between ingest and the processor. Its capacity is a semaphore
//! of location updates (an alert weighs as many as it has locations, at least one):
//! a publish that does not fit is refused at once (`QueueError::Full`, so ingest
//! answers 503 with `Retry-After`) and memory stays bounded. A request heavier than the
//! whole capacity is taken when the queue is empty. With a data
//! directory every batch goes through the journal first and is answered only once it
//! is on disk.

use std::sync::Arc;

use alert_core::{AlertQueue, QueueError, QueueMessage};
use tokio::sync::Semaphore;

use crate::{
    journal::{JournalError, JournalHandle},
    pipeline::{Batch, ToProcessor},
};

/// Where an accepted batch goes: straight to the processor, or through the journal.
#[derive(Clone)]
pub(crate) enum Route {
    Processor(ToProcessor),
    Journal(JournalHandle),
}

#[derive(Clone)]
pub struct MemoryQueue {
    room: Arc<Semaphore>,
    capacity: u32,
    route: Route,
}

impl MemoryQueue {
    pub(crate) fn new(capacity: usize, route: Route) -> MemoryQueue {
        let capacity = u32::try_from(capacity.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        MemoryQueue {
            room: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
            route,
        }
    }
}

/// What a message costs the processor, and memory: one unit per location.
fn weight(message: &QueueMessage) -> usize {
    let locations = match message {
        QueueMessage::Alert(alert) => alert.locations.len(),
        QueueMessage::Cancel(cancel) => cancel.locations.len(),
    };
    locations.max(1)
}

fn stopped<T>(_: T) -> QueueError {
    QueueError::Unavailable("shutting down".into())
}

impl From<JournalError> for QueueError {
    fn from(error: JournalError) -> QueueError {
        match error {
            JournalError::Stopped => stopped(error),
            JournalError::Write(_) => QueueError::NotConfirmed(error.to_string()),
        }
    }
}

impl AlertQueue for MemoryQueue {
    async fn publish(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        let weight: usize = messages.iter().map(weight).sum();
        let wanted = u32::try_from(weight).unwrap_or(u32::MAX).min(self.capacity);
        let room = self
            .room
            .clone()
            .try_acquire_many_owned(wanted)
            .map_err(|_| QueueError::Full)?;
        let batch = Batch {
            messages: messages.to_vec(),
            seq: 0,
            room: Some(room),
        };
        match &self.route {
            Route::Processor(processor) => processor.send(batch).map_err(stopped),
            Route::Journal(journal) => Ok(journal.append(batch).await?),
        }
    }

    fn is_ready(&self) -> bool {
        match &self.route {
            Route::Processor(processor) => !processor.is_closed(),
            Route::Journal(journal) => !journal.is_closed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use alert_core::Alert;
    use chrono::{TimeDelta, Utc};
    use tokio::sync::mpsc;

    use super::*;

    fn alert(locations: usize) -> QueueMessage {
        let now = Utc::now();
        let mut alert = Alert::new("L0", "Rocket Alert", now, now + TimeDelta::minutes(5));
        alert.locations = (0..locations).map(|i| format!("L{i}")).collect();
        QueueMessage::Alert(alert)
    }

    #[tokio::test]
    async fn room_is_counted_in_locations_and_freed_when_applied() {
        let (processor, mut batches) = mpsc::unbounded_channel();
        let queue = MemoryQueue::new(10, Route::Processor(processor));
        queue.publish(&[alert(6)]).await.unwrap();
        assert_eq!(queue.publish(&[alert(5)]).await, Err(QueueError::Full));
        queue.publish(&[alert(4)]).await.unwrap();
        drop(batches.recv().await); // the first batch applied: its 6 are free again
        queue.publish(&[alert(5)]).await.unwrap();

        // Heavier than the whole queue: taken only when the queue is empty.
        assert_eq!(queue.publish(&[alert(25)]).await, Err(QueueError::Full));
        while batches.try_recv().is_ok() {}
        queue.publish(&[alert(25)]).await.unwrap();
    }
}
