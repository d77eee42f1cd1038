use std::{net::SocketAddr, path::PathBuf};

use alert_standalone::Config;
use alert_testkit::contract::{Endpoints, System};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// A standalone broadcaster running in this test process on free ports.
pub(crate) struct Standalone {
    pub(crate) ingest: SocketAddr,
    pub(crate) clients: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

pub(crate) fn config(data_dir: Option<PathBuf>) -> Config {
    let mut config = Config::defaults();
    config.data_dir = data_dir;
    config.service.shutdown_timeout_seconds = 2;
    config
}

impl Standalone {
    pub(crate) async fn start() -> Standalone {
        Standalone::with(config(None)).await
    }

    pub(crate) async fn with(config: Config) -> Standalone {
        let ingest_socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let clients_socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (ingest, clients) = (
            ingest_socket.local_addr().unwrap(),
            clients_socket.local_addr().unwrap(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(alert_standalone::run(
            config,
            ingest_socket,
            clients_socket,
            async move {
                let _ = stopped.await;
            },
        ));
        Standalone {
            ingest,
            clients,
            stop,
            task,
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
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}
