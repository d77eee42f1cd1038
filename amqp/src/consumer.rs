use std::{
    collections::BTreeSet,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use alert_core::{Backoff, BackoffPolicy, sleep_or_stop};
use futures::StreamExt;
use lapin::{
    BasicProperties, Channel, Confirmation,
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
        BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    },
    types::{AMQPValue, FieldTable},
};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::Topology;

/// Header carrying why the processor dead-lettered a message.
pub const ERROR_HEADER: &str = "x-alert-error";

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub url: String,
    pub topology: Topology,
    /// Unacknowledged deliveries at once: the bound on in-flight work.
    pub prefetch: u16,
    /// Most deliveries handed to the handler at once (whatever has arrived, so a lone
    /// message is never held back waiting for company).
    pub batch: usize,
    pub connection_name: String,
    /// On shutdown, how long in-flight deliveries may take to be settled.
    pub drain: Duration,
}

/// What to do with a delivery once handled, in order of badness: a delivery that holds
/// several messages takes the worst (`max`) of theirs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Disposition {
    /// Done (its effects are committed): remove it from the queue.
    Ack,
    /// A transient failure: put it back for another try (the queue's delivery limit
    /// dead-letters it if it keeps failing).
    Requeue,
    /// It can never succeed: move it to the dead-letter queue with this reason.
    DeadLetter(String),
}

impl Disposition {
    /// The outcome as the metrics and logs name it.
    pub fn label(&self) -> &'static str {
        match self {
            Disposition::Ack => "acked",
            Disposition::Requeue => "requeued",
            Disposition::DeadLetter(_) => "dead_lettered",
        }
    }
}

/// A delivered message, as the handler sees it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub data: Vec<u8>,
}

/// Consumes the queue until `stop` turns true: connects, declares the topology, takes
/// up to `prefetch` deliveries at once, hands them to `handle` in batches of what has
/// arrived (at most `batch`; a lone message is never held back waiting for company),
/// and settles each as `handle` decides: one disposition per delivery, in order.
/// Reconnects with backoff. On stop, cancels the consumer and lets in-flight
/// deliveries finish.
pub async fn consume<H, F>(
    config: ConsumerConfig,
    connected: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
    handle: H,
) where
    H: Fn(Vec<Incoming>) -> F + Send + Sync,
    F: Future<Output = Vec<Disposition>> + Send,
{
    let mut backoff = Backoff::new(BackoffPolicy::RABBITMQ);
    while !*stop.borrow() {
        let result = session(&config, &connected, &mut stop, &handle, &mut backoff).await;
        connected.store(false, Ordering::SeqCst);
        let delay = backoff.next_delay();
        match result {
            Ok(()) if *stop.borrow() => return,
            Ok(()) => warn!("RabbitMQ consumer ended; reconnecting"),
            Err(error) => {
                warn!(%error, retry_in_ms = delay.as_millis() as u64, "RabbitMQ consumer failed")
            }
        }
        if !sleep_or_stop(delay, &mut stop).await {
            return;
        }
    }
}

