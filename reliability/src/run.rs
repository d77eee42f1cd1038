//! One scenario, start to verdict: the services up, clients joined, alerts posted while
//! the faults happen, the pipeline drained, then the state read and everything judged.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alert_core::{Event, Offset};
use alert_redis::{Keys, Store, StoreSettings};
use anyhow::{Context, bail};
use serde::Serialize;
use tokio::{process::Command, sync::watch};

use crate::{
    client::{self, Client, Spec},
    cluster::{Cluster, Role, Shape},
    endpoints::Endpoints,
    record::{Accepted, Applied, ClientKind, Recording, receives},
    scenario::{Fault, Scenario},
    source::{self, Plan},
    verdict::LOST,
    verdict::{Verdict, applications, judge, percentile},
};

const LOCATIONS: usize = 60;
/// After the last POST: the longest alert (8 s) plus time for retries and closes.
const DRAIN: Duration = Duration::from_secs(40);
const CATCH_UP: Duration = Duration::from_secs(20);
/// Nothing applied for this long, and no window open: the pipeline is done.
const STUCK: Duration = Duration::from_secs(5);

/// How to run: also `alert-chaos`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Where alert-listener, alert-processor and alert-notify are.
    #[arg(long, default_value = "target/release")]
    pub bin: PathBuf,
    /// Each run's logs go in a directory under this one (removed after a passing run
    /// unless `keep`).
    #[arg(long, default_value = "/tmp/alert-chaos")]
    pub dir: PathBuf,
    /// Keep the logs and the recording of passing runs too.
    #[arg(long)]
    pub keep: bool,
    /// Seeds the sources' plan and the clients' locations.
    #[arg(long, default_value_t = 12)]
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub at_s: f64,
    pub what: String,
    /// How long the step took (a start until ready, a shutdown until exit).
    pub took_ms: Option<u64>,
    pub error: Option<String>,
}

/// One process's footprint at one moment of a soak.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub at_s: f64,
    pub process: String,
    pub rss_kib: u64,
    pub open_files: u64,
}

/// The run's queue depth at one moment of a soak.
#[derive(Debug, Clone, Serialize)]
pub struct Backlog {
    pub at_s: f64,
    pub messages: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub about: String,
    /// The scenario's expectation met: a clean verdict, or the sabotage caught.
    pub passed: bool,
    /// `pass`, `FAIL`, `caught` (a sabotage), or `pass, policy loss` (a loss the
    /// configuration under test allows, reported rather than hidden).
    pub result: &'static str,
    pub problems: Vec<String>,
    pub verdict: Verdict,
    pub timeline: Vec<Step>,
    pub epochs: Vec<String>,
    /// Longest time a client was without a connection between two sessions.
    pub reconnect_gap_ms_max: u64,
    pub reconnect_gap_ms_p99: u64,
    /// WARN/ERROR lines each service logged.
    pub warnings: Vec<(String, u64)>,
    pub seconds: f64,
    /// How long the sources took to post everything (longer than planned: the
    /// pipeline could not take the rate).
    pub posting_s: f64,
    pub logs: Option<PathBuf>,
    pub samples: Vec<Sample>,
    pub backlog: Vec<Backlog>,
}

pub async fn run(scenario: &Scenario, options: &Options) -> anyhow::Result<Outcome> {
    let run = format!(
        "{}-{}",
        scenario.name,
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let dir = options.dir.join(&run);
    let shape = Shape {
        listeners: 2,
        processors: 3,
        notify: 2,
        appendfsync: scenario.appendfsync,
    };
    let mut cluster = Cluster::start(&options.bin, &dir, &run, &shape)
        .await
        .with_context(|| format!("start the services (logs in {})", dir.display()))?;
    let began = Instant::now();
    let result = drive(scenario, options, &run, &mut cluster, began).await;
    let warnings = cluster.warnings();
    cluster.stop().await;
    let mut outcome = result?;
    outcome.warnings = warnings;
    outcome.seconds = began.elapsed().as_secs_f64();
    if outcome.passed && !options.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        outcome.logs = Some(dir);
    }
    Ok(outcome)
}

