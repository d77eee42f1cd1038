//! The shared end-to-end contract (`alert_testkit::contract`) against the distributed
//! services: the real listener -> RabbitMQ -> the real processor -> Redis -> notify,
//! each on its own port with its own queue and prefix.

use alert_testkit::contract::{Endpoints, System};

use crate::helpers::{Ingest, TestApp, config};

/// The listener and processor, and notify on their prefix.
struct Distributed {
    ingest: Ingest,
    notify: TestApp,
}

impl Distributed {
    async fn start() -> Distributed {
        let ingest = Ingest::start("e2e").await;
        let notify = TestApp::spawn(config(&ingest.prefix, crate::helpers::REDIS_URL)).await;
        Distributed { ingest, notify }
    }
}

impl System for Distributed {
    fn endpoints(&self) -> Endpoints {
        Endpoints {
            ingest: self.ingest.addr,
            clients: self.notify.addr,
        }
    }

    async fn stop(self) {
        self.ingest.stop().await;
        self.notify.stop().await;
    }
}

alert_testkit::contract_tests!(Distributed::start);
