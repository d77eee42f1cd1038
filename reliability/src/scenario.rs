//! The fault scenarios: each a bounded stream of alerts, a client mix, and faults at
//! fixed times. `alert-chaos list` prints them.

use std::time::Duration;

use crate::{
    cluster::{Links, Role},
    link::Condition,
};

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    Kill(Role, usize),
    Start(Role, usize),
    /// SIGTERM every service in turn, each replaced once it has exited and the new
    /// one is ready (a Kubernetes rolling deploy).
    Rolling,
    /// `rabbitmqctl stop_app` / `start_app` on the machine's broker.
    BrokerStop,
    BrokerStart,
    Network(Links, Condition),
    RedisKill,
    /// kill -9 of Redis and the last second of its AOF gone: what a power loss does
    /// with `appendfsync everysec` (a process kill loses nothing: the kernel has the
    /// writes).
    RedisPowerLoss,
    RedisStart,
    /// Sabotage, for the checker's own test: purges the run's queue, so accepted
    /// alerts are never applied (what an ack before commit does when a processor dies).
    PurgeQueue,
}

#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub socketio: usize,
    pub sse: usize,
    pub slow: usize,
    pub dead: usize,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    /// How long alerts are posted.
    pub seconds: f64,
    pub rate: f64,
    pub appendfsync: &'static str,
    pub clients: Mix,
    pub faults: Vec<(f64, Fault)>,
    /// A rolling deploy must cost sources nothing: no 5xx at all.
    pub no_5xx: bool,
    /// A sabotage: the run passes only if the verdict fails with this in a line.
    pub caught: Option<&'static str>,
    /// Accepted alerts may be lost by the configuration under test (Redis's fsync
    /// policy on a power loss): the run passes if nothing else fails, and the loss
    /// is reported.
    pub policy_loss: bool,
    /// A soak: every process's memory and open files, and the backlog, this often.
    pub sample_every: Option<Duration>,
}

const STANDARD: Mix = Mix {
    socketio: 170,
    sse: 40,
    slow: 6,
    dead: 6,
};

fn scenario(name: &'static str, about: &'static str, faults: Vec<(f64, Fault)>) -> Scenario {
    Scenario {
        name,
        about,
        seconds: 30.0,
        rate: 40.0,
        appendfsync: "everysec",
        clients: STANDARD,
        faults,
        no_5xx: false,
        caught: None,
        policy_loss: false,
        sample_every: None,
    }
}

fn kill(role: Role, index: usize, at: f64, pause: f64) -> [(f64, Fault); 2] {
    [
        (at, Fault::Kill(role, index)),
        (at + pause, Fault::Start(role, index)),
    ]
}

/// No fault, for `minutes` at `rate` POSTs/s, with `clients` Socket.IO and SSE clients
/// (a tenth of them slow): memory and open files sampled every minute.
pub fn soak(minutes: f64, rate: f64, clients: usize) -> Scenario {
    Scenario {
        seconds: minutes * 60.0,
        rate,
        clients: Mix {
            socketio: clients * 7 / 10,
            sse: clients * 2 / 10,
            slow: clients / 10,
            dead: 0,
        },
        sample_every: Some(Duration::from_secs(60)),
        ..scenario(
            "soak",
            "no fault, for a long time: memory and open files must stay flat",
            vec![],
        )
    }
}

