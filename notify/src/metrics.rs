use crate::auth::AuthError;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Notify's Prometheus metrics, on a registry of its own (so that several instances in
/// one test process do not collide). No location or id labels: bounded cardinality.
pub(crate) struct Metrics {
    pub(crate) registry: Registry,
    /// Connected clients by transport (`socketio`, `sse`).
    pub(crate) clients: IntGaugeVec,
    /// Events taken from the feed (live or gap fill), by event type.
    pub(crate) events_in: IntCounterVec,
    /// Events handed to a client, by transport.
    pub(crate) deliveries: IntCounterVec,
    /// From the event's `createdAt` (decided in Redis) to its fan-out here.
    pub(crate) feed_lag: Histogram,
    /// Gaps in the live feed filled from the event log, and the events they held.
    pub(crate) gaps_filled: IntCounter,
    pub(crate) gap_events: IntCounter,
    pub(crate) log_regressions: IntCounter,
    /// Clients disconnected because their send buffer was full and their backlog too.
    pub(crate) slow_clients: IntCounterVec,
    /// Times a Socket.IO client's send buffer was full and its events were held for it.
    pub(crate) clients_behind: IntCounter,
    /// 1 while the live feed is subscribed and caught up with the log.
    pub(crate) feed_up: IntGauge,
    /// Clients or requests refused by authentication, by [`AuthError::reason`].
    pub(crate) auth_refused: IntCounterVec,
    /// Requests refused by a limit on what one client controls (per address: sessions,
    /// streams, handshakes; per client: subscribes).
    pub(crate) limited: IntCounterVec,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        let clients = IntGaugeVec::new(
            Opts::new(
                "alerts_notify_connected_clients",
                "Connected clients, by transport",
            ),
            &["transport"],
        )
        .expect("valid metric");
        let events_in = IntCounterVec::new(
            Opts::new(
                "alerts_notify_events_total",
                "Events taken from the feed, by event type",
            ),
            &["event_type"],
        )
        .expect("valid metric");
        let deliveries = IntCounterVec::new(
            Opts::new(
                "alerts_notify_deliveries_total",
                "Events handed to clients, by transport",
            ),
            &["transport"],
        )
        .expect("valid metric");
        let feed_lag = Histogram::with_opts(
            HistogramOpts::new(
                "alerts_notify_feed_lag_seconds",
                "Time from an event's creation in Redis to its fan-out",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
        )
        .expect("valid metric");
        let gaps_filled = IntCounter::new(
            "alerts_notify_gaps_filled_total",
            "Gaps in the live feed filled from the event log",
        )
        .expect("valid metric");
        let gap_events = IntCounter::new(
            "alerts_notify_gap_events_total",
            "Events the live feed missed and the event log supplied",
        )
        .expect("valid metric");
        let log_regressions = IntCounter::new(
            "alerts_notify_log_regressions_total",
            "Times the event log no longer held an event this pod had delivered (Redis lost writes); every client resynchronised",
        )
        .expect("valid metric");
        let slow_clients = IntCounterVec::new(
            Opts::new(
                "alerts_notify_slow_client_disconnects_total",
                "Clients whose transport was closed because they did not take their events fast enough",
            ),
            &["transport"],
        )
        .expect("valid metric");
        let clients_behind = IntCounter::new(
            "alerts_notify_clients_behind_total",
            "Times a Socket.IO client's send buffer was full and its events were held for it",
        )
        .expect("valid metric");
        let feed_up = IntGauge::new(
            "alerts_notify_feed_up",
            "1 while the live feed is subscribed and caught up",
        )
        .expect("valid metric");
        let limited = IntCounterVec::new(
            Opts::new(
                "alerts_notify_limited_total",
                "Requests refused by a client limit (sessions, streams, handshakes, subscribes)",
            ),
            &["limit"],
        )
        .expect("valid metric");
        let auth_refused = IntCounterVec::new(
            Opts::new(
                "alerts_notify_auth_refused_total",
                "Handshakes, requests and subscriptions refused by client authentication, by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for metric in [
            Box::new(clients.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(events_in.clone()),
            Box::new(deliveries.clone()),
            Box::new(feed_lag.clone()),
            Box::new(gaps_filled.clone()),
            Box::new(gap_events.clone()),
            Box::new(log_regressions.clone()),
            Box::new(slow_clients.clone()),
            Box::new(clients_behind.clone()),
            Box::new(feed_up.clone()),
            Box::new(auth_refused.clone()),
            Box::new(limited.clone()),
        ] {
            registry.register(metric).expect("metric registered once");
        }
        Metrics {
            registry,
            clients,
            events_in,
            deliveries,
            feed_lag,
            gaps_filled,
            gap_events,
            log_regressions,
            slow_clients,
            clients_behind,
            feed_up,
            auth_refused,
            limited,
        }
    }

    /// Counts a refusal; returns the error for the caller to answer with.
    pub(crate) fn refused(&self, error: AuthError) -> AuthError {
        tracing::debug!(reason = error.reason(), %error, "client authentication refused");
        self.auth_refused.with_label_values(&[error.reason()]).inc();
        error
    }
}
