//! The Prometheus text exposition of every counter (`/metrics`).
//!
//! Owns the families' names, help texts and order, one function per group of families. Only
//! reads the counters. Must never split a family's samples apart (the text format requires
//! them together) nor rename a family without the docs, alerts and dashboard following.

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::pipeline::PipelineStats;
use crate::pipeline::series::SeriesLimit;
use crate::sink::{RetryCause, WriterStats};
use crate::stats::{Labelled, header, label, sample};

use super::{AdminState, procfs, unreadable_seconds};

/// One destination's counters as rendered: its `destination="…"` label first.
struct Dest<'a> {
    label: String,
    p: &'a PipelineStats,
    w: &'a WriterStats,
    series: Option<&'a SeriesLimit>,
}

impl Dest<'_> {
    /// This destination's label followed by `more` (`key="value",…`).
    fn with(&self, more: impl Display) -> String {
        format!("{},{more}", self.label)
    }
}

/// The Prometheus text exposition of every counter: the pipelines' and writers' by
/// destination (`destination` label), the process's without.
pub fn render(state: &AdminState) -> String {
    let ds: Vec<Dest<'_>> = (state.destinations.iter())
        .map(|d| Dest {
            label: format!("destination=\"{}\"", label(&d.name)),
            p: &d.pipeline,
            w: &d.writer,
            series: d.series.as_deref(),
        })
        .collect();
    let mut out = String::with_capacity(4096);
    messages(&mut out, &ds);
    counters(&mut out, &ds);
    latencies(&mut out, &ds);
    in_flight(&mut out, &ds);
    partitions(&mut out, &ds);
    series_limit(&mut out, &ds);
    databases(&mut out, &ds);
    consumers(&mut out, &ds);
    family(
        &mut out,
        "monasca_persister_topic_retention_seconds",
        "gauge",
        "The topic's retention.ms as the broker reports it (absent: unknown, or kept forever): a destination behind by as much loses messages.",
        (state.topic_retention.snapshot().into_iter())
            .map(|(topic, ms)| (format!("topic=\"{}\"", label(&topic)), ms as f64 / 1000.0)),
    );
    process(&mut out);
    for (name, help, seconds) in [
        (
            "monasca_persister_poll_seconds_total",
            "Consumer time waiting for and taking messages from librdkafka.",
            (|p: &PipelineStats| p.poll_seconds.get()) as fn(&PipelineStats) -> f64,
        ),
        (
            "monasca_persister_convert_seconds_total",
            "Consumer time decoding and encoding messages.",
            |p: &PipelineStats| p.convert_seconds.get(),
        ),
    ] {
        let samples = ds.iter().map(|d| (d.label.as_str(), seconds(d.p)));
        family(&mut out, name, "counter", help, samples);
    }
    sample(
        &mut out,
        "monasca_persister_uptime_seconds",
        "gauge",
        "Seconds since start.",
        state.started.elapsed().as_secs_f64(),
    );
    out
}

/// A family with labels: its header, then one `name{labels} value` sample per item, `labels`
/// already written as `key="escaped value",…`.
fn family<L: Display, V: Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, V)>,
) {
    header(out, name, kind, help);
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}

/// The labels of a partition.
fn topic_partition(topic: &str, partition: i32) -> String {
    format!("topic=\"{}\",partition=\"{partition}\"", label(topic))
}

