//! What a Kubernetes Service does for the sources and clients of a run: it sends new
//! connections only to the pods whose `/readyz` answers 200 (probed every 100 ms), and
//! to any pod when none is ready.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

const PROBE_EVERY: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct Endpoints {
    all: Vec<SocketAddr>,
    ready: Arc<Vec<AtomicBool>>,
}

impl Endpoints {
    /// Starts probing `all`; the probes stop when the last clone is dropped.
    pub fn probe(all: Vec<SocketAddr>) -> Endpoints {
        let ready: Arc<Vec<AtomicBool>> =
            Arc::new(all.iter().map(|_| AtomicBool::new(true)).collect());
        let endpoints = Endpoints {
            all: all.clone(),
            ready: ready.clone(),
        };
        let watched = Arc::downgrade(&ready);
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_millis(500))
                .build()
                .expect("an HTTP client");
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let Some(ready) = watched.upgrade() else {
                    return;
                };
                for (addr, flag) in all.iter().zip(ready.iter()) {
                    let ok = matches!(
                        http.get(format!("http://{addr}/readyz")).send().await,
                        Ok(response) if response.status() == 200
                    );
                    flag.store(ok, Ordering::Relaxed);
                }
            }
        });
        endpoints
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The `n`th ready endpoint (round the ready ones), or the `n`th of all when none is.
    pub fn pick(&self, n: usize) -> (usize, SocketAddr) {
        let ready: Vec<usize> = (0..self.all.len())
            .filter(|&i| self.ready[i].load(Ordering::Relaxed))
            .collect();
        let index = match ready.len() {
            0 => n % self.all.len(),
            count => ready[n % count],
        };
        (index, self.all[index])
    }
}
