use std::collections::VecDeque;
use std::sync::{
    Arc, Mutex, RwLock,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};
use std::time::Duration;

use alert_core::{
    AlertQueue, Backoff, BackoffPolicy, QueueError, QueueMessage, encode_entry,
    queue::MESSAGES_PER_ENTRY, sleep_or_stop,
};
use futures::{StreamExt, future::try_join_all};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, Event,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable},
};
use tokio::sync::{Notify, Semaphore, oneshot, watch};
use tracing::{info, warn};

use crate::Topology;

/// Requests waiting for a round, at most; beyond it publishes fail with `Full` (503).
const MAX_WAITING: usize = 10_000;

#[derive(Debug, Clone)]
pub struct PublisherConfig {
    pub url: String,
    pub topology: Topology,
    /// Confirm-mode channels shared by all requests; publishes are pipelined on each.
    pub channels: usize,
    /// How long to wait for the broker's confirms before answering 503.
    pub confirm_timeout: Duration,
    /// Shown in the RabbitMQ management UI.
    pub connection_name: String,
}

/// Publishes queue messages persistently, mandatory, with publisher confirms, over one
/// supervised connection. Cheap to clone.
///
/// Concurrent requests share queue entries (group commit): each request joins a
/// waiting list and starts a round; at most one round per channel runs at a time, and
/// a round publishes everything waiting (up to one entry's worth of messages) as one
/// entry with one confirm. Under load, single-alert POSTs then cost the broker one
/// message per round instead of one per alert; alone, a request is its own round.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    config: PublisherConfig,
    link: RwLock<Option<Arc<Link>>>,
    /// Requests not yet taken by a round, oldest first.
    waiting: Mutex<VecDeque<Request>>,
    /// One permit per channel: the rounds that may publish at once.
    rounds: Semaphore,
    stop: watch::Sender<bool>,
    reconnects: AtomicU64,
}

/// A request's messages, and where its outcome goes.
struct Request {
    messages: Vec<QueueMessage>,
    done: oneshot::Sender<Result<(), QueueError>>,
}

/// One live connection and its channels.
struct Link {
    connection: Connection,
    channels: Vec<Channel>,
    next: AtomicUsize,
    /// Notified by a publish that saw the link fail, so the supervisor replaces it.
    broken: Notify,
}