async fn drive(
    scenario: &Scenario,
    options: &Options,
    run: &str,
    cluster: &mut Cluster,
    began: Instant,
) -> anyhow::Result<Outcome> {
    let (stop, stopped) = watch::channel(false);
    let notify = cluster.addrs(Role::Notify);
    let service = Endpoints::probe(notify.clone());
    let clients = spawn_clients(scenario, &service, &stopped, began, options.seed);
    let dead: Vec<_> = (0..scenario.clients.dead)
        .map(|i| client::spawn_dead(notify[i % notify.len()], stopped.clone()))
        .collect();
    wait_joined(&clients).await?;

    let store = Store::connect(
        &cluster.redis.url(),
        Keys::new(cluster.prefix.clone()),
        StoreSettings::default(),
    )
    .await?;
    let epochs = Arc::new(Mutex::new(Vec::<String>::new()));
    let sampler = tokio::spawn(sample_epochs(
        store.clone(),
        epochs.clone(),
        stopped.clone(),
    ));

    let plan = Plan {
        seconds: scenario.seconds,
        rate: scenario.rate,
        locations: LOCATIONS,
        seed: options.seed,
    };
    let posting = began.elapsed();
    let mut sources = tokio::spawn(source::run(
        plan,
        run.to_owned(),
        Endpoints::probe(cluster.addrs(Role::Listener)),
    ));
    let mut timeline = Vec::new();
    for (at, fault) in &scenario.faults {
        tokio::time::sleep_until((began + posting + Duration::from_secs_f64(*at)).into()).await;
        apply(cluster, *fault, began + posting, &mut timeline).await;
    }
    let (mut samples, mut backlog) = (Vec::new(), Vec::new());
    let (posts, accepted, cancels) = if let Some(every) = scenario.sample_every {
        let mut ticks = tokio::time::interval(every);
        loop {
            tokio::select! {
                done = &mut sources => break done?,
                _ = ticks.tick() => {
                    let at_s = began.elapsed().as_secs_f64();
                    samples.extend(footprints(cluster, at_s));
                    backlog.push(Backlog { at_s, messages: queue_depth(&cluster.queue).await });
                }
            }
        }
    } else {
        sources.await?
    };
    let posting_s = (began.elapsed() - posting).as_secs_f64();
    cluster.all_ready(Duration::from_secs(30)).await?;

    // Drained: every accepted alert applied and every window closed; or no window open
    // and nothing applied for a while (what is missing then stays missing); or the
    // deadline.
    let mut locations: BTreeSet<String> = (0..LOCATIONS).map(source::location).collect();
    locations.extend(accepted.iter().flat_map(|a| a.locations.iter().cloned()));
    let deadline = Instant::now() + DRAIN;
    let (mut applied, mut progressed) = (0, Instant::now());
    loop {
        let open = store
            .active(None)
            .await
            .map(|w| w.len())
            .unwrap_or(usize::MAX);
        let (now_applied, all) = match read_history(&store, &locations).await {
            Ok(history) => applied_count(&history, &accepted),
            Err(_) => (applied, false),
        };
        if now_applied != applied {
            (applied, progressed) = (now_applied, Instant::now());
        }
        let stuck = progressed.elapsed() > STUCK;
        if (open == 0 && (all || stuck)) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = read_log(&store).await?;
    catch_up(&clients, &log).await;
    stop.send_replace(true);
    let mut records = Vec::new();
    for client in clients {
        records.push(client.task.await?);
    }
    let mut dead_closed = 0;
    for dead in dead {
        dead_closed += dead.await? as u64;
    }
    let _ = sampler.await;

    let history = read_history(&store, &locations).await?;
    let still_open = store
        .active(None)
        .await?
        .into_iter()
        .map(|w| w.location)
        .collect();
    let epochs = epochs.lock().unwrap().clone();
    let recording = Recording {
        accepted,
        cancels,
        posts,
        log,
        epochs: epochs.clone(),
        history,
        still_open,
        clients: records,
        dead_clients: scenario.clients.dead as u64,
        dead_clients_closed: dead_closed,
    };
    let verdict = judge(&recording);
    let mut problems: Vec<String> = timeline
        .iter()
        .filter_map(|s: &Step| s.error.as_ref().map(|e| format!("{}: {e}", s.what)))
        .collect();
    if scenario.no_5xx && verdict.posts.status_5xx > 0 {
        problems.push(format!(
            "{} 5xx answers during a rolling deploy",
            verdict.posts.status_5xx
        ));
    }
    let passed = match scenario.caught {
        None if scenario.policy_loss => {
            let only_lost = verdict.failures.iter().all(|f| f.contains(LOST));
            only_lost && problems.is_empty()
        }
        None => verdict.passed && problems.is_empty(),
        Some(what) => !verdict.passed && verdict.failures.iter().any(|f| f.contains(what)),
    };
    let result = match (passed, scenario.caught, verdict.alerts.lost) {
        (false, _, _) => "FAIL",
        (true, Some(_), _) => "caught",
        (true, None, 0) => "pass",
        (true, None, _) => "pass, policy loss",
    };
    // A soak's recording runs to gigabytes: kept only when asked for.
    if options.keep || (!passed && recording.log.len() < 500_000) {
        let json = serde_json::to_vec(&recording)?;
        std::fs::write(cluster.dir.join("recording.json"), json)?;
    }
    let (reconnect_gap_ms_max, reconnect_gap_ms_p99) = reconnect_gaps(&recording);
    Ok(Outcome {
        scenario: scenario.name.to_owned(),
        about: scenario.about.to_owned(),
        passed,
        result,
        problems,
        verdict,
        timeline,
        epochs,
        reconnect_gap_ms_max,
        reconnect_gap_ms_p99,
        warnings: Vec::new(),
        seconds: 0.0,
        posting_s,
        logs: None,
        samples,
        backlog,
    })
}

fn spawn_clients(
    scenario: &Scenario,
    notify: &Endpoints,
    stopped: &watch::Receiver<bool>,
    began: Instant,
    seed: u64,
) -> Vec<Client> {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    let mix = scenario.clients;
    let kinds = [
        (ClientKind::SocketIo, mix.socketio),
        (ClientKind::Sse, mix.sse),
        (ClientKind::Slow, mix.slow),
    ];
    let mut clients = Vec::new();
    for (kind, count) in kinds {
        for i in 0..count {
            // A quarter take everything (subscribed to nothing), the rest three
            // locations; slow readers take everything, so that they fall behind.
            let locations = (kind != ClientKind::Slow && i % 4 != 0).then(|| {
                (0..3)
                    .map(|_| source::location(rng.usize(..LOCATIONS)))
                    .collect()
            });
            let spec = Spec {
                name: format!("{kind:?}-{i}").to_lowercase(),
                kind,
                locations,
                home: i % notify.len(),
            };
            clients.push(client::spawn(spec, notify.clone(), stopped.clone(), began));
        }
    }
    clients
}

async fn wait_joined(clients: &[Client]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while clients.iter().any(|c| !c.progress.lock().unwrap().joined) {
        if Instant::now() > deadline {
            bail!("clients did not all join within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn sample_epochs(
    store: Store,
    epochs: Arc<Mutex<Vec<String>>>,
    mut stopped: watch::Receiver<bool>,
) {
    while !*stopped.borrow() {
        if let Ok(Ok(Some(epoch))) =
            tokio::time::timeout(Duration::from_millis(500), store.epoch()).await
        {
            let mut epochs = epochs.lock().unwrap();
            if epochs.last() != Some(&epoch) {
                epochs.push(epoch);
            }
        }
        tokio::select! {
            _ = stopped.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Every history of `locations` that has entries, newest first.
async fn read_history(
    store: &Store,
    locations: &BTreeSet<String>,
) -> anyhow::Result<BTreeMap<String, Vec<Applied>>> {
    let mut history = BTreeMap::new();
    for location in locations {
        let entries = store.history(location, 1_000_000).await?;
        let applied: Vec<Applied> = entries
            .into_iter()
            .map(|entry| Applied {
                alert_id: entry.alert_id,
                change: serde_json::to_value(entry.change)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            })
            .collect();
        if !applied.is_empty() {
            history.insert(location.clone(), applied);
        }
    }
    Ok(history)
}

/// How many accepted (alert, location) pairs `history` holds, and whether that is all.
fn applied_count(history: &BTreeMap<String, Vec<Applied>>, accepted: &[Accepted]) -> (usize, bool) {
    let applications = applications(history);
    let pairs = accepted
        .iter()
        .flat_map(|alert| alert.locations.iter().map(|l| (l.as_str(), alert.id)));
    let (mut expected, mut applied) = (0, 0);
    for pair in pairs {
        expected += 1;
        applied += applications.contains_key(&pair) as usize;
    }
    (applied, applied == expected)
}

async fn read_log(store: &Store) -> anyhow::Result<Vec<Event>> {
    let mut log = Vec::new();
    let mut after = Offset::START;
    loop {
        let page = store.events_after(after, 5000).await?;
        let Some(last) = page.last() else {
            return Ok(log);
        };
        after = last.offset;
        log.extend(page);
    }
}

/// Waits (bounded) until each client has the last event of its locations.
async fn catch_up(clients: &[Client], log: &[Event]) {
    let deadline = Instant::now() + CATCH_UP;
    for client in clients {
        let target = log
            .iter()
            .rev()
            .find(|e| receives(client.spec.locations.as_ref(), &e.location))
            .map(|e| e.offset);
        let Some(target) = target else {
            continue;
        };
        while client.progress.lock().unwrap().offset < Some(target) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn reconnect_gaps(recording: &Recording) -> (u64, u64) {
    let mut gaps: Vec<u64> = recording
        .clients
        .iter()
        .flat_map(|c| {
            c.sessions
                .windows(2)
                .map(|w| w[1].at_ms.saturating_sub(w[0].ended_ms))
        })
        .collect();
    gaps.sort_unstable();
    (gaps.last().copied().unwrap_or(0), percentile(&gaps, 0.99))
}

/// Resident memory and open files of every process, from /proc.
fn footprints(cluster: &Cluster, at_s: f64) -> Vec<Sample> {
    cluster
        .pids()
        .into_iter()
        .map(|(process, pid)| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let rss_kib = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0);
            let open_files = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| d.count() as u64)
                .unwrap_or(0);
            Sample {
                at_s,
                process,
                rss_kib,
                open_files,
            }
        })
        .collect()
}

/// Messages in the run's queue (ready and unacked), from `rabbitmqctl`.
async fn queue_depth(queue: &str) -> Option<u64> {
    let output = Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "messages"])
        .output()
        .await
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            let (name, messages) = line.split_once('\t')?;
            (name == queue).then(|| messages.trim().parse().ok())?
        })
}

async fn rabbitmqctl(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .status()
        .await?;
    if !status.success() {
        bail!("rabbitmqctl {} failed: {status}", args.join(" "));
    }
    Ok(())
}

async fn apply(cluster: &mut Cluster, fault: Fault, zero: Instant, timeline: &mut Vec<Step>) {
    let mut step = |what: String, result: anyhow::Result<Option<Duration>>| {
        let (took, error) = match result {
            Ok(took) => (took, None),
            Err(error) => (None, Some(format!("{error:#}"))),
        };
        // When the step began: it has just ended, `took` after.
        let at_s = (zero.elapsed() - took.unwrap_or_default()).as_secs_f64();
        let took_ms = took.map(|t| t.as_millis() as u64);
        timeline.push(Step {
            at_s,
            what,
            took_ms,
            error,
        });
    };
    match fault {
        Fault::Kill(role, index) => {
            let result = cluster.kill(role, index).await.map(|_| None);
            step(format!("kill -9 {role}-{index}"), result);
        }
        Fault::Start(role, index) => {
            let result = cluster.restart(role, index).await.map(Some);
            step(format!("start {role}-{index} (until ready)"), result);
        }
        Fault::Rolling => {
            let order: Vec<(Role, usize)> =
                cluster.services.iter().map(|s| (s.role, s.index)).collect();
            for (role, index) in order {
                // A deploy replaces one pod at a time, a little apart.
                tokio::time::sleep(Duration::from_secs(2)).await;
                let result = cluster.redeploy(role, index).await;
                let took = result
                    .as_ref()
                    .ok()
                    .map(|(stopped, ready)| *stopped + *ready);
                step(
                    format!("SIGTERM {role}-{index}, replaced"),
                    result.map(|_| took),
                );
            }
        }
        Fault::BrokerStop => {
            eprintln!(
                "alert-chaos: STOPPING THE MACHINE'S RABBITMQ (rabbitmqctl stop_app); this run owns only its queue {}, but every client of the broker sees the outage",
                cluster.queue
            );
            step(
                "rabbitmqctl stop_app".into(),
                rabbitmqctl(&["stop_app"]).await.map(|_| None),
            );
        }
        Fault::BrokerStart => {
            let began = Instant::now();
            let result = async {
                rabbitmqctl(&["start_app"]).await?;
                rabbitmqctl(&["await_startup"]).await
            }
            .await;
            step(
                "rabbitmqctl start_app".into(),
                result.map(|_| Some(began.elapsed())),
            );
            eprintln!("alert-chaos: RabbitMQ started again");
        }
        Fault::Network(links, condition) => {
            let changed = cluster.degrade(links, condition);
            step(
                format!("{links:?} links {condition:?} ({changed})"),
                Ok(None),
            );
        }
        Fault::RedisKill => {
            cluster.kill_redis().await;
            step("kill -9 redis".into(), Ok(None));
        }
        Fault::RedisPowerLoss => {
            let result = cluster.power_loss(Duration::from_secs(1)).await;
            let what = match &result {
                Ok(bytes) => format!("kill -9 redis, last 1 s of AOF lost ({bytes} bytes)"),
                Err(_) => "kill -9 redis, last 1 s of AOF lost".to_owned(),
            };
            step(what, result.map(|_| None));
        }
        Fault::RedisStart => {
            let result = cluster.start_redis().await.map(Some);
            step("start redis (until PONG)".into(), result);
        }
        Fault::PurgeQueue => {
            let queue = cluster.queue.clone();
            let result = rabbitmqctl(&["purge_queue", &queue]).await.map(|_| None);
            step(format!("sabotage: purge queue {queue}"), result);
        }
    }
}
