//! Whether Redis answers, as the processor last saw it, and the outage's log: one
//! warning when it starts and one line when it ends, however many messages and closer
//! runs wait meanwhile.

use std::{
    fmt::Display,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tracing::{info, warn};

pub(crate) struct RedisStatus {
    up: AtomicBool,
    /// When the current outage began; `None` while Redis answers (or before the first
    /// connection attempt failed).
    down_since: Mutex<Option<Instant>>,
}

impl RedisStatus {
    /// Not up until connected.
    pub(crate) fn new() -> Self {
        RedisStatus {
            up: AtomicBool::new(false),
            down_since: Mutex::new(None),
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Redis did not answer: the connection dropped, or a command failed in a way that
    /// may pass. Readiness fails until a command succeeds again. Returns whether this
    /// report began the outage (and was logged).
    pub(crate) fn unavailable(&self, reason: &dyn Display) -> bool {
        // Both flags change under the lock, so that a concurrent `answered` cannot end
        // an outage this call is starting.
        let mut since = self.down_since.lock().expect("redis status lock poisoned");
        self.up.store(false, Ordering::SeqCst);
        if since.is_some() {
            return false;
        }
        *since = Some(Instant::now());
        warn!(error = %reason, "Redis unavailable: holding messages and closes until it answers");
        true
    }

    /// A command succeeded. Returns how long the outage it ends lasted, if one was
    /// under way (and logs that).
    pub(crate) fn answered(&self) -> Option<Duration> {
        if self.is_up() {
            return None; // the common case: no lock
        }
        let mut since = self.down_since.lock().expect("redis status lock poisoned");
        self.up.store(true, Ordering::SeqCst);
        let outage = since.take()?.elapsed();
        info!(
            outage_ms = outage.as_millis() as u64,
            "Redis answers again: applying the messages held"
        );
        Some(outage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_reported_once_when_it_starts_and_once_when_it_ends() {
        let status = RedisStatus::new();
        assert!(!status.is_up(), "not ready before connecting");
        assert_eq!(status.answered(), None, "connecting ends no outage");
        assert!(status.is_up());

        assert!(status.unavailable(&"connection lost"));
        assert!(!status.unavailable(&"timeout"), "the same outage");
        assert!(!status.is_up());
        assert!(status.answered().is_some());
        assert_eq!(status.answered(), None, "already over");
        assert!(status.is_up());

        assert!(status.unavailable(&"connection lost"), "a new outage");
    }

    #[test]
    fn a_failed_command_after_a_success_fails_readiness_again() {
        let status = RedisStatus::new();
        status.answered();
        status.unavailable(&"LOADING");
        assert!(!status.is_up());
    }
}