pub fn all() -> Vec<Scenario> {
    use Fault::*;
    let ms = Duration::from_millis;
    vec![
        Scenario {
            seconds: 16.0,
            rate: 25.0,
            clients: Mix {
                socketio: 40,
                sse: 10,
                slow: 2,
                dead: 2,
            },
            ..scenario(
                "short",
                "kill -9 of a listener, a processor and a notify in turn, 1 s each (the test command's)",
                [
                    kill(Role::Listener, 0, 3.0, 1.0),
                    kill(Role::Processor, 0, 6.0, 1.0),
                    kill(Role::Notify, 0, 9.0, 1.0),
                ]
                .concat(),
            )
        },
        scenario("calm", "no fault: the baseline", vec![]),
        scenario(
            "kill-listener",
            "kill -9 of listener 0 at +8 s, restarted 3 s later",
            kill(Role::Listener, 0, 8.0, 3.0).to_vec(),
        ),
        scenario(
            "kill-processor",
            "kill -9 of processor 0 at +8 s, restarted 3 s later",
            kill(Role::Processor, 0, 8.0, 3.0).to_vec(),
        ),
        scenario(
            "kill-notify",
            "kill -9 of notify 0 at +8 s, restarted 3 s later",
            kill(Role::Notify, 0, 8.0, 3.0).to_vec(),
        ),
        Scenario {
            seconds: 45.0,
            no_5xx: true,
            ..scenario(
                "rolling",
                "SIGTERM of every service in turn, 2 s apart, each replaced when it has exited (a deploy)",
                vec![(5.0, Rolling)],
            )
        },
        scenario(
            "rabbitmq-restart",
            "rabbitmqctl stop_app at +8 s, start_app 4 s later (the machine's broker!)",
            vec![(8.0, BrokerStop), (12.0, BrokerStart)],
        ),
        scenario(
            "broker-cut",
            "every broker connection cut at +8 s, links back 3 s later",
            vec![
                (8.0, Network(Links::Amqp, Condition::Cut)),
                (11.0, Network(Links::Amqp, Condition::Healthy)),
            ],
        ),
        scenario(
            "redis-everysec",
            "Redis (AOF appendfsync everysec) killed -9 at +10 s, started 2 s later",
            vec![(10.0, RedisKill), (12.0, RedisStart)],
        ),
        Scenario {
            appendfsync: "always",
            ..scenario(
                "redis-always",
                "Redis (AOF appendfsync always) killed -9 at +10 s, started 2 s later",
                vec![(10.0, RedisKill), (12.0, RedisStart)],
            )
        },
        Scenario {
            policy_loss: true,
            ..scenario(
                "redis-power-loss",
                "Redis (AOF everysec) killed -9 at +10 s with its last second of AOF writes gone, as after a power loss; started 2 s later",
                vec![(10.0, RedisPowerLoss), (12.0, RedisStart)],
            )
        },
        scenario(
            "network",
            "every link 50 ms slow; then a listener's and a processor's broker link and a notify's Redis link stalled (no FIN, no RST); then every Redis link cut",
            vec![
                (4.0, Network(Links::Redis, Condition::Latency(ms(50)))),
                (4.0, Network(Links::Amqp, Condition::Latency(ms(50)))),
                (8.0, Network(Links::Redis, Condition::Healthy)),
                (8.0, Network(Links::Amqp, Condition::Healthy)),
                (
                    9.0,
                    Network(Links::Of(Role::Listener, 0, "amqp"), Condition::Stalled),
                ),
                (
                    14.0,
                    Network(Links::Of(Role::Listener, 0, "amqp"), Condition::Healthy),
                ),
                (
                    9.0,
                    Network(Links::Of(Role::Processor, 0, "amqp"), Condition::Stalled),
                ),
                (
                    9.0,
                    Network(Links::Of(Role::Notify, 0, "redis"), Condition::Stalled),
                ),
                (
                    14.0,
                    Network(Links::Of(Role::Processor, 0, "amqp"), Condition::Healthy),
                ),
                (
                    14.0,
                    Network(Links::Of(Role::Notify, 0, "redis"), Condition::Healthy),
                ),
                (17.0, Network(Links::Redis, Condition::Cut)),
                (19.0, Network(Links::Redis, Condition::Healthy)),
            ],
        ),
        Scenario {
            rate: 60.0,
            clients: Mix {
                socketio: 150,
                sse: 30,
                slow: 40,
                dead: 60,
            },
            ..scenario(
                "slow-clients",
                "40 slow readers and 60 dead clients (never read, never answer pings) beside healthy ones",
                vec![],
            )
        },
        Scenario {
            seconds: 60.0,
            appendfsync: "always",
            ..scenario(
                "mixed",
                "one of each: processor and notify killed, broker cut, Redis slow then killed (AOF always), listener killed",
                [
                    kill(Role::Processor, 1, 5.0, 2.0).to_vec(),
                    kill(Role::Notify, 1, 10.0, 2.0).to_vec(),
                    vec![
                        (16.0, Network(Links::Amqp, Condition::Cut)),
                        (18.0, Network(Links::Amqp, Condition::Healthy)),
                        (22.0, Network(Links::Redis, Condition::Latency(ms(30)))),
                        (28.0, Network(Links::Redis, Condition::Healthy)),
                        (32.0, RedisKill),
                        (34.0, RedisStart),
                    ],
                    kill(Role::Listener, 1, 40.0, 2.0).to_vec(),
                    kill(Role::Processor, 2, 46.0, 1.0).to_vec(),
                ]
                .concat(),
            )
        },
        Scenario {
            seconds: 12.0,
            caught: Some("lost"),
            ..scenario(
                "sabotage-purge",
                "the checker's own test: the queue purged mid-run (alerts accepted, never applied) must fail the verdict as lost",
                [
                    (3.0, Kill(Role::Processor, 0)),
                    (3.0, Kill(Role::Processor, 1)),
                    (3.0, Kill(Role::Processor, 2)),
                    (5.0, PurgeQueue),
                    (5.5, Start(Role::Processor, 0)),
                    (5.5, Start(Role::Processor, 1)),
                    (5.5, Start(Role::Processor, 2)),
                ]
                .to_vec(),
            )
        },
    ]
}
