//! notify's client module (`/client/alerts.js`) in a real browser across a notify crash:
//! a page on its own origin (`tests/clients/pages/resume.html`) follows eight locations
//! while alerts flow; notify, a child process here, is killed with SIGKILL and started
//! again on the same port while windows open, extend and close. Afterwards the page's
//! windows equal `GET /api/active`, and the events it announced are the event log's, in
//! order, each once: the stock client reconnected by itself and the module resumed it.

use std::{net::SocketAddr, process::Stdio, time::Duration};

use alert_redis::{Store, StoreSettings};
use chrono::Utc;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
    sync::watch,
};

use alert_testkit::{
    Deadline,
    pages::{PageServer, chromium, next_json, node},
};

/// Asking the page for its state is a browser round trip: not every 20 ms.
const PAGE_POLL: Duration = Duration::from_millis(100);

use crate::helpers::{Ingest, REDIS_URL, WAIT, config, eventually, unique};

/// alert-notify as a child process, so that it can be killed for real.
struct NotifyProcess {
    child: Child,
    addr: SocketAddr,
}

impl NotifyProcess {
    /// Starts on `listen` (port 0: a free one) and waits until it answers `/readyz`.
    async fn start(listen: SocketAddr, prefix: &str, origin: &str) -> NotifyProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_alert-notify"))
            .env("LISTEN_ADDR", listen.to_string())
            .env("REDIS_URL", REDIS_URL)
            .env("REDIS_PREFIX", prefix)
            .env("CORS_ORIGINS", origin)
            .env("GAP_CHECK_MS", "200")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("alert-notify starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = next_json(&mut lines, "alert-notify's log").await;
            if line["message"] == "notify serving" {
                break line["addr"].as_str().unwrap().parse().unwrap();
            }
        };
        // Keep reading, so that a full pipe never blocks its logging.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        alert_testkit::wait_ready(addr).await;
        NotifyProcess { child, addr }
    }

    async fn kill(mut self) {
        self.child.kill().await.unwrap(); // SIGKILL: no drain, no goodbye to clients
    }
}

/// resume-page.mjs: the page in chromium, answering `state` on stdin.
struct Page {
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    _child: Child,
}

impl Page {
    async fn open(page: &PageServer, server: SocketAddr, locations: &[String]) -> Page {
        let mut child = node("resume-page.mjs")
            .args(["--page", &page.origin])
            .args(["--server", &format!("http://{server}")])
            .args(["--locations", &locations.join(",")])
            .arg("--chromium")
            .arg(chromium())
            .spawn()
            .expect("node (install it with scripts/clients)");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = next_json(&mut lines, "resume-page.mjs").await;
        assert_eq!(ready["step"], "ready", "{ready}");
        Page {
            stdin,
            lines,
            _child: child,
        }
    }

    async fn state(&mut self) -> Value {
        self.stdin.write_all(b"state\n").await.unwrap();
        let state = next_json(&mut self.lines, "the page's state").await;
        assert_eq!(state["problems"], json!([]), "{state}");
        state
    }

    /// Polls the page until `check` answers.
    async fn until<T>(&mut self, what: &str, check: impl Fn(&Value) -> Option<T>) -> T {
        let deadline = Deadline::after(Duration::from_secs(20)).every(PAGE_POLL);
        loop {
            let state = self.state().await;
            if let Some(found) = check(&state) {
                return found;
            }
            deadline
                .tick(|| format!("for {what}; the page: {state}"))
                .await;
        }
    }
}

async fn post(http: &reqwest::Client, ingest: SocketAddr, location: &str, kind: &str, s: u64) {
    let body = json!({ "location": location, "type": kind,
                       "timestamp": Utc::now().to_rfc3339(), "durationSeconds": s });
    let response = http
        .post(format!("http://{ingest}/api/alerts"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{body}");
}

/// What two views of a window must agree on (the page's and `GET /api/active`'s).
fn windows(list: &Value) -> Vec<Value> {
    let mut windows: Vec<Value> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            json!([
                w["location"],
                w["id"],
                w["startTime"],
                w["endTime"],
                w["types"],
                w["alertCount"]
            ])
        })
        .collect();
    windows.sort_by_key(|w| w[0].as_str().unwrap().to_owned());
    windows
}

