//! `max_points_per_second`: a token bucket over points, shared by every write of one writer
//! (so by every consumer of the daemon). It holds at most one second's worth, so the first
//! burst after a quiet spell is at most that; a write takes its points' tokens before it is
//! sent, going into debt for a batch larger than the bucket and waiting the debt off. The
//! wait holds the writer's in-flight slot, so a capped writer fills its in-flight bound, the
//! consumers' batches stop finishing and their partitions pause: backpressure into Kafka,
//! never a buffer that grows.

use std::time::{Duration, Instant};

/// The bucket's arithmetic, with the clock passed in.
#[derive(Debug)]
pub struct Bucket {
    /// Points per second.
    rate: f64,
    /// Tokens now (negative: debt still to wait off).
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Full: one second's worth.
    pub fn new(points_per_second: u64, now: Instant) -> Self {
        let rate = points_per_second as f64;
        Bucket {
            rate,
            tokens: rate,
            last: now,
        }
    }

    /// Takes `points` tokens at `now`; how long the caller must wait before sending them.
    pub fn take(&mut self, points: usize, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.tokens -= points as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_first_burst_of_one_seconds_worth_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(20_000, t0);
        assert_eq!(b.take(20_000, t0), Duration::ZERO, "a full bucket");
        assert_eq!(b.take(10_000, t0), ms(500), "debt: half a second");
        // Having waited that, the next 10 000 wait another half second.
        assert_eq!(b.take(10_000, t0 + ms(500)), ms(500));
    }

    #[test]
    fn idle_time_refills_at_most_one_second_worth() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000, t0);
        assert_eq!(b.take(1000, t0), Duration::ZERO);
        // An hour idle: still only one second's worth.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(b.take(1000, later), Duration::ZERO);
        assert_eq!(b.take(1, later), ms(1));
    }

    #[test]
    fn a_batch_larger_than_the_bucket_waits_its_excess_off() {
        let t0 = Instant::now();
        let mut b = Bucket::new(100, t0);
        assert_eq!(b.take(1000, t0), Duration::from_secs(9));
    }

    #[test]
    fn over_a_long_run_the_rate_holds() {
        let t0 = Instant::now();
        let mut b = Bucket::new(20_000, t0);
        let mut now = t0;
        // 200 000 points in batches of 5 000, each sent when the bucket allows.
        for _ in 0..40 {
            now += b.take(5_000, now);
        }
        assert_eq!(
            now - t0,
            Duration::from_secs(9),
            "(200 000 - 20 000) / 20 000"
        );
    }
}
