//! The Kafka side against librdkafka's in-process mock cluster, writing into an in-process
//! discard sink whose answers the tests control: commits follow writes, revocation flushes and
//! commits, a rebalance between two consumers loses nothing, a broker outage is survived,
//! the lag gauge counts what waits and belongs to the partition's owner; the whole daemon,
//! in process, stops when its shutdown future resolves.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::kafka::{CommittedError, committed_read, committed_sum};
use monasca_persister::Kind;
use monasca_persister::cli::discard::{SinkStats, serve};
use monasca_persister::kafka::deadletter::DeadLetters;
use monasca_persister::kafka::spawn_consumer;
use monasca_persister::pipeline::batch::Routing;
use monasca_persister::pipeline::{Control, Ending, PipelineSettings, PipelineStats};
use monasca_persister::sink::{InfluxConfig, Writer};
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio_util::sync::CancellationToken;

struct Harness {
    rt: tokio::runtime::Runtime,
    sink: Arc<SinkStats>,
    /// Where the sink listens.
    port: u16,
    writer: Writer,
    cancel: CancellationToken,
}

impl Harness {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sink = Arc::new(SinkStats::default());
        sink.record.store(true, Ordering::Relaxed);
        let port = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = l.local_addr().unwrap().port();
            tokio::spawn(serve(l, sink.clone(), CancellationToken::new()));
            port
        });
        let cancel = CancellationToken::new();
        let writer = {
            let _g = rt.enter();
            Writer::new(
                InfluxConfig {
                    port,
                    retry_initial_ms: 20,
                    retry_max_seconds: 0.2,
                    ..InfluxConfig::default()
                },
                cancel.clone(),
            )
            .unwrap()
        };
        Harness {
            rt,
            sink,
            port,
            writer,
            cancel,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn consumer_with_stats(
        &self,
        bootstrap: &str,
        topic: &str,
        batch_size: usize,
        max_wait: Duration,
        control: Arc<Control>,
        index: usize,
        stats: Arc<PipelineStats>,
    ) -> std::thread::JoinHandle<Ending> {
        let settings = Arc::new(PipelineSettings {
            name: "metrics",
            kind: Kind::Metrics,
            topic: topic.into(),
            batch_size,
            max_wait,
            max_batches_in_flight: 3,
            routing: Routing::Single("mon".into()),
            converter_policy: Default::default(),
            max_message_bytes: 1 << 20,
            consumer_properties: vec![
                ("bootstrap.servers".into(), bootstrap.into()),
                ("group.id".into(), "g".into()),
                ("enable.auto.commit".into(), "false".into()),
                ("enable.auto.offset.store".into(), "false".into()),
                ("auto.offset.reset".into(), "earliest".into()),
                ("session.timeout.ms".into(), "6000".into()),
                ("heartbeat.interval.ms".into(), "500".into()),
                (
                    "partition.assignment.strategy".into(),
                    "cooperative-sticky".into(),
                ),
            ],
            group_instance_id: None,
            brokers_down_exit: Duration::from_secs(600),
            shutdown_timeout: Duration::from_secs(10),
            lag_interval: Duration::from_secs(1),
            database_refused: Duration::from_secs(300),
            series_limit: None,
            destination: None,
        });
        let dead = Arc::new(DeadLetters::new(topic.into(), None, self.cancel.clone()));
        spawn_consumer(
            settings,
            index,
            self.writer.clone(),
            dead,
            stats,
            control,
            // Its own, as the daemon gives each consumer.
            self.cancel.child_token(),
            self.rt.handle().clone(),
        )
        .unwrap()
        .thread
    }

    /// Metric values the sink has received (message `i` has value `i`).
    fn received(&self) -> BTreeSet<u64> {
        let bodies = self.sink.received.lock().unwrap();
        bodies
            .iter()
            .flat_map(|b| {
                std::str::from_utf8(b)
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .map(|l| {
                let v = l
                    .split(" value=")
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap();
                v.parse::<f64>().unwrap() as u64
            })
            .collect()
    }
}

fn produce(bootstrap: &str, topic: &str, range: std::ops::Range<u64>, partitions: i32) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for i in range {
        let payload = format!(
            r#"{{"metric":{{"name":"m","dimensions":{{"i":"{i}"}},"timestamp":{i},"value":{i}}},"meta":{{"tenantId":"t","region":"r"}}}}"#
        );
        loop {
            let rec = BaseRecord::<(), _>::to(topic)
                .payload(&payload)
                .partition((i % partitions as u64) as i32);
            match p.send(rec) {
                Ok(()) => break,
                Err(_) => {
                    p.poll(Duration::from_millis(10));
                }
            }
        }
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// A client of group `g` at `bootstrap`, for reading its committed offsets.
fn group_g(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap).set("group.id", "g");
    c
}

/// Committed offsets of group `g`, summed over partitions (partitions with none count 0);
/// `Err` when they could not be read (a loaded machine can miss the 10 s limit). For polling.
fn committed_total(bootstrap: &str, topic: &str, partitions: i32) -> Result<i64, CommittedError> {
    committed_sum(&group_g(bootstrap), topic, partitions)
}

/// Everything logged in this test binary (all its tests), kept for the tests that check what
/// was logged; each write also goes to the running test's captured output.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct TeeToLog;

impl std::io::Write for TeeToLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        print!("{}", String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The lines logged so far (by every test of this binary) that contain all of `words`.
fn logged(words: &[&str]) -> Vec<String> {
    let log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .map(str::to_owned)
        .collect()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// A running consumer: its stop switch, its counters, its thread.
struct Running {
    control: Arc<Control>,
    stats: Arc<PipelineStats>,
    thread: std::thread::JoinHandle<Ending>,
}

impl Running {
    fn consumed(&self) -> u64 {
        self.stats.consumed()
    }

    /// Stops it (flush, commit, leave) and waits for its thread, which must end in time.
    fn stop(self) {
        self.control.stop.cancel();
        wait_for("the consumer to stop", Duration::from_secs(60), || {
            self.thread.is_finished()
        });
        assert_eq!(self.thread.join().unwrap(), Ending::Stopped);
    }
}

/// A mock cluster with one topic, a sink harness, and helpers over both.
struct Scenario {
    cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    bs: String,
    topic: &'static str,
    partitions: i32,
    h: Harness,
}

impl Scenario {
    fn new(topic: &'static str, partitions: i32) -> Self {
        // The consumers' logs go to the test's captured output: shown when a test fails.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,monasca_persister=debug")
            .with_ansi(false)
            .with_writer(|| TeeToLog)
            .try_init();
        let cluster = MockCluster::new(1).unwrap();
        let bs = cluster.bootstrap_servers();
        cluster.create_topic(topic, partitions, 1).unwrap();
        Scenario {
            cluster,
            bs,
            topic,
            partitions,
            h: Harness::new(),
        }
    }

    fn produce(&self, range: std::ops::Range<u64>) {
        produce(&self.bs, self.topic, range, self.partitions);
    }

    fn consumer(&self, batch_size: usize, max_wait: Duration, index: usize) -> Running {
        self.consumer_with(batch_size, max_wait, index, Control::default())
    }

    fn consumer_with(
        &self,
        batch_size: usize,
        max_wait: Duration,
        index: usize,
        control: Control,
    ) -> Running {
        let control = Arc::new(control);
        let stats = Arc::new(PipelineStats::default());
        let thread = self.h.consumer_with_stats(
            &self.bs,
            self.topic,
            batch_size,
            max_wait,
            control.clone(),
            index,
            stats.clone(),
        );
        Running {
            control,
            stats,
            thread,
        }
    }

    /// For polling: `Err` when the offsets could not be read.
    fn committed(&self) -> Result<i64, CommittedError> {
        committed_total(&self.bs, self.topic, self.partitions)
    }

    /// For a final assertion: read until a read succeeds (a few tries), else panic.
    fn committed_now(&self) -> i64 {
        committed_read(&group_g(&self.bs), self.topic, self.partitions)
    }

    /// Waits until messages `0..n` are committed, then checks every one reached the sink.
    fn drained(&self, n: u64, limit: Duration) {
        wait_for(&format!("{n} committed"), limit, || {
            self.committed().is_ok_and(|c| c == n as i64)
        });
        assert_eq!(
            self.h.received(),
            (0..n).collect(),
            "every message written at least once"
        );
    }

    /// Writes refused with 503, `n` messages waiting, and consumer 0 (batches of 10) started:
    /// it blocks after three batches in flight and a full fourth.
    fn blocked_consumer(&self, n: u64) -> Running {
        self.refuse(503);
        self.produce(0..n);
        self.consumer(10, Duration::from_millis(50), 0)
    }

    fn refuse(&self, status: u16) {
        self.h.sink.refuse_with.store(status, Ordering::Relaxed);
    }
}

#[test]
fn offsets_are_committed_only_after_the_write_succeeds() {
    let s = Scenario::new("m1", 2);
    s.refuse(503);
    s.produce(0..200);
    let c = s.consumer(25, Duration::from_millis(200), 0);
    // Proof the consumer is at work: it took messages and the writer tried, and was refused,
    // several times.
    wait_for(
        "consumed and writes refused",
        Duration::from_secs(60),
        || c.consumed() >= 25 && s.h.writer.stats().requests.load(Ordering::Relaxed) >= 3,
    );
    assert_eq!(s.h.sink.points.load(Ordering::Relaxed), 0);
    assert_eq!(s.committed_now(), 0, "nothing written, nothing committed");
    s.refuse(0);
    s.drained(200, Duration::from_secs(90));
    c.stop();
}

#[test]
fn pipelined_batches_commit_every_partition_to_its_end() {
    let s = Scenario::new("m2", 3);
    s.produce(0..3000);
    let c = s.consumer(100, Duration::from_millis(100), 0);
    s.drained(3000, Duration::from_secs(90));
    // Messages come from librdkafka in batches (partition queues forwarded to the consumer's
    // own queue), not one poll each: that path costs a fifth of the daemon's CPU.
    let fetches = c.stats.fetches.load(Ordering::Relaxed);
    assert!(
        fetches > 0 && fetches * 10 <= c.consumed(),
        "{fetches} fetches for {} messages",
        c.consumed()
    );
    c.stop();
}

#[test]
fn revocation_flushes_and_commits_before_the_partitions_move() {
    let s = Scenario::new("m3", 2);
    s.produce(0..50);
    // A batch that would wait ten minutes: only the revocation can flush it.
    let a = s.consumer(10_000, Duration::from_secs(600), 0);
    wait_for("A consumed all 50", Duration::from_secs(60), || {
        a.consumed() == 50
    });
    assert_eq!(
        s.h.sink.points.load(Ordering::Relaxed),
        0,
        "nothing flushed yet"
    );
    // B joins: A gives up one partition and, before it does, flushes its batch, which holds
    // both partitions' messages. B writes what it reads at once, so if the coordinator
    // refused A's commit of the revoked partition (the mock cluster does while the group
    // waits for A to rejoin), B's rewrite of it is committed too.
    let b = s.consumer(10_000, Duration::from_millis(200), 1);
    s.drained(50, Duration::from_secs(120));
    wait_for("one partition each", Duration::from_secs(60), || {
        a.stats.assigned.sum() == 1 && b.stats.assigned.sum() == 1
    });
    assert!(
        a.stats.batches.load(Ordering::Relaxed) >= 1,
        "A's batch, due in ten minutes, was written on revocation"
    );
    a.stop();
    b.stop();
}

#[test]
fn two_consumers_split_partitions_and_a_rebalance_loses_nothing() {
    let s = Scenario::new("m4", 4);
    s.produce(0..1000);
    let a = s.consumer(50, Duration::from_millis(100), 0);
    wait_for("A reports lag for all 4", Duration::from_secs(90), || {
        lag_partitions(&a).len() == 4
    });
    let b = s.consumer(50, Duration::from_millis(100), 1);
    s.produce(1000..2000);
    // Each reports lag only for partitions it owns: A drops the revoked ones' gauges.
    wait_for(
        "A reports lag for its half only",
        Duration::from_secs(90),
        || lag_partitions(&a).len() == 2,
    );
    // (B reports for those of its partitions it has consumed from, if any yet.)
    let (la, lb) = (lag_partitions(&a), lag_partitions(&b));
    assert!(la.is_disjoint(&lb), "A {la:?} and B {lb:?} both report lag");
    // A leaves cleanly; B takes all partitions.
    a.stop();
    s.produce(2000..3000);
    s.drained(3000, Duration::from_secs(90));
    wait_for("B reports lag for all 4", Duration::from_secs(90), || {
        lag_partitions(&b).len() == 4
    });
    b.stop();
}

#[test]
fn broker_down_pauses_consumption_and_it_recovers() {
    let s = Scenario::new("m5", 1);
    s.produce(0..100);
    let c = s.consumer(20, Duration::from_millis(100), 0);
    s.drained(100, Duration::from_secs(90));
    s.cluster.broker_down(1).unwrap();
    wait_for("the outage noticed", Duration::from_secs(60), || {
        c.stats.brokers_down.sum() == 1
    });
    assert!(
        !c.thread.is_finished(),
        "a broker outage does not stop the consumer (before the exit limit)"
    );
    s.cluster.broker_up(1).unwrap();
    s.produce(100..200);
    s.drained(200, Duration::from_secs(60));
    assert_eq!(c.stats.brokers_down.sum(), 0, "the recovery noticed");
    c.stop();
}

#[test]
fn a_rebalance_while_paused_for_backpressure_does_not_leave_partitions_paused() {
    let s = Scenario::new("m6", 4);
    let a = s.blocked_consumer(2000);
    // The consumer pauses well before 2000.
    wait_for("A consumed and paused", Duration::from_secs(60), || {
        a.consumed() >= 40 && a.stats.paused.sum() == 4
    });
    assert!(a.consumed() < 2000, "backpressure stopped consumption");
    let b = s.consumer(10, Duration::from_millis(50), 1);
    // A's revocation waits out its timeout for the refused batches, then the two split the
    // partitions.
    wait_for("the partitions split", Duration::from_secs(90), || {
        a.stats.assigned.sum() == 2 && b.stats.assigned.sum() == 2
    });
    // A's revocation could not send its full batch within the bound (3); it kept it.
    let in_flight = a.stats.batches_in_flight.load(Ordering::Relaxed);
    assert!(
        (1..=3).contains(&in_flight),
        "{in_flight} batches in flight"
    );
    s.refuse(0);
    s.drained(2000, Duration::from_secs(60));
    a.stop();
    b.stop();
}

/// Partitions a consumer currently reports lag for.
fn lag_partitions(r: &Running) -> BTreeSet<i32> {
    r.stats
        .lag
        .snapshot()
        .into_iter()
        .map(|((_, p), _)| p)
        .collect()
}

#[test]
fn lag_counts_what_waits_behind_backpressure_and_returns_to_zero() {
    let s = Scenario::new("m7", 1);
    let a = s.blocked_consumer(2000);
    // Blocked after a few batches: nearly all 2000 wait behind it.
    wait_for("lag while blocked", Duration::from_secs(90), || {
        a.stats.lag.sum() >= 1900
    });
    assert_eq!(
        a.stats.lag.sum(),
        2000 - a.consumed() as i64,
        "lag = high watermark - consumed"
    );
    assert_eq!(lag_partitions(&a), BTreeSet::from([0]));
    // The oldest waiting message ages while nothing can be written...
    wait_for(
        "an aging uncommitted message",
        Duration::from_secs(90),
        || a.stats.oldest_uncommitted.sum() >= 1000,
    );
    s.refuse(0);
    s.drained(2000, Duration::from_secs(60));
    wait_for("lag back to 0", Duration::from_secs(90), || {
        a.stats.lag.sum() == 0
    });
    // ...and nothing waits once all is written.
    wait_for("nothing uncommitted", Duration::from_secs(90), || {
        a.stats.oldest_uncommitted.sum() == 0
    });
    a.stop();
}

#[test]
fn a_failed_commit_is_retried_even_when_no_more_messages_come() {
    let s = Scenario::new("m8", 1);
    s.produce(0..100);
    // The first two OffsetCommit requests fail with an error librdkafka does not retry itself.
    s.cluster.request_errors(
        rdkafka::types::RDKafkaApiKey::OffsetCommit,
        &[rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE; 2],
    );
    // No message comes after these 100: only a retry can commit them.
    let c = s.consumer(100, Duration::from_millis(100), 0);
    s.drained(100, Duration::from_secs(90));
    wait_for(
        "the acknowledged commit counted",
        Duration::from_secs(90),
        || c.stats.commits.load(Ordering::Relaxed) >= 1,
    );
    // The two injected errors happened: two commits failed with them and were retried.
    // (Only this test injects this error, so the lines are its consumer's.)
    let failed = logged(&["offset commit failed; will retry", "metadata"]);
    assert_eq!(failed.len(), 2, "{failed:#?}");
    c.stop();
}

#[test]
fn a_failed_batch_stops_the_consumer_instead_of_freezing_its_commits() {
    let s = Scenario::new("m9", 1);
    s.produce(0..100);
    // The first batch's task fails (panics): its offsets can never be committed.
    let control = Control::default();
    control.inject_batch_failure.store(true, Ordering::Relaxed);
    let c = s.consumer_with(10, Duration::from_millis(50), 0, control);
    wait_for("the consumer to give up", Duration::from_secs(90), || {
        c.thread.is_finished()
    });
    assert!(c.consumed() >= 10, "it had consumed the failed batch");
    assert_eq!(
        s.committed_now(),
        0,
        "nothing past the failed batch committed"
    );
    assert_eq!(
        c.thread.join().unwrap(),
        Ending::Fatal,
        "a failed batch is fatal (the daemon exits 1)"
    );
}

#[test]
fn one_consumers_shutdown_timeout_abandons_only_its_own_writes() {
    let s = Scenario::new("m10", 1);
    s.cluster.create_topic("m10b", 1, 1).unwrap();
    s.refuse(503);
    s.produce(0..10);
    produce(&s.bs, "m10b", 100..110, 1);
    let a = s.consumer(10, Duration::from_millis(50), 0);
    let b = {
        let control = Arc::new(Control::default());
        let stats = Arc::new(PipelineStats::default());
        let thread = s.h.consumer_with_stats(
            &s.bs,
            "m10b",
            10,
            Duration::from_millis(50),
            control.clone(),
            1,
            stats.clone(),
        );
        Running {
            control,
            stats,
            thread,
        }
    };
    wait_for(
        "both consumers' batches in flight",
        Duration::from_secs(60),
        || {
            a.stats.batches_in_flight.load(Ordering::Relaxed) == 1
                && b.stats.batches_in_flight.load(Ordering::Relaxed) == 1
        },
    );
    // A stops while InfluxDB refuses: after its shutdown timeout it abandons its batch...
    a.stop();
    // ...and B's batch is still being tried, then written and committed once InfluxDB answers.
    assert_eq!(b.stats.batches_in_flight.load(Ordering::Relaxed), 1);
    s.refuse(0);
    wait_for("B's batch committed", Duration::from_secs(60), || {
        committed_total(&s.bs, "m10b", 1).is_ok_and(|c| c == 10)
    });
    assert_eq!(
        s.committed_now(),
        0,
        "A's abandoned batch stays uncommitted"
    );
    b.stop();
}

/// The whole daemon, in process, on the scenario's topic and sink (one consumer: with two,
/// the one that leaves first starts a rebalance, and the mock cluster answers the other's
/// final commit with REBALANCE_IN_PROGRESS (Kafka accepts it; see `consumer.rs`), so what that
/// one wrote last would be read again after a restart).
struct Daemon {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<
        Result<monasca_persister::daemon::Exit, monasca_persister::daemon::DaemonError>,
    >,
}

impl Daemon {
    fn start(s: &Scenario, batch_size: usize, max_wait_seconds: f64, admin_listen: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "persister-daemon-test-{}-{}",
            std::process::id(),
            s.topic
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("persister.toml");
        std::fs::write(
            &path,
            format!(
                r#"
[kafka]
uri = "{bs}"

[kafka_metrics]
topic = "{topic}"
group_id = "g"
batch_size = {batch_size}
max_wait_time_seconds = {max_wait_seconds}
num_processors = 1

[kafka_alarm_history]
enabled = false

[influxdb]
port = {port}
database_name = "mon"
retry_initial_ms = 20
retry_max_seconds = 0.2

[persister]
shutdown_timeout_seconds = 10
admin_listen = "{admin_listen}"
"#,
                bs = s.bs,
                topic = s.topic,
                port = s.h.port,
            ),
        )
        .unwrap();
        let config = monasca_persister::config::load(&path).unwrap().config;
        std::fs::remove_dir_all(&dir).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            monasca_persister::daemon::run(config, async {
                let _ = stopped.await;
            })
        });
        Daemon { stop, thread }
    }

    /// Resolves its shutdown future; it must return in time, cleanly.
    fn stop(self) {
        assert!(!self.thread.is_finished(), "runs until told to stop");
        self.stop.send(()).unwrap();
        wait_for("the daemon to stop", Duration::from_secs(60), || {
            self.thread.is_finished()
        });
        let exit = self.thread.join().unwrap().expect("the daemon started");
        assert_eq!(exit, monasca_persister::daemon::Exit::Clean);
    }
}

/// Messages consumed, as the admin endpoint at `addr` counts them; `Err` while it does not
/// answer 200. For polling.
fn consumed_per_admin(addr: &str) -> std::io::Result<u64> {
    let scrape = common::e2e::try_scrape(addr)?;
    Ok(common::e2e::total(&scrape, "monasca_persister_messages_consumed_total") as u64)
}

#[test]
fn the_daemon_stops_cleanly_in_process_when_its_shutdown_future_resolves() {
    let s = Scenario::new("d1", 3);
    s.produce(0..300);
    let d = Daemon::start(&s, 40, 0.2, "");
    wait_for("every message written", Duration::from_secs(90), || {
        s.h.received().len() == 300
    });
    d.stop();
    // Stopping commits (synchronously) everything written: nothing left to wait for.
    assert_eq!(
        s.committed_now(),
        300,
        "what it wrote is committed when it returns"
    );
    assert_eq!(s.h.received(), (0..300).collect());
}

#[test]
fn stopping_the_daemon_writes_and_commits_the_batch_that_was_not_due() {
    let s = Scenario::new("d2", 3);
    s.produce(0..300);
    let admin = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    // A batch neither full nor due before the test ends: only stopping sends it.
    let d = Daemon::start(&s, 1000, 600.0, &admin);
    wait_for("every message consumed", Duration::from_secs(90), || {
        consumed_per_admin(&admin).is_ok_and(|n| n == 300)
    });
    assert!(s.h.received().is_empty(), "nothing written before the stop");
    assert_eq!(s.committed_now(), 0);
    d.stop();
    assert_eq!(
        s.h.received(),
        (0..300).collect(),
        "the stop wrote the batch"
    );
    assert_eq!(s.committed_now(), 300, "and committed it before returning");
}
