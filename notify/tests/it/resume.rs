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
    assert!(
        missed
            .windows(2)
            .all(|w| crate::helpers::offset_lt(&w[0].offset, &w[1].offset))
    );

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
