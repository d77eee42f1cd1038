//! The shared end-to-end contract (`alert_testkit::contract`) against the distributed
//! services: the real listener -> RabbitMQ -> the real processor -> Redis -> notify,
//! each on its own port with its own queue and prefix.

use std::{net::SocketAddr, time::Duration};

use alert_testkit::contract::{Endpoints, System};
use lapin::options::QueueDeleteOptions;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::helpers::{TestApp, config, eventually, unique};

async fn bind() -> (TcpListener, SocketAddr) {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

async fn wait_ready(addr: SocketAddr, what: &str) {
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(20), what, || async {
        let url = format!("http://{addr}/readyz");
        let response = http.get(url).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
}

struct Distributed {
    queue: String,
    ingest: SocketAddr,
    notify: TestApp,
    stops: Vec<oneshot::Sender<()>>,
    services: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Distributed {
    async fn start() -> Distributed {
        let queue = unique("e2e");
        let prefix = format!("{queue}:");
        let (mut stops, mut services) = (Vec::new(), Vec::new());
        let mut stopper = || {
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            async move {
                let _ = stopped.await;
            }
        };

        let mut listener_config = alert_listener::Config::defaults();
        listener_config.amqp.queue = queue.clone();
        listener_config.service.shutdown_timeout_seconds = 2;
        let (socket, ingest) = bind().await;
        services.push(tokio::spawn(alert_listener::run(
            listener_config,
            socket,
            stopper(),
        )));

        let mut processor_config = alert_processor::Config::defaults();
        processor_config.amqp.queue = queue.clone();
        processor_config.redis.redis_prefix = prefix.clone();
        processor_config.service.shutdown_timeout_seconds = 2;
        let (socket, processor) = bind().await;
        services.push(tokio::spawn(alert_processor::run(
            processor_config,
            socket,
            stopper(),
        )));

        let notify = TestApp::spawn(config(&prefix, crate::helpers::REDIS_URL)).await;
        wait_ready(ingest, "listener ready").await;
        wait_ready(processor, "processor ready").await;
        Distributed {
            queue,
            ingest,
            notify,
            stops,
            services,
        }
    }
}

impl System for Distributed {
    fn endpoints(&self) -> Endpoints {
        Endpoints {
            ingest: self.ingest,
            clients: self.notify.addr,
        }
    }

    async fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for service in self.services {
            service.await.unwrap().unwrap();
        }
        let connection = alert_amqp::connect(alert_testkit::AMQP_URL, "e2e cleanup")
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        for name in [self.queue.clone(), format!("{}.dead", self.queue)] {
            let _ = channel
                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        self.notify.stop().await;
    }
}

alert_testkit::contract_tests!(Distributed::start);
