//! Pipelines: Kafka partitions → batches of lines → the sink → commits.
//!
//! One pipeline per enabled topic, `num_processors` consumers each. A consumer runs on its own
//! OS thread (decode and encode never run on the async runtime's workers); it fills a batch,
//! hands it to the runtime to be written and dead-lettered, and keeps consuming while up to
//! `max_batches_in_flight` batches are in flight. Offsets are committed per partition only up
//! to where every message is written or dead-lettered ([`offsets`]). Must never: commit a
//! message that is not written or dead-lettered, commit for a partition it no longer owns, or
//! let memory grow while the sink cannot keep up (it pauses the partitions instead).
//!
//! Those decisions (when to flush, pause, resume, commit what, give up) are made by
//! [`state::ConsumerState`], fed events and answering actions, with no Kafka in it and so
//! tested on its own (property tests over random event orders); `consumer` runs the thread and
//! the librdkafka callbacks and carries the actions out.

pub mod batch;
mod commit;
mod consumer;
pub mod deadletter;
mod fetch;
pub mod offsets;
pub mod series;
pub mod state;
pub mod unreadable;

pub use consumer::{ConsumerHandle, spawn_consumer};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use crate::convert::Kind;
use crate::sink::{Batch, WriteError, Writer};
use crate::stats::{Labelled, Seconds};
use batch::{PendingBatch, Routing};
use deadletter::{DeadLetter, DeadLetters};

/// What every consumer of one pipeline needs.
pub struct PipelineSettings {
    /// `metrics` or `alarms`: logs and `group.instance.id`.
    pub name: &'static str,
    pub kind: Kind,
    pub topic: String,
    pub batch_size: usize,
    pub max_wait: Duration,
    pub max_batches_in_flight: usize,
    pub routing: Routing,
    /// How messages become lines: policy and line-protocol dialect.
    pub converter_policy: crate::Encoder,
    pub max_message_bytes: usize,
    /// librdkafka consumer properties (bootstrap, group, pass-through).
    pub consumer_properties: Vec<(String, String)>,
    /// Static membership: consumer `i` uses `<this>-<name>-<i>` as `group.instance.id`.
    pub group_instance_id: Option<String>,
    pub brokers_down_exit: Duration,
    pub shutdown_timeout: Duration,
    /// How often the consumer-lag gauge is refreshed.
    pub lag_interval: Duration,
    /// With a dead-letter topic: how long a database may refuse every write (403, bucket
    /// missing) before its lines are dead-lettered instead of waited for.
    pub database_refused: Duration,
    /// `max_hourly_series_per_tenant`: shared by this pipeline's consumers (None: off).
    pub series_limit: Option<Arc<series::SeriesLimit>>,
}

