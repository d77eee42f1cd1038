//! `alert-amqp`: the RabbitMQ side of the raw alert queue, shared by the listener
//! (publishing) and the processor (consuming).
//!
//! - [`Topology`]: the durable queue (quorum by default) with an explicit delivery
//!   limit and its dead-letter queue `<queue>.dead`, declared identically by everyone.
//! - [`connect`]: one connection with heartbeats and a connect timeout.
//! - [`Publisher`]: a supervised connection with a small pool of confirm-mode channels;
//!   reconnects with backoff, and answers `publish` only after the broker confirmed.
//! - [`consume`]: a supervised consumer with bounded prefetch that settles each
//!   delivery as its handler decides ([`Disposition`]): ack, requeue or dead-letter
//!   with the reason in the `x-alert-error` header.

mod consumer;
mod publisher;
mod topology;

pub use consumer::{ConsumerConfig, Disposition, ERROR_HEADER, Incoming, consume};
pub use publisher::{Publisher, PublisherConfig};
pub use topology::{AmqpArgs, QueueKind, Topology, dead_letter_queue, delete_with_dead_letters};

use lapin::{Connection, ConnectionProperties, uri::AMQPUri};

/// Heartbeat in seconds unless the URL sets one: a dead peer is noticed in ~2x this.
const DEFAULT_HEARTBEAT_SECONDS: u16 = 10;
const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// Opens a connection named `name` (shown in the management UI).
pub async fn connect(url: &str, name: &str) -> Result<Connection, lapin::Error> {
    let mut uri: AMQPUri = url.parse().map_err(|e: String| {
        lapin::Error::from(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    })?;
    uri.query.heartbeat.get_or_insert(DEFAULT_HEARTBEAT_SECONDS);
    uri.query
        .connection_timeout
        .get_or_insert(DEFAULT_CONNECT_TIMEOUT_MS);
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect_uri(uri, properties).await
}
