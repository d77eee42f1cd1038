//! Source credentials beyond a key in a variable: sources that sign their requests
//! (`SOURCE_SECRETS`; the secret never travels, an altered, stale or replayed request
//! is refused, and nothing refused is queued), and keys from a file (a mounted Secret).

use alert_core::{QueueMessage, Secret};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::helpers::{AMQP_URL, TestApp, alert, config, ids, take_all, unique};

const SECRET: &str = "radar-signing-secret-0123456789abcdef";

/// `X-Signature` as a source computes it: HMAC-SHA256 of `<t>.<body>`.
fn sign(timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[tokio::test]
async fn signed_requests_are_accepted_once_and_tampering_is_401() {
    let mut config = config(&unique("signed"), AMQP_URL);
    config.ingest.source_secrets = Secret::new(format!("radar={SECRET}"));
    let app = TestApp::spawn(config).await;
    app.wait_ready().await;
    let post = |body: &str, signature: &str, extra: Option<(&str, &str)>| {
        let mut request = app
            .http
            .post(app.url("/api/alerts"))
            .header("content-type", "application/json")
            .header("x-source", "radar")
            .header("x-signature", signature);
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        request.body(body.to_owned()).send()
    };
    let refusal = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let challenge = response.headers().get("www-authenticate").cloned();
        let body: Value = response.json().await.unwrap();
        (
            status,
            challenge.map(|c| c.to_str().unwrap().to_owned()),
            body,
        )
    };
    let now = chrono::Utc::now().timestamp();
    let body = alert("Haifa").to_string();
    let signature = sign(now, &body);

    let accepted = ids(post(&body, &signature, None).await.unwrap()).await;

    let (status, challenge, error) = refusal(post(&body, &signature, None).await.unwrap()).await;
    assert_eq!(
        (status, challenge.as_deref()),
        (401, Some("Signature")),
        "{error}"
    );
    assert!(
        error["error"].as_str().unwrap().contains("already used"),
        "{error}"
    );

    let altered = body.replace("Haifa", "Eilat");
    let (status, _, error) = refusal(post(&altered, &sign(now, &body), None).await.unwrap()).await;
    assert_eq!(status, 401);
    assert!(
        error["error"].as_str().unwrap().contains("does not match"),
        "{error}"
    );

    let old = now - alert_listener::SIGNATURE_WINDOW_SECONDS - 5;
    let (status, _, error) = refusal(post(&body, &sign(old, &body), None).await.unwrap()).await;
    assert_eq!(status, 401);
    assert!(
        error["error"].as_str().unwrap().contains("timestamp"),
        "{error}"
    );

    let unsigned = app
        .http
        .post(app.url("/api/alerts"))
        .header("content-type", "application/json")
        .header("x-api-key", SECRET)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401, "the secret is no API key");

    let other = alert("Haifa").to_string();
    let keyed = post(&other, &sign(now, &other), Some(("idempotency-key", "k1")))
        .await
        .unwrap();
    let (status, _, error) = refusal(keyed).await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("Idempotency-Key")),
        "{error}"
    );

    let queued = take_all(&app.queue).await;
    assert_eq!(queued.len(), 1, "nothing from refused requests: {queued:?}");
    let QueueMessage::Alert(alert) = &queued[0].1 else {
        panic!("not an alert")
    };
    assert_eq!(alert.id, accepted[0]);
    assert_eq!(
        alert.source.as_deref(),
        Some("radar"),
        "the signature names the source"
    );
    let key = alert.idempotency_key.as_deref().unwrap();
    assert!(
        key.starts_with("hdr:radar:sig:"),
        "a replay to another listener is deduplicated as a retry: {key}"
    );
    app.stop().await;
}

/// A mounted Secret: the keys come from a file, and the file's key is what authenticates.
#[tokio::test]
async fn api_keys_can_come_from_a_file() {
    let dir = std::env::temp_dir().join(unique("listener-keys"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("API_KEYS");
    std::fs::write(&file, "sirens=file-key-0123456789abcdef\n").unwrap();
    let mut config = config(&unique("keys-file"), AMQP_URL);
    config.ingest.api_keys_file = Some(file);
    let app = TestApp::spawn(config).await;
    app.wait_ready().await;
    let post = |key: &str| {
        app.http
            .post(app.url("/api/alerts"))
            .header("content-type", "application/json")
            .header("x-api-key", key)
            .body(alert("Haifa").to_string())
            .send()
    };
    assert_eq!(post("not-the-key-0123456789").await.unwrap().status(), 401);
    ids(post("file-key-0123456789abcdef").await.unwrap()).await;
    app.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}
