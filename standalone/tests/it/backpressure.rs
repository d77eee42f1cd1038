//! Flooding ingest beyond the queue: 503 with Retry-After, no crash, and exactly the
//! accepted alerts are applied.

use std::collections::HashSet;

use alert_testkit::contract::System;
use chrono::Utc;
use serde_json::{Value, json};

use crate::helpers::{Standalone, config};

const POSTERS: usize = 16;
const REQUESTS: usize = 25;
const ALERTS: usize = 10;
/// Locations per alert: each costs the processor a window and an event, so that the
/// queue fills while it works.
const LOCATIONS: usize = 20;

#[tokio::test]
async fn a_flood_beyond_the_queue_gets_503s_and_every_accepted_alert_is_applied() {
    let mut config = config(None);
    config.queue_capacity = ALERTS * LOCATIONS; // one request's worth
    config.ingest.max_batch = ALERTS;
    let system = Standalone::with(config).await;
    let url = format!("http://{}/api/alerts", system.ingest);
    let http = reqwest::Client::new();

    let posters =
        (0..POSTERS).map(|poster| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let (mut accepted, mut refused) = (Vec::new(), Vec::new());
                for request in 0..REQUESTS {
                    let batch: Vec<Value> = (0..ALERTS)
                        .map(|alert| {
                            let name = format!("flood {poster}/{request}/{alert}");
                            let locations: Vec<String> =
                                (0..LOCATIONS).map(|l| format!("{name} #{l}")).collect();
                            json!({ "locations": locations, "type": "Rocket Alert",
                                "timestamp": Utc::now().to_rfc3339(), "duration": 10 })
                        })
                        .collect();
                    let response = http.post(&url).json(&batch).send().await.unwrap();
                    let status = response.status().as_u16();
                    let retry_after = response.headers().get("retry-after").cloned();
                    let body: Value = response.json().await.unwrap();
                    match status {
                        202 => {
                            accepted.extend(body["ids"].as_array().unwrap().iter().zip(&batch).map(
                                |(id, alert)| (id.as_str().unwrap().to_owned(), alert.clone()),
                            ))
                        }
                        503 => {
                            assert!(retry_after.is_some(), "503 without Retry-After");
                            refused.extend(batch);
                        }
                        other => panic!("unexpected {other}: {body}"),
                    }
                }
                (accepted, refused)
            })
        });
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    for poster in futures::future::join_all(posters).await {
        let (a, r) = poster.unwrap();
        accepted.extend(a);
        refused.extend(r);
    }
    assert!(!refused.is_empty(), "the flood never filled the queue");
    assert!(!accepted.is_empty(), "nothing was accepted");

    // Still serving, and every accepted alert's windows exist (opened by it), while no
    // refused alert left a trace.
    let active: Value = alert_testkit::eventually(alert_testkit::WAIT, "all applied", || async {
        let active: Value = reqwest::get(format!("http://{}/api/active", system.clients))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let windows = active["active"].as_array()?.len();
        (windows == accepted.len() * LOCATIONS).then_some(active)
    })
    .await;
    let windows: HashSet<(String, String)> = active["active"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["location"].as_str().unwrap().to_owned(),
                w["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (id, alert) in &accepted {
        for location in alert["locations"].as_array().unwrap() {
            let key = (location.as_str().unwrap().to_owned(), id.clone());
            assert!(windows.contains(&key), "accepted {key:?} not applied");
        }
    }
    let opened: HashSet<&str> = windows
        .iter()
        .map(|(location, _)| location.as_str())
        .collect();
    for alert in &refused {
        let first = alert["locations"][0].as_str().unwrap();
        assert!(!opened.contains(first), "refused alert {first} was applied");
    }
    system.stop().await;
}
