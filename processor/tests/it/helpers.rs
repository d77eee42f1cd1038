use std::time::Duration;

use alert_amqp::{Publisher, PublisherConfig, Topology};
use alert_core::{Alert, AlertQueue, Event, EventType, QueueMessage, Secret};
use alert_processor::Config;
use alert_redis::{Keys, Store, StoreSettings};
use chrono::{DateTime, TimeDelta, Utc};

pub(crate) use alert_testkit::{AMQP_URL, Proxy, REDIS_URL, eventually, unique};
use alert_testkit::{Spawned, delete_queues};

pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// One test's queue, key prefix, publisher and store.
pub(crate) struct Env {
    pub(crate) queue: String,
    pub(crate) prefix: String,
    pub(crate) publisher: Publisher,
    pub(crate) store: Store,
    redis_url: String,
}

impl Env {
    pub(crate) async fn new(name: &str) -> Env {
        Env::on(name, REDIS_URL).await
    }

    /// With the state in the Redis at `redis_url`.
    pub(crate) async fn on(name: &str, redis_url: &str) -> Env {
        let queue = unique(name);
        let prefix = format!("{queue}:");
        let publisher = Publisher::start(PublisherConfig {
            url: AMQP_URL.into(),
            topology: topology(&queue),
            channels: 1,
            confirm_timeout: Duration::from_secs(10),
            connection_name: "processor tests".into(),
        });
        eventually(WAIT, "publisher connected", || async {
            publisher.is_connected().then_some(())
        })
        .await;
        let store = Store::connect(
            redis_url,
            Keys::new(prefix.clone()),
            StoreSettings::default(),
        )
        .await
        .unwrap();
        Env {
            queue,
            prefix,
            publisher,
            store,
            redis_url: redis_url.to_owned(),
        }
    }

    pub(crate) fn config(&self) -> Config {
        config(&self.queue, &self.prefix, &self.redis_url)
    }

    pub(crate) async fn publish(&self, messages: &[QueueMessage]) {
        for chunk in messages.chunks(500) {
            self.publisher.publish(chunk).await.unwrap();
        }
    }

    /// Every event in the log, oldest first.
    pub(crate) async fn events(&self) -> Vec<Event> {
        self.store
            .events_after(alert_core::Offset::START, 1_000_000)
            .await
            .unwrap()
    }

    /// Waits until the log holds at least `n` events.
    pub(crate) async fn wait_events(&self, n: usize) -> Vec<Event> {
        eventually(WAIT, &format!("{n} events"), || async {
            let events = self.events().await;
            (events.len() >= n).then_some(events)
        })
        .await
    }

    pub(crate) async fn cleanup(self) {
        self.publisher.close().await;
        self.store.delete_all().await.unwrap();
        delete_queues(&self.queue).await;
    }
}

pub(crate) fn topology(queue: &str) -> Topology {
    Topology {
        queue: queue.into(),
        kind: Default::default(),
        delivery_limit: 5,
    }
}

pub(crate) fn config(queue: &str, prefix: &str, redis_url: &str) -> Config {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.amqp.queue = queue.into();
    config.redis.redis_prefix = prefix.into();
    config.redis.redis_url = Secret::new(redis_url);
    config.close_poll_ms = 50;
    config.service.shutdown_timeout_seconds = 5;
    config
}

/// A processor running in this process on a free port.
pub(crate) struct Running {
    service: Spawned<std::io::Error>,
}

impl Running {
    pub(crate) async fn start(config: Config) -> Running {
        let service = alert_testkit::spawn(|listener, shutdown| {
            alert_processor::run(config, listener, shutdown)
        })
        .await;
        Running { service }
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(self.service.url(path)).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub(crate) async fn wait_ready(&self) {
        self.service.wait_ready_within(WAIT).await;
    }

    pub(crate) async fn stop(self) {
        self.service.stop().await.unwrap();
    }
}

/// An alert for `location` from `start` for `duration`.
pub(crate) fn alert_at(
    location: &str,
    kind: &str,
    start: DateTime<Utc>,
    duration: TimeDelta,
) -> Alert {
    let start = alert_core::input::whole_millis(start);
    Alert::new(location, kind, start, start + duration)
}

pub(crate) fn message(alert: Alert) -> QueueMessage {
    QueueMessage::Alert(alert)
}

pub(crate) fn kinds(events: &[Event]) -> Vec<EventType> {
    events.iter().map(|e| e.event_type).collect()
}

/// A redis-server of the test's own (the shared one is never stopped), on a free port,
/// with every write fsynced to its append-only file so that a `kill -9` loses nothing
/// and a restart finds the same data.
pub(crate) struct PrivateRedis {
    pub(crate) url: String,
    port: u16,
    dir: std::path::PathBuf,
    child: Option<tokio::process::Child>,
}

impl PrivateRedis {
    pub(crate) async fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(unique("redis"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = PrivateRedis {
            url: format!("redis://127.0.0.1:{port}"),
            port,
            dir,
            child: None,
        };
        redis.restart().await;
        redis
    }

    /// SIGKILL, as an OOM kill or a node failure would.
    pub(crate) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Starts it (again) on the same port and data, and waits until it answers.
    pub(crate) async fn restart(&mut self) {
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let port = self.port;
        eventually(WAIT, "private Redis answering", || async move {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()?;
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream.write_all(b"PING\r\n").await.ok()?;
            let mut reply = [0u8; 7];
            stream.read_exact(&mut reply).await.ok()?;
            (&reply == b"+PONG\r\n").then_some(())
        })
        .await;
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Log lines emitted on this thread (a `#[tokio::test]` runs the app's tasks on it), as
/// JSON objects, while the guard lives.
pub(crate) struct CapturedLogs {
    lines: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl CapturedLogs {
    pub(crate) fn start() -> CapturedLogs {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        CapturedLogs {
            lines,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    pub(crate) fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.lines.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
