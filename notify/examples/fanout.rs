//! Fan-out measurement: N idle Socket.IO clients (WebSocket, Engine.IO v4) on a
//! running notify, alerts POSTed to a running listener at a fixed rate, latency from
//! just before each POST to each client's receipt of its `open` event.
//!
//! Run the three services first (release builds, one Redis prefix and queue), then:
//! `cargo run --release -p alert-notify --example fanout -- --clients 1000 --rate 20 --seconds 30 --notify-pid <pid>`
//!
//! Bounded: fixed client count, rate and duration; it exits when done.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clap::Parser;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Args {
    /// notify's address.
    #[arg(long, default_value = "127.0.0.1:4002")]
    notify: String,
    /// The listener's address.
    #[arg(long, default_value = "127.0.0.1:4000")]
    listener: String,
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Alerts per second.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Apply alerts straight to Redis under this prefix (as the processor would)
    /// instead of POSTing them: measures notify's share alone.
    #[arg(long)]
    direct_prefix: Option<String>,
    /// notify's process id, to report its memory per idle connection.
    #[arg(long)]
    notify_pid: Option<u32>,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Connects one client and forwards the location of every `alert` it receives.
async fn client(url: String, received: mpsc::UnboundedSender<(String, Instant)>) {
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    ws.send(Message::text("40{}")).await.unwrap();
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let text = text.as_str();
        if text == "2" {
            let _ = ws.send(Message::text("3")).await;
        } else if let Some(packet) = text.strip_prefix("42[\"alert\",") {
            let now = Instant::now();
            // Cheap extraction of the location; the payload is the contract JSON.
            if let Some(start) = packet.find("\"location\":\"") {
                let rest = &packet[start + 12..];
                let end = rest.find('"').unwrap_or(0);
                let _ = received.send((rest[..end].to_owned(), now));
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", args.notify);
    let before = args.notify_pid.and_then(rss_kib);
    let (tx, mut rx) = mpsc::unbounded_channel();
    for i in 0..args.clients {
        tokio::spawn(client(url.clone(), tx.clone()));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(tx);
    // Let the handshakes finish before measuring memory and latency.
    tokio::time::sleep(Duration::from_secs(3)).await;
    if let (Some(pid), Some(before)) = (args.notify_pid, before) {
        let after = rss_kib(pid).unwrap_or(before);
        println!(
            "notify RSS: {before} KiB before, {after} KiB with {} idle clients: {:.1} KiB per connection",
            args.clients,
            (after.saturating_sub(before)) as f64 / args.clients as f64
        );
    }

    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let http = reqwest::Client::new();
    let store = match &args.direct_prefix {
        Some(prefix) => Some(
            alert_redis::Store::connect(
                "redis://127.0.0.1:6379",
                alert_redis::Keys::new(prefix.clone()),
                alert_redis::StoreSettings::default(),
            )
            .await
            .expect("redis"),
        ),
        None => None,
    };
    let total = args.rate as u64 * args.seconds;
    let poster = {
        let sent = sent.clone();
        let listener = args.listener.clone();
        let run = format!("{:x}", std::process::id());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / args.rate);
            for n in 0..total {
                tick.tick().await;
                let location = format!("bench-{run}-{n}");
                let body = serde_json::json!({
                    "location": location, "type": "Rocket Alert",
                    "timestamp": chrono::Utc::now().to_rfc3339(), "duration": 10
                });
                if let Some(store) = &store {
                    let now = chrono::Utc::now();
                    let alert = alert_core::QueueMessage::Alert(alert_core::Alert::new(
                        location.clone(),
                        "Rocket Alert",
                        now,
                        now + chrono::TimeDelta::minutes(10),
                    ));
                    sent.lock().unwrap().insert(location, Instant::now());
                    let store = store.clone();
                    tokio::spawn(async move { store.apply(&alert, None).await.expect("apply") });
                    continue;
                }
                sent.lock().unwrap().insert(location, Instant::now());
                let http = http.clone();
                let url = format!("http://{listener}/api/alerts");
                tokio::spawn(async move {
                    match http.post(url).json(&body).send().await {
                        Ok(r) if r.status() == 202 => {}
                        other => eprintln!("POST failed: {other:?}"),
                    }
                });
            }
        })
    };

    let started = Instant::now();
    let expected = total * args.clients as u64;
    let mut latencies_us = Vec::with_capacity(expected as usize);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.seconds + 10);
    while (latencies_us.len() as u64) < expected {
        let Ok(Some((location, at))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            break;
        };
        if let Some(sent_at) = sent.lock().unwrap().get(&location) {
            latencies_us.push(at.saturating_duration_since(*sent_at).as_micros() as u64);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    poster.await.unwrap();
    latencies_us.sort_unstable();
    let pct = |p: f64| {
        latencies_us
            .get(
                ((latencies_us.len() as f64 * p) as usize)
                    .min(latencies_us.len().saturating_sub(1)),
            )
            .map(|us| *us as f64 / 1000.0)
            .unwrap_or(f64::NAN)
    };
    println!(
        "{} clients, {} alerts at {}/s: {} of {} deliveries in {:.1} s ({:.0} deliveries/s)",
        args.clients,
        total,
        args.rate,
        latencies_us.len(),
        expected,
        elapsed,
        latencies_us.len() as f64 / elapsed
    );
    println!(
        "POST -> client latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
}
