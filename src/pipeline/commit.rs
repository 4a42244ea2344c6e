//! Asynchronous offset commits whose results come back.
//!
//! rust-rdkafka's `commit(…, CommitMode::Async)` calls `rd_kafka_commit`, and librdkafka
//! (2.12, `rd_kafka_cgrp_propagate_commit_result`) sends the result of a manual async commit
//! nowhere: `ConsumerContext::commit_callback` only ever sees automatic commits. A commit that
//! failed (during a rebalance, say) went unnoticed and, with no later commit for its partition,
//! was never retried: the group stayed behind what was written (seen on the mock cluster).
//!
//! `rd_kafka_commit_queue` takes a reply queue. We pass the consumer's own queue, so each
//! result comes back through `poll` as an offset-commit event, to `commit_callback`.

use rdkafka::bindings as rd;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::topic_partition_list::TopicPartitionList;

use super::fetch::QueueHandle;

/// A handle on the consumer's queue, for commit results.
#[derive(Debug)]
pub struct CommitQueue {
    queue: QueueHandle,
}

impl CommitQueue {
    pub fn closed() -> Self {
        CommitQueue {
            queue: QueueHandle::null(),
        }
    }

    /// Takes a handle on client `rk`'s consumer queue.
    ///
    /// # Safety
    /// `rk` must be a live consumer handle that stays alive until [`CommitQueue::close`].
    pub unsafe fn open(&self, rk: *mut rd::rd_kafka_t) {
        // SAFETY: per this function's contract; the handle is a new reference of ours (null
        // without a group, and then every commit fails with `UnknownGroup`).
        unsafe { self.queue.set(rd::rd_kafka_queue_get_consumer(rk)) };
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

    /// Drops the handle. Must run before the client is destroyed.
    ///
    /// # Safety
    /// Not concurrently with [`CommitQueue::commit`].
    pub unsafe fn close(&self) {
        // SAFETY: per this function's contract.
        unsafe { self.queue.destroy() };
    }
}
