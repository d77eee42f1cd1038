//! `alert-fuzz`: bad input at scale over every public input of the broadcaster
//! (issue 12, section 5).
//!
//! # Layout
//! - [`synth`]: seeded choices, `arbitrary`, dictionaries and mutators; [`corpus`]: the
//!   seeds in `fuzz/corpus/<kind>/`.
//! - [`targets`]: one module per input: core's parsers, `POST /api/alerts`
//!   (in-process, loopback, raw bytes), notify's SSE/REST, Socket.IO over WebSocket,
//!   Engine.IO polling. Each generates cases and judges the answers.
//! - [`stack`]: what the cases run against (in-process routers, and the real listener,
//!   processor and notify on loopback with RabbitMQ and Redis).
//! - [`run`]: the bounded run (`--inputs`, `--seconds`), every case under a timeout,
//!   failures written to `--out` as JSON that [`replay`] runs again; after the run,
//!   [`check::good_input`] shows the services still answer good input.
//!
//! The oracle: no panic anywhere in the process (a panic hook counts them), no hang
//! (a case's every wait is bounded), no 5xx. 503 is in the contract only while a
//! backend is away; they are all up during a run, so a 503 fails too.

pub mod case;
pub mod check;
pub mod corpus;
pub mod http1;
pub mod stack;
pub mod synth;
pub mod targets;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

pub use case::Case;
pub use targets::Target;

/// A bounded run.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    /// Stop after this many inputs in all (split by [`Target::input_share`]).
    pub inputs: Option<u64>,
    /// Stop after this long in all (split by [`Target::time_share`]).
    pub seconds: Option<f64>,
    pub targets: Vec<Target>,
    pub out: PathBuf,
    /// Bound of each wait of a case.
    pub timeout: Duration,
    pub corpus: PathBuf,
}

impl Options {
    pub fn new(seed: u64, out: impl Into<PathBuf>) -> Options {
        Options {
            seed,
            inputs: None,
            seconds: None,
            targets: Target::ALL.to_vec(),
            out: out.into(),
            timeout: Duration::from_secs(2),
            corpus: corpus::default_dir(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub target: Target,
    pub inputs: u64,
    pub seconds: f64,
    pub outcomes: BTreeMap<String, u64>,
    pub failures: u64,
    /// The longest case: its duration in ms and its index (to regenerate it).
    pub slowest: (f64, u64),
}

impl TargetReport {
    pub fn per_second(&self) -> f64 {
        self.inputs as f64 / self.seconds.max(1e-9)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub seed: u64,
    pub targets: Vec<TargetReport>,
    pub seconds: f64,
    pub failures: u64,
    /// Failure files written (at most [`FILES_PER_TARGET`] a target).
    pub failure_files: Vec<PathBuf>,
    /// Good input after the run: `Err` says what was not answered.
    pub good_input: Result<Vec<String>, String>,
}

impl Report {
    pub fn inputs(&self) -> u64 {
        self.targets.iter().map(|t| t.inputs).sum()
    }

    pub fn passed(&self) -> bool {
        self.failures == 0 && self.good_input.is_ok()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<12} {:>10} {:>8} {:>10} {:>8} {:>12}  outcomes\n",
            "target", "inputs", "seconds", "inputs/s", "failed", "slowest ms"
        ));
        for t in &self.targets {
            let mut outcomes: Vec<(&String, &u64)> = t.outcomes.iter().collect();
            outcomes.sort_by(|a, b| b.1.cmp(a.1));
            let shown: Vec<String> = outcomes
                .iter()
                .take(8)
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            out.push_str(&format!(
                "{:<12} {:>10} {:>8.1} {:>10.0} {:>8} {:>12}  {}\n",
                t.target.name(),
                t.inputs,
                t.seconds,
                t.per_second(),
                t.failures,
                format!("{:.0} #{}", t.slowest.0, t.slowest.1),
                shown.join(", ")
            ));
        }
        out.push_str(&format!(
            "{:<12} {:>10} {:>8.1} {:>10.0} {:>8}\n",
            "total",
            self.inputs(),
            self.seconds,
            self.inputs() as f64 / self.seconds.max(1e-9),
            self.failures
        ));
        match &self.good_input {
            Ok(checks) => out.push_str(&format!("good input afterwards: {}\n", checks.join("; "))),
            Err(error) => out.push_str(&format!("good input afterwards FAILED: {error}\n")),
        }
        for file in &self.failure_files {
            out.push_str(&format!("failure: {}\n", file.display()));
        }
        out
    }
}

pub const FILES_PER_TARGET: u64 = 20;

/// What a failure file holds: the case, and what happened.
#[derive(Debug, Serialize, Deserialize)]
pub struct FailureFile {
    pub target: Target,
    pub seed: u64,
    pub index: u64,
    pub what: String,
    pub case: Case,
}

static PANICS: AtomicU64 = AtomicU64::new(0);
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

/// Counts every panic in the process, and keeps the last one's text and place, quietly
/// (a million inputs must not print a million backtraces).
pub fn install_panic_hook() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        std::panic::set_hook(Box::new(|info| {
            let text = match info.payload().downcast_ref::<&str>() {
                Some(s) => (*s).to_owned(),
                None => info
                    .payload()
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_default(),
            };
            let place = info.location().map(|l| l.to_string()).unwrap_or_default();
            let thread = std::thread::current().name().unwrap_or("?").to_owned();
            if let Ok(mut last) = LAST_PANIC.lock() {
                *last = format!("{text} at {place} (thread {thread})");
            }
            PANICS.fetch_add(1, Ordering::SeqCst);
        }));
    });
}

