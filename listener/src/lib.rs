//! `alert-listener`: the ingest edge of the alert broadcaster.
//!
//! # Data flow
//! `POST /api/alerts` (JSON or CAP XML) -> [`alert_core::input`] / [`alert_core::cap`]
//! validate and stamp each alert with a UUID -> the [`AlertQueue`] publishes every
//! message persistently with publisher confirms -> `202 {"ids": [...]}`. Nothing is
//! acknowledged to a source before RabbitMQ has confirmed it; a broker outage is a 503
//! with `Retry-After`, and the publisher reconnects in the background.
//!
//! [`run`] wires the RabbitMQ publisher; [`http::router`] takes any queue, so the
//! standalone mode serves the same routes over its in-process queue.

mod config;
pub mod http;
mod metrics;
mod sources;

use std::{future::Future, sync::Arc};

use alert_amqp::{Publisher, PublisherConfig};
use alert_core::supervise::Supervisor;
use tokio::net::TcpListener;

pub use config::{Config, IngestArgs};
pub use http::{Ingest, IngestError, ingest_router, router};
pub use sources::{ApiKeysError, SIGNATURE_WINDOW_SECONDS, SignatureError};

/// Runs the listener on `listener` until `shutdown` completes, then drains in-flight
/// requests (so their publishes finish and are answered) and closes the broker link.
/// The HTTP server is supervised: should it end first, this returns an error naming it.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let publisher = Publisher::start(PublisherConfig {
        url: config.amqp.amqp_url.expose().to_owned(),
        topology: config.amqp.topology(),
        channels: config.amqp_channels,
        confirm_timeout: config.confirm_timeout(),
        connection_name: format!("alert-listener {}", std::process::id()),
    });
    let ingest = match config.ingest.ingest(publisher.clone()) {
        Ok(ingest) => ingest,
        Err(error) => {
            publisher.close().await;
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                error.to_string(),
            ));
        }
    };
    let ingest = Arc::new(ingest);
    tracing::info!(addr = %listener.local_addr()?, queue = %config.amqp.queue, "listener serving");
    let mut tasks = Supervisor::new();
    let router = tasks.serving().gate(router(ingest));
    let stopping = tasks.stopping();
    tasks.spawn(
        "ingest HTTP server",
        alert_core::shutdown::serve(
            listener,
            router,
            stopping,
            config.service.shutdown_timeout(),
        ),
    );
    let served = tasks.run(shutdown).await;
    publisher.close().await;
    Ok(served?)
}
