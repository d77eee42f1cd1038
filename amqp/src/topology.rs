use std::str::FromStr;

use lapin::{
    Channel,
    options::{QueueDeclareOptions, QueueDeleteOptions},
    types::{AMQPValue, FieldTable},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueKind {
    /// Replicated, and enforces the delivery limit itself: the production choice.
    #[default]
    Quorum,
    /// Single-node; the processor counts redeliveries itself.
    Classic,
}

impl FromStr for QueueKind {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "quorum" => Ok(QueueKind::Quorum),
            "classic" => Ok(QueueKind::Classic),
            other => Err(format!(
                "unknown queue type {other:?}: use quorum or classic"
            )),
        }
    }
}

impl QueueKind {
    fn as_str(self) -> &'static str {
        match self {
            QueueKind::Quorum => "quorum",
            QueueKind::Classic => "classic",
        }
    }
}

/// The raw queue and its dead-letter queue. Every service declares it with the same
/// arguments (RabbitMQ refuses a redeclaration that differs), so it lives here once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub queue: String,
    pub kind: QueueKind,
    /// Deliveries after which a message is dead-lettered instead of redelivered.
    pub delivery_limit: u32,
}

/// Where `queue` dead-letters to.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dead")
}

/// Deletes `queue` and its dead-letter queue (a queue that does not exist is no
/// error): how tests and the fuzzer leave the broker as they found it.
pub async fn delete_with_dead_letters(channel: &Channel, queue: &str) -> Result<(), lapin::Error> {
    for name in [queue.to_owned(), dead_letter_queue(queue)] {
        channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    Ok(())
}

impl Topology {
    pub fn dead_letter_queue(&self) -> String {
        dead_letter_queue(&self.queue)
    }

    /// Declares the dead-letter queue, then the queue that dead-letters into it.
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let mut dead = FieldTable::default();
        dead.insert("x-queue-type".into(), text(self.kind.as_str()));
        channel
            .queue_declare(self.dead_letter_queue().as_str().into(), durable, dead)
            .await?;

        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), text(self.kind.as_str()));
        args.insert("x-dead-letter-exchange".into(), text(""));
        args.insert(
            "x-dead-letter-routing-key".into(),
            text(&self.dead_letter_queue()),
        );
        if self.kind == QueueKind::Quorum {
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(self.delivery_limit.into()),
            );
            // Dead-letter with confirms, so a poison message is never dropped on the way.
            args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
            args.insert("x-overflow".into(), text("reject-publish"));
        }
        channel
            .queue_declare(self.queue.as_str().into(), durable, args)
            .await?;
        Ok(())
    }
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

/// The RabbitMQ settings every service that touches the raw queue takes, flattened into
/// its `Config` so each flag and variable is defined once.
#[derive(Debug, Clone, clap::Args)]
pub struct AmqpArgs {
    /// RabbitMQ URL; `?heartbeat=N` is honoured (default 10 s).
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: alert_core::Secret,
    /// Raw alert queue; dead letters go to `<queue>.dead`.
    #[arg(long, env = "AMQP_QUEUE", default_value = "alerts.raw")]
    pub queue: String,
    /// `quorum` (replicated, the default) or `classic`; the same for every service.
    #[arg(long, env = "AMQP_QUEUE_TYPE", default_value = "quorum")]
    pub queue_type: QueueKind,
    /// Deliveries of a message before it is dead-lettered; the same for every service.
    #[arg(long, env = "AMQP_DELIVERY_LIMIT", default_value_t = 5)]
    pub delivery_limit: u32,
}

impl AmqpArgs {
    pub fn topology(&self) -> Topology {
        Topology {
            queue: self.queue.clone(),
            kind: self.queue_type,
            delivery_limit: self.delivery_limit,
        }
    }
}
