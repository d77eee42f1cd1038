//! With `--data-dir`: kill -9 after accepting, restart, and nothing is lost: accepted
//! alerts are applied, open windows are still open, and nothing is counted twice.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use alert_testkit::{WAIT, eventually};
use chrono::Utc;
use serde_json::{Value, json};

pub(crate) struct Process {
    child: Child,
    pub(crate) ingest: SocketAddr,
    pub(crate) clients: SocketAddr,
}

/// The address in a line of the start-up banner, e.g. `  live page:   http://a:1/`.
fn banner_addr(line: &str, label: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix(label)?.trim();
    rest.strip_prefix("http://")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

impl Process {
    /// Starts the binary on ports of its own choosing (no bind-then-release race) and
    /// reads them from its banner.
    async fn start(data_dir: &std::path::Path, snapshot_interval_ms: u64) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_alert-standalone"));
        command
            .arg("--data-dir")
            .arg(data_dir)
            .env("SNAPSHOT_INTERVAL_MS", snapshot_interval_ms.to_string());
        Process::spawn(command).await
    }

    /// Starts `command` (the binary, with settings of the test's) like [`Process::start`].
    pub(crate) async fn spawn(mut command: Command) -> Process {
        let mut child = command
            .env("INGEST_LISTEN_ADDR", "127.0.0.1:0")
            .env("CLIENTS_LISTEN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ingest, clients) = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let (mut ingest, mut clients) = (None, None);
            while ingest.is_none() || clients.is_none() {
                let line = lines.next().expect("the banner").unwrap();
                ingest = ingest.or_else(|| banner_addr(&line, "post alerts:"));
                clients = clients.or_else(|| banner_addr(&line, "live page:"));
            }
            // Keep reading, so the process never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            (ingest.unwrap(), clients.unwrap())
        })
        .await
        .unwrap();
        let process = Process {
            child,
            ingest,
            clients,
        };
        eventually(WAIT, "standalone ready", || async {
            let url = format!("http://{}/readyz", process.ingest);
            let ready = reqwest::get(url).await.ok()?.status() == 200;
            let url = format!("http://{}/readyz", process.clients);
            (ready && reqwest::get(url).await.ok()?.status() == 200).then_some(())
        })
        .await;
        process
    }

    async fn post(&self, body: Value) -> Vec<String> {
        let url = format!("http://{}/api/alerts", self.ingest);
        let response = reqwest::Client::new()
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let ids: Value = response.json().await.unwrap();
        ids["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap().to_owned())
            .collect()
    }

    async fn active(&self) -> Vec<Value> {
        let url = format!("http://{}/api/active", self.clients);
        let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        body["active"].as_array().unwrap().clone()
    }

    /// SIGKILL: no shutdown path runs.
    fn kill(self) {
        drop(self);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alerts(prefix: &str, n: usize) -> Value {
    let alerts: Vec<Value> = (0..n)
        .map(|i| {
            json!({ "location": format!("{prefix} {i}"), "type": "Rocket Alert",
                    "timestamp": Utc::now().to_rfc3339(), "duration": 30 })
        })
        .collect();
    json!(alerts)
}

/// Waits until `process` shows exactly the windows in `expected` (location -> (id,
/// alert count)).
async fn windows_are(process: &Process, expected: &[(String, String, u64)]) {
    let mut expected = expected.to_vec();
    expected.sort();
    eventually(WAIT, "the expected open windows", || async {
        let mut found: Vec<(String, String, u64)> = process
            .active()
            .await
            .iter()
            .map(|w| {
                (
                    w["location"].as_str().unwrap().to_owned(),
                    w["id"].as_str().unwrap().to_owned(),
                    w["alertCount"].as_u64().unwrap(),
                )
            })
            .collect();
        found.sort();
        (found == expected).then_some(())
    })
    .await;
}

#[tokio::test]
async fn accepted_alerts_and_open_windows_survive_kill_9() {
    let dir = std::env::temp_dir().join(alert_testkit::unique("standalone-data"));
    let mut expected = Vec::new();

    // 1. No snapshot is ever taken: everything comes back from the journal.
    let first = Process::start(&dir, 3_600_000).await;
    let ids = first.post(alerts("journal", 200)).await;
    for (i, id) in ids.iter().enumerate() {
        expected.push((format!("journal {i}"), id.clone(), 1));
    }
    first.kill();
    assert!(!dir.join("snapshot.json").exists(), "no snapshot in step 1");

    // 2. Restarted: the same windows (same ids, counted once). Then a second alert
    // joins one, a snapshot is taken, more are accepted, and it is killed again.
    let second = Process::start(&dir, 50).await;
    windows_are(&second, &expected).await;
    let joined = second
        .post(json!({ "location": "journal 0", "type": "Earthquake",
                      "timestamp": Utc::now().to_rfc3339(), "duration": 30 }))
        .await;
    assert_eq!(joined.len(), 1);
    expected[0].2 = 2;
    tokio::time::sleep(Duration::from_millis(300)).await; // a few snapshots
    let ids = second.post(alerts("after snapshot", 100)).await;
    for (i, id) in ids.iter().enumerate() {
        expected.push((format!("after snapshot {i}"), id.clone(), 1));
    }
    second.kill();
    assert!(dir.join("snapshot.json").exists());
    assert!(
        !dir.join(format!("journal-{:020}.log", 1)).exists(),
        "the segment of step 1 is compacted away once snapshotted"
    );

    // 3. Snapshot plus the journal after it, with nothing applied twice.
    let third = Process::start(&dir, 50).await;
    windows_are(&third, &expected).await;
    third.kill();
    std::fs::remove_dir_all(&dir).unwrap();
}
