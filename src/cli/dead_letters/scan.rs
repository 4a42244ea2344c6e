//! Reading what waits on a dead-letter topic: from the replay group's committed offset on
//! each partition to the end the partition had when the scan began.
//!
//! Owns the reading order and its end. Must never read past that end (letters moved there by
//! the run itself wait for the next run) or stop before it without an error.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{DeadLetterError, KAFKA_TIMEOUT, REPLAY_GROUP};
use crate::config::{Config, Redactor};

/// A Kafka client config: the config's properties (TLS, SASL) on `brokers`.
pub(super) fn client(config: &Config, brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in &config.kafka.properties {
        c.set(k, v);
    }
    c
}

/// Each partition's end offset when the scan began.
type Ends = Vec<(i32, i64)>;

/// Turns librdkafka's errors on `topic` into ours, secrets scrubbed.
fn kafka_error<'a>(
    topic: &'a str,
    redactor: &'a Redactor,
    what: &'static str,
) -> impl Fn(rdkafka::error::KafkaError) -> DeadLetterError + 'a {
    move |e| DeadLetterError::Kafka {
        topic: topic.to_owned(),
        what,
        detail: redactor.error(&e),
    }
}

/// Reads every letter of `topic` that waits (from the replay group's committed offset to the
/// end the topic has now), calling `each` on them; returns the end of each partition read.
pub(super) fn scan(
    config: &Config,
    redactor: &Redactor,
    brokers: &str,
    topic: &str,
    each: impl FnMut(&BorrowedMessage<'_>) -> Result<(), DeadLetterError>,
) -> Result<(BaseConsumer, Ends), DeadLetterError> {
    let kafka = |what| kafka_error(topic, redactor, what);
    let consumer: BaseConsumer = client(config, brokers)
        .set("group.id", REPLAY_GROUP)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(kafka("creating the consumer"))?;
    let partitions = partitions(&consumer, topic, redactor)?;
    let (ends, next) = waiting(&consumer, topic, &partitions, redactor)?;
    if next.is_empty() {
        return Ok((consumer, ends));
    }
    let mut assign = TopicPartitionList::new();
    for (&p, &from) in &next {
        assign
            .add_partition_offset(topic, p, Offset::Offset(from))
            .map_err(kafka("assigning its partitions"))?;
    }
    consumer
        .assign(&assign)
        .map_err(kafka("assigning its partitions"))?;
    read_to_ends(&consumer, topic, &ends, next, redactor, each)?;
    Ok((consumer, ends))
}

/// The partitions of `topic` (an error if it has none).
fn partitions(
    consumer: &BaseConsumer,
    topic: &str,
    redactor: &Redactor,
) -> Result<Vec<i32>, DeadLetterError> {
    let meta = consumer
        .fetch_metadata(Some(topic), KAFKA_TIMEOUT)
        .map_err(kafka_error(topic, redactor, "reading its metadata"))?;
    let partitions: Vec<i32> = meta
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(DeadLetterError::Kafka {
            topic: topic.to_owned(),
            what: "reading its metadata",
            detail: "no such topic (or no partitions)".into(),
        });
    }
    Ok(partitions)
}

/// Each partition's end now, and where the letters still waiting begin on the partitions
/// that have some.
fn waiting(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    redactor: &Redactor,
) -> Result<(Ends, BTreeMap<i32, i64>), DeadLetterError> {
    let kafka = |what| kafka_error(topic, redactor, what);
    let mut asked = TopicPartitionList::new();
    for &p in partitions {
        asked.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(asked, KAFKA_TIMEOUT)
        .map_err(kafka("reading the replay group's offsets"))?;
    let mut ends = Vec::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for &p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, KAFKA_TIMEOUT)
            .map_err(kafka("reading its offsets"))?;
        let from = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o.max(low),
            _ => low,
        };
        ends.push((p, high));
        if from < high {
            next.insert(p, from);
        }
    }
    Ok((ends, next))
}

/// Reads the assigned partitions until each reaches its end in `ends`, calling `each` on
/// every letter before it.
fn read_to_ends(
    consumer: &BaseConsumer,
    topic: &str,
    ends: &[(i32, i64)],
    mut next: BTreeMap<i32, i64>,
    redactor: &Redactor,
    mut each: impl FnMut(&BorrowedMessage<'_>) -> Result<(), DeadLetterError>,
) -> Result<(), DeadLetterError> {
    let end_of = |p: i32| ends.iter().find(|(q, _)| *q == p).map_or(0, |(_, e)| *e);
    let mut last_progress = Instant::now();
    while !next.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let p = m.partition();
                if m.offset() >= end_of(p) {
                    // Written after we started (our own moved letters among them): next run.
                    next.remove(&p);
                    continue;
                }
                each(&m)?;
                if m.offset() + 1 >= end_of(p) {
                    next.remove(&p);
                } else {
                    next.insert(p, m.offset() + 1);
                }
            }
            Some(Err(e)) => return Err(kafka_error(topic, redactor, "reading it")(e)),
            None if last_progress.elapsed() > KAFKA_TIMEOUT => {
                return Err(DeadLetterError::Kafka {
                    topic: topic.to_owned(),
                    what: "reading it",
                    detail: format!(
                        "no message for {KAFKA_TIMEOUT:?} while partitions {:?} had more",
                        next.keys().collect::<Vec<_>>()
                    ),
                });
            }
            None => {}
        }
    }
    Ok(())
}
