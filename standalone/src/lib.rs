//! `alert-standalone`: the whole broadcaster in one process, with no RabbitMQ and no
//! Redis. The same code serves it as in the distributed services; only the backends
//! behind core's boundaries change:
//!
//! | boundary | distributed | standalone |
//! |---|---|---|
//! | [`alert_core::AlertQueue`] | RabbitMQ quorum queue | [`MemoryQueue`]: bounded, journaled with `--data-dir` |
//! | aggregation | `aggregate.lua` in Redis | core's `Aggregator` ([`State`]) |
//! | [`alert_core::EventLog`] / [`alert_core::LiveFeed`] | Redis stream + pub/sub | [`State`]'s log and bus |
//!
//! Ingest is `alert_listener::router` on one port (4000), clients are
//! `alert_notify::serve` on another (4002, with the live page at `/`, and
//! `POST /api/alerts` too so that the page's test form posts same-origin).

mod config;
mod journal;
mod pipeline;
mod processor;
mod queue;
mod snapshot;
mod state;

use std::{future::Future, sync::Arc};

use alert_core::{Aggregator, supervise::Supervisor};
use alert_notify::Backend;
use chrono::TimeDelta;
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
};

use crate::queue::Route;

pub use config::Config;
pub use queue::MemoryQueue;
pub use state::{State, StateSettings};

/// Runs until `shutdown` completes: ingest and clients stop and drain, the processor
/// applies what was accepted, and with a data directory saves a last snapshot. The
/// ingest and clients servers, the live feed, the processor (close timer, snapshots)
/// and the journal are supervised: if one ends first, this returns an error naming it.
pub async fn run(
    config: Config,
    ingest_listener: TcpListener,
    clients_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let retention = &config.retention;
    let dedupe_ttl = TimeDelta::from_std(retention.dedupe_ttl()).unwrap_or(TimeDelta::MAX);
    let settings = StateSettings {
        dedupe_ttl,
        log_len: usize::try_from(retention.event_log_max_len).unwrap_or(usize::MAX),
        history_len: usize::try_from(retention.history_len).unwrap_or(usize::MAX),
    };
    let capacity = config.queue_capacity;
    let mut tasks = Supervisor::new();
    let (to_processor, batches) = mpsc::unbounded_channel();
    let (aggregator, queue, persist) = match &config.data_dir {
        Some(dir) => {
            let in_dir = |error| anyhow::anyhow!("DATA_DIR {}: {error}", dir.display());
            let snapshot = snapshot::read(dir).map_err(in_dir)?;
            let applied = snapshot.as_ref().map_or(0, |snapshot| snapshot.applied);
            let (journal, pending) = journal::open(dir, applied).map_err(in_dir)?;
            let mut aggregator = snapshot.map_or_else(
                || Aggregator::new(dedupe_ttl),
                |snapshot| snapshot.aggregator,
            );
            aggregator.set_dedupe_ttl(dedupe_ttl);
            if !pending.messages.is_empty() {
                to_processor.send(pending)?;
            }
            let (handle, journal) = journal.spawn(to_processor)?;
            // Its thread ends once every sender is gone: after everything else.
            tasks.spawn("journal", async move {
                match tokio::task::spawn_blocking(move || journal.join()).await {
                    Ok(Ok(())) => Ok(()),
                    _ => Err("the journal thread panicked"),
                }
            });
            let queue = MemoryQueue::new(capacity, Route::Journal(handle.clone()));
            let persist = processor::Persist {
                dir: dir.clone(),
                journal: handle,
                interval: std::time::Duration::from_millis(config.snapshot_interval_ms.max(10)),
            };
            (aggregator, queue, Some(persist))
        }
        None => {
            let queue = MemoryQueue::new(capacity, Route::Processor(to_processor));
            (Aggregator::new(dedupe_ttl), queue, None)
        }
    };
    let state = Arc::new(State::new(aggregator, settings));
    let ingest = config.ingest.ingest(queue)?;
    let ingest = Arc::new(ingest);

    // The processor stops once ingest has drained: everything accepted has reached it.
    let (stop_processor, processor_stop) = watch::channel(false);
    tasks.spawn(
        "processor",
        processor::run(state.clone(), batches, persist, processor_stop),
    );
    announce(&config, &ingest_listener, &clients_listener)?;
    let drain = config.service.shutdown_timeout();
    let ingest_server = alert_core::shutdown::serve(
        ingest_listener,
        tasks.serving().gate(alert_listener::router(ingest.clone())),
        tasks.stopping(),
        drain,
    );
    tasks.spawn("ingest HTTP server", async move {
        let served = ingest_server.await;
        stop_processor.send_replace(true);
        served
    });
    // The live page's form posts same-origin.
    let page_ingest = alert_listener::ingest_router(ingest);
    let backend = Backend {
        log: state.clone(),
        live: Box::new(state.subscribe()),
    };
    let (settings, stopping, serving) = (config.clients.clone(), tasks.stopping(), tasks.serving());
    tasks.spawn("clients", async move {
        let clients = alert_notify::serve(
            backend,
            &settings,
            page_ingest,
            clients_listener,
            stopping,
            drain,
            serving,
        );
        clients.await
    });
    tasks.run(shutdown).await?;
    Ok(())
}

fn announce(config: &Config, ingest: &TcpListener, clients: &TcpListener) -> std::io::Result<()> {
    let host = |addr: std::net::SocketAddr| match addr.ip().is_unspecified() {
        true => format!("localhost:{}", addr.port()),
        false => addr.to_string(),
    };
    let (ingest, clients) = (host(ingest.local_addr()?), host(clients.local_addr()?));
    let storage = match &config.data_dir {
        Some(dir) => format!("state kept in {}", dir.display()),
        None => "state in memory only (use --data-dir to keep it across restarts)".into(),
    };
    tracing::info!(
        "alert broadcaster (standalone) ready\n  live page:   http://{clients}/\n  \
         post alerts: http://{ingest}/api/alerts\n  API docs:    \
         http://{ingest}/api/openapi.json\n  Socket.IO:   ws://{clients}/socket.io/\n  {storage}"
    );
    Ok(())
}
