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
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::acks::{Acks, AcksContext};
use crate::config::{Config, Redactor};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// A Kafka client config: the config's properties (TLS, SASL) on `brokers`.
fn client(config: &Config, brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in &config.kafka.properties {
        c.set(k, v);
    }
    c
}

/// Reads every letter of `topic` that waits (from the replay group's committed offset to the
/// end the topic has now), calling `each` on them; returns the end of each partition read.
fn scan(
    config: &Config,
    redactor: &Redactor,
    brokers: &str,
    topic: &str,
    mut each: impl FnMut(&BorrowedMessage<'_>) -> Result<(), DeadLetterError>,
) -> Result<(BaseConsumer, Vec<(i32, i64)>), DeadLetterError> {
    let kafka = |what: &'static str| {
        move |e: rdkafka::error::KafkaError| DeadLetterError::Kafka {
            topic: topic.to_owned(),
            what,
            detail: redactor.error(&e),
        }
    };
    let consumer: BaseConsumer = client(config, brokers)
        .set("group.id", REPLAY_GROUP)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(kafka("creating the consumer"))?;
    let meta = consumer
        .fetch_metadata(Some(topic), KAFKA_TIMEOUT)
        .map_err(kafka("reading its metadata"))?;
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
    let mut asked = TopicPartitionList::new();
    for &p in &partitions {
        asked.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(asked, KAFKA_TIMEOUT)
        .map_err(kafka("reading the replay group's offsets"))?;
    let mut ends = Vec::new();
    let mut assign = TopicPartitionList::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, KAFKA_TIMEOUT)
            .map_err(kafka("reading its offsets"))?;
        let from = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o.max(low),
            _ => low,
        };
        ends.push((p, high));
        if from < high {
            assign
                .add_partition_offset(topic, p, Offset::Offset(from))
                .map_err(kafka("assigning its partitions"))?;
            next.insert(p, from);
        }
    }
    if next.is_empty() {
        return Ok((consumer, ends));
    }
    consumer
        .assign(&assign)
        .map_err(kafka("assigning its partitions"))?;
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
            Some(Err(e)) => return Err(kafka("reading it")(e)),
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
    Ok((consumer, ends))
}

/// Counts the letters waiting on every configured dead-letter topic.
pub fn list(config: &Config) -> Result<Vec<(String, Tally)>, DeadLetterError> {
    let topics = topics(config);
    if topics.is_empty() {
        return Err(DeadLetterError::NoTopic);
    }
    let redactor = config.kafka.redactor();
    let mut out = Vec::new();
    for (brokers, topic) in topics {
        let mut tally = Tally::new();
        scan(config, &redactor, &brokers, &topic, |m| {
            let l = letter(m);
            tally
                .entry((l.reason, l.source_topic, l.tenant))
                .or_insert(Count {
                    letters: 0,
                    oldest_ms: None,
                    newest_ms: None,
                })
                .add(m.timestamp().to_millis());
            Ok(())
        })?;
        out.push((topic, tally));
    }
    Ok(out)
}

