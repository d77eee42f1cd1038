//! Source authentication (API keys) and per-source rate limits.
//!
//! With `API_KEYS` set, every POST must carry one of the keys (`Authorization: Bearer
//! <key>` or `X-Api-Key: <key>`); the key names the source, which becomes the alerts'
//! `source` (so one source cannot collide with another's idempotency keys), and each
//! source gets a token bucket of `SOURCE_RATE_LIMIT` alerts per second. Without keys,
//! authentication and rate limits are off (the README says to put the listener behind
//! something that authenticates).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use alert_core::Secret;
use axum::http::HeaderMap;

/// The configured sources: who may post, and how fast.
pub(crate) struct Sources {
    keys: Vec<(String, Secret)>,
    buckets: HashMap<String, Mutex<Bucket>>,
    rate_per_second: f64,
    burst: f64,
}

/// A bad `API_KEYS` entry (never showing the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeysError {
    #[error("API_KEYS entries look like source=key")]
    NotAPair,
    #[error("API key of {0:?}: a source name and a key of at least 16 characters")]
    TooShort(String),
}

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    Unauthenticated,
    /// Over the source's rate: retry after this long.
    RateLimited(Duration),
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Sources {
    /// `api_keys`: `source=key` pairs separated by commas; empty means authentication off.
    pub(crate) fn new(
        api_keys: &Secret,
        rate_per_second: f64,
        burst: f64,
    ) -> Result<Self, ApiKeysError> {
        let mut keys = Vec::new();
        for pair in api_keys
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (source, key) = pair.split_once('=').ok_or(ApiKeysError::NotAPair)?;
            let (source, key) = (source.trim(), key.trim());
            if source.is_empty() || key.len() < 16 {
                return Err(ApiKeysError::TooShort(source.to_owned()));
            }
            keys.push((source.to_owned(), Secret::new(key)));
        }
        let buckets = keys
            .iter()
            .map(|(source, _)| {
                (
                    source.clone(),
                    Mutex::new(Bucket {
                        tokens: burst,
                        refilled: Instant::now(),
                    }),
                )
            })
            .collect();
        Ok(Sources {
            keys,
            buckets,
            rate_per_second,
            burst,
        })
    }

    pub(crate) fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The source the request authenticates as (`None` when authentication is off).
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Option<String>, Refusal> {
        if !self.enabled() {
            return Ok(None);
        }
        let presented = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                headers
                    .get("authorization")?
                    .to_str()
                    .ok()?
                    .strip_prefix("Bearer ")
            })
            .map(str::trim)
            .ok_or(Refusal::Unauthenticated)?;
        // Compare against every key, in constant time, so timing tells nothing.
        let mut found = None;
        for (source, key) in &self.keys {
            if constant_time_eq(presented.as_bytes(), key.expose().as_bytes()) {
                found = Some(source.clone());
            }
        }
        found.map(Some).ok_or(Refusal::Unauthenticated)
    }

    /// Takes `alerts` tokens from `source`'s bucket, or says how long to wait.
    pub(crate) fn admit(&self, source: &str, alerts: usize) -> Result<(), Refusal> {
        let Some(bucket) = self.buckets.get(source) else {
            return Ok(());
        };
        let mut bucket = bucket.lock().expect("bucket lock poisoned");
        let now = Instant::now();
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate_per_second).min(self.burst);
        bucket.refilled = now;
        let wanted = alerts as f64;
        if bucket.tokens >= wanted {
            bucket.tokens -= wanted;
            return Ok(());
        }
        let wait =
            (wanted.min(self.burst) - bucket.tokens) / self.rate_per_second.max(f64::MIN_POSITIVE);
        Err(Refusal::RateLimited(Duration::from_secs_f64(
            wait.max(0.001),
        )))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources() -> Sources {
        Sources::new(
            &Secret::new("sirens=0123456789abcdef, quakes=fedcba9876543210"),
            10.0,
            20.0,
        )
        .unwrap()
    }

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        headers
    }

    #[test]
    fn a_key_names_its_source() {
        let sources = sources();
        assert_eq!(
            sources.authenticate(&headers("x-api-key", "fedcba9876543210")),
            Ok(Some("quakes".into()))
        );
        assert_eq!(
            sources.authenticate(&headers("authorization", "Bearer 0123456789abcdef")),
            Ok(Some("sirens".into()))
        );
        assert_eq!(
            sources.authenticate(&headers("x-api-key", "wrong")),
            Err(Refusal::Unauthenticated)
        );
        assert_eq!(
            sources.authenticate(&HeaderMap::new()),
            Err(Refusal::Unauthenticated)
        );
    }

    #[test]
    fn no_keys_means_open() {
        let open = Sources::new(&Secret::new(""), 10.0, 20.0).unwrap();
        assert_eq!(open.authenticate(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn short_or_malformed_keys_are_refused_at_start() {
        assert!(Sources::new(&Secret::new("sirens=short"), 1.0, 1.0).is_err());
        assert!(Sources::new(&Secret::new("no-equals-sign"), 1.0, 1.0).is_err());
    }

    #[test]
    fn bucket_allows_the_burst_then_refuses_with_a_wait() {
        let sources = sources();
        assert_eq!(sources.admit("sirens", 20), Ok(()));
        let Err(Refusal::RateLimited(wait)) = sources.admit("sirens", 5) else {
            panic!("not limited")
        };
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert_eq!(sources.admit("quakes", 5), Ok(()), "buckets are per source");
    }
}
