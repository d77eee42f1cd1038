//! Web pages in a real browser for the services' tests: headless Debian chromium
//! (`scripts/browser`) driven by playwright-core (`scripts/clients`) through the scripts
//! in `notify/tests/clients`, and [`PageServer`], which serves the test pages from an
//! origin of their own, as the original system served its page apart from the server.

use std::{net::SocketAddr, path::PathBuf, process::Stdio, time::Duration};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

/// `notify/tests/clients`, where the page scripts and their node modules are.
pub fn clients_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../notify/tests/clients");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/clients"
    );
    dir
}

/// $CHROMIUM (scripts/test sets it), else chromium on PATH.
pub fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|dir| dir.join("chromium"))
                .find(|path| path.is_file())
        })
        .expect("chromium is not installed: run scripts/browser")
}

/// A node script from [`clients_dir`] with piped stdio, killed with the test.
pub fn node(script: &str) -> Command {
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
pub async fn next_json(lines: &mut Lines<BufReader<ChildStdout>>, what: &str) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 60 s"))
        .unwrap()
        .unwrap_or_else(|| panic!("{what}: the script ended"));
    serde_json::from_str(&line).unwrap_or_else(|_| panic!("{what}: not JSON: {line}"))
}

/// The test pages' web server, on its own origin; it ends when dropped.
pub struct PageServer {
    pub origin: String,
    _child: Child,
}

impl PageServer {
    pub async fn start() -> PageServer {
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

/// Runs `original-page.mjs`: a page written like the original system's, from `page`'s
/// origin, against the Socket.IO server `server` (alerts posted to `ingest`) must show
/// open, update ("Mixed Threats") and close toasts with real times, after the upgrade
/// to WebSocket. Panics with the script's summary otherwise.
pub async fn original_page(page: &PageServer, server: SocketAddr, ingest: SocketAddr) {
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
