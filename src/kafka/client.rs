//! The worker's [`Kafka`] port on a live consumer: pause, resume, commit, probe, watermark.
//!
//! Owns the translation to librdkafka calls. Must never poll: the worker calls these from
//! inside librdkafka's callbacks too.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::context::Ctx;
use crate::pipeline::ports::Kafka;

/// How long a probe waits for a broker's metadata answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A consumer as the worker sees it (valid for one call into the worker).
pub struct Client<'a> {
    consumer: &'a BaseConsumer<Ctx>,
}

impl<'a> Client<'a> {
    pub fn new(consumer: &'a BaseConsumer<Ctx>) -> Self {
        Client { consumer }
    }

    fn topic(&self) -> &str {
        self.consumer.context().topic.to_str().unwrap_or_default()
    }

    fn list(&self, partitions: &[i32]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition(self.topic(), p);
        }
        tpl
    }
}

impl Kafka for Client<'_> {
    fn pause(&self, partitions: &[i32]) -> Result<(), String> {
        (self.consumer.pause(&self.list(partitions))).map_err(|e| e.to_string())
    }

    fn resume(&self, partitions: &[i32]) -> Result<(), String> {
        (self.consumer.resume(&self.list(partitions))).map_err(|e| e.to_string())
    }

    fn commit(&self, offsets: &[(i32, i64)], sync: bool) -> Result<(), String> {
        let mut tpl = TopicPartitionList::new();
        for &(p, o) in offsets {
            tpl.add_partition_offset(self.topic(), p, Offset::Offset(o))
                .map_err(|e| format!("cannot build commit: {e}"))?;
        }
        if sync {
            self.consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(|e| e.to_string())
        } else {
            // SAFETY: on the consumer thread, while the client lives (the queue is closed
            // before it is destroyed).
            unsafe {
                (self.consumer.context().events).commit(self.consumer.client().native_ptr(), &tpl)
            }
            .map_err(|e| e.to_string())
        }
    }

    fn brokers_reachable(&self) -> bool {
        (self.consumer)
            .fetch_metadata(Some(self.topic()), PROBE_TIMEOUT)
            .is_ok()
    }

    /// The high watermark librdkafka last saw (cached, no request).
    fn high_watermark(&self, partition: i32) -> Option<i64> {
        let topic = &self.consumer.context().topic;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client pointer is valid for the consumer's lifetime, `topic` is a
        // NUL-terminated string that outlives the call, and librdkafka only writes the two
        // out-parameters. rust-rdkafka exposes only the network variant of this call.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
                &mut low,
                &mut high,
            )
        };
        (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
            .then_some(high)
    }
}
