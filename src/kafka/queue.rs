//! Batch consumption from librdkafka, below rust-rdkafka.
//!
//! Owns our librdkafka queue handles and the unsafe code around them. Must never hand out a
//! message after `release`, or outlive the client (closed before it is destroyed).
//!
//! rust-rdkafka's `poll` hands out one message per call, each as its own event: a queue pop
//! with clock reads, an event object and an `Arc`. Measured on the daemon, that was about as
//! much CPU as decoding and encoding the message. Here every assigned partition's fetch
//! queue is forwarded into one queue of ours, which is drained with
//! `rd_kafka_consume_batch_queue`: one call, one lock round per message, for up to a batch.
//!
//! The consumer's own queue still carries everything else (rebalances, commit results,
//! errors), served by rust-rdkafka's `poll`, which also returns the messages of a partition
//! that was never forwarded. [`ConsumerQueue`] is our handle on it: to know whether events
//! wait there, and as the reply queue of asynchronous commits.
//!
//! Asynchronous commits: rust-rdkafka's `commit(…, CommitMode::Async)` calls `rd_kafka_commit`,
//! and librdkafka (2.12, `rd_kafka_cgrp_propagate_commit_result`) sends the result of a manual
//! async commit nowhere: `ConsumerContext::commit_callback` only ever sees automatic commits. A
//! commit that failed (during a rebalance, say) went unnoticed and, with no later commit for
//! its partition, was never retried: the group stayed behind what was written (seen on the
//! mock cluster). `rd_kafka_commit_queue` takes a reply queue; we pass the consumer's own, so
//! each result comes back through `poll` as an offset-commit event, to `commit_callback`.
//!
//! librdkafka facts this relies on (librdkafka 2.12, `rdkafka_queue.c`/`rdkafka_partition.c`):
//! - `rd_kafka_queue_forward` marks the partition queue as forwarded by the application, so
//!   a later fetch start does not re-point it at the consumer queue; messages already queued
//!   move along with the forward.
//! - Stopping a partition (revocation, pause) bumps its version: messages of the old version
//!   still in our queue are dropped by `rd_kafka_consume_batch_queue`, not returned.
//! - A stopped partition's forward is cleared but its "forwarded by the application" flag is
//!   not, so a partition once forwarded and then assigned again without a new forward would
//!   fill a queue nobody reads: every assignment must be forwarded (a failure is an error).
//! - `rd_kafka_consume_batch_queue` waits until it has the number asked for or the timeout
//!   passes, and moves the partition's application position past what it returns.

use std::ffi::{CStr, c_int};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::topic_partition_list::TopicPartitionList;

use crate::pipeline::ports::Fetch;
use crate::pipeline::unreadable::Cause;

/// Messages taken from the queue; they are librdkafka's until [`Fetched::release`] (also on
/// drop), so this must not outlive the client.
pub struct Fetched {
    messages: Vec<*mut rd::rd_kafka_message_t>,
}

impl Fetched {
    pub fn with_capacity(n: usize) -> Self {
        Fetched {
            messages: Vec::with_capacity(n),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Fetch<'_>> {
        self.messages.iter().map(|&m| {
            // SAFETY: every pointer came from `rd_kafka_consume_batch_queue` and is valid until
            // `release`, which needs `&mut self`; librdkafka does not touch a returned message.
            let m = unsafe { &*m };
            // SAFETY: `payload` is null or points at `len` bytes owned by the message.
            let bytes = if m.payload.is_null() {
                &[][..]
            } else {
                unsafe { std::slice::from_raw_parts(m.payload as *const u8, m.len) }
            };
            if m.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                Fetch::Message {
                    partition: m.partition,
                    offset: m.offset,
                    payload: bytes,
                }
            } else {
                let code = RDKafkaErrorCode::from(m.err);
                if code == RDKafkaErrorCode::PartitionEOF {
                    // Only delivered when the operator enabled `enable.partition.eof`.
                    return Fetch::End {
                        partition: m.partition,
                    };
                }
                // For errors, the payload is librdkafka's description.
                let detail = String::from_utf8_lossy(bytes);
                Fetch::Error {
                    partition: m.partition,
                    cause: cause(code, &detail),
                    detail,
                }
            }
        })
    }

    /// Gives the messages back to librdkafka.
    pub fn release(&mut self) {
        for m in self.messages.drain(..) {
            // SAFETY: each message is destroyed once; `drain` removes it from the list.
            unsafe { rd::rd_kafka_message_destroy(m) };
        }
    }
}

