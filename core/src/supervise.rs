//! Supervision: a process is alive only while everything it started is.
//!
//! Each service's `run` spawns its servers and workers (HTTP servers, the AMQP
//! consumer, the live feed, the close timer, the journal) on a [`Supervisor`]. Each
//! task runs until shutdown: one that ends first, returns an error or panics ends the
//! whole run with a [`TaskFailed`] naming it, and the other tasks are aborted, like a
//! `kill -9` (which every part is built to survive). Kubernetes restarts a dead pod;
//! it cannot restart a half-alive one.
//!
//! [`Serving`] is what `/readyz` adds to a service's own checks: it turns false as
//! soon as any supervised task has ended or shutdown has begun.
//!
//! The rest is for `main.rs`: [`parse`] (configuration errors in one line, exit 2),
//! [`bind`] (the error names the address and its setting) and [`exit`] (logs why in
//! one line, exit 1).

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::Request, http::StatusCode, middleware::Next, response::IntoResponse};
use tokio::{
    sync::watch,
    task::{Id, JoinError, JoinSet},
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a supervised task ended the run.
#[derive(Debug, thiserror::Error)]
pub enum TaskFailed {
    /// The task returned an error: its message says what to fix (a port, a path, a
    /// dependency); the pod restarts.
    #[error("{task} failed: {error}")]
    Failed { task: &'static str, error: BoxError },
    /// The task returned before shutdown, although it should run until then: a
    /// dependency closed for good, or a bug. The pod restarts.
    #[error("{task} stopped unexpectedly")]
    Ended { task: &'static str },
    /// A bug: report it with the message.
    #[error("{task} panicked: {message}")]
    Panicked { task: &'static str, message: String },
}

impl From<TaskFailed> for std::io::Error {
    fn from(failed: TaskFailed) -> Self {
        std::io::Error::other(failed)
    }
}

/// What a supervised task may return: nothing, or a `Result`.
pub trait TaskOutput: Send + 'static {
    fn into_result(self) -> Result<(), BoxError>;
}

impl TaskOutput for () {
    fn into_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError> + Send + 'static> TaskOutput for Result<(), E> {
    fn into_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}

/// True while every supervised task runs and shutdown has not begun; shared by
/// nested supervisors (standalone's clients server inside its process).
#[derive(Debug, Clone)]
pub struct Serving(Arc<AtomicBool>);

impl Default for Serving {
    fn default() -> Self {
        Serving(Arc::new(AtomicBool::new(true)))
    }
}

impl Serving {
    pub fn is_serving(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn down(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    /// `router` with its `/readyz` answering 503 whenever this is false, whatever
    /// the service's own checks say.
    pub fn gate(&self, router: Router) -> Router {
        let serving = self.clone();
        router.layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let serving = serving.is_serving();
                async move {
                    if request.uri().path() == "/readyz" && !serving {
                        return (StatusCode::SERVICE_UNAVAILABLE, "not serving").into_response();
                    }
                    next.run(request).await
                }
            },
        ))
    }
}

/// Marks the process not serving when a task ends, however it ends (returned,
/// panicked, aborted), before the supervisor even looks.
struct Down(Serving);

impl Drop for Down {
    fn drop(&mut self) {
        self.0.down();
    }
}

/// Named tasks that must all run until shutdown. Dropping it aborts them.
///
/// Tasks stop on [`Supervisor::stop_signal`] or [`Supervisor::stopping`] (or on
/// something that follows them), never on the shutdown future itself: a task that
/// ended before the supervisor saw the shutdown would count as a failure.
pub struct Supervisor {
    tasks: JoinSet<Result<(), BoxError>>,
    names: HashMap<Id, &'static str>,
    serving: Serving,
    stop: watch::Sender<bool>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::within(Serving::default())
    }
}

impl Supervisor {
    pub fn new() -> Self {
        Supervisor::default()
    }

    /// A supervisor whose tasks count for `serving` too (a part of a larger process).
    pub fn within(serving: Serving) -> Self {
        Supervisor {
            tasks: JoinSet::new(),
            names: HashMap::new(),
            serving,
            stop: watch::channel(false).0,
        }
    }

    pub fn serving(&self) -> Serving {
        self.serving.clone()
    }

    /// Turns true when shutdown begins: the tasks' own stop signal.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Completes when shutdown begins (for `shutdown::serve` and the like).
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.stop_signal();
        async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        }
    }

    /// Starts `task`, named `name` in logs and errors ("clients HTTP server").
    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput,
    {
        let down = Down(self.serving.clone());
        let handle = self.tasks.spawn(async move {
            let _down = down;
            task.await.into_result()
        });
        self.names.insert(handle.id(), name);
    }

    /// Runs until `shutdown` completes, then signals the tasks to stop and waits for
    /// all of them (the first failure among them is returned). A task that ends before
    /// `shutdown` ends the run at once with an error naming it; the others are aborted.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), TaskFailed> {
        let early = tokio::select! {
            () = shutdown => None,
            Some(ended) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => Some(ended),
        };
        if let Some(ended) = early {
            // Ending first is a failure, even with `Ok`.
            return Err(self
                .outcome(ended)
                .map_or_else(|failed| failed, |task| TaskFailed::Ended { task }));
        }
        self.serving.down();
        self.stop.send_replace(true);
        let mut first = None;
        while let Some(ended) = self.tasks.join_next_with_id().await {
            if let Err(failed) = self.outcome(ended) {
                first.get_or_insert(failed);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// How a task ended: its name if it returned `Ok`, else why it failed.
    fn outcome(
        &self,
        ended: Result<(Id, Result<(), BoxError>), JoinError>,
    ) -> Result<&'static str, TaskFailed> {
        let name = |id: Id| self.names.get(&id).copied().unwrap_or("a task");
        match ended {
            Ok((id, Ok(()))) => Ok(name(id)),
            Ok((id, Err(error))) => Err(TaskFailed::Failed {
                task: name(id),
                error,
            }),
            Err(error) => {
                let task = name(error.id());
                let message = match error.try_into_panic() {
                    Ok(panic) => panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default(),
                    Err(_) => "cancelled".to_owned(),
                };
                Err(TaskFailed::Panicked { task, message })
            }
        }
    }
}

