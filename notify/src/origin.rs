//! Which web origins may talk to notify: one rule for Socket.IO (polling and the
//! WebSocket upgrade), SSE and REST.
//!
//! Browsers send `Origin` on every WebSocket upgrade and cross-origin request, and
//! CORS alone does not stop a WebSocket (nor a request the browser does not
//! preflight): that is cross-site WebSocket hijacking once cookies authenticate. So
//! a request whose `Origin` is not allowed is refused here with 403, before any
//! route or the Socket.IO layer sees it. Requests without `Origin` (native apps,
//! curl, servers) are not from a web page and pass; so do same-origin requests
//! (`Origin` naming the `Host` the request was sent to).

use std::{fmt, str::FromStr, sync::Arc};

use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// `CORS_ORIGINS`: empty (same origin only), `*` (any origin, without credentials),
/// or a comma-separated list of origins like `https://alerts.example.org`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AllowedOrigins {
    #[default]
    SameOrigin,
    Any,
    /// Lowercase `scheme://host[:port]`, as browsers send them.
    List(Vec<String>),
}

/// A `CORS_ORIGINS` value that is not empty, `*` or a list of origins.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidOrigins {
    #[error("`*` (any origin) cannot be combined with other origins")]
    AnyAndList,
    #[error("{0:?} is not an origin: expected scheme://host[:port] with http or https")]
    NotAnOrigin(String),
}

impl FromStr for AllowedOrigins {
    type Err = InvalidOrigins;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let entries: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .collect();
        if entries.is_empty() {
            return Ok(AllowedOrigins::SameOrigin);
        }
        if entries.contains(&"*") {
            return match entries.len() {
                1 => Ok(AllowedOrigins::Any),
                _ => Err(InvalidOrigins::AnyAndList),
            };
        }
        let origins = entries
            .into_iter()
            .map(|entry| {
                normalise(entry).ok_or_else(|| InvalidOrigins::NotAnOrigin(entry.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(AllowedOrigins::List(origins))
    }
}

impl fmt::Display for AllowedOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowedOrigins::SameOrigin => f.write_str("same origin"),
            AllowedOrigins::Any => f.write_str("*"),
            AllowedOrigins::List(origins) => f.write_str(&origins.join(",")),
        }
    }
}

/// `scheme://host[:port]` in lowercase, without the scheme's default port; `None`
/// for anything else (a path, credentials, another scheme, `null`).
fn normalise(origin: &str) -> Option<String> {
    let (scheme, authority) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let authority: axum::http::uri::Authority = authority.parse().ok()?;
    // `Authority` takes any digits after the colon; a port is at most 65535.
    let after_host = authority.as_str().rsplit(']').next().unwrap_or_default();
    let bad_port = after_host.contains(':') && authority.port_u16().is_none();
    if authority.host().is_empty() || bad_port {
        return None;
    }
    let authority = authority.as_str().to_ascii_lowercase();
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    Some(format!("{scheme}://{authority}"))
}

/// `host[:port]` in lowercase, for comparing with an origin's.
fn host_of(request: &Request) -> Option<String> {
    let host = match request.uri().authority() {
        Some(authority) => authority.as_str(),
        None => request.headers().get(header::HOST)?.to_str().ok()?,
    };
    Some(host.to_ascii_lowercase())
}

