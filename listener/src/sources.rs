//! Source authentication and per-source rate limits.
//!
//! A source proves who it is in one of two ways; with neither configured the listener
//! is open (the README says to put it behind something that authenticates):
//! - an API key (`API_KEYS`, `source=key,...`): `Authorization: Bearer <key>` or
//!   `X-Api-Key: <key>`;
//! - a signature (`SOURCE_SECRETS`, `source=secret,...`), so that the secret never
//!   travels: `X-Source: <source>` and `X-Signature: t=<unix seconds>,v1=<hex>`, the
//!   HMAC-SHA256 of `<t>.<body>` under the source's secret. A timestamp more than
//!   [`SIGNATURE_WINDOW_SECONDS`] from the listener's clock is refused, and so is a
//!   signature this pod has accepted before.
//!
//! The source named replaces the alerts' `source` (so one source cannot collide with
//! another's idempotency keys), and each source gets a token bucket of
//! `SOURCE_RATE_LIMIT` alerts per second. Keys and signatures are compared in constant
//! time, against every configured value, so timing tells nothing.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use alert_core::Secret;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far a signature's timestamp may be from the listener's clock, either way.
pub const SIGNATURE_WINDOW_SECONDS: i64 = 300;

/// Signatures remembered for the replay check, at most: beyond that (a few thousand
/// signed requests a second for five minutes) signed requests wait.
const MAX_REMEMBERED: usize = 1_000_000;

/// The configured sources: who may post, and how fast.
pub(crate) struct Sources {
    keys: Vec<(String, Secret)>,
    secrets: HashMap<String, Secret>,
    /// Accepted signatures and their timestamps, for the replay check.
    used: Mutex<Used>,
    buckets: HashMap<String, Mutex<Bucket>>,
    rate_per_second: f64,
    burst: f64,
}

/// A bad `API_KEYS` or `SOURCE_SECRETS` entry (never showing the value), or a file
/// holding them that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeysError {
    #[error("{0} entries look like source=value")]
    NotAPair(&'static str),
    #[error("{setting} of {name:?}: a source name and a value of at least {min} characters")]
    TooShort {
        setting: &'static str,
        name: String,
        min: usize,
    },
    #[error("{setting} {path:?} cannot be read: {error}")]
    File {
        setting: &'static str,
        path: std::path::PathBuf,
        error: std::io::ErrorKind,
    },
}

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    Unauthenticated,
    Signature(SignatureError),
    /// Over the source's rate: retry after this long.
    RateLimited(Duration),
}

/// Why a signature was refused: the source is told which, never anything secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "X-Signature must be t=<unix seconds>,v1=<64 hex digits>, with X-Source naming the source"
    )]
    Malformed,
    #[error("X-Source names no source with a signing secret")]
    UnknownSource,
    #[error(
        "the signature's timestamp is more than {SIGNATURE_WINDOW_SECONDS} s from the listener's clock; sign again"
    )]
    Stale,
    #[error("the signature does not match the body")]
    Mismatch,
    #[error(
        "this signature was already used; sign the retry again (with the alert's id in the body, so that it is not a second alert)"
    )]
    Replayed,
}

impl SignatureError {
    /// Found from the headers alone, before the body is read.
    pub(crate) fn before_body(self) -> bool {
        matches!(
            self,
            SignatureError::Malformed | SignatureError::UnknownSource | SignatureError::Stale
        )
    }
}

/// Who a request says it is, from its headers (before its body is read).
#[derive(Debug, PartialEq)]
pub(crate) enum Claim {
    /// Authentication is off.
    Open,
    /// A valid API key: its source.
    Key(String),
    /// To be checked against the body ([`Sources::verify`]).
    Signed(Signature),
}

/// An `X-Signature` as presented.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Signature {
    pub(crate) source: String,
    timestamp: i64,
    mac: [u8; 32],
}

impl Signature {
    /// One body at one time: the request's identity for deduplication downstream, so
    /// that a replay to another pod is a retry, not a second alert.
    pub(crate) fn replay_key(&self) -> String {
        format!("sig:{}", hex::encode(self.mac))
    }
}

#[derive(Default)]
struct Used {
    seen: HashMap<[u8; 32], i64>,
    prune_at: usize,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// `source=value` pairs separated by commas, values of at least `min` characters.
fn pairs(
    setting: &'static str,
    value: &Secret,
    min: usize,
) -> Result<Vec<(String, Secret)>, ApiKeysError> {
    let mut pairs = Vec::new();
    for pair in value
        .expose()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (source, value) = pair
            .split_once('=')
            .ok_or(ApiKeysError::NotAPair(setting))?;
        let (source, value) = (source.trim(), value.trim());
        if source.is_empty() || value.len() < min {
            let name = source.to_owned();
            return Err(ApiKeysError::TooShort { setting, name, min });
        }
        pairs.push((source.to_owned(), Secret::new(value)));
    }
    Ok(pairs)
}