/// Why `main` could not take its listening socket.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({setting}): {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub setting: &'static str,
    pub source: std::io::Error,
}

/// Binds `addr`, the value of the setting `setting` (e.g. `LISTEN_ADDR`).
pub async fn bind(
    setting: &'static str,
    addr: SocketAddr,
) -> Result<tokio::net::TcpListener, BindError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| BindError {
            addr,
            setting,
            source,
        })
}

/// Parses the command line and environment. A bad value is one line on stderr (which
/// setting, what is wrong) and exit code 2; `--help` and `--version` print as usual.
pub fn parse<C: clap::Parser>() -> C {
    C::try_parse().unwrap_or_else(|error| {
        if !error.use_stderr() {
            error.exit();
        }
        let text = error.render().to_string();
        eprintln!("{}", text.lines().next().unwrap_or("invalid configuration"));
        std::process::exit(2)
    })
}

/// Settings clap cannot check alone (they depend on each other) are refused as clap
/// refuses one: one line on stderr, exit code 2.
pub fn check_settings<E: std::fmt::Display>(checked: Result<(), E>) {
    if let Err(error) = checked {
        eprintln!("error: {error}");
        std::process::exit(2)
    }
}

/// The end of `main`: on error, logs it in one line and exits with code 1 at once,
/// without waiting for anything still running.
pub fn exit<E: std::fmt::Display>(result: Result<(), E>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Every error of a run says its causes in its own message.
            tracing::error!("{error}");
            use std::io::Write;
            let _ = std::io::stdout().flush();
            std::process::exit(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forever() -> impl Future<Output = ()> {
        std::future::pending()
    }

    #[tokio::test]
    async fn a_task_that_returns_early_ends_the_run_naming_it() {
        let mut tasks = Supervisor::new();
        let serving = tasks.serving();
        tasks.spawn("HTTP server", forever());
        tasks.spawn("live feed", async {});
        let failed = tasks.run(forever()).await.unwrap_err();
        assert!(matches!(failed, TaskFailed::Ended { task: "live feed" }));
        assert_eq!(failed.to_string(), "live feed stopped unexpectedly");
        assert!(!serving.is_serving());
    }

    #[tokio::test]
    async fn an_error_or_a_panic_names_the_task_and_says_why() {
        let mut tasks = Supervisor::new();
        tasks.spawn("journal", async {
            Err::<(), _>(std::io::Error::other("disk full"))
        });
        let failed = tasks.run(forever()).await.unwrap_err();
        assert_eq!(failed.to_string(), "journal failed: disk full");

        let mut tasks = Supervisor::new();
        tasks.spawn("closer", async {
            if true {
                panic!("bad window");
            }
        });
        let failed = tasks.run(forever()).await.unwrap_err();
        assert_eq!(failed.to_string(), "closer panicked: bad window");
    }

    #[tokio::test]
    async fn the_others_are_aborted_when_one_fails() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut tasks = Supervisor::new();
        tasks.spawn("holder", async move {
            let _tx = tx;
            forever().await
        });
        tasks.spawn("failing", async {});
        assert!(tasks.run(forever()).await.is_err());
        assert!(rx.recv().await.is_none(), "the holder was dropped");
    }

    #[tokio::test]
    async fn on_shutdown_every_task_is_told_and_awaited() {
        let mut tasks = Supervisor::new();
        let serving = tasks.serving();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let stopping = tasks.stopping();
        tasks.spawn("server", async move {
            stopping.await;
            let _ = done_tx.send(());
        });
        assert!(serving.is_serving());
        tasks.run(async {}).await.unwrap();
        assert!(done.await.is_ok(), "the server ran to its end");
        assert!(!serving.is_serving(), "not ready while shutting down");

        // A failure while draining is still reported.
        let mut tasks = Supervisor::new();
        let stopping = tasks.stopping();
        tasks.spawn("consumer", async move {
            stopping.await;
            Err::<(), _>("could not requeue")
        });
        let failed = tasks.run(async {}).await.unwrap_err();
        assert_eq!(failed.to_string(), "consumer failed: could not requeue");
    }

    #[tokio::test]
    async fn readyz_fails_once_a_task_has_ended() {
        use tower::ServiceExt;
        let serving = Serving::default();
        let router =
            serving.gate(Router::new().route("/readyz", axum::routing::get(|| async { "ready" })));
        let readyz = || {
            let router = router.clone();
            async move {
                let request = Request::get("/readyz")
                    .body(axum::body::Body::empty())
                    .unwrap();
                router.oneshot(request).await.unwrap().status()
            }
        };
        assert_eq!(readyz().await, StatusCode::OK);
        let mut tasks = Supervisor::within(serving.clone());
        tasks.spawn("server", async {});
        let _ = tasks.run(forever()).await;
        assert_eq!(readyz().await, StatusCode::SERVICE_UNAVAILABLE);
    }
}
