//! Limits per client address: how many Socket.IO sessions and SSE streams one address
//! may hold open, and how fast it may start sessions, so that a flood from one address
//! costs the others nothing. Refusals are `429` with `Retry-After` before the Socket.IO
//! layer or the stream sees the request; stock clients retry by themselves.
//!
//! The address is the peer's, or, when the peer is a trusted proxy
//! (`TRUSTED_PROXIES`), the nearest address in `X-Forwarded-For` that is not one: a
//! header from anyone else is ignored, since anyone can write it. IPv6 addresses count
//! per /64, the block one subscriber gets. Carrier-grade NAT puts many phones behind one
//! IPv4 address, so the defaults are generous; 0 turns a limit off.

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use alert_core::{RateLimit, TokenBucket};
use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures::StreamExt as _;
use ipnet::IpNet;
use prometheus::IntCounterVec;

use crate::config::AddressLimitArgs;

/// Addresses whose `X-Forwarded-For` is believed: `10.0.0.0/8,192.0.2.7`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TRUSTED_PROXIES: {0:?} is neither an address nor a network like 10.0.0.0/8")]
pub struct InvalidProxy(String);

impl FromStr for TrustedProxies {
    type Err = InvalidProxy;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let networks = value
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| InvalidProxy(entry.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies(networks))
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let networks: Vec<String> = self.0.iter().map(IpNet::to_string).collect();
        f.write_str(&networks.join(","))
    }
}

impl TrustedProxies {
    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The client's address: the peer's, unless the peer is trusted; then the
    /// rightmost `X-Forwarded-For` entry that is not trusted (each proxy appends the
    /// address it saw, so entries left of an untrusted one may be forged).
    fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        for entry in forwarded.into_iter().rev() {
            let Ok(hop) = entry.trim().parse::<IpAddr>() else {
                break;
            };
            client = hop.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// What an address holds, counted against its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Session,
    Stream,
}

/// The limits, and what each address holds now.
pub(crate) struct AddressLimits {
    max_sessions: usize,
    max_streams: usize,
    handshakes: Option<RateLimit>,
    trusted: TrustedProxies,
    table: Mutex<Table>,
    limited: IntCounterVec,
    /// Whether the operator was told that a refused address looks like a proxy.
    warned: AtomicBool,
}

#[derive(Default)]
struct Table {
    entries: HashMap<IpAddr, Entry>,
    prune_at: usize,
}

struct Entry {
    sessions: usize,
    streams: usize,
    handshakes: Option<TokenBucket>,
}

/// Addresses tracked at most. Beyond that (a flood from ever-new addresses), new
/// addresses are let through untracked: refusing them would refuse real clients.
const MAX_TRACKED: usize = 1_000_000;

/// A session or stream counted against its address until dropped.
pub(crate) struct Held {
    limits: Arc<AddressLimits>,
    address: IpAddr,
    kind: Kind,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut table = self.limits.lock();
        if let Some(entry) = table.entries.get_mut(&self.address) {
            let count = match self.kind {
                Kind::Session => &mut entry.sessions,
                Kind::Stream => &mut entry.streams,
            };
            *count = count.saturating_sub(1);
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limited {
    Sessions,
    Streams,
    Handshakes(Duration),
}

impl Limited {
    fn label(self) -> &'static str {
        match self {
            Limited::Sessions => "sessions",
            Limited::Streams => "streams",
            Limited::Handshakes(_) => "handshakes",
        }
    }
}

impl IntoResponse for Limited {
    fn into_response(self) -> Response {
        let (message, retry_after) = match self {
            Limited::Sessions => ("too many connections from this address".to_owned(), 5),
            Limited::Streams => ("too many event streams from this address".to_owned(), 5),
            Limited::Handshakes(wait) => (
                "connecting too fast from this address".to_owned(),
                wait.as_secs_f64().ceil().max(1.0) as u64,
            ),
        };
        let body = axum::Json(serde_json::json!({ "error": message }));
        let mut response = (StatusCode::TOO_MANY_REQUESTS, body).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        response
    }
}

impl AddressLimits {
    /// `limited` counts refusals by limit.
    pub(crate) fn new(args: &AddressLimitArgs, limited: IntCounterVec) -> AddressLimits {
        let rate = args.handshakes_per_second_per_address;
        AddressLimits {
            max_sessions: args.max_connections_per_address,
            max_streams: args.max_streams_per_address,
            handshakes: RateLimit::per_second(rate, HANDSHAKE_BURST_SECONDS),
            trusted: args.trusted_proxies.clone(),
            table: Mutex::default(),
            limited,
            warned: AtomicBool::new(false),
        }
    }

