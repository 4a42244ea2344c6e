//! The consumer's decisions, without Kafka: when to flush a batch, when to pause and resume
//! the partitions, what to commit per partition and when to retry a commit, what a revocation
//! does, when to give up (a failed batch; every broker unreachable too long).
//!
//! [`ConsumerState`] is driven by [`Event`]s and answers with [`Action`]s for the consumer
//! thread (`consumer`) to carry out: no librdkafka, no I/O, no clock (time comes in the
//! events). The consumer reports back what failed (`CommitFailed`, `PauseFailed`,
//! `ProbeFailed`).
//!
//! What it guarantees (unit and property tests below): a partition is committed only up to
//! where every message of it is finished; a revoked partition is not committed again until it
//! is assigned again; commits of a partition never go backwards within one assignment; every
//! finished message is committed once everything before it in its partition is; the
//! partitions are paused while a full batch cannot be sent (all `max_batches_in_flight` in
//! flight) and resumed once it can; the brokers are probed exactly when they have been
//! unreachable for `brokers_down_exit`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::offsets::OffsetTracker;

/// How long after a failed commit it is retried (unless a finished batch commits first).
pub const COMMIT_RETRY: Duration = Duration::from_secs(1);

/// The limits the decisions follow.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A batch this long is flushed.
    pub batch_size: usize,
    /// A batch is flushed this long after its first message.
    pub max_wait: Duration,
    /// The most batches handed to the writer and not finished.
    pub max_in_flight: usize,
    /// Every broker unreachable this long: probe once more, then give up.
    pub brokers_down_exit: Duration,
}

/// How a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every message written or dead-lettered: its offsets may be committed.
    Written,
    /// Abandoned (shutdown): its offsets stay uncommitted.
    Abandoned,
    /// Its task failed (a bug): its offsets can never be committed, and so neither can any
    /// later one of its partitions.
    Failed,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `count` messages of `partition` went into the current batch, the last at `last`
    /// (offsets of a partition arrive in increasing order).
    Messages {
        partition: i32,
        last: i64,
        count: usize,
        now: Instant,
    },
    /// A batch handed out by [`Action::Flush`] finished.
    BatchDone { id: u64, outcome: Outcome },
    /// Partitions were assigned (incrementally: added to what is assigned).
    Assigned(Vec<i32>),
    /// Partitions are being revoked. The consumer first flushed and waited for what it could
    /// (see [`ConsumerState::force_flush`]); this commits what is finished, synchronously,
    /// and forgets the partitions.
    Revoked(Vec<i32>),
    /// A commit did not happen (not started, or answered with an error) for these offsets.
    CommitFailed {
        offsets: Vec<(i32, i64)>,
        now: Instant,
    },
    /// A [`Action::Pause`] or [`Action::Resume`] could not be carried out.
    PauseFailed,
    /// librdkafka finds every broker unreachable (repeated while it lasts).
    BrokersDown(Instant),
    /// A broker answered (messages came, a probe succeeded): an outage is over.
    BrokersUp,
    /// The probe asked by [`Action::ProbeBrokers`] reached no broker either.
    ProbeFailed(Instant),
    /// Time passes: flush a full or due batch, commit what finished or retry what failed,
    /// pause or resume.
    Tick(Instant),
    /// Stopping: the consumer flushed and waited for what it could; commit what is finished,
    /// synchronously.
    Shutdown,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Hand the current batch (this id) to the writer; the next batch has id `id + 1`.
    Flush { id: u64 },
    /// Pause these partitions (backpressure).
    Pause(Vec<i32>),
    /// Resume these partitions.
    Resume(Vec<i32>),
    /// Commit these offsets (Kafka's next offset to read), synchronously or not; report a
    /// failure with [`Event::CommitFailed`].
    Commit {
        offsets: Vec<(i32, i64)>,
        sync: bool,
    },
    /// A failed commit of these offsets will be retried at `at`.
    CommitRetry {
        offsets: Vec<(i32, i64)>,
        at: Instant,
    },
    /// Every broker has been unreachable for `brokers_down_exit`: ask one directly (a
    /// metadata request); report [`Event::BrokersUp`] or [`Event::ProbeFailed`].
    ProbeBrokers,
    /// Stop: this consumer cannot go on (exit 1, a restart consumes again).
    Fatal(Fatal),
}

/// Why the consumer gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fatal {
    /// A batch failed: its offsets, and every later one of its partitions, can never be
    /// committed.
    BatchFailed { id: u64 },
    /// Every broker has been unreachable this long.
    BrokersDown { down_for: Duration },
}

