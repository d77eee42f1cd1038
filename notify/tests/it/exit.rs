//! notify fails loudly: a bad setting or a port in use is one line and a non-zero
//! exit; a supervised task that ends (the live feed) ends the run at once.

use std::sync::Arc;

use alert_core::{LiveFeed, LiveSignal, supervise::Serving};
use alert_notify::{Backend, Config, RunError};
use alert_redis::{Store, StoreSettings};
use tokio::{net::TcpListener, sync::oneshot};

use crate::helpers::{REDIS_URL, WAIT, unique};

const BIN: &str = env!("CARGO_BIN_EXE_alert-notify");

#[tokio::test]
async fn a_port_in_use_is_one_line_naming_the_address_and_a_non_zero_exit() {
    alert_testkit::exits_on_port_in_use(BIN, "LISTEN_ADDR", &[]).await;
}

#[tokio::test]
async fn a_bad_cors_origins_is_one_line_and_exit_2() {
    alert_testkit::exits_on_bad_cors(BIN).await;
}

/// A live feed that ends for good when told to.
struct EndsWhenTold(oneshot::Receiver<()>);

#[async_trait::async_trait]
impl LiveFeed for EndsWhenTold {
    async fn next(&mut self) -> LiveSignal {
        let _ = (&mut self.0).await;
        LiveSignal::Closed
    }

    fn try_next(&mut self) -> Option<LiveSignal> {
        None
    }

    fn is_connected(&self) -> bool {
        true
    }

    async fn close(&mut self) {}
}

#[tokio::test]
async fn a_live_feed_that_ends_ends_the_run_with_an_error_naming_it() {
    let prefix = format!("{}:", unique("feed-ends"));
    let config = crate::helpers::config(&prefix, REDIS_URL);
    let store = Store::connect(REDIS_URL, config.redis.keys(), StoreSettings::default())
        .await
        .unwrap();
    let (end_feed, ends) = oneshot::channel();
    let backend = Backend {
        log: Arc::new(store),
        live: Box::new(EndsWhenTold(ends)),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = Serving::default();
    let Config {
        clients, service, ..
    } = config;
    let run = tokio::spawn({
        let serving = serving.clone();
        async move {
            let never = std::future::pending::<()>();
            let drain = service.shutdown_timeout();
            alert_notify::serve(
                backend,
                &clients,
                axum::Router::new(),
                listener,
                never,
                drain,
                serving,
            )
            .await
        }
    });
    alert_testkit::wait_ready(addr).await;

    end_feed.send(()).unwrap();
    let ended = tokio::time::timeout(WAIT, run).await.expect("run returns");
    let error = ended.unwrap().unwrap_err();
    assert!(matches!(error, RunError::Task(_)), "{error:?}");
    assert_eq!(error.to_string(), "live feed stopped unexpectedly");
    assert!(!serving.is_serving(), "/readyz of the whole process fails");
}
