use std::{net::SocketAddr, time::Duration};

use alert_core::{Alert, QueueMessage};
use alert_notify::Config;
use alert_redis::{Store, StoreSettings};
use chrono::{DateTime, TimeDelta, Utc};
use lapin::options::QueueDeleteOptions;
use serde_json::Value;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub(crate) use alert_testkit::{Proxy, REDIS_URL, SioClient, WAIT, eventually, unique};

pub(crate) fn config(prefix: &str, redis_url: &str) -> Config {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.redis.redis_url = alert_core::Secret::new(redis_url);
    config.redis.redis_prefix = prefix.to_owned();
    config.service.shutdown_timeout_seconds = 2;
    config.clients.gap_check_ms = 200;
    config
}

/// A notify running in this process on a free port, with its own Redis prefix, and
/// a Store on the same prefix for the test to write events with.
pub(crate) struct TestApp {
    pub(crate) addr: SocketAddr,
    pub(crate) http: reqwest::Client,
    pub(crate) store: Store,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), alert_notify::RunError>>,
}

impl TestApp {
    pub(crate) async fn spawn(config: Config) -> TestApp {
        let store = Store::connect(REDIS_URL, config.redis.keys(), StoreSettings::default())
            .await
            .unwrap();
        let listener = TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(alert_notify::run(config, listener, async move {
            let _ = rx.await;
        }));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let app = TestApp {
            addr,
            http,
            store,
            shutdown: Some(tx),
            handle,
        };
        app.wait_ready().await;
        app
    }

    pub(crate) async fn ready(name: &str) -> TestApp {
        TestApp::spawn(config(&format!("{}:", unique(name)), REDIS_URL)).await
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The value of the first `/metrics` sample whose line starts with `sample` (name
    /// and labels), 0 when there is none.
    pub(crate) async fn metric(&self, sample: &str) -> f64 {
        let metrics = alert_testkit::get_text(&self.http, &self.url("/metrics")).await;
        metrics
            .lines()
            .find(|l| l.starts_with(sample))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until `/readyz` fails (the live feed is down).
    pub(crate) async fn wait_unready(&self) {
        eventually(WAIT, "readyz failing while the feed is down", || async {
            (self.readyz().await == 503).then_some(())
        })
        .await;
    }

    pub(crate) async fn readyz(&self) -> u16 {
        match self.http.get(self.url("/readyz")).send().await {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        }
    }

    pub(crate) async fn wait_ready(&self) {
        eventually(WAIT, "notify ready", || async {
            (self.readyz().await == 200).then_some(())
        })
        .await;
    }

    pub(crate) async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Applies `message` as the processor would; returns nothing (events follow).
    pub(crate) async fn apply(&self, message: &QueueMessage) {
        self.store.apply(message, None).await.unwrap();
    }

    pub(crate) async fn client(&self, auth: Value) -> SioClient {
        SioClient::connect(self.addr, auth)
            .await
            .expect("socket.io connect")
    }

    /// Stops notify the way SIGTERM would, and deletes its keys.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.handle).await.unwrap().unwrap();
        self.store.delete_all().await.unwrap();
    }
}

/// An alert for `location` starting now, lasting `minutes`.
pub(crate) fn alert(location: &str, alert_type: &str, minutes: i64) -> QueueMessage {
    alert_at(location, alert_type, Utc::now(), minutes)
}

pub(crate) fn alert_at(
    location: &str,
    alert_type: &str,
    start: DateTime<Utc>,
    minutes: i64,
) -> QueueMessage {
    QueueMessage::Alert(Alert::new(
        location,
        alert_type,
        start,
        start + TimeDelta::minutes(minutes),
    ))
}

/// Polls `addr`'s `/readyz` until it answers 200.
pub(crate) async fn wait_ready(addr: SocketAddr, what: &str) {
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(20), what, || async {
        let response = http
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
}

/// The listener and the processor in this process, on their own queue and prefix.
pub(crate) struct Ingest {
    pub(crate) queue: String,
    pub(crate) prefix: String,
    pub(crate) addr: SocketAddr,
    stops: Vec<oneshot::Sender<()>>,
    services: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Ingest {
    pub(crate) async fn start(name: &str) -> Ingest {
        let queue = unique(name);
        let prefix = format!("{queue}:");
        let (mut stops, mut services) = (Vec::new(), Vec::new());
        let mut stopper = || {
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            async move {
                let _ = stopped.await;
            }
        };
        let mut listener = alert_listener::Config::defaults();
        listener.amqp.queue = queue.clone();
        listener.service.shutdown_timeout_seconds = 2;
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        services.push(tokio::spawn(alert_listener::run(
            listener,
            socket,
            stopper(),
        )));
        let mut processor = alert_processor::Config::defaults();
        processor.amqp.queue = queue.clone();
        processor.redis.redis_prefix = prefix.clone();
        processor.service.shutdown_timeout_seconds = 2;
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let processor_addr = socket.local_addr().unwrap();
        services.push(tokio::spawn(alert_processor::run(
            processor,
            socket,
            stopper(),
        )));
        wait_ready(addr, "listener ready").await;
        wait_ready(processor_addr, "processor ready").await;
        Ingest {
            queue,
            prefix,
            addr,
            stops,
            services,
        }
    }

    pub(crate) async fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for service in self.services {
            service.await.unwrap().unwrap();
        }
        let connection = alert_amqp::connect(alert_testkit::AMQP_URL, "test cleanup")
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        for name in [self.queue.clone(), format!("{}.dead", self.queue)] {
            let _ = channel
                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
}