/// The consumer's bookkeeping and decisions (see the module documentation).
#[derive(Debug)]
pub struct ConsumerState {
    limits: Limits,
    /// Id of the batch being filled.
    batch_id: u64,
    /// Messages in it (tracked or not).
    batch_len: usize,
    /// When its first message came.
    batch_started: Option<Instant>,
    in_flight: usize,
    tracker: OffsetTracker,
    /// Offsets to commit: computed and not yet sent, or sent and failed (retried).
    uncommitted: BTreeMap<i32, i64>,
    /// The highest offset sent in a commit, per partition: a failed commit is retried only if
    /// no later one was sent since.
    last_sent: HashMap<i32, i64>,
    /// When to retry failed commits if no finished batch commits before.
    retry_at: Option<Instant>,
    /// A batch finished since the last commit: something may have become committable.
    finished: bool,
    /// Offset of the last message consumed, per assigned partition.
    positions: HashMap<i32, i64>,
    assigned: BTreeSet<i32>,
    /// Whether the assigned partitions are paused; `None` after a rebalance, when the new
    /// assignment's state is unknown and must be set again.
    paused: Option<bool>,
    /// Since when every broker is unreachable.
    brokers_down_since: Option<Instant>,
}

impl ConsumerState {
    pub fn new(limits: Limits) -> Self {
        ConsumerState {
            limits,
            batch_id: 1,
            batch_len: 0,
            batch_started: None,
            in_flight: 0,
            tracker: OffsetTracker::default(),
            uncommitted: BTreeMap::new(),
            last_sent: HashMap::new(),
            retry_at: None,
            finished: false,
            positions: HashMap::new(),
            assigned: BTreeSet::new(),
            paused: None,
            brokers_down_since: None,
        }
    }

    /// Id of the batch being filled.
    pub fn batch_id(&self) -> u64 {
        self.batch_id
    }

