use fred::interfaces::ClientLike;
use serde_json::json;

use crate::helpers::{TestApp, alert};

#[tokio::test]
async fn reconnect_with_since_gets_exactly_the_missed_events() {
    let app = TestApp::ready("since").await;
    let mut client = app.client(json!({ "locations": ["Nahariya"] })).await;
    client.expect("snapshot").await;
    app.apply(&alert("Nahariya", "Rocket Alert", 10)).await;
    let seen = client.alerts(1).await.remove(0);
    drop(client);

    // Missed while away: two for Nahariya, one elsewhere.
    app.apply(&alert("Nahariya", "Earthquake", 10)).await;
    app.apply(&alert("Akko", "Rocket Alert", 10)).await;
    app.apply(&alert("Nahariya", "Rocket Alert", 20)).await;
    // Wait until notify has fanned them out (its position is past them).
    crate::helpers::eventually(crate::helpers::WAIT, "events fanned out", || async {
        let (_, body) = app.get_json("/api/active").await;
        let events = app.store.latest_events(1).await.unwrap();
        (body["offset"] == json!(events[0].offset)).then_some(())
    })
    .await;

    let since = json!({ "epoch": seen.epoch, "offset": seen.offset });
    let mut back = app.client(json!({})).await;
    back.expect("snapshot").await;
    let ack = back
        .emit_with_ack(
            "subscribe",
            json!({ "locations": ["Nahariya"], "since": since }),
        )
        .await;
    assert_eq!(ack["recovered"], true, "{ack}");
    let missed: Vec<alert_core::Event> = serde_json::from_value(ack["missed"].clone()).unwrap();
    assert_eq!(missed.len(), 2, "{ack}");
    assert!(missed.iter().all(|e| e.location == "Nahariya"));
    assert!(missed.windows(2).all(|w| w[0].offset < w[1].offset));

    // The same through the handshake auth: the snapshot carries missed/recovered.
    let mut handshake = app
        .client(json!({ "locations": ["Nahariya"], "since": since }))
        .await;
    let snapshot = handshake.expect("snapshot").await;
    assert_eq!(snapshot["recovered"], true, "{snapshot}");
    assert_eq!(snapshot["missed"], ack["missed"]);
    app.stop().await;
}

#[tokio::test]
async fn trimmed_log_or_new_epoch_is_not_recovered() {
    let app = TestApp::ready("unrecoverable").await;
    let mut client = app.client(json!({})).await;
    client.expect("snapshot").await;
    app.apply(&alert("Dimona", "Rocket Alert", 10)).await;
    let seen = client.alerts(1).await.remove(0);
    for city in ["Arad", "Yeruham", "Mitzpe Ramon"] {
        app.apply(&alert(city, "Rocket Alert", 10)).await;
    }
    client.alerts(3).await;
    let since = json!({ "since": { "epoch": seen.epoch, "offset": seen.offset } });

    // Trim the log to the newest entry: the client's position is gone.
    let client_redis = app.store.client();
    let log = app.store.keys().log();
    let _: i64 = client_redis
        .custom(
            fred::cmd!("XTRIM"),
            vec![log.clone(), "MAXLEN".into(), "1".to_owned()],
        )
        .await
        .unwrap();
    let ack = client.emit_with_ack("subscribe", since.clone()).await;
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_eq!(ack["missed"], json!([]));
    assert_eq!(
        ack["active"].as_array().unwrap().len(),
        4,
        "the snapshot is the truth: {ack}"
    );

    // A new epoch (the data set was reset): never recovered, even for a recent offset.
    let newest = app.store.latest_events(1).await.unwrap().remove(0);
    let _: () = fred::interfaces::KeysInterface::set(
        client_redis,
        app.store.keys().epoch(),
        "another",
        None,
        None,
        false,
    )
    .await
    .unwrap();
    let ack = client
        .emit_with_ack(
            "subscribe",
            json!({ "since": { "epoch": newest.epoch, "offset": newest.offset } }),
        )
        .await;
    assert_eq!(ack["recovered"], false, "{ack}");
    app.stop().await;
}

