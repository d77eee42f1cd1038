//! Who a client is and what it may read (`CLIENT_AUTH`).
//!
//! With `none` (the default) every client reads everything, as before: public alerts
//! need no account. With `jwt` every Socket.IO handshake, SSE stream and REST read
//! presents a JWT, checked here into a [`Grant`]: which locations it may read
//! ([`Access`]) and until when.
//!
//! # Keys and algorithms
//! Each key accepts exactly one algorithm, so a token cannot choose how it is checked:
//! HS256 only with `JWT_SECRET`; RS256 and ES256 (P-256) only with the OIDC issuer's
//! published keys (JWKS), each key with its own algorithm. `alg: none` does not parse,
//! and an HS256 token signed with the issuer's public key (algorithm confusion) finds
//! no secret to be checked against. Symmetric keys in a JWKS are ignored.
//!
//! The issuer's keys come from `<OIDC_ISSUER>/.well-known/openid-configuration` ->
//! `jwks_uri`, cached. A token naming an unknown `kid` (the issuer rotated its keys)
//! refetches them, at most once per [`MIN_REFETCH`] so that a flood of made-up kids
//! cannot hammer the issuer; keys older than [`MAX_KEY_AGE`] are refetched too, so
//! a key the issuer withdrew stops being trusted without a restart.
//!
//! # Claims
//! `iss` (`OIDC_ISSUER`, else `JWT_ISSUER`, when set), `aud` (`JWT_AUDIENCE`, when set),
//! `exp` (required) and `nbf` are checked with `JWT_LEEWAY_SECONDS` of clock leeway.
//! A token whose roles claim holds the admin role reads everything; otherwise its
//! locations claim, when present, limits what it may read; a token without that claim
//! reads every location (public alerts are public; the token only says who asks).

use std::{
    collections::BTreeSet,
    sync::{Arc, RwLock},
    time::Duration,
};

use axum::http::{HeaderMap, header};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::config::{AuthArgs, ClientAuth};

/// Refetches of the issuer's keys for an unknown `kid` are at most this frequent.
pub(crate) const MIN_REFETCH: Duration = Duration::from_secs(10);

/// Keys are refetched when this old, so that withdrawn keys stop being trusted.
pub(crate) const MAX_KEY_AGE: Duration = Duration::from_secs(15 * 60);

/// Until the first fetch succeeded, a failed one is retried at most this often.
const RETRY_FIRST_FETCH: Duration = Duration::from_secs(1);

/// How long one request to the issuer may take.
const ISSUER_TIMEOUT: Duration = Duration::from_secs(5);

/// Deadlines further away than this are this far (no token lives that long).
const FAR_FUTURE: Duration = Duration::from_secs(366 * 24 * 3600);

/// Shortest `JWT_SECRET`: an HS256 key shorter than the hash is weak (RFC 7518 3.2).
const MIN_SECRET_BYTES: usize = 32;

/// A setting that cannot work; the text names it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthSettingsError {
    /// Set `JWT_SECRET` (HS256), `OIDC_ISSUER` (RS256/ES256), or both.
    #[error("CLIENT_AUTH=jwt needs JWT_SECRET or OIDC_ISSUER")]
    NoKeys,
    #[error("JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")]
    ShortSecret,
    #[error("OIDC_ISSUER must be an http:// or https:// URL")]
    IssuerNotUrl,
    /// The issuer a token must name is `OIDC_ISSUER`; drop `JWT_ISSUER` or make them equal.
    #[error("JWT_ISSUER differs from OIDC_ISSUER")]
    IssuersDiffer,
    #[error("JWT_COOKIE must be a cookie name (letters, digits, `-`, `_`, `.`)")]
    CookieName,
    /// An issuer signs tokens for many apps: without an audience, all of them would pass.
    #[error("OIDC_ISSUER needs JWT_AUDIENCE (the aud this notify's tokens carry)")]
    NoAudience,
}

