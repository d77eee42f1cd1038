use std::{net::SocketAddr, time::Duration};

use alert_core::{Alert, QueueMessage};
use alert_notify::Config;
use alert_redis::{Store, StoreSettings};
use chrono::{DateTime, TimeDelta, Utc};
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
