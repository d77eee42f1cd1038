use std::{net::SocketAddr, path::PathBuf};

use alert_standalone::Config;
use alert_testkit::Spawned;
use alert_testkit::contract::{Endpoints, System};

/// A standalone broadcaster running in this test process on free ports.
pub(crate) struct Standalone {
    pub(crate) ingest: SocketAddr,
    pub(crate) clients: SocketAddr,
    service: Spawned<anyhow::Error>,
}

pub(crate) fn config(data_dir: Option<PathBuf>) -> Config {
    let mut config = Config::defaults();
    config.data_dir = data_dir;
    config.service.shutdown_timeout_seconds = 2;
    // Every test client is 127.0.0.1: no per-address limit.
    config.clients.addresses = alert_notify::AddressLimitArgs::off();
    config
}

impl Standalone {
    pub(crate) async fn start() -> Standalone {
        Standalone::with(config(None)).await
    }

    pub(crate) async fn with(config: Config) -> Standalone {
        let service = alert_testkit::spawn_n(|[ingest, clients], shutdown| {
            alert_standalone::run(config, ingest, clients, shutdown)
        })
        .await;
        Standalone {
            ingest: service.addrs()[0],
            clients: service.addrs()[1],
            service,
        }
    }
}

impl System for Standalone {
    fn endpoints(&self) -> Endpoints {
        Endpoints {
            ingest: self.ingest,
            clients: self.clients,
        }
    }

    async fn stop(self) {
        self.service.stop().await.unwrap();
    }
}
