//! Which offsets may be committed: per partition, only up to the highest offset below which
//! every message belongs to a batch that is finished (written or dead-lettered).
//!
//! Batches are written concurrently and may finish out of order; a partition's commit point
//! only moves over a prefix of finished batches. Pure bookkeeping, no Kafka here.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// One batch's run of offsets in one partition.
#[derive(Debug)]
struct Span {
    batch: u64,
    last: i64,
    done: bool,
    /// When its first message was recorded: the age of the partition's oldest uncommitted
    /// message while this span is the partition's first.
    since: Instant,
}

#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, VecDeque<Span>>,
}

impl OffsetTracker {
    /// Records that `offset` of `partition` went into batch `batch` at `now`. Offsets of a
    /// partition arrive in increasing order, batches in increasing id.
    pub fn record(&mut self, partition: i32, batch: u64, offset: i64, now: Instant) {
        let spans = self.partitions.entry(partition).or_default();
        match spans.back_mut() {
            Some(s) if s.batch == batch => s.last = offset,
            _ => spans.push_back(Span {
                batch,
                last: offset,
                done: false,
                since: now,
            }),
        }
    }

    /// Marks batch `batch` finished in every partition it touched.
    pub fn complete(&mut self, batch: u64) {
        for spans in self.partitions.values_mut() {
            for s in spans.iter_mut().filter(|s| s.batch == batch) {
                s.done = true;
            }
        }
    }

    /// The offsets to commit now (Kafka's "next offset to read", i.e. last + 1), per
    /// partition whose commit point moved; consumes those finished prefixes.
    pub fn committable(&mut self) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for (&p, spans) in self.partitions.iter_mut() {
            let mut next = None;
            while spans.front().is_some_and(|s| s.done) {
                next = spans.pop_front().map(|s| s.last + 1);
            }
            if let Some(n) = next {
                out.push((p, n));
            }
        }
        out.sort_unstable();
        out
    }

    /// Forgets a partition (revoked): nothing of it is committed by this consumer any more.
    pub fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// Per partition recorded since the last forget: how long its oldest message not yet
    /// committable has waited (zero when there is none).
    pub fn oldest_uncommitted(&self, now: Instant) -> Vec<(i32, Duration)> {
        let mut out: Vec<(i32, Duration)> = self
            .partitions
            .iter()
            .map(|(&p, spans)| {
                let age = spans
                    .front()
                    .map_or(Duration::ZERO, |s| now.saturating_duration_since(s.since));
                (p, age)
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// True while some recorded batch is not finished.
    pub fn pending(&self) -> bool {
        self.partitions.values().any(|s| s.iter().any(|s| !s.done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_a_prefix_of_finished_batches() {
        let now = Instant::now();
        let mut t = OffsetTracker::default();
        for o in 0..10 {
            t.record(0, 1, o, now);
        }
        for o in 10..20 {
            t.record(0, 2, o, now);
        }
        t.record(1, 2, 100, now);
        t.complete(2);
        assert_eq!(
            t.committable(),
            vec![(1, 101)],
            "batch 1 holds partition 0 back"
        );
        t.complete(1);
        assert_eq!(t.committable(), vec![(0, 20)]);
        assert!(t.committable().is_empty(), "nothing moves twice");
        assert!(!t.pending());
    }

    #[test]
    fn interleaved_partitions_in_pipelined_batches() {
        let now = Instant::now();
        let mut t = OffsetTracker::default();
        t.record(0, 1, 5, now);
        t.record(1, 1, 7, now);
        t.record(0, 2, 6, now);
        t.record(0, 3, 7, now);
        t.complete(3);
        t.complete(1);
        assert_eq!(t.committable(), vec![(0, 6), (1, 8)]);
        t.complete(2);
        assert_eq!(t.committable(), vec![(0, 8)]);
    }

    #[test]
    fn oldest_uncommitted_is_the_age_of_the_first_unfinished_span() {
        let now = Instant::now();
        let mut t = OffsetTracker::default();
        t.record(0, 1, 5, now);
        t.record(1, 1, 9, now);
        let (since0, since1) = (t.partitions[&0][0].since, t.partitions[&1][0].since);
        t.record(0, 2, 6, now);
        let later = since0 + Duration::from_secs(30);
        assert_eq!(
            t.oldest_uncommitted(later),
            vec![(0, Duration::from_secs(30)), (1, later - since1)]
        );
        // Batch 2 finishing does not help partition 0: batch 1 still holds it.
        t.complete(2);
        let _ = t.committable();
        assert_eq!(t.oldest_uncommitted(later)[0], (0, Duration::from_secs(30)));
        t.complete(1);
        let _ = t.committable();
        assert_eq!(
            t.oldest_uncommitted(later),
            vec![(0, Duration::ZERO), (1, Duration::ZERO)],
            "all committable: nothing waits"
        );
    }

    #[test]
    fn forgotten_partitions_are_never_committed() {
        let now = Instant::now();
        let mut t = OffsetTracker::default();
        t.record(3, 1, 50, now);
        t.forget(3);
        t.complete(1);
        assert!(t.committable().is_empty());
        assert!(!t.pending());
    }
}
