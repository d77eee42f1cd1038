//! `alert-core`: what every service of the alert broadcaster shares.
//!
//! # Layout
//! - [`model`]: the contract's types: `QueueMessage` (listener -> processor), `Window`
//!   (a location's aggregate), `Event` (what clients receive).
//! - [`input`]: JSON ingest parsing and validation, UUID stamping, idempotency keys.
//! - [`cap`]: CAP 1.2 XML into the same messages.
//! - [`aggregate`]: the aggregation rules as pure functions, and the in-memory
//!   `Aggregator` built from them (the reference the Redis script is tested against).
//! - [`offset`]: an event's place in the log, ordered as numbers.
//! - [`queue`], [`state`]: the boundaries the backends implement (RabbitMQ and Redis
//!   in production, in-process in standalone mode).
//! - [`telemetry`], [`shutdown`], [`service`]: logging, signal handling and the
//!   settings every binary shares; [`supervise`]: the tasks a binary starts, and how
//!   it fails (one line, a non-zero exit) when one of them ends.

pub mod aggregate;
pub mod cap;
pub mod input;
pub mod model;
pub mod offset;
pub mod queue;
pub mod secret;
pub mod service;
pub mod shutdown;
pub mod state;
pub mod supervise;
pub mod telemetry;

pub use aggregate::{Aggregator, Change, Ingested, apply_alert, close, close_if_due};
pub use input::{
    InvalidInput, Limits, LocationError, MAX_LOCATION_CHARS, RequestContext, clean_location,
};
pub use model::{Alert, Cancel, CloseReason, Event, EventDraft, EventType, QueueMessage, Window};
pub use offset::Offset;
pub use queue::{AlertQueue, QueueError, decode_entry, encode_entry};
pub use secret::Secret;
pub use service::ServiceArgs;
pub use state::{EventLog, HistoryEntry, LiveFeed, LiveSignal, StateError};
