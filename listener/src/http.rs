//! The ingest API: `POST /api/alerts`, health, metrics and the OpenAPI document.

use std::{sync::Arc, time::Instant};

use alert_core::{
    AlertQueue, InvalidInput, Limits, QueueError, QueueMessage, RequestContext, cap::parse_cap,
    input::parse_json,
};
use axum::{
    Json, Router,
    body::{Body, Bytes, HttpBody},
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::Utc;
use serde::Serialize;
use tokio::sync::Semaphore;
use tracing::{error, info, instrument, warn};
use utoipa::OpenApi;
use uuid::Uuid;

use crate::metrics::{InFlight, Metrics};
use crate::sources::{ApiKeysError, Claim, Refusal, SignatureError, Sources};

/// Everything a request handler needs; generic over where alerts are queued
/// (RabbitMQ here, an in-process queue in standalone mode).
pub struct Ingest<Q> {
    queue: Q,
    limits: Limits,
    max_body_bytes: usize,
    retry_after_seconds: u32,
    sources: Sources,
    metrics: Metrics,
    /// Permits for CAP parses on the blocking pool.
    cap_parsers: Arc<Semaphore>,
}

impl<Q: AlertQueue> Ingest<Q> {
    /// Ingest without source authentication (the standalone mode, tests).
    pub fn new(queue: Q, limits: Limits, max_body_bytes: usize, retry_after_seconds: u32) -> Self {
        let none = alert_core::Secret::new("");
        let sources = Sources::new(&none, &none, 0.0, 0.0).expect("no keys is valid");
        Ingest {
            queue,
            limits,
            max_body_bytes,
            retry_after_seconds,
            sources,
            metrics: Metrics::new(),
            cap_parsers: Arc::new(Semaphore::new(DEFAULT_CAP_PARSERS)),
        }
    }

    /// Parses at most `parsers` CAP bodies at once; more wait their turn.
    pub fn with_cap_parsers(mut self, parsers: usize) -> Self {
        self.cap_parsers = Arc::new(Semaphore::new(parsers.max(1)));
        self
    }

    /// XML parsing is CPU work of milliseconds per large body, tens of ms in a debug
    /// build: on the async runtime it stalled every request sharing the worker,
    /// `/livez` and valid JSON alerts included. So it runs on the blocking pool, and
    /// only `cap_parsers` at a time, so that a flood of CAP cannot take every core.
    async fn parse_cap(
        &self,
        body: Bytes,
        request: RequestContext,
    ) -> Result<Vec<QueueMessage>, IngestError> {
        let permit = self
            .cap_parsers
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let limits = self.limits.clone();
        let parsed = tokio::task::spawn_blocking(move || {
            // Held until the parse ends, even if the request is abandoned meanwhile.
            let _permit = permit;
            parse_cap(&body, &request, &limits)
        })
        .await;
        match parsed {
            Ok(messages) => Ok(messages?),
            Err(error) => {
                error!(%error, "CAP parser failed on a body; answering 400");
                Err(InvalidInput::body("the CAP message could not be parsed").into())
            }
        }
    }

    /// Requires an API key or a signature from every source (each `source=value,...`;
    /// with both empty, authentication stays off) and limits each source to
    /// `rate_per_second` alerts, with bursts of twice that or one full batch.
    pub fn with_sources(
        mut self,
        api_keys: &alert_core::Secret,
        signing_secrets: &alert_core::Secret,
        rate_per_second: f64,
    ) -> Result<Self, ApiKeysError> {
        let burst = (rate_per_second * 2.0).max(self.limits.max_batch as f64);
        self.sources = Sources::new(api_keys, signing_secrets, rate_per_second, burst)?;
        Ok(self)
    }
}

/// CAP parses at once unless configured ([`Ingest::with_cap_parsers`]).
pub const DEFAULT_CAP_PARSERS: usize = 2;

/// The listener's routes.
pub fn router<Q: AlertQueue>(ingest: Arc<Ingest<Q>>) -> Router {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz::<Q>))
        .route("/metrics", get(metrics::<Q>))
        .with_state(ingest.clone())
        .merge(ingest_router(ingest))
}

/// `POST /api/alerts` alone, for serving beside other routes (standalone mode serves
/// it on the clients' port too, so the live page can post same-origin).
pub fn ingest_router<Q: AlertQueue>(ingest: Arc<Ingest<Q>>) -> Router {
    Router::new()
        .route("/api/alerts", post(post_alerts::<Q>))
        // The handler enforces the configured limit itself, with a JSON 413.
        .layer(DefaultBodyLimit::disable())
        .with_state(ingest)
}

