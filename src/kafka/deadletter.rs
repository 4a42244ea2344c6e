//! Dead letters: rejected messages, raw payload unchanged, to an optional Kafka topic with
//! headers naming the reason and the source topic/partition/offset.
//!
//! A dead letter is acknowledged by Kafka before the batch it belongs to counts as finished,
//! so its source offset is never committed first. Without a topic, rejects are logged
//! (rate-limited) and counted.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::sink::WriteError;

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
    limiter: Mutex<crate::stats::RateLimit>,
    /// The destination whose writes these letters' rejects came from, as a `destination`
    /// header (None: the first destination, or the only one).
    destination: Option<String>,
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
            limiter: Mutex::new(crate::stats::RateLimit::new(10, Duration::from_secs(10))),
            destination: None,
        }
    }

    /// Letters from destination `name`'s consumers carry a `destination` header.
    pub fn for_destination(mut self, name: &str) -> Self {
        self.destination = Some(name.to_owned());
        self
    }

    /// Logs each rejected message (rate-limited) and, with a topic, produces them all until
    /// Kafka acknowledged every one or shutdown is requested. All are enqueued first and their
    /// delivery reports awaited together, so a batch of many rejects costs about one round
    /// trip, not one per message; the failed ones are retried with backoff.
    pub async fn send_all(&self, letters: &[DeadLetter]) -> Result<(), WriteError> {
        for d in letters {
            self.log(d);
        }
        let Some((producer, topic)) = &self.target else {
            return Ok(());
        };
        for window in letters.chunks(WINDOW) {
            self.send_window(producer, topic, window).await?;
        }
        Ok(())
    }

    /// Produces `letters` together and waits until Kafka acknowledged each (retrying).
    async fn send_window(
        &self,
        producer: &FutureProducer,
        topic: &str,
        letters: &[DeadLetter],
    ) -> Result<(), WriteError> {
        let mut pending: Vec<&DeadLetter> = letters.iter().collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            let mut failed = Vec::new();
            let mut deliveries = Vec::with_capacity(pending.len());
            let mut last_error = None;
            for d in pending {
                match self.enqueue(producer, topic, d).await? {
                    Enqueued::Delivery(delivery) => deliveries.push((d, delivery)),
                    Enqueued::Settled => {}
                    Enqueued::Failed(e) => {
                        last_error = Some(e);
                        failed.push(d);
                    }
                }
            }
            for (d, delivery) in deliveries {
                let report = tokio::select! {
                    r = delivery => r,
                    _ = self.shutdown.cancelled() => return Err(WriteError::ShuttingDown),
                };
                match report {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) if is_permanent(&e) => self.unproducible(topic, d, &e),
                    Ok(Err((e, _))) => {
                        last_error = Some(e);
                        failed.push(d);
                    }
                    // The producer dropped the report (only when it is being destroyed).
                    Err(_) => return Err(WriteError::ShuttingDown),
                }
            }
            if let Some(e) = last_error {
                let wait = crate::retry::wait(
                    attempt,
                    Duration::from_millis(200),
                    Duration::from_secs(30),
                );
                tracing::warn!(dead_letter_topic = %topic, error = %e, failed = failed.len(), attempt, "producing dead letters failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.shutdown.cancelled() => return Err(WriteError::ShuttingDown),
                }
                attempt += 1;
            }
            pending = failed;
        }
        Ok(())
    }

    fn log(&self, d: &DeadLetter) {
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
    }

    /// Hands one dead letter to the producer; waits while the producer's queue is full.
    async fn enqueue(
        &self,
        producer: &FutureProducer,
        topic: &str,
        d: &DeadLetter,
    ) -> Result<Enqueued, WriteError> {
        let (partition, offset) = (d.partition.to_string(), d.offset.to_string());
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
            let headers = match &self.destination {
                Some(name) => headers.insert(Header {
                    key: "destination",
                    value: Some(name.as_str()),
                }),
                None => headers,
            };
            let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(topic)
                .payload(&d.payload[..])
                .headers(headers);
            match producer.send_result(record) {
                Ok(delivery) => return Ok(Enqueued::Delivery(delivery)),
                Err((e, _))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    // librdkafka's queue is full of our own dead letters: let it drain.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                        _ = self.shutdown.cancelled() => return Err(WriteError::ShuttingDown),
                    }
                }
                Err((e, _)) if is_permanent(&e) => {
                    self.unproducible(topic, d, &e);
                    return Ok(Enqueued::Settled);
                }
                Err((e, _)) => return Ok(Enqueued::Failed(e)),
            }
        }
    }

    /// A dead letter Kafka refuses for good: logged here only. Retrying cannot help and
    /// holding the batch would stop the partition for good.
    fn unproducible(&self, topic: &str, d: &DeadLetter, e: &rdkafka::error::KafkaError) {
        tracing::error!(
            dead_letter_topic = %topic,
            topic = %self.source_topic,
            partition = d.partition,
            offset = d.offset,
            error = %e,
            "dead letter cannot be produced; the message is logged here only"
        );
    }
}

/// The most dead letters in flight at once. Sending a batch's rejects together saves a round
/// trip each; more at once saves little, and tansu 0.6 (sqlite) was seen to stall for minutes,
/// at full CPU and answering nothing, with 20 000 of them produced at once while the same
/// daemon fetched from it.
const WINDOW: usize = 1000;

/// What handing a dead letter to the producer came to.
enum Enqueued {
    /// Queued: its delivery report is to come.
    Delivery(rdkafka::producer::DeliveryFuture),
    /// Refused for good (logged): nothing more to do.
    Settled,
    /// Refused for now: try again.
    Failed(rdkafka::error::KafkaError),
}

/// Producer errors that no retry can fix (the message itself is refused).
fn is_permanent(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize | C::InvalidMessage | C::InvalidRecord)
    )
}