/// Counters shared by all consumers of all pipelines (the admin endpoint reads them).
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Messages rejected (converter or InfluxDB), dead-lettered or not.
    pub rejected: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub sanitized: AtomicU64,
    pub batches: AtomicU64,
    pub commits: AtomicU64,
    /// Calls that handed a consumer messages: one per batch taken from librdkafka, one per
    /// message that came through `poll` instead. `consumed / fetches` is the mean batch.
    pub fetches: AtomicU64,
    /// Batches handed to the runtime and not yet finished, summed over the consumers that
    /// share these stats (each holds at most `max_batches_in_flight`).
    pub batches_in_flight: AtomicI64,
    /// Consumed messages by (topic, partition), counted per fetch as they arrive.
    pub consumed_by: Labelled<(String, i32)>,
    /// Rejected messages by reason label.
    pub rejected_by: Labelled<&'static str>,
    /// Consumer lag by (topic, partition): cached high watermark minus position.
    pub lag: Labelled<(String, i32)>,
    /// Age in milliseconds of the oldest message consumed and not yet committable, by
    /// (topic, partition); 0 when none waits.
    pub oldest_uncommitted: Labelled<(String, i32)>,
    /// Partitions assigned, by consumer.
    pub assigned: Labelled<String>,
    /// Partitions paused for backpressure, by consumer.
    pub paused: Labelled<String>,
    /// 1 while a consumer finds every Kafka broker unreachable, by consumer.
    pub brokers_down: Labelled<String>,
    /// Errors librdkafka reported for one partition instead of its messages, by (topic,
    /// partition, cause label); see `unreadable`.
    pub read_errors: Labelled<(String, i32, &'static str)>,
    /// Partitions that cannot be read, by (topic, partition, cause label): since when, in
    /// milliseconds since the Unix epoch.
    pub unreadable_since: Labelled<(String, i32, &'static str)>,
    /// End-to-end latency of the points written, from their message's creation (a metric's
    /// `creation_time`, an alarm transition's `timestamp`) to InfluxDB's acknowledgement, by
    /// pipeline ([`Kind`] order: metrics, alarms). Messages without a creation time are not
    /// observed.
    pub end_to_end: [crate::stats::EndToEnd; 2],
    /// Time consumers spent waiting for and taking messages from librdkafka, and converting
    /// them (decode + encode into the batch).
    pub poll_seconds: Seconds,
    pub convert_seconds: Seconds,
}

impl PipelineStats {
    /// Messages consumed, all topics and partitions.
    pub fn consumed(&self) -> u64 {
        self.consumed_by
            .snapshot()
            .iter()
            .map(|(_, v)| *v as u64)
            .sum()
    }
}

/// Process-wide signals between the daemon and its consumers.
#[derive(Debug, Default)]
pub struct Control {
    /// Set on SIGTERM/SIGINT: stop fetching, finish, commit, leave.
    pub stop: AtomicBool,
    /// Set by a consumer that cannot go on (every broker unreachable too long, a failed
    /// batch): the daemon exits 1.
    pub fatal: AtomicBool,
    /// Test hook: the next batch handed to the writer fails (its task panics).
    #[doc(hidden)]
    pub inject_batch_failure: AtomicBool,
}

/// Why a batch did not finish.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Abandoned at shutdown.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Its task ended without a result (a panic): a bug, never expected.
    #[error("batch task failed: {0}")]
    Task(String),
}

/// A finished batch reported back to its consumer.
#[derive(Debug)]
pub struct Done {
    pub id: u64,
    /// `Ok` (with the buffers to reuse): every message written or dead-lettered; `Err`:
    /// abandoned at shutdown, or failed.
    pub result: Result<batch::Spare, BatchError>,
}

/// Observes the end-to-end latency of every line of a write that InfluxDB stored (all but
/// those `report` gives back as rejected or refused), now, in one update of `into`.
fn observe_latency(
    into: &crate::stats::Histogram,
    created: &[i64],
    report: &crate::sink::WriteReport,
) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut not_written: Vec<usize> = (report.refused.iter().chain(&report.rejected))
        .map(|r| r.index)
        .collect();
    not_written.sort_unstable();
    let mut skip = not_written.into_iter().peekable();
    let mut tally = crate::stats::Tally::default();
    for (i, &c) in created.iter().enumerate() {
        if skip.next_if_eq(&i).is_some() {
            continue;
        }
        if c > 0 {
            tally.observe_ms(into.bounds(), now_ms - c);
        }
    }
    into.add(&tally);
}

