//! Dead letters: rejected messages, raw payload unchanged, to an optional Kafka topic with
//! headers naming the reason and the source topic/partition/offset.
//!
//! A dead letter is acknowledged by Kafka before the batch it belongs to counts as finished,
//! so its source offset is never committed first. Without a topic, rejects are logged
//! (rate-limited) and counted.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::sink::{WriteError, backoff};

/// One rejected message.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    /// Stable label (`invalid_json`, `unrepresentable`, `influxdb_rejected`, …).
    pub reason: &'static str,
    /// The full explanation.
    pub detail: String,
    /// The raw Kafka payload (empty when no dead-letter topic keeps it).
    pub payload: Bytes,
}

/// Sends dead letters for one source topic.
pub struct DeadLetters {
    pub source_topic: String,
    /// `(producer, topic)` when dead-lettering is configured.
    pub target: Option<(FutureProducer, String)>,
    pub shutdown: CancellationToken,
    limiter: Mutex<RateLimit>,
}

impl DeadLetters {
    pub fn new(
        source_topic: String,
        target: Option<(FutureProducer, String)>,
        shutdown: CancellationToken,
    ) -> Self {
        DeadLetters {
            source_topic,
            target,
            shutdown,
            limiter: Mutex::new(RateLimit::new(10, Duration::from_secs(10))),
        }
    }

    /// Logs (rate-limited) and, with a topic, produces the dead letter until Kafka acknowledges
    /// it or shutdown is requested.
    pub async fn send(&self, d: &DeadLetter) -> Result<(), WriteError> {
        let dlq = self.target.as_ref().map(|(_, t)| t.as_str()).unwrap_or("");
        let suppressed = self
            .limiter
            .lock()
            .map(|mut l| l.allow())
            .unwrap_or(Some(0));
        if let Some(suppressed) = suppressed {
            tracing::warn!(
                topic = %self.source_topic,
                partition = d.partition,
                offset = d.offset,
                reason = d.reason,
                error = %d.detail,
                dead_letter_topic = dlq,
                suppressed_since_last = suppressed,
                "message rejected"
            );
        }
        let Some((producer, topic)) = &self.target else {
            return Ok(());
        };
        let (partition, offset) = (d.partition.to_string(), d.offset.to_string());
        let mut attempt = 0;
        loop {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "reason",
                    value: Some(d.reason),
                })
                .insert(Header {
                    key: "error",
                    value: Some(d.detail.as_str()),
                })
                .insert(Header {
                    key: "source_topic",
                    value: Some(self.source_topic.as_str()),
                })
                .insert(Header {
                    key: "source_partition",
                    value: Some(partition.as_str()),
                })
                .insert(Header {
                    key: "source_offset",
                    value: Some(offset.as_str()),
                });
            let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(topic)
                .payload(&d.payload[..])
                .headers(headers);
            let sent = tokio::select! {
                r = producer.send(record, Duration::from_secs(30)) => r,
                _ = self.shutdown.cancelled() => return Err(WriteError::ShuttingDown),
            };
            match sent {
                Ok(_) => return Ok(()),
                Err((e, _)) if is_permanent(&e) => {
                    // Retrying cannot help; holding the batch would stop the partition for good.
                    tracing::error!(
                        dead_letter_topic = %topic,
                        topic = %self.source_topic,
                        partition = d.partition,
                        offset = d.offset,
                        error = %e,
                        "dead letter cannot be produced; the message is logged here only"
                    );
                    return Ok(());
                }
                Err((e, _)) => {
                    let wait = backoff(
                        attempt,
                        Duration::from_millis(200),
                        Duration::from_secs(30),
                        0.5,
                    );
                    tracing::warn!(dead_letter_topic = %topic, error = %e, attempt, "producing a dead letter failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.shutdown.cancelled() => return Err(WriteError::ShuttingDown),
                    }
                    attempt += 1;
                }
            }
        }
    }
}

/// Producer errors that no retry can fix (the message itself is refused).
fn is_permanent(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize | C::InvalidMessage | C::InvalidRecord)
    )
}

/// At most `max` events per `window`; reports how many were suppressed before the next one
/// it lets through.
#[derive(Debug)]
pub struct RateLimit {
    max: u32,
    window: Duration,
    start: Instant,
    seen: u32,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(max: u32, window: Duration) -> Self {
        RateLimit {
            max,
            window,
            start: Instant::now(),
            seen: 0,
            suppressed: 0,
        }
    }

    /// `Some(suppressed before this one)` when this event may be logged.
    pub fn allow(&mut self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    /// [`Self::allow`] with the clock passed in (tests drive it).
    fn allow_at(&mut self, now: Instant) -> Option<u64> {
        if now.saturating_duration_since(self.start) >= self.window {
            self.start = now;
            self.seen = 0;
        }
        if self.seen < self.max {
            self.seen += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_lets_max_through_per_window_and_counts_the_rest() {
        let mut r = RateLimit::new(2, Duration::from_secs(10));
        let t0 = r.start;
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(r.allow_at(at(0)), Some(0));
        assert_eq!(r.allow_at(at(1)), Some(0));
        assert_eq!(r.allow_at(at(2)), None);
        assert_eq!(r.allow_at(at(9)), None);
        // A new window: the first event through reports the two suppressed.
        assert_eq!(r.allow_at(at(10)), Some(2));
        assert_eq!(r.allow_at(at(11)), Some(0));
        assert_eq!(r.allow_at(at(12)), None);
        assert_eq!(r.allow_at(at(25)), Some(1));
    }
}
