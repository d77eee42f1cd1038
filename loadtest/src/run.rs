//! The modes: connect clients, post, wait for deliveries, report.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::{
    sync::{Semaphore, watch},
    task::JoinHandle,
    time::Instant,
};

use crate::{
    cli::{
        Cli, ClientArgs, CloseLagArgs, FanoutArgs, IdleArgs, IngestArgs, MergeArgs, Mode, PostArgs,
        Subscribe, WireArgs,
    },
    client::{self, Counters, Role, Shared, Spec},
    eio::{self, Matcher},
    net::{self, SourceAddrs},
    post, procfs, report,
    stats::{self, Recorder, summary},
    wire,
};

pub(crate) async fn main(cli: Cli, nofile: u64) -> anyhow::Result<()> {
    stats::start_us();
    let limit = Duration::from_secs(cli.max_seconds);
    let out = cli.out.clone();
    let work = async move {
        match cli.mode {
            Mode::Ingest(args) => ingest(args, out).await,
            Mode::Fanout(args) => fanout(args, out, nofile).await,
            Mode::Idle(args) => idle(args, out, nofile).await,
            Mode::CloseLag(args) => close_lag(args, out, nofile).await,
            Mode::Wire(args) => wire(args, out, nofile).await,
            Mode::Merge(args) => merge(args, out),
        }
    };
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => bail!("the run exceeded --max-seconds {}", limit.as_secs()),
    }
}

fn default_out(out: Option<PathBuf>, mode: &str) -> PathBuf {
    out.unwrap_or_else(|| PathBuf::from(format!("loadtest/results/{mode}")))
}