async fn session<H, F>(
    config: &ConsumerConfig,
    connected: &AtomicBool,
    stop: &mut watch::Receiver<bool>,
    handle: &H,
    backoff: &mut Backoff,
) -> Result<(), lapin::Error>
where
    H: Fn(Vec<Incoming>) -> F + Send + Sync,
    F: Future<Output = Vec<Disposition>> + Send,
{
    let connection = crate::connect(&config.url, &config.connection_name).await?;
    let channel = connection.create_channel().await?;
    config.topology.declare(&channel).await?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await?;
    let dead_letters = connection.create_channel().await?;
    dead_letters
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let tag = format!(
        "{}-{}",
        config.connection_name,
        uuid::Uuid::new_v4().simple()
    );
    let consumer = channel
        .basic_consume(
            config.topology.queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    connected.store(true, Ordering::SeqCst);
    backoff.reset();
    info!(queue = %config.topology.queue, prefetch = config.prefetch, "consuming");

    let dead_letter_queue = config.topology.dead_letter_queue();
    let batch = config.batch.max(1);
    let concurrency = (usize::from(config.prefetch) / batch).max(1);
    let window = std::sync::Mutex::new(AckWindow::default());
    // Highest tag acked so far; its lock keeps acks going out in tag order.
    let acked_upto = tokio::sync::Mutex::new(0u64);
    let (window, acked_upto, channel_ref, dead_letters, dead_letter_queue) = (
        &window,
        &acked_upto,
        &channel,
        &dead_letters,
        &dead_letter_queue,
    );
    let work = consumer
        .ready_chunks(batch)
        .map(|deliveries| {
            let deliveries: Vec<Delivery> = deliveries
                .into_iter()
                .filter_map(|delivery| {
                    delivery
                        .map_err(|error| warn!(%error, "delivery failed"))
                        .ok()
                })
                .collect();
            // Registered in arrival order, before any batch can finish.
            let mut window = window.lock().expect("ack window lock poisoned");
            deliveries
                .iter()
                .for_each(|delivery| window.start(delivery.delivery_tag));
            deliveries
        })
        .for_each_concurrent(concurrency, |deliveries| async move {
            if deliveries.is_empty() {
                return;
            }
            let incoming = deliveries
                .iter()
                .map(|delivery| Incoming {
                    data: delivery.data.clone(),
                })
                .collect();
            let dispositions = handle(incoming).await;
            debug_assert_eq!(
                dispositions.len(),
                deliveries.len(),
                "one disposition per delivery"
            );
            let mut acked = Vec::with_capacity(deliveries.len());
            let mut settled = Vec::new();
            for (delivery, disposition) in deliveries.into_iter().zip(dispositions) {
                let tag = delivery.delivery_tag;
                if disposition == Disposition::Ack {
                    acked.push(tag);
                } else {
                    settle(dead_letters, dead_letter_queue, delivery, disposition).await;
                    settled.push(tag);
                }
            }
            // One ack with `multiple` for every finished delivery below the oldest
            // unfinished one. Acks go out in tag order: one overtaken by a later, larger
            // ack is already covered by it.
            let upto = window
                .lock()
                .expect("ack window lock poisoned")
                .finish(&acked, &settled);
            if let Some(upto) = upto {
                let mut sent = acked_upto.lock().await;
                if upto > *sent {
                    match channel_ref
                        .basic_ack(upto, BasicAckOptions { multiple: true })
                        .await
                    {
                        Ok(_) => *sent = upto,
                        // The channel is gone: RabbitMQ requeues the deliveries by itself.
                        Err(error) => warn!(%error, "cannot ack"),
                    }
                }
            }
        });
    tokio::pin!(work);
    tokio::select! {
        () = &mut work => return Ok(()),
        _ = stop.changed() => {}
    }
    // Stop taking new deliveries, then let the ones in hand finish and be settled;
    // whatever is left unacked is requeued by RabbitMQ when the connection closes.
    let _ = channel
        .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await;
    if tokio::time::timeout(config.drain, &mut work).await.is_err() {
        warn!("in-flight deliveries not finished in time; they will be redelivered");
    }
    let _ = connection.close(200, "shutting down".into()).await;
    Ok(())
}

async fn settle(
    dead_letters: &Channel,
    dead_letter_queue: &str,
    delivery: Delivery,
    disposition: Disposition,
) {
    let settled = match disposition {
        Disposition::Ack => delivery.ack(BasicAckOptions::default()).await,
        Disposition::Requeue => {
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    multiple: false,
                })
                .await
        }
        Disposition::DeadLetter(reason) => {
            match dead_letter(dead_letters, dead_letter_queue, &delivery, &reason).await {
                Ok(()) => delivery.ack(BasicAckOptions::default()).await,
                Err(error) => {
                    warn!(%error, "cannot dead-letter; requeueing");
                    delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            multiple: false,
                        })
                        .await
                }
            }
        }
    };
    if let Err(error) = settled {
        // The channel is gone: RabbitMQ requeues the delivery by itself.
        warn!(%error, "cannot settle delivery");
    }
}

/// Copies the message into the dead-letter queue with the reason, confirmed.
async fn dead_letter(
    channel: &Channel,
    queue: &str,
    delivery: &Delivery,
    reason: &str,
) -> Result<(), lapin::Error> {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(ERROR_HEADER.into(), AMQPValue::LongString(reason.into()));
    let properties: BasicProperties = delivery
        .properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(2);
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            &delivery.data,
            properties,
        )
        .await?
        .await?;
    match confirm {
        Confirmation::Ack(_) => Ok(()),
        _ => Err(lapin::Error::from(std::io::Error::other(
            "dead-letter publish not confirmed",
        ))),
    }
}

/// Deliveries handed to the handler but not yet settled, so acks can be coalesced: one
/// `multiple` ack covers every finished delivery below the oldest unfinished one
/// (batches finish out of order; RabbitMQ's tags grow in delivery order).
#[derive(Debug, Default)]
struct AckWindow {
    unfinished: BTreeSet<u64>,
    finished: BTreeSet<u64>,
}

impl AckWindow {
    fn start(&mut self, tag: u64) {
        self.unfinished.insert(tag);
    }

    /// `acked` are done and to be acked; `settled` were settled another way (nack,
    /// dead letter). Returns the tag to ack with `multiple`, if any.
    fn finish(&mut self, acked: &[u64], settled: &[u64]) -> Option<u64> {
        for tag in acked {
            self.unfinished.remove(tag);
            self.finished.insert(*tag);
        }
        for tag in settled {
            self.unfinished.remove(tag);
        }
        let limit = self.unfinished.first().copied().unwrap_or(u64::MAX);
        let upto = self.finished.range(..limit).next_back().copied()?;
        self.finished = self.finished.split_off(&(upto + 1));
        Some(upto)
    }
}

#[cfg(test)]
mod tests {
    use super::AckWindow;

    #[test]
    fn acks_wait_for_older_unfinished_deliveries() {
        let mut window = AckWindow::default();
        (1..=6).for_each(|tag| window.start(tag));
        assert_eq!(window.finish(&[4, 5, 6], &[]), None, "1-3 still in hand");
        assert_eq!(
            window.finish(&[1], &[2]),
            Some(1),
            "2 was nacked; 3 still in hand"
        );
        assert_eq!(
            window.finish(&[3], &[]),
            Some(6),
            "everything up to 6 at once"
        );
        assert_eq!(window.finish(&[], &[]), None);
        window.start(7);
        assert_eq!(window.finish(&[], &[7]), None, "nothing left to ack");
    }
}
