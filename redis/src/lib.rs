//! `alert-redis`: the broadcaster's state in Redis, shared by the processor (writes)
//! and notify (reads).
//!
//! # Layout
//! - `aggregate.lua`: the aggregation rules as one atomic script per message: dedupe,
//!   window update for every location, close scheduling, event log append and live
//!   publish, in a single round trip. It mirrors `alert_core::aggregate`.
//! - [`Store`]: runs that script ([`Store::apply`], [`Store::close_due`]) and reads the
//!   event log, the open windows and the history back as contract types.
//! - [`LiveSubscriber`]: the live channel, as notify's feed.
//! - [`Keys`]: every key and channel name, all under one configurable prefix.
//! - `connection`: how every client connects and reconnects ([`reconnect_policy`],
//!   built from `alert_core::BackoffPolicy::REDIS`, which the services' own retries
//!   use too), in one place.

mod connection;
mod live;
mod record;
mod store;

pub use connection::reconnect_policy;
pub use live::LiveSubscriber;
pub use record::{LiveMessageError, LogRecord, StoredWindow, parse_live_message};
pub use store::{Applied, Closed, Keys, RedisArgs, Store, StoreSettings};

/// Whether a Redis error may go away by itself (connection, timeout, server busy or
/// loading), as opposed to a fault in the message or the script.
pub fn is_transient(error: &fred::error::Error) -> bool {
    use fred::error::ErrorKind;
    match error.kind() {
        ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled | ErrorKind::Backpressure => true,
        _ => [
            "OOM",
            "LOADING",
            "BUSY",
            "NOSCRIPT",
            "READONLY",
            "MASTERDOWN",
            "TRYAGAIN",
            "CLUSTERDOWN",
        ]
        .iter()
        .any(|code| error.details().starts_with(code)),
    }
}
