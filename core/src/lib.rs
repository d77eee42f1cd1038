//! `alert-core`: what every service of the alert broadcaster shares, in two parts.
//!
//! # The rules (pure: no I/O, no clock but the one passed in)
//! - [`model`]: the contract's types: `QueueMessage` (listener -> processor), `Window`
//!   (a location's aggregate), `Event` (what clients receive).
//! - [`input`]: JSON ingest parsing and validation, UUID stamping, idempotency keys.
//! - [`cap`]: CAP 1.2 XML into the same messages.
//! - [`aggregate`]: the aggregation rules as pure functions, and the in-memory
//!   `Aggregator` built from them (the reference the Redis script is tested against).
//! - [`offset`]: an event's place in the log, ordered as numbers.
//! - [`queue`], [`state`]: the boundaries the backends implement (RabbitMQ and Redis
//!   in production, in-process in standalone mode).
//!
//! # The plumbing (tokio, axum, prometheus)
//! - [`telemetry`], [`shutdown`], [`service`]: logging and `/metrics`, signal handling,
//!   and the settings every binary shares; [`supervise`]: the tasks a binary starts,
//!   and how it fails (one line, a non-zero exit) when one of them ends.
//! - [`backoff`]: the one retry policy of every reconnect loop; [`rate`]: the one rate
//!   limit (a token bucket) of sources and clients.
//! - [`secret`]: a setting that is never logged.

pub mod aggregate;
pub mod backoff;
pub mod cap;
pub mod input;
pub mod model;
pub mod offset;
pub mod queue;
pub mod rate;
pub mod secret;
pub mod service;
pub mod shutdown;
pub mod state;
pub mod supervise;
pub mod telemetry;

pub use aggregate::{Aggregator, Change, Ingested, apply_alert, close, close_if_due};
pub use backoff::{Backoff, BackoffPolicy, sleep_or_stop};
pub use input::{
    InvalidInput, Limits, LocationError, MAX_LOCATION_CHARS, RequestContext, clean_location,
};
pub use model::{Alert, Cancel, CloseReason, Event, EventDraft, EventType, QueueMessage, Window};
pub use offset::Offset;
pub use queue::{AlertQueue, QueueError, decode_entry, encode_entry};
pub use rate::{RateLimit, TokenBucket};
pub use secret::Secret;
pub use service::{RetentionArgs, ServiceArgs};
pub use state::{EventLog, HistoryEntry, LiveFeed, LiveSignal, StateError};
