//! The stock clients: the official JavaScript `socket.io-client` (npm) and
//! `python-socketio` (PyPI) connect, subscribe and receive an event. Install them with
//! `npm ci --prefix notify/tests/clients` and
//! `pip install -r notify/tests/clients/requirements.txt`; the test is skipped, saying
//! so, only when `node` or `python3` itself is missing.

use std::process::Stdio;

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

use crate::helpers::{TestApp, WAIT, alert, clients_dir, have, python};

/// Runs a client script, waits until it has subscribed, applies an alert for its
/// location and returns the event it printed.
async fn run_client(app: &TestApp, program: &str, script: &str, location: &str) -> Value {
    let mut child = Command::new(program)
        .arg(clients_dir().join(script))
        .arg(format!("http://{}", app.addr))
        .arg(location)
        .current_dir(clients_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(WAIT * 2, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{script} printed nothing in time"))
            .unwrap()
            .unwrap_or_else(|| panic!("{script} exited early"));
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("{script}: {line}"))
    };
    let ready = next().await;
    assert_eq!(ready["step"], "ready", "{ready}");
    assert!(ready["snapshot"]["active"].is_array(), "{ready}");
    assert_eq!(ready["ack"]["recovered"], false, "{ready}");
    app.apply(&alert("Elsewhere", "Rocket Alert", 10)).await;
    app.apply(&alert(location, "Rocket Alert", 10)).await;
    let event = next().await;
    assert_eq!(event["step"], "alert", "{event}");
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{script} failed: {status}");
    event
}

#[tokio::test]
async fn stock_javascript_client_subscribes_and_receives() {
    if !have("node") {
        eprintln!("SKIPPED: node is not installed (apt-get install nodejs npm)");
        return;
    }
    assert!(
        clients_dir().join("node_modules/socket.io-client").exists(),
        "socket.io-client missing: run `npm ci --prefix notify/tests/clients`"
    );
    let app = TestApp::ready("js-client").await;
    let event = run_client(&app, "node", "client.js", "Kiryat Shmona").await;
    assert_eq!(event["event"]["location"], "Kiryat Shmona");
    assert_eq!(event["event"]["eventType"], "open");
    app.stop().await;
}

/// The Python that has python-socketio: `ALERT_TEST_PYTHON` (scripts/test points it at
/// a virtualenv outside the repository), else `python3`.
#[tokio::test]
async fn stock_python_client_subscribes_and_receives() {
    if !have(&python()) {
        eprintln!("SKIPPED: python3 is not installed");
        return;
    }
    let app = TestApp::ready("py-client").await;
    let event = run_client(&app, &python(), "client.py", "Metula").await;
    assert_eq!(event["event"]["location"], "Metula");
    assert_eq!(event["transport"], "websocket");
    app.stop().await;
}

/// A running follow script: its JSON lines, read as they come.
struct Follower {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    connects: usize,
    offsets: Vec<alert_core::Offset>,
    reasons: Vec<String>,
}

impl Follower {
    fn start(app: &TestApp, program: &str, script: &str) -> Follower {
        let mut child = Command::new(program)
            .arg(clients_dir().join(script))
            .arg(format!("http://{}", app.addr))
            .current_dir(clients_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Follower {
            child,
            lines,
            connects: 0,
            offsets: Vec::new(),
            reasons: Vec::new(),
        }
    }

    /// Reads lines until `done` holds for what was read.
    async fn until(&mut self, what: &str, done: impl Fn(&Follower) -> bool) {
        while !done(self) {
            let line = tokio::time::timeout(WAIT * 2, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no line in time while waiting for {what}"))
                .unwrap()
                .expect("the client exited early");
            let Ok(line) = serde_json::from_str::<Value>(&line) else {
                eprintln!("{what}: not a JSON line: {line}");
                continue;
            };
            if line["step"] != "alert" {
                eprintln!("{line}");
            }
            match line["step"].as_str().unwrap() {
                "connect" => self.connects += 1,
                "disconnect" => self.reasons.push(line["reason"].to_string()),
                "snapshot" => self.offsets.extend(
                    line["missed"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|o| o.as_str().unwrap().parse::<alert_core::Offset>().unwrap()),
                ),
                "alert" => self
                    .offsets
                    .push(line["offset"].as_str().unwrap().parse().unwrap()),
                other => panic!("unexpected line {other}"),
            }
        }
    }
}

/// Issue 19, section 5: the stock clients, with their default reconnection and `since`
/// in an `auth` callback (as their docs show), lose nothing across a Redis outage whose
/// catch-up evicts them: notify closes their transport (never a DISCONNECT, after which
/// they would stay away), they reconnect by themselves and resume.
#[tokio::test]
async fn stock_clients_reconnect_by_themselves_after_eviction_and_a_redis_outage() {
    if !have("node") {
        eprintln!("SKIPPED: node is not installed (apt-get install nodejs npm)");
        return;
    }
    let python = python();
    let proxy = crate::helpers::Proxy::start("127.0.0.1:6379", true).await;
    let prefix = format!("{}:", crate::helpers::unique("stock-evicted"));
    let mut config = crate::helpers::config(&prefix, &format!("redis://{}", proxy.addr));
    // Buffers so small that the catch-up after the outage overflows them.
    config.clients.client_buffer = 2;
    config.clients.client_backlog = 2;
    let app = TestApp::spawn(config).await;
    app.apply(&alert("First", "Rocket Alert", 10)).await;
    let first = app.store.latest_events(1).await.unwrap().remove(0);
    let mut followers = [
        Follower::start(&app, "node", "follow.js"),
        Follower::start(&app, &python, "follow.py"),
    ];
    for follower in &mut followers {
        follower
            .until("the first snapshot", |f| f.connects == 1)
            .await;
    }
    app.apply(&alert("Seen", "Rocket Alert", 10)).await;
    for follower in &mut followers {
        follower
            .until("the first alert", |f| !f.offsets.is_empty())
            .await;
    }

    proxy.down();
    app.wait_unready().await;
    for i in 0..300 {
        app.apply(&alert(&format!("During {i}"), "Rocket Alert", 10))
            .await;
    }
    proxy.up();
    app.wait_ready().await;
    app.apply(&alert("After", "Rocket Alert", 10)).await;
    let log = app.store.events_after(first.offset, 100_000).await.unwrap();
    let expected: Vec<_> = log.iter().map(|e| e.offset).collect();
    let last = *expected.last().unwrap();
    for (follower, name) in followers
        .iter_mut()
        .zip(["socket.io-client", "python-socketio"])
    {
        follower
            .until("the last event", |f| f.offsets.last() == Some(&last))
            .await;
        assert!(
            follower.connects >= 2,
            "{name} was never evicted: {:?}",
            follower.reasons
        );
        assert!(
            !follower
                .reasons
                .iter()
                .any(|r| r.contains("io server disconnect")),
            "{name} was sent a DISCONNECT: {:?}",
            follower.reasons
        );
        assert_eq!(
            follower.offsets, expected,
            "{name}: every event once, in order"
        );
        drop(follower.child.stdin.take());
    }
    app.stop().await;
}
