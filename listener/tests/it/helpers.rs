use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use alert_core::{AlertQueue, QueueError, QueueMessage, Secret};
use alert_listener::{Config, Ingest, IngestArgs};
use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
};
use lapin::{
    BasicProperties, Channel, Connection,
    message::BasicGetMessage,
    options::{BasicAckOptions, BasicGetOptions},
};

use alert_testkit::Spawned;
pub(crate) use alert_testkit::{AMQP_URL, Proxy, delete_queues, unique};

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

/// A listener running in this process on a free port (a [`Spawned`] with the queue it
/// publishes to).
pub(crate) struct TestApp {
    pub(crate) addr: SocketAddr,
    pub(crate) http: reqwest::Client,
    pub(crate) queue: String,
    service: Spawned<std::io::Error>,
}

impl TestApp {
    pub(crate) async fn spawn(config: Config) -> TestApp {
        let queue = config.amqp.queue.clone();
        let service = alert_testkit::spawn(|listener, shutdown| {
            alert_listener::run(config, listener, shutdown)
        })
        .await;
        TestApp {
            addr: service.addr(),
            http: service.http().clone(),
            queue,
            service,
        }
    }

    /// A listener on the local broker with its own queue, ready to accept.
    pub(crate) async fn ready(name: &str) -> TestApp {
        let app = TestApp::spawn(config(&unique(name), AMQP_URL)).await;
        app.wait_ready().await;
        app
    }

    pub(crate) fn url(&self, path: &str) -> String {
        self.service.url(path)
    }

    pub(crate) async fn readyz(&self) -> u16 {
        self.service.readyz().await
    }

    pub(crate) async fn wait_ready(&self) {
        self.service
            .wait_ready_within(Duration::from_secs(20))
            .await;
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
    pub(crate) async fn stop(self) {
        self.service.stop().await.unwrap();
        delete_queues(&self.queue).await;
    }
}

/// A queue that keeps what it is given, for the in-process tier.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<QueueMessage>>>);

impl AlertQueue for Recorder {
    async fn publish(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        self.0.lock().unwrap().extend_from_slice(messages);
        Ok(())
    }

    fn is_ready(&self) -> bool {
        true
    }
}

/// The listener's routes in this process, over a queue that records what it is given:
/// what the HTTP edge validates is tested without RabbitMQ or a socket. What depends
/// on the connection (chunked bodies, keep-alive, `Connection: close`) is tested
/// against a [`TestApp`].
pub(crate) struct InProcess {
    router: Router,
    queue: Recorder,
}

/// An answer from the in-process tier: its status, headers and JSON body (a JSON
/// string when the body is not JSON).
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: serde_json::Value,
}

impl InProcess {
    /// With the listener's default limits and no API keys.
    pub(crate) fn new() -> InProcess {
        InProcess::with(&Config::defaults().ingest)
    }

    pub(crate) fn with(args: &IngestArgs) -> InProcess {
        let queue = Recorder::default();
        let ingest: Ingest<Recorder> = args.ingest(queue.clone()).expect("valid API keys");
        InProcess {
            router: alert_listener::router(Arc::new(ingest)),
            queue,
        }
    }

    /// `POST /api/alerts` with `content_type` (none when `None`) and a Content-Length,
    /// as an HTTP client sends it.
    pub(crate) async fn post(
        &self,
        content_type: Option<&str>,
        body: impl Into<Vec<u8>>,
    ) -> Answer {
        let body = body.into();
        let mut request = Request::post("/api/alerts").header(header::CONTENT_LENGTH, body.len());
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    pub(crate) async fn post_json(&self, body: &serde_json::Value) -> Answer {
        self.post(Some("application/json"), body.to_string()).await
    }

    pub(crate) async fn get(&self, path: &str) -> StatusCode {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
            .status
    }

    pub(crate) async fn send(&self, request: Request<Body>) -> Answer {
        use tower::ServiceExt as _;
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Every message queued so far, in order.
    pub(crate) fn queued_messages(&self) -> Vec<QueueMessage> {
        self.queue.0.lock().unwrap().clone()
    }

    /// The ids of every message queued so far, in order.
    pub(crate) fn queued(&self) -> Vec<uuid::Uuid> {
        self.queued_messages()
            .iter()
            .map(QueueMessage::id)
            .collect()
    }
}

impl Answer {
    /// The ids of a 202.
    pub(crate) fn ids(&self) -> Vec<uuid::Uuid> {
        assert_eq!(self.status, StatusCode::ACCEPTED, "{}", self.body);
        serde_json::from_value(self.body["ids"].clone()).unwrap()
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
