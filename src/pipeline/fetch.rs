//! Batch consumption from librdkafka, below rust-rdkafka.
//!
//! rust-rdkafka's `poll` hands out one message per call, each as its own event: a queue pop
//! with clock reads, an event object and an `Arc`. Measured on the daemon, that was about as
//! much CPU as decoding and encoding the message. Here every assigned partition's fetch
//! queue is forwarded into one queue of ours, which is drained with
//! `rd_kafka_consume_batch_queue`: one call, one lock round per message, for up to a batch.
//!
//! The consumer's own queue still carries everything else (rebalances, commit results,
//! errors), served by rust-rdkafka's `poll`, which also returns the messages of a partition
//! that was never forwarded.
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

use std::borrow::Cow;
use std::ffi::{CStr, c_int};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::error::RDKafkaErrorCode;

/// One fetched item: a message, or a per-partition error librdkafka delivers in its place.
#[derive(Debug)]
pub enum Fetch<'a> {
    Message {
        partition: i32,
        offset: i64,
        payload: &'a [u8],
    },
    Error {
        partition: i32,
        code: RDKafkaErrorCode,
        detail: Cow<'a, str>,
    },
}

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
                // For errors, the payload is librdkafka's description.
                Fetch::Error {
                    partition: m.partition,
                    code: RDKafkaErrorCode::from(m.err),
                    detail: String::from_utf8_lossy(bytes),
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
pub(super) struct QueueHandle(AtomicPtr<rd::rd_kafka_queue_t>);

impl QueueHandle {
    pub(super) fn null() -> Self {
        QueueHandle(AtomicPtr::new(ptr::null_mut()))
    }

    /// Takes ownership of `q` (destroying a handle set before).
    ///
    /// # Safety
    /// `q` is a handle from librdkafka that nothing else destroys.
    pub(super) unsafe fn set(&self, q: *mut rd::rd_kafka_queue_t) {
        let old = self.0.swap(q, Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: set by us, no longer reachable.
            unsafe { rd::rd_kafka_queue_destroy(old) };
        }
    }

    /// The handle, or null.
    pub(super) fn get(&self) -> *mut rd::rd_kafka_queue_t {
        self.0.load(Ordering::Acquire)
    }

    /// Destroys the handle; later calls find it null.
    ///
    /// # Safety
    /// Not while another thread uses the handle.
    pub(super) unsafe fn destroy(&self) {
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
/// results, client errors, librdkafka's log lines), held only to ask whether events wait there.
///
/// `poll` with no timeout serves an event other than a message or an error (a log line, a
/// rebalance, a commit result) and then answers `None`, as for an empty queue; and librdkafka
/// queues log lines ahead of everything else (higher priority). Polling until the first `None`
/// took one log line per turn, fewer than librdkafka logs while a TLS handshake fails (it
/// reconnected ~20 times a second, logging several failures a second): the error events
/// behind them, "all brokers are down" among them, came seconds late or not at all.
#[derive(Debug)]
pub struct EventQueue {
    queue: QueueHandle,
}

impl EventQueue {
    pub fn closed() -> Self {
        EventQueue {
            queue: QueueHandle::null(),
        }
    }

    /// Takes a handle on the consumer queue of client `rk`.
    ///
    /// # Safety
    /// `rk` must be a live consumer handle that stays alive until [`EventQueue::close`].
    pub unsafe fn open(&self, rk: *mut rd::rd_kafka_t) {
        // SAFETY: per this function's contract; the new handle (null if `rk` has no consumer
        // group) is ours alone.
        unsafe { self.queue.set(rd::rd_kafka_queue_get_consumer(rk)) };
    }

    /// Whether events wait (false when closed).
    ///
    /// # Safety
    /// Not concurrently with [`EventQueue::close`] or `open`.
    pub unsafe fn pending(&self) -> bool {
        let q = self.queue.get();
        // SAFETY: an open handle, not destroyed meanwhile (contract).
        !q.is_null() && unsafe { rd::rd_kafka_queue_length(q) } > 0
    }

    /// Gives the handle back. Must run before the client is destroyed.
    ///
    /// # Safety
    /// Not concurrently with [`EventQueue::pending`].
    pub unsafe fn close(&self) {
        // SAFETY: per this function's contract.
        unsafe { self.queue.destroy() };
    }
}
