//! `dead-letters list` and `dead-letters replay`: the way back from the dead-letter topic.
//!
//! The dead-letter topic is read as a queue by one consumer group of its own,
//! [`REPLAY_GROUP`]: its committed offset on each partition is where the letters still waiting
//! begin. `list` counts what waits there (by reason, source topic and tenant), changing
//! nothing. `replay` takes what waits up to the end the topic had when it started, and
//!
//! - re-produces each letter that matches its filter, raw payload unchanged, to the topic its
//!   `source_topic` header names (the daemon then consumes it like any message: written, or
//!   dead-lettered again with the reason of the day);
//! - moves each letter that does not match to the end of the dead-letter topic, headers
//!   unchanged, so a later run with another filter still finds it;
//! - commits past both, once Kafka acknowledged every one of them.
//!
//! So a second run replays nothing already replayed, and nothing is lost to a filter. A run
//! that fails (a produce not acknowledged) commits nothing: the next run replays those letters
//! again, which InfluxDB absorbs (the same points overwrite themselves). `--dry-run` only
//! reads. Both commands run beside the daemon with its config file and start no admin
//! listener.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

mod report;
mod scan;

pub use report::{main, render};

use super::acks::{Acks, AcksContext};
use crate::config::{Config, Redactor};
use scan::{client, scan};

/// The consumer group whose committed offsets mark what was already replayed (or moved).
pub const REPLAY_GROUP: &str = "monasca-persister-dead-letters";

/// How long to wait for Kafka (metadata, offsets, a silent partition, acknowledgements).
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a command could not finish.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("no dead-letter topic is configured ([kafka] dead_letter_topic)")]
    NoTopic,
    #[error("dead-letter topic {topic}: {what}: {detail}")]
    Kafka {
        topic: String,
        what: &'static str,
        detail: String,
    },
    #[error(
        "dead-letter topic {topic}: {failed} of {sent} messages were not acknowledged by Kafka; nothing was committed, so the next run takes them again"
    )]
    NotAcknowledged {
        topic: String,
        sent: u64,
        failed: u64,
    },
}

/// Which letters `replay` takes: all when a list is empty, else those whose reason (tenant)
/// is one of the list's.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub reasons: Vec<String>,
    pub tenants: Vec<String>,
}

impl Filter {
    pub fn matches(&self, reason: &str, tenant: &str) -> bool {
        (self.reasons.is_empty() || self.reasons.iter().any(|r| r == reason))
            && (self.tenants.is_empty() || self.tenants.iter().any(|t| t == tenant))
    }
}

/// What a dead letter says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    /// The `reason` header (`?` when missing).
    pub reason: String,
    /// The `source_topic` header (empty when missing: such a letter is never replayed).
    pub source_topic: String,
    /// The message's tenant (`meta.tenantId` of a metric, `tenantId` of an alarm transition),
    /// or `?` when the payload does not say (it may be the very reason it was rejected).
    pub tenant: String,
}

/// The tenant a raw Monasca message names, if it is JSON that names one.
pub fn tenant_of(payload: &[u8]) -> Option<String> {
    use simd_json::prelude::*;
    let mut copy = payload.to_vec();
    let v = simd_json::to_borrowed_value(&mut copy).ok()?;
    let tenant = v
        .get("meta")
        .and_then(|m| m.get("tenantId"))
        .or_else(|| v.get("alarm-transitioned").and_then(|a| a.get("tenantId")))?;
    tenant.as_str().map(str::to_owned)
}

fn header(m: &BorrowedMessage<'_>, key: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn letter(m: &BorrowedMessage<'_>) -> Letter {
    Letter {
        reason: header(m, "reason").unwrap_or_else(|| "?".into()),
        source_topic: header(m, "source_topic").unwrap_or_default(),
        tenant: m
            .payload()
            .and_then(tenant_of)
            .unwrap_or_else(|| "?".into()),
    }
}

/// Counts of one (reason, source topic, tenant): how many, and the oldest and newest
/// Kafka timestamps (ms) among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Count {
    pub letters: u64,
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
}

impl Count {
    fn add(&mut self, ts: Option<i64>) {
        self.letters += 1;
        if let Some(ts) = ts {
            self.oldest_ms = Some(self.oldest_ms.map_or(ts, |o| o.min(ts)));
            self.newest_ms = Some(self.newest_ms.map_or(ts, |n| n.max(ts)));
        }
    }
}

/// (reason, source topic, tenant) → count.
pub type Tally = BTreeMap<(String, String, String), Count>;

/// What `replay` did on one dead-letter topic.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Letters re-produced to their source topic, by (reason, source topic, tenant).
    pub replayed: Tally,
    /// Letters left waiting (moved to the end of the dead-letter topic), by the same.
    pub kept: Tally,
}

/// The dead-letter topics a config names, each with the brokers it lives on.
fn topics(config: &Config) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for p in [&config.kafka_metrics, &config.kafka_alarm_history] {
        let topic = config.dead_letter_topic(p);
        let entry = (config.brokers(p).to_owned(), topic.to_owned());
        if !topic.is_empty() && !out.contains(&entry) {
            out.push(entry);
        }
    }
    out
}

/// Runs `f` on every configured dead-letter topic (with its brokers), in turn.
fn each_topic<T>(
    config: &Config,
    mut f: impl FnMut(&Redactor, &str, &str) -> Result<T, DeadLetterError>,
) -> Result<Vec<(String, T)>, DeadLetterError> {
    let topics = topics(config);
    if topics.is_empty() {
        return Err(DeadLetterError::NoTopic);
    }
    let redactor = config.kafka.redactor();
    let mut out = Vec::new();
    for (brokers, topic) in topics {
        let done = f(&redactor, &brokers, &topic)?;
        out.push((topic, done));
    }
    Ok(out)
}