/// Replays the matching letters waiting on every configured dead-letter topic (see the
/// module's documentation); with `dry_run`, only says what it would do.
pub fn replay(
    config: &Config,
    filter: &Filter,
    dry_run: bool,
) -> Result<Vec<(String, Replayed)>, DeadLetterError> {
    let topics = topics(config);
    if topics.is_empty() {
        return Err(DeadLetterError::NoTopic);
    }
    let redactor = config.kafka.redactor();
    let mut out = Vec::new();
    for (brokers, topic) in topics {
        out.push((
            topic.clone(),
            replay_topic(config, &redactor, &brokers, &topic, filter, dry_run)?,
        ));
    }
    Ok(out)
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
        tally
            .entry(key)
            .or_insert(Count {
                letters: 0,
                oldest_ms: None,
                newest_ms: None,
            })
            .add(ts);
        if dry_run {
            return Ok(());
        }
        let payload = m.payload().unwrap_or_default();
        let record = if replay {
            BaseRecord::<(), [u8]>::to(&l.source_topic).payload(payload)
        } else {
            // Left for a later run: to the end of the dead-letter topic, as it was.
            let mut headers = OwnedHeaders::new();
            if let Some(hs) = m.headers() {
                for h in hs.iter() {
                    headers = headers.insert(Header {
                        key: h.key,
                        value: h.value,
                    });
                }
            }
            let moved = BaseRecord::<(), [u8]>::to(topic)
                .payload(payload)
                .headers(headers);
            // Its first time stays, so `list` still says how old it is.
            match ts {
                Some(ts) => moved.timestamp(ts),
                None => moved,
            }
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

/// An RFC 3339 UTC time of `ms` since the Unix epoch (seconds precision).
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A tally as a table, one line per (reason, source topic, tenant), and its total.
pub fn render(tally: &Tally) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<22} {:<26} {:<34} {:>9}  {:<20}  newest",
        "reason", "source topic", "tenant", "letters", "oldest"
    );
    let time = |t: Option<i64>| t.map_or_else(|| "-".into(), utc);
    let mut total = 0;
    for ((reason, source, tenant), c) in tally {
        total += c.letters;
        let source = if source.is_empty() { "?" } else { source };
        let _ = writeln!(
            out,
            "  {reason:<22} {source:<26} {tenant:<34} {:>9}  {:<20}  {}",
            c.letters,
            time(c.oldest_ms),
            time(c.newest_ms)
        );
    }
    let _ = writeln!(out, "  total: {total}");
    out
}

/// `dead-letters list` and `dead-letters replay`: exit 0 when done, 2 for a configuration
/// error, 1 when Kafka failed them.
pub fn main(action: super::args::DeadLettersAction) -> std::process::ExitCode {
    use super::args::DeadLettersAction;
    use std::process::ExitCode;
    let paths = match &action {
        DeadLettersAction::List { config_file } | DeadLettersAction::Replay { config_file, .. } => {
            config_file
        }
    };
    let config = match crate::config::load_all(paths, &|n| std::env::var(n).ok()) {
        Ok(l) => l.config,
        Err(e) => {
            eprintln!("monasca-persister dead-letters: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match action {
        DeadLettersAction::List { .. } => list(&config).map(|topics| {
            for (topic, tally) in topics {
                println!("dead-letter topic {topic}: letters waiting");
                print!("{}", render(&tally));
            }
        }),
        DeadLettersAction::Replay {
            reason,
            tenant,
            dry_run,
            ..
        } => {
            let filter = Filter {
                reasons: reason,
                tenants: tenant,
            };
            replay(&config, &filter, dry_run).map(|topics| print_replayed(&topics, dry_run))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("monasca-persister dead-letters: {e}");
            let config_error = matches!(e, DeadLetterError::NoTopic);
            ExitCode::from(if config_error { 2 } else { 1 })
        }
    }
}

fn print_replayed(topics: &[(String, Replayed)], dry_run: bool) {
    let (done, kept) = if dry_run {
        ("would replay", "would leave waiting")
    } else {
        ("replayed", "left waiting (moved to the end of the topic)")
    };
    for (topic, r) in topics {
        println!("dead-letter topic {topic}: {done}");
        print!("{}", render(&r.replayed));
        println!("dead-letter topic {topic}: {kept}");
        print!("{}", render(&r.kept));
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

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(-1000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn a_tally_renders_one_line_per_kind_and_a_total() {
        let mut t = Tally::new();
        let mut c = Count {
            letters: 0,
            oldest_ms: None,
            newest_ms: None,
        };
        c.add(Some(1_700_000_000_000));
        c.add(Some(1_700_000_060_000));
        c.add(None);
        t.insert(
            ("database_refused".into(), "metrics".into(), "t2".into()),
            c,
        );
        let text = render(&t);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[1].contains("database_refused"), "{text}");
        assert!(
            lines[1].contains(" 3  2023-11-14T22:13:20Z  2023-11-14T22:14:20Z"),
            "{text}"
        );
        assert_eq!(lines[2], "  total: 3");
    }
}
