//! `alert-processor`: turns the raw alert queue into the open / update / close story
//! of each location.
//!
//! # Data flow
//! RabbitMQ (manual ack, bounded prefetch) -> the handler decodes each entry (one
//! message, or a source's batch) and runs the aggregation script once per
//! `APPLY_BATCH` messages ([`alert_redis::Store::apply_batch`]: dedupe, window update,
//! close schedule, event log append and live publish, atomically) -> the delivery is
//! acked only after Redis committed all of its messages. While Redis is away messages
//! are held and retried in place (requeued only if the processor stops meanwhile), and a
//! message that can never succeed is dead-lettered with the reason. Every processor also
//! runs a closer ([`alert_redis::Store::close_due`]) that pops ended windows from the
//! close schedule; each window closes exactly once however many processors run.
//!
//! Redis outages: readiness follows the connection (it fails the moment the connection
//! drops) and the last command; `redis_status` logs each outage once. Retries pause as
//! [`alert_redis::Backoff`] says, cut short when the connection comes back, so held
//! messages and overdue closes go out as soon as Redis answers.

mod config;
mod metrics;
mod redis_status;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use alert_amqp::{ConsumerConfig, Disposition, Incoming};
use alert_core::{
    Backoff, BackoffPolicy, QueueMessage, decode_entry, sleep_or_stop,
    supervise::{Supervisor, TaskFailed},
};
use alert_redis::{Applied, Store, is_transient};
use axum::{
    Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::{net::TcpListener, sync::watch};
use tracing::{debug, info, warn};

pub use config::Config;
use metrics::Metrics;
use redis_status::RedisStatus;

/// Most windows one closer run closes (the next run follows at once if it was full).
const CLOSE_BATCH: u32 = 500;

struct Health {
    consumer_connected: Arc<AtomicBool>,
    redis: RedisStatus,
    metrics: Metrics,
}

/// Runs the processor until `shutdown` completes: stops consuming, finishes and acks the
/// messages in hand, stops the closer, then the health server. The health server, the
/// consumer and the closer are supervised: if one ends first, this returns an error
/// naming it.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let health = Arc::new(Health {
        consumer_connected: Arc::new(AtomicBool::new(false)),
        redis: RedisStatus::new(),
        metrics: Metrics::new(),
    });
    let mut tasks = Supervisor::new();
    // The health server stops last, once the messages in hand are settled.
    let (worked_tx, worked) = tokio::sync::oneshot::channel::<()>();
    tasks.spawn(
        "health HTTP server",
        alert_core::shutdown::serve(
            listener,
            tasks.serving().gate(router(health.clone())),
            async move {
                let _ = worked.await;
            },
            Duration::from_secs(5),
        ),
    );
    let stop = tasks.stop_signal();
    tasks.spawn("aggregation", async move {
        let result = work(config, health, stop).await;
        drop(worked_tx);
        result
    });
    tasks
        .run(async move {
            shutdown.await;
            info!("stopping: finishing in-flight messages");
        })
        .await?;
    Ok(())
}