/// `202` answer: the UUIDs of the queued alerts, in the order they were posted.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub ids: Vec<Uuid>,
}

/// Every 4xx/5xx answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// The offending field, e.g. `[3].timestamp`, when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Why an ingest request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The source must fix the alert: 400 naming the field.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The body is over the limit: 413; split the batch.
    #[error("the body is over the limit of {0} bytes")]
    TooLarge(usize),
    /// No Content-Type: 415.
    #[error("Content-Type is required: application/json or application/cap+xml")]
    MissingContentType,
    /// Neither JSON nor CAP XML: 415.
    #[error("unsupported Content-Type {0:?}: use application/json or application/cap+xml")]
    UnsupportedMediaType(String),
    /// The client went away or sent a broken body: 400.
    #[error("cannot read the request body: {0}")]
    BodyUnreadable(axum::Error),
    /// Missing or unknown API key: 401; the source must present its key.
    #[error(
        "a valid API key (Authorization: Bearer <key> or X-Api-Key) or signature (X-Source and X-Signature) is required"
    )]
    Unauthenticated,
    /// A signature that does not hold: 401 saying why.
    #[error(transparent)]
    BadSignature(SignatureError),
    /// The source posts faster than its limit: 429; retry after the given seconds.
    #[error("over this source's rate limit; retry in {0} s")]
    RateLimited(u64),
    /// Not durably queued: 503 with `Retry-After` (the seconds); the source retries.
    #[error("{0}")]
    Queue(QueueError, u64),
}

impl IngestError {
    /// Refused before (or while) the body was read: the rest of it is still unread.
    fn leaves_body_unread(&self) -> bool {
        match self {
            IngestError::BadSignature(error) => error.before_body(),
            IngestError::Unauthenticated
            | IngestError::MissingContentType
            | IngestError::UnsupportedMediaType(_)
            | IngestError::TooLarge(_)
            | IngestError::BodyUnreadable(_) => true,
            _ => false,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            IngestError::Invalid(_) | IngestError::BodyUnreadable(_) => StatusCode::BAD_REQUEST,
            IngestError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::MissingContentType | IngestError::UnsupportedMediaType(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            IngestError::Unauthenticated | IngestError::BadSignature(_) => StatusCode::UNAUTHORIZED,
            IngestError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            IngestError::Queue(..) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let field = match &self {
            IngestError::Invalid(invalid) => invalid.field.clone(),
            _ => None,
        };
        let body = ErrorBody {
            error: self.to_string(),
            field,
        };
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            IngestError::Queue(cause, seconds) => {
                warn!(error = %cause, "alerts not queued; answering 503");
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            IngestError::RateLimited(seconds) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            IngestError::Unauthenticated => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            IngestError::BadSignature(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Signature"),
                );
            }
            _ => {}
        }
        response
    }
}

enum BodyKind {
    Json,
    Cap,
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, IngestError> {
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        return Err(IngestError::MissingContentType);
    };
    let mime = content_type
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(BodyKind::Json),
        "application/cap+xml" | "application/xml" | "text/xml" => Ok(BodyKind::Cap),
        other => Err(IngestError::UnsupportedMediaType(other.to_owned())),
    }
}

