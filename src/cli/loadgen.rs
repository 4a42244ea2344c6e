//! `monasca-persister loadgen`: realistic Monasca traffic into Kafka, for benchmarks and tests.
//!
//! Metric messages look like the Monasca API's (~300 bytes, 3–8 dimensions drawn from a
//! configurable number of distinct series, a configurable number of tenants, value_meta on a
//! configurable share); alarm transitions like the threshold engine's. Every message has its own
//! timestamp (start time + sequence number, in ms), so N messages become N distinct points.
//! Runs for a count or a duration, at a target rate or as fast as possible, with a progress line
//! on a terminal and periodic plain lines otherwise, then a summary. Exit status 1 if any
//! message was not acknowledged by Kafka.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::acks::{Acks, AcksContext};

/// What to generate.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub brokers: String,
    pub topic: String,
    pub alarms: bool,
    /// Stop after this many messages…
    pub count: Option<u64>,
    /// …or after this long (whichever comes first; at least one must be set).
    pub duration: Option<Duration>,
    /// Messages per second; 0 = as fast as possible.
    pub rate: u64,
    /// Distinct dimension sets (series per metric name).
    pub cardinality: u64,
    pub tenants: u64,
    /// Share of metric messages with a non-empty value_meta (0..=1).
    pub value_meta_share: f64,
    /// First timestamp (ms); message i has timestamp `start_ms + i`.
    pub start_ms: i64,
    pub properties: Vec<(String, String)>,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadSummary {
    pub sent: u64,
    pub acknowledged: u64,
    pub failed: u64,
    pub bytes: u64,
    pub seconds: f64,
}

const NAMES: &[&str] = &[
    "cpu.idle_perc",
    "cpu.system_perc",
    "mem.usable_perc",
    "mem.free_mb",
    "disk.space_used_perc",
    "disk.inode_used_perc",
    "net.in_bytes_sec",
    "net.out_packets_sec",
    "load.avg_1_min",
    "process.pid_count",
    "io.read_kbytes_sec",
    "vm.cpu.utilization_perc",
];
const DIMS: &[&str] = &[
    "hostname",
    "service",
    "component",
    "device",
    "mount_point",
    "role",
    "zone",
    "cluster",
];

/// A cheap deterministic mixer (splitmix64): the same sequence number always makes the same
/// message shape.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Writes message `i` into `buf`.
pub fn message(spec: &LoadSpec, i: u64, buf: &mut String) {
    buf.clear();
    let r = mix(i);
    let ts = spec.start_ms + i as i64;
    let tenant = r % spec.tenants.max(1);
    if spec.alarms {
        let _ = write!(
            buf,
            r#"{{"alarm-transitioned":{{"tenantId":"tenant-{tenant}","alarmId":"alarm-{i}","alarmDefinitionId":"def-{}","alarmName":"high cpu","alarmDescription":"","metrics":[{{"id":null,"name":"cpu.idle_perc","dimensions":{{"hostname":"host-{}"}}}}],"oldState":"OK","newState":"ALARM","actionsEnabled":true,"stateChangeReason":"Thresholds were exceeded for the sub-alarms: avg(cpu.idle_perc) < 10.0 with the values: [{}.5]","severity":"HIGH","link":null,"lifecycleState":null,"subAlarms":[{{"subAlarmExpression":{{"function":"AVG","metricName":"cpu.idle_perc","operator":"LT","threshold":10.0,"period":60,"periods":1}},"subAlarmState":"ALARM","currentValues":[{}.5]}}],"timestamp":{ts}}}}}"#,
            r % 97,
            (r >> 8) % spec.cardinality.max(1),
            r % 10,
            r % 10
        );
        return;
    }
    let series = (r >> 16) % spec.cardinality.max(1);
    let name = NAMES[(series % NAMES.len() as u64) as usize];
    let ndims = 3 + (series % 6) as usize;
    let _ = write!(buf, r#"{{"metric":{{"name":"{name}","dimensions":{{"#);
    for (d, key) in DIMS.iter().take(ndims).enumerate() {
        if d > 0 {
            buf.push(',');
        }
        let _ = write!(
            buf,
            r#""{key}":"{key}-{}""#,
            mix(series ^ (d as u64) << 40) % 1000 + series % 7
        );
    }
    let value = (r % 100_000) as f64 / 100.0;
    let _ = write!(buf, r#"}},"timestamp":{ts},"value":{value},"value_meta":"#);
    if ((r >> 40) % 1000) as f64 / 1000.0 < spec.value_meta_share {
        let _ = write!(
            buf,
            r#"{{"msg":"HTTP {} from upstream","status_code":"{}"}}"#,
            500 + r % 4,
            500 + r % 4
        );
    } else {
        buf.push_str("null");
    }
    let _ = write!(
        buf,
        r#"}},"meta":{{"tenantId":"tenant-{tenant}","region":"RegionOne"}},"creation_time":{}}}"#,
        ts / 1000
    );
}

/// Runs the generator; progress goes to stderr.
pub fn run(spec: &LoadSpec) -> Result<LoadSummary, String> {
    if spec.count.is_none() && spec.duration.is_none() {
        return Err("give --count or --duration".into());
    }
    let acks = Arc::new(Acks::default());
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &spec.brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "500000")
        .set("compression.type", "none");
    for (k, v) in &spec.properties {
        cc.set(k, v);
    }
    let producer: BaseProducer<AcksContext> = cc
        .create_with_context(AcksContext(acks.clone()))
        .map_err(|e| {
            let redactor = crate::config::Redactor::of(&spec.properties);
            format!("creating the producer: {}", redactor.error(&e))
        })?;
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut last_report = start;
    let mut buf = String::with_capacity(1024);
    let (mut sent, mut bytes) = (0u64, 0u64);
    loop {
        if spec.count.is_some_and(|c| sent >= c)
            || spec.duration.is_some_and(|d| start.elapsed() >= d)
        {
            break;
        }
        if spec.rate > 0 {
            let due = start + Duration::from_secs_f64(sent as f64 / spec.rate as f64);
            let now = Instant::now();
            if due > now {
                producer.poll(Duration::ZERO);
                std::thread::sleep((due - now).min(Duration::from_millis(50)));
                continue;
            }
        }
        message(spec, sent, &mut buf);
        let mut record = BaseRecord::<(), str>::to(&spec.topic).payload(buf.as_str());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(format!("producing to {}: {e}", spec.topic)),
            }
        }
        sent += 1;
        bytes += buf.len() as u64;
        if sent % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
        let every = if tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if last_report.elapsed() >= every {
            last_report = Instant::now();
            progress(spec, sent, start.elapsed(), tty);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| format!("waiting for acknowledgements: {e}"))?;
    let seconds = start.elapsed().as_secs_f64();
    if tty {
        eprintln!();
    }
    Ok(LoadSummary {
        sent,
        acknowledged: acks.ok.load(Ordering::Relaxed),
        failed: acks.failed.load(Ordering::Relaxed),
        bytes,
        seconds,
    })
}

