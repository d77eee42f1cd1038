use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The listener's Prometheus metrics, on a registry of its own (so that several
/// listeners in one test process do not collide).
pub(crate) struct Metrics {
    pub(crate) registry: Registry,
    pub(crate) requests: IntCounterVec,
    pub(crate) alerts_accepted: IntCounter,
    pub(crate) publish_seconds: Histogram,
    pub(crate) in_flight: IntGauge,
    pub(crate) queue_ready: IntGauge,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "alerts_listener_requests_total",
                "Ingest requests answered, by HTTP status",
            ),
            &["status"],
        )
        .expect("valid metric");
        let alerts_accepted = IntCounter::new(
            "alerts_listener_alerts_accepted_total",
            "Alerts durably queued and answered 202",
        )
        .expect("valid metric");
        let publish_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "alerts_listener_publish_duration_seconds",
                "Time from publish to the broker's confirm of a request's messages",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("valid metric");
        let in_flight = IntGauge::new(
            "alerts_listener_requests_in_flight",
            "Ingest requests being handled",
        )
        .expect("valid metric");
        let queue_ready = IntGauge::new(
            "alerts_listener_queue_ready",
            "1 while the broker connection is up",
        )
        .expect("valid metric");
        for metric in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(alerts_accepted.clone()),
            Box::new(publish_seconds.clone()),
            Box::new(in_flight.clone()),
            Box::new(queue_ready.clone()),
        ] {
            registry.register(metric).expect("metric registered once");
        }
        Metrics {
            registry,
            requests,
            alerts_accepted,
            publish_seconds,
            in_flight,
            queue_ready,
        }
    }
}

/// Counts a request as in flight for as long as it lives.
pub(crate) struct InFlight(IntGauge);

impl InFlight {
    pub(crate) fn start(gauge: &IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
