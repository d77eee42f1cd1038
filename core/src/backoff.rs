//! One retry policy for every loop that reconnects or retries: the pause grows from
//! `first` by `factor` up to `max`, with up to `jitter` added so that many pods do not
//! retry in lockstep, and [`sleep_or_stop`] cuts it short when the service stops.
//!
//! The two policies live side by side here so that their difference is visible:
//! RabbitMQ takes seconds to come back, Redis milliseconds (RELIABILITY.md).

use std::time::Duration;

use tokio::sync::watch;

/// How the pauses between attempts grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The first pause.
    pub first: Duration,
    /// The longest pause: how long after the peer answers again a loop may still wait.
    pub max: Duration,
    /// Each pause is the last one times this, up to `max`.
    pub factor: u32,
    /// Random extra pause (up to), so that many clients do not retry in lockstep.
    pub jitter: Duration,
}

impl BackoffPolicy {
    /// Reconnecting to RabbitMQ (publisher and consumer): a broker restart takes
    /// seconds, and a fleet of pods should not hammer a broker that is starting.
    pub const RABBITMQ: BackoffPolicy = BackoffPolicy {
        first: Duration::from_millis(100),
        max: Duration::from_secs(5),
        factor: 2,
        jitter: Duration::ZERO,
    };

    /// Redis: the client's own reconnects and the services' retries. Measured with
    /// two processors and a Redis killed -9 and restarted 2 s later while alerts flowed:
    /// with a backoff of 100 ms doubling to 5 s, the first event was written 1.2 s after
    /// Redis answered again; capped at 200 ms the client is back within one cap.
    pub const REDIS: BackoffPolicy = BackoffPolicy {
        first: Duration::from_millis(10),
        max: Duration::from_millis(200),
        factor: 2,
        jitter: Duration::from_millis(30),
    };
}

/// The pauses of one retry loop, following a [`BackoffPolicy`].
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    next: Duration,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Backoff {
        Backoff {
            policy,
            next: policy.first,
        }
    }

    /// The next pause, longer each time up to the cap (jitter included).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * self.policy.factor).min(self.policy.max);
        (delay + jitter(self.policy.jitter)).min(self.policy.max)
    }

    /// Back to the first pause, after a success.
    pub fn reset(&mut self) {
        self.next = self.policy.first;
    }
}

/// Up to `max`, at random.
fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    max.mul_f64(rand::random::<f64>())
}

/// Sleeps for `delay`, or until `stop` turns true. `false` if the service is stopping.
pub async fn sleep_or_stop(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = stop.wait_for(|stopped| *stopped) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_small_grows_and_stays_bounded() {
        let policy = BackoffPolicy::REDIS;
        let mut backoff = Backoff::new(policy);
        let delays: Vec<Duration> = (0..20).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] < policy.first + policy.jitter, "{delays:?}");
        assert!(delays.iter().all(|d| *d <= policy.max), "{delays:?}");
        assert_eq!(delays[19], policy.max, "reaches the cap: {delays:?}");
        backoff.reset();
        assert!(backoff.next_delay() < policy.first + policy.jitter);
    }

    #[test]
    fn without_jitter_the_pauses_double_exactly() {
        let mut backoff = Backoff::new(BackoffPolicy::RABBITMQ);
        let ms: Vec<u128> = (0..8).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }

    #[tokio::test]
    async fn a_stop_cuts_the_pause_short() {
        let (tx, mut rx) = watch::channel(false);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.send(true).unwrap();
        });
        let started = std::time::Instant::now();
        assert!(!sleep_or_stop(Duration::from_secs(60), &mut rx).await);
        assert!(started.elapsed() < Duration::from_secs(30));
        let (_tx, mut running) = watch::channel(false);
        assert!(sleep_or_stop(Duration::from_millis(1), &mut running).await);
    }
}