pub fn panics() -> u64 {
    PANICS.load(Ordering::SeqCst)
}

fn last_panic() -> String {
    LAST_PANIC.lock().map(|l| l.clone()).unwrap_or_default()
}

/// The text of a task's panic.
pub(crate) fn panic_text(join: tokio::task::JoinError) -> String {
    let payload = join.into_panic();
    match payload.downcast_ref::<&str>() {
        Some(s) => (*s).to_owned(),
        None => payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(last_panic),
    }
}

/// Runs the cases of every selected target, one target after the other, each with
/// its share of the bounds; writes failures to `options.out`.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    install_panic_hook();
    std::fs::create_dir_all(&options.out)?;
    let corpus = corpus::Corpus::load(&options.corpus)?;
    let services = options.targets.iter().any(|t| t.needs_services());
    let stack = Arc::new(stack::Stack::start(services).await?);
    let (epoch, offsets) = match &stack.services {
        Some(services) => services.positions().await?,
        None => (None, Vec::new()),
    };
    let now =
        chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() / 60 * 60, 0).expect("now");
    let ctx = Arc::new(synth::Context {
        now,
        epoch,
        offsets,
        api_key: stack.api_key.clone(),
        corpus,
    });
    let inputs = match (options.inputs, options.seconds) {
        (None, None) => Some(10_000),
        (inputs, _) => inputs,
    };
    let input_shares: f64 = options.targets.iter().map(|t| t.input_share()).sum();
    let time_shares: f64 = options.targets.iter().map(|t| t.time_share()).sum();
    let started = Instant::now();
    let mut reports = Vec::new();
    let mut files = Vec::new();
    for &target in &options.targets {
        let quota = inputs.map(|n| (n as f64 * target.input_share() / input_shares).ceil() as u64);
        let time = options
            .seconds
            .map(|s| Duration::from_secs_f64(s * target.time_share() / time_shares));
        let (report, written) = run_target(&stack, &ctx, options, target, quota, time).await?;
        files.extend(written);
        reports.push(report);
    }
    let seconds = started.elapsed().as_secs_f64();
    let good_input = check::good_input(&stack, options.timeout).await;
    let stack = Arc::into_inner(stack).expect("workers are done");
    stack.stop().await?;
    let failures = reports.iter().map(|r| r.failures).sum();
    Ok(Report {
        seed: options.seed,
        targets: reports,
        seconds,
        failures,
        failure_files: files,
        good_input,
    })
}

struct Tally {
    outcomes: Mutex<BTreeMap<String, u64>>,
    failures: AtomicU64,
    files: Mutex<Vec<PathBuf>>,
    slowest: Mutex<(Duration, u64)>,
}

