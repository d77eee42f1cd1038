use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use alert_core::{QueueMessage, Secret};
use alert_listener::Config;
use lapin::{
    BasicProperties, Channel, Connection,
    message::BasicGetMessage,
    options::{BasicAckOptions, BasicGetOptions, QueueDeleteOptions},
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub(crate) use alert_testkit::{AMQP_URL, Proxy, unique};

/// An AMQP URL through `proxy`, with a short heartbeat so a cut is noticed quickly.
pub(crate) fn proxied_url(proxy: &Proxy) -> String {
    format!("amqp://guest:guest@{}/%2f?heartbeat=2", proxy.addr)
}

pub(crate) fn config(queue: &str, amqp_url: &str) -> Config {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.amqp.queue = queue.to_owned();
    config.amqp.amqp_url = Secret::new(amqp_url);
    config.service.shutdown_timeout_seconds = 5;
    config.confirm_timeout_ms = 2_000;
    config
}

/// A listener running in this process on a free port.
pub(crate) struct TestApp {
    pub(crate) addr: SocketAddr,
    pub(crate) http: reqwest::Client,
    pub(crate) queue: String,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<std::io::Result<()>>,
}

impl TestApp {
    pub(crate) async fn spawn(config: Config) -> TestApp {
        let queue = config.amqp.queue.clone();
        let listener = TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(alert_listener::run(config, listener, async move {
            let _ = rx.await;
        }));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        TestApp {
            addr,
            http,
            queue,
            shutdown: Some(tx),
            handle,
        }
    }

    /// A listener on the local broker with its own queue, ready to accept.
    pub(crate) async fn ready(name: &str) -> TestApp {
        let app = TestApp::spawn(config(&unique(name), AMQP_URL)).await;
        app.wait_ready().await;
        app
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) async fn readyz(&self) -> u16 {
        self.http
            .get(self.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub(crate) async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.readyz().await != 200 {
            assert!(Instant::now() < deadline, "listener never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn post(
        &self,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.http
            .post(self.url("/api/alerts"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn post_json(&self, body: &serde_json::Value) -> reqwest::Response {
        self.post("application/json", body.to_string()).await
    }

    /// Stops the listener the way SIGTERM would, and deletes its queues.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.handle).await.unwrap().unwrap();
        delete_queues(&self.queue).await;
    }
}

pub(crate) fn alert(location: &str) -> serde_json::Value {
    serde_json::json!({
        "location": location,
        "type": "Rocket Alert",
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "duration": 10
    })
}

/// A valid CAP 1.2 Alert for `area`, sent now, expiring in 5 minutes.
pub(crate) fn cap_alert(identifier: &str, area: &str) -> String {
    let expires = chrono::Utc::now() + chrono::TimeDelta::minutes(5);
    alert_testkit::cap::CapMessage::alert(identifier, "sirens@example.org", area, expires).to_xml()
}

/// The document after its XML declaration, to prepend a DOCTYPE or append a copy.
pub(crate) fn without_declaration(xml: &str) -> &str {
    xml.split_once("?>").map_or(xml, |(_, rest)| rest)
}

/// 64 KB that a DTD entity referenced 5,000 times expanded to 250 MB.
pub(crate) fn entity_bomb() -> String {
    let entity = "x".repeat(50_000);
    let cap = cap_alert("BOMB", &"&a;".repeat(5_000));
    format!(
        "<!DOCTYPE alert [<!ENTITY a \"{entity}\">]>{}",
        without_declaration(&cap)
    )
}

pub(crate) async fn ids(response: reqwest::Response) -> Vec<uuid::Uuid> {
    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    serde_json::from_value(body["ids"].clone()).unwrap()
}

pub(crate) async fn channel() -> (Connection, Channel) {
    let connection = alert_amqp::connect(AMQP_URL, "listener tests")
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

/// Takes every entry now in `queue` (acking them), in queue order, with its messages.
pub(crate) async fn take_entries(queue: &str) -> Vec<(BasicGetMessage, Vec<QueueMessage>)> {
    let (_connection, channel) = channel().await;
    let mut taken = Vec::new();
    while let Some(entry) = channel
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .unwrap()
    {
        entry
            .delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
        let messages = alert_core::decode_entry(&entry.delivery.data).unwrap();
        taken.push((entry, messages));
    }
    taken
}

/// Every message now in `queue`, in queue order, with its entry's properties.
pub(crate) async fn take_all(queue: &str) -> Vec<(BasicProperties, QueueMessage)> {
    take_entries(queue)
        .await
        .into_iter()
        .flat_map(|(entry, messages)| {
            let properties = entry.delivery.properties.clone();
            messages.into_iter().map(move |m| (properties.clone(), m))
        })
        .collect()
}

pub(crate) async fn delete_queues(queue: &str) {
    let (_connection, channel) = channel().await;
    for name in [queue.to_owned(), format!("{queue}.dead")] {
        let _ = channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
}
