//! alert-standalone fails loudly: it is fully up or it is gone, never half alive.

use std::process::Command;

use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::restart::Process;

const BIN: &str = env!("CARGO_BIN_EXE_alert-standalone");

#[tokio::test]
async fn a_port_in_use_is_one_line_naming_the_address_and_a_non_zero_exit() {
    let ingest_free = [("INGEST_LISTEN_ADDR", "127.0.0.1:0")];
    alert_testkit::exits_on_port_in_use(BIN, "CLIENTS_LISTEN_ADDR", &ingest_free).await;
    let clients_free = [("CLIENTS_LISTEN_ADDR", "127.0.0.1:0")];
    alert_testkit::exits_on_port_in_use(BIN, "INGEST_LISTEN_ADDR", &clients_free).await;
}

#[tokio::test]
async fn a_bad_cors_origins_is_one_line_and_exit_2() {
    alert_testkit::exits_on_bad_cors(BIN).await;
}

#[tokio::test]
async fn client_auth_jwt_without_a_secret_or_an_issuer_is_one_line_and_exit_2() {
    let jwt = [("CLIENT_AUTH", "jwt")];
    alert_testkit::exits_on_bad_setting(BIN, &jwt, 2, "JWT_SECRET or OIDC_ISSUER").await;
}

#[tokio::test]
async fn a_data_dir_that_cannot_be_opened_is_one_line_and_a_non_zero_exit() {
    let file = std::env::temp_dir().join(alert_testkit::unique("not-a-dir"));
    std::fs::write(&file, b"a file").unwrap();
    let mut command = Command::new(BIN);
    command
        .env("DATA_DIR", &file)
        .env("INGEST_LISTEN_ADDR", "127.0.0.1:0")
        .env("CLIENTS_LISTEN_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json");
    let exited = alert_testkit::exits(command).await;
    std::fs::remove_file(&file).unwrap();
    assert_eq!(exited.code, Some(1), "{exited:?}");
    let lines: Vec<&str> = exited.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{exited:?}");
    assert!(lines[0].contains("DATA_DIR"), "{exited:?}");
}

/// `CORS_ORIGINS=*` used to leave the clients port dead while ingest said ready.
#[tokio::test]
async fn with_any_origin_both_ports_serve_a_page_from_anywhere() {
    let mut command = Command::new(BIN);
    command.env("CORS_ORIGINS", "*");
    // Process::spawn waits until both ports answer /readyz 200.
    let process = Process::spawn(command).await;
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket",
        process.clients
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", "http://page.example".parse().unwrap());
    let (_ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    let response = reqwest::Client::new()
        .get(format!("http://{}/api/active", process.clients))
        .header("origin", "http://page.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
}

/// A foreign page's WebSocket upgrade is refused by default, as its polling is.
#[tokio::test]
async fn by_default_a_foreign_origin_is_refused_on_the_websocket_too() {
    let app = crate::helpers::Standalone::start().await;
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.clients);
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    let polling = format!("http://{}/socket.io/?EIO=4&transport=polling", app.clients);
    let response = reqwest::Client::new()
        .get(&polling)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    alert_testkit::contract::System::stop(app).await;
}

#[tokio::test]
async fn bad_api_keys_are_one_line_naming_the_setting() {
    let env = [
        ("INGEST_LISTEN_ADDR", "127.0.0.1:0"),
        ("CLIENTS_LISTEN_ADDR", "127.0.0.1:0"),
        ("API_KEYS", "no-equals-sign"),
    ];
    alert_testkit::exits_on_bad_setting(BIN, &env, 1, "API_KEYS").await;
}