/// Writes a batch's lines and dead-letters its rejects; the consumer commits once it's `Ok`.
pub async fn process_batch(
    batch: PendingBatch,
    kind: Kind,
    writer: Writer,
    dead: Arc<DeadLetters>,
    stats: Arc<PipelineStats>,
    database_refused: Duration,
) -> Result<batch::Spare, WriteError> {
    let PendingBatch {
        groups,
        mut sources,
        payloads,
        rejected,
        over_limit,
        ..
    } = batch;
    let single = groups.len() == 1;
    let mut spare = batch::Spare::default();
    let payloads = payloads.freeze();
    let payload_of = |i: usize| -> Bytes { payloads.slice(sources[i].payload.clone()) };
    let mut letters: Vec<DeadLetter> = rejected
        .into_iter()
        .map(|(i, r)| DeadLetter {
            partition: sources[i].partition,
            offset: sources[i].offset,
            reason: r.reason(),
            detail: r.to_string(),
            payload: payload_of(i),
        })
        .chain(over_limit.into_iter().map(|(i, tenant)| DeadLetter {
            partition: sources[i].partition,
            offset: sources[i].offset,
            reason: "series_limit",
            detail: format!(
                "tenant {tenant:?} has reached max_hourly_series_per_tenant: this message would add a series beyond the limit in this hour"
            ),
            payload: payload_of(i),
        }))
        .collect();
    // One write per database, all at once: the writer's `max_in_flight` bounds how many run
    // (with a database per tenant, a batch holds many). Dropping the set (an early return)
    // aborts the rest.
    // A database that refuses us (a missing grant, a bucket that does not exist) holds back
    // only its own lines: with somewhere to put them, they are dead-lettered once it has
    // refused long enough; without, they wait (nothing is dropped).
    let refused_after = dead.target.is_some().then_some(database_refused);
    let mut writes = tokio::task::JoinSet::new();
    for g in groups.into_iter().filter(|g| !g.line_ends.is_empty()) {
        let writer = writer.clone();
        writes.spawn(async move {
            let body = Batch::new(g.lines, g.line_ends);
            let report = writer.write_or_give_up(&g.db, &body, refused_after).await;
            (body, g.sources, g.created, report)
        });
    }
    while let Some(joined) = writes.join_next().await {
        let (body, line_sources, created, report) = match joined {
            Ok(done) => done,
            // A panic in a write is the batch's: it fails (see `BatchError::Task`).
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return Err(WriteError::ShuttingDown),
        };
        let report = report?;
        observe_latency(&stats.end_to_end[kind as usize].0, &created, &report);
        let refused = report.refused.into_iter().map(|r| ("database_refused", r));
        let rejected = report
            .rejected
            .into_iter()
            .map(|r| ("influxdb_rejected", r));
        for (reason, r) in refused.chain(rejected) {
            let i = line_sources[r.index];
            letters.push(DeadLetter {
                partition: sources[i].partition,
                offset: sources[i].offset,
                reason,
                detail: r.reason,
                payload: payload_of(i),
            });
        }
        if single {
            spare.lines = body.body.try_into_mut().ok();
            spare.line_ends = body.line_ends;
            spare.line_sources = line_sources;
            spare.line_created = created;
        }
    }
    dead.send_all(&letters).await?;
    for d in &letters {
        stats.rejected_by.add(d.reason, 1);
    }
    stats
        .rejected
        .fetch_add(letters.len() as u64, Ordering::Relaxed);
    if dead.target.is_some() {
        stats
            .dead_lettered
            .fetch_add(letters.len() as u64, Ordering::Relaxed);
    }
    stats.batches.fetch_add(1, Ordering::Relaxed);
    drop(letters);
    spare.payloads = payloads.try_into_mut().ok();
    sources.clear();
    spare.sources = sources;
    Ok(spare)
}

#[cfg(test)]
mod latency_tests {
    use super::*;
    use crate::sink::{RejectedLine, WriteReport};

    #[test]
    fn only_stored_lines_with_a_creation_time_are_observed() {
        let h = crate::stats::Histogram::with_bounds(crate::stats::END_TO_END_BOUNDS);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let line = |index| RejectedLine {
            index,
            reason: String::new(),
        };
        let report = WriteReport {
            written: 3,
            rejected: vec![line(1)],
            refused: vec![line(4)],
            requests: 1,
        };
        // Lines 0, 2, 3 stored; 3 has no creation time; 1 rejected, 4 refused.
        let created = [now - 2_000, now, now - 700_000, 0, now];
        observe_latency(&h, &created, &report);
        assert_eq!(h.count(), 2);
        let mut out = String::new();
        h.render_samples(&mut out, "l", "");
        assert!(out.contains("l_bucket{le=\"2.5\"} 1\n"), "{out}");
        assert!(out.contains("l_bucket{le=\"600\"} 1\n"), "{out}");
        assert!(out.contains("l_bucket{le=\"1800\"} 2\n"), "{out}");
    }
}
