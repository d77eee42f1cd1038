//! The in-process queue between ingest and the processor. Its capacity is a semaphore
//! of messages: a publish that does not fit is refused at once (`QueueError::Full`,
//! so ingest answers 503 with `Retry-After`) and memory stays bounded. With a data
//! directory every batch goes through the journal first and is answered only once it
//! is on disk.

use std::sync::Arc;

use alert_core::{AlertQueue, QueueError, QueueMessage};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::journal::Command;

/// Accepted messages on their way to the processor.
pub(crate) struct Batch {
    pub(crate) messages: Vec<QueueMessage>,
    /// Journal sequence number of the last message (0 without a journal).
    pub(crate) seq: u64,
    /// The batch's room in the queue, freed when dropped, after applying.
    pub(crate) room: Option<OwnedSemaphorePermit>,
}

/// A batch for the journal, and who waits for it to be on disk.
pub(crate) struct Append {
    pub(crate) batch: Batch,
    pub(crate) done: oneshot::Sender<Result<(), String>>,
}

#[derive(Clone)]
pub(crate) enum Route {
    Processor(mpsc::UnboundedSender<Batch>),
    Journal(mpsc::Sender<Command>),
}

#[derive(Clone)]
pub struct MemoryQueue {
    room: Arc<Semaphore>,
    route: Route,
}

impl MemoryQueue {
    pub(crate) fn new(capacity: usize, route: Route) -> MemoryQueue {
        MemoryQueue {
            room: Arc::new(Semaphore::new(capacity)),
            route,
        }
    }
}

fn stopped<T>(_: T) -> QueueError {
    QueueError::Unavailable("shutting down".into())
}

impl AlertQueue for MemoryQueue {
    async fn publish(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        let wanted = u32::try_from(messages.len()).map_err(|_| QueueError::Full)?;
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
            Route::Journal(journal) => {
                let (done, written) = oneshot::channel();
                journal
                    .send(Command::Append(Append { batch, done }))
                    .await
                    .map_err(stopped)?;
                written
                    .await
                    .map_err(stopped)?
                    .map_err(QueueError::NotConfirmed)
            }
        }
    }

    fn is_ready(&self) -> bool {
        match &self.route {
            Route::Processor(processor) => !processor.is_closed(),
            Route::Journal(journal) => !journal.is_closed(),
        }
    }
}
