use std::{net::SocketAddr, time::Duration};

use alert_core::{Alert, QueueMessage};
use alert_notify::Config;
use alert_redis::{Store, StoreSettings};
use alert_testkit::Spawned;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

pub(crate) use alert_testkit::{Proxy, REDIS_URL, SioClient, WAIT, eventually, unique};

pub(crate) fn config(prefix: &str, redis_url: &str) -> Config {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.redis.redis_url = alert_core::Secret::new(redis_url);
    config.redis.redis_prefix = prefix.to_owned();
    config.service.shutdown_timeout_seconds = 2;
    config.clients.gap_check_ms = 200;
    // Every test client is 127.0.0.1, hundreds a second: limits.rs sets its own.
    config.clients.addresses = alert_notify::AddressLimitArgs::off();
    config
}

/// A notify running in this process on a free port, with its own Redis prefix, and
/// a Store on the same prefix for the test to write events with.
pub(crate) struct TestApp {
    pub(crate) addr: SocketAddr,
    pub(crate) http: reqwest::Client,
    pub(crate) store: Store,
    service: Spawned<alert_notify::RunError>,
}

impl TestApp {
    pub(crate) async fn spawn(config: Config) -> TestApp {
        let store = Store::connect(REDIS_URL, config.redis.keys(), StoreSettings::default())
            .await
            .unwrap();
        let service = alert_testkit::spawn(|listener, shutdown| {
            alert_notify::run(config, listener, shutdown)
        })
        .await;
        let app = TestApp {
            addr: service.addr(),
            http: service.http().clone(),
            store,
            service,
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
        self.service.readyz().await
    }

    pub(crate) async fn wait_ready(&self) {
        self.service.wait_ready_within(WAIT).await;
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
    pub(crate) async fn stop(self) {
        self.service.stop().await.unwrap();
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

/// The listener and the processor in this process, on their own queue and prefix.
pub(crate) struct Ingest {
    pub(crate) queue: String,
    pub(crate) prefix: String,
    pub(crate) addr: SocketAddr,
    listener: Spawned<std::io::Error>,
    processor: Spawned<std::io::Error>,
}

impl Ingest {
    pub(crate) async fn start(name: &str) -> Ingest {
        let queue = unique(name);
        let prefix = format!("{queue}:");
        let mut config = alert_listener::Config::defaults();
        config.amqp.queue = queue.clone();
        config.service.shutdown_timeout_seconds = 2;
        let listener =
            alert_testkit::spawn(|socket, shutdown| alert_listener::run(config, socket, shutdown))
                .await;
        let mut config = alert_processor::Config::defaults();
        config.amqp.queue = queue.clone();
        config.redis.redis_prefix = prefix.clone();
        config.service.shutdown_timeout_seconds = 2;
        let processor =
            alert_testkit::spawn(|socket, shutdown| alert_processor::run(config, socket, shutdown))
                .await;
        let ready = Duration::from_secs(20);
        listener.wait_ready_within(ready).await;
        processor.wait_ready_within(ready).await;
        Ingest {
            queue,
            prefix,
            addr: listener.addr(),
            listener,
            processor,
        }
    }

    pub(crate) async fn stop(self) {
        let (listener, processor) = futures::join!(self.listener.stop(), self.processor.stop());
        listener.unwrap();
        processor.unwrap();
        alert_testkit::delete_queues(&self.queue).await;
    }
}

/// The stock client scripts and their installed packages.
pub(crate) fn clients_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// The Python with python-socketio (`scripts/clients` installs it).
pub(crate) fn python() -> String {
    std::env::var("ALERT_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Whether `program` runs (`--version`).
pub(crate) fn have(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
