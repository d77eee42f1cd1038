//! The boundary between ingest and processing: RabbitMQ in production, an in-process
//! queue in standalone mode.
//!
//! On the broker one entry carries one message (a JSON object) or several (a JSON
//! array, up to [`MESSAGES_PER_ENTRY`]): a source's batch costs the broker one message
//! and one confirm, not one per alert.

use std::future::Future;

use crate::model::QueueMessage;

/// Most messages in one broker entry.
pub const MESSAGES_PER_ENTRY: usize = 100;

/// The body of one broker entry holding `messages` (at least one).
pub fn encode_entry(messages: &[QueueMessage]) -> Vec<u8> {
    let encoded = match messages {
        [one] => serde_json::to_vec(one),
        many => serde_json::to_vec(many),
    };
    encoded.expect("queue messages always serialise")
}

/// The messages of one broker entry: a JSON object or an array of them.
pub fn decode_entry(body: &[u8]) -> serde_json::Result<Vec<QueueMessage>> {
    match body.iter().find(|byte| !byte.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice(body),
        _ => serde_json::from_slice(body).map(|one| vec![one]),
    }
}

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

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, Utc};

    use super::*;
    use crate::model::Alert;

    #[test]
    fn an_entry_holds_one_message_as_an_object_and_several_as_an_array() {
        let now = Utc::now();
        let alert = |l: &str| {
            QueueMessage::Alert(Alert::new(
                l,
                "Rocket Alert",
                now,
                now + TimeDelta::minutes(1),
            ))
        };
        let one = vec![alert("Haifa")];
        let body = encode_entry(&one);
        assert_eq!(body.first(), Some(&b'{'));
        assert_eq!(decode_entry(&body).unwrap(), one);
        let many = vec![alert("Haifa"), alert("Eilat")];
        let body = encode_entry(&many);
        assert_eq!(body.first(), Some(&b'['));
        assert_eq!(decode_entry(&body).unwrap(), many);
        assert!(decode_entry(b"[{\"kind\":\"nonsense\"}]").is_err());
        assert!(decode_entry(b"  ").is_err());
    }
}
