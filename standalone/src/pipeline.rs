//! What flows from ingest to the processor: [`Batch`]es of accepted messages, through
//! the journal first when there is a data directory. Both the queue and the journal
//! speak it; neither knows the other's insides.
//!
//! The processor's channel is unbounded on purpose (the journal thread must never block
//! on it while holding a group of synced writes): its bound is each batch's `room`, the
//! queue's semaphore permits, which the batch holds until the processor has applied it
//! and drops it. The channel can therefore never hold more than the queue's capacity.

use alert_core::QueueMessage;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

/// Accepted messages on their way to the processor.
pub(crate) struct Batch {
    pub(crate) messages: Vec<QueueMessage>,
    /// Journal sequence number of the last message (0 without a journal).
    pub(crate) seq: u64,
    /// The batch's room in the queue, freed when dropped, after applying. `None` for
    /// the messages recovered from the journal at start, bounded by what was on disk.
    pub(crate) room: Option<OwnedSemaphorePermit>,
}

/// Where batches reach the processor.
pub(crate) type ToProcessor = mpsc::UnboundedSender<Batch>;