/// Issue 12 (found by alert-chaos's redis-power-loss scenario): Redis came back from
/// an AOF without its newest writes, so clients hold events the log no longer has.
/// notify notices the log no longer holds its fan-out position and closes every
/// client's transport; a resume from a forgotten offset is `recovered: false` with
/// the snapshot, and one from an offset still held is recovered as before.
#[tokio::test]
async fn a_log_that_forgot_delivered_events_resynchronises_every_client() {
    let app = TestApp::ready("forgot").await;
    let mut client = app.client(json!({})).await;
    client.expect("snapshot").await;
    for city in ["Ofakim", "Netivot", "Sderot"] {
        app.apply(&alert(city, "Rocket Alert", 10)).await;
    }
    let seen = client.alerts(3).await;

    // What Redis restarted from never had the last two events.
    let forgotten: Vec<String> = seen[1..].iter().map(|e| e.offset.to_string()).collect();
    let mut args = vec![app.store.keys().log()];
    args.extend(forgotten);
    let _: i64 = app
        .store
        .client()
        .custom(fred::cmd!("XDEL"), args)
        .await
        .unwrap();

    // The connected client is made to resynchronise: its transport closes.
    loop {
        match client.next_within(crate::helpers::WAIT).await {
            Some((name, _)) if name == "disconnect" => break,
            Some(_) => continue,
            None => panic!("the client was not made to resynchronise"),
        }
    }
    assert_eq!(app.metric("alerts_notify_log_regressions_total").await, 1.0);

    let since = |event: &alert_core::Event| json!({ "since": { "epoch": event.epoch, "offset": event.offset } });
    let mut back = app.client(since(&seen[2])).await;
    let snapshot = back.expect("snapshot").await;
    assert_eq!(snapshot["recovered"], false, "{snapshot}");
    assert_eq!(
        snapshot["active"].as_array().unwrap().len(),
        3,
        "{snapshot}"
    );
    let mut held = app.client(since(&seen[0])).await;
    let snapshot = held.expect("snapshot").await;
    assert_eq!(snapshot["recovered"], true, "{snapshot}");

    // SSE resumes the same way: a forgotten Last-Event-ID gets the snapshot first.
    let response = app
        .http
        .get(app.url("/api/stream"))
        .header("last-event-id", seen[2].offset.to_string())
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let first = futures::StreamExt::next(&mut body).await.unwrap().unwrap();
    let first = String::from_utf8_lossy(&first);
    assert!(first.contains("event: snapshot"), "{first}");
    app.stop().await;
}

/// The newest offset in the log, overall and per location, once the writer is done.
struct Lasts {
    overall: alert_core::Offset,
    per_location: std::collections::HashMap<String, alert_core::Offset>,
}

/// What one client saw: the offsets of its `missed` events, then of its live ones.
struct Seen {
    since: alert_core::Offset,
    location: Option<String>,
    offsets: Vec<alert_core::Offset>,
}

