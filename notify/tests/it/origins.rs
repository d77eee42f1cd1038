//! One origin rule for every transport: Socket.IO polling, the WebSocket upgrade,
//! SSE and REST. A browser page from another origin is refused (403, JSON) unless
//! `CORS_ORIGINS` allows it; requests without `Origin` (apps, curl) always pass.

use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::helpers::{REDIS_URL, TestApp, config, unique};

const EVIL: &str = "http://evil.example";

/// The status each transport answers a request carrying `origin` (or none).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Statuses {
    polling: u16,
    websocket: u16,
    sse: u16,
    rest: u16,
}

const ACCEPTED: Statuses = Statuses {
    polling: 200,
    websocket: 101,
    sse: 200,
    rest: 200,
};
const REFUSED: Statuses = Statuses {
    polling: 403,
    websocket: 403,
    sse: 403,
    rest: 403,
};

async fn get(app: &TestApp, path: &str, origin: Option<&str>) -> reqwest::Response {
    let mut request = app.http.get(app.url(path));
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.unwrap()
}

/// A refusal says why, in JSON.
async fn status(response: reqwest::Response) -> u16 {
    let status = response.status().as_u16();
    if status == 403 {
        let body: serde_json::Value = response.json().await.expect("a JSON error");
        assert!(
            body["error"].as_str().unwrap().contains("not allowed"),
            "{body}"
        );
    }
    status
}

async fn statuses(app: &TestApp, origin: Option<&str>) -> Statuses {
    let polling = status(get(app, "/socket.io/?EIO=4&transport=polling", origin).await).await;
    let sse = status(get(app, "/api/stream", origin).await).await;
    let rest = status(get(app, "/api/active", origin).await).await;
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr);
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    let websocket = match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(error) => panic!("websocket: {error}"),
    };
    Statuses {
        polling,
        websocket,
        sse,
        rest,
    }
}

async fn app(name: &str, cors_origins: &str) -> TestApp {
    let mut config = config(&format!("{}:", unique(name)), REDIS_URL);
    config.clients.cors_origins = cors_origins.parse().unwrap();
    TestApp::spawn(config).await
}

#[tokio::test]
async fn by_default_only_the_same_origin_and_requests_without_origin_pass() {
    let app = app("origin-default", "").await;
    assert_eq!(statuses(&app, Some(EVIL)).await, REFUSED);
    assert_eq!(statuses(&app, None).await, ACCEPTED);
    let same = format!("http://{}", app.addr);
    assert_eq!(statuses(&app, Some(&same)).await, ACCEPTED);
    app.stop().await;
}

#[tokio::test]
async fn listed_origins_pass_with_credentials_others_are_refused() {
    let app = app("origin-list", "https://app.example, https://other.example").await;
    assert_eq!(statuses(&app, Some("https://app.example")).await, ACCEPTED);
    assert_eq!(statuses(&app, Some(EVIL)).await, REFUSED);
    assert_eq!(statuses(&app, Some("http://app.example")).await, REFUSED);
    assert_eq!(statuses(&app, None).await, ACCEPTED);

    let response = get(&app, "/api/active", Some("https://app.example")).await;
    let headers = response.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
    app.stop().await;
}

#[tokio::test]
async fn a_star_lets_any_origin_in_without_credentials() {
    let app = app("origin-any", "*").await;
    assert_eq!(statuses(&app, Some(EVIL)).await, ACCEPTED);
    assert_eq!(statuses(&app, None).await, ACCEPTED);

    let response = get(&app, "/socket.io/?EIO=4&transport=polling", Some(EVIL)).await;
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(!headers.contains_key("access-control-allow-credentials"));
    app.stop().await;
}
