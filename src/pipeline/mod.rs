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
//! Policy only, no librdkafka: the `kafka` module drives each consumer's [`worker::Worker`].
//! One file per stage: [`batch`] (messages into a batch: the `Batcher`), [`state`] (the
//! decisions: when to flush, pause, resume, commit what, give up; fed events, answering
//! actions, no I/O, property-tested), [`worker`] (carries the actions out through two small
//! ports, `Kafka` and `Flush`; unit-tested with fakes), [`flush`] (a batch written and its
//! rejects dead-lettered on the runtime), [`offsets`] (what is committable per partition).

pub mod batch;
pub mod flush;
pub mod offsets;
pub mod ports;
pub mod series;
pub mod state;
pub mod unreadable;
pub mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::convert::Kind;
use crate::sink::WriteError;
use crate::stats::{Labelled, Seconds};
use batch::Routing;

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
    /// With several destinations (or tenants routed): which one this pipeline writes to.
    /// None: the only one, taking every tenant.
    pub destination: Option<Place>,
}

/// A pipeline's destination among several.
#[derive(Debug, Clone)]
pub struct Place {
    /// Which tenants each destination takes.
    pub routes: Arc<crate::config::Routes>,
    /// This one's index in `routes` (0: the first, which dead-letters rejects and unrouted
    /// messages).
    pub index: usize,
    /// Its name (`influxdb` for the first), in the logs of its writes.
    pub name: String,
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
    /// Cancelled on SIGTERM/SIGINT (or when one consumer gave up): stop fetching, finish,
    /// commit, leave.
    pub stop: CancellationToken,
    /// Each consumer thread sends its label here when it ends, however it ends (a drop
    /// guard), so the daemon wakes on the first one that ends on its own.
    pub exits: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// Test hook: the next batch handed to the writer fails (its task panics).
    #[doc(hidden)]
    pub inject_batch_failure: AtomicBool,
}

/// How a consumer thread ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Asked to stop: everything written was committed.
    Stopped,
    /// It could not go on (every broker unreachable too long, a failed batch): the daemon
    /// exits 1.
    Fatal,
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
