//! How every Redis client of the project connects, reconnects and gives up on a
//! command: one builder, one retry policy, and the connection's state as a `watch`.
//!
//! The policy itself (how fast, how far) is `alert_core::BackoffPolicy::REDIS`, beside
//! RabbitMQ's, where the measurement that chose it is written.

use std::{sync::Arc, time::Duration};

use alert_core::BackoffPolicy;
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

/// The reconnect policy of every client: [`BackoffPolicy::REDIS`], forever.
pub fn reconnect_policy() -> ReconnectPolicy {
    let policy = BackoffPolicy::REDIS;
    let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    let mut reconnect =
        ReconnectPolicy::new_exponential(0, ms(policy.first), ms(policy.max), policy.factor);
    reconnect.set_jitter(ms(policy.jitter));
    reconnect
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
