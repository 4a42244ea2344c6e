//! librdkafka's callbacks for one consumer: each forwards to the worker in a few lines.
//!
//! Owns the filtering of librdkafka's log lines and client errors (what is worth a warning)
//! and the forwarding of assigned partitions to our batch queue. Must never decide pipeline
//! policy (that is the worker's) or poll (callbacks run inside `poll`).

use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::client::Client;
use super::queue::{ConsumerQueue, MessageQueue};
use crate::config::Redactor;
use crate::pipeline::PipelineStats;
use crate::pipeline::flush::Flusher;
use crate::pipeline::worker::Worker;

/// One consumer's context: its worker and the queues of ours its client feeds.
pub struct Ctx {
    /// The poll loop and the callbacks run on the consumer's thread, one at a time; the mutex
    /// satisfies `ConsumerContext: Sync`. Nothing holds it across a poll (the worker's
    /// [`Kafka`](crate::pipeline::ports::Kafka) port has none).
    worker: Mutex<Worker<Flusher>>,
    /// Where assigned partitions' messages go.
    pub queue: MessageQueue,
    /// The consumer queue: pending events, async commit results.
    pub events: ConsumerQueue,
    /// The topic, for forwarding its partitions.
    pub topic: std::ffi::CString,
    pub label: String,
    /// For the counters the poll loop bumps without taking the worker.
    pub stats: Arc<PipelineStats>,
    /// Scrubs secret property values from librdkafka's log lines and errors.
    redactor: Redactor,
}

impl Ctx {
    pub fn new(
        worker: Worker<Flusher>,
        topic: std::ffi::CString,
        stats: Arc<PipelineStats>,
        redactor: Redactor,
    ) -> Self {
        Ctx {
            label: worker.label().to_owned(),
            worker: Mutex::new(worker),
            queue: MessageQueue::closed(),
            events: ConsumerQueue::closed(),
            topic,
            stats,
            redactor,
        }
    }

    pub fn worker(&self) -> MutexGuard<'_, Worker<Flusher>> {
        // A panic while holding the lock leaves the worker usable; keep going.
        self.worker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Errors librdkafka reports for every failed attempt to connect to a broker.
pub fn connection_error(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::SSL
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::AllBrokersDown
        )
    )
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        let msg = self.redactor.redact(msg);
        match level {
            // A failed broker connection at error level: librdkafka sends the same text as an
            // error event, which `error` logs (and keeps quiet while every broker is down).
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
                if fac == "FAIL" =>
            {
                tracing::debug!(consumer = %self.label, facility = fac, "librdkafka: {msg}")
            }
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                tracing::warn!(consumer = %self.label, facility = fac, "librdkafka: {msg}")
            }
            _ => tracing::debug!(consumer = %self.label, facility = fac, "librdkafka: {msg}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reason = self.redactor.redact(reason);
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            // librdkafka repeats this on every poll while it lasts: log the transition only.
            self.worker().brokers_lost(&reason);
        } else if self.worker().brokers_down() && connection_error(&error) {
            // Every reconnect fails again, and librdkafka's own suppression of repeats (same
            // text as the one before, for 30 s) does not hold: a failed TLS handshake comes in
            // two texts. The failure that took the last broker down was logged just before the
            // outage began (it is queued before "all brokers are down").
            tracing::debug!(consumer = %self.label, error = %error, "Kafka client error: {reason}");
        } else {
            tracing::warn!(consumer = %self.label, error = %error, "Kafka client error: {reason}");
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.worker()
                .revoking(&Client::new(consumer), partitions(tpl));
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let mut error = result.as_ref().err().map(|e| e.to_string());
        let mut failed = Vec::new();
        for el in offsets.elements() {
            let Offset::Offset(o) = el.offset() else {
                continue;
            };
            if let Err(e) = el.error() {
                error.get_or_insert_with(|| e.to_string());
                failed.push((el.partition(), o));
            } else if result.is_err() {
                failed.push((el.partition(), o));
            }
        }
        self.worker().commit_answered(failed, error);
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let parts = partitions(tpl);
                let mut worker = self.worker();
                for &p in &parts {
                    // SAFETY: the client is alive while it runs this callback.
                    let forwarded = unsafe {
                        self.queue
                            .forward(consumer.client().native_ptr(), &self.topic, p)
                    };
                    if !forwarded {
                        // Its messages would never arrive: stop (exit 1; systemd restarts us).
                        tracing::error!(consumer = %self.label, partition = p, "cannot forward an assigned partition to the batch queue; stopping");
                        worker.fail();
                    }
                }
                worker.assigned(&Client::new(consumer), parts);
            }
            // Done before the partitions went (`pre_rebalance`).
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(consumer = %self.label, error = %e, "rebalance failed")
            }
        }
    }
}
