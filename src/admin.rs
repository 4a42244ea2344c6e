//! The admin endpoint: `/metrics` (Prometheus text), `/healthz`, `/ready`.
//!
//! Runs on the async runtime beside the writes, off the per-message path: it only reads the
//! counters. Must never block or fail the data plane (a bind failure is logged, not fatal).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::pipeline::PipelineStats;
use crate::sink::{RetryCause, WriterStats};
use crate::stats::{header, label, sample};

/// What the endpoint reports on.
pub struct AdminState {
    pub pipeline: Arc<PipelineStats>,
    pub writer: Arc<WriterStats>,
    pub started: Instant,
    /// `/ready` fails once a message has waited longer than this uncommitted (`None`: never).
    pub ready_max_uncommitted: Option<std::time::Duration>,
    /// `/ready` fails once a partition has been unreadable longer than this (`None`: never).
    pub ready_max_unreadable: Option<std::time::Duration>,
    /// `max_hourly_series_per_tenant`'s counts, when set.
    pub series: Option<Arc<crate::pipeline::series::SeriesLimit>>,
}

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "admin endpoint: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<AdminState>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match req.uri().path() {
        "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4", render(&state)),
        "/healthz" => reply(
            StatusCode::OK,
            "application/json",
            format!(
                r#"{{"status":"ok","uptime_seconds":{:.1}}}"#,
                state.started.elapsed().as_secs_f64()
            ),
        ),
        "/ready" => {
            let (ready, body) = readiness(&state);
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, "application/json", body)
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}

/// Ready: partitions assigned, the latest InfluxDB write did not fail, no message has
/// waited uncommitted longer than the bound, and no partition has been unreadable longer than
/// its bound. Also the JSON detail, which names every unreadable partition.
fn readiness(state: &AdminState) -> (bool, String) {
    let assigned = state.pipeline.assigned.sum();
    let databases = state.writer.failing_databases();
    let failing = state.writer.failing.load(Ordering::Relaxed) || !databases.is_empty();
    let oldest_ms = state
        .pipeline
        .oldest_uncommitted
        .snapshot()
        .into_iter()
        .map(|(_, ms)| ms)
        .max()
        .unwrap_or(0);
    let stuck = state
        .ready_max_uncommitted
        .is_some_and(|max| oldest_ms as u128 > max.as_millis());
    let unreadable = unreadable_seconds(&state.pipeline);
    let unreadable_too_long = state.ready_max_unreadable.is_some_and(|max| {
        unreadable
            .iter()
            .any(|(.., secs)| *secs > max.as_secs_f64())
    });
    let ready = assigned > 0 && !failing && !stuck && !unreadable_too_long;
    let names: Vec<String> = databases
        .iter()
        .map(|d| format!("\"{}\"", json_escape(&d.db)))
        .collect();
    let partitions: Vec<String> = unreadable
        .iter()
        .map(|((topic, partition, cause), secs)| {
            format!(
                r#"{{"topic":"{}","partition":{partition},"cause":"{cause}","seconds":{secs:.1}}}"#,
                json_escape(topic)
            )
        })
        .collect();
    let body = format!(
        r#"{{"ready":{ready},"partitions_assigned":{assigned},"influxdb_failing":{failing},"failing_databases":[{}],"oldest_uncommitted_seconds":{:.1},"unreadable_partitions":[{}]}}"#,
        names.join(","),
        oldest_ms as f64 / 1000.0,
        partitions.join(",")
    );
    (ready, body)
}

