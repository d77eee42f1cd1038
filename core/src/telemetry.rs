//! Logging for the binaries: `RUST_LOG` filter (default `info`), JSON lines with
//! `LOG_FORMAT=json` for log collectors, readable text otherwise.

use std::str::FromStr;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?}: use text or json")),
        }
    }
}

/// Installs the global subscriber. Call once, from `main`.
pub fn init(format: LogFormat) {
    // fred warns once per client on every dropped connection, in its own words; the
    // services log the outage themselves, once (processor: `redis_status`).
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,fred=error"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}

/// `/metrics`: the Prometheus text exposition of `registry`, with its content type.
pub fn metrics_response(registry: &prometheus::Registry) -> axum::response::Response {
    use axum::response::IntoResponse;
    use prometheus::Encoder;
    let mut buffer = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(error) = encoder.encode(&registry.gather(), &mut buffer) {
        tracing::error!(%error, "cannot encode metrics");
    }
    (
        [(axum::http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        buffer,
    )
        .into_response()
}