impl AuthArgs {
    /// Checks the settings that only make sense together (clap checks each alone).
    pub fn check(&self) -> Result<(), AuthSettingsError> {
        if self.client_auth == ClientAuth::None {
            return Ok(());
        }
        if self.jwt_secret.is_none() && self.oidc_issuer.is_none() {
            return Err(AuthSettingsError::NoKeys);
        }
        if self
            .jwt_secret
            .as_ref()
            .is_some_and(|secret| secret.expose().len() < MIN_SECRET_BYTES)
        {
            return Err(AuthSettingsError::ShortSecret);
        }
        if let Some(issuer) = &self.oidc_issuer {
            if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
                return Err(AuthSettingsError::IssuerNotUrl);
            }
            if self.jwt_issuer.as_ref().is_some_and(|iss| iss != issuer) {
                return Err(AuthSettingsError::IssuersDiffer);
            }
            if self.jwt_audience.as_deref().is_none_or(str::is_empty) {
                return Err(AuthSettingsError::NoAudience);
            }
        }
        let cookie_char = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if self.jwt_cookie.is_empty() || !self.jwt_cookie.chars().all(cookie_char) {
            return Err(AuthSettingsError::CookieName);
        }
        Ok(())
    }
}

/// Why a client is refused; the text is what the client is told.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    /// No token in the handshake `auth.token`, `Authorization: Bearer` or the cookie.
    #[error("authentication required: no token")]
    Missing,
    /// Not a JWT, or a header or claims that do not parse (`alg: none` among them).
    #[error("invalid token: {0}")]
    Malformed(jsonwebtoken::errors::Error),
    #[error("invalid token: bad signature")]
    Signature,
    /// The token's `alg` is not the one of any key that could check it.
    #[error("invalid token: algorithm {0:?} not accepted")]
    Algorithm(Algorithm),
    /// The token's `kid` is not among the issuer's keys, even after a refetch.
    #[error("invalid token: unknown signing key")]
    UnknownKey,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("invalid token: wrong issuer")]
    Issuer,
    #[error("invalid token: wrong audience")]
    Audience,
    /// A claim notify reads has the wrong shape (or an empty list of locations).
    #[error("invalid token: claim {0:?} malformed")]
    Claim(String),
    /// The token is good, but not for this location.
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// A fresh token (`auth` event) that does not allow what the socket subscribed to:
    /// unsubscribe first, or reconnect with it.
    #[error("the fresh token does not allow the current subscriptions")]
    Narrower,
    /// The issuer's keys cannot be fetched: the client should retry later.
    #[error("cannot verify tokens right now; retry")]
    KeysUnavailable,
}

impl AuthError {
    /// The `reason` label of `alerts_notify_auth_refused_total`: a closed set.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::Signature => "signature",
            AuthError::Algorithm(_) => "algorithm",
            AuthError::UnknownKey => "unknown_key",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::Issuer => "issuer",
            AuthError::Audience => "audience",
            AuthError::Claim(_) => "claim",
            AuthError::Forbidden(_) | AuthError::Narrower => "forbidden",
            AuthError::KeysUnavailable => "keys_unavailable",
        }
    }

    fn from_jwt(error: jsonwebtoken::errors::Error) -> AuthError {
        match error.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidIssuer => AuthError::Issuer,
            ErrorKind::InvalidAudience => AuthError::Audience,
            ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::Issuer,
            ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => AuthError::Audience,
            ErrorKind::InvalidSignature => AuthError::Signature,
            _ => AuthError::Malformed(error),
        }
    }
}

/// Which locations a client may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    All,
    /// Never empty: a token allowing nothing is refused.
    Only(Arc<BTreeSet<String>>),
}

impl Access {
    pub(crate) fn allows(&self, location: &str) -> bool {
        match self {
            Access::All => true,
            Access::Only(allowed) => allowed.contains(location),
        }
    }

