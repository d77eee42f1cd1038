//! How every Redis client of the project connects, reconnects and gives up on a
//! command: one builder, one retry policy, and the connection's state as a `watch`.
//!
//! Measured with two processors and a Redis killed -9 and restarted 2 s later while
//! alerts flowed (RELIABILITY.md): with fred's reconnect backoff at 100 ms doubling to
//! 5 s, the first event was written 1.2 s after Redis answered again, because the
//! client was sleeping out its backoff while commands waited. Capped at 200 ms the
//! client is back within one cap of Redis answering, and the commands it held go out
//! at once.

use std::{sync::Arc, time::Duration};

use fred::{
    error::Error,
    interfaces::EventInterface,
    prelude::{Builder, Config, ReconnectPolicy},
    types::config::UnresponsiveConfig,
};
use tokio::{
    sync::{broadcast::error::RecvError, watch},
    task::JoinHandle,
};

/// First pause before reconnecting (or retrying); doubles on every failure.
const FIRST_DELAY_MS: u32 = 10;
/// Longest pause: how long after Redis answers again a client may still be waiting.
const MAX_DELAY_MS: u32 = 200;
/// Random extra pause (up to), so that many clients do not reconnect in lockstep.
const JITTER_MS: u32 = 30;
/// A TCP connect (and the HELLO after it) on a healthy network takes milliseconds;
/// a host that drops packets must not hold a reconnection attempt longer than this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A command not answered within this fails with a timeout (held commands included:
/// while disconnected, fred keeps commands and sends them once it reconnects). The
/// aggregation script takes milliseconds; the bound is for an outage.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection whose replies stop for this long (a network partition, with no reset
/// to notice) is closed and reconnected, its in-flight commands retried.
const UNRESPONSIVE_AFTER: Duration = Duration::from_secs(2);

/// The reconnect policy of every client: exponential from 10 ms, capped at 200 ms,
/// with up to 30 ms of jitter below the cap, forever.
pub fn reconnect_policy() -> ReconnectPolicy {
    let mut policy = ReconnectPolicy::new_exponential(0, FIRST_DELAY_MS, MAX_DELAY_MS, 2);
    policy.set_jitter(JITTER_MS);
    policy
}

/// The same pauses as [`reconnect_policy`], for retries the services make themselves
/// (connecting for the first time, re-running a command Redis refused as busy).
#[derive(Debug, Clone)]
pub struct Backoff(ReconnectPolicy);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(reconnect_policy())
    }
}

impl Backoff {
    /// The next pause, longer each time up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let ms = self.0.next_delay().unwrap_or(u64::from(MAX_DELAY_MS));
        Duration::from_millis(ms)
    }

    /// Back to the first pause, after a success.
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}

/// A fred builder for `url` with the project's timeouts and reconnect policy.
pub(crate) fn builder(url: &str) -> Result<Builder, Error> {
    let mut builder = Builder::from_config(Config::from_url(url)?);
    builder
        .with_connection_config(|connection| {
            connection.connection_timeout = CONNECT_TIMEOUT;
            connection.internal_command_timeout = CONNECT_TIMEOUT;
            connection.unresponsive = UnresponsiveConfig {
                max_timeout: Some(UNRESPONSIVE_AFTER),
                interval: UNRESPONSIVE_AFTER / 4,
            };
        })
        .with_performance_config(|performance| {
            performance.default_command_timeout = COMMAND_TIMEOUT;
        })
        .set_policy(reconnect_policy());
    Ok(builder)
}

/// Whether a client is connected, as a `watch` (`true` while up), fed by its
/// connection events: any number of failed reconnection attempts is one change.
#[derive(Clone)]
pub(crate) struct Link {
    state: watch::Receiver<bool>,
    _task: Arc<AbortOnDrop>,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Link {
    /// Follows `client`, which has just connected.
    pub(crate) fn follow(client: &impl EventInterface) -> Link {
        let mut errors = client.error_rx();
        let mut reconnects = client.reconnect_rx();
        let (tx, state) = watch::channel(client.is_connected());
        let task = tokio::spawn(async move {
            loop {
                // Errors first: the two channels are not ordered with each other, and a
                // wrong "up" is corrected by the next failed attempt (every 200 ms at
                // most), a wrong "down" only by the next outage.
                let up = tokio::select! {
                    biased;
                    error = errors.recv() => match error {
                        Ok(_) | Err(RecvError::Lagged(_)) => false,
                        Err(RecvError::Closed) => return,
                    },
                    reconnect = reconnects.recv() => match reconnect {
                        Ok(_) | Err(RecvError::Lagged(_)) => true,
                        Err(RecvError::Closed) => return,
                    },
                };
                tx.send_if_modified(|state| std::mem::replace(state, up) != up);
            }
        });
        Link {
            state,
            _task: Arc::new(AbortOnDrop(task)),
        }
    }

    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.state.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_small_grows_and_stays_bounded() {
        let mut backoff = Backoff::default();
        let delays: Vec<Duration> = (0..20).map(|_| backoff.next_delay()).collect();
        let ms = |d: &Duration| d.as_millis() as u32;
        assert!(ms(&delays[0]) < FIRST_DELAY_MS + JITTER_MS, "{delays:?}");
        assert!(delays.iter().all(|d| ms(d) <= MAX_DELAY_MS), "{delays:?}");
        assert_eq!(ms(&delays[19]), MAX_DELAY_MS, "reaches the cap: {delays:?}");
        backoff.reset();
        assert!(ms(&backoff.next_delay()) < FIRST_DELAY_MS + JITTER_MS);
    }
}