impl Sources {
    /// `api_keys` and `signing_secrets`: `source=value` pairs separated by commas; both
    /// empty means authentication off.
    pub(crate) fn new(
        api_keys: &Secret,
        signing_secrets: &Secret,
        rate_per_second: f64,
        burst: f64,
    ) -> Result<Self, ApiKeysError> {
        let keys = pairs("API_KEYS", api_keys, 16)?;
        let secrets: HashMap<String, Secret> = pairs("SOURCE_SECRETS", signing_secrets, 32)?
            .into_iter()
            .collect();
        let buckets = keys
            .iter()
            .map(|(source, _)| source)
            .chain(secrets.keys())
            .map(|source| {
                let bucket = Bucket {
                    tokens: burst,
                    refilled: Instant::now(),
                };
                (source.clone(), Mutex::new(bucket))
            })
            .collect();
        Ok(Sources {
            keys,
            secrets,
            used: Mutex::default(),
            buckets,
            rate_per_second,
            burst,
        })
    }

    pub(crate) fn enabled(&self) -> bool {
        !self.keys.is_empty() || !self.secrets.is_empty()
    }

    /// Who the request says it is; `now` in Unix seconds. A request with `X-Signature`
    /// is judged by it alone.
    pub(crate) fn authenticate(&self, headers: &HeaderMap, now: i64) -> Result<Claim, Refusal> {
        if !self.enabled() {
            return Ok(Claim::Open);
        }
        if let Some(signature) = headers.get("x-signature") {
            let source = headers.get("x-source").and_then(|v| v.to_str().ok());
            return self
                .signature(signature.to_str().ok(), source, now)
                .map(Claim::Signed)
                .map_err(Refusal::Signature);
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
        let mut found = None;
        for (source, key) in &self.keys {
            if bool::from(presented.as_bytes().ct_eq(key.expose().as_bytes())) {
                found = Some(source.clone());
            }
        }
        found.map(Claim::Key).ok_or(Refusal::Unauthenticated)
    }

    fn signature(
        &self,
        header: Option<&str>,
        source: Option<&str>,
        now: i64,
    ) -> Result<Signature, SignatureError> {
        let (header, source) = header.zip(source).ok_or(SignatureError::Malformed)?;
        let (mut timestamp, mut mac) = (None, None);
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
                Some(("v1", v1)) => mac = hex::decode(v1).ok().and_then(|m| m.try_into().ok()),
                _ => {}
            }
        }
        let (timestamp, mac) = timestamp.zip(mac).ok_or(SignatureError::Malformed)?;
        let source = source.trim();
        if !self.secrets.contains_key(source) {
            return Err(SignatureError::UnknownSource);
        }
        if now.abs_diff(timestamp) > SIGNATURE_WINDOW_SECONDS.unsigned_abs() {
            return Err(SignatureError::Stale);
        }
        Ok(Signature {
            source: source.to_owned(),
            timestamp,
            mac,
        })
    }

    /// Checks a signature against the body, and that this pod has not accepted it.
    pub(crate) fn verify(&self, signature: &Signature, body: &[u8]) -> Result<(), Refusal> {
        let secret = &self.secrets[&signature.source];
        let mut expected = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        expected.update(signature.timestamp.to_string().as_bytes());
        expected.update(b".");
        expected.update(body);
        // verify_slice compares in constant time.
        expected
            .verify_slice(&signature.mac)
            .map_err(|_| Refusal::Signature(SignatureError::Mismatch))?;
        let used = self.used.lock().expect("used signatures lock");
        if used.seen.contains_key(&signature.mac) {
            return Err(Refusal::Signature(SignatureError::Replayed));
        }
        if used.seen.len() >= MAX_REMEMBERED {
            return Err(Refusal::RateLimited(Duration::from_secs(1)));
        }
        Ok(())
    }

    /// Remembers a signature whose alerts were queued: retries after a 503 may use it
    /// again, a replay after the 202 may not. Forgets those past the window.
    pub(crate) fn used(&self, signature: &Signature, now: i64) {
        let mut used = self.used.lock().expect("used signatures lock");
        used.seen.insert(signature.mac, signature.timestamp);
        if used.seen.len() >= used.prune_at {
            used.seen
                .retain(|_, timestamp| now.saturating_sub(*timestamp) <= SIGNATURE_WINDOW_SECONDS);
            used.prune_at = (used.seen.len() * 2).max(1024);
        }
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

/// `X-Signature` for `body` at `timestamp` under `secret`: what a source sends.
#[cfg(test)]
fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "radar-secret-0123456789abcdef-0123";
    const NOW: i64 = 1_800_000_000;

    fn sources() -> Sources {
        Sources::new(
            &Secret::new("sirens=0123456789abcdef, quakes=fedcba9876543210"),
            &Secret::new(format!("radar={SECRET}")),
            10.0,
            20.0,
        )
        .unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        headers
    }

    fn signed(sources: &Sources, signature: &str) -> Result<Claim, Refusal> {
        sources.authenticate(
            &headers(&[("x-source", "radar"), ("x-signature", signature)]),
            NOW,
        )
    }

    #[test]
    fn a_key_names_its_source() {
        let sources = sources();
        let key = |pairs: &[(&str, &str)]| sources.authenticate(&headers(pairs), NOW);
        assert_eq!(
            key(&[("x-api-key", "fedcba9876543210")]),
            Ok(Claim::Key("quakes".into()))
        );
        assert_eq!(
            key(&[("authorization", "Bearer 0123456789abcdef")]),
            Ok(Claim::Key("sirens".into()))
        );
        assert_eq!(
            key(&[("x-api-key", "wrong")]),
            Err(Refusal::Unauthenticated)
        );
        assert_eq!(key(&[]), Err(Refusal::Unauthenticated));
        assert_eq!(
            key(&[("x-api-key", SECRET)]),
            Err(Refusal::Unauthenticated),
            "a signing secret is not a key"
        );
    }

    #[test]
    fn no_keys_means_open() {
        let open = Sources::new(&Secret::new(""), &Secret::new(""), 10.0, 20.0).unwrap();
        assert_eq!(open.authenticate(&HeaderMap::new(), NOW), Ok(Claim::Open));
    }

    #[test]
    fn short_or_malformed_keys_are_refused_at_start() {
        let empty = Secret::new("");
        assert!(Sources::new(&Secret::new("sirens=short"), &empty, 1.0, 1.0).is_err());
        assert!(Sources::new(&Secret::new("no-equals-sign"), &empty, 1.0, 1.0).is_err());
        let error = Sources::new(&empty, &Secret::new("radar=0123456789abcdef"), 1.0, 1.0)
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "SOURCE_SECRETS of \"radar\": a source name and a value of at least 32 characters"
        );
    }

    #[test]
    fn a_good_signature_names_its_source_once() {
        let sources = sources();
        let body = br#"{"location": "Haifa"}"#;
        let Ok(Claim::Signed(signature)) = signed(&sources, &sign(SECRET, NOW - 10, body)) else {
            panic!("not a signed claim")
        };
        assert_eq!(signature.source, "radar");
        assert_eq!(sources.verify(&signature, body), Ok(()));
        assert_eq!(
            sources.verify(&signature, body),
            Ok(()),
            "not yet used: a retry after a 503 may send it again"
        );
        sources.used(&signature, NOW);
        assert_eq!(
            sources.verify(&signature, body),
            Err(Refusal::Signature(SignatureError::Replayed))
        );
        assert_eq!(signature.replay_key().len(), 4 + 64);
    }

    #[test]
    fn altered_stale_or_malformed_signatures_are_refused() {
        let sources = sources();
        let body = br#"{"location": "Haifa"}"#;
        let Ok(Claim::Signed(signature)) = signed(&sources, &sign(SECRET, NOW, body)) else {
            panic!("not a signed claim")
        };
        assert_eq!(
            sources.verify(&signature, br#"{"location": "Eilat"}"#),
            Err(Refusal::Signature(SignatureError::Mismatch))
        );
        let other_secret = sign("another-secret-0123456789abcdef-01", NOW, body);
        let Ok(Claim::Signed(forged)) = signed(&sources, &other_secret) else {
            panic!("not a signed claim")
        };
        assert_eq!(
            sources.verify(&forged, body),
            Err(Refusal::Signature(SignatureError::Mismatch))
        );
        let stale = sign(SECRET, NOW - SIGNATURE_WINDOW_SECONDS - 1, body);
        assert_eq!(
            signed(&sources, &stale),
            Err(Refusal::Signature(SignatureError::Stale))
        );
        for malformed in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz", "t=1,v1=0011"] {
            assert_eq!(
                signed(&sources, malformed),
                Err(Refusal::Signature(SignatureError::Malformed)),
                "{malformed:?}"
            );
        }
        let unknown = sources.authenticate(
            &headers(&[
                ("x-source", "sirens"),
                ("x-signature", &sign(SECRET, NOW, body)),
            ]),
            NOW,
        );
        assert_eq!(
            unknown,
            Err(Refusal::Signature(SignatureError::UnknownSource))
        );
    }

    #[test]
    fn used_signatures_are_forgotten_after_the_window() {
        let sources = sources();
        let mut signatures = Vec::new();
        for i in 0..1100 {
            let body = format!("{i}");
            let Ok(Claim::Signed(signature)) =
                signed(&sources, &sign(SECRET, NOW, body.as_bytes()))
            else {
                panic!("not a signed claim")
            };
            signatures.push(signature);
        }
        for signature in &signatures[..1023] {
            sources.used(signature, NOW);
        }
        let later = NOW + SIGNATURE_WINDOW_SECONDS + 1;
        sources.used(&signatures[1023], later);
        let remembered = sources.used.lock().unwrap().seen.len();
        assert_eq!(remembered, 0, "all were past the window when pruned");
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
        assert_eq!(sources.admit("radar", 20), Ok(()), "signing sources too");
        assert!(sources.admit("radar", 1).is_err());
    }
}
