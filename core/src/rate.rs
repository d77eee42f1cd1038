//! The one rate limit: a token bucket, for sources (the listener) and clients (notify).

use std::time::{Duration, Instant};

/// `rate` tokens a second, up to `burst`; starts full. The caller owns the clock, so
/// one bucket per key can sit in a map behind one lock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub rate: f64,
    pub burst: f64,
}

impl RateLimit {
    /// `rate` a second with bursts of `burst_seconds` worth; `None` (no limit) when
    /// `rate` is 0, as the settings spell "off".
    pub fn per_second(rate: f64, burst_seconds: f64) -> Option<RateLimit> {
        (rate > 0.0).then_some(RateLimit {
            rate,
            burst: rate * burst_seconds,
        })
    }
}

#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    pub fn full(limit: RateLimit, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: limit.burst,
            refilled: now,
        }
    }

    /// Takes `n` tokens, or says how long until they would be there (a request for
    /// more than the burst waits as if for the burst).
    pub fn take(&mut self, n: f64, limit: RateLimit, now: Instant) -> Result<(), Duration> {
        self.refill(limit, now);
        if self.tokens >= n {
            self.tokens -= n;
            return Ok(());
        }
        let wait = (n.min(limit.burst) - self.tokens) / limit.rate.max(f64::MIN_POSITIVE);
        Err(Duration::from_secs_f64(wait.max(0.001)))
    }

    /// Whether the bucket is full again: nothing would be lost by forgetting it.
    pub fn is_full(&mut self, limit: RateLimit, now: Instant) -> bool {
        self.refill(limit, now);
        self.tokens >= limit.burst
    }

    fn refill(&mut self, limit: RateLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.rate).min(limit.burst);
        self.refilled = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_then_a_wait_then_refilled() {
        let limit = RateLimit {
            rate: 10.0,
            burst: 20.0,
        };
        let start = Instant::now();
        let mut bucket = TokenBucket::full(limit, start);
        assert_eq!(bucket.take(20.0, limit, start), Ok(()));
        let wait = bucket.take(5.0, limit, start).unwrap_err();
        assert!(
            (Duration::from_millis(499)..=Duration::from_millis(501)).contains(&wait),
            "{wait:?}"
        );
        assert!(!bucket.is_full(limit, start + Duration::from_secs(1)));
        assert_eq!(
            bucket.take(5.0, limit, start + Duration::from_millis(500)),
            Ok(())
        );
        assert!(bucket.is_full(limit, start + Duration::from_secs(10)));
    }

    #[test]
    fn zero_is_no_limit() {
        assert_eq!(RateLimit::per_second(0.0, 2.0), None);
        let limit = RateLimit::per_second(10.0, 2.0).unwrap();
        assert_eq!((limit.rate, limit.burst), (10.0, 20.0));
    }
}