    /// Messages in the batch being filled.
    pub fn batch_len(&self) -> usize {
        self.batch_len
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether another batch may be handed to the writer.
    pub fn has_room(&self) -> bool {
        self.in_flight < self.limits.max_in_flight
    }

    /// How many more messages the current batch takes.
    pub fn room(&self) -> usize {
        self.limits.batch_size.saturating_sub(self.batch_len)
    }

    pub fn assigned(&self) -> &BTreeSet<i32> {
        &self.assigned
    }

    /// Since when every broker is unreachable (`None`: not now).
    pub fn brokers_down_since(&self) -> Option<Instant> {
        self.brokers_down_since
    }

    /// Offset of the last message consumed, per assigned partition (for the lag).
    pub fn positions(&self) -> &HashMap<i32, i64> {
        &self.positions
    }

    /// Per partition: how long its oldest message not yet committable has waited.
    pub fn oldest_uncommitted(&self, now: Instant) -> Vec<(i32, Duration)> {
        self.tracker.oldest_uncommitted(now)
    }

    /// How long the consumer may wait for messages before the next `Tick` is needed: until
    /// the batch is due, if it can be sent then; at most `idle`. With no room in flight only
    /// a finished batch or new messages make progress: a due time already past must not turn
    /// the wait into a spin while the sink is down.
    pub fn wait(&self, now: Instant, idle: Duration) -> Duration {
        let until_due = match self.batch_started {
            Some(s) if self.has_room() => (s + self.limits.max_wait).saturating_duration_since(now),
            _ => idle,
        };
        until_due.clamp(Duration::from_millis(1).min(idle), idle)
    }

    /// Feeds one event; answers what to do, in order.
    pub fn on(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Messages {
                partition,
                last,
                count,
                now,
            } => {
                self.batch_len += count;
                self.batch_started.get_or_insert(now);
                // Only partitions we own are tracked, and only forwards: a message of another
                // partition, or one already seen, is written but never committed by us.
                if self.assigned.contains(&partition)
                    && self.positions.get(&partition).is_none_or(|&p| last > p)
                {
                    self.positions.insert(partition, last);
                    self.tracker.record(partition, self.batch_id, last, now);
                }
            }
            Event::BatchDone { id, outcome } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                match outcome {
                    Outcome::Written => {
                        self.tracker.complete(id);
                        self.finished = true;
                    }
                    Outcome::Abandoned => {}
                    Outcome::Failed => out.push(Action::Fatal(Fatal::BatchFailed { id })),
                }
            }
            Event::Assigned(parts) => {
                self.assigned.extend(parts);
                self.paused = None;
            }
            Event::Revoked(parts) => {
                // Sends everything uncommitted, of every partition: nothing of these stays
                // to be retried (a failure reported later finds them no longer assigned).
                self.commit(true, &mut out);
                for p in &parts {
                    self.assigned.remove(p);
                    self.tracker.forget(*p);
                    self.last_sent.remove(p);
                    self.positions.remove(p);
                }
                self.paused = None;
            }
            Event::CommitFailed { offsets, now } => {
                let mut retry = Vec::new();
                for (p, o) in offsets {
                    // Retry for partitions still ours, unless a later commit superseded it (or
                    // it was sent before the partition was last assigned).
                    if self.assigned.contains(&p) && self.last_sent.get(&p) == Some(&o) {
                        let entry = self.uncommitted.entry(p).or_insert(o);
                        *entry = (*entry).max(o);
                        retry.push((p, o));
                    }
                }
                if !retry.is_empty() {
                    let at = now + COMMIT_RETRY;
                    self.retry_at = Some(at);
                    out.push(Action::CommitRetry { offsets: retry, at });
                }
            }
            Event::PauseFailed => self.paused = None,
            Event::BrokersDown(now) => {
                self.brokers_down_since.get_or_insert(now);
            }
            Event::BrokersUp => self.brokers_down_since = None,
            Event::ProbeFailed(now) => {
                if let Some(since) = self.brokers_down_since {
                    out.push(Action::Fatal(Fatal::BrokersDown {
                        down_for: now.saturating_duration_since(since),
                    }));
                }
            }
            Event::Tick(now) => {
                if self
                    .brokers_down_since
                    .is_some_and(|since| now >= since + self.limits.brokers_down_exit)
                {
                    out.push(Action::ProbeBrokers);
                }
                if self.finished || self.retry_at.is_some_and(|t| now >= t) {
                    self.commit(false, &mut out);
                }
                let due = self
                    .batch_started
                    .is_some_and(|s| now >= s + self.limits.max_wait);
                if self.batch_len >= self.limits.batch_size || due {
                    self.flush(&mut out);
                }
                // Backpressure: a full batch with no room to send it pauses the partitions;
                // polling goes on (group membership, callbacks) but fetches nothing.
                let blocked = self.batch_len >= self.limits.batch_size && !self.has_room();
                if Some(blocked) != self.paused {
                    self.paused = Some(blocked);
                    if !self.assigned.is_empty() {
                        let parts = self.assigned.iter().copied().collect();
                        out.push(if blocked {
                            Action::Pause(parts)
                        } else {
                            Action::Resume(parts)
                        });
                    }
                }
            }
            Event::Shutdown => self.commit(true, &mut out),
        }
        out
    }

    /// Flushes the current batch now, full or not, if it holds anything and there is room
    /// (revocation, shutdown): `Some(id)` of the batch to hand to the writer.
    pub fn force_flush(&mut self) -> Option<u64> {
        let mut out = Vec::new();
        self.flush(&mut out);
        match out.pop() {
            Some(Action::Flush { id }) => Some(id),
            _ => None,
        }
    }

    fn flush(&mut self, out: &mut Vec<Action>) {
        if self.batch_len == 0 || !self.has_room() {
            return;
        }
        out.push(Action::Flush { id: self.batch_id });
        self.batch_id += 1;
        self.batch_len = 0;
        self.batch_started = None;
        self.in_flight += 1;
    }

    /// Commits what became committable plus what failed before.
    fn commit(&mut self, sync: bool, out: &mut Vec<Action>) {
        self.retry_at = None;
        self.finished = false;
        for (p, o) in self.tracker.committable() {
            self.uncommitted.insert(p, o);
        }
        if self.uncommitted.is_empty() {
            return;
        }
        let offsets: Vec<(i32, i64)> = std::mem::take(&mut self.uncommitted).into_iter().collect();
        for &(p, o) in &offsets {
            self.last_sent.insert(p, o);
        }
        out.push(Action::Commit { offsets, sync });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        batch_size: 3,
        max_wait: Duration::from_secs(1),
        max_in_flight: 2,
        brokers_down_exit: Duration::from_secs(60),
    };

    fn msgs(st: &mut ConsumerState, partition: i32, last: i64, count: usize, now: Instant) {
        assert!(
            st.on(Event::Messages {
                partition,
                last,
                count,
                now
            })
            .is_empty()
        );
    }

    /// Batch `id` finished, written.
    fn written(st: &mut ConsumerState, id: u64) -> Vec<Action> {
        st.on(Event::BatchDone {
            id,
            outcome: Outcome::Written,
        })
    }

    /// Messages in a batch of their own, flushed and written: its id.
    fn through(st: &mut ConsumerState, partition: i32, last: i64, count: usize, t: Instant) -> u64 {
        msgs(st, partition, last, count, t);
        let id = st.force_flush().expect("room to flush");
        assert!(written(st, id).is_empty());
        id
    }

    fn commits(actions: &[Action]) -> Vec<(Vec<(i32, i64)>, bool)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Commit { offsets, sync } => Some((offsets.clone(), *sync)),
                _ => None,
            })
            .collect()
    }

    fn assigned(parts: &[i32]) -> ConsumerState {
        let mut st = ConsumerState::new(LIMITS);
        assert!(st.on(Event::Assigned(parts.to_vec())).is_empty());
        st
    }

    #[test]
    fn a_full_batch_is_flushed_and_its_offsets_committed_once_written() {
        let t = Instant::now();
        let mut st = assigned(&[0]);
        msgs(&mut st, 0, 2, 3, t);
        let a = st.on(Event::Tick(t));
        assert_eq!(a, vec![Action::Flush { id: 1 }, Action::Resume(vec![0])]);
        assert_eq!((st.batch_id(), st.batch_len(), st.in_flight()), (2, 0, 1));
        assert!(st.on(Event::Tick(t)).is_empty(), "nothing finished yet");
        assert!(written(&mut st, 1).is_empty());
        assert_eq!(commits(&st.on(Event::Tick(t))), vec![(vec![(0, 3)], false)]);
        assert!(st.on(Event::Tick(t)).is_empty(), "committed once");
    }

    #[test]
    fn a_batch_is_flushed_when_due_not_before() {
        let t = Instant::now();
        let mut st = assigned(&[0]);
        st.on(Event::Tick(t));
        msgs(&mut st, 0, 0, 1, t);
        assert!(
            st.on(Event::Tick(t + Duration::from_millis(999)))
                .is_empty()
        );
        assert_eq!(
            st.wait(t + Duration::from_millis(900), Duration::from_millis(100)),
            Duration::from_millis(100)
        );
        assert_eq!(
            st.wait(t + Duration::from_millis(950), Duration::from_millis(100)),
            Duration::from_millis(50)
        );
        assert_eq!(
            st.on(Event::Tick(t + Duration::from_secs(1))),
            vec![Action::Flush { id: 1 }]
        );
        assert!(
            st.on(Event::Tick(t + Duration::from_secs(5))).is_empty(),
            "empty batches are not flushed"
        );
    }

    #[test]
    fn a_full_batch_without_room_pauses_until_a_batch_finishes() {
        let t = Instant::now();
        let mut st = assigned(&[0, 1]);
        for (i, id) in [(2, 1), (5, 2)] {
            msgs(&mut st, 0, i, 3, t);
            assert!(st.on(Event::Tick(t)).contains(&Action::Flush { id }));
        }
        msgs(&mut st, 1, 2, 3, t);
        assert_eq!(st.on(Event::Tick(t)), vec![Action::Pause(vec![0, 1])]);
        assert_eq!(
            st.wait(t + Duration::from_secs(9), Duration::from_millis(100)),
            Duration::from_millis(100),
            "no spin while blocked"
        );
        assert!(st.on(Event::Tick(t)).is_empty(), "paused once");
        written(&mut st, 2);
        let a = st.on(Event::Tick(t));
        assert_eq!(
            a,
            vec![Action::Flush { id: 3 }, Action::Resume(vec![0, 1])],
            "batch 1 holds partition 0: no commit yet"
        );
        written(&mut st, 1);
        assert_eq!(commits(&st.on(Event::Tick(t))), vec![(vec![(0, 6)], false)]);
    }

    #[test]
    fn a_pause_that_failed_is_tried_again() {
        let t = Instant::now();
        let mut st = assigned(&[0]);
        assert_eq!(st.on(Event::Tick(t)), vec![Action::Resume(vec![0])]);
        st.on(Event::PauseFailed);
        assert_eq!(st.on(Event::Tick(t)), vec![Action::Resume(vec![0])]);
        assert!(st.on(Event::Tick(t)).is_empty());
    }

    #[test]
    fn revocation_commits_synchronously_and_forgets_the_partitions() {
        let t = Instant::now();
        let mut st = assigned(&[0, 1]);
        msgs(&mut st, 0, 10, 1, t);
        msgs(&mut st, 1, 20, 1, t);
        assert_eq!(st.force_flush(), Some(1));
        msgs(&mut st, 1, 21, 1, t);
        written(&mut st, 1);
        let a = st.on(Event::Revoked(vec![1]));
        assert_eq!(commits(&a), vec![(vec![(0, 11), (1, 21)], true)]);
        assert_eq!(st.assigned().iter().copied().collect::<Vec<_>>(), vec![0]);
        assert!(!st.positions().contains_key(&1));
        // Batch 2 holds partition 1's offset 21: revoked, it is never committed.
        assert_eq!(st.force_flush(), Some(2));
        written(&mut st, 2);
        assert!(commits(&st.on(Event::Tick(t))).is_empty());
        // Nor is a failed commit of it retried.
        assert!(
            st.on(Event::CommitFailed {
                offsets: vec![(1, 21)],
                now: t
            })
            .is_empty()
        );
        // Messages of a partition not ours are written but not tracked.
        msgs(&mut st, 1, 22, 1, t);
        assert_eq!(st.force_flush(), Some(3));
        written(&mut st, 3);
        assert!(commits(&st.on(Event::Tick(t))).is_empty());
    }

    #[test]
    fn a_failed_commit_is_retried_after_a_while_unless_superseded() {
        let t = Instant::now();
        let mut st = assigned(&[0, 1]);
        msgs(&mut st, 0, 4, 1, t);
        assert_eq!(through(&mut st, 1, 7, 1, t), 1);
        assert_eq!(
            commits(&st.on(Event::Tick(t))),
            vec![(vec![(0, 5), (1, 8)], false)]
        );
        assert_eq!(through(&mut st, 0, 5, 1, t), 2);
        assert_eq!(commits(&st.on(Event::Tick(t))), vec![(vec![(0, 6)], false)]);
        // The first commit fails late: partition 0 was committed further since.
        let a = st.on(Event::CommitFailed {
            offsets: vec![(0, 5), (1, 8)],
            now: t,
        });
        assert_eq!(
            a,
            vec![Action::CommitRetry {
                offsets: vec![(1, 8)],
                at: t + COMMIT_RETRY
            }]
        );
        assert!(
            st.on(Event::Tick(t + Duration::from_millis(999)))
                .is_empty()
        );
        assert_eq!(
            commits(&st.on(Event::Tick(t + COMMIT_RETRY))),
            vec![(vec![(1, 8)], false)]
        );
        assert!(st.on(Event::Tick(t + COMMIT_RETRY * 2)).is_empty());
    }

    #[test]
    fn a_failed_batch_is_fatal_and_an_abandoned_one_stays_uncommitted() {
        let t = Instant::now();
        let mut st = assigned(&[0]);
        msgs(&mut st, 0, 1, 1, t);
        st.force_flush();
        msgs(&mut st, 0, 2, 1, t);
        st.force_flush();
        assert!(
            st.on(Event::BatchDone {
                id: 1,
                outcome: Outcome::Abandoned
            })
            .is_empty()
        );
        assert_eq!(
            st.on(Event::BatchDone {
                id: 2,
                outcome: Outcome::Failed
            }),
            vec![Action::Fatal(Fatal::BatchFailed { id: 2 })]
        );
        assert_eq!(st.in_flight(), 0);
        assert!(commits(&st.on(Event::Shutdown)).is_empty());
    }

    #[test]
    fn shutdown_commits_synchronously_what_is_finished() {
        let t = Instant::now();
        let mut st = assigned(&[0]);
        msgs(&mut st, 0, 1, 2, t);
        assert_eq!(st.force_flush(), Some(1));
        assert_eq!(st.force_flush(), None, "empty");
        written(&mut st, 1);
        assert_eq!(commits(&st.on(Event::Shutdown)), vec![(vec![(0, 2)], true)]);
    }

    #[test]
    fn offsets_already_seen_are_not_tracked_again() {
        let t = Instant::now();
        let mut st = assigned(&[0]);
        assert_eq!(through(&mut st, 0, 9, 1, t), 1);
        assert_eq!(
            commits(&st.on(Event::Tick(t))),
            vec![(vec![(0, 10)], false)]
        );
        assert_eq!(through(&mut st, 0, 3, 1, t), 2);
        assert!(
            commits(&st.on(Event::Tick(t))).is_empty(),
            "never backwards"
        );
    }

    #[test]
    fn brokers_down_too_long_are_probed_once_more_then_fatal() {
        let t = Instant::now();
        let mut st = assigned(&[0]);
        st.on(Event::Tick(t));
        assert!(st.on(Event::BrokersDown(t)).is_empty());
        assert!(
            st.on(Event::BrokersDown(t + Duration::from_secs(30)))
                .is_empty()
        );
        assert_eq!(
            st.brokers_down_since(),
            Some(t),
            "the outage began at the first"
        );
        assert!(st.on(Event::Tick(t + Duration::from_secs(59))).is_empty());
        assert_eq!(
            st.on(Event::Tick(t + Duration::from_secs(60))),
            vec![Action::ProbeBrokers]
        );
        // The probe reached a broker: the outage is over, the clock starts again.
        st.on(Event::BrokersUp);
        assert!(st.on(Event::Tick(t + Duration::from_secs(61))).is_empty());
        st.on(Event::BrokersDown(t + Duration::from_secs(70)));
        assert!(st.on(Event::Tick(t + Duration::from_secs(129))).is_empty());
        assert_eq!(
            st.on(Event::Tick(t + Duration::from_secs(130))),
            vec![Action::ProbeBrokers]
        );
        assert_eq!(
            st.on(Event::ProbeFailed(t + Duration::from_secs(132))),
            vec![Action::Fatal(Fatal::BrokersDown {
                down_for: Duration::from_secs(62)
            })]
        );
        // A probe failing after the outage ended is not fatal.
        st.on(Event::BrokersUp);
        assert!(st.on(Event::ProbeFailed(t)).is_empty());
    }

    /// Random event orders against a model of what the consumer owns, consumed and finished.
    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        const PARTITIONS: i32 = 4;

        #[derive(Debug, Clone)]
        enum Op {
            Messages {
                partition: i32,
                count: usize,
            },
            /// Finish the in-flight batch at this index (of those in flight, by id).
            Done {
                pick: usize,
                outcome: Outcome,
            },
            Assign(Vec<i32>),
            Revoke(Vec<i32>),
            /// Fail the commit at this index of those sent so far.
            CommitFailed(usize),
            PauseFailed,
            Tick {
                ms: u64,
            },
            ForceFlush,
            BrokersDown,
            BrokersUp,
            Shutdown,
        }

        fn op() -> impl Strategy<Value = Op> {
            let parts = proptest::collection::vec(0..PARTITIONS, 1..=PARTITIONS as usize);
            prop_oneof![
                6 => (0..PARTITIONS, 1..4usize)
                    .prop_map(|(partition, count)| Op::Messages { partition, count }),
                4 => (any::<usize>(), prop_oneof![
                    8 => Just(Outcome::Written),
                    1 => Just(Outcome::Abandoned),
                    1 => Just(Outcome::Failed),
                ]).prop_map(|(pick, outcome)| Op::Done { pick, outcome }),
                1 => parts.clone().prop_map(Op::Assign),
                1 => parts.prop_map(Op::Revoke),
                1 => any::<usize>().prop_map(Op::CommitFailed),
                1 => Just(Op::PauseFailed),
                4 => (0..1500u64).prop_map(|ms| Op::Tick { ms }),
                1 => Just(Op::ForceFlush),
                1 => Just(Op::BrokersDown),
                1 => Just(Op::BrokersUp),
                1 => Just(Op::Shutdown),
            ]
        }

        /// A message consumed while its partition was assigned (assignment `epoch`).
        #[derive(Debug, Clone, Copy)]
        struct Msg {
            partition: i32,
            offset: i64,
            epoch: Option<u32>,
        }

        #[derive(Default)]
        struct Model {
            assigned: BTreeSet<i32>,
            epoch: HashMap<i32, u32>,
            next_offset: HashMap<i32, i64>,
            batch: Vec<Msg>,
            batch_started: Option<Instant>,
            in_flight: BTreeMap<u64, Vec<Msg>>,
            /// Per (partition, epoch): offset → written.
            consumed: HashMap<(i32, u32), BTreeMap<i64, bool>>,
            /// Per (partition, epoch): the last commit emitted.
            committed: HashMap<(i32, u32), i64>,
            /// Per partition, any epoch: the last commit emitted (where a new owner starts).
            last_commit: HashMap<i32, i64>,
            sent: Vec<Vec<(i32, i64)>>,
            /// Applied pause state; `None` after a rebalance or a failed pause.
            paused: Option<bool>,
            brokers_down: Option<Instant>,
        }

        impl Model {
            /// Checks the actions answering one event against the properties; applies them.
            fn actions(
                &mut self,
                actions: &[Action],
                assigned_before: &BTreeSet<i32>,
            ) -> Result<(), TestCaseError> {
                for a in actions {
                    match a {
                        Action::Flush { .. } => {}
                        Action::Pause(parts) | Action::Resume(parts) => {
                            prop_assert_eq!(
                                parts.iter().copied().collect::<BTreeSet<_>>(),
                                self.assigned.clone()
                            );
                            self.paused = Some(matches!(a, Action::Pause(_)));
                        }
                        Action::Commit { offsets, .. } => {
                            for &(p, o) in offsets {
                                prop_assert!(
                                    assigned_before.contains(&p),
                                    "commit of {p} not assigned"
                                );
                                let e = self.epoch[&p];
                                let msgs = self.consumed.get(&(p, e)).cloned().unwrap_or_default();
                                prop_assert!(
                                    msgs.contains_key(&(o - 1)),
                                    "commit {o} of {p}: not a consumed offset + 1"
                                );
                                for (&off, &written) in msgs.range(..o) {
                                    prop_assert!(
                                        written,
                                        "commit {o} of {p} passes unfinished {off}"
                                    );
                                }
                                if let Some(&before) = self.committed.get(&(p, e)) {
                                    prop_assert!(
                                        o >= before,
                                        "commit of {p} went back: {before} → {o}"
                                    );
                                }
                                self.committed.insert((p, e), o);
                                self.last_commit.insert(p, o);
                            }
                            self.sent.push(offsets.clone());
                        }
                        Action::CommitRetry { offsets, .. } => {
                            for (p, _) in offsets {
                                prop_assert!(self.assigned.contains(p));
                            }
                        }
                        Action::Fatal(_) | Action::ProbeBrokers => {}
                    }
                }
                Ok(())
            }

            /// Marks a batch's messages written (those consumed while assigned).
            fn written(&mut self, msgs: Vec<Msg>) {
                for msg in msgs {
                    if let Some(e) = msg.epoch
                        && let Some(w) = self
                            .consumed
                            .get_mut(&(msg.partition, e))
                            .and_then(|c| c.get_mut(&msg.offset))
                    {
                        *w = true;
                    }
                }
            }

            fn flushes(&mut self, actions: &[Action]) {
                for a in actions {
                    if let Action::Flush { id } = a {
                        self.in_flight.insert(*id, std::mem::take(&mut self.batch));
                        self.batch_started = None;
                    }
                }
            }
        }

        fn run(ops: Vec<Op>, limits: Limits) -> Result<(), TestCaseError> {
            let mut st = ConsumerState::new(limits);
            let mut m = Model::default();
            let mut now = Instant::now();
            for op in ops {
                let before = m.assigned.clone();
                let actions = match op {
                    Op::Messages { partition, count } => {
                        if st.room() == 0 {
                            continue; // the consumer takes no more than the batch holds
                        }
                        let count = count.min(st.room());
                        let next = m.next_offset.entry(partition).or_default();
                        let epoch = m.assigned.contains(&partition).then(|| m.epoch[&partition]);
                        for _ in 0..count {
                            let msg = Msg {
                                partition,
                                offset: *next,
                                epoch,
                            };
                            if let Some(e) = epoch {
                                m.consumed
                                    .entry((partition, e))
                                    .or_default()
                                    .insert(*next, false);
                            }
                            m.batch.push(msg);
                            *next += 1;
                        }
                        m.batch_started.get_or_insert(now);
                        st.on(Event::Messages {
                            partition,
                            last: *next - 1,
                            count,
                            now,
                        })
                    }
                    Op::Done { pick, outcome } => {
                        if m.in_flight.is_empty() {
                            continue;
                        }
                        let id = *m.in_flight.keys().nth(pick % m.in_flight.len()).unwrap();
                        let msgs = m.in_flight.remove(&id).unwrap();
                        if outcome == Outcome::Written {
                            m.written(msgs);
                        }
                        let a = st.on(Event::BatchDone { id, outcome });
                        let fatal = outcome == Outcome::Failed;
                        prop_assert_eq!(
                            a.clone(),
                            if fatal {
                                vec![Action::Fatal(Fatal::BatchFailed { id })]
                            } else {
                                vec![]
                            }
                        );
                        a
                    }
                    Op::Assign(parts) => {
                        let new: Vec<i32> = parts
                            .into_iter()
                            .filter(|p| !m.assigned.contains(p))
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .collect();
                        if new.is_empty() {
                            continue;
                        }
                        for &p in &new {
                            *m.epoch.entry(p).or_default() += 1;
                            m.assigned.insert(p);
                            // The new owner starts where the group committed.
                            m.next_offset
                                .insert(p, m.last_commit.get(&p).copied().unwrap_or(0));
                        }
                        m.paused = None;
                        st.on(Event::Assigned(new))
                    }
                    Op::Revoke(parts) => {
                        let gone: Vec<i32> = parts
                            .into_iter()
                            .filter(|p| m.assigned.contains(p))
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .collect();
                        if gone.is_empty() {
                            continue;
                        }
                        let a = st.on(Event::Revoked(gone.clone()));
                        m.actions(&a, &before)?;
                        prop_assert!(
                            a.iter()
                                .all(|a| matches!(a, Action::Commit { sync: true, .. })),
                            "a revocation only commits, synchronously"
                        );
                        for p in &gone {
                            m.assigned.remove(p);
                        }
                        m.paused = None;
                        continue;
                    }
                    Op::CommitFailed(pick) => {
                        if m.sent.is_empty() {
                            continue;
                        }
                        let offsets = m.sent[pick % m.sent.len()].clone();
                        let a = st.on(Event::CommitFailed { offsets, now });
                        prop_assert!(
                            a.iter().all(|a| matches!(a, Action::CommitRetry { .. })),
                            "a failed commit is only retried"
                        );
                        a
                    }
                    Op::PauseFailed => {
                        m.paused = None;
                        st.on(Event::PauseFailed)
                    }
                    Op::Tick { ms } => {
                        now += Duration::from_millis(ms);
                        let a = st.on(Event::Tick(now));
                        m.flushes(&a);
                        m.actions(&a, &before)?;
                        // The brokers are probed exactly when they have been down too long.
                        prop_assert_eq!(
                            a.contains(&Action::ProbeBrokers),
                            m.brokers_down
                                .is_some_and(|s| now >= s + limits.brokers_down_exit)
                        );
                        // A full batch, or a due one, is flushed when there is room.
                        let room = m.in_flight.len() < limits.max_in_flight;
                        if room {
                            prop_assert!(m.batch.len() < limits.batch_size);
                            prop_assert!(m.batch_started.is_none_or(|s| now < s + limits.max_wait));
                        }
                        // Paused exactly while a full batch has no room to go.
                        let blocked = m.batch.len() >= limits.batch_size && !room;
                        if !m.assigned.is_empty() {
                            prop_assert_eq!(m.paused, Some(blocked));
                        }
                        continue;
                    }
                    Op::ForceFlush => {
                        if let Some(id) = st.force_flush() {
                            m.flushes(&[Action::Flush { id }]);
                        }
                        continue;
                    }
                    Op::BrokersDown => {
                        m.brokers_down.get_or_insert(now);
                        st.on(Event::BrokersDown(now))
                    }
                    Op::BrokersUp => {
                        m.brokers_down = None;
                        st.on(Event::BrokersUp)
                    }
                    Op::Shutdown => {
                        let a = st.on(Event::Shutdown);
                        prop_assert!(
                            a.iter()
                                .all(|a| matches!(a, Action::Commit { sync: true, .. })),
                            "stopping only commits, synchronously"
                        );
                        a
                    }
                };
                m.flushes(&actions);
                m.actions(&actions, &before)?;
                prop_assert!(m.in_flight.len() <= limits.max_in_flight);
                prop_assert_eq!(st.in_flight(), m.in_flight.len());
                prop_assert_eq!(st.batch_len(), m.batch.len());
            }

            // Everything in flight and in the batch finishes: every finished message whose
            // predecessors (this assignment) finished is committed.
            loop {
                if let Some(id) = st.force_flush() {
                    m.flushes(&[Action::Flush { id }]);
                }
                let Some((id, msgs)) = m.in_flight.pop_first() else {
                    break;
                };
                m.written(msgs);
                st.on(Event::BatchDone {
                    id,
                    outcome: Outcome::Written,
                });
            }
            now += COMMIT_RETRY * 2;
            let before = m.assigned.clone();
            let a = st.on(Event::Tick(now));
            m.actions(&a, &before)?;
            for &p in &m.assigned {
                let e = m.epoch[&p];
                let msgs = m.consumed.get(&(p, e)).cloned().unwrap_or_default();
                let prefix = msgs.iter().take_while(|(_, w)| **w).last();
                if let Some((&last, _)) = prefix {
                    prop_assert_eq!(
                        m.committed.get(&(p, e)).copied(),
                        Some(last + 1),
                        "partition {} not committed to its finished end",
                        p
                    );
                }
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn random_event_orders_keep_the_commit_invariants(
                ops in proptest::collection::vec(op(), 0..120),
                batch_size in 1..6usize,
                max_in_flight in 1..4usize,
            ) {
                run(ops, Limits {
                    batch_size,
                    max_wait: Duration::from_secs(1),
                    max_in_flight,
                    brokers_down_exit: Duration::from_secs(3),
                })?;
            }
        }
    }
}