    /// `Err` naming the first of `locations` that is not allowed.
    pub(crate) fn check<'a>(
        &self,
        locations: impl IntoIterator<Item = &'a String>,
    ) -> Result<(), AuthError> {
        match locations.into_iter().find(|l| !self.allows(l)) {
            Some(location) => Err(AuthError::Forbidden(location.clone())),
            None => Ok(()),
        }
    }

    /// Whether a client subscribed to `locations` (empty: every location) stays within
    /// this access.
    pub(crate) fn covers(&self, locations: &BTreeSet<String>) -> bool {
        match self {
            Access::All => true,
            Access::Only(_) => !locations.is_empty() && self.check(locations).is_ok(),
        }
    }

    /// What subscribing to nothing means for this client: every location (empty), or
    /// only those it may read.
    pub(crate) fn nothing_subscribed(&self) -> BTreeSet<String> {
        match self {
            Access::All => BTreeSet::new(),
            Access::Only(allowed) => allowed.as_ref().clone(),
        }
    }

    /// A request's location filter (`None`: all) within this access.
    pub(crate) fn limit(
        &self,
        filter: Option<Vec<String>>,
    ) -> Result<Option<Vec<String>>, AuthError> {
        match (self, filter) {
            (_, Some(filter)) => self.check(&filter).map(|()| Some(filter)),
            (Access::All, None) => Ok(None),
            (Access::Only(allowed), None) => Ok(Some(allowed.iter().cloned().collect())),
        }
    }
}

/// What a client was granted: its access, and until when.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) access: Access,
    /// The token's `exp` (unix seconds); `None` without authentication.
    pub(crate) exp: Option<u64>,
    /// When the token stops being accepted (`exp` plus the leeway).
    pub(crate) deadline: Option<Instant>,
}

impl Grant {
    pub(crate) fn everything() -> Grant {
        Grant {
            access: Access::All,
            exp: None,
            deadline: None,
        }
    }
}

/// `CLIENT_AUTH`: who must present a token, and how it is checked.
pub(crate) enum Auth {
    Open,
    Jwt(Box<Verifier>),
}

impl Auth {
    pub(crate) fn new(settings: &AuthArgs) -> Result<Auth, AuthSettingsError> {
        settings.check()?;
        Ok(match settings.client_auth {
            ClientAuth::None => Auth::Open,
            ClientAuth::Jwt => Auth::Jwt(Box::new(Verifier::new(settings))),
        })
    }

    pub(crate) fn is_required(&self) -> bool {
        matches!(self, Auth::Jwt(_))
    }

    /// The cookie a browser's token comes in, when tokens are required.
    pub(crate) fn cookie_name(&self) -> Option<&str> {
        match self {
            Auth::Open => None,
            Auth::Jwt(verifier) => Some(&verifier.cookie),
        }
    }

    /// Checks `token`; without authentication, everything is granted.
    pub(crate) async fn grant(&self, token: Option<&str>) -> Result<Grant, AuthError> {
        match self {
            Auth::Open => Ok(Grant::everything()),
            Auth::Jwt(verifier) => verifier.verify(token.ok_or(AuthError::Missing)?).await,
        }
    }

    /// The token of an HTTP request: `Authorization: Bearer`, else the cookie.
    pub(crate) fn token_in<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        bearer(headers).or_else(|| cookie(headers, self.cookie_name()?))
    }

    /// Fetches the issuer's keys, so that the first client does not wait for them.
    pub(crate) async fn warm_up(&self) {
        if let Auth::Jwt(verifier) = self
            && let Some(issuer) = &verifier.issuer_keys
        {
            issuer.warm_up().await;
        }
    }
}

/// A Socket.IO handshake's token cookie, kept for the handshake middleware.
#[derive(Debug, Clone)]
pub(crate) struct CookieToken(pub(crate) Box<str>);

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|value| !value.is_empty())
}

/// Checks tokens against the configured keys and turns their claims into a [`Grant`].
pub(crate) struct Verifier {
    secret: Option<DecodingKey>,
    issuer_keys: Option<IssuerKeys>,
    /// `iss`, `aud`, leeway; the algorithm is set per token from its key.
    validation: Validation,
    leeway: u64,
    roles_claim: String,
    admin_role: String,
    locations_claim: String,
    cookie: String,
}