async fn run_target(
    stack: &Arc<stack::Stack>,
    ctx: &Arc<synth::Context>,
    options: &Options,
    target: Target,
    quota: Option<u64>,
    time: Option<Duration>,
) -> anyhow::Result<(TargetReport, Vec<PathBuf>)> {
    let started = Instant::now();
    let deadline = time.map(|t| started + t);
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally {
        outcomes: Mutex::new(BTreeMap::new()),
        failures: AtomicU64::new(0),
        files: Mutex::new(Vec::new()),
        slowest: Mutex::new((Duration::ZERO, 0)),
    });
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..target.concurrency() {
        let (stack, ctx, next, stop, tally) = (
            stack.clone(),
            ctx.clone(),
            next.clone(),
            stop.clone(),
            tally.clone(),
        );
        let (seed, timeout, out) = (options.seed, options.timeout, options.out.clone());
        workers.spawn(async move {
            let mut worker = targets::Worker::default();
            loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                if quota.is_some_and(|q| index >= q)
                    || deadline.is_some_and(|d| Instant::now() >= d)
                    || stop.load(Ordering::SeqCst)
                {
                    next.fetch_sub(1, Ordering::SeqCst);
                    break;
                }
                let mut g = synth::Gen::for_case(seed, target.name(), index);
                let case = target.generate(&mut g, &ctx);
                let began = Instant::now();
                let verdict = judge(&stack, &case, &mut worker, timeout).await;
                let took = began.elapsed();
                {
                    let mut slowest = tally.slowest.lock().expect("tally");
                    if took > slowest.0 {
                        *slowest = (took, index);
                    }
                }
                match verdict {
                    Ok(outcome) => {
                        *tally
                            .outcomes
                            .lock()
                            .expect("tally")
                            .entry(outcome)
                            .or_default() += 1;
                    }
                    Err(what) => {
                        let n = tally.failures.fetch_add(1, Ordering::SeqCst);
                        *tally
                            .outcomes
                            .lock()
                            .expect("tally")
                            .entry("FAILED".into())
                            .or_default() += 1;
                        if what.starts_with("hang") && target == Target::Parse {
                            // A parser stuck on a blocking thread keeps a core: stop here.
                            stop.store(true, Ordering::SeqCst);
                        }
                        if n < FILES_PER_TARGET {
                            let file = FailureFile {
                                target,
                                seed,
                                index,
                                what,
                                case,
                            };
                            match write_failure(&out, &file) {
                                Ok(path) => tally.files.lock().expect("tally").push(path),
                                Err(error) => eprintln!("cannot write a failure file: {error}"),
                            }
                        }
                    }
                }
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done?;
    }
    let inputs = next.load(Ordering::SeqCst);
    let tally = Arc::into_inner(tally).expect("workers are done");
    let (took, index) = tally.slowest.into_inner().expect("tally");
    let report = TargetReport {
        slowest: (took.as_secs_f64() * 1000.0, index),
        target,
        inputs,
        seconds: started.elapsed().as_secs_f64(),
        outcomes: tally.outcomes.into_inner().expect("tally"),
        failures: tally.failures.load(Ordering::SeqCst),
    };
    Ok((report, tally.files.into_inner().expect("tally")))
}

/// Runs one case and judges it, counting any panic anywhere in the process meanwhile
/// as the case's (cases of a target run concurrently: a replay tells which it was).
pub async fn judge(
    stack: &stack::Stack,
    case: &Case,
    worker: &mut targets::Worker,
    timeout: Duration,
) -> targets::Verdict {
    let before = panics();
    // Each wait inside is bounded by `timeout`; this bounds the whole session too.
    let guard = timeout * 8;
    let verdict =
        match tokio::time::timeout(guard, targets::execute(stack, case, worker, timeout)).await {
            Ok(verdict) => verdict,
            Err(_) => Err(format!("hang: the case took over {guard:?}")),
        };
    if panics() != before {
        return Err(format!("panic while this case ran: {}", last_panic()));
    }
    verdict
}

fn write_failure(dir: &Path, file: &FailureFile) -> std::io::Result<PathBuf> {
    let path = dir.join(format!(
        "{}-{}-{}.json",
        file.target.name(),
        file.seed,
        file.index
    ));
    std::fs::write(&path, serde_json::to_vec_pretty(file)?)?;
    Ok(path)
}

/// The case `index` of `target` with `seed`, as a run starting now would generate it
/// (without the epoch and offsets of a running stack).
pub fn generate(target: Target, seed: u64, index: u64, corpus: &Path) -> anyhow::Result<Case> {
    let ctx = synth::Context {
        now: chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() / 60 * 60, 0)
            .expect("now"),
        epoch: None,
        offsets: Vec::new(),
        api_key: stack::API_KEY.to_owned(),
        corpus: corpus::Corpus::load(corpus)?,
    };
    let mut g = synth::Gen::for_case(seed, target.name(), index);
    Ok(target.generate(&mut g, &ctx))
}

/// Runs the case of a failure file again; `Err` if it still fails.
pub async fn replay(path: &Path, timeout: Duration) -> anyhow::Result<targets::Verdict> {
    install_panic_hook();
    let file: FailureFile = serde_json::from_slice(&std::fs::read(path)?)?;
    let stack = stack::Stack::start(file.case.target().needs_services()).await?;
    let mut worker = targets::Worker::default();
    let verdict = judge(&stack, &file.case, &mut worker, timeout).await;
    stack.stop().await?;
    Ok(verdict)
}
