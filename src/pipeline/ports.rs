//! The worker's ports: what a consumer's [`Worker`](super::worker::Worker) asks of Kafka and
//! of the write side, and what Kafka hands it. The `kafka` module and [`Flusher`](super::flush::Flusher)
//! implement them for the daemon; the worker's unit tests implement them with fakes.
//!
//! Owns the contracts. Must never grow a poll: the worker runs inside librdkafka's callbacks
//! too, where polling again would re-enter it.

use std::borrow::Cow;
use std::time::Duration;

use super::Done;
use super::batch::PendingBatch;
use super::unreadable::Cause;

/// What the worker asks of its Kafka consumer. No poll: the worker runs inside librdkafka's
/// callbacks too, where polling again would re-enter it.
pub trait Kafka {
    /// Stops fetching `partitions` (backpressure).
    fn pause(&self, partitions: &[i32]) -> Result<(), String>;
    /// Fetches `partitions` again.
    fn resume(&self, partitions: &[i32]) -> Result<(), String>;
    /// Commits `(partition, next offset)` pairs. `sync` waits for the broker's answer
    /// (revocation, shutdown); otherwise the answer comes later as
    /// `Worker::commit_answered`. `Err`: the commit was not sent.
    fn commit(&self, offsets: &[(i32, i64)], sync: bool) -> Result<(), String>;
    /// Whether a broker answers a metadata request now.
    fn brokers_reachable(&self) -> bool;
    /// The high watermark of `partition` as last seen by the client (no request).
    fn high_watermark(&self, partition: i32) -> Option<i64>;
}

/// One item Kafka delivered for an assigned partition.
#[derive(Debug)]
pub enum Fetch<'a> {
    Message {
        partition: i32,
        offset: i64,
        payload: &'a [u8],
    },
    /// An error instead of the partition's messages (librdkafka repeats it while it lasts).
    Error {
        partition: i32,
        cause: Cause,
        detail: Cow<'a, str>,
    },
    /// The end of the partition (only with `enable.partition.eof`): nothing to do.
    End { partition: i32 },
}

/// What a consumer's worker asks of the write side: start a batch, hear when one finished.
/// The daemon's is [`Flusher`](super::flush::Flusher); the worker's unit tests use a fake that finishes batches when
/// the test says.
pub trait Flush {
    /// Starts writing `batch` (and dead-lettering its rejects), without waiting.
    fn start(&mut self, batch: PendingBatch);
    /// A batch that finished, if one did (no waiting).
    fn finished(&mut self) -> Option<Done>;
    /// Waits up to `timeout` for a batch to finish.
    fn wait_finished(&mut self, timeout: Duration) -> Option<Done>;
    /// Gives up this consumer's writes still in flight (they finish as abandoned); other
    /// consumers' writes go on.
    fn abandon(&mut self);
}