impl Verifier {
    fn new(settings: &AuthArgs) -> Verifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = settings.jwt_leeway_seconds;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(issuer) = settings
            .oidc_issuer
            .as_ref()
            .or(settings.jwt_issuer.as_ref())
        {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &settings.jwt_audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Only with a shared secret (an issuer needs JWT_AUDIENCE, see `check`):
            // whoever holds the secret mints for this notify alone.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Verifier {
            secret: settings
                .jwt_secret
                .as_ref()
                .map(|secret| DecodingKey::from_secret(secret.expose().as_bytes())),
            issuer_keys: settings.oidc_issuer.as_deref().map(IssuerKeys::new),
            validation,
            leeway: settings.jwt_leeway_seconds,
            roles_claim: settings.jwt_roles_claim.clone(),
            admin_role: settings.jwt_admin_role.clone(),
            locations_claim: settings.jwt_locations_claim.clone(),
            cookie: settings.jwt_cookie.clone(),
        }
    }

    async fn verify(&self, token: &str) -> Result<Grant, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(AuthError::Malformed)?;
        let issuer_key;
        let key = match header.alg {
            Algorithm::HS256 => self
                .secret
                .as_ref()
                .ok_or(AuthError::Algorithm(header.alg))?,
            Algorithm::RS256 | Algorithm::ES256 => {
                let issuer = self
                    .issuer_keys
                    .as_ref()
                    .ok_or(AuthError::Algorithm(header.alg))?;
                issuer_key = issuer.key_for(header.kid.as_deref(), header.alg).await?;
                &issuer_key.key
            }
            other => return Err(AuthError::Algorithm(other)),
        };
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map_err(AuthError::from_jwt)?
            .claims;
        let exp = claims
            .get("exp")
            .and_then(Value::as_f64)
            .ok_or_else(|| AuthError::Claim("exp".into()))? as u64;
        // jsonwebtoken still accepts a token in the second of its `exp`; its socket
        // would be closed at once (and reconnect, and be closed, ...).
        let deadline = deadline(exp.saturating_add(self.leeway)).ok_or(AuthError::Expired)?;
        Ok(Grant {
            access: self.access(&claims)?,
            exp: Some(exp),
            deadline: Some(deadline),
        })
    }

    fn access(&self, claims: &Map<String, Value>) -> Result<Access, AuthError> {
        let is_admin = match claim(claims, &self.roles_claim) {
            None | Some(Value::Null) => false,
            Some(Value::String(role)) => *role == self.admin_role,
            Some(Value::Array(roles)) => roles.iter().any(|r| r.as_str() == Some(&self.admin_role)),
            Some(_) => return Err(AuthError::Claim(self.roles_claim.clone())),
        };
        if is_admin {
            return Ok(Access::All);
        }
        let malformed = || AuthError::Claim(self.locations_claim.clone());
        let items = match claim(claims, &self.locations_claim) {
            None | Some(Value::Null) => return Ok(Access::All),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(malformed()),
        };
        let mut allowed = BTreeSet::new();
        for item in items {
            let location = item.as_str().ok_or_else(malformed)?;
            let location = alert_core::clean_location(location).map_err(|_| malformed())?;
            allowed.insert(location.to_owned());
        }
        if allowed.is_empty() {
            return Err(malformed());
        }
        Ok(Access::Only(Arc::new(allowed)))
    }
}

/// The instant of unix time `at` on the monotonic clock; `None` when it has passed.
/// Times beyond [`FAR_FUTURE`] from now are taken as that (an absurd `exp` must not
/// overflow the clock arithmetic).
fn deadline(at: u64) -> Option<Instant> {
    let left = match std::time::UNIX_EPOCH.checked_add(Duration::from_secs(at)) {
        Some(at) => at.duration_since(std::time::SystemTime::now()).ok()?,
        None => FAR_FUTURE,
    };
    Some(Instant::now() + left.min(FAR_FUTURE))
}

