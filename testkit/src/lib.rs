//! `alert-testkit`: what the integration tests of every service share.
//!
//! - [`unique`]: a queue name or key prefix of a test's own, so tests share the one
//!   RabbitMQ and Redis of the machine and still run in parallel.
//! - [`Proxy`]: a TCP proxy a test can cut and restore, to play a broker or Redis
//!   outage without stopping the shared server.
//! - [`spawn()`] (and [`spawn_n`]): a service running in the test's process on free
//!   ports, to wait ready, probe and stop.
//! - [`eventually`] (and [`Deadline`]): poll until a condition holds, with a deadline
//!   (never a bare sleep).
//! - [`delete_queues`]: remove a test's queue and its dead-letter queue.
//! - [`SioClient`]: a minimal Socket.IO client speaking the real protocol.
//! - [`contract`]: the end-to-end contract cases every deployment mode must pass.
//! - [`exits`] and the `exits_on_*` checks: run a binary and check
//!   how it fails.
//! - [`pages`]: web pages in headless chromium, served from an origin of their own.
//! - [`cap::CapMessage`]: a CAP 1.2 message as sources send it.

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

pub mod cap;
pub mod contract;
pub mod pages;
mod sio;
pub mod spawn;

pub use sio::SioClient;
pub use spawn::{Shutdown, Spawned, spawn, spawn_n, wait_ready};

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
    let deadline = Deadline::after(timeout);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        deadline.tick(|| format!("waiting for {what}")).await;
    }
}

/// The deadline of a polling loop that [`eventually`] cannot express (one that needs
/// `&mut` state, or reports the last thing it saw).
pub struct Deadline {
    at: Instant,
    timeout: Duration,
    poll: Duration,
}

impl Deadline {
    pub fn after(timeout: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + timeout,
            timeout,
            poll: POLL,
        }
    }

    /// Polls every `interval` instead (for checks that cost a browser round trip).
    pub fn every(self, interval: Duration) -> Deadline {
        Deadline {
            poll: interval,
            ..self
        }
    }

    /// Before the deadline, waits the polling interval; after it, panics with `what`.
    pub async fn tick(&self, what: impl FnOnce() -> String) {
        assert!(
            Instant::now() < self.at,
            "timed out after {:?} {}",
            self.timeout,
            what()
        );
        tokio::time::sleep(self.poll).await;
    }
}

/// How often [`eventually`] and [`Deadline::tick`] poll.
const POLL: Duration = Duration::from_millis(20);

/// Deletes `queue` and its dead-letter queue `<queue>.dead` from the local RabbitMQ
/// (a queue that does not exist is no error).
pub async fn delete_queues(queue: &str) {
    let connection = alert_amqp::connect(AMQP_URL, "test cleanup")
        .await
        .expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.expect("a channel");
    alert_amqp::delete_with_dead_letters(&channel, queue)
        .await
        .expect("delete the test's queues");
    let _ = connection.close(200, "done".into()).await;
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

/// How a child process ended: its exit code and what it wrote.
#[derive(Debug)]
pub struct Exited {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` (a binary of the workspace, from `env!("CARGO_BIN_EXE_...")`) and
/// waits for it to exit on its own, polling until `WAIT`; a process still running
/// then is killed and the test fails.
pub async fn exits(mut command: std::process::Command) -> Exited {
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the binary");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "still running after {WAIT:?}; it wrote:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let output = child.wait_with_output().expect("output");
    Exited {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `program` with `env` (and nothing else from the test's environment but `PATH`).
fn command(program: &str, env: &[(&str, &str)]) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    command
        .env_clear()
        .envs(std::env::vars().filter(|(key, _)| key == "PATH"));
    command.envs(env.iter().copied());
    command
}

/// Starts `program` (with `env`) with the address setting `setting` on a port this
/// test holds, and checks that it exits non-zero with one JSON log line naming the
/// address and the setting.
pub async fn exits_on_port_in_use(program: &str, setting: &str, env: &[(&str, &str)]) {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address").to_string();
    let mut command = command(program, env);
    command.env(setting, &addr).env("LOG_FORMAT", "json");
    let exited = exits(command).await;
    assert!(matches!(exited.code, Some(code) if code != 0), "{exited:?}");
    let lines: Vec<&str> = exited.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {exited:?}");
    let line: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON log line");
    assert_eq!(line["level"], "ERROR", "{line}");
    let message = line["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&addr) && message.contains(setting),
        "names {addr} and {setting}: {message}"
    );
    drop(taken);
}

/// Checks that `program` refuses a bad `CORS_ORIGINS` with one line on stderr naming
/// the setting, and exit code 2, before doing anything else.
pub async fn exits_on_bad_cors(program: &str) {
    for bad in ["https://a.example/path", "*,https://a.example", "a.example"] {
        exits_on_bad_setting(program, &[("CORS_ORIGINS", bad)], 2, "CORS_ORIGINS").await;
    }
}

/// Checks that `program` with `env` exits with `code` and one line, on stderr for a
/// setting clap refuses (2), else in the log, that contains `names`.
pub async fn exits_on_bad_setting(program: &str, env: &[(&str, &str)], code: i32, names: &str) {
    let mut command = command(program, env);
    command.env("NO_COLOR", "1");
    let exited = exits(command).await;
    assert_eq!(exited.code, Some(code), "{env:?}: {exited:?}");
    let said = match code {
        2 => &exited.stderr,
        _ => &exited.stdout,
    };
    assert_eq!(said.lines().count(), 1, "one line: {exited:?}");
    assert!(said.contains(names), "names {names}: {exited:?}");
}
