//! The boundary between ingest and processing: RabbitMQ in production, an in-process
//! queue in standalone mode.

use std::future::Future;

use crate::model::QueueMessage;

/// Why messages were not durably queued. Every variant means: nothing may be
/// acknowledged to the source; answer 503 with `Retry-After` and let it retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// No connection to the broker right now; reconnecting in the background.
    #[error("the queue is unavailable: {0}")]
    Unavailable(String),
    /// The broker refused (nack, unroutable) or did not confirm in time.
    #[error("the queue did not confirm: {0}")]
    NotConfirmed(String),
    /// The queue is at capacity: back off.
    #[error("the queue is full")]
    Full,
}

/// Where accepted alerts go. `publish` returns only once every message is durably
/// queued (or with an error, after which some may still have been queued: the
/// processor's dedupe makes a retry with the same idempotency keys harmless).
pub trait AlertQueue: Send + Sync + 'static {
    fn publish(
        &self,
        messages: &[QueueMessage],
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Whether a publish could succeed now (for `/readyz`).
    fn is_ready(&self) -> bool;
}