impl Publisher {
    /// Starts connecting in the background; until connected, `publish` fails at once
    /// with `QueueError::Unavailable` (never blocks a request on a dead broker).
    pub fn start(config: PublisherConfig) -> Self {
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            rounds: Semaphore::new(config.channels.max(1)),
            config,
            link: RwLock::new(None),
            waiting: Mutex::new(VecDeque::new()),
            stop,
            reconnects: AtomicU64::new(0),
        });
        tokio::spawn(supervise(inner.clone()));
        Publisher { inner }
    }

    pub fn is_connected(&self) -> bool {
        self.current()
            .is_some_and(|link| link.connection.status().connected())
    }

    /// Connections established after the first.
    pub fn reconnects(&self) -> u64 {
        self.inner.reconnects.load(Ordering::Relaxed)
    }

    /// Stops reconnecting and closes the connection. Call after in-flight publishes
    /// have finished (the HTTP server drains first).
    pub async fn close(&self) {
        self.inner.stop.send_replace(true);
        let link = self.inner.link.write().expect("link lock poisoned").take();
        if let Some(link) = link
            && let Err(error) = link.connection.close(200, "shutting down".into()).await
        {
            warn!(%error, "closing the RabbitMQ connection failed");
        }
    }

    fn current(&self) -> Option<Arc<Link>> {
        self.inner.link.read().expect("link lock poisoned").clone()
    }

    /// Publishes `messages` in a round with whatever other requests are waiting.
    async fn publish_grouped(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        let (done, outcome) = oneshot::channel();
        {
            let mut waiting = self.inner.waiting.lock().expect("waiting lock poisoned");
            // The broker is not keeping up (or blocks publishers): back off rather than
            // queue without bound here.
            if waiting.len() >= MAX_WAITING {
                return Err(QueueError::Full);
            }
            waiting.push_back(Request {
                messages: messages.to_vec(),
                done,
            });
        }
        // Every request starts one round and every round takes at least one waiting
        // request, so none is left behind. A task, so that a caller who goes away does
        // not cancel the others' publish.
        let publisher = self.clone();
        tokio::spawn(async move { publisher.round().await });
        // A round waits for a channel and then for the confirms (bounded by the confirm
        // timeout); a broker that blocks publishers can stall it longer than that.
        match tokio::time::timeout(self.inner.config.confirm_timeout * 2, outcome).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(QueueError::Unavailable("publisher stopped".into())),
            Err(_) => Err(QueueError::NotConfirmed(
                "no confirm from RabbitMQ in time".into(),
            )),
        }
    }

    async fn round(&self) {
        let Ok(_permit) = self.inner.rounds.acquire().await else {
            return;
        };
        let group: Vec<Request> = {
            let mut waiting = self.inner.waiting.lock().expect("waiting lock poisoned");
            let mut taken = 0;
            let mut group = Vec::new();
            while let Some(next) = waiting.front() {
                if !group.is_empty() && taken + next.messages.len() > MESSAGES_PER_ENTRY {
                    break;
                }
                taken += next.messages.len();
                group.extend(waiting.pop_front());
            }
            group
        };
        if group.is_empty() {
            return;
        }
        // Moved, not copied: each request's messages were copied once already.
        let mut messages = Vec::new();
        let mut replies = Vec::with_capacity(group.len());
        for request in group {
            messages.extend(request.messages);
            replies.push(request.done);
        }
        let outcome = self.publish_all(&messages).await;
        for reply in replies {
            let _ = reply.send(outcome.clone());
        }
    }

    async fn publish_all(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        let link = self
            .current()
            .ok_or_else(|| QueueError::Unavailable("not connected to RabbitMQ".into()))?;
        let channel =
            &link.channels[link.next.fetch_add(1, Ordering::Relaxed) % link.channels.len()];
        let queue = self.inner.config.topology.queue.as_str();
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let mut pending = Vec::with_capacity(messages.len().div_ceil(MESSAGES_PER_ENTRY));
        for entry in messages.chunks(MESSAGES_PER_ENTRY) {
            let body = encode_entry(entry);
            let published = channel
                .basic_publish("".into(), queue.into(), options, &body, properties(entry))
                .await;
            match published {
                Ok(confirm) => pending.push(confirm),
                Err(error) => {
                    link.broken.notify_one();
                    return Err(QueueError::Unavailable(error.to_string()));
                }
            }
        }
        let confirms =
            match tokio::time::timeout(self.inner.config.confirm_timeout, try_join_all(pending))
                .await
            {
                Err(_) => {
                    return Err(QueueError::NotConfirmed(
                        "no confirm from RabbitMQ in time".into(),
                    ));
                }
                Ok(Err(error)) => {
                    link.broken.notify_one();
                    return Err(QueueError::Unavailable(error.to_string()));
                }
                Ok(Ok(confirms)) => confirms,
            };
        for confirm in confirms {
            match confirm {
                Confirmation::Ack(None) => {}
                Confirmation::Ack(Some(returned)) => {
                    // Unroutable: the queue was deleted under us. Reconnecting redeclares it.
                    link.broken.notify_one();
                    return Err(QueueError::NotConfirmed(format!(
                        "returned by RabbitMQ: {} {}",
                        returned.reply_code, returned.reply_text
                    )));
                }
                Confirmation::Nack(_) => {
                    return Err(QueueError::NotConfirmed("nacked by RabbitMQ".into()));
                }
                Confirmation::NotRequested => {
                    return Err(QueueError::NotConfirmed(
                        "channel is not in confirm mode".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl AlertQueue for Publisher {
    async fn publish(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        self.publish_grouped(messages).await
    }

    fn is_ready(&self) -> bool {
        self.is_connected()
    }
}

/// An entry's properties; its headers describe the first message (the only one,
/// unless a source posted a batch).
fn properties(entry: &[QueueMessage]) -> BasicProperties {
    let first = &entry[0];
    let mut headers = FieldTable::default();
    let kind = match first {
        QueueMessage::Alert(_) => "alert",
        QueueMessage::Cancel(_) => "cancel",
    };
    headers.insert("kind".into(), AMQPValue::LongString(kind.into()));
    headers.insert("messages".into(), AMQPValue::LongUInt(entry.len() as u32));
    if let Some(key) = first.idempotency_key() {
        headers.insert("idempotency-key".into(), AMQPValue::LongString(key.into()));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(first.id().to_string().into())
        .with_timestamp(now)
        .with_app_id("alert-listener".into())
        .with_headers(headers)
}

/// Keeps a link up: connect, declare, open channels; on failure, back off and redo.
async fn supervise(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    let mut backoff = Backoff::new(BackoffPolicy::RABBITMQ);
    let mut connected_before = false;
    while !*stop.borrow() {
        let delay = match establish(&inner.config).await {
            Ok(link) => {
                if connected_before {
                    inner.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                connected_before = true;
                backoff.reset();
                info!(queue = %inner.config.topology.queue, "connected to RabbitMQ");
                let link = Arc::new(link);
                *inner.link.write().expect("link lock poisoned") = Some(link.clone());
                wait_until_broken(&link, &mut stop).await;
                inner.link.write().expect("link lock poisoned").take();
                if *stop.borrow() {
                    return;
                }
                warn!("RabbitMQ connection lost; reconnecting");
                let _ = link.connection.close(320, "reconnecting".into()).await;
                backoff.next_delay()
            }
            Err(error) => {
                let delay = backoff.next_delay();
                warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot connect to RabbitMQ");
                delay
            }
        };
        if !sleep_or_stop(delay, &mut stop).await {
            return;
        }
    }
}

async fn establish(config: &PublisherConfig) -> Result<Link, lapin::Error> {
    let connection = crate::connect(&config.url, &config.connection_name).await?;
    let setup = connection.create_channel().await?;
    config.topology.declare(&setup).await?;
    let _ = setup.close(200, "declared".into()).await;
    let mut channels = Vec::with_capacity(config.channels.max(1));
    for _ in 0..config.channels.max(1) {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channels.push(channel);
    }
    Ok(Link {
        connection,
        channels,
        next: AtomicUsize::new(0),
        broken: Notify::new(),
    })
}

async fn wait_until_broken(link: &Link, stop: &mut watch::Receiver<bool>) {
    let mut events = link.connection.events_listener();
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = link.broken.notified() => return,
            _ = stop.changed() => return,
            event = events.next() => match event {
                Some(Event::Error(error)) => {
                    warn!(%error, "RabbitMQ connection error");
                    return;
                }
                None => return,
                Some(_) => {}
            },
            _ = check.tick() => {
                let healthy = link.connection.status().connected()
                    && link.channels.iter().all(|channel| channel.status().connected());
                if !healthy {
                    return;
                }
            }
        }
    }
}
