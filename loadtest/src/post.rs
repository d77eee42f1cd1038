//! POSTs to the listener at a fixed rate over K keep-alive connections, open loop:
//! request i is due at `start + i / rate`; latency is measured both from the send
//! and from the due time (so a stalled server shows up instead of being hidden).

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::stats::{self, histogram};

/// The body of request `seq`, given the wall-clock send time (unix µs).
pub(crate) type BodyFn = Arc<dyn Fn(u64, u64) -> String + Send + Sync>;

#[derive(Debug)]
pub(crate) struct PostStats {
    pub(crate) service: Histogram<u64>,
    pub(crate) from_due: Histogram<u64>,
    pub(crate) per_second: Vec<Histogram<u64>>,
    pub(crate) statuses: BTreeMap<String, u64>,
    /// Requests sent more than 1 ms after they were due.
    pub(crate) late: u64,
    /// Sequence numbers answered 2xx.
    pub(crate) accepted: Vec<u64>,
}

impl Default for PostStats {
    fn default() -> Self {
        Self {
            service: histogram(3),
            from_due: histogram(3),
            per_second: Vec::new(),
            statuses: BTreeMap::new(),
            late: 0,
            accepted: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) url: String,
    pub(crate) rate: f64,
    pub(crate) count: u64,
    pub(crate) deadline: Duration,
    pub(crate) connections: usize,
}

/// Sends `plan.count` requests (or fewer, if the deadline comes first); `sent`
/// counts requests started, for progress.
pub(crate) async fn run(
    plan: Plan,
    body: BodyFn,
    sent: Arc<AtomicU64>,
) -> anyhow::Result<PostStats> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.connections)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .build()?;
    let stats = Arc::new(Mutex::new(PostStats::default()));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + plan.deadline;
    let interval = Duration::from_secs_f64(1.0 / plan.rate.max(0.001));
    let mut workers = Vec::new();
    for _ in 0..plan.connections.max(1) {
        let (client, stats, next, sent, body, plan) = (
            client.clone(),
            Arc::clone(&stats),
            Arc::clone(&next),
            Arc::clone(&sent),
            Arc::clone(&body),
            plan.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= plan.count {
                    break;
                }
                let due = start + interval.mul_f64(seq as f64);
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due).await;
                let sent_at = Instant::now();
                let sent_us = stats::now_us();
                sent.fetch_add(1, Ordering::Relaxed);
                let result = client
                    .post(&plan.url)
                    .header("content-type", "application/json")
                    .body(body(seq, sent_us))
                    .send()
                    .await;
                let mut ok = false;
                let status = match result {
                    Ok(response) => {
                        ok = response.status().is_success();
                        let status = response.status().as_u16().to_string();
                        // Read the body so the connection goes back to the pool.
                        let _ = response.bytes().await;
                        status
                    }
                    Err(error) if error.is_timeout() => "timeout".to_owned(),
                    Err(error) if error.is_connect() => "connect error".to_owned(),
                    Err(_) => "error".to_owned(),
                };
                let done = Instant::now();
                let service = (done - sent_at).as_micros() as u64;
                let from_due = (done - due).as_micros() as u64;
                let second =
                    (stats::now_us().saturating_sub(stats::start_us()) / 1_000_000) as usize;
                let mut stats = stats.lock().expect("post stats lock");
                stats::record(&mut stats.service, service.max(1));
                stats::record(&mut stats.from_due, from_due.max(1));
                if sent_at - due > Duration::from_millis(1) {
                    stats.late += 1;
                }
                if second < 3600 {
                    if stats.per_second.len() <= second {
                        stats.per_second.resize_with(second + 1, || histogram(2));
                    }
                    stats::record(&mut stats.per_second[second], service.max(1));
                }
                *stats.statuses.entry(status).or_default() += 1;
                if ok {
                    stats.accepted.push(seq);
                }
            }
        }));
    }
    for worker in workers {
        worker.await?;
    }
    let stats = std::mem::take(&mut *stats.lock().expect("post stats lock"));
    Ok(stats)
}

/// RFC 3339 with milliseconds for a unix-µs time.
pub(crate) fn rfc3339(us: u64) -> String {
    chrono::DateTime::from_timestamp_micros(us as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One alert as JSON.
pub(crate) fn alert_body(
    location: &str,
    timestamp_us: u64,
    duration_seconds: u64,
    title: &str,
) -> String {
    serde_json::json!({
        "location": location,
        "type": "Rocket Alert",
        "timestamp": rfc3339(timestamp_us),
        "durationSeconds": duration_seconds,
        "title": title,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_bodies() {
        let body: serde_json::Value =
            serde_json::from_str(&alert_body("lt-1-0", 1_764_064_800_123_456, 30, "lt:1:0:5"))
                .unwrap();
        assert_eq!(body["timestamp"], "2025-11-25T10:00:00.123Z");
        assert_eq!(body["durationSeconds"], 30);
        assert_eq!(body["title"], "lt:1:0:5");
    }
}