/// Counts the letters waiting on every configured dead-letter topic.
pub fn list(config: &Config) -> Result<Vec<(String, Tally)>, DeadLetterError> {
    each_topic(config, |redactor, brokers, topic| {
        let mut tally = Tally::new();
        scan(config, redactor, brokers, topic, |m| {
            let l = letter(m);
            tally
                .entry((l.reason, l.source_topic, l.tenant))
                .or_default()
                .add(m.timestamp().to_millis());
            Ok(())
        })?;
        Ok(tally)
    })
}

/// Replays the matching letters waiting on every configured dead-letter topic (see the
/// module's documentation); with `dry_run`, only says what it would do.
pub fn replay(
    config: &Config,
    filter: &Filter,
    dry_run: bool,
) -> Result<Vec<(String, Replayed)>, DeadLetterError> {
    each_topic(config, |redactor, brokers, topic| {
        replay_topic(config, redactor, brokers, topic, filter, dry_run)
    })
}

fn replay_topic(
    config: &Config,
    redactor: &Redactor,
    brokers: &str,
    topic: &str,
    filter: &Filter,
    dry_run: bool,
) -> Result<Replayed, DeadLetterError> {
    let kafka_error = |what: &'static str, e: rdkafka::error::KafkaError| DeadLetterError::Kafka {
        topic: topic.to_owned(),
        what,
        detail: redactor.error(&e),
    };
    let acks = Arc::new(Acks::default());
    let producer: BaseProducer<AcksContext> = client(config, brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create_with_context(AcksContext(acks.clone()))
        .map_err(|e| kafka_error("creating the producer", e))?;
    let mut done = Replayed::default();
    let mut sent = 0u64;
    let (consumer, ends) = scan(config, redactor, brokers, topic, |m| {
        let l = letter(m);
        let replay = !l.source_topic.is_empty() && filter.matches(&l.reason, &l.tenant);
        let ts = m.timestamp().to_millis();
        let key = (l.reason, l.source_topic.clone(), l.tenant);
        let tally = if replay {
            &mut done.replayed
        } else {
            &mut done.kept
        };
        tally.entry(key).or_default().add(ts);
        if dry_run {
            return Ok(());
        }
        let record = if replay {
            BaseRecord::<(), [u8]>::to(&l.source_topic).payload(m.payload().unwrap_or_default())
        } else {
            moved(m, topic)
        };
        send(&producer, record).map_err(|e| kafka_error("producing", e))?;
        sent += 1;
        Ok(())
    })?;
    if dry_run {
        return Ok(done);
    }
    producer
        .flush(KAFKA_TIMEOUT)
        .map_err(|e| kafka_error("waiting for acknowledgements", e))?;
    let failed = acks.failed.load(Ordering::Relaxed);
    if failed > 0 || acks.ok.load(Ordering::Relaxed) != sent {
        return Err(DeadLetterError::NotAcknowledged {
            topic: topic.to_owned(),
            sent,
            failed: sent - acks.ok.load(Ordering::Relaxed).min(sent),
        });
    }
    let mut tpl = TopicPartitionList::new();
    for &(p, end) in &ends {
        tpl.add_partition_offset(topic, p, Offset::Offset(end))
            .map_err(|e| kafka_error("committing", e))?;
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(|e| kafka_error("committing", e))?;
    Ok(done)
}

/// Letter `m` as it is moved to the end of dead-letter `topic` for a later run: payload and
/// headers unchanged, and its first time, so `list` still says how old it is.
fn moved<'a>(m: &'a BorrowedMessage<'_>, topic: &'a str) -> BaseRecord<'a, (), [u8]> {
    let mut headers = OwnedHeaders::new();
    if let Some(hs) = m.headers() {
        for h in hs.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let record = BaseRecord::<(), [u8]>::to(topic)
        .payload(m.payload().unwrap_or_default())
        .headers(headers);
    match m.timestamp().to_millis() {
        Some(ts) => record.timestamp(ts),
        None => record,
    }
}

/// Queues `record`, waiting while the producer's queue is full.
fn send<'a>(
    producer: &BaseProducer<AcksContext>,
    mut record: BaseRecord<'a, (), [u8]>,
) -> Result<(), rdkafka::error::KafkaError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((e, r))
                if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
            {
                record = r;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenant_comes_from_the_envelope_of_either_kind_or_is_unknown() {
        assert_eq!(
            tenant_of(br#"{"metric":{"name":"m"},"meta":{"tenantId":"abc","region":"r"}}"#),
            Some("abc".into())
        );
        assert_eq!(
            tenant_of(br#"{"alarm-transitioned":{"tenantId":"t1","alarmId":"a"}}"#),
            Some("t1".into())
        );
        assert_eq!(tenant_of(b"{not json"), None);
        assert_eq!(tenant_of(br#"{"meta":{"tenantId":5}}"#), None);
        assert_eq!(tenant_of(b""), None);
    }

    #[test]
    fn an_empty_list_in_the_filter_takes_everything_of_that_kind() {
        let all = Filter::default();
        assert!(all.matches("database_refused", "t"));
        let f = Filter {
            reasons: vec!["database_refused".into(), "series_limit".into()],
            tenants: vec!["t2".into()],
        };
        assert!(f.matches("series_limit", "t2"));
        assert!(!f.matches("series_limit", "t1"));
        assert!(!f.matches("invalid_json", "t2"));
    }
}
