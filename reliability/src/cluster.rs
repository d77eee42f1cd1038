//! The distributed services on loopback, each its own process: listeners, processors
//! and notify, a private `redis-server` (AOF, on its own port and directory) and the
//! machine's RabbitMQ under a queue of the run's own. Every connection from a service
//! to the broker or Redis goes through a [`Link`] a scenario can degrade.

use std::{
    collections::VecDeque,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::{Child, Command},
};

use crate::link::{Condition, Link};

pub const AMQP: &str = "127.0.0.1:5672";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Listener,
    Processor,
    Notify,
}

impl Role {
    fn binary(self) -> &'static str {
        match self {
            Role::Listener => "alert-listener",
            Role::Processor => "alert-processor",
            Role::Notify => "alert-notify",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.binary()["alert-".len()..])
    }
}

/// How many of each role, and Redis's fsync policy.
#[derive(Debug, Clone)]
pub struct Shape {
    pub listeners: usize,
    pub processors: usize,
    pub notify: usize,
    pub appendfsync: &'static str,
}

pub struct Service {
    pub role: Role,
    pub index: usize,
    pub addr: SocketAddr,
    env: Vec<(String, String)>,
    program: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Service {
    pub fn name(&self) -> String {
        format!("{}-{}", self.role, self.index)
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.program)
            .env_clear()
            .envs(std::env::vars().filter(|(key, _)| key == "PATH"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM, then waits for the process to finish its shutdown (killed after `limit`).
    async fn terminate(&mut self, limit: Duration) -> anyhow::Result<Duration> {
        let Some(mut child) = self.child.take() else {
            return Ok(Duration::ZERO);
        };
        let began = Instant::now();
        if let Some(pid) = child.id() {
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await?;
        }
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("{} exited with {status} after SIGTERM", self.name());
                }
            }
            Err(_) => {
                let _ = child.kill().await;
                bail!("{} still running {limit:?} after SIGTERM", self.name());
            }
        }
        Ok(began.elapsed())
    }

