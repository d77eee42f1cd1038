use std::str::FromStr;

use lapin::{
    Channel,
    options::QueueDeclareOptions,
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

impl Topology {
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.queue)
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