/// The labels of a partition and a cause.
fn topic_partition_cause(topic: &str, partition: i32, cause: &str) -> String {
    format!("{},cause=\"{cause}\"", topic_partition(topic, partition))
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Messages consumed and rejected.
fn messages(out: &mut String, ds: &[Dest<'_>]) {
    family(
        out,
        "monasca_persister_messages_consumed_total",
        "counter",
        "Kafka messages consumed.",
        ds.iter().flat_map(|d| {
            (d.p.consumed_by.snapshot().into_iter())
                .map(|((topic, partition), v)| (d.with(topic_partition(&topic, partition)), v))
        }),
    );
    family(
        out,
        "monasca_persister_messages_rejected_total",
        "counter",
        "Messages rejected (not written), by reason.",
        ds.iter().flat_map(|d| {
            (d.p.rejected_by.snapshot().into_iter())
                .map(|(reason, v)| (d.with(format_args!("reason=\"{reason}\"")), v))
        }),
    );
}

/// The unlabelled counters of the pipelines and the writers, and the write retries.
fn counters(out: &mut String, ds: &[Dest<'_>]) {
    type Of = for<'a, 'b> fn(&'a Dest<'b>) -> &'a AtomicU64;
    let counters: [(&str, &str, Of); 9] = [
        (
            "monasca_persister_messages_sanitized_total",
            "Accepted messages whose strings the sanitize policy altered.",
            |d| &d.p.sanitized,
        ),
        (
            "monasca_persister_dead_letters_total",
            "Rejected messages produced to the dead-letter topic.",
            |d| &d.p.dead_lettered,
        ),
        (
            "monasca_persister_batches_total",
            "Batches finished (written and dead-lettered).",
            |d| &d.p.batches,
        ),
        (
            "monasca_persister_commits_total",
            "Offset commits acknowledged.",
            |d| &d.p.commits,
        ),
        (
            "monasca_persister_kafka_fetches_total",
            "Calls that took messages from librdkafka (consumed / fetches = messages per call).",
            |d| &d.p.fetches,
        ),
        (
            "monasca_persister_points_written_total",
            "Points InfluxDB stored.",
            |d| &d.w.points_written,
        ),
        (
            "monasca_persister_points_rejected_total",
            "Points InfluxDB refused for good.",
            |d| &d.w.points_rejected,
        ),
        (
            "monasca_persister_write_requests_total",
            "HTTP write requests sent.",
            |d| &d.w.requests,
        ),
        (
            "monasca_persister_databases_created_total",
            "Databases created.",
            |d| &d.w.databases_created,
        ),
    ];
    for (name, help, of) in counters {
        let samples = ds.iter().map(|d| (d.label.as_str(), load(of(d))));
        family(out, name, "counter", help, samples);
    }
    family(
        out,
        "monasca_persister_write_retries_total",
        "counter",
        "Write retries, by cause.",
        ds.iter().flat_map(|d| {
            RetryCause::ALL.into_iter().map(|cause| {
                let labels = d.with(format_args!("cause=\"{}\"", cause.as_str()));
                (labels, load(&d.w.retries[cause as usize]))
            })
        }),
    );
}

/// The write duration and end-to-end latency histograms.
fn latencies(out: &mut String, ds: &[Dest<'_>]) {
    let name = "monasca_persister_write_duration_seconds";
    header(out, name, "histogram", "Duration of HTTP write requests.");
    for d in ds {
        d.w.latency.render_samples(out, name, &d.label);
    }
    let name = "monasca_persister_end_to_end_latency_seconds";
    header(
        out,
        name,
        "histogram",
        "From a message's creation (a metric's creation_time, an alarm transition's timestamp) to InfluxDB's acknowledgement of the write that stored it, per point written; messages without a creation time are not observed.",
    );
    for d in ds {
        for (pipeline, h) in [
            ("metrics", &d.p.end_to_end[0].0),
            ("alarms", &d.p.end_to_end[1].0),
        ] {
            h.render_samples(out, name, &d.with(format_args!("pipeline=\"{pipeline}\"")));
        }
    }
}

/// What is being written now, and whether writing fails.
fn in_flight(out: &mut String, ds: &[Dest<'_>]) {
    type Value = fn(&Dest<'_>) -> String;
    let gauges: [(&str, &str, &str, Value); 4] = [
        (
            "monasca_persister_batches_in_flight",
            "gauge",
            "Batches being written and dead-lettered, not yet finished.",
            |d| d.p.batches_in_flight.load(Ordering::Relaxed).to_string(),
        ),
        (
            "monasca_persister_bytes_in_flight",
            "gauge",
            "Line-protocol bytes being written.",
            |d| d.w.bytes_in_flight.load(Ordering::Relaxed).to_string(),
        ),
        (
            "monasca_persister_rate_limited_seconds_total",
            "counter",
            "Time writes waited for influxdb.max_points_per_second (consumers pause meanwhile).",
            |d| d.w.rate_limited.get().to_string(),
        ),
        (
            "monasca_persister_influxdb_failing",
            "gauge",
            "1 while the latest write attempt failed and is being retried.",
            |d| u8::from(d.w.failing.load(Ordering::Relaxed)).to_string(),
        ),
    ];
    for (name, kind, help, value) in gauges {
        family(
            out,
            name,
            kind,
            help,
            ds.iter().map(|d| (d.label.as_str(), value(d))),
        );
    }
}

/// Per partition: lag, read errors, how long unreadable.
fn partitions(out: &mut String, ds: &[Dest<'_>]) {
    family(
        out,
        "monasca_persister_consumer_lag",
        "gauge",
        "Messages behind the partition's end (high watermark last fetched minus position).",
        ds.iter().flat_map(|d| {
            (d.p.lag.snapshot().into_iter())
                .map(|((topic, partition), v)| (d.with(topic_partition(&topic, partition)), v))
        }),
    );
    family(
        out,
        "monasca_persister_partition_read_errors_total",
        "counter",
        "Errors librdkafka reported for a partition instead of its messages, by cause (decompression, crc, corrupt, other).",
        ds.iter().flat_map(|d| {
            (d.p.read_errors.snapshot().into_iter()).map(|((topic, partition, cause), v)| {
                (d.with(topic_partition_cause(&topic, partition, cause)), v)
            })
        }),
    );
    family(
        out,
        "monasca_persister_partition_unreadable_seconds",
        "gauge",
        "How long a partition has been unreadable (its messages wait; nothing is skipped); absent while readable.",
        ds.iter().flat_map(|d| {
            unreadable_seconds(d.p)
                .into_iter()
                .map(|((topic, partition, cause), secs)| {
                    let labels = d.with(topic_partition_cause(&topic, partition, cause));
                    (labels, format!("{secs:.1}"))
                })
        }),
    );
}

/// `max_hourly_series_per_tenant`: the limit, and per tenant its series and refusals (only
/// the destinations that set it).
fn series_limit(out: &mut String, ds: &[Dest<'_>]) {
    let limited: Vec<(&Dest<'_>, &SeriesLimit)> =
        ds.iter().filter_map(|d| Some((d, d.series?))).collect();
    if limited.is_empty() {
        return;
    }
    family(
        out,
        "monasca_persister_series_limit",
        "gauge",
        "influxdb.max_hourly_series_per_tenant: new series a tenant may add per clock hour.",
        limited.iter().map(|(d, s)| (d.label.as_str(), s.max())),
    );
    let counts: Vec<_> = limited.iter().map(|(d, s)| (*d, s.counts())).collect();
    let tenant = |d: &Dest<'_>, t: &str| d.with(format_args!("tenant=\"{}\"", label(t)));
    family(
        out,
        "monasca_persister_series_tracked",
        "gauge",
        "Distinct series (measurement + tag set) a tenant has written in the current hour.",
        (counts.iter()).flat_map(|(d, cs)| cs.iter().map(|c| (tenant(d, &c.tenant), c.tracked))),
    );
    family(
        out,
        "monasca_persister_series_refused_total",
        "counter",
        "Messages refused (dead-lettered as series_limit) because they would add a series beyond the tenant's hourly limit.",
        (counts.iter()).flat_map(|(d, cs)| cs.iter().map(|c| (tenant(d, &c.tenant), c.refused))),
    );
}

/// The databases whose writes are failing, and those refusing them.
fn databases(out: &mut String, ds: &[Dest<'_>]) {
    // Each family's samples stay together, as the text format requires.
    let failing: Vec<_> = ds.iter().map(|d| (d, d.w.failing_databases())).collect();
    let db = |d: &Dest<'_>, name: &str| d.with(format_args!("db=\"{}\"", label(name)));
    family(
        out,
        "monasca_persister_influxdb_database_failing_seconds",
        "gauge",
        "How long writes to this database have been failing (only failing databases are listed).",
        failing.iter().flat_map(|(d, fs)| {
            fs.iter()
                .map(|f| (db(d, &f.db), format!("{:.3}", f.failing_for.as_secs_f64())))
        }),
    );
    family(
        out,
        "monasca_persister_influxdb_database_refused_seconds",
        "gauge",
        "How long this database has refused every write (403, bucket missing).",
        failing.iter().flat_map(|(d, fs)| {
            fs.iter().filter_map(|f| {
                (f.refused_for).map(|r| (db(d, &f.db), format!("{:.3}", r.as_secs_f64())))
            })
        }),
    );
}

/// Per partition the oldest uncommitted message; per consumer its partitions and brokers.
fn consumers(out: &mut String, ds: &[Dest<'_>]) {
    family(
        out,
        "monasca_persister_oldest_uncommitted_seconds",
        "gauge",
        "Age of the partition's oldest message consumed and not yet written or dead-lettered (0: none waits).",
        ds.iter().flat_map(|d| {
            (d.p.oldest_uncommitted.snapshot().into_iter()).map(|((topic, partition), ms)| {
                let labels = d.with(topic_partition(&topic, partition));
                (labels, format!("{:.3}", ms as f64 / 1000.0))
            })
        }),
    );
    type Of = fn(&PipelineStats) -> &Labelled<String>;
    let gauges: [(&str, &str, Of); 3] = [
        (
            "monasca_persister_partitions_assigned",
            "Partitions assigned, by consumer.",
            |p| &p.assigned,
        ),
        (
            "monasca_persister_partitions_paused",
            "Partitions paused for backpressure (the sink is behind), by consumer.",
            |p| &p.paused,
        ),
        (
            "monasca_persister_kafka_brokers_down",
            "1 while every Kafka broker is unreachable for this consumer.",
            |p| &p.brokers_down,
        ),
    ];
    for (name, help, of) in gauges {
        family(
            out,
            name,
            "gauge",
            help,
            ds.iter().flat_map(|d| {
                (of(d.p).snapshot().into_iter()).map(|(consumer, v)| {
                    (d.with(format_args!("consumer=\"{}\"", label(&consumer))), v)
                })
            }),
        );
    }
}

/// The process's CPU time and memory, and its threads' CPU time by group (Linux only).
fn process(out: &mut String) {
    if let Some((cpu, rss)) = procfs::process_usage() {
        sample(
            out,
            "monasca_persister_process_cpu_seconds_total",
            "counter",
            "CPU time (user + system) of the process.",
            cpu,
        );
        sample(
            out,
            "monasca_persister_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the process.",
            rss,
        );
    }
    if let Some(groups) = procfs::thread_cpu() {
        family(
            out,
            "monasca_persister_thread_cpu_seconds_total",
            "counter",
            "CPU time (user + system) of the process's threads, by what they do: consumer \
             (taking messages from librdkafka, decode, encode, batching), librdkafka (its own \
             threads: fetching and parsing Kafka responses), io (HTTP writes, admin), other.",
            groups
                .into_iter()
                .map(|(threads, seconds)| (format!("threads=\"{threads}\""), seconds)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Families whose values change between two renderings (clocks, this process's usage):
    /// their sample values are masked before comparing.
    const MOVING: [&str; 7] = [
        "monasca_persister_partition_unreadable_seconds",
        "monasca_persister_influxdb_database_failing_seconds",
        "monasca_persister_influxdb_database_refused_seconds",
        "monasca_persister_process_cpu_seconds_total",
        "monasca_persister_process_resident_memory_bytes",
        "monasca_persister_thread_cpu_seconds_total",
        "monasca_persister_uptime_seconds",
    ];

    /// `text` with the values of the [`MOVING`] families' samples replaced by `X`.
    fn masked(text: &str) -> String {
        let mut out = String::new();
        for line in text.lines() {
            let moving = !line.starts_with('#') && MOVING.iter().any(|m| line.starts_with(m));
            match line.rsplit_once(' ') {
                Some((head, _)) if moving => out.push_str(&format!("{head} X\n")),
                _ => out.push_str(&format!("{line}\n")),
            }
        }
        out
    }

    /// An `AdminState` with something in every family, labels that need escaping included.
    fn populated() -> AdminState {
        let series = Arc::new(crate::pipeline::series::SeriesLimit::new(1));
        assert!(series.admit("t\"1", 7 << 32, 1, 5));
        assert!(!series.admit("t\"1", 7 << 32, 2, 5));
        assert!(series.admit("t2", 9 << 32, 3, 5));
        let mut s = super::super::tests::state(Some(Duration::from_secs(60)));
        s.destinations[0].series = Some(series);
        let p = &s.destinations[0].pipeline;
        p.consumed_by.add(("metrics".into(), 0), 120);
        p.consumed_by.add(("a\"b\\c\nd".into(), 3), 7);
        p.rejected_by.add("invalid_json", 4);
        p.rejected_by.add("unrepresentable", 1);
        for (i, a) in [
            &p.sanitized,
            &p.dead_lettered,
            &p.batches,
            &p.commits,
            &p.fetches,
        ]
        .into_iter()
        .enumerate()
        {
            a.store(10 + i as u64, Ordering::Relaxed);
        }
        p.batches_in_flight.store(2, Ordering::Relaxed);
        p.end_to_end[0].0.observe(Duration::from_millis(300));
        p.end_to_end[1].0.observe(Duration::from_secs(7200));
        p.lag.set(("metrics".into(), 0), 42);
        p.read_errors.add(("metrics".into(), 1, "crc"), 3);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        p.unreadable_since
            .set(("metrics".into(), 1, "crc"), now_ms - 5_000);
        p.oldest_uncommitted.set(("metrics".into(), 0), 1_234);
        p.assigned.set("metrics-0".into(), 4);
        p.assigned.set("alarms-0".into(), 1);
        p.paused.set("metrics-0".into(), 2);
        p.brokers_down.set("alarms-0".into(), 1);
        p.poll_seconds.add(Duration::from_millis(1500));
        p.convert_seconds.add(Duration::from_micros(250));
        let w = &s.destinations[0].writer;
        for (i, a) in [
            &w.points_written,
            &w.points_rejected,
            &w.requests,
            &w.databases_created,
        ]
        .into_iter()
        .enumerate()
        {
            a.store(100 + i as u64, Ordering::Relaxed);
        }
        for (i, r) in w.retries.iter().enumerate() {
            r.store(i as u64 * 3, Ordering::Relaxed);
        }
        w.failing.store(true, Ordering::Relaxed);
        w.latency.observe(Duration::from_millis(3));
        w.latency.observe(Duration::from_millis(40));
        w.bytes_in_flight.store(4096, Ordering::Relaxed);
        w.rate_limited.add(Duration::from_millis(20));
        w.mark_failing("mon", false);
        w.mark_failing("mon_t\"1", true);
        // A second destination: its samples follow the first's in each family.
        let b = super::super::tests::destination("b");
        b.pipeline.consumed_by.add(("metrics".into(), 0), 99);
        b.pipeline.lag.set(("metrics".into(), 0), 21);
        b.pipeline.assigned.set("metrics-1".into(), 4);
        b.writer.points_written.store(98, Ordering::Relaxed);
        s.destinations.push(b);
        s.topic_retention.set("metrics".into(), 86_400_000);
        s
    }

    /// The exposition, family by family and byte by byte: each pipeline and writer family
    /// labelled by destination (two here, their samples together), the process's without.
    #[test]
    fn the_exposition_is_as_documented() {
        let got = masked(&render(&populated()));
        if std::env::var_os("ADMIN_GOLDEN_PRINT").is_some() {
            print!("{got}");
        }
        assert_eq!(got, include_str!("metrics.golden.txt"));
    }
}
