//! A service running in the test's process on free ports: the one way every crate's
//! integration tests start, probe and stop their service.
//!
//! ```text
//! let app = spawn(|listener, shutdown| alert_listener::run(config, listener, shutdown)).await;
//! app.wait_ready().await;
//! // ... requests to app.url("/api/alerts") ...
//! app.stop().await.unwrap();
//! ```

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// How long [`Spawned::wait_ready`] waits for `/readyz` to answer 200.
pub const READY: Duration = Duration::from_secs(30);

/// The shutdown signal handed to a service's `run`: completes on [`Spawned::stop`], or
/// when the [`Spawned`] is dropped (as SIGTERM would, so no service outlives its test).
pub struct Shutdown(oneshot::Receiver<()>);

impl Future for Shutdown {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// A service task spawned by [`spawn`] or [`spawn_n`], serving on `addrs()`.
pub struct Spawned<E> {
    addrs: Vec<SocketAddr>,
    http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), E>>,
}

/// Binds a free port on 127.0.0.1 and spawns `run(listener, shutdown)` as a task.
pub async fn spawn<F, Fut, E>(run: F) -> Spawned<E>
where
    F: FnOnce(TcpListener, Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Send + 'static,
{
    spawn_n(|[listener], shutdown| run(listener, shutdown)).await
}

/// Like [`spawn`] for a service serving on `N` ports (standalone: ingest and clients);
/// `addrs()[i]` is the address of `listeners[i]`.
pub async fn spawn_n<const N: usize, F, Fut, E>(run: F) -> Spawned<E>
where
    F: FnOnce([TcpListener; N], Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Send + 'static,
{
    let mut listeners = Vec::with_capacity(N);
    for _ in 0..N {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        listeners.push(listener);
    }
    let addrs = listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound address"))
        .collect();
    let Ok(listeners) = <[TcpListener; N]>::try_from(listeners) else {
        unreachable!("N listeners were bound");
    };
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(run(listeners, Shutdown(stopped)));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");
    Spawned {
        addrs,
        http,
        shutdown: Some(stop),
        task,
    }
}

impl<E> Spawned<E> {
    /// The (first) port's address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every port's address, in the order `run` got the listeners.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// `http://<addr()><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// A client with a 30 s timeout, for requests to the service.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The status of `GET /readyz` on `addr()`, 0 when there is no answer.
    pub async fn readyz(&self) -> u16 {
        readyz(&self.http, self.addr()).await
    }

    /// Waits until `/readyz` answers 200, or panics after [`READY`].
    pub async fn wait_ready(&self) {
        self.wait_ready_within(READY).await;
    }

    /// Waits until `/readyz` answers 200, or panics after `timeout`.
    pub async fn wait_ready_within(&self, timeout: Duration) {
        poll_ready(&self.http, self.addr(), timeout).await;
    }

    /// Whether the service's task has ended (by itself, unless stopped).
    pub fn finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Signals shutdown, waits for the task to end and returns what `run` returned; a
    /// panic in the task is a panic here.
    pub async fn stop(mut self) -> Result<(), E> {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("the service task did not finish: {error}"),
        }
    }
}

/// Waits until `GET http://<addr>/readyz` answers 200, or panics after [`READY`]: for
/// a service in another process, as for one [`spawn`]ed here.
pub async fn wait_ready(addr: SocketAddr) {
    poll_ready(&reqwest::Client::new(), addr, READY).await;
}

async fn poll_ready(http: &reqwest::Client, addr: SocketAddr, timeout: Duration) {
    let what = format!("{addr} ready");
    crate::eventually(timeout, &what, || async {
        (readyz(http, addr).await == 200).then_some(())
    })
    .await;
}

async fn readyz(http: &reqwest::Client, addr: SocketAddr) -> u16 {
    match http.get(format!("http://{addr}/readyz")).send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}