    /// Whether any limit applies to `kind` (all 0: nothing is counted).
    fn limits(&self, kind: Kind) -> bool {
        match kind {
            Kind::Session => self.max_sessions > 0 || self.handshakes.is_some(),
            Kind::Stream => self.max_streams > 0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().expect("address table lock")
    }

    /// Counts one more `kind` for `address` (a session also takes a handshake token),
    /// or says which limit refuses it.
    fn hold(self: &Arc<Self>, address: IpAddr, kind: Kind) -> Result<Option<Held>, Limited> {
        let now = Instant::now();
        let mut table = self.lock();
        if table.entries.len() >= table.prune_at {
            self.prune(&mut table, now);
        }
        if !table.entries.contains_key(&address) && table.entries.len() >= MAX_TRACKED {
            return Ok(None);
        }
        let handshakes = self.handshakes;
        let entry = table.entries.entry(address).or_insert_with(|| Entry {
            sessions: 0,
            streams: 0,
            handshakes: handshakes.map(|limit| TokenBucket::full(limit, now)),
        });
        let (count, max, refusal) = match kind {
            Kind::Session => (&mut entry.sessions, self.max_sessions, Limited::Sessions),
            Kind::Stream => (&mut entry.streams, self.max_streams, Limited::Streams),
        };
        if max > 0 && *count >= max {
            return Err(refusal);
        }
        if kind == Kind::Session
            && let (Some(limit), Some(bucket)) = (handshakes, &mut entry.handshakes)
        {
            bucket.take(1.0, limit, now).map_err(Limited::Handshakes)?;
        }
        *count += 1;
        Ok(Some(Held {
            limits: self.clone(),
            address,
            kind,
        }))
    }

    /// Forgets the addresses that hold nothing and have their handshakes back.
    fn prune(&self, table: &mut Table, now: Instant) {
        let handshakes = self.handshakes;
        table.entries.retain(|_, entry| {
            let rested = match (&mut entry.handshakes, handshakes) {
                (Some(bucket), Some(limit)) => bucket.is_full(limit, now),
                _ => true,
            };
            entry.sessions > 0 || entry.streams > 0 || !rested
        });
        table.prune_at = (table.entries.len() * 2).max(1024);
    }
}

/// Seconds of handshakes one address may make at once.
const HANDSHAKE_BURST_SECONDS: f64 = 5.0;

/// IPv6 addresses count per /64.
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

/// A new Socket.IO session (an Engine.IO handshake: no `sid` yet), an SSE stream, or
/// anything else.
fn kind_of(request: &Request) -> Option<Kind> {
    if crate::opens_session(request.uri()) {
        return Some(Kind::Session);
    }
    (request.uri().path() == "/api/stream").then_some(Kind::Stream)
}

/// The middleware: counts sessions and streams per address and refuses those over a
/// limit. A session's count is released when Socket.IO drops its request head (the
/// socket is gone); a stream's when its body is dropped (the stream ended).
pub(crate) async fn check(
    State(limits): State<Arc<AddressLimits>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(kind) = kind_of(&request).filter(|&kind| limits.limits(kind)) else {
        return next.run(request).await;
    };
    // Without a peer address (an in-process request) there is nothing to count.
    let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
        return next.run(request).await;
    };
    let peer = peer.ip().to_canonical();
    let address = address_key(limits.trusted.client(peer, request.headers()));
    let held = match limits.hold(address, kind) {
        Ok(held) => held,
        Err(limited) => {
            limits.limited.with_label_values(&[limited.label()]).inc();
            let forwards = request.headers().contains_key("x-forwarded-for");
            if forwards && !limits.trusted.trusts(peer) && !limits.warned.swap(true, Relaxed) {
                // Behind a proxy that is not trusted, every client is the proxy.
                tracing::warn!(
                    %peer,
                    limit = limited.label(),
                    "refusing an address that forwards for others (X-Forwarded-For); if it is your proxy, add it to TRUSTED_PROXIES"
                );
            }
            tracing::debug!(%address, limit = limited.label(), "refused by a per-address limit");
            return limited.into_response();
        }
    };
    let Some(held) = held else {
        return next.run(request).await;
    };
    match kind {
        Kind::Session => {
            // Socket.IO keeps the handshake's request head, extensions included, for
            // the socket's life.
            request.extensions_mut().insert(Arc::new(held));
            next.run(request).await
        }
        Kind::Stream => next.run(request).await.map(|body| {
            let stream = body.into_data_stream().inspect(move |_| {
                let _counted = &held;
            });
            Body::from_stream(stream)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> IntCounterVec {
        IntCounterVec::new(prometheus::Opts::new("limited", "refusals"), &["limit"]).unwrap()
    }

    fn args(sessions: usize, rate: f64) -> AddressLimitArgs {
        AddressLimitArgs {
            trusted_proxies: "10.0.0.0/8, 192.0.2.7".parse().unwrap(),
            max_connections_per_address: sessions,
            max_streams_per_address: 1,
            handshakes_per_second_per_address: rate,
        }
    }

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let trusted = args(0, 0.0).trusted_proxies;
        let headers = forwarded("198.51.100.1, 203.0.113.9, 10.1.2.3");
        assert_eq!(
            trusted.client(ip("203.0.113.50"), &headers),
            ip("203.0.113.50"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            trusted.client(ip("192.0.2.7"), &headers),
            ip("203.0.113.9"),
            "the rightmost untrusted hop; the entries left of it may be forged"
        );
        assert_eq!(
            trusted.client(ip("10.0.0.1"), &forwarded("10.0.0.2")),
            ip("10.0.0.2"),
            "all trusted: the leftmost"
        );
        assert_eq!(
            trusted.client(ip("10.0.0.1"), &forwarded("garbage, 10.0.0.2")),
            ip("10.0.0.2")
        );
        assert_eq!(
            trusted.client(ip("::ffff:10.0.0.1"), &forwarded("203.0.113.9")),
            ip("203.0.113.9"),
            "a v4-mapped peer is the v4 address"
        );
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("".parse::<TrustedProxies>().unwrap().0.is_empty());
    }

    #[test]
    fn ipv6_counts_per_64() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            address_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(address_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn sessions_are_counted_until_dropped_and_per_address() {
        let limits = Arc::new(AddressLimits::new(&args(2, 0.0), counter()));
        let (a, b) = (ip("203.0.113.1"), ip("203.0.113.2"));
        let first = limits.hold(a, Kind::Session).unwrap();
        let _second = limits.hold(a, Kind::Session).unwrap();
        assert_eq!(limits.hold(a, Kind::Session).err(), Some(Limited::Sessions));
        assert!(limits.hold(b, Kind::Session).is_ok(), "another address");
        assert!(limits.hold(a, Kind::Stream).is_ok(), "streams count apart");
        drop(first);
        assert!(limits.hold(a, Kind::Session).is_ok(), "released");
    }

    #[test]
    fn handshakes_are_rate_limited_per_address() {
        let limits = Arc::new(AddressLimits::new(&args(0, 2.0), counter()));
        let a = ip("203.0.113.1");
        let burst = (2.0 * HANDSHAKE_BURST_SECONDS) as usize;
        let held: Vec<_> = (0..burst)
            .map(|_| limits.hold(a, Kind::Session).unwrap())
            .collect();
        assert!(matches!(
            limits.hold(a, Kind::Session),
            Err(Limited::Handshakes(_))
        ));
        assert!(limits.hold(ip("203.0.113.2"), Kind::Session).is_ok());
        drop(held);
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let limits = Arc::new(AddressLimits::new(&args(5, 0.0), counter()));
        for i in 0..1100u32 {
            let address = IpAddr::from(std::net::Ipv4Addr::from(0xCB00_7100 + i));
            drop(limits.hold(address, Kind::Session).unwrap());
        }
        let tracked = limits.lock().entries.len();
        assert!(tracked < 1100, "pruned at 1024: {tracked} tracked");
    }
}
