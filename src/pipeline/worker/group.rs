//! What the consumer group and the brokers tell a worker: partitions assigned and revoked,
//! commit answers, brokers lost and back, and the stop.
//!
//! Owns the order of what a revocation and a shutdown do (flush, wait, commit synchronously,
//! forget). Must never leave a revoked partition's gauges behind or commit an abandoned batch.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Worker;
use crate::pipeline::ports::{Flush, Kafka};
use crate::pipeline::state::{Action, Event};

impl<F: Flush> Worker<F> {
    /// Every broker is unreachable (librdkafka repeats it while it lasts: logged and gauged
    /// once per outage).
    pub fn brokers_lost(&mut self, reason: &str) {
        if self.machine.brokers_down_since().is_none() {
            self.stats.brokers_down.set(self.label.clone(), 1);
            tracing::error!(consumer = %self.label, "all Kafka brokers are down: {reason}");
        }
        let actions = self.machine.on(Event::BrokersDown(Instant::now()));
        debug_assert!(actions.is_empty());
    }

    /// A broker answered; ends an outage (logged once, with its length).
    pub(super) fn brokers_back(&mut self) {
        if let Some(t) = self.machine.brokers_down_since() {
            self.stats.brokers_down.set(self.label.clone(), 0);
            tracing::info!(consumer = %self.label, outage_seconds = t.elapsed().as_secs_f64(), "Kafka brokers reachable again");
            let actions = self.machine.on(Event::BrokersUp);
            debug_assert!(actions.is_empty());
        }
    }

    /// Partitions were assigned to this consumer.
    pub fn assigned(&mut self, kafka: &impl Kafka, parts: Vec<i32>) {
        self.feed(kafka, Event::Assigned(parts.clone()));
        tracing::info!(consumer = %self.label, partitions = ?parts, "partitions assigned");
        self.publish_assigned();
    }

    /// Partitions are about to be taken from this consumer: flush and wait (up to the
    /// shutdown timeout), so what was consumed from them is committed by us before their
    /// new owner starts; whatever cannot finish in time is not committed (the new owner
    /// consumes it again: at-least-once, and InfluxDB overwrites the identical points). A
    /// batch that cannot be sent within the in-flight bound stays (it is written later; its
    /// revoked partitions' offsets are forgotten), so rebalances during an outage do not
    /// pile up batches.
    pub fn revoking(&mut self, kafka: &impl Kafka, parts: Vec<i32>) {
        let deadline = Instant::now() + self.settings.shutdown_timeout;
        self.flush_by(kafka, deadline);
        self.wait_all(kafka, deadline);
        // Commits synchronously, then forgets the partitions. What stays uncommitted (the
        // coordinator refused: librdkafka's mock cluster answers REBALANCE_IN_PROGRESS
        // while the group waits for this very member to rejoin, so no retry inside the
        // callback can help; Kafka accepts commits of the current generation then) is read
        // again by the partitions' next owner: at-least-once, and the rewritten points are
        // identical.
        let actions = self.machine.on(Event::Revoked(parts.clone()));
        let failed = self.apply(kafka, actions);
        let pending: Vec<(i32, i64)> = failed
            .into_iter()
            .filter(|(p, _)| parts.contains(p))
            .collect();
        if !pending.is_empty() {
            tracing::warn!(consumer = %self.label, offsets = ?pending, "could not commit revoked partitions; their next owner reads these messages again");
        }
        let topic = &self.settings.topic;
        for &p in &parts {
            // Its lag is now the new owner's to report.
            self.stats.lag.remove(&(topic.clone(), p));
            self.stats.oldest_uncommitted.remove(&(topic.clone(), p));
            crate::pipeline::unreadable::clear(&self.stats, topic, p);
        }
        self.unreadable.forget(&parts);
        tracing::info!(consumer = %self.label, partitions = ?parts, in_flight = self.machine.in_flight(), "partitions revoked");
        self.publish_assigned();
    }

    /// Partitions assigned, for `/metrics`. Counted here rather than asked of librdkafka:
    /// during close, once the last partitions are unassigned the group handle may terminate,
    /// and librdkafka then drops requests such as `rd_kafka_assignment` unanswered (seen on
    /// the mock cluster: a consumer that never finished stopping).
    fn publish_assigned(&self) {
        let n = self.machine.assigned().len() as i64;
        self.stats.assigned.set(self.label.clone(), n);
    }

    /// The broker answered an asynchronous commit: `failed` lists the offsets it did not
    /// take, `error` why (None: all committed).
    pub fn commit_answered(&mut self, failed: Vec<(i32, i64)>, error: Option<String>) {
        let Some(e) = error else {
            self.stats.commits.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let actions = self.machine.on(Event::CommitFailed {
            offsets: failed,
            now: Instant::now(),
        });
        let mut retried = false;
        for a in actions {
            if let Action::CommitRetry { offsets, .. } = a {
                retried = true;
                tracing::warn!(consumer = %self.label, error = %e, offsets = ?offsets, "offset commit failed; will retry");
            }
        }
        if !retried {
            tracing::info!(consumer = %self.label, error = %e, "offset commit failed for partitions no longer ours or already committed further");
        }
    }

    /// Stopping: flushes (within the in-flight bound), waits for in-flight writes up to the
    /// shutdown timeout (then abandons them: they stay uncommitted), and commits
    /// synchronously what was written.
    pub fn shut_down(&mut self, kafka: &impl Kafka) {
        self.drain(kafka);
        let deadline = Instant::now() + self.settings.shutdown_timeout;
        if !self.flush_by(kafka, deadline) && self.machine.batch_len() > 0 {
            tracing::warn!(consumer = %self.label, messages = self.machine.batch_len(), "shutdown timeout: no room to send the last batch in time; it stays uncommitted");
        }
        self.wait_all(kafka, deadline);
        if self.machine.in_flight() > 0 {
            tracing::warn!(consumer = %self.label, in_flight = self.machine.in_flight(), "shutdown timeout: abandoning in-flight writes (they stay uncommitted)");
            self.flusher.abandon();
            self.wait_all(kafka, Instant::now() + Duration::from_secs(5));
        }
        self.feed(kafka, Event::Shutdown);
    }
}