/// Each unreadable partition with how long it has been unreadable, in seconds.
fn unreadable_seconds(p: &PipelineStats) -> Vec<((String, i32, &'static str), f64)> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    p.unreadable_since
        .snapshot()
        .into_iter()
        .map(|(k, since)| (k, (now_ms - since).max(0) as f64 / 1000.0))
        .collect()
}

/// A string as the inside of a JSON string literal.
fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The Prometheus text exposition of every counter.
pub fn render(state: &AdminState) -> String {
    let p = &state.pipeline;
    let w = &state.writer;
    let mut out = String::with_capacity(4096);
    let c = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);

    header(
        &mut out,
        "monasca_persister_messages_consumed_total",
        "counter",
        "Kafka messages consumed.",
    );
    for ((topic, partition), v) in p.consumed_by.snapshot() {
        let _ = writeln!(
            out,
            "monasca_persister_messages_consumed_total{{topic=\"{}\",partition=\"{partition}\"}} {v}",
            label(&topic)
        );
    }
    header(
        &mut out,
        "monasca_persister_messages_rejected_total",
        "counter",
        "Messages rejected (not written), by reason.",
    );
    for (reason, v) in p.rejected_by.snapshot() {
        let _ = writeln!(
            out,
            "monasca_persister_messages_rejected_total{{reason=\"{reason}\"}} {v}"
        );
    }
    sample(
        &mut out,
        "monasca_persister_messages_sanitized_total",
        "counter",
        "Accepted messages whose strings the sanitize policy altered.",
        c(&p.sanitized),
    );
    sample(
        &mut out,
        "monasca_persister_dead_letters_total",
        "counter",
        "Rejected messages produced to the dead-letter topic.",
        c(&p.dead_lettered),
    );
    sample(
        &mut out,
        "monasca_persister_batches_total",
        "counter",
        "Batches finished (written and dead-lettered).",
        c(&p.batches),
    );
    sample(
        &mut out,
        "monasca_persister_commits_total",
        "counter",
        "Offset commits acknowledged.",
        c(&p.commits),
    );
    sample(
        &mut out,
        "monasca_persister_kafka_fetches_total",
        "counter",
        "Calls that took messages from librdkafka (consumed / fetches = messages per call).",
        c(&p.fetches),
    );
    sample(
        &mut out,
        "monasca_persister_points_written_total",
        "counter",
        "Points InfluxDB stored.",
        c(&w.points_written),
    );
    sample(
        &mut out,
        "monasca_persister_points_rejected_total",
        "counter",
        "Points InfluxDB refused for good.",
        c(&w.points_rejected),
    );
    sample(
        &mut out,
        "monasca_persister_write_requests_total",
        "counter",
        "HTTP write requests sent.",
        c(&w.requests),
    );
    sample(
        &mut out,
        "monasca_persister_databases_created_total",
        "counter",
        "Databases created.",
        c(&w.databases_created),
    );
    header(
        &mut out,
        "monasca_persister_write_retries_total",
        "counter",
        "Write retries, by cause.",
    );
    for cause in RetryCause::ALL {
        let _ = writeln!(
            out,
            "monasca_persister_write_retries_total{{cause=\"{}\"}} {}",
            cause.as_str(),
            c(&w.retries[cause as usize])
        );
    }
    w.latency.render_to(
        &mut out,
        "monasca_persister_write_duration_seconds",
        "Duration of HTTP write requests.",
    );
    header(
        &mut out,
        "monasca_persister_end_to_end_latency_seconds",
        "histogram",
        "From a message's creation (a metric's creation_time, an alarm transition's timestamp) to InfluxDB's acknowledgement of the write that stored it, per point written; messages without a creation time are not observed.",
    );
    for (pipeline, h) in [
        ("metrics", &p.end_to_end[0].0),
        ("alarms", &p.end_to_end[1].0),
    ] {
        h.render_samples(
            &mut out,
            "monasca_persister_end_to_end_latency_seconds",
            &format!("pipeline=\"{pipeline}\""),
        );
    }
    sample(
        &mut out,
        "monasca_persister_batches_in_flight",
        "gauge",
        "Batches being written and dead-lettered, not yet finished.",
        p.batches_in_flight.load(Ordering::Relaxed),
    );
    sample(
        &mut out,
        "monasca_persister_bytes_in_flight",
        "gauge",
        "Line-protocol bytes being written.",
        w.bytes_in_flight.load(Ordering::Relaxed),
    );
    sample(
        &mut out,
        "monasca_persister_rate_limited_seconds_total",
        "counter",
        "Time writes waited for influxdb.max_points_per_second (consumers pause meanwhile).",
        w.rate_limited.get(),
    );
    sample(
        &mut out,
        "monasca_persister_influxdb_failing",
        "gauge",
        "1 while the latest write attempt failed and is being retried.",
        u8::from(w.failing.load(Ordering::Relaxed)),
    );
    header(
        &mut out,
        "monasca_persister_consumer_lag",
        "gauge",
        "Messages behind the partition's end (high watermark last fetched minus position).",
    );
    for ((topic, partition), v) in p.lag.snapshot() {
        let _ = writeln!(
            out,
            "monasca_persister_consumer_lag{{topic=\"{}\",partition=\"{partition}\"}} {v}",
            label(&topic)
        );
    }
    header(
        &mut out,
        "monasca_persister_partition_read_errors_total",
        "counter",
        "Errors librdkafka reported for a partition instead of its messages, by cause (decompression, crc, corrupt, other).",
    );
    for ((topic, partition, cause), v) in p.read_errors.snapshot() {
        let _ = writeln!(
            out,
            "monasca_persister_partition_read_errors_total{{topic=\"{}\",partition=\"{partition}\",cause=\"{cause}\"}} {v}",
            label(&topic)
        );
    }
    header(
        &mut out,
        "monasca_persister_partition_unreadable_seconds",
        "gauge",
        "How long a partition has been unreadable (its messages wait; nothing is skipped); absent while readable.",
    );
    for ((topic, partition, cause), secs) in unreadable_seconds(p) {
        let _ = writeln!(
            out,
            "monasca_persister_partition_unreadable_seconds{{topic=\"{}\",partition=\"{partition}\",cause=\"{cause}\"}} {secs:.1}",
            label(&topic)
        );
    }
    if let Some(series) = &state.series {
        let counts = series.counts();
        sample(
            &mut out,
            "monasca_persister_series_limit",
            "gauge",
            "influxdb.max_hourly_series_per_tenant: new series a tenant may add per clock hour.",
            series.max(),
        );
        header(
            &mut out,
            "monasca_persister_series_tracked",
            "gauge",
            "Distinct series (measurement + tag set) a tenant has written in the current hour.",
        );
        for c in &counts {
            let _ = writeln!(
                out,
                "monasca_persister_series_tracked{{tenant=\"{}\"}} {}",
                label(&c.tenant),
                c.tracked
            );
        }
        header(
            &mut out,
            "monasca_persister_series_refused_total",
            "counter",
            "Messages refused (dead-lettered as series_limit) because they would add a series beyond the tenant's hourly limit.",
        );
        for c in &counts {
            let _ = writeln!(
                out,
                "monasca_persister_series_refused_total{{tenant=\"{}\"}} {}",
                label(&c.tenant),
                c.refused
            );
        }
    }
    // Each family's samples stay together, as the text format requires.
    let failing = w.failing_databases();
    header(
        &mut out,
        "monasca_persister_influxdb_database_failing_seconds",
        "gauge",
        "How long writes to this database have been failing (only failing databases are listed).",
    );
    for d in &failing {
        let _ = writeln!(
            out,
            "monasca_persister_influxdb_database_failing_seconds{{db=\"{}\"}} {:.3}",
            label(&d.db),
            d.failing_for.as_secs_f64()
        );
    }
    header(
        &mut out,
        "monasca_persister_influxdb_database_refused_seconds",
        "gauge",
        "How long this database has refused every write (403, bucket missing).",
    );
    for d in &failing {
        if let Some(r) = d.refused_for {
            let _ = writeln!(
                out,
                "monasca_persister_influxdb_database_refused_seconds{{db=\"{}\"}} {:.3}",
                label(&d.db),
                r.as_secs_f64()
            );
        }
    }
    header(
        &mut out,
        "monasca_persister_oldest_uncommitted_seconds",
        "gauge",
        "Age of the partition's oldest message consumed and not yet written or dead-lettered (0: none waits).",
    );
    for ((topic, partition), ms) in p.oldest_uncommitted.snapshot() {
        let _ = writeln!(
            out,
            "monasca_persister_oldest_uncommitted_seconds{{topic=\"{}\",partition=\"{partition}\"}} {:.3}",
            label(&topic),
            ms as f64 / 1000.0
        );
    }
    header(
        &mut out,
        "monasca_persister_partitions_assigned",
        "gauge",
        "Partitions assigned, by consumer.",
    );
    for (consumer, v) in p.assigned.snapshot() {
        let _ = writeln!(
            out,
            "monasca_persister_partitions_assigned{{consumer=\"{}\"}} {v}",
            label(&consumer)
        );
    }
    for (name, help, gauge) in [
        (
            "monasca_persister_partitions_paused",
            "Partitions paused for backpressure (the sink is behind), by consumer.",
            &p.paused,
        ),
        (
            "monasca_persister_kafka_brokers_down",
            "1 while every Kafka broker is unreachable for this consumer.",
            &p.brokers_down,
        ),
    ] {
        header(&mut out, name, "gauge", help);
        for (consumer, v) in gauge.snapshot() {
            let _ = writeln!(out, "{name}{{consumer=\"{}\"}} {v}", label(&consumer));
        }
    }
    if let Some((cpu, rss)) = process_usage() {
        sample(
            &mut out,
            "monasca_persister_process_cpu_seconds_total",
            "counter",
            "CPU time (user + system) of the process.",
            cpu,
        );
        sample(
            &mut out,
            "monasca_persister_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the process.",
            rss,
        );
    }
    if let Some(groups) = thread_cpu() {
        let name = "monasca_persister_thread_cpu_seconds_total";
        header(
            &mut out,
            name,
            "counter",
            "CPU time (user + system) of the process's threads, by what they do: consumer \
             (taking messages from librdkafka, decode, encode, batching), librdkafka (its own \
             threads: fetching and parsing Kafka responses), io (HTTP writes, admin), other.",
        );
        for (threads, seconds) in groups {
            let _ = writeln!(out, "{name}{{threads=\"{threads}\"}} {seconds}");
        }
    }
    sample(
        &mut out,
        "monasca_persister_poll_seconds_total",
        "counter",
        "Consumer time waiting for and taking messages from librdkafka.",
        p.poll_seconds.get(),
    );
    sample(
        &mut out,
        "monasca_persister_convert_seconds_total",
        "counter",
        "Consumer time decoding and encoding messages.",
        p.convert_seconds.get(),
    );
    sample(
        &mut out,
        "monasca_persister_uptime_seconds",
        "gauge",
        "Seconds since start.",
        state.started.elapsed().as_secs_f64(),
    );
    out
}