fn progress(spec: &LoadSpec, sent: u64, elapsed: Duration, tty: bool) {
    let rate = sent as f64 / elapsed.as_secs_f64().max(1e-9);
    let (fraction, eta) = match (spec.count, spec.duration) {
        (Some(c), _) => (
            sent as f64 / c as f64,
            Duration::from_secs_f64((c - sent.min(c)) as f64 / rate.max(1.0)),
        ),
        (None, Some(d)) => (
            elapsed.as_secs_f64() / d.as_secs_f64(),
            d.saturating_sub(elapsed),
        ),
        _ => (0.0, Duration::ZERO),
    };
    let fraction = fraction.clamp(0.0, 1.0);
    if tty {
        let filled = (fraction * 30.0) as usize;
        let bar: String = "#".repeat(filled) + &".".repeat(30 - filled);
        eprint!(
            "\r[{bar}] {sent} msgs  {:.1} k/s  ETA {}s   ",
            rate / 1000.0,
            eta.as_secs()
        );
        let _ = std::io::stderr().flush();
    } else {
        eprintln!(
            "loadgen: {sent} messages, {:.0} msgs/s, {:.0}% done, ETA {} s",
            rate,
            fraction * 100.0,
            eta.as_secs()
        );
    }
}

/// `loadgen`'s command line: produces, prints a summary; exit 1 unless every message was
/// acknowledged.
pub fn main(a: super::args::LoadgenArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    let alarms = matches!(a.kind, crate::Kind::Alarms);
    let default_topic = if alarms {
        "alarm-state-transitions"
    } else {
        "metrics"
    };
    let spec = LoadSpec {
        brokers: a.brokers,
        topic: a.topic.unwrap_or_else(|| default_topic.into()),
        alarms,
        count: a.count,
        duration: a.duration.map(Duration::from_secs_f64),
        rate: a.rate,
        cardinality: a.cardinality,
        tenants: a.tenants,
        value_meta_share: a.value_meta_share,
        start_ms: a.start_ms.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0)
        }),
        properties: a.properties,
    };
    match run(&spec) {
        Ok(s) => {
            eprintln!(
                "loadgen: produced {} messages ({:.1} MB) to {} in {:.1} s: {:.0} msgs/s; acknowledged {}, failed {}",
                s.sent,
                s.bytes as f64 / 1e6,
                spec.topic,
                s.seconds,
                s.sent as f64 / s.seconds.max(1e-9),
                s.acknowledged,
                s.failed
            );
            if s.failed > 0 || s.acknowledged != s.sent {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("monasca-persister loadgen: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Converter, Kind};

    fn spec(alarms: bool) -> LoadSpec {
        LoadSpec {
            brokers: String::new(),
            topic: String::new(),
            alarms,
            count: Some(1),
            duration: None,
            rate: 0,
            cardinality: 1000,
            tenants: 10,
            value_meta_share: 0.1,
            start_ms: 1_700_000_000_000,
            properties: vec![],
        }
    }

    #[test]
    fn generated_messages_are_valid_realistic_and_distinct() {
        let mut c = Converter::default();
        let mut out = bytes::BytesMut::new();
        let mut buf = String::new();
        let mut sizes = Vec::new();
        let mut with_meta = 0;
        for i in 0..2000 {
            message(&spec(false), i, &mut buf);
            sizes.push(buf.len());
            with_meta += usize::from(!buf.contains("\"value_meta\":null"));
            c.convert(Kind::Metrics, buf.as_bytes(), &mut out)
                .expect("valid metric");
            assert!(buf.contains(&format!(
                "\"timestamp\":{}",
                1_700_000_000_000i64 + i as i64
            )));
        }
        let avg = sizes.iter().sum::<usize>() / sizes.len();
        assert!((200..450).contains(&avg), "average size {avg}");
        assert!(
            (100..300).contains(&with_meta),
            "value_meta share: {with_meta}/2000"
        );
        message(&spec(true), 5, &mut buf);
        c.convert(Kind::Alarms, buf.as_bytes(), &mut out)
            .expect("valid alarm");
    }
}
