//! Web pages in a real browser (headless Debian chromium driven by playwright-core, see
//! `scripts/browser` and `scripts/clients`), each served from an origin of its own
//! (`notify/tests/clients/serve-page.mjs`) like the original system's page, against the
//! distributed services: the real listener -> RabbitMQ -> processor -> Redis -> notify.
//! Here the original page unmodified (standalone's tests run it too); `resume_page.rs`
//! has the client module's page.

use std::{net::SocketAddr, time::Duration};

use alert_testkit::pages::{PageServer, original_page};
use lapin::options::QueueDeleteOptions;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::helpers::{TestApp, config, eventually, unique};

async fn wait_ready(addr: SocketAddr, what: &str) {
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
        let connection = alert_amqp::connect(alert_testkit::AMQP_URL, "pages cleanup")
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

#[tokio::test]
async fn the_original_page_from_another_origin_shows_real_times() {
    let page = PageServer::start().await;
    let ingest = Ingest::start("original-page").await;
    let mut notify = config(&ingest.prefix, crate::helpers::REDIS_URL);
    notify.clients.cors_origins = page.origin.parse().unwrap();
    let notify = TestApp::spawn(notify).await;

    original_page(&page, notify.addr, ingest.addr).await;

    ingest.stop().await;
    notify.stop().await;
}

/// The module's resume algorithm against a scripted socket doing what a server might
/// (events overtaking the snapshot, repeats, a lost epoch): `alerts-module.test.mjs`.
#[tokio::test]
async fn the_client_module_does_not_rely_on_the_servers_order() {
    let script = alert_testkit::pages::clients_dir().join("alerts-module.test.mjs");
    let output = tokio::process::Command::new("node")
        .arg("--test")
        .arg(script)
        .output()
        .await
        .expect("node (install it with scripts/clients)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
