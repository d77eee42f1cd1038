//! What the fuzzer runs against, all in this process:
//! - the listener's router twice, in-process over a queue that accepts everything
//!   (one open, one requiring API keys): most ingest inputs go here;
//! - the real services on loopback, as in production: listener (RabbitMQ), processor
//!   (RabbitMQ -> Redis) and notify (Redis), on a queue and key prefix of their own,
//!   seeded with a few open windows so that snapshots and replays have something in them.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use alert_core::{AlertQueue, QueueError, QueueMessage, Secret};
use alert_redis::{Store, StoreSettings};
use anyhow::Context as _;
use axum::Router;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::{
    case::{Blob, HttpCase},
    http1::{self, Conn, Response},
    synth::LOCATIONS,
};

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// An [`AlertQueue`] that takes everything at once: the in-process ingest measures
/// the edge, not the broker.
struct Sink;

impl AlertQueue for Sink {
    async fn publish(&self, _messages: &[QueueMessage]) -> Result<(), QueueError> {
        Ok(())
    }

    fn is_ready(&self) -> bool {
        true
    }
}

pub struct Stack {
    /// The listener's routes without authentication.
    pub open: Router,
    /// The listener's routes with `API_KEYS` set (rate limits included).
    pub keyed: Router,
    pub api_key: String,
    pub services: Option<Services>,
}

/// The real listener, processor and notify on loopback.
pub struct Services {
    pub listener: SocketAddr,
    pub notify: SocketAddr,
    pub queue: String,
    store: Store,
    stops: Vec<oneshot::Sender<()>>,
    handles: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

pub const API_KEY: &str = "fuzz-key-0123456789abcdef";

impl Stack {
    /// The in-process routers, and the real services when `services`.
    pub async fn start(services: bool) -> anyhow::Result<Stack> {
        let args = alert_listener::Config::defaults().ingest;
        let open = args.ingest(Sink).map_err(anyhow::Error::msg)?;
        let mut keyed_args = args.clone();
        keyed_args.api_keys =
            Secret::new(format!("fuzz={API_KEY},other=other-key-0123456789abcdef"));
        let keyed = keyed_args.ingest(Sink).map_err(anyhow::Error::msg)?;
        let services = match services {
            true => Some(Services::start().await?),
            false => None,
        };
        Ok(Stack {
            open: alert_listener::router(Arc::new(open)),
            keyed: alert_listener::router(Arc::new(keyed)),
            api_key: API_KEY.to_owned(),
            services,
        })
    }

    pub fn services(&self) -> anyhow::Result<&Services> {
        self.services
            .as_ref()
            .context("this target needs the loopback services")
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        match self.services {
            Some(services) => services.stop().await,
            None => Ok(()),
        }
    }
}

impl Services {
    async fn start() -> anyhow::Result<Services> {
        let queue = format!(
            "test.fuzz.{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let prefix = format!("{queue}:");
        let mut stops = Vec::new();
        let mut stopper = || {
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            async move {
                let _ = stopped.await;
            }
        };
        let mut handles: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)> = Vec::new();

        let mut listener = alert_listener::Config::defaults();
        listener.amqp.queue = queue.clone();
        listener.service.shutdown_timeout_seconds = 2;
        let socket = TcpListener::bind("127.0.0.1:0").await?;
        let listener_addr = socket.local_addr()?;
        let served = alert_listener::run(listener, socket, stopper());
        handles.push(("listener", tokio::spawn(async move { Ok(served.await?) })));

        let mut processor = alert_processor::Config::defaults();
        processor.amqp.queue = queue.clone();
        processor.redis.redis_prefix = prefix.clone();
        processor.service.shutdown_timeout_seconds = 2;
        let socket = TcpListener::bind("127.0.0.1:0").await?;
        let processor_addr = socket.local_addr()?;
        let served = alert_processor::run(processor, socket, stopper());
        handles.push(("processor", tokio::spawn(async move { Ok(served.await?) })));

        let mut notify = alert_notify::Config::defaults();
        notify.redis.redis_prefix = prefix.clone();
        notify.service.shutdown_timeout_seconds = 2;
        // Every case comes from 127.0.0.1, thousands a second: no per-address limit.
        notify.clients.addresses = alert_notify::AddressLimitArgs::off();
        let socket = TcpListener::bind("127.0.0.1:0").await?;
        let notify_addr = socket.local_addr()?;
        let store =
            Store::connect(REDIS_URL, notify.redis.keys(), StoreSettings::default()).await?;
        let served = alert_notify::run(notify, socket, stopper());
        handles.push(("notify", tokio::spawn(async move { Ok(served.await?) })));

        let services = Services {
            listener: listener_addr,
            notify: notify_addr,
            queue,
            store,
            stops,
            handles,
        };
        for (addr, what) in [
            (listener_addr, "listener"),
            (processor_addr, "processor"),
            (notify_addr, "notify"),
        ] {
            wait_for(what, || async move {
                get(addr, "/readyz").await.is_ok_and(|r| r.status == 200)
            })
            .await?;
        }
        services.seed().await?;
        Ok(services)
    }

