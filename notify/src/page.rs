//! The live page at `/`: plain HTML, CSS and JS embedded in the binary, no build step
//! and nothing fetched from the internet. It reads `/api/stream` (SSE).

use axum::{Router, response::Html, routing::get};

const INDEX: &str = include_str!("page/index.html");

pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(|| async { Html(INDEX) }))
}
