//! Upstream sources: a bounded stream of uniquely identified alerts (single, batches,
//! several locations, CAP Alert then Cancel, deliberate re-sends), POSTed to the
//! listeners at a steady rate. Like a real source, each POST is retried with the same
//! idempotency keys on a 5xx, a timeout or a refused connection, on the other listener.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alert_testkit::cap::CapMessage;
use chrono::{SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::{
    endpoints::Endpoints,
    record::{Accepted, AcceptedCancel, Posts},
};

const TYPES: [&str; 4] = [
    "Rocket Alert",
    "Rocket Alert",
    "Hostile Aircraft",
    "Earthquake",
];
/// A source stops retrying a POST this long after it first tried.
const GIVE_UP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Plan {
    pub seconds: f64,
    /// POSTs per second.
    pub rate: f64,
    pub locations: usize,
    pub seed: u64,
}

pub fn location(i: usize) -> String {
    format!("loc-{i:02}")
}

/// What one POST carries, and what its 202 promises.
struct Body {
    content_type: &'static str,
    bytes: String,
    /// The locations of each alert in the body, in order.
    alerts: Vec<(Vec<String>, chrono::DateTime<Utc>)>,
    /// A CAP Cancel: the location whose window it closes.
    cancel: Option<String>,
}

#[derive(Default)]
struct Outcome {
    posts: Posts,
    accepted: Vec<Accepted>,
    cancels: Vec<AcceptedCancel>,
    /// Accepted bodies, for deliberate re-sends.
    sent: Vec<Arc<Body>>,
}

fn json_alert(
    id: String,
    locations: &[String],
    rng: &mut fastrand::Rng,
) -> (Value, chrono::DateTime<Utc>) {
    let now = Utc::now();
    let seconds = rng.i64(2..=6);
    let mut alert = json!({
        "type": TYPES[rng.usize(..TYPES.len())],
        "timestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "durationSeconds": seconds,
        "id": id,
        "source": "chaos",
    });
    match locations {
        [one] => alert["location"] = json!(one),
        many => alert["locations"] = json!(many),
    }
    (alert, now + TimeDelta::seconds(seconds))
}

const CAP_SENDER: &str = "chaos@example.org";

/// The body of the `n`th POST, and (for a CAP alert) the Cancel to send a second later.
fn body(run: &str, n: u64, plan: &Plan, rng: &mut fastrand::Rng) -> (Body, Option<Body>) {
    let pick = |rng: &mut fastrand::Rng| location(rng.usize(..plan.locations));
    match rng.u8(..100) {
        // One alert, for one location or (one in eight) two.
        0..80 => {
            let mut locations = vec![pick(rng)];
            if rng.u8(..8) == 0 {
                locations.push(pick(rng));
                locations.dedup();
            }
            let (alert, end) = json_alert(format!("{run}-{n}"), &locations, rng);
            let body = Body {
                content_type: "application/json",
                bytes: alert.to_string(),
                alerts: vec![(locations, end)],
                cancel: None,
            };
            (body, None)
        }
        80..92 => {
            // A source that cached updates while offline sends them as one array.
            let mut alerts = Vec::new();
            let mut promised = Vec::new();
            for k in 0..rng.u64(2..=8) {
                let locations = vec![pick(rng)];
                let (alert, end) = json_alert(format!("{run}-{n}.{k}"), &locations, rng);
                alerts.push(alert);
                promised.push((locations, end));
            }
            let body = Body {
                content_type: "application/json",
                bytes: Value::from(alerts).to_string(),
                alerts: promised,
                cancel: None,
            };
            (body, None)
        }
        _ => {
            // A CAP alert on a location of its own, cancelled a second later.
            let area = format!("cap-{n}");
            let identifier = format!("{run}-cap-{n}");
            let expires = Utc::now() + TimeDelta::seconds(rng.i64(4..=8));
            let message = CapMessage::alert(&identifier, CAP_SENDER, &area, expires);
            let alert = Body {
                content_type: "application/cap+xml",
                bytes: message.to_xml(),
                alerts: vec![(vec![area.clone()], expires)],
                cancel: None,
            };
            let references = format!("{CAP_SENDER},{identifier},{}", message.sent.to_rfc3339());
            let cancel_id = format!("{identifier}-cancel");
            let cancel = CapMessage {
                identifier: &cancel_id,
                msg_type: "Cancel",
                references: Some(&references),
                ..CapMessage::alert(&identifier, CAP_SENDER, &area, expires)
            };
            let cancel = Body {
                content_type: "application/cap+xml",
                bytes: cancel.to_xml(),
                alerts: Vec::new(),
                cancel: Some(area),
            };
            (alert, Some(cancel))
        }
    }
}

/// POSTs the plan, retrying as a source would; returns what the sources were told.
pub async fn run(
    plan: Plan,
    run: String,
    listeners: Endpoints,
) -> (Posts, Vec<Accepted>, Vec<AcceptedCancel>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .expect("an HTTP client");
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let in_flight = Arc::new(Semaphore::new(128));
    let mut rng = fastrand::Rng::with_seed(plan.seed);
    let began = Instant::now();
    let total = (plan.seconds * plan.rate) as u64;
    let mut tasks = Vec::new();
    for n in 0..total {
        let due = began + Duration::from_secs_f64(n as f64 / plan.rate);
        tokio::time::sleep_until(due.into()).await;
        // One in twenty POSTs sends an accepted body again, keys and all.
        let resend = rng.u8(..20) == 0;
        let again = resend
            .then(|| {
                let outcome = outcome.lock().unwrap();
                (!outcome.sent.is_empty())
                    .then(|| outcome.sent[rng.usize(..outcome.sent.len())].clone())
            })
            .flatten();
        let is_resend = again.is_some();
        let (first, then) = match again {
            Some(body) => (body, None),
            None => {
                let (body, cancel) = body(&run, n, &plan, &mut rng);
                (Arc::new(body), cancel.map(Arc::new))
            }
        };
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("open semaphore");
        let (http, listeners, outcome) = (http.clone(), listeners.clone(), outcome.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            post(&http, &listeners, n as usize, &first, is_resend, &outcome).await;
            if let Some(cancel) = then {
                tokio::time::sleep(Duration::from_secs(1)).await;
                post(&http, &listeners, n as usize + 1, &cancel, false, &outcome).await;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let outcome = std::mem::take(&mut *outcome.lock().unwrap());
    (outcome.posts, outcome.accepted, outcome.cancels)
}

/// How one request ended, as a source sees it.
enum Answer {
    Accepted(Value),
    Status(u16),
    Timeout,
    /// No connection, or it broke before an answer.
    Refused,
}

async fn post(
    http: &reqwest::Client,
    listeners: &Endpoints,
    home: usize,
    body: &Arc<Body>,
    resend: bool,
    outcome: &Mutex<Outcome>,
) {
    let began = Instant::now();
    {
        let mut outcome = outcome.lock().unwrap();
        outcome.posts.planned += 1;
        outcome.posts.resent += resend as u64;
    }
    for attempt in 0u32.. {
        let (_, listener) = listeners.pick(home + attempt as usize);
        let sent = http
            .post(format!("http://{listener}/api/alerts"))
            .header("content-type", body.content_type)
            .body(body.bytes.clone())
            .send()
            .await;
        let answer = match sent {
            Ok(response) if response.status() == 202 => match response.json::<Value>().await {
                Ok(reply) => Answer::Accepted(reply),
                Err(_) => Answer::Status(202),
            },
            Ok(response) => Answer::Status(response.status().as_u16()),
            Err(error) if error.is_timeout() => Answer::Timeout,
            Err(_) => Answer::Refused,
        };
        let retry = {
            let mut outcome = outcome.lock().unwrap();
            outcome.posts.requests += 1;
            let retry = match answer {
                Answer::Accepted(reply) => {
                    outcome.posts.accepted += 1;
                    accept(&mut outcome, body, &reply, resend);
                    false
                }
                Answer::Timeout => {
                    outcome.posts.timeouts += 1;
                    true
                }
                Answer::Refused => {
                    outcome.posts.refused += 1;
                    true
                }
                Answer::Status(status) if status >= 500 => {
                    outcome.posts.status_5xx += 1;
                    outcome.posts.status_503 += (status == 503) as u64;
                    true
                }
                Answer::Status(_) => {
                    // 4xx, or a 202 without its ids: a source must not retry that.
                    outcome.posts.refused_4xx += 1;
                    false
                }
            };
            if retry && began.elapsed() > GIVE_UP {
                outcome.posts.gave_up += 1;
                return;
            }
            outcome.posts.retried += retry as u64;
            retry
        };
        if !retry {
            return;
        }
        tokio::time::sleep(Duration::from_millis((50u64 << attempt.min(4)).min(1000))).await;
    }
}

/// Records what a 202 promised. A re-sent body promises nothing new (same keys, same
/// ids), but its ids must be the first answer's.
fn accept(outcome: &mut Outcome, body: &Arc<Body>, reply: &Value, resend: bool) {
    let ids: Vec<Uuid> = reply["ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if resend {
        return;
    }
    if let Some(location) = &body.cancel {
        for id in ids {
            outcome.cancels.push(AcceptedCancel {
                id,
                location: location.clone(),
            });
        }
        return;
    }
    for (id, (locations, end)) in ids.into_iter().zip(&body.alerts) {
        outcome.accepted.push(Accepted {
            id,
            locations: locations.clone(),
            end: *end,
        });
    }
    outcome.sent.push(body.clone());
}
