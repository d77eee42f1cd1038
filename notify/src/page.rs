//! The live page at `/`: plain HTML, CSS and JS embedded in the binary, no build step
//! and nothing fetched from the internet. It reads `/api/stream` (SSE).
//!
//! `/client/alerts.js`: the ES module web pages import beside the stock socket.io-client
//! to resume correctly across reconnects (README, "Clients"). CORS covers it like every
//! route, so pages on the origins in `CORS_ORIGINS` may import it.

use axum::{Router, http::header::CONTENT_TYPE, response::Html, routing::get};

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/app.css");
const CLIENT: &str = include_str!("page/alerts.js");

pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route(
            "/app.js",
            get(|| async { ([(CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT) }),
        )
        .route(
            "/client/alerts.js",
            get(|| async { ([(CONTENT_TYPE, "text/javascript; charset=utf-8")], CLIENT) }),
        )
        .route(
            "/app.css",
            get(|| async { ([(CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }),
        )
}