/// Connects with `since`, takes the snapshot's `missed` and then live events until it
/// has `last`; returns the offsets in the order they arrived.
async fn follow(
    app: &TestApp,
    since: &alert_core::Event,
    location: Option<String>,
    mut last: tokio::sync::watch::Receiver<Option<Lasts>>,
    reconnect_after: Option<usize>,
) -> Seen {
    let auth = |from: &alert_core::Event| {
        let mut auth = json!({ "since": { "epoch": from.epoch, "offset": from.offset } });
        if let Some(location) = &location {
            auth["locations"] = json!([location]);
        }
        auth
    };
    let mut offsets = Vec::new();
    let mut resume_from = since.clone();
    let mut reconnects = reconnect_after;
    'connection: loop {
        let mut client = app.client(auth(&resume_from)).await;
        let snapshot = client.expect("snapshot").await;
        assert_eq!(snapshot["recovered"], true, "{snapshot}");
        let missed: Vec<alert_core::Event> =
            serde_json::from_value(snapshot["missed"].clone()).unwrap();
        let mut events = missed;
        let mut taken = 0;
        loop {
            for event in events.drain(..) {
                offsets.push(event.offset);
                resume_from = event;
                taken += 1;
                if reconnects.is_some_and(|n| taken >= n) {
                    reconnects = None;
                    continue 'connection; // drop this connection, resume from here
                }
            }
            let target = last.borrow().as_ref().map(|lasts| match &location {
                Some(location) => lasts.per_location[location],
                None => lasts.overall,
            });
            if let Some(target) = target
                && offsets.last().is_some_and(|o| *o >= target)
            {
                break 'connection;
            }
            let next = tokio::select! {
                next = client.next_within(crate::helpers::WAIT) => next,
                _ = last.changed() => continue, // the writer is done: check again
            };
            match next {
                Some((name, data)) if name == "alert" => {
                    events.push(serde_json::from_value(data).unwrap());
                }
                Some(_) => {}
                None => break 'connection,
            }
        }
    }
    Seen {
        since: since.offset,
        location,
        offsets,
    }
}

/// Issue 19, section 4: hundreds of clients resume (handshake `since`) while events
/// flow; some drop their connection midway and resume again. Every client gets the
/// events after its `since`, missed then live, strictly increasing and complete
/// against the log: never one overtaken by a newer live event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_while_events_flow_are_in_order_and_complete() {
    let app = std::sync::Arc::new(TestApp::ready("resume-load").await);
    app.apply(&alert("Start", "Rocket Alert", 10)).await;
    let start = app.store.latest_events(1).await.unwrap().remove(0);
    let (last_tx, last_rx) = tokio::sync::watch::channel(None);
    let locations = 10;
    let total = 1500;
    let writer = tokio::spawn({
        let app = app.clone();
        async move {
            for i in 0..total {
                app.apply(&alert(
                    &format!("Town {}", i % locations),
                    "Rocket Alert",
                    10,
                ))
                .await;
            }
            let log = app.store.latest_events(total as u64).await.unwrap();
            let lasts = Lasts {
                overall: log.last().unwrap().offset,
                per_location: log.iter().map(|e| (e.location.clone(), e.offset)).collect(),
            };
            last_tx.send_replace(Some(lasts));
        }
    });
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..200usize {
        let (app, start, last) = (app.clone(), start.clone(), last_rx.clone());
        clients.spawn(async move {
            // Spread the connects over the flow of events.
            tokio::time::sleep(std::time::Duration::from_millis(i as u64 * 2)).await;
            let location = (i % 2 == 1).then(|| format!("Town {}", i % locations));
            let reconnect = (i % 3 == 0).then_some(5 + i % 50);
            follow(&app, &start, location, last, reconnect).await
        });
    }
    writer.await.unwrap();
    let log = app
        .store
        .events_after(start.offset, 1_000_000)
        .await
        .unwrap();
    assert_eq!(log.len(), total);
    while let Some(seen) = clients.join_next().await {
        let seen = seen.unwrap();
        let expected: Vec<_> = log
            .iter()
            .filter(|e| e.offset > seen.since)
            .filter(|e| seen.location.as_ref().is_none_or(|l| *l == e.location))
            .map(|e| e.offset)
            .collect();
        let who = &seen.location;
        if let Some(i) = seen.offsets.windows(2).position(|w| w[0] >= w[1]) {
            panic!(
                "{who:?}: {} after {} (out of order or twice)",
                seen.offsets[i + 1],
                seen.offsets[i]
            );
        }
        if let Some(i) = (0..expected.len()).find(|&i| seen.offsets.get(i) != Some(&expected[i])) {
            panic!(
                "{who:?}: {} of {} events; the first missing is {}",
                seen.offsets.len(),
                expected.len(),
                expected[i]
            );
        }
        assert_eq!(
            seen.offsets.len(),
            expected.len(),
            "{who:?}: more than the log"
        );
    }
    std::sync::Arc::into_inner(app).unwrap().stop().await;
}
