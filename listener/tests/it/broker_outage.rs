use std::time::Duration;

use alert_testkit::eventually;

use crate::helpers::{Proxy, TestApp, alert, config, ids, proxied_url, take_all, unique};

/// The broker is unreachable (a proxy that refuses), then comes back, then drops the
/// connection mid-run: 503 with Retry-After while down, never a hang or a crash, and
/// service resumes by itself.
#[tokio::test]
async fn broker_outage_answers_503_and_recovers() {
    let proxy = Proxy::start("127.0.0.1:5672", false).await;
    let app = TestApp::spawn(config(&unique("outage"), &proxied_url(&proxy))).await;

    assert_eq!(app.readyz().await, 503);
    let response = app.post_json(&alert("Ashdod")).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let livez = app.http.get(app.url("/livez")).send().await.unwrap();
    assert_eq!(
        livez.status(),
        200,
        "the process is alive while the broker is away"
    );

    proxy.up();
    app.wait_ready().await;
    let first = ids(app.post_json(&alert("Ashdod")).await).await;

    proxy.down();
    eventually(
        Duration::from_secs(15),
        "the lost connection noticed",
        || async {
            let status = app.post_json(&alert("Ashdod")).await.status();
            assert!(status == 503 || status == 202, "unexpected {status}");
            (status == 503 && app.readyz().await == 503).then_some(())
        },
    )
    .await;

    proxy.up();
    app.wait_ready().await;
    let second = ids(app.post_json(&alert("Ashdod")).await).await;

    let queued: Vec<_> = take_all(&app.queue)
        .await
        .into_iter()
        .map(|(_, m)| m.id())
        .collect();
    assert!(
        queued.contains(&first[0]) && queued.contains(&second[0]),
        "every 202 is in the queue"
    );
    app.stop().await;
}