impl Drop for Fetched {
    fn drop(&mut self) {
        self.release();
    }
}

/// A librdkafka queue handle of ours: null until set once the client exists, destroyed
/// before the client is. The atomic only satisfies `Sync`; one thread uses it.
#[derive(Debug)]
struct QueueHandle(AtomicPtr<rd::rd_kafka_queue_t>);

impl QueueHandle {
    fn null() -> Self {
        QueueHandle(AtomicPtr::new(ptr::null_mut()))
    }

    /// Takes ownership of `q` (destroying a handle set before).
    ///
    /// # Safety
    /// `q` is a handle from librdkafka that nothing else destroys.
    unsafe fn set(&self, q: *mut rd::rd_kafka_queue_t) {
        let old = self.0.swap(q, Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: set by us, no longer reachable.
            unsafe { rd::rd_kafka_queue_destroy(old) };
        }
    }

    /// The handle, or null.
    fn get(&self) -> *mut rd::rd_kafka_queue_t {
        self.0.load(Ordering::Acquire)
    }

    /// Destroys the handle; later calls find it null.
    ///
    /// # Safety
    /// Not while another thread uses the handle.
    unsafe fn destroy(&self) {
        // SAFETY: per this function's contract, and `swap` makes it once only.
        unsafe { self.set(ptr::null_mut()) };
    }
}

/// The queue all assigned partitions are forwarded to. Opened after the client exists and
/// closed before it is destroyed (`close`); until opened and after closed, it does nothing.
#[derive(Debug)]
pub struct MessageQueue {
    queue: QueueHandle,
}

impl MessageQueue {
    pub fn closed() -> Self {
        MessageQueue {
            queue: QueueHandle::null(),
        }
    }

    /// Creates the queue on client `rk`.
    ///
    /// # Safety
    /// `rk` must be a live consumer handle that stays alive until [`MessageQueue::close`].
    pub unsafe fn open(&self, rk: *mut rd::rd_kafka_t) {
        // SAFETY: per this function's contract; the new queue is ours alone.
        unsafe { self.queue.set(rd::rd_kafka_queue_new(rk)) };
    }

    /// Forwards `partition` of `topic` here. False if the queue is closed or librdkafka has
    /// no such partition (`rd_kafka_queue_get_partition` creates missing ones, so in practice
    /// only after `close`).
    ///
    /// # Safety
    /// `rk` must be the live handle the queue was opened on.
    pub unsafe fn forward(&self, rk: *mut rd::rd_kafka_t, topic: &CStr, partition: i32) -> bool {
        let q = self.queue.get();
        if q.is_null() {
            return false;
        }
        // SAFETY: `rk` is live (contract), `topic` is NUL-terminated; the returned handle is
        // ours to destroy, and the forward it sets lives in the partition, not in the handle.
        unsafe {
            let part = rd::rd_kafka_queue_get_partition(rk, topic.as_ptr(), partition);
            if part.is_null() {
                return false;
            }
            rd::rd_kafka_queue_forward(part, q);
            rd::rd_kafka_queue_destroy(part);
        }
        true
    }

    /// Waits up to `timeout` for `max` messages and puts what came (possibly nothing) in
    /// `into`, after releasing what it held.
    ///
    /// # Safety
    /// Not concurrently with [`MessageQueue::close`] or `open` (the consumer thread calls
    /// all three; the rebalance callbacks that `forward` run on it too).
    pub unsafe fn consume(&self, timeout: Duration, max: usize, into: &mut Fetched) -> usize {
        into.release();
        let q = self.queue.get();
        if q.is_null() || max == 0 {
            return 0;
        }
        into.messages.reserve(max);
        let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: the queue is open (not null) and the array has room for `max` pointers;
        // librdkafka writes at most `max` of them and returns how many, or -1.
        let n = unsafe { rd::rd_kafka_consume_batch_queue(q, ms, into.messages.as_mut_ptr(), max) };
        let n = usize::try_from(n).unwrap_or(0).min(max);
        // SAFETY: the first `n` entries were written by librdkafka.
        unsafe { into.messages.set_len(n) };
        n
    }

    /// Destroys the queue (purging what it holds). Must run before the client is destroyed.
    ///
    /// # Safety
    /// Not concurrently with [`MessageQueue::consume`] or [`MessageQueue::forward`].
    pub unsafe fn close(&self) {
        // SAFETY: per this function's contract.
        unsafe { self.queue.destroy() };
    }
}

