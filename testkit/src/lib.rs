//! `alert-testkit`: what the integration tests of every service share.
//!
//! - [`unique`]: a queue name or key prefix of a test's own, so tests share the one
//!   RabbitMQ and Redis of the machine and still run in parallel.
//! - [`Proxy`]: a TCP proxy a test can cut and restore, to play a broker or Redis
//!   outage without stopping the shared server.
//! - [`eventually`]: poll until a condition holds, with a deadline (never a bare sleep).
//! - [`SioClient`]: a minimal Socket.IO client speaking the real protocol.
//! - [`contract`]: the end-to-end contract cases every deployment mode must pass.
//! - [`pages`]: web pages in headless chromium, served from an origin of their own.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub mod contract;
pub mod pages;
mod sio;

pub use sio::SioClient;

/// How long a test waits for something that should happen in milliseconds.
pub const WAIT: Duration = Duration::from_secs(10);

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// `test.<name>.<random>`: RabbitMQ expires idle `test.*` queues (scripts/services).
pub fn unique(name: &str) -> String {
    format!(
        "test.{name}.{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// GETs `url` and returns the body as text (metrics, polling transports); panics if
/// the request fails.
pub async fn get_text(http: &reqwest::Client, url: &str) -> String {
    let response = http.get(url).send().await.expect("GET");
    response.text().await.expect("a text body")
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP proxy to `target` that refuses connections while down.
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(target: &'static str, up: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let up = Arc::new(AtomicBool::new(up));
        let (cut, _) = watch::channel(0u64);
        let (is_up, cuts) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !is_up.load(Ordering::SeqCst) {
                    continue; // dropped at once: as good as refused
                }
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy { addr, up, cut }
    }

    /// Refuses new connections and drops the live ones.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