    /// Opens a window for each of [`LOCATIONS`], and waits until notify shows them.
    async fn seed(&self) -> anyhow::Result<()> {
        let alerts: Vec<serde_json::Value> = LOCATIONS
            .iter()
            .map(|location| {
                serde_json::json!({
                    "location": location,
                    "type": "Rocket Alert",
                    "timestamp": chrono::Utc::now().to_rfc3339(),
                    "duration": 60,
                })
            })
            .collect();
        let response = post_json(self.listener, &serde_json::Value::from(alerts)).await?;
        anyhow::ensure!(response.status == 202, "seed alerts: {}", response.status);
        let notify = self.notify;
        wait_for("the seed windows in notify", || async move {
            let Ok(response) = get(notify, "/api/active").await else {
                return false;
            };
            let active: serde_json::Value =
                serde_json::from_slice(&response.body).unwrap_or_default();
            active["active"].as_array().map_or(0, Vec::len) >= LOCATIONS.len()
        })
        .await
    }

    /// notify's epoch and the offsets in its log (for `since` values that resume).
    pub async fn positions(&self) -> anyhow::Result<(Option<String>, Vec<String>)> {
        let response = get(self.notify, "/api/events?limit=100").await?;
        let page: serde_json::Value = serde_json::from_slice(&response.body)?;
        let epoch = page["epoch"].as_str().map(str::to_owned);
        let offsets = page["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["offset"].as_str().map(str::to_owned))
            .collect();
        Ok((epoch, offsets))
    }

    /// Stops the services as SIGTERM would, then deletes their queues and keys.
    async fn stop(self) -> anyhow::Result<()> {
        for stop in self.stops {
            let _ = stop.send(());
        }
        let mut failed = Vec::new();
        for (name, handle) in self.handles {
            match tokio::time::timeout(Duration::from_secs(20), handle).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => failed.push(format!("{name}: {error}")),
                Ok(Err(error)) => failed.push(format!("{name}: {error}")),
                Err(_) => failed.push(format!("{name}: did not stop in 20 s")),
            }
        }
        self.store.delete_all().await?;
        let connection = alert_amqp::connect(AMQP_URL, "alert-fuzz cleanup").await?;
        let channel = connection.create_channel().await?;
        alert_amqp::delete_with_dead_letters(&channel, &self.queue).await?;
        anyhow::ensure!(
            failed.is_empty(),
            "services ended badly: {}",
            failed.join("; ")
        );
        Ok(())
    }
}

/// One GET on a fresh connection.
pub async fn get(addr: SocketAddr, target: &str) -> anyhow::Result<Response> {
    let case = HttpCase {
        method: "GET".into(),
        target: target.into(),
        headers: Vec::new(),
        body: Blob::default(),
    };
    request(addr, &case).await
}

pub async fn post_json(addr: SocketAddr, body: &serde_json::Value) -> anyhow::Result<Response> {
    let case = HttpCase {
        method: "POST".into(),
        target: "/api/alerts".into(),
        headers: vec![(
            "content-type".into(),
            Blob::from(b"application/json".to_vec()),
        )],
        body: Blob::from(body.to_string()),
    };
    request(addr, &case).await
}

async fn request(addr: SocketAddr, case: &HttpCase) -> anyhow::Result<Response> {
    let mut conn = Conn::connect(addr).await?;
    conn.send(&http1::encode(case, &addr.to_string())).await?;
    conn.read(false)
        .await?
        .context("the connection closed without an answer")
}

async fn wait_for<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