    /// Polls `/readyz` until it answers 200.
    async fn ready(&self, http: &reqwest::Client, limit: Duration) -> anyhow::Result<Duration> {
        let began = Instant::now();
        let url = format!("http://{}/readyz", self.addr);
        loop {
            if let Ok(response) = http.get(&url).send().await
                && response.status() == 200
            {
                return Ok(began.elapsed());
            }
            if began.elapsed() > limit {
                bail!(
                    "{} not ready within {limit:?}; see {}",
                    self.name(),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// A `redis-server` of the run's own, with AOF on.
pub struct Redis {
    pub addr: SocketAddr,
    dir: PathBuf,
    appendfsync: &'static str,
    child: Option<Child>,
    /// The newest AOF file's size, sampled every 50 ms: what was on disk when.
    aof_sizes: Arc<Mutex<VecDeque<(Instant, PathBuf, u64)>>>,
}

/// The newest incremental AOF file (Redis 7's multi-part AOF) and its size.
fn newest_aof(dir: &Path) -> Option<(PathBuf, u64)> {
    std::fs::read_dir(dir.join("appendonlydir"))
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".incr.aof"))
        .filter_map(|e| {
            let metadata = e.metadata().ok()?;
            Some((metadata.modified().ok()?, e.path(), metadata.len()))
        })
        .max_by_key(|(modified, _, _)| *modified)
        .map(|(_, path, len)| (path, len))
}

impl Redis {
    fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))?;
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.addr.port().to_string(),
            ])
            .args(["--dir", &self.dir.to_string_lossy(), "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", self.appendfsync])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("start redis-server (apt-get install redis-server)")?;
        self.child = Some(child);
        Ok(())
    }

    /// Samples the AOF's size while the run lasts.
    fn watch_aof(&self) {
        let (dir, sizes) = (self.dir.clone(), Arc::downgrade(&self.aof_sizes));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let Some(sizes) = sizes.upgrade() else { return };
                if let Some((path, len)) = newest_aof(&dir) {
                    let mut sizes = sizes.lock().unwrap();
                    sizes.push_back((Instant::now(), path, len));
                    while sizes.len() > 200 {
                        sizes.pop_front();
                    }
                }
            }
        });
    }

    /// What a power loss does to an AOF that was fsynced `lost` ago at best: the file
    /// cut back to the size it had then (Redis loads a truncated tail). Returns the
    /// bytes cut.
    fn lose_tail(&self, lost: Duration) -> anyhow::Result<u64> {
        let sizes = self.aof_sizes.lock().unwrap();
        let cutoff = Instant::now() - lost;
        let Some((_, path, len)) = sizes.iter().rev().find(|(at, _, _)| *at <= cutoff) else {
            bail!("no AOF size recorded {lost:?} ago");
        };
        let now = std::fs::metadata(path)?.len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(*len)?;
        Ok(now.saturating_sub(*len))
    }

    /// PINGs until Redis answers PONG (it has loaded its AOF by then).
    pub async fn answering(&self, limit: Duration) -> anyhow::Result<Duration> {
        let began = Instant::now();
        loop {
            if ping(self.addr).await {
                return Ok(began.elapsed());
            }
            if began.elapsed() > limit {
                bail!("redis on {} not answering within {limit:?}", self.addr);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

async fn ping(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await?;
        Ok::<bool, std::io::Error>(&reply == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), attempt).await,
        Ok(Ok(true))
    )
}

/// Which links a network fault degrades.
#[derive(Debug, Clone, Copy)]
pub enum Links {
    /// Every service's broker connections.
    Amqp,
    /// Every service's Redis connections.
    Redis,
    /// One service's link of one kind (`amqp` or `redis`).
    Of(Role, usize, &'static str),
}

pub struct Cluster {
    pub services: Vec<Service>,
    pub links: Vec<Link>,
    pub redis: Redis,
    pub queue: String,
    pub prefix: String,
    pub dir: PathBuf,
    http: reqwest::Client,
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl Cluster {
    /// Starts Redis and every service, and waits until each is ready.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        run: &str,
        shape: &Shape,
    ) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(dir)?;
        let mut redis = Redis {
            addr: free_port()?,
            dir: dir.to_owned(),
            appendfsync: shape.appendfsync,
            child: None,
            aof_sizes: Arc::default(),
        };
        redis.start()?;
        redis.watch_aof();
        redis.answering(Duration::from_secs(10)).await?;
        let amqp: SocketAddr = AMQP.parse()?;
        let queue = format!("test.chaos.{run}");
        let prefix = format!("chaos:{run}:");
        let mut cluster = Cluster {
            services: Vec::new(),
            links: Vec::new(),
            redis,
            queue,
            prefix,
            dir: dir.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()?,
        };
        let roles = [
            (Role::Listener, shape.listeners),
            (Role::Processor, shape.processors),
            (Role::Notify, shape.notify),
        ];
        for (role, count) in roles {
            for index in 0..count {
                let name = format!("{role}-{index}");
                let mut env = vec![
                    ("LISTEN_ADDR".to_owned(), String::new()),
                    ("LOG_FORMAT".to_owned(), "json".to_owned()),
                    ("SHUTDOWN_TIMEOUT_SECONDS".to_owned(), "10".to_owned()),
                ];
                if role != Role::Notify {
                    let link = Link::start(format!("{name}/amqp"), amqp).await?;
                    env.push((
                        "AMQP_URL".into(),
                        format!("amqp://guest:guest@{}/%2f", link.addr),
                    ));
                    env.push(("AMQP_QUEUE".into(), cluster.queue.clone()));
                    cluster.links.push(link);
                }
                if role != Role::Listener {
                    let link = Link::start(format!("{name}/redis"), cluster.redis.addr).await?;
                    env.push(("REDIS_URL".into(), format!("redis://{}", link.addr)));
                    env.push(("REDIS_PREFIX".into(), cluster.prefix.clone()));
                    cluster.links.push(link);
                }
                match role {
                    // The verdict reads the whole log and every history at the end.
                    Role::Processor => {
                        env.push(("HISTORY_LEN".into(), "1000000".into()));
                        env.push(("EVENT_LOG_MAX_LEN".into(), "50000000".into()));
                    }
                    // Short heartbeats, so a client that never answers is dropped within
                    // a run. Every client here is 127.0.0.1: per-address limits off.
                    Role::Notify => {
                        env.push(("PING_INTERVAL_MS".into(), "2000".into()));
                        env.push(("PING_TIMEOUT_MS".into(), "2000".into()));
                        for limit in [
                            "MAX_CONNECTIONS_PER_ADDRESS",
                            "MAX_STREAMS_PER_ADDRESS",
                            "HANDSHAKES_PER_SECOND_PER_ADDRESS",
                        ] {
                            env.push((limit.into(), "0".into()));
                        }
                    }
                    Role::Listener => {}
                }
                let addr = free_port()?;
                env[0].1 = addr.to_string();
                cluster.services.push(Service {
                    role,
                    index,
                    addr,
                    env,
                    program: bin.join(role.binary()),
                    log: dir.join(format!("{name}.log")),
                    child: None,
                });
            }
        }
        for service in &mut cluster.services {
            service.start()?;
        }
        for service in &cluster.services {
            service
                .ready(&cluster.http, Duration::from_secs(30))
                .await?;
        }
        Ok(cluster)
    }

    /// The running processes: name and pid, Redis included.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let services = self
            .services
            .iter()
            .filter_map(|s| Some((s.name(), s.child.as_ref()?.id()?)));
        let redis = self
            .redis
            .child
            .as_ref()
            .and_then(|c| c.id())
            .map(|pid| ("redis".to_owned(), pid));
        services.chain(redis).collect()
    }

    pub fn addrs(&self, role: Role) -> Vec<SocketAddr> {
        self.services
            .iter()
            .filter(|s| s.role == role)
            .map(|s| s.addr)
            .collect()
    }

    fn service(&mut self, role: Role, index: usize) -> anyhow::Result<&mut Service> {
        self.services
            .iter_mut()
            .find(|s| s.role == role && s.index == index)
            .with_context(|| format!("no {role}-{index}"))
    }

    pub async fn kill(&mut self, role: Role, index: usize) -> anyhow::Result<()> {
        self.service(role, index)?.kill().await;
        Ok(())
    }

    /// Starts a stopped service and waits until it is ready; how long that took.
    pub async fn restart(&mut self, role: Role, index: usize) -> anyhow::Result<Duration> {
        let http = self.http.clone();
        let service = self.service(role, index)?;
        service.start()?;
        service.ready(&http, Duration::from_secs(30)).await
    }

    /// SIGTERM, then a new process once the old one has exited: how long the
    /// shutdown and the start each took.
    pub async fn redeploy(
        &mut self,
        role: Role,
        index: usize,
    ) -> anyhow::Result<(Duration, Duration)> {
        let stopped = self
            .service(role, index)?
            .terminate(Duration::from_secs(20))
            .await?;
        let ready = self.restart(role, index).await?;
        Ok((stopped, ready))
    }

    pub async fn kill_redis(&mut self) {
        if let Some(mut child) = self.redis.child.take() {
            let _ = child.kill().await;
        }
    }

    /// kill -9 of Redis, and the AOF's last `lost` of writes gone as after a power
    /// loss; the bytes cut.
    pub async fn power_loss(&mut self, lost: Duration) -> anyhow::Result<u64> {
        self.kill_redis().await;
        self.redis.lose_tail(lost)
    }

    pub async fn start_redis(&mut self) -> anyhow::Result<Duration> {
        self.redis.start()?;
        self.redis.answering(Duration::from_secs(30)).await
    }

    pub fn degrade(&self, which: Links, condition: Condition) -> usize {
        let mut changed = 0;
        for link in &self.links {
            let matches = match which {
                Links::Amqp => link.name.ends_with("/amqp"),
                Links::Redis => link.name.ends_with("/redis"),
                Links::Of(role, index, kind) => link.name == format!("{role}-{index}/{kind}"),
            };
            if matches {
                link.set(condition);
                changed += 1;
            }
        }
        changed
    }

    /// Waits until every running service answers `/readyz` 200.
    pub async fn all_ready(&self, limit: Duration) -> anyhow::Result<()> {
        for service in self.services.iter().filter(|s| s.child.is_some()) {
            service.ready(&self.http, limit).await?;
        }
        Ok(())
    }

    /// Lines the services logged at WARN or ERROR, per service (JSON logs).
    pub fn warnings(&self) -> Vec<(String, u64)> {
        self.services
            .iter()
            .map(|service| {
                let text = std::fs::read_to_string(&service.log).unwrap_or_default();
                let count = text
                    .lines()
                    .filter(|l| l.contains(r#""level":"WARN""#) || l.contains(r#""level":"ERROR""#))
                    .count() as u64;
                (service.name(), count)
            })
            .collect()
    }

    pub async fn stop(mut self) {
        for service in &mut self.services {
            service.kill().await;
        }
        self.kill_redis().await;
    }
}