/// The consumer's own queue, the one rust-rdkafka's `poll` serves (rebalances, commit
/// results, client errors, librdkafka's log lines): held to ask whether events wait there,
/// and as the reply queue of asynchronous commits (see the module header).
///
/// `poll` with no timeout serves an event other than a message or an error (a log line, a
/// rebalance, a commit result) and then answers `None`, as for an empty queue; and librdkafka
/// queues log lines ahead of everything else (higher priority). Polling until the first `None`
/// took one log line per turn, fewer than librdkafka logs while a TLS handshake fails (it
/// reconnected ~20 times a second, logging several failures a second): the error events
/// behind them, "all brokers are down" among them, came seconds late or not at all.
#[derive(Debug)]
pub struct ConsumerQueue {
    queue: QueueHandle,
}

impl ConsumerQueue {
    pub fn closed() -> Self {
        ConsumerQueue {
            queue: QueueHandle::null(),
        }
    }

    /// Takes a handle on the consumer queue of client `rk`.
    ///
    /// # Safety
    /// `rk` must be a live consumer handle that stays alive until [`ConsumerQueue::close`].
    pub unsafe fn open(&self, rk: *mut rd::rd_kafka_t) {
        // SAFETY: per this function's contract; the handle is a new reference of ours (null
        // without a group, and then every commit fails with `UnknownGroup`).
        unsafe { self.queue.set(rd::rd_kafka_queue_get_consumer(rk)) };
    }

    /// Whether events wait (false when closed).
    ///
    /// # Safety
    /// Not concurrently with [`ConsumerQueue::close`] or `open`.
    pub unsafe fn pending(&self) -> bool {
        let q = self.queue.get();
        // SAFETY: an open handle, not destroyed meanwhile (contract).
        !q.is_null() && unsafe { rd::rd_kafka_queue_length(q) } > 0
    }

    /// Starts committing `offsets`; the result arrives as a `commit_callback`. An error here
    /// means the commit was not even started.
    ///
    /// # Safety
    /// `rk` must be the live handle the queue was opened on; not concurrently with `close`.
    pub unsafe fn commit(
        &self,
        rk: *mut rd::rd_kafka_t,
        offsets: &TopicPartitionList,
    ) -> Result<(), RDKafkaErrorCode> {
        let q = self.queue.get();
        if q.is_null() {
            return Err(RDKafkaErrorCode::UnknownGroup);
        }
        // SAFETY: `rk` and `q` are live (contract); librdkafka copies the list; no callback,
        // so the result is queued on `q` as an event.
        let err =
            unsafe { rd::rd_kafka_commit_queue(rk, offsets.ptr(), q, None, std::ptr::null_mut()) };
        if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Ok(())
        } else {
            Err(err.into())
        }
    }

    /// Gives the handle back. Must run before the client is destroyed.
    ///
    /// # Safety
    /// Not concurrently with `pending`, `commit` or `open`.
    pub unsafe fn close(&self) {
        // SAFETY: per this function's contract.
        unsafe { self.queue.destroy() };
    }
}

/// Classifies a consume error librdkafka reported for one partition.
pub fn cause(code: RDKafkaErrorCode, detail: &str) -> Cause {
    use RDKafkaErrorCode as C;
    if detail.starts_with("Decompression") || matches!(code, C::BadCompression | C::NotImplemented)
    {
        Cause::Decompression
    } else if detail.contains("CRC") {
        Cause::Crc
    } else if matches!(code, C::BadMessage | C::InvalidMessage | C::InvalidRecord) {
        Cause::Corrupt
    } else {
        Cause::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_code_and_text() {
        use RDKafkaErrorCode as C;
        let detail = "Decompression (codec 0x4) of message at 0 of 62636 bytes failed: Local: Not implemented";
        assert_eq!(cause(C::NotImplemented, detail), Cause::Decompression);
        assert_eq!(cause(C::BadCompression, "whatever"), Cause::Decompression);
        assert_eq!(
            cause(
                C::BadMessage,
                "Message at offset 7 (batch) CRC check failed"
            ),
            Cause::Crc
        );
        assert_eq!(cause(C::BadMessage, "Truncated batch"), Cause::Corrupt);
        assert_eq!(cause(C::InvalidMessage, "broker: corrupt"), Cause::Corrupt);
        assert_eq!(
            cause(C::TopicAuthorizationFailed, "not allowed"),
            Cause::Other
        );
    }
}