/// Claim `name`, or when there is none and the name has dots, the path through nested
/// objects (`realm_access.roles`). Exact names first: namespaced claims are URLs.
fn claim<'c>(claims: &'c Map<String, Value>, name: &str) -> Option<&'c Value> {
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    let mut parts = name.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// One of the issuer's public keys, with the one algorithm it checks.
pub(crate) struct IssuerKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

impl IssuerKey {
    /// The key, when notify can use it: RSA (RS256) or P-256 (ES256), for signatures.
    fn from_jwk(jwk: &Jwk) -> Option<IssuerKey> {
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|key_use| !matches!(key_use, PublicKeyUse::Signature))
        {
            return None;
        }
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => return None,
        };
        let declared = match alg {
            Algorithm::RS256 => KeyAlgorithm::RS256,
            _ => KeyAlgorithm::ES256,
        };
        if jwk
            .common
            .key_algorithm
            .as_ref()
            .is_some_and(|key_alg| *key_alg != declared)
        {
            return None;
        }
        Some(IssuerKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key: DecodingKey::from_jwk(jwk).ok()?,
        })
    }
}

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

#[derive(Deserialize)]
struct KeySet {
    keys: Vec<Value>,
}

/// Why the issuer's keys could not be fetched (logged; clients see `KeysUnavailable`).
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{url}: {source}")]
    Http { url: String, source: reqwest::Error },
}

/// The issuer's keys, fetched when needed (see the module docs).
struct IssuerKeys {
    discovery_url: String,
    http: reqwest::Client,
    keys: RwLock<Arc<Vec<Arc<IssuerKey>>>>,
    /// One fetch at a time; later callers find its keys.
    fetch: tokio::sync::Mutex<Fetched>,
}

#[derive(Default)]
struct Fetched {
    jwks_uri: Option<String>,
    /// The last successful fetch.
    loaded: Option<Instant>,
    /// The last fetch attempt.
    attempted: Option<Instant>,
    /// The last fetch after the first successful one: these are rate-limited.
    refetched: Option<Instant>,
}