/// Queue alerts. Answers 202 only once RabbitMQ has confirmed every message.
#[utoipa::path(
    post,
    path = "/api/alerts",
    request_body(
        description = "One alert or an array of at most 1000 (JSON), or a CAP 1.2 message (XML)",
        content(
            (alert_core::input::AlertInput = "application/json"),
            (String = "application/cap+xml"),
        )
    ),
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key produce no second alert")),
    responses(
        (status = 202, description = "Durably queued", body = Accepted),
        (status = 400, description = "Invalid input; `field` names the problem", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 401, description = "API keys are required and this one is missing or unknown", body = ErrorBody),
        (status = 415, description = "Unknown content type", body = ErrorBody),
        (status = 429, description = "Over the source's rate limit; retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "Broker unreachable; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
#[instrument(skip_all)]
async fn post_alerts<Q: AlertQueue>(
    State(ingest): State<Arc<Ingest<Q>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let _in_flight = InFlight::start(&ingest.metrics.in_flight);
    let has_body = !body.is_end_stream();
    let result = accept(&ingest, &headers, body).await;
    let response = match result {
        Ok(ids) => (StatusCode::ACCEPTED, Json(Accepted { ids })).into_response(),
        Err(error) => {
            let unread = has_body && error.leaves_body_unread();
            let mut response = error.into_response();
            if unread {
                // hyper cannot reuse a connection whose request body was not read, and
                // when the rest is not already buffered (a 413 for a declared 2 MB) it
                // closed it after a keep-alive answer: the source's next request on it
                // failed. Say so instead. (A middleware wrapping every body to find out
                // cost POST p99 16 -> 95 ms under load: BENCHMARKS.md.)
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    };
    ingest
        .metrics
        .requests
        .with_label_values(&[response.status().as_str()])
        .inc();
    response
}

async fn accept<Q: AlertQueue>(
    ingest: &Ingest<Q>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<Uuid>, IngestError> {
    let claim = ingest
        .sources
        .authenticate(headers, Utc::now().timestamp())?;
    let kind = body_kind(headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| length > ingest.max_body_bytes) {
        return Err(IngestError::TooLarge(ingest.max_body_bytes));
    }
    let bytes = axum::body::to_bytes(body, ingest.max_body_bytes)
        .await
        .map_err(|error| {
            if is_length_limit(&error) {
                IngestError::TooLarge(ingest.max_body_bytes)
            } else {
                IngestError::BodyUnreadable(error)
            }
        })?;
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|k| k.trim().to_owned());
    if idempotency_key
        .as_ref()
        .is_some_and(|key| key.is_empty() || key.len() > 256)
    {
        return Err(InvalidInput::new(
            "Idempotency-Key",
            "Idempotency-Key must be 1 to 256 characters",
        )
        .into());
    }
    let (source, idempotency_key, signature) = match claim {
        Claim::Open => (None, idempotency_key, None),
        Claim::Key(source) => (Some(source), idempotency_key, None),
        Claim::Signed(signature) => {
            ingest.sources.verify(&signature, &bytes)?;
            if idempotency_key.is_some() {
                // Not covered by the signature: whoever replays the request could change it.
                return Err(InvalidInput::new(
                    "Idempotency-Key",
                    "a signed request cannot carry Idempotency-Key (the signature does not cover it): give each alert its id in the body",
                )
                .into());
            }
            let key = Some(signature.replay_key());
            (Some(signature.source.clone()), key, Some(signature))
        }
    };
    let request = RequestContext {
        now: Utc::now(),
        idempotency_key,
        source: source.clone(),
    };
    let messages = match kind {
        BodyKind::Json => parse_json(&bytes, &request, &ingest.limits)?,
        BodyKind::Cap => ingest.parse_cap(bytes, request).await?,
    };
    if let Some(source) = &source {
        ingest.sources.admit(source, messages.len())?;
    }
    let started = Instant::now();
    ingest
        .queue
        .publish(&messages)
        .await
        .map_err(|cause| IngestError::Queue(cause, u64::from(ingest.retry_after_seconds)))?;
    ingest
        .metrics
        .publish_seconds
        .observe(started.elapsed().as_secs_f64());
    if let Some(signature) = &signature {
        ingest.sources.used(signature, Utc::now().timestamp());
    }
    ingest.metrics.alerts_accepted.inc_by(messages.len() as u64);
    for message in &messages {
        log_queued(message);
    }
    Ok(messages.iter().map(QueueMessage::id).collect())
}

fn log_queued(message: &QueueMessage) {
    match message {
        QueueMessage::Alert(alert) => info!(
            alert_id = %alert.id,
            alert_type = %alert.alert_type,
            locations = alert.locations.len(),
            "alert queued"
        ),
        QueueMessage::Cancel(cancel) => {
            info!(alert_id = %cancel.id, references = cancel.references.len(), "cancel queued")
        }
    }
}

impl From<Refusal> for IngestError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unauthenticated => IngestError::Unauthenticated,
            Refusal::Signature(error) => IngestError::BadSignature(error),
            Refusal::RateLimited(wait) => {
                IngestError::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64)
            }
        }
    }
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = current.source();
    }
    false
}

async fn readyz<Q: AlertQueue>(State(ingest): State<Arc<Ingest<Q>>>) -> Response {
    if ingest.queue.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "queue unavailable").into_response()
    }
}

async fn metrics<Q: AlertQueue>(State(ingest): State<Arc<Ingest<Q>>>) -> Response {
    ingest
        .metrics
        .queue_ready
        .set(i64::from(ingest.queue.is_ready()));
    alert_core::telemetry::metrics_response(&ingest.metrics.registry)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Alert broadcaster ingest API",
        description = "Upstream sources post alerts here."
    ),
    paths(post_alerts),
    components(schemas(Accepted, ErrorBody, alert_core::input::AlertInput))
)]
pub struct ApiDoc;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
