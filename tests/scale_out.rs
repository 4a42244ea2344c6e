//! Scaling out and in under load, end to end: the real binary (two daemons in one consumer
//! group, dynamic membership), a real InfluxDB 1.6 and the tansu Kafka broker, all started
//! here. Daemon B joins while A runs (a rebalance), then A stops with SIGTERM (another); no
//! message may be lost or stored twice, and the group's commits must reach the end.
//!
//! The test also MEASURES how long commits pause at each rebalance: a background thread reads
//! the group's committed offsets every ~200 ms, and the longest interval without an increase,
//! of their sum and of each partition's, around each rebalance is printed (never asserted:
//! this is a measurement; see the README, "Scaling out"). Run it with `cargo test --test scale_out -- --nocapture`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::e2e::{Feeder, metric_points, scrape, total};
use common::kafka::{Persister, Tansu};
use common::{Influx, TempDir};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const TOPIC: &str = "metrics";
const GROUP: &str = "1_metrics";
const PARTITIONS: i32 = 4;

/// Reads the group's committed offsets every ~200 ms in the background and records when it
/// read them and what they were (one offset per partition, 0 where none), and how many reads
/// failed (a failed read is no sample: the pauses reported around it come out longer).
struct CommitSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(Vec<Sample>, usize)>,
}

/// When the offsets were read, and each partition's.
type Sample = (Instant, Vec<i64>);

impl CommitSampler {
    fn start(tansu: &Tansu) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // Never subscribes, so it never joins the group: it only asks for the group's offsets.
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", tansu.bootstrap())
            .set("group.id", GROUP)
            .create()
            .unwrap();
        let thread = std::thread::spawn(move || {
            let (mut samples, mut failed) = (Vec::new(), 0);
            while !flag.load(Ordering::Relaxed) {
                let tick = Instant::now();
                let mut tpl = TopicPartitionList::new();
                for p in 0..PARTITIONS {
                    tpl.add_partition(TOPIC, p);
                }
                if let Ok(got) = c.committed_offsets(tpl, Duration::from_secs(10)) {
                    let mut offsets = vec![0; PARTITIONS as usize];
                    for e in got.elements() {
                        if let (Offset::Offset(o), Ok(p)) =
                            (e.offset(), usize::try_from(e.partition()))
                        {
                            offsets[p] = o;
                        }
                    }
                    samples.push((Instant::now(), offsets));
                } else {
                    failed += 1;
                }
                // Sampling cadence, not synchronisation.
                std::thread::sleep(Duration::from_millis(200).saturating_sub(tick.elapsed()));
            }
            (samples, failed)
        });
        CommitSampler { stop, thread }
    }

    fn stop(self) -> (Vec<Sample>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("commit sampler thread")
    }
}

/// The times at which `value` of a sample was seen to increase.
fn increases(samples: &[Sample], value: impl Fn(&[i64]) -> i64) -> Vec<Instant> {
    samples
        .windows(2)
        .filter(|w| value(&w[1].1) > value(&w[0].1))
        .map(|w| w[1].0)
        .collect()
}

/// The longest interval between two consecutive increases that overlaps `[from, to]`, or with
/// `within`, lies inside it: (its start, its length).
fn longest_pause(
    ups: &[Instant],
    from: Instant,
    to: Instant,
    within: bool,
) -> Option<(Instant, Duration)> {
    ups.windows(2)
        .filter(|w| {
            if within {
                w[0] >= from && w[1] <= to
            } else {
                w[1] > from && w[0] < to
            }
        })
        .map(|w| (w[0], w[1] - w[0]))
        .max_by_key(|(_, d)| *d)
}

fn metric_of(port: u16, name: &str) -> f64 {
    total(&scrape(port), name)
}

/// Polls `f` until it holds, up to `limit`; on timeout panics with both daemons' log tails.
fn wait_until(what: &str, limit: Duration, logs: &[&Persister], mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let tails: Vec<String> = logs
        .iter()
        .map(|p| {
            let log = p.log_text();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        })
        .collect();
    panic!(
        "timed out waiting for {what}; persister log tails:\n{}",
        tails.join("\n-----\n")
    );
}