#[tokio::test]
async fn the_client_module_resumes_after_notify_is_killed() {
    let page_server = PageServer::start().await;
    let ingest = Ingest::start("resume-page").await;
    let keys = config(&ingest.prefix, REDIS_URL).redis.keys();
    let store = Store::connect(REDIS_URL, keys, StoreSettings::default())
        .await
        .unwrap();
    let origin = page_server.origin.clone();
    let notify =
        NotifyProcess::start("127.0.0.1:0".parse().unwrap(), &ingest.prefix, &origin).await;
    let addr = notify.addr;
    let tag = unique("resume");
    let places: Vec<String> = (0..8).map(|i| format!("{tag} {i}")).collect();
    let mut page = Page::open(&page_server, addr, &places).await;
    let http = reqwest::Client::new();

    // 0-3 stay open and are extended all along; 4 and 5 close while notify is down.
    for place in &places[..4] {
        post(&http, ingest.addr, place, "Rocket Alert", 600).await;
    }
    for place in &places[4..6] {
        post(&http, ingest.addr, place, "Rocket Alert", 2).await;
    }
    let (stop, mut stopped) = watch::channel(false);
    let poster = {
        let (http, ingest, places) = (http.clone(), ingest.addr, places[..4].to_vec());
        tokio::spawn(async move {
            let kinds = ["Rocket Alert", "Hostile Aircraft", "Earthquake"];
            for n in 0u64.. {
                // Each one ends later than the last: an update event.
                let place = &places[n as usize % places.len()];
                post(
                    &http,
                    ingest,
                    place,
                    kinds[n as usize % kinds.len()],
                    601 + n,
                )
                .await;
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        })
    };
    page.until("opens and updates shown", |state| {
        (state["received"].as_array()?.len() >= 12).then_some(())
    })
    .await;

    notify.kill().await;
    for place in &places[6..] {
        post(&http, ingest.addr, place, "Earthquake", 600).await;
    }
    eventually(WAIT, "4 and 5 closed meanwhile", || async {
        store
            .active(Some(&places[4..6]))
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    let notify = NotifyProcess::start(addr, &ingest.prefix, &origin).await;
    let logged = store
        .events_after(alert_core::Offset::START, 100_000)
        .await
        .unwrap()
        .len();
    page.until("reconnected and live again", |state| {
        let received = state["received"].as_array()?.len();
        (state["snapshots"] == 2 && received >= logged + 8).then_some(())
    })
    .await;
    stop.send(true).unwrap();
    poster.await.unwrap();

    // Closes still due (none: 0-3 and 6-7 last ten minutes) aside, the page catches up.
    let deadline = Deadline::after(WAIT).every(PAGE_POLL);
    let (state, active, log) = loop {
        let state = page.state().await;
        let url = format!("http://{addr}/api/active?locations={}", places.join(","));
        let active: Value = http.get(url).send().await.unwrap().json().await.unwrap();
        let log = store
            .events_after(alert_core::Offset::START, 100_000)
            .await
            .unwrap();
        let shown: Vec<alert_core::Offset> = state["received"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["offset"].as_str().unwrap().parse().unwrap())
            .collect();
        let logged: Vec<alert_core::Offset> = log.iter().map(|e| e.offset).collect();
        if shown == logged && windows(&state["windows"]) == windows(&active["active"]) {
            break (state, active, log);
        }
        deadline
            .tick(|| {
                format!(
                    "for the page to catch up:\nshown  {shown:?}\nlogged {logged:?}\n\
                     page windows {}\nactive       {}",
                    Value::from(windows(&state["windows"])),
                    Value::from(windows(&active["active"]))
                )
            })
            .await;
    };
    assert_eq!(windows(&active["active"]).len(), 6, "{active}");
    let closed = |place: &String| {
        log.iter()
            .any(|e| &e.location == place && e.event_type == alert_core::EventType::Close)
    };
    assert!(places[4..6].iter().all(closed), "4 and 5 closed");
    assert_eq!(
        state["resyncs"], 0,
        "the epoch stayed: a resume, not a resync"
    );
    assert_eq!(state["connects"], 2, "{state}");

    notify.kill().await;
    drop(page);
    ingest.stop().await;
    store.delete_all().await.unwrap();
}