fn random_run_id() -> u32 {
    (stats::now_us() % 1_000_000_000) as u32
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

fn post_url(args: &PostArgs) -> anyhow::Result<String> {
    net::loopback_url(&args.listener)?;
    Ok(format!(
        "{}/api/alerts",
        args.listener.trim_end_matches('/')
    ))
}

fn write_report(
    out: &Path,
    report: &Value,
    timeline: &[report::Second],
    title: &str,
    label: &str,
) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(report)?);
    for path in report::write(out, report, timeline, title, label)? {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn post_report(stats: &post::PostStats, elapsed: Duration, alerts_per_post: u64) -> Value {
    let accepted = stats.statuses.get("202").copied().unwrap_or(0);
    json!({
        "statuses": stats.statuses,
        "accepted_posts": accepted,
        "accepted_alerts_per_second": (accepted * alerts_per_post) as f64 / elapsed.as_secs_f64().max(1e-9),
        "late_sends": stats.late,
        "latency": summary(&stats.service),
        "latency_from_due_time": summary(&stats.from_due),
    })
}

// ---------------------------------------------------------------- ingest

async fn ingest(args: IngestArgs, out: Option<PathBuf>) -> anyhow::Result<()> {
    let url = post_url(&args.post)?;
    let run = random_run_id();
    let (batch, locations) = (args.batch, args.locations.max(1));
    let body: post::BodyFn = Arc::new(move |seq, now| {
        let one = |i: u64| {
            let n = seq * batch + i;
            post::alert_body(
                &format!("lt-{run}-i{}", n % locations),
                now,
                10,
                &eio::title(run, n, now),
            )
        };
        if batch == 1 {
            one(0)
        } else {
            format!("[{}]", (0..batch).map(one).collect::<Vec<_>>().join(","))
        }
    });
    let count = args
        .count
        .min((args.post.rate * args.duration as f64).ceil() as u64);
    let plan = post::Plan {
        url,
        rate: args.post.rate,
        count,
        deadline: Duration::from_secs(args.duration),
        connections: args.post.connections as usize,
    };
    let sent = Arc::new(AtomicU64::new(0));
    let progress = bar(count, "ingest [{bar:40}] {pos}/{len} POSTs {elapsed}");
    let ticker = tick(progress.clone(), Arc::clone(&sent));
    let started = Instant::now();
    let stats = post::run(plan, body, sent).await?;
    let elapsed = started.elapsed();
    ticker.abort();
    progress.finish_and_clear();
    let timeline = report::timeline(&stats.per_second);
    let report = json!({
        "mode": "ingest",
        "run": run,
        "config": {"listener": args.post.listener, "rate": args.post.rate, "connections": args.post.connections,
                   "duration_s": args.duration, "batch": batch},
        "elapsed_s": elapsed.as_secs_f64(),
        "posts": post_report(&stats, elapsed, batch),
        "timeline": timeline,
    });
    let out = default_out(out, "ingest");
    write_report(
        &out,
        &report,
        &timeline,
        "ingest: POST latency per second (ms) and POSTs/s",
        "POSTs/s",
    )
}

fn tick(progress: ProgressBar, counter: Arc<AtomicU64>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            progress.set_position(counter.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

// ---------------------------------------------------------------- clients

struct Clients {
    shared: &'static Shared,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    connect_seconds: f64,
}

impl Clients {
    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    fn counters(&self) -> &'static Counters {
        &self.shared.counters
    }
}

fn targets(args: &ClientArgs) -> anyhow::Result<Vec<SocketAddr>> {
    args.notify
        .iter()
        .map(|t| net::loopback_target(t))
        .collect()
}

/// Opens `args.clients` clients; client i gets `locations(i)`. Returns once every
/// client is ready or failed, or at the connect timeout.
async fn connect_clients(
    args: &ClientArgs,
    role: Role,
    run: u32,
    nofile: u64,
    subscribe_event: bool,
    locations: impl Fn(u64) -> Vec<String>,
) -> anyhow::Result<Clients> {
    let targets = targets(args)?;
    if args.clients + 64 > nofile {
        bail!(
            "{} clients need more open files than this process may have ({nofile}); use several processes",
            args.clients
        );
    }
    let shared: &'static Shared = Box::leak(Box::new(Shared {
        matcher: Matcher::new(run),
        role,
        counters: Counters::default(),
    }));
    let (stop, stop_rx) = watch::channel(false);
    let sources = SourceAddrs::new(args.source_addrs, args.first_source);
    let semaphore = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let progress = bar(
        args.clients,
        "connect [{bar:40}] {pos}/{len} clients {elapsed} {msg}",
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.connect_timeout);
    let mut tasks = Vec::with_capacity(args.clients as usize);
    let counters = &shared.counters;
    let token: Option<Arc<str>> = args.token.as_deref().map(Arc::from);
    for i in 0..args.clients {
        let permit = tokio::select! {
            permit = Arc::clone(&semaphore).acquire_owned() => permit?,
            _ = tokio::time::sleep_until(deadline) => break,
        };
        let spec = Spec {
            target: targets[(i % targets.len() as u64) as usize],
            source: sources.get(i),
            locations: locations(i),
            subscribe_event,
            token: token.clone(),
        };
        let seed = (i as u32).wrapping_mul(2_654_435_761) | 1;
        tasks.push(tokio::spawn(client::run(
            spec,
            shared,
            stop_rx.clone(),
            permit,
            seed,
        )));
        if i % 256 == 0 {
            progress.set_position(counters.connected.load(Ordering::Relaxed));
        }
    }
    loop {
        let connected = counters.connected.load(Ordering::Relaxed);
        let failed = counters.failed.load(Ordering::Relaxed);
        progress.set_position(connected);
        progress.set_message(format!("{failed} failed"));
        if connected + failed >= tasks.len() as u64 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    progress.finish_and_clear();
    let connect_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{} of {} clients connected in {connect_seconds:.1} s ({} failed)",
        counters.connected.load(Ordering::Relaxed),
        args.clients,
        counters.failed.load(Ordering::Relaxed),
    );
    Ok(Clients {
        shared,
        stop,
        tasks,
        connect_seconds,
    })
}

