//! Retry waits: exponential backoff with jitter, for the loops that retry until they succeed
//! or shutdown (InfluxDB writes in `sink`, dead-letter production in `pipeline::deadletter`).
//!
//! Owns the schedule alone: each caller keeps its own initial and longest waits. Pure but for
//! [`jitter`]'s randomness. Must never wait longer than the cap, nor less than half the
//! un-jittered wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Exponential backoff with full jitter: a random wait in `[base/2, base]` where
/// base = `initial * 2^attempt`, capped at `max`.
pub fn backoff(attempt: u32, initial: Duration, max: Duration, random: f64) -> Duration {
    let base = initial
        .checked_mul(1u32 << attempt.min(20))
        .unwrap_or(max)
        .min(max);
    base.mul_f64(0.5 + 0.5 * random.clamp(0.0, 1.0))
}

/// A random number in [0, 1) for backoff jitter, without a random-number crate: std's
/// per-process random hash keys mixed with a counter.
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The wait before retry number `attempt` (0: the first), jittered.
pub fn wait(attempt: u32, initial: Duration, max: Duration) -> Duration {
    backoff(attempt, initial, max, jitter())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(30));
        assert_eq!(backoff(0, i, m, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(3, i, m, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(3, i, m, 0.0), Duration::from_millis(400));
        assert_eq!(backoff(40, i, m, 1.0), m);
    }

    #[test]
    fn backoff_doubles_per_attempt_until_the_cap() {
        let (i, m) = (Duration::from_millis(200), Duration::from_secs(30));
        let waits: Vec<Duration> = (0..12).map(|a| backoff(a, i, m, 1.0)).collect();
        for w in waits.windows(2) {
            assert!(w[1] == (w[0] * 2).min(m), "{waits:?}");
        }
        assert_eq!(waits[7], Duration::from_millis(25_600));
        assert_eq!(waits[8], m);
        assert_eq!(backoff(u32::MAX, i, m, 1.0), m, "no overflow");
    }

    #[test]
    fn jittered_waits_stay_within_half_and_whole_of_the_base() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(30));
        for attempt in [0, 1, 5, 9, 30] {
            let base = backoff(attempt, i, m, 1.0);
            for _ in 0..50 {
                let w = wait(attempt, i, m);
                assert!(
                    w >= base / 2 && w <= base,
                    "{attempt}: {w:?} against {base:?}"
                );
            }
        }
        assert_eq!(
            backoff(2, i, m, -1.0),
            backoff(2, i, m, 0.0),
            "clamped below"
        );
        assert_eq!(
            backoff(2, i, m, 2.0),
            backoff(2, i, m, 1.0),
            "clamped above"
        );
    }

    #[test]
    fn jitter_is_in_unit_interval_and_varies() {
        let xs: Vec<f64> = (0..100).map(|_| jitter()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(xs.windows(2).any(|w| w[0] != w[1]));
    }
}
