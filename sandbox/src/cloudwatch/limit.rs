//! An account-level PutMetricData rate limit: a token bucket that CloudWatch's
//! quota is emulated with. Real CloudWatch throttles PutMetricData per account and Region (500
//! transactions per second by default, adjustable: docs/reliability.md, "Many sandboxes, one CloudWatch") and
//! answers HTTP 400 `Throttling` / `Rate exceeded` beyond it.
//!
//! [`TokenBucket`] is pure and clocked from outside (seconds as `f64`), so the same bucket serves the
//! HTTP endpoint (wall clock, [`super::CloudWatch::set_rate_limit`]) and the simulator in the bench
//! crate (a simulated clock).

/// A rate limit: `rate` requests per second, bursts of up to `burst` requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub rate: f64,
    pub burst: f64,
}

impl RateLimit {
    /// `rate` per second with a burst of one second's worth (at least 1).
    pub fn per_second(rate: f64) -> Self {
        Self { rate, burst: rate.max(1.0) }
    }
}

/// A token bucket: starts full; each request takes one token; tokens come back at `rate` per second
/// up to `burst`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    last_s: f64,
}

impl TokenBucket {
    pub fn new(limit: RateLimit, now_s: f64) -> Self {
        Self { limit, tokens: limit.burst, last_s: now_s }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes a token at `now_s` if there is one (true: the request may pass; false: throttle it).
    /// A clock that goes backwards refills nothing.
    pub fn take(&mut self, now_s: f64) -> bool {
        if now_s > self.last_s {
            self.tokens = (self.tokens + (now_s - self.last_s) * self.limit.rate).min(self.limit.burst);
            self.last_s = now_s;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let mut b = TokenBucket::new(RateLimit { rate: 10.0, burst: 5.0 }, 0.0);
        assert_eq!((0..8).filter(|_| b.take(0.0)).count(), 5, "the burst");
        assert!(!b.take(0.05), "half a token");
        assert!(b.take(0.1), "one token after 0.1 s");
        // Over 10 s at a steady 20 requests per second, about 10 per second pass.
        let passed = (1..=200).filter(|i| b.take(0.1 + *i as f64 * 0.05)).count();
        assert!((99..=101).contains(&passed), "{passed}");
    }

    #[test]
    fn never_more_than_the_burst_after_a_long_pause() {
        let mut b = TokenBucket::new(RateLimit::per_second(3.0), 0.0);
        assert_eq!((0..10).filter(|_| b.take(1_000.0)).count(), 3);
        assert!(!b.take(999.0), "a clock going backwards refills nothing");
    }
}