/// A TOML config in its own directory (each daemon logs to `<dir>/persister.log`).
fn config(dir: &TempDir, tansu: &Tansu, influx: &Influx) -> std::path::PathBuf {
    let text = format!(
        r#"
[kafka]
uri = "{bootstrap}"
brokers_down_exit_seconds = 120

[kafka_metrics]
topic = "{TOPIC}"
group_id = "{GROUP}"
batch_size = 5000
max_wait_time_seconds = 0.5

[kafka_alarm_history]
enabled = false

[influxdb]
port = {port}
database_name = "mon"
retry_initial_ms = 50
retry_max_seconds = 1.0

[persister]
shutdown_timeout_seconds = 10
admin_listen = "127.0.0.1:0"
"#,
        bootstrap = tansu.bootstrap(),
        port = influx.port,
    );
    let path = dir.0.join("persister.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The messages the daemon consumed in all, from its last log line ("persister stopped").
fn consumed_at_stop(p: &Persister) -> i64 {
    p.log_text()
        .lines()
        .filter(|l| l.contains("persister stopped"))
        .find_map(|l| l.split("consumed=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no \"persister stopped consumed=\" line:\n{}", p.log_text()))
}

/// The daemon's log lines about rebalances and commits that did not go through.
fn rebalance_log(p: &Persister) -> Vec<String> {
    p.log_text()
        .lines()
        .filter(|l| {
            l.contains("partitions assigned")
                || l.contains("partitions revoked")
                || l.contains("commit failed")
                || l.contains("rebalance failed")
                || l.contains("could not commit")
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn second_daemon_joins_then_first_leaves_under_load_every_message_lands_once() {
    let t0 = Instant::now();
    let influx = Influx::start();
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, PARTITIONS as u32);
    let (dir_a, dir_b) = (TempDir::new("scale-a"), TempDir::new("scale-b"));

    let sampler = CommitSampler::start(&tansu);
    let mut a = Persister::start(&config(&dir_a, &tansu, &influx));
    let admin_a = a.admin_port();
    let feeder = Feeder::start(&tansu, PARTITIONS, 0);

    // A alone: it owns every partition and commits.
    wait_until(
        "A owns all partitions",
        Duration::from_secs(120),
        &[&a],
        || metric_of(admin_a, "monasca_persister_partitions_assigned") == PARTITIONS as f64,
    );
    wait_until(
        "A commits 10 000 messages",
        Duration::from_secs(180),
        &[&a],
        || {
            tansu
                .committed(GROUP, TOPIC, PARTITIONS)
                .is_ok_and(|n| n >= 10_000)
        },
    );

    // Scale out: B joins the group (a rebalance) while the load goes on.
    let b_start = Instant::now();
    let mut b = Persister::start(&config(&dir_b, &tansu, &influx));
    let admin_b = b.admin_port();
    wait_until(
        "B gets partitions",
        Duration::from_secs(120),
        &[&a, &b],
        || metric_of(admin_b, "monasca_persister_partitions_assigned") > 0.0,
    );
    let b_assigned = Instant::now();
    let assigned_b = metric_of(admin_b, "monasca_persister_partitions_assigned");
    wait_until(
        "B writes points",
        Duration::from_secs(120),
        &[&a, &b],
        || metric_of(admin_b, "monasca_persister_points_written_total") > 0.0,
    );
    let written_a_then = metric_of(admin_a, "monasca_persister_points_written_total");
    wait_until(
        "A writes on after B joined",
        Duration::from_secs(120),
        &[&a, &b],
        || metric_of(admin_a, "monasca_persister_points_written_total") > written_a_then,
    );
    let committed_then = tansu.committed_now(GROUP, TOPIC, PARTITIONS);
    wait_until(
        "10 000 more committed by the two daemons",
        Duration::from_secs(180),
        &[&a, &b],
        || {
            tansu
                .committed(GROUP, TOPIC, PARTITIONS)
                .is_ok_and(|n| n >= committed_then + 10_000)
        },
    );
    // Both daemons wrote points, scraped before A stops.
    let written_a = metric_of(admin_a, "monasca_persister_points_written_total");
    let written_b = metric_of(admin_b, "monasca_persister_points_written_total");
    let assigned_a = metric_of(admin_a, "monasca_persister_partitions_assigned");
    eprintln!(
        "both running: A owns {assigned_a} partitions, wrote {written_a} points; B owns {assigned_b} (when first seen), wrote {written_b}"
    );
    assert!(written_a > 0.0, "A wrote points");
    assert!(written_b > 0.0, "B wrote points");
    assert!(assigned_b > 0.0, "B got partitions");

    // Scale in: A stops with SIGTERM (leaves the group: another rebalance), the load goes on.
    let a_term = Instant::now();
    a.signal("-TERM");
    let status = a
        .wait(Duration::from_secs(120))
        .expect("A exits after SIGTERM");
    let a_exit = Instant::now();
    assert!(
        status.success(),
        "A's exit status {status:?}\n{}",
        a.log_text()
    );
    wait_until(
        "B owns all partitions",
        Duration::from_secs(120),
        &[&b],
        || metric_of(admin_b, "monasca_persister_partitions_assigned") == PARTITIONS as f64,
    );
    let b_all = Instant::now();
    let committed_then = tansu.committed_now(GROUP, TOPIC, PARTITIONS);
    wait_until(
        "10 000 more committed by B alone",
        Duration::from_secs(180),
        &[&b],
        || {
            tansu
                .committed(GROUP, TOPIC, PARTITIONS)
                .is_ok_and(|n| n >= committed_then + 10_000)
        },
    );

    // The load stops; everything produced lands exactly once and is committed.
    let load_stop = Instant::now();
    let produced = feeder.stop() as i64;
    wait_until(
        "every produced message in InfluxDB",
        Duration::from_secs(180),
        &[&b],
        || metric_points(&influx) >= produced,
    );
    wait_until(
        "commits reach the end",
        Duration::from_secs(120),
        &[&b],
        || {
            tansu
                .committed(GROUP, TOPIC, PARTITIONS)
                .is_ok_and(|n| n >= produced)
        },
    );
    // Each message is its own point (distinct timestamp), and a redelivered message rewrites
    // the same point: count == produced means each message is stored once, none lost.
    assert_eq!(
        metric_points(&influx),
        produced,
        "points = messages produced"
    );
    assert_eq!(
        tansu.committed_now(GROUP, TOPIC, PARTITIONS),
        produced,
        "committed offsets = messages produced"
    );
    b.signal("-TERM");
    let status = b
        .wait(Duration::from_secs(120))
        .expect("B exits after SIGTERM");
    assert!(
        status.success(),
        "B's exit status {status:?}\n{}",
        b.log_text()
    );

    // The measurement: pauses of the group's commits (sum over partitions) and of each
    // partition's, around each rebalance, with the steady state for comparison.
    let (samples, failed_reads) = sampler.stop();
    let (consumed_a, consumed_b) = (consumed_at_stop(&a), consumed_at_stop(&b));
    let sum_ups = increases(&samples, |o| o.iter().sum());
    let part_ups: Vec<Vec<Instant>> = (0..PARTITIONS as usize)
        .map(|p| increases(&samples, |o| o[p]))
        .collect();
    let secs = |t: Instant| t.duration_since(t0).as_secs_f64();
    let wall = |t: Instant| {
        let since = t0.elapsed().saturating_sub(t.duration_since(t0));
        let unix = (std::time::SystemTime::now() - since)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let s = unix.as_secs() % 86_400;
        format!(
            "{:02}:{:02}:{:02}.{:03}Z",
            s / 3600,
            s / 60 % 60,
            s % 60,
            unix.subsec_millis()
        )
    };
    eprintln!(
        "timeline (s since start; UTC as in the logs): B started {:.2} ({}), B had partitions {:.2}, SIGTERM to A {:.2} ({}), A exited {:.2}, B owned all {:.2}, load stopped {:.2}; produced {produced}, consumed by A {consumed_a} and B {consumed_b}: {} read twice; {} commit samples ({failed_reads} reads failed), {} increases of the sum",
        secs(b_start),
        wall(b_start),
        secs(b_assigned),
        secs(a_term),
        wall(a_term),
        secs(a_exit),
        secs(b_all),
        secs(load_stop),
        consumed_a + consumed_b - produced,
        samples.len(),
        sum_ups.len()
    );
    let fmt = |p: Option<(Instant, Duration)>| match p {
        Some((start, d)) => format!("{:.2} s (from t={:.2})", d.as_secs_f64(), secs(start)),
        None => "none observed".to_owned(),
    };
    let report = |what: &str, from: Instant, to: Instant, within: bool| {
        let per_partition: Vec<String> = (0..PARTITIONS as usize)
            .map(|p| match longest_pause(&part_ups[p], from, to, within) {
                Some((_, d)) => format!("p{p} {:.2} s", d.as_secs_f64()),
                None => format!("p{p} -"),
            })
            .collect();
        eprintln!(
            "PAUSE {what}, t={:.2}..{:.2}: group sum {}; per partition {}",
            secs(from),
            secs(to),
            fmt(longest_pause(&sum_ups, from, to, within)),
            per_partition.join(", ")
        );
    };
    let first_up = sum_ups.first().copied().unwrap_or(b_start);
    report("steady, A alone", first_up, b_start, true);
    report(
        "scale-out (B starts .. B seen owning partitions)",
        b_start,
        b_assigned,
        false,
    );
    report("steady, A and B", b_assigned, a_term, true);
    report(
        "scale-in (SIGTERM to A .. B seen owning all)",
        a_term,
        b_all,
        false,
    );
    report("steady, B alone", b_all, load_stop, true);
    eprintln!(
        "A's rebalance log:\n{}\nB's rebalance log:\n{}",
        rebalance_log(&a).join("\n"),
        rebalance_log(&b).join("\n")
    );
    eprintln!("test duration: {:.1} s", t0.elapsed().as_secs_f64());
}