/// CPU seconds and resident bytes of this process, from `/proc/self/stat` (Linux only).
fn process_usage() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, rss is 24: after the state
    // (field 3) they are at 11, 12 and 21 here.
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let pages: u64 = f.get(21)?.parse().ok()?;
    // The kernel's USER_HZ is 100 and pages are 4 KiB on every platform this daemon ships for
    // (x86_64, aarch64 with 4 KiB pages); no libc call needed.
    Some((ticks / 100.0, pages * 4096))
}

/// The group a thread's CPU time is counted in, from its name: the consumers are named
/// `metrics-N` and `alarms-N`, librdkafka names its threads `rdk:…`, and the tokio runtime's
/// (HTTP writes, the admin endpoint) are `persister-io`.
fn thread_group(name: &str) -> &'static str {
    let consumer = ["metrics-", "alarms-"].iter().any(|p| {
        name.strip_prefix(p)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    if consumer {
        "consumer"
    } else if name.starts_with("rdk:") {
        "librdkafka"
    } else if name.starts_with("persister-io") {
        "io"
    } else {
        "other"
    }
}

/// The four thread groups, in the order [`thread_cpu`] reports them.
const THREAD_GROUPS: [&str; 4] = ["consumer", "librdkafka", "io", "other"];

/// What [`thread_cpu`] saw at its last call: each live thread's group and CPU seconds, and per
/// group the seconds of threads that have ended since, so that every group only ever grows.
#[derive(Default)]
struct ThreadCpuSeen {
    threads: std::collections::HashMap<u64, (usize, f64)>,
    ended: [f64; 4],
}

static THREAD_CPU_SEEN: std::sync::Mutex<Option<ThreadCpuSeen>> = std::sync::Mutex::new(None);

/// CPU seconds of this process's threads, summed by [`thread_group`], from
/// `/proc/self/task/*/stat` (Linux only). A thread that has ended keeps counting with what it
/// had used when last seen (librdkafka starts and stops a thread per broker), so each group
/// is a counter that never goes down; only the time an ended thread used after the previous
/// call is missing from the groups (the process total has it).
fn thread_cpu() -> Option<[(&'static str, f64); 4]> {
    let mut live = std::collections::HashMap::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u64>().ok())
        else {
            continue;
        };
        // A thread that ended meanwhile has no files any more: skip it.
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("", |(_, n)| n);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let group = THREAD_GROUPS
            .iter()
            .position(|g| *g == thread_group(name))
            .unwrap_or(THREAD_GROUPS.len() - 1);
        live.insert(tid, (group, (ticks(11) + ticks(12)) / 100.0));
    }
    let mut seen = THREAD_CPU_SEEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let seen = seen.get_or_insert_with(ThreadCpuSeen::default);
    for (tid, (group, secs)) in &seen.threads {
        if !live.contains_key(tid) {
            seen.ended[*group] += secs;
        }
    }
    let mut sums = seen.ended;
    for (group, secs) in live.values() {
        sums[*group] += secs;
    }
    seen.threads = live;
    Some(std::array::from_fn(|i| (THREAD_GROUPS[i], sums[i])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Runs a thread named `name` that burns CPU until `done` (asked between bursts, on that
    /// thread, so while it is alive) gives an answer, or 20 s of wall time pass: a loaded
    /// machine only makes it take longer. Returns the answer.
    fn burn<T: Send + 'static>(
        name: &str,
        done: impl Fn() -> Option<T> + Send + 'static,
    ) -> Option<T> {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let start = Instant::now();
                let mut x = 0u64;
                while start.elapsed() < Duration::from_secs(20) {
                    for _ in 0..1_000_000 {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                    if let Some(answer) = done() {
                        return Some(answer);
                    }
                }
                None
            })
            .expect("spawn")
            .join()
            .expect("the busy thread")
    }

    /// CPU ticks (10 ms) the calling thread has used.
    fn own_ticks() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self");
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, r)| r.split_whitespace().collect());
        f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
    }

    /// A consumer thread that has ended still counts: the group never goes down.
    #[test]
    fn an_ended_thread_s_time_stays_counted() {
        // Read once the thread's own time is 50 ms, so this reading knows the thread.
        let during = burn("alarms-9", || {
            (own_ticks() >= 5).then(|| thread_cpu().expect("/proc/self/task")[0].1)
        })
        .expect("the thread used 50 ms within 20 s");
        assert!(
            during >= 0.05,
            "the live thread's time is counted: {during}"
        );
        let after = thread_cpu().expect("/proc/self/task")[0].1;
        assert!(
            after >= during,
            "the group went down from {during} to {after}"
        );
    }

    #[test]
    fn threads_are_grouped_by_their_names() {
        for (name, group) in [
            ("metrics-0", "consumer"),
            ("alarms-12", "consumer"),
            ("metrics-0-close", "other"),
            ("metrics-", "other"),
            ("rdk:broker1", "librdkafka"),
            ("rdk:main", "librdkafka"),
            ("persister-io", "io"),
            ("monasca-persist", "other"),
        ] {
            assert_eq!(thread_group(name), group, "{name}");
        }
    }

    /// A thread named like a consumer that burns CPU shows up in the consumer group, and the
    /// groups add up to no more than the whole process.
    #[test]
    fn a_consumer_thread_s_cpu_time_is_counted_as_consumer() {
        let before = thread_cpu().expect("/proc/self/task")[0].1;
        let during = burn("metrics-7", move || {
            let during = thread_cpu().expect("/proc/self/task");
            (during[0].1 - before >= 0.05).then_some(during)
        })
        .unwrap_or_else(|| panic!("the consumer group did not grow by 50 ms in 20 s"));
        let total: f64 = during.iter().map(|g| g.1).sum();
        let (process, _) = process_usage().expect("/proc/self/stat");
        assert!(total <= process + 0.02, "{during:?} against {process}");
    }

    fn state(bound: Option<Duration>) -> AdminState {
        AdminState {
            pipeline: Arc::new(PipelineStats::default()),
            writer: Arc::new(WriterStats::default()),
            started: Instant::now(),
            ready_max_uncommitted: bound,
            ready_max_unreadable: Some(Duration::from_secs(60)),
            series: None,
        }
    }

    #[test]
    fn a_partition_unreadable_past_the_bound_makes_it_unready_and_is_named() {
        let s = state(None);
        s.pipeline.assigned.set("metrics-0".into(), 4);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let key = ("metrics".to_string(), 3, "decompression");
        s.pipeline
            .unreadable_since
            .set(key.clone(), now_ms - 30_000);
        let (ready, body) = readiness(&s);
        assert!(ready, "within the bound: {body}");
        assert!(
            body.contains(r#""unreadable_partitions":[{"topic":"metrics","partition":3,"cause":"decompression","seconds":30."#),
            "named while still within the bound: {body}"
        );
        s.pipeline
            .unreadable_since
            .set(key.clone(), now_ms - 61_000);
        let (ready, body) = readiness(&s);
        assert!(!ready, "past the bound: {body}");
        assert!(body.contains(r#""partition":3"#), "{body}");
        let text = render(&s);
        assert!(
            text.contains(r#"monasca_persister_partition_unreadable_seconds{topic="metrics",partition="3",cause="decompression"} 61."#),
            "{text}"
        );
        s.pipeline.unreadable_since.remove(&key);
        assert!(readiness(&s).0, "readable again");
    }

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
        let s = AdminState {
            series: Some(series),
            ..state(Some(Duration::from_secs(60)))
        };
        let p = &s.pipeline;
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
        let w = &s.writer;
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
        s
    }

    /// The exposition, family by family and byte by byte, as the refactoring of `render`
    /// (into `admin::metrics`) found it.
    #[test]
    fn the_exposition_is_unchanged() {
        let got = masked(&render(&populated()));
        if std::env::var_os("ADMIN_GOLDEN_PRINT").is_some() {
            print!("{got}");
        }
        assert_eq!(got, include_str!("admin/metrics.golden.txt"));
    }

    #[test]
    fn ready_needs_partitions_and_a_working_sink() {
        let s = state(None);
        assert!(!readiness(&s).0, "nothing assigned yet");
        s.pipeline.assigned.set("metrics-0".into(), 4);
        assert!(readiness(&s).0);
        s.writer.failing.store(true, Ordering::Relaxed);
        assert!(!readiness(&s).0, "InfluxDB failing");
    }

    #[test]
    fn a_message_waiting_uncommitted_past_the_bound_makes_it_unready() {
        let s = state(Some(Duration::from_secs(300)));
        s.pipeline.assigned.set("metrics-0".into(), 4);
        s.pipeline
            .oldest_uncommitted
            .set(("metrics".into(), 2), 300_000);
        assert!(readiness(&s).0, "at the bound: still ready");
        s.pipeline
            .oldest_uncommitted
            .set(("metrics".into(), 2), 300_001);
        let (ready, body) = readiness(&s);
        assert!(!ready, "{body}");
        assert!(
            body.contains(r#""oldest_uncommitted_seconds":300.0"#),
            "{body}"
        );
        let never = state(None);
        never.pipeline.assigned.set("metrics-0".into(), 4);
        never
            .pipeline
            .oldest_uncommitted
            .set(("metrics".into(), 2), i64::MAX);
        assert!(readiness(&never).0, "no bound: never unready for it");
    }
}