async fn wait_for(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Connects to Redis (retrying), then consumes and closes windows until `stop`.
async fn work(
    config: Config,
    health: Arc<Health>,
    stop: watch::Receiver<bool>,
) -> Result<(), TaskFailed> {
    let Some(store) = connect_store(&config, &health, stop.clone()).await else {
        return Ok(());
    };
    let mut tasks = Supervisor::new();
    // The tasks stop on this supervisor's signal, which follows `stop`: ending on
    // `stop` itself could look like an unexpected end.
    let inner_stop = tasks.stop_signal();
    tasks.spawn(
        "Redis connection watcher",
        watch_connection(store.clone(), health.clone(), inner_stop.clone()),
    );
    tasks.spawn(
        "closer",
        close_loop(
            store.clone(),
            health.clone(),
            inner_stop.clone(),
            Duration::from_millis(config.close_poll_ms),
        ),
    );
    let consumer = ConsumerConfig {
        url: config.amqp.amqp_url.expose().to_owned(),
        topology: config.amqp.topology(),
        prefetch: config.prefetch,
        batch: config.apply_batch,
        connection_name: format!("alert-processor {}", std::process::id()),
        drain: config.service.shutdown_timeout(),
    };
    let handler = Handler {
        store,
        health: health.clone(),
        chunk: config.apply_batch.max(1),
        stop: inner_stop.clone(),
    };
    let consumer_stop = inner_stop;
    tasks.spawn("AMQP consumer", async move {
        let connected = handler.health.consumer_connected.clone();
        alert_amqp::consume(consumer, connected, consumer_stop, |batch| {
            handler.handle(batch)
        })
        .await;
    });
    tasks.run(wait_for(stop)).await
}

/// Connects to Redis, retrying until it answers or the processor stops.
async fn connect_store(
    config: &Config,
    health: &Health,
    mut stop: watch::Receiver<bool>,
) -> Option<Store> {
    let mut backoff = Backoff::new(BackoffPolicy::REDIS);
    loop {
        let keys = config.redis.keys();
        match Store::connect(
            config.redis.redis_url.expose(),
            keys,
            config.store_settings(),
        )
        .await
        {
            Ok(store) => {
                health.redis.answered();
                info!(prefix = %config.redis.redis_prefix, "connected to Redis");
                return Some(store);
            }
            Err(error) => {
                health.redis.unavailable(&error);
                debug!(%error, "cannot connect to Redis");
            }
        }
        if !sleep_or_stop(backoff.next_delay(), &mut stop).await {
            return None;
        }
    }
}

/// Follows the Redis connection, so that readiness fails the moment it drops rather
/// than when a held command times out. Its return is left to the next command that
/// succeeds: a connection that is back is not yet a Redis that answers (it may be
/// loading its data).
async fn watch_connection(store: Store, health: Arc<Health>, mut stop: watch::Receiver<bool>) {
    let mut connection = store.connection();
    loop {
        tokio::select! {
            changed = connection.changed() => {
                if changed.is_err() {
                    return;
                }
                if !*connection.borrow_and_update() {
                    health.redis.unavailable(&"connection lost");
                }
            }
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// The pause before retrying after a transient failure: `delay`, cut short when the
/// connection comes back (fred sends the commands it held at once then; a retry should
/// not lag behind them). `false` if the processor is stopping.
async fn pause(store: &Store, delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let mut connection = store.connection();
    let down = !*connection.borrow_and_update();
    let back = async move {
        if !down || connection.wait_for(|up| *up).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = back => true,
        _ = stop.wait_for(|stopped| *stopped) => false,
    }
}

/// What the handler needs, shared by every batch.
struct Handler {
    store: Store,
    health: Arc<Health>,
    /// Most messages per script call.
    chunk: usize,
    stop: watch::Receiver<bool>,
}

/// Why a batch was not applied.
enum Failure {
    /// The processor is stopping while Redis is away: requeue for another processor.
    Stopping,
    /// The script refused it: retrying cannot help.
    Rejected(fred::error::Error),
}

/// The ack policy, in one place. Applied (or a duplicate): ack. Redis away or busy: not
/// the message's fault, so it is held and retried in place until Redis answers (an
/// outage must not burn its delivery limit), and requeued only if the processor stops
/// meanwhile. Undecodable or refused by the script: dead-letter with the reason.
fn disposition(result: &Result<Vec<Applied>, Failure>) -> Disposition {
    match result {
        Ok(_) => Disposition::Ack,
        Err(Failure::Stopping) => Disposition::Requeue,
        Err(Failure::Rejected(error)) => {
            Disposition::DeadLetter(format!("rejected by the aggregation script: {error}"))
        }
    }
}

impl Handler {
    /// Applies a batch of deliveries, each holding one or more messages, in script calls
    /// of at most `chunk` messages, and decides the fate of each delivery: the worst of
    /// its messages' (dead-letter, then requeue, then ack).
    async fn handle(&self, batch: Vec<Incoming>) -> Vec<Disposition> {
        let metrics = &self.health.metrics;
        let mut dispositions = vec![Disposition::Ack; batch.len()];
        let mut messages = Vec::with_capacity(batch.len());
        let mut owners = Vec::with_capacity(batch.len());
        for (delivery, incoming) in batch.iter().enumerate() {
            match decode_entry(&incoming.data) {
                Ok(decoded) => {
                    owners.extend(std::iter::repeat_n(delivery, decoded.len()));
                    messages.extend(decoded);
                }
                Err(error) => {
                    warn!(%error, "undecodable message; dead-lettering it");
                    let dead = Disposition::DeadLetter(format!("undecodable message: {error}"));
                    metrics.messages.with_label_values(&[dead.label()]).inc();
                    dispositions[delivery] = dead;
                }
            }
        }
        // A delivery keeps the worst disposition of its messages.
        let mut keep_worst = |delivery: usize, disposition: Disposition| {
            let current = &mut dispositions[delivery];
            if disposition > *current {
                *current = disposition;
            }
        };
        let mut stopping = false;
        for (messages, owners) in messages.chunks(self.chunk).zip(owners.chunks(self.chunk)) {
            if stopping {
                // Stopping with Redis away: the rest goes back untouched, in order.
                for owner in owners {
                    keep_worst(*owner, Disposition::Requeue);
                }
                continue;
            }
            let result = self.apply(messages).await;
            stopping = matches!(result, Err(Failure::Stopping));
            if let Err(Failure::Rejected(error)) = &result
                && messages.len() > 1
            {
                // One message broke the script: apply them one by one to find it. Those
                // the failed call already applied are duplicates now, and change nothing.
                warn!(%error, batch = messages.len(), "batch rejected; applying one by one");
                for (message, owner) in messages.iter().zip(owners) {
                    let single = self.apply(std::slice::from_ref(message)).await;
                    keep_worst(*owner, self.settle(std::slice::from_ref(message), &single));
                }
                continue;
            }
            let disposition = self.settle(messages, &result);
            for owner in owners {
                keep_worst(*owner, disposition.clone());
            }
        }
        dispositions
    }

    /// Runs the script, retrying in place while Redis is away.
    async fn apply(&self, messages: &[QueueMessage]) -> Result<Vec<Applied>, Failure> {
        let metrics = &self.health.metrics;
        let mut backoff = Backoff::new(BackoffPolicy::REDIS);
        let mut stop = self.stop.clone();
        loop {
            let started = Instant::now();
            let result = self.store.apply_batch(messages, None).await;
            metrics
                .script_seconds
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(applied) => {
                    self.health.redis.answered();
                    return Ok(applied);
                }
                Err(error) if is_transient(&error) => {
                    // Logged once per outage, by the status, not once per message.
                    self.health.redis.unavailable(&error);
                    metrics.redis_retries.inc();
                    debug!(%error, batch = messages.len(), "Redis unavailable; holding the messages");
                    if !pause(&self.store, backoff.next_delay(), &mut stop).await {
                        return Err(Failure::Stopping);
                    }
                }
                Err(error) => return Err(Failure::Rejected(error)),
            }
        }
    }

    /// Records the outcome of `messages` and returns their disposition.
    fn settle(
        &self,
        messages: &[QueueMessage],
        result: &Result<Vec<Applied>, Failure>,
    ) -> Disposition {
        let metrics = &self.health.metrics;
        let settled = disposition(result);
        match result {
            Ok(applied) => {
                for (message, applied) in messages.iter().zip(applied) {
                    record(metrics, message, applied);
                }
            }
            Err(_) => {
                let outcome = settled.label();
                for message in messages {
                    warn!(alert_id = %message.id(), outcome, "message not applied");
                }
                metrics
                    .messages
                    .with_label_values(&[outcome])
                    .inc_by(messages.len() as u64);
            }
        }
        settled
    }
}

fn record(metrics: &Metrics, message: &QueueMessage, applied: &Applied) {
    let alert_id = message.id();
    if applied.duplicate {
        debug!(%alert_id, "duplicate; nothing changed");
        metrics.messages.with_label_values(&["duplicate"]).inc();
        return;
    }
    metrics.messages.with_label_values(&["applied"]).inc();
    metrics.count_events(applied.opens, applied.updates, applied.closes);
    metrics.observe_close_lags(&applied.close_lags_ms);
    if applied.opens + applied.updates + applied.closes > 0 {
        info!(%alert_id, opens = applied.opens, updates = applied.updates, closes = applied.closes, "alert applied");
    } else {
        debug!(%alert_id, "alert merged without an event");
    }
}

/// Closes ended windows: sleeps until the next end (at most `poll`, since other
/// processors open windows too), then pops whatever is due, `CLOSE_BATCH` at a time
/// without pausing (after an outage every overdue close goes out at once). When Redis
/// is away it waits for the connection to come back, with the same backoff as the
/// handler.
async fn close_loop(
    store: Store,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
    poll: Duration,
) {
    let metrics = &health.metrics;
    let mut backoff = Backoff::new(BackoffPolicy::REDIS);
    loop {
        let wait = match store.close_due(None, CLOSE_BATCH).await {
            Ok(closed) => {
                health.redis.answered();
                backoff.reset();
                metrics.count_events(0, 0, closed.closes);
                metrics.observe_close_lags(&closed.lags_ms);
                if closed.closes > 0 {
                    info!(closes = closed.closes, "windows closed");
                }
                let until_next = closed
                    .next_due
                    .and_then(|due| (due - closed.now).to_std().ok())
                    .unwrap_or(poll);
                if closed.closes == u64::from(CLOSE_BATCH) {
                    Duration::ZERO
                } else {
                    until_next.min(poll)
                }
            }
            Err(error) => {
                if is_transient(&error) {
                    health.redis.unavailable(&error);
                    debug!(%error, "closer cannot reach Redis");
                } else {
                    warn!(%error, "closer run failed");
                }
                if !pause(&store, backoff.next_delay(), &mut stop).await {
                    return;
                }
                continue;
            }
        };
        if !sleep_or_stop(wait, &mut stop).await {
            return;
        }
    }
}

fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(health)
}

fn is_ready(health: &Health) -> bool {
    health.consumer_connected.load(Ordering::SeqCst) && health.redis.is_up()
}

async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    if is_ready(&health) {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not consuming or Redis unavailable",
        )
    }
}

