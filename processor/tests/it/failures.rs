use alert_core::EventType;
use chrono::{TimeDelta, Utc};
use futures::StreamExt;
use lapin::{
    BasicProperties,
    options::{BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions},
    types::{AMQPValue, FieldTable},
};

use crate::helpers::{
    AMQP_URL, Env, Proxy, Running, WAIT, alert_at, config, eventually, kinds, message,
};

/// Garbage goes to the dead-letter queue with the reason, and the consumer goes on.
#[tokio::test]
async fn poison_message_is_dead_lettered_with_its_reason() {
    let env = Env::new("poison").await;
    let processor = Running::start(env.config()).await;
    processor.wait_ready().await;
    let connection = alert_amqp::connect(AMQP_URL, "poison test").await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_publish(
            "".into(),
            env.queue.as_str().into(),
            BasicPublishOptions::default(),
            b"{not json",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    env.publish(&[message(alert_at(
        "Ashkelon",
        "Rocket Alert",
        Utc::now(),
        TimeDelta::minutes(5),
    ))])
    .await;
    assert_eq!(
        kinds(&env.wait_events(1).await),
        [EventType::Open],
        "the next message is processed"
    );

    let dead_queue = alert_amqp::dead_letter_queue(&env.queue);
    let dead = eventually(WAIT, "dead letter", || async {
        channel
            .basic_get(dead_queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
    })
    .await;
    assert_eq!(dead.delivery.data, b"{not json");
    let headers = dead.delivery.properties.headers().clone().unwrap();
    let Some(AMQPValue::LongString(reason)) = headers.inner().get(alert_amqp::ERROR_HEADER) else {
        panic!("no reason header: {headers:?}");
    };
    assert!(reason.to_string().contains("undecodable"), "{reason}");
    let _ = connection.close(200, "done".into()).await;
    processor.stop().await;
    env.cleanup().await;
}

/// A consumer takes messages and dies without acking; some of them it had already
/// committed to Redis. Another processor gets them all, and the dedupe hides the
/// redeliveries: every alert counted once, one open per location.
#[tokio::test]
async fn crash_before_ack_loses_nothing_and_duplicates_nothing() {
    let env = Env::new("crash").await;
    let now = Utc::now();
    let alerts: Vec<_> = (0..100)
        .map(|i| {
            alert_at(
                &format!("Town {}", i % 10),
                "Rocket Alert",
                now,
                TimeDelta::hours(1),
            )
        })
        .collect();
    // Twenty queue entries of five alerts each.
    let messages: Vec<_> = alerts.iter().cloned().map(message).collect();
    for entry in messages.chunks(5) {
        env.publish(entry).await;
    }

    let doomed = alert_amqp::connect(AMQP_URL, "doomed consumer")
        .await
        .unwrap();
    let channel = doomed.create_channel().await.unwrap();
    channel
        .basic_qos(100, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = channel
        .basic_consume(
            env.queue.as_str().into(),
            "doomed".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..20 {
        let delivery = consumer.next().await.unwrap().unwrap();
        let taken = alert_core::decode_entry(&delivery.data).unwrap();
        assert_eq!(taken.len(), 5);
        if i % 2 == 0 {
            for message in &taken {
                env.store.apply(message, None).await.unwrap(); // committed, never acked
            }
        }
    }
    drop(consumer);
    let _ = doomed.close(320, "crash".into()).await;

    let processor = Running::start(env.config()).await;
    let windows = eventually(WAIT, "all 100 alerts counted", || async {
        let windows = env.store.active(None).await.unwrap();
        (windows.iter().map(|w| w.alert_count).sum::<u64>() >= 100).then_some(windows)
    })
    .await;
    assert_eq!(windows.len(), 10);
    assert!(windows.iter().all(|w| w.alert_count == 10), "{windows:?}");
    let events = env.events().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type == EventType::Open)
            .count(),
        10
    );
    assert!(
        events.iter().all(|e| e.event_type == EventType::Open),
        "identical alerts merge silently"
    );
    processor.stop().await;
    env.cleanup().await;
}

/// Redis unreachable: the message is held and retried (not lost, and its delivery limit
/// not burnt), /readyz fails; once Redis is back the processor recovers by itself and
/// the alert is applied.
#[tokio::test]
async fn redis_outage_requeues_and_recovers() {
    let env = Env::new("redis-outage").await;
    let proxy = Proxy::start("127.0.0.1:6379", true).await;
    let processor = Running::start(config(
        &env.queue,
        &env.prefix,
        &format!("redis://{}", proxy.addr),
    ))
    .await;
    processor.wait_ready().await;

    proxy.down();
    env.publish(&[message(alert_at(
        "Nazareth",
        "Earthquake",
        Utc::now(),
        TimeDelta::minutes(10),
    ))])
    .await;
    eventually(WAIT, "a retry", || async {
        let (_, metrics) = processor.get("/metrics").await;
        (!metrics.contains("alerts_processor_redis_retries_total 0")).then_some(())
    })
    .await;
    assert_eq!(processor.get("/readyz").await.0, 503);
    assert!(env.events().await.is_empty());

    proxy.up();
    let events = env.wait_events(1).await;
    assert_eq!(kinds(&events), [EventType::Open]);
    processor.wait_ready().await;
    processor.stop().await;
    env.cleanup().await;
}
