//! Per-address limits with the stock socket.io-client and plain SSE requests: the
//! address over its limit is refused while another still connects, a closed session
//! gives its place back, and `X-Forwarded-For` counts only from a trusted proxy.

use std::time::Duration;

use alert_testkit::{
    Deadline,
    pages::{next_json, node},
};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout},
};

use crate::helpers::{REDIS_URL, TestApp, WAIT, config, unique};

/// connections.js: stock socket.io-client sessions opened and closed on command.
struct Sessions {
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    _child: Child,
}

impl Sessions {
    async fn start(app: &TestApp) -> Sessions {
        let mut child = node("connections.js")
            .arg(format!("http://{}", app.addr))
            .spawn()
            .expect("node (install it with scripts/clients)");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = next_json(&mut lines, "connections.js").await;
        assert_eq!(ready["step"], "ready", "{ready}");
        Sessions {
            stdin,
            lines,
            _child: child,
        }
    }

    async fn command(&mut self, line: &str) -> Value {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        next_json(&mut self.lines, line).await
    }

    /// Opens a session from `address`; whether it connected.
    async fn open(&mut self, address: &str) -> bool {
        let opened = self.command(&format!("open {address}")).await;
        assert_eq!(opened["step"], "open", "{opened}");
        opened["connected"].as_bool().unwrap()
    }
}

fn limited_config(
    name: &str,
    trusted: &str,
    sessions: usize,
    streams: usize,
) -> alert_notify::Config {
    let mut config = config(&format!("{}:", unique(name)), REDIS_URL);
    config.clients.addresses.trusted_proxies = trusted.parse().unwrap();
    config.clients.addresses.max_connections_per_address = sessions;
    config.clients.addresses.max_streams_per_address = streams;
    config
}

#[tokio::test]
async fn the_session_over_an_addresss_limit_is_refused_while_another_address_connects() {
    let app = TestApp::spawn(limited_config("limits", "127.0.0.1", 3, 0)).await;
    let mut sessions = Sessions::start(&app).await;
    for _ in 0..3 {
        assert!(sessions.open("203.0.113.7").await, "within the limit");
    }
    assert!(!sessions.open("203.0.113.7").await, "the fourth is refused");
    assert!(
        sessions.open("203.0.113.8").await,
        "another address still connects"
    );
    let refused = r#"alerts_notify_limited_total{limit="sessions"}"#;
    assert!(app.metric(refused).await >= 1.0, "the refusal is counted");

    // A closed session gives its place back.
    let closed = sessions.command("close 0").await;
    assert_eq!(closed["step"], "closed", "{closed}");
    let deadline = Deadline::after(WAIT).every(Duration::from_millis(200));
    while !sessions.open("203.0.113.7").await {
        deadline
            .tick(|| "for the closed session's place".into())
            .await;
    }
    app.stop().await;
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = TestApp::spawn(limited_config("untrusted", "", 2, 0)).await;
    let mut sessions = Sessions::start(&app).await;
    assert!(sessions.open("198.51.100.1").await);
    assert!(sessions.open("198.51.100.2").await);
    assert!(
        !sessions.open("198.51.100.3").await,
        "all three come from 127.0.0.1, whatever the header says"
    );
    app.stop().await;
}

#[tokio::test]
async fn event_streams_are_limited_per_address_and_released_when_they_end() {
    let app = TestApp::spawn(limited_config("streams", "127.0.0.1", 0, 1)).await;
    let stream = |address: &'static str| {
        app.http
            .get(app.url("/api/stream"))
            .header("x-forwarded-for", address)
            .send()
    };
    let first = stream("203.0.113.7").await.unwrap();
    assert_eq!(first.status(), 200);
    let refused = stream("203.0.113.7").await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let other = stream("203.0.113.8").await.unwrap();
    assert_eq!(other.status(), 200, "another address");
    drop(first);
    let deadline = Deadline::after(WAIT).every(Duration::from_millis(100));
    loop {
        let again = stream("203.0.113.7").await.unwrap();
        if again.status() == 200 {
            break;
        }
        deadline
            .tick(|| "for the ended stream's place".into())
            .await;
    }
    app.stop().await;
}

/// A client flooding `subscribe` gets error acks at once for the calls over its budget,
/// keeps what it subscribed to, and still receives its alerts.
#[tokio::test]
async fn a_subscribe_flood_is_throttled_and_deliveries_continue() {
    let mut config = config(&format!("{}:", unique("flood")), REDIS_URL);
    config.clients.subscribes_per_second = 5.0;
    let app = TestApp::spawn(config).await;
    let mut child = node("subscribe-flood.js")
        .arg(format!("http://{}", app.addr))
        .args(["Haifa", "200"])
        .spawn()
        .expect("node (install it with scripts/clients)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let flooded = next_json(&mut lines, "subscribe-flood.js").await;
    assert_eq!(flooded["step"], "flooded", "{flooded}");
    let (ok, errors) = (
        flooded["ok"].as_u64().unwrap(),
        flooded["errors"].as_u64().unwrap(),
    );
    assert!(
        (1..=10).contains(&ok),
        "about the burst (10) went through: {flooded}"
    );
    assert_eq!(ok + errors, 200, "every call was answered: {flooded}");
    assert!(
        flooded["error"]
            .as_str()
            .unwrap()
            .starts_with("too many subscribe"),
        "{flooded}"
    );
    assert!(
        app.metric(r#"alerts_notify_limited_total{limit="subscribes"}"#)
            .await
            >= 190.0,
        "the refusals are counted"
    );
    app.apply(&crate::helpers::alert("Haifa", "Rocket Alert", 10))
        .await;
    let alert = next_json(&mut lines, "subscribe-flood.js").await;
    assert_eq!(alert["step"], "alert", "{alert}");
    assert_eq!(alert["event"]["location"], "Haifa", "{alert}");
    app.stop().await;
}