impl IssuerKeys {
    fn new(issuer: &str) -> IssuerKeys {
        IssuerKeys {
            discovery_url: format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            ),
            http: reqwest::Client::builder()
                .timeout(ISSUER_TIMEOUT)
                .build()
                .unwrap_or_default(),
            keys: RwLock::new(Arc::default()),
            fetch: tokio::sync::Mutex::default(),
        }
    }

    fn cached(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<IssuerKey>> {
        let keys = self.keys.read().expect("keys lock").clone();
        match kid {
            Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)).cloned(),
            // Without a kid, only an unambiguous key will do.
            None => {
                let mut candidates = keys.iter().filter(|k| k.alg == alg);
                match (candidates.next(), candidates.next()) {
                    (Some(key), None) => Some(key.clone()),
                    _ => None,
                }
            }
        }
    }

    async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<IssuerKey>, AuthError> {
        let key = match self.cached(kid, alg) {
            Some(key) if !self.is_stale() => key,
            // Refetched when old: a key the issuer withdrew is refused from then on.
            Some(_) => {
                self.refresh(None).await?;
                self.cached(kid, alg).ok_or(AuthError::UnknownKey)?
            }
            None => {
                self.refresh(kid).await?;
                self.cached(kid, alg).ok_or(AuthError::UnknownKey)?
            }
        };
        if key.alg != alg {
            return Err(AuthError::Algorithm(alg));
        }
        Ok(key)
    }

    fn is_stale(&self) -> bool {
        // Only a cheap check when nobody is fetching; a fetch in progress is news.
        match self.fetch.try_lock() {
            Ok(fetched) => fetched.loaded.is_none_or(|at| at.elapsed() > MAX_KEY_AGE),
            Err(_) => false,
        }
    }

    /// Refetches the keys unless the last fetch is too recent, or `unknown` (the kid
    /// that prompted it) arrived meanwhile. `Err` only when no keys could ever be
    /// fetched: later the keys already known stay in use while the issuer is down.
    async fn refresh(&self, unknown: Option<&str>) -> Result<(), AuthError> {
        let mut fetched = self.fetch.lock().await;
        self.refresh_locked(&mut fetched, unknown).await
    }

    /// The first fetch, unless a client's token caused it already.
    async fn warm_up(&self) {
        let mut fetched = self.fetch.lock().await;
        if fetched.attempted.is_none() {
            let _ = self.refresh_locked(&mut fetched, None).await;
        }
    }

    async fn refresh_locked(
        &self,
        fetched: &mut Fetched,
        unknown: Option<&str>,
    ) -> Result<(), AuthError> {
        // With a kid the lookup ignores the algorithm: the kid alone names the key.
        if unknown.is_some() && self.cached(unknown, Algorithm::RS256).is_some() {
            return Ok(()); // fetched while this caller waited
        }
        let now = Instant::now();
        let since = |at: Option<Instant>| at.map_or(Duration::MAX, |at| now - at);
        let allowed = match fetched.loaded {
            None => since(fetched.attempted) >= RETRY_FIRST_FETCH,
            Some(loaded) if now - loaded > MAX_KEY_AGE => since(fetched.attempted) >= MIN_REFETCH,
            Some(_) => since(fetched.refetched) >= MIN_REFETCH,
        };
        if !allowed {
            return match fetched.loaded {
                Some(_) => Ok(()),
                None => Err(AuthError::KeysUnavailable),
            };
        }
        if fetched.loaded.is_some() {
            fetched.refetched = Some(now);
        }
        fetched.attempted = Some(now);
        match self.fetch_keys(fetched).await {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "fetched the OIDC issuer's keys");
                *self.keys.write().expect("keys lock") = Arc::new(keys);
                fetched.loaded = Some(Instant::now());
                Ok(())
            }
            Err(error) => {
                tracing::warn!(%error, "cannot fetch the OIDC issuer's keys");
                // The discovery document may have moved the keys too.
                fetched.jwks_uri = None;
                match fetched.loaded {
                    Some(_) => Ok(()),
                    None => Err(AuthError::KeysUnavailable),
                }
            }
        }
    }

    async fn fetch_keys(&self, fetched: &mut Fetched) -> Result<Vec<Arc<IssuerKey>>, FetchError> {
        let jwks_uri = match &fetched.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let discovery: Discovery = self.get_json(&self.discovery_url).await?;
                fetched.jwks_uri = Some(discovery.jwks_uri.clone());
                discovery.jwks_uri
            }
        };
        let set: KeySet = self.get_json(&jwks_uri).await?;
        // Keys notify cannot use (other types, encryption keys) are skipped, not fatal.
        Ok(set
            .keys
            .into_iter()
            .filter_map(|key| serde_json::from_value::<Jwk>(key).ok())
            .filter_map(|jwk| IssuerKey::from_jwk(&jwk))
            .map(Arc::new)
            .collect())
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, FetchError> {
        let http = |source| FetchError::Http {
            url: url.to_owned(),
            source,
        };
        self.http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(http)?
            .json()
            .await
            .map_err(http)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alert_core::Secret;
    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
    use serde_json::json;

    const SECRET: &str = "a shared secret of at least 32 bytes";

    fn settings() -> AuthArgs {
        let mut settings = crate::Config::defaults().clients.auth;
        settings.client_auth = ClientAuth::Jwt;
        settings.jwt_secret = Some(Secret::new(SECRET));
        settings.jwt_issuer = Some("https://id.example".into());
        settings.jwt_audience = Some("alerts".into());
        settings
    }

    fn verifier(settings: &AuthArgs) -> Verifier {
        match Auth::new(settings).unwrap() {
            Auth::Jwt(verifier) => *verifier,
            Auth::Open => panic!("jwt expected"),
        }
    }

    fn claims(extra: Value) -> Value {
        let mut claims = json!({
            "iss": "https://id.example",
            "aud": "alerts",
            "exp": get_current_timestamp() + 600,
            "sub": "someone",
        });
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        claims
    }

    fn hs256(claims: &Value, secret: &[u8]) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    async fn verify(claims: &Value) -> Result<Grant, AuthError> {
        verifier(&settings())
            .verify(&hs256(claims, SECRET.as_bytes()))
            .await
    }

    #[tokio::test]
    async fn a_good_token_is_granted_with_its_expiry() {
        let exp = get_current_timestamp() + 600;
        let grant = verify(&claims(json!({ "exp": exp }))).await.unwrap();
        assert_eq!(grant.access, Access::All);
        assert_eq!(grant.exp, Some(exp));
        assert!(grant.deadline.is_some());
    }

    #[tokio::test]
    async fn an_absurd_exp_is_a_far_deadline_not_an_overflow() {
        for exp in [u64::MAX, u64::MAX - 5, u64::MAX / 2] {
            let grant = verify(&claims(json!({ "exp": exp }))).await.unwrap();
            let day = Duration::from_secs(86_400);
            assert!(grant.deadline.unwrap() > Instant::now() + day, "{exp}");
        }
    }

    #[tokio::test]
    async fn standard_claims_are_checked() {
        let now = get_current_timestamp();
        let cases = [
            (json!({ "exp": now - 120 }), "expired"),
            (json!({ "nbf": now + 120 }), "not_yet_valid"),
            (json!({ "iss": "https://other.example" }), "issuer"),
            (json!({ "aud": "another-service" }), "audience"),
        ];
        for (extra, reason) in cases {
            let error = verify(&claims(extra.clone())).await.unwrap_err();
            assert_eq!(error.reason(), reason, "{extra}: {error}");
        }
        for missing in ["iss", "aud", "exp"] {
            let mut claims = claims(json!({}));
            claims.as_object_mut().unwrap().remove(missing);
            assert!(verify(&claims).await.is_err(), "without {missing}");
        }
        // Within the leeway (30 s by default) an expired token still passes.
        assert!(verify(&claims(json!({ "exp": now - 5 }))).await.is_ok());
    }

    #[tokio::test]
    async fn a_wrong_secret_or_algorithm_is_refused() {
        let verifier = verifier(&settings());
        let claims = claims(json!({}));
        let forged = hs256(&claims, b"another secret of at least 32 bytes!");
        assert_eq!(
            verifier.verify(&forged).await.unwrap_err().reason(),
            "signature"
        );

        // HS384 with the right secret: the secret accepts HS256 only.
        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            verifier.verify(&hs384).await.unwrap_err().reason(),
            "algorithm"
        );

        // `alg: none`, unsigned.
        let unsigned = format!("{}.{}.", b64(&json!({ "alg": "none" })), b64(&claims));
        assert_eq!(
            verifier.verify(&unsigned).await.unwrap_err().reason(),
            "malformed"
        );

        // RS256 with no issuer configured: no key could check it.
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("k1".into());
        let rs256 = format!("{}.{}.c2ln", b64(&header), b64(&claims));
        assert_eq!(
            verifier.verify(&rs256).await.unwrap_err().reason(),
            "algorithm"
        );
        assert_eq!(
            verifier.verify("not a token").await.unwrap_err().reason(),
            "malformed"
        );
    }

    fn b64(value: &impl serde::Serialize) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    #[tokio::test]
    async fn roles_and_locations_decide_access() {
        let only = |l: &[&str]| Access::Only(Arc::new(l.iter().map(|s| s.to_string()).collect()));
        let cases = [
            (json!({}), Ok(Access::All)),
            (
                json!({ "locations": ["Haifa", " Acre "] }),
                Ok(only(&["Acre", "Haifa"])),
            ),
            (
                json!({ "locations": ["Haifa"], "roles": ["reader", "admin"] }),
                Ok(Access::All),
            ),
            (
                json!({ "locations": ["Haifa"], "roles": "admin" }),
                Ok(Access::All),
            ),
            (
                json!({ "locations": ["Haifa"], "roles": "reader" }),
                Ok(only(&["Haifa"])),
            ),
            (json!({ "locations": [] }), Err("claim")),
            (json!({ "locations": "Haifa" }), Err("claim")),
            (json!({ "locations": [3] }), Err("claim")),
            (json!({ "roles": 3 }), Err("claim")),
        ];
        for (extra, expected) in cases {
            let got = verify(&claims(extra.clone())).await;
            match expected {
                Ok(access) => assert_eq!(got.unwrap().access, access, "{extra}"),
                Err(reason) => assert_eq!(got.unwrap_err().reason(), reason, "{extra}"),
            }
        }

        let mut settings = settings();
        settings.jwt_roles_claim = "realm_access.roles".into();
        settings.jwt_locations_claim = "https://alerts.example/locations".into();
        let verifier = verifier(&settings);
        let token = |extra| hs256(&claims(extra), SECRET.as_bytes());
        let nested_admin = token(
            json!({ "realm_access": { "roles": ["admin"] }, "https://alerts.example/locations": ["Haifa"] }),
        );
        assert_eq!(
            verifier.verify(&nested_admin).await.unwrap().access,
            Access::All
        );
        let namespaced = token(json!({ "https://alerts.example/locations": ["Haifa"] }));
        assert_eq!(
            verifier.verify(&namespaced).await.unwrap().access,
            only(&["Haifa"])
        );
    }

    #[test]
    fn access_limits_filters_and_subscriptions() {
        let haifa = Access::Only(Arc::new(BTreeSet::from(["Haifa".to_owned()])));
        let eilat = vec!["Eilat".to_owned()];
        assert_eq!(haifa.limit(None).unwrap(), Some(vec!["Haifa".to_owned()]));
        assert_eq!(
            haifa.limit(Some(eilat.clone())).unwrap_err().reason(),
            "forbidden"
        );
        assert_eq!(Access::All.limit(None).unwrap(), None);
        assert_eq!(Access::All.limit(Some(eilat.clone())).unwrap(), Some(eilat));
        assert!(
            !haifa.covers(&BTreeSet::new()),
            "everything is more than Haifa"
        );
        assert!(haifa.covers(&BTreeSet::from(["Haifa".to_owned()])));
        assert!(Access::All.nothing_subscribed().is_empty());
        assert_eq!(haifa.nothing_subscribed().len(), 1);
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let mut bad = settings();
        bad.jwt_secret = None;
        assert_eq!(bad.check(), Err(AuthSettingsError::NoKeys));
        bad.jwt_secret = Some(Secret::new("short"));
        assert_eq!(bad.check(), Err(AuthSettingsError::ShortSecret));
        let mut bad = settings();
        bad.oidc_issuer = Some("id.example".into());
        assert_eq!(bad.check(), Err(AuthSettingsError::IssuerNotUrl));
        bad.oidc_issuer = Some("https://id.example/realms/a".into());
        assert_eq!(bad.check(), Err(AuthSettingsError::IssuersDiffer));
        bad.jwt_issuer = None;
        bad.jwt_audience = None;
        assert_eq!(bad.check(), Err(AuthSettingsError::NoAudience));
        let mut bad = settings();
        bad.jwt_cookie = "a;b".into();
        assert_eq!(bad.check(), Err(AuthSettingsError::CookieName));
        let mut open = settings();
        open.client_auth = ClientAuth::None;
        open.jwt_secret = None;
        assert!(open.check().is_ok());
    }

    #[test]
    fn tokens_come_from_bearer_or_the_cookie() {
        let auth = Auth::new(&settings()).unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(auth.token_in(&headers), None);
        headers.insert(
            header::COOKIE,
            "a=1; alert_token=from-cookie; b=2".parse().unwrap(),
        );
        assert_eq!(auth.token_in(&headers), Some("from-cookie"));
        headers.insert(header::AUTHORIZATION, "Bearer from-header".parse().unwrap());
        assert_eq!(auth.token_in(&headers), Some("from-header"));
        headers.insert(header::AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
        assert_eq!(auth.token_in(&headers), Some("from-cookie"));
        assert_eq!(Auth::Open.token_in(&HeaderMap::new()), None);
    }
}
