//! Web pages in a real browser (headless Debian chromium driven by playwright-core, see
//! `scripts/browser` and `scripts/clients`), each served from an origin of its own
//! (`notify/tests/clients/serve-page.mjs`) like the original system's page, against the
//! distributed services: the real listener -> RabbitMQ -> processor -> Redis -> notify.
//! Here the original page unmodified; `resume_page.rs` has the client module's page.

use std::{net::SocketAddr, path::PathBuf, process::Stdio, time::Duration};

use lapin::options::QueueDeleteOptions;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    net::TcpListener,
    process::{Child, ChildStdout, Command},
    sync::oneshot,
    task::JoinHandle,
};

use crate::helpers::{TestApp, config, eventually, unique};

pub(crate) fn clients_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/clients"
    );
    dir
}

/// $CHROMIUM (scripts/test sets it), else chromium on PATH.
pub(crate) fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|dir| dir.join("chromium"))
                .find(|path| path.is_file())
        })
        .expect("chromium is not installed: run scripts/browser")
}

/// A node script from `tests/clients` with piped stdio, killed with the test.
pub(crate) fn node(script: &str) -> Command {
    let mut command = Command::new("node");
    command
        .arg(clients_dir().join(script))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

/// The next JSON line a child printed.
pub(crate) async fn next_json(lines: &mut Lines<BufReader<ChildStdout>>, what: &str) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 60 s"))
        .unwrap()
        .unwrap_or_else(|| panic!("{what}: the script ended"));
    serde_json::from_str(&line).unwrap_or_else(|_| panic!("{what}: not JSON: {line}"))
}

/// The test pages' web server, on its own origin; it ends when dropped.
pub(crate) struct PageServer {
    pub(crate) origin: String,
    _child: Child,
}

impl PageServer {
    pub(crate) async fn start() -> PageServer {
        let mut child = node("serve-page.mjs")
            .spawn()
            .expect("node (install it with scripts/clients)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = next_json(&mut lines, "serve-page.mjs").await;
        let origin = ready["origin"].as_str().expect("an origin").to_owned();
        PageServer {
            origin,
            _child: child,
        }
    }
}

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

/// Runs `original-page.mjs` (toasts open, update as "Mixed Threats", close, with real
/// times, after the upgrade to WebSocket) against `server`; panics with its summary.
pub(crate) async fn original_page(page: &PageServer, server: SocketAddr, ingest: SocketAddr) {
    let output = node("original-page.mjs")
        .stdin(Stdio::null())
        .args(["--page", &page.origin])
        .args(["--server", &format!("http://{server}")])
        .args(["--ingest", &format!("http://{ingest}")])
        .arg("--chromium")
        .arg(chromium())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), output)
        .await
        .expect("the browser test finished in time")
        .expect("node (install it with scripts/clients)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|_| panic!("no JSON summary ({}): {stdout}", output.status));
    assert_eq!(summary["ok"], true, "{summary}");
    assert!(output.status.success(), "{summary}");
}

#[tokio::test]
async fn the_original_page_from_another_origin_shows_real_times() {
    let page = PageServer::start().await;
    let ingest = Ingest::start("original-page").await;
    let mut notify = config(&ingest.prefix, crate::helpers::REDIS_URL);
    notify.clients.cors_origins = vec![page.origin.clone()];
    let notify = TestApp::spawn(notify).await;

    original_page(&page, notify.addr, ingest.addr).await;

    ingest.stop().await;
    notify.stop().await;
}
