use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The processor's Prometheus metrics, on a registry of its own.
pub(crate) struct Metrics {
    pub(crate) registry: Registry,
    /// applied, duplicate, requeued, dead_lettered.
    pub(crate) messages: IntCounterVec,
    /// open, update, close.
    pub(crate) events: IntCounterVec,
    pub(crate) close_lag_seconds: Histogram,
    pub(crate) script_seconds: Histogram,
    pub(crate) redis_retries: IntCounter,
    pub(crate) consumer_connected: IntGauge,
    pub(crate) redis_connected: IntGauge,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        let messages = IntCounterVec::new(
            Opts::new(
                "alerts_processor_messages_total",
                "Queue messages handled, by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let events = IntCounterVec::new(
            Opts::new("alerts_processor_events_total", "Events emitted, by type"),
            &["type"],
        )
        .expect("valid metric");
        let close_lag_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "alerts_processor_close_lag_seconds",
                "Close event time after the window's end",
            )
            .buckets(SECONDS.to_vec()),
        )
        .expect("valid metric");
        let script_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "alerts_processor_script_duration_seconds",
                "Round trip of the aggregation script",
            )
            .buckets(SECONDS.to_vec()),
        )
        .expect("valid metric");
        let redis_retries = IntCounter::new(
            "alerts_processor_redis_retries_total",
            "Script calls retried because Redis was unavailable",
        )
        .expect("valid metric");
        let consumer_connected = IntGauge::new(
            "alerts_processor_consumer_connected",
            "1 while consuming from RabbitMQ",
        )
        .expect("valid metric");
        let redis_connected =
            IntGauge::new("alerts_processor_redis_connected", "1 while Redis answers")
                .expect("valid metric");
        for metric in [
            Box::new(messages.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(events.clone()),
            Box::new(close_lag_seconds.clone()),
            Box::new(script_seconds.clone()),
            Box::new(redis_retries.clone()),
            Box::new(consumer_connected.clone()),
            Box::new(redis_connected.clone()),
        ] {
            registry.register(metric).expect("metric registered once");
        }
        Metrics {
            registry,
            messages,
            events,
            close_lag_seconds,
            script_seconds,
            redis_retries,
            consumer_connected,
            redis_connected,
        }
    }

    pub(crate) fn count_events(&self, opens: u64, updates: u64, closes: u64) {
        for (kind, n) in [("open", opens), ("update", updates), ("close", closes)] {
            if n > 0 {
                self.events.with_label_values(&[kind]).inc_by(n);
            }
        }
    }

    pub(crate) fn observe_close_lags(&self, lags_ms: &[i64]) {
        for lag in lags_ms {
            self.close_lag_seconds.observe(*lag as f64 / 1000.0);
        }
    }
}