async fn metrics_text(State(health): State<Arc<Health>>) -> Response {
    let metrics = &health.metrics;
    metrics
        .consumer_connected
        .set(i64::from(health.consumer_connected.load(Ordering::SeqCst)));
    metrics.redis_connected.set(i64::from(health.redis.is_up()));
    alert_core::telemetry::metrics_response(&metrics.registry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::error::{Error, ErrorKind};

    #[test]
    fn ack_policy() {
        assert_eq!(disposition(&Ok(vec![Applied::default()])), Disposition::Ack);
        assert_eq!(disposition(&Err(Failure::Stopping)), Disposition::Requeue);
        let bug = Error::new(ErrorKind::Unknown, "ERR user_script:1: bad argument");
        assert!(matches!(
            disposition(&Err(Failure::Rejected(bug))),
            Disposition::DeadLetter(reason) if reason.contains("bad argument")
        ));
    }

    #[test]
    fn redis_away_or_busy_is_transient_a_script_error_is_not() {
        assert!(is_transient(&Error::new(ErrorKind::IO, "connection reset")));
        assert!(is_transient(&Error::new(
            ErrorKind::Unknown,
            "BUSY Redis is busy running a script"
        )));
        assert!(!is_transient(&Error::new(
            ErrorKind::Unknown,
            "ERR user_script:1: bad argument"
        )));
    }
}
