//! The stock clients: the official JavaScript `socket.io-client` (npm) and
//! `python-socketio` (PyPI) connect, subscribe and receive an event. Install them with
//! `npm ci --prefix notify/tests/clients` and
//! `pip install -r notify/tests/clients/requirements.txt`; the test is skipped, saying
//! so, only when `node` or `python3` itself is missing.

use std::{path::PathBuf, process::Stdio};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

use crate::helpers::{TestApp, WAIT, alert};

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn have(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

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
fn python() -> String {
    std::env::var("ALERT_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

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