impl AllowedOrigins {
    /// Whether a request carrying `origin`, sent to `host`, may proceed.
    fn allows(&self, origin: &HeaderValue, host: Option<&str>) -> bool {
        let Some(origin) = origin.to_str().ok().and_then(normalise) else {
            return matches!(self, AllowedOrigins::Any);
        };
        let same_origin = host.is_some_and(|host| {
            let authority = origin.split_once("://").map_or("", |(_, a)| a);
            let host = [":80", ":443"]
                .iter()
                .find_map(|port| host.strip_suffix(port))
                .unwrap_or(host);
            authority == host
        });
        match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::SameOrigin => same_origin,
            AllowedOrigins::List(origins) => same_origin || origins.contains(&origin),
        }
    }

    /// The CORS headers for allowed cross-origin requests; none for same origin only.
    /// Credentials (cookies) only with a list: browsers refuse them with `*`.
    pub(crate) fn cors(&self) -> Option<CorsLayer> {
        let allow_origin = match self {
            AllowedOrigins::SameOrigin => return None,
            AllowedOrigins::Any => AllowOrigin::any(),
            AllowedOrigins::List(origins) => AllowOrigin::list(
                origins
                    .iter()
                    .filter_map(|origin| HeaderValue::from_str(origin).ok()),
            ),
        };
        let cors = CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::HeaderName::from_static("last-event-id"),
            ]);
        Some(match self {
            AllowedOrigins::List(_) => cors.allow_credentials(true),
            _ => cors,
        })
    }
}

/// Middleware: 403 with a JSON error for a request from an origin not allowed.
pub(crate) async fn check(
    State(allowed): State<Arc<AllowedOrigins>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(origin) = request.headers().get(header::ORIGIN)
        && !allowed.allows(origin, host_of(&request).as_deref())
    {
        let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        tracing::debug!(%origin, path = request.uri().path(), "refused a request from another origin");
        let error = format!("origin {origin} is not allowed (CORS_ORIGINS)");
        return (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({ "error": error })),
        )
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<AllowedOrigins, InvalidOrigins> {
        value.parse()
    }

    fn allows(allowed: &str, origin: &str, host: &str) -> bool {
        parse(allowed)
            .unwrap()
            .allows(&HeaderValue::from_str(origin).unwrap(), Some(host))
    }

    #[test]
    fn values() {
        assert_eq!(parse(""), Ok(AllowedOrigins::SameOrigin));
        assert_eq!(parse(" , "), Ok(AllowedOrigins::SameOrigin));
        assert_eq!(parse("*"), Ok(AllowedOrigins::Any));
        assert_eq!(
            parse("https://A.example, http://b.example:8080,https://c.example:443"),
            Ok(AllowedOrigins::List(vec![
                "https://a.example".into(),
                "http://b.example:8080".into(),
                "https://c.example".into(),
            ]))
        );
        assert_eq!(
            parse("*,https://a.example"),
            Err(InvalidOrigins::AnyAndList)
        );
        for bad in [
            "a.example",
            "https://a.example/",
            "https://a.example/page",
            "ftp://a.example",
            "https://",
            "https://user@a.example",
            "null",
            "https://a.example:99999",
        ] {
            assert!(
                matches!(parse(bad), Err(InvalidOrigins::NotAnOrigin(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_rule() {
        // Same origin: always.
        for allowed in ["", "https://a.example", "*"] {
            assert!(allows(allowed, "http://127.0.0.1:4002", "127.0.0.1:4002"));
        }
        assert!(allows("", "https://alerts.example", "alerts.example:443"));
        // Another origin: only if listed, or with `*`.
        assert!(!allows("", "http://evil.example", "127.0.0.1:4002"));
        assert!(!allows("https://a.example", "http://evil.example", "x:1"));
        assert!(!allows("https://a.example", "http://a.example", "x:1"));
        assert!(allows("https://a.example", "https://A.example", "x:1"));
        assert!(allows("*", "http://evil.example", "x:1"));
        // `Origin: null` (sandboxed frames, file://) is nobody's origin.
        assert!(!allows("", "null", "x:1"));
        assert!(allows("*", "null", "x:1"));
    }

    #[test]
    fn any_origin_never_with_credentials() {
        // tower-http panics when the layer is applied if `*` comes with credentials.
        for allowed in ["*", "https://a.example"] {
            let cors = parse(allowed).unwrap().cors().unwrap();
            let _ = axum::Router::<()>::new().layer(cors);
        }
        assert!(parse("").unwrap().cors().is_none());
    }
}