fn client_report(clients: &Clients, args: &ClientArgs) -> Value {
    let c = clients.counters();
    json!({
        "requested": args.clients,
        "connected_at_end": c.connected.load(Ordering::Relaxed),
        "failed": c.failed.load(Ordering::Relaxed),
        "dropped_by_server": c.dropped.load(Ordering::Relaxed),
        "pings_answered": c.pings.load(Ordering::Relaxed),
        "connect_seconds": clients.connect_seconds,
        "notify": args.notify,
        "source_addrs": args.source_addrs,
        "client_rss_bytes": procfs::rss_bytes(std::process::id()),
    })
}

fn touch(path: &Option<PathBuf>) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(path, b"ready\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Waits until `unique` reaches `expected` or `until`, with a progress bar.
async fn await_deliveries(expected: impl Fn() -> u64, until: Instant, label: &str) {
    let progress = bar(
        expected(),
        &format!("{label} [{{bar:40}}] {{pos}}/{{len}} {{per_sec}} {{elapsed}}"),
    );
    loop {
        let unique = stats::unique_so_far();
        let want = expected();
        progress.set_length(want);
        progress.set_position(unique);
        if (want > 0 && unique >= want) || Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    progress.finish_and_clear();
}

// ---------------------------------------------------------------- fanout

async fn fanout(args: FanoutArgs, out: Option<PathBuf>, nofile: u64) -> anyhow::Result<()> {
    let run = args.run_id.unwrap_or_else(random_run_id);
    let subscribed = args.subscribe != Subscribe::None;
    let groups = if subscribed { args.groups.max(1) } else { 1 };
    let location = move |seq: u64| {
        if subscribed {
            format!("lt-{run}-g{}", seq % groups)
        } else {
            // A new location per broadcast: always an `open` event, whatever the order
            // the processor sees them in.
            format!("lt-{run}-b{seq}")
        }
    };
    let url = if args.no_post {
        None
    } else {
        Some(post_url(&args.post)?)
    };
    let clients = connect_clients(
        &args.clients,
        Role::Deliveries,
        run,
        nofile,
        args.subscribe == Subscribe::Event,
        |i| {
            if subscribed {
                vec![location(i % groups)]
            } else {
                Vec::new()
            }
        },
    )
    .await?;
    let ready = clients.counters().connected.load(Ordering::Relaxed);
    // Client i listens to group i % groups: how many of the ready ones per group.
    let ready_in_group = |g: u64| -> u64 {
        if !subscribed {
            return ready;
        }
        let n = args.clients.clients;
        let share = n / groups + u64::from(g < n % groups);
        share * ready / n.max(1)
    };
    touch(&args.ready_file)?;
    let started = Instant::now();
    let mut post_json = Value::Null;
    let accepted_by_group: Vec<u64>;
    if let Some(url) = url {
        wait_for_files(
            &args.wait_for,
            Duration::from_secs(args.clients.connect_timeout),
        )
        .await?;
        let alert_seconds = args.alert_seconds.max(1);
        let body: post::BodyFn = Arc::new(move |seq, now| {
            post::alert_body(
                &location(seq),
                now,
                alert_seconds,
                &eio::title(run, seq, now),
            )
        });
        let plan = post::Plan {
            url,
            rate: args.post.rate,
            count: args.broadcasts,
            deadline: Duration::from_secs_f64(
                args.broadcasts as f64 / args.post.rate.max(0.001) + 1.0,
            ),
            connections: args.post.connections as usize,
        };
        let sent = Arc::new(AtomicU64::new(0));
        let posting = tokio::spawn(post::run(plan, body, Arc::clone(&sent)));
        let expected_so_far = {
            let sent = Arc::clone(&sent);
            move || sent.load(Ordering::Relaxed) * ready / groups.max(1)
        };
        let progress_until = Instant::now() + Duration::from_secs(3600);
        let watcher = tokio::spawn(async move {
            await_deliveries(expected_so_far, progress_until, "deliveries").await;
        });
        let stats = posting.await??;
        let elapsed = started.elapsed();
        accepted_by_group = (0..groups)
            .map(|g| {
                stats
                    .accepted
                    .iter()
                    .filter(|&&seq| seq % groups == g)
                    .count() as u64
            })
            .collect();
        watcher.abort();
        post_json = post_report(&stats, elapsed, 1);
    } else {
        accepted_by_group = (0..groups)
            .map(|g| (0..args.broadcasts).filter(|seq| seq % groups == g).count() as u64)
            .collect();
    }
    let expected: u64 = (0..groups)
        .map(|g| accepted_by_group[g as usize] * ready_in_group(g))
        .sum();
    let wait = if args.no_post { args.wait } else { args.grace };
    await_deliveries(
        || expected,
        Instant::now() + Duration::from_secs(wait),
        "deliveries",
    )
    .await;
    let total_seconds = started.elapsed().as_secs_f64();
    let clients_json = client_report(&clients, &args.clients);
    clients.stop().await;
    let recorder = stats::collect();
    let report = fanout_report(FanoutFacts {
        run,
        config: json!({
            "clients": args.clients.clients, "notify": args.clients.notify, "rate": args.post.rate,
            "broadcasts": args.broadcasts, "subscribe": format!("{:?}", args.subscribe),
            "groups": groups, "no_post": args.no_post, "post_connections": args.post.connections,
        }),
        clients: clients_json,
        posts: post_json,
        ready,
        expected,
        seconds: total_seconds,
        recorder: &recorder,
    });
    let out = default_out(out, "fanout");
    let timeline = report::timeline(&recorder.per_second);
    write_report(
        &out,
        &report,
        &timeline,
        "fanout: POST -> client latency per second (ms) and deliveries/s",
        "deliveries/s",
    )
}

async fn wait_for_files(files: &[PathBuf], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !files.iter().all(|f| f.exists()) {
        if Instant::now() >= deadline {
            bail!("receivers not ready after {} s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

struct FanoutFacts<'a> {
    run: u32,
    config: Value,
    clients: Value,
    posts: Value,
    ready: u64,
    expected: u64,
    seconds: f64,
    recorder: &'a Recorder,
}

fn fanout_report(f: FanoutFacts<'_>) -> Value {
    let r = f.recorder;
    let mut last = stats::histogram(3);
    for seq in &r.per_seq {
        if seq.delivered > 0 {
            stats::record(&mut last, seq.last_us.max(1));
        }
    }
    let busiest = r.per_second.iter().map(Histogram::len).max().unwrap_or(0);
    let active = r.per_second.iter().filter(|h| !h.is_empty()).count().max(1);
    json!({
        "mode": "fanout",
        "run": f.run,
        "config": f.config,
        "clients": f.clients,
        "posts": f.posts,
        "ready_clients": f.ready,
        "expected": f.expected,
        "delivered": r.unique,
        "missing": f.expected.saturating_sub(r.unique),
        "duplicates": r.duplicates,
        "out_of_order_unchecked": r.out_of_window,
        "latency": summary(&r.latency),
        "last_client_per_broadcast": summary(&last),
        "deliveries_per_second_peak": busiest,
        "deliveries_per_second_mean_active": r.unique as f64 / active as f64,
        "seconds": f.seconds,
        "timeline": report::timeline(&r.per_second),
        "raw": {
            "latency": stats::encode(&r.latency),
            "per_second": r.per_second.iter().map(stats::encode).collect::<Vec<_>>(),
            "per_seq": r.per_seq.iter().map(|s| [s.delivered, s.last_us]).collect::<Vec<_>>(),
        },
    })
}

// ---------------------------------------------------------------- wire

async fn wire(args: WireArgs, out: Option<PathBuf>, nofile: u64) -> anyhow::Result<()> {
    let run = wire::run(&args, nofile).await?;
    let recorder = stats::collect();
    let mut report = fanout_report(FanoutFacts {
        run: 0,
        config: json!({
            "clients": args.clients, "rate": args.rate, "broadcasts": args.broadcasts,
            "bytes": args.bytes, "server_threads": args.server_threads,
        }),
        clients: json!({ "connected": args.clients }),
        posts: Value::Null,
        ready: args.clients,
        expected: run.expected,
        seconds: run.seconds,
        recorder: &recorder,
    });
    report["mode"] = json!("wire");
    report["cpu"] = run.cpu;
    let timeline = report::timeline(&recorder.per_second);
    write_report(
        &default_out(out, "wire"),
        &report,
        &timeline,
        "wire floor: send -> client latency per second (ms) and deliveries/s",
        "deliveries/s",
    )
}

// ---------------------------------------------------------------- merge

fn merge(args: MergeArgs, out: Option<PathBuf>) -> anyhow::Result<()> {
    let mut all = Recorder::default();
    let (mut expected, mut ready, mut seconds) = (0u64, 0u64, 0f64);
    let mut clients = Vec::new();
    let mut posts = Value::Null;
    let mut run = 0u32;
    for path in &args.reports {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let v: Value = serde_json::from_str(&text)?;
        let mut r = Recorder {
            latency: stats::decode(v["raw"]["latency"].as_str().context("raw.latency")?)?,
            ..Recorder::default()
        };
        for h in v["raw"]["per_second"]
            .as_array()
            .context("raw.per_second")?
        {
            r.per_second
                .push(stats::decode(h.as_str().unwrap_or_default())?);
        }
        for s in v["raw"]["per_seq"].as_array().context("raw.per_seq")? {
            r.per_seq.push(stats::SeqStat {
                delivered: s[0].as_u64().unwrap_or(0),
                last_us: s[1].as_u64().unwrap_or(0),
            });
        }
        r.unique = v["delivered"].as_u64().unwrap_or(0);
        r.duplicates = v["duplicates"].as_u64().unwrap_or(0);
        r.out_of_window = v["out_of_order_unchecked"].as_u64().unwrap_or(0);
        all.merge(&r);
        expected += v["expected"].as_u64().unwrap_or(0);
        ready += v["ready_clients"].as_u64().unwrap_or(0);
        seconds = seconds.max(v["seconds"].as_f64().unwrap_or(0.0));
        run = v["run"].as_u64().unwrap_or(0) as u32;
        clients.push(v["clients"].clone());
        if !v["posts"].is_null() {
            posts = v["posts"].clone();
        }
    }
    let report = fanout_report(FanoutFacts {
        run,
        config: json!({"merged": args.reports}),
        clients: Value::Array(clients),
        posts,
        ready,
        expected,
        seconds,
        recorder: &all,
    });
    let out = default_out(out, "fanout-merged");
    let timeline = report::timeline(&all.per_second);
    write_report(
        &out,
        &report,
        &timeline,
        "fanout (merged): POST -> client latency (ms) and deliveries/s",
        "deliveries/s",
    )
}

// ---------------------------------------------------------------- idle

async fn idle(args: IdleArgs, out: Option<PathBuf>, nofile: u64) -> anyhow::Result<()> {
    let rss = |pids: &[u32]| -> Option<u64> { pids.iter().map(|&p| procfs::rss_bytes(p)).sum() };
    let ticks = |pids: &[u32]| -> Option<u64> { pids.iter().map(|&p| procfs::cpu_ticks(p)).sum() };
    let before = rss(&args.server_pid);
    let clients =
        connect_clients(&args.clients, Role::Idle, 0, nofile, false, |_| Vec::new()).await?;
    touch(&args.ready_file)?;
    let ready = clients.counters().connected.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let after = rss(&args.server_pid);
    let (cpu_start, at_start) = (ticks(&args.server_pid), Instant::now());
    let progress = bar(args.hold, "hold [{bar:40}] {pos}/{len} s");
    for s in 0..args.hold {
        progress.set_position(s);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    progress.finish_and_clear();
    let (cpu_end, held) = (ticks(&args.server_pid), at_start.elapsed());
    let cpu_percent = match (cpu_start, cpu_end) {
        (Some(a), Some(b)) => {
            Some((b - a) as f64 / procfs::TICKS_PER_SECOND / held.as_secs_f64() * 100.0)
        }
        _ => None,
    };
    let per_connection = match (before, after) {
        (Some(b), Some(a)) if ready > 0 => Some((a.saturating_sub(b)) as f64 / ready as f64),
        _ => None,
    };
    let clients_json = client_report(&clients, &args.clients);
    let still = clients.counters().connected.load(Ordering::Relaxed);
    clients.stop().await;
    let report = json!({
        "mode": "idle",
        "config": {"clients": args.clients.clients, "hold_s": args.hold, "server_pids": args.server_pid},
        "clients": clients_json,
        "ready_clients": ready,
        "still_connected_after_hold": still,
        "server_rss_before_bytes": before,
        "server_rss_after_bytes": after,
        "server_bytes_per_connection": per_connection,
        "server_cpu_percent_of_one_core": cpu_percent,
        "client_bytes_per_connection": procfs::rss_bytes(std::process::id()).map(|b| b as f64 / ready.max(1) as f64),
    });
    let out = default_out(out, "idle");
    write_report(&out, &report, &[], "", "")
}

// ---------------------------------------------------------------- close lag

async fn close_lag(args: CloseLagArgs, out: Option<PathBuf>, nofile: u64) -> anyhow::Result<()> {
    let run = random_run_id();
    let url = post_url(&args.post)?;
    let clients = connect_clients(&args.clients, Role::CloseLag, run, nofile, false, |_| {
        Vec::new()
    })
    .await?;
    let ready = clients.counters().connected.load(Ordering::Relaxed);
    let max_seconds = args.max_alert_seconds;
    let body: post::BodyFn = Arc::new(move |seq, now| {
        post::alert_body(
            &format!("lt-{run}-c{seq}"),
            now,
            1 + seq % max_seconds,
            &eio::title(run, seq, now),
        )
    });
    let plan = post::Plan {
        url,
        rate: args.post.rate,
        count: args.count,
        deadline: Duration::from_secs_f64(args.count as f64 / args.post.rate.max(0.001) + 1.0),
        connections: args.post.connections as usize,
    };
    let started = Instant::now();
    let stats = post::run(plan, body, Arc::new(AtomicU64::new(0))).await?;
    let elapsed = started.elapsed();
    let expected = stats.accepted.len() as u64 * ready;
    let until = Instant::now() + Duration::from_secs(max_seconds + args.grace);
    await_deliveries(|| expected, until, "closes").await;
    let clients_json = client_report(&clients, &args.clients);
    clients.stop().await;
    let r = stats::collect();
    let report = json!({
        "mode": "close-lag",
        "run": run,
        "config": {"clients": args.clients.clients, "count": args.count, "rate": args.post.rate,
                   "alert_seconds": format!("1..={max_seconds}")},
        "clients": clients_json,
        "posts": post_report(&stats, elapsed, 1),
        "expected_closes": expected,
        "closes_received": r.unique,
        "missing": expected.saturating_sub(r.unique),
        "duplicates": r.duplicates,
        "close_lag": summary(&r.latency),
        "timeline": report::timeline(&r.per_second),
    });
    let out = default_out(out, "close-lag");
    let timeline = report::timeline(&r.per_second);
    write_report(
        &out,
        &report,
        &timeline,
        "close lag behind endTime per second (ms) and closes/s",
        "closes/s",
    )
}
