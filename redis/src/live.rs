//! The live channel as an [`alert_core::LiveFeed`]: a pub/sub subscriber that
//! resubscribes by itself after a reconnection and says so, so the reader can fill
//! what it missed from the event log.

use alert_core::{LiveFeed, LiveSignal};
use fred::{
    clients::SubscriberClient,
    error::Error,
    interfaces::{ClientLike, EventInterface, PubsubInterface},
    types::Message,
};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::{Keys, parse_live_message};

/// Live messages buffered locally before the subscriber counts as lagging.
const BUFFER: usize = 8192;

pub struct LiveSubscriber {
    client: SubscriberClient,
    messages: broadcast::Receiver<Message>,
    reconnects: broadcast::Receiver<fred::types::config::Server>,
    errors: broadcast::Receiver<(Error, Option<fred::types::config::Server>)>,
    /// Lost and not reconnected yet: the failed attempts that follow are not warned
    /// about again (one every 200 ms at most while Redis is away).
    lost: bool,
    _resubscriber: tokio::task::JoinHandle<()>,
}

impl LiveSubscriber {
    /// Connects and subscribes to the live channel of `keys`.
    pub async fn connect(url: &str, keys: &Keys) -> Result<LiveSubscriber, Error> {
        let client = crate::connection::builder(url)?
            .with_performance_config(|performance| {
                performance.broadcast_channel_capacity = BUFFER;
            })
            .build_subscriber_client()?;
        client.init().await?;
        let resubscriber = client.manage_subscriptions();
        client.subscribe(keys.live()).await?;
        Ok(LiveSubscriber {
            messages: client.message_rx(),
            reconnects: client.reconnect_rx(),
            errors: client.error_rx(),
            lost: false,
            client,
            _resubscriber: resubscriber,
        })
    }
}

fn signal(message: &Message) -> Option<LiveSignal> {
    let Some(payload) = message.value.as_str() else {
        tracing::error!("live message that is not a string");
        return None;
    };
    match parse_live_message(&payload) {
        Ok(event) => Some(LiveSignal::Event(Box::new(event))),
        Err(error) => {
            tracing::error!(%error, "unreadable live message");
            None
        }
    }
}

#[async_trait::async_trait]
impl LiveFeed for LiveSubscriber {
    async fn next(&mut self) -> LiveSignal {
        loop {
            tokio::select! {
                message = self.messages.recv() => match message {
                    Ok(message) => if let Some(signal) = signal(&message) { return signal },
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "live feed buffer overflowed");
                        return LiveSignal::Lagged;
                    }
                    Err(RecvError::Closed) => return LiveSignal::Closed,
                },
                reconnect = self.reconnects.recv() => return match reconnect {
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        if std::mem::take(&mut self.lost) {
                            tracing::info!("live feed reconnected");
                        }
                        LiveSignal::Reconnected
                    }
                    Err(RecvError::Closed) => LiveSignal::Closed,
                },
                error = self.errors.recv() => return match error {
                    Ok((error, _)) => {
                        if std::mem::replace(&mut self.lost, true) {
                            tracing::debug!(%error, "live feed still reconnecting");
                        } else {
                            tracing::warn!(%error, "live feed connection lost; reconnecting");
                        }
                        LiveSignal::Lost
                    }
                    Err(RecvError::Lagged(_)) => LiveSignal::Lost,
                    Err(RecvError::Closed) => LiveSignal::Closed,
                },
            }
        }
    }

    fn try_next(&mut self) -> Option<LiveSignal> {
        loop {
            match self.messages.try_recv() {
                Ok(message) => {
                    if let Some(signal) = signal(&message) {
                        return Some(signal);
                    }
                }
                Err(TryRecvError::Lagged(_)) => return Some(LiveSignal::Lagged),
                Err(TryRecvError::Closed) => return Some(LiveSignal::Closed),
                Err(TryRecvError::Empty) => return None,
            }
        }
    }

    fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    async fn close(&mut self) {
        let _ = self.client.quit().await;
    }
}
