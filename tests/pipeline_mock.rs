//! The Kafka side against librdkafka's in-process mock cluster, writing into an in-process
//! discard sink whose answers the tests control: commits follow writes, revocation flushes and
//! commits, a rebalance between two consumers loses nothing, a broker outage is survived.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use monasca_persister::Kind;
use monasca_persister::cli::discard::{SinkStats, serve};
use monasca_persister::pipeline::batch::Routing;
use monasca_persister::pipeline::deadletter::DeadLetters;
use monasca_persister::pipeline::{Control, PipelineSettings, PipelineStats, spawn_consumer};
use monasca_persister::sink::{InfluxConfig, Writer};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

struct Harness {
    rt: tokio::runtime::Runtime,
    sink: Arc<SinkStats>,
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
            writer,
            cancel,
        }
    }

    fn consumer(
        &self,
        bootstrap: &str,
        topic: &str,
        batch_size: usize,
        max_wait: Duration,
        control: Arc<Control>,
        index: usize,
    ) -> std::thread::JoinHandle<()> {
        self.consumer_with_stats(
            bootstrap,
            topic,
            batch_size,
            max_wait,
            control,
            index,
            Arc::new(PipelineStats::default()),
        )
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
    ) -> std::thread::JoinHandle<()> {
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
        });
        let dead = Arc::new(DeadLetters::new(topic.into(), None, self.cancel.clone()));
        spawn_consumer(
            settings,
            index,
            self.writer.clone(),
            dead,
            stats,
            control,
            self.cancel.clone(),
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

/// Committed offsets of group `g`, summed over partitions (0 where none).
fn committed_total(bootstrap: &str, topic: &str, partitions: i32) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "g")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(5)).unwrap();
    got.elements()
        .iter()
        .map(|e| {
            if let Offset::Offset(o) = e.offset() {
                o
            } else {
                0
            }
        })
        .sum()
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

#[test]
fn offsets_are_committed_only_after_the_write_succeeds() {
    let cluster = MockCluster::new(1).unwrap();
    let bs = cluster.bootstrap_servers();
    cluster.create_topic("m1", 2, 1).unwrap();
    let h = Harness::new();
    h.sink.refuse_with.store(503, Ordering::Relaxed);
    produce(&bs, "m1", 0..200, 2);
    let control = Arc::new(Control::default());
    let t = h.consumer(
        &bs,
        "m1",
        25,
        Duration::from_millis(200),
        control.clone(),
        0,
    );
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(h.sink.points.load(Ordering::Relaxed), 0);
    assert_eq!(
        committed_total(&bs, "m1", 2),
        0,
        "nothing written, nothing committed"
    );
    h.sink.refuse_with.store(0, Ordering::Relaxed);
    wait_for("all 200 committed", Duration::from_secs(30), || {
        committed_total(&bs, "m1", 2) == 200
    });
    assert_eq!(h.received(), (0..200).collect());
    control.stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
}

#[test]
fn pipelined_batches_commit_every_partition_to_its_end() {
    let cluster = MockCluster::new(1).unwrap();
    let bs = cluster.bootstrap_servers();
    cluster.create_topic("m2", 3, 1).unwrap();
    let h = Harness::new();
    produce(&bs, "m2", 0..3000, 3);
    let control = Arc::new(Control::default());
    let t = h.consumer(
        &bs,
        "m2",
        100,
        Duration::from_millis(100),
        control.clone(),
        0,
    );
    wait_for("3000 committed", Duration::from_secs(30), || {
        committed_total(&bs, "m2", 3) == 3000
    });
    assert_eq!(h.received(), (0..3000).collect());
    control.stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
}

#[test]
fn revocation_flushes_and_commits_before_the_partitions_move() {
    let cluster = MockCluster::new(1).unwrap();
    let bs = cluster.bootstrap_servers();
    cluster.create_topic("m3", 2, 1).unwrap();
    let h = Harness::new();
    produce(&bs, "m3", 0..50, 2);
    // A batch that would wait a minute: only the revocation can flush it.
    let a = Arc::new(Control::default());
    let stats = Arc::new(PipelineStats::default());
    let ta = h.consumer_with_stats(
        &bs,
        "m3",
        10_000,
        Duration::from_secs(60),
        a.clone(),
        0,
        stats.clone(),
    );
    wait_for("A consumed all 50", Duration::from_secs(30), || {
        stats.consumed.load(Ordering::Relaxed) == 50
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        h.sink.points.load(Ordering::Relaxed),
        0,
        "nothing flushed yet"
    );
    let b = Arc::new(Control::default());
    let tb = h.consumer(&bs, "m3", 10_000, Duration::from_secs(60), b.clone(), 1);
    wait_for("revocation commit", Duration::from_secs(30), || {
        committed_total(&bs, "m3", 2) == 50
    });
    assert_eq!(h.received(), (0..50).collect());
    a.stop.store(true, Ordering::Relaxed);
    b.stop.store(true, Ordering::Relaxed);
    ta.join().unwrap();
    tb.join().unwrap();
}

#[test]
fn two_consumers_split_partitions_and_a_rebalance_loses_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    let bs = cluster.bootstrap_servers();
    cluster.create_topic("m4", 4, 1).unwrap();
    let h = Harness::new();
    produce(&bs, "m4", 0..1000, 4);
    let a = Arc::new(Control::default());
    let ta = h.consumer(&bs, "m4", 50, Duration::from_millis(100), a.clone(), 0);
    std::thread::sleep(Duration::from_secs(4));
    let b = Arc::new(Control::default());
    let tb = h.consumer(&bs, "m4", 50, Duration::from_millis(100), b.clone(), 1);
    produce(&bs, "m4", 1000..2000, 4);
    std::thread::sleep(Duration::from_secs(4));
    // A leaves cleanly; B takes all partitions.
    a.stop.store(true, Ordering::Relaxed);
    ta.join().unwrap();
    produce(&bs, "m4", 2000..3000, 4);
    wait_for("3000 committed", Duration::from_secs(40), || {
        committed_total(&bs, "m4", 4) == 3000
    });
    assert_eq!(
        h.received(),
        (0..3000).collect(),
        "every message written at least once"
    );
    b.stop.store(true, Ordering::Relaxed);
    tb.join().unwrap();
}

#[test]
fn broker_down_pauses_consumption_and_it_recovers() {
    let cluster = MockCluster::new(1).unwrap();
    let bs = cluster.bootstrap_servers();
    cluster.create_topic("m5", 1, 1).unwrap();
    let h = Harness::new();
    produce(&bs, "m5", 0..100, 1);
    let control = Arc::new(Control::default());
    let t = h.consumer(
        &bs,
        "m5",
        20,
        Duration::from_millis(100),
        control.clone(),
        0,
    );
    wait_for("first 100 committed", Duration::from_secs(30), || {
        committed_total(&bs, "m5", 1) == 100
    });
    cluster.broker_down(1).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !t.is_finished(),
        "a broker outage does not stop the consumer (before the exit limit)"
    );
    cluster.broker_up(1).unwrap();
    produce(&bs, "m5", 100..200, 1);
    wait_for(
        "all 200 committed after recovery",
        Duration::from_secs(40),
        || committed_total(&bs, "m5", 1) == 200,
    );
    assert_eq!(h.received(), (0..200).collect());
    control.stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
}

#[test]
fn a_rebalance_while_paused_for_backpressure_does_not_leave_partitions_paused() {
    let cluster = MockCluster::new(1).unwrap();
    let bs = cluster.bootstrap_servers();
    cluster.create_topic("m6", 4, 1).unwrap();
    let h = Harness::new();
    h.sink.refuse_with.store(503, Ordering::Relaxed);
    produce(&bs, "m6", 0..2000, 4);
    let a = Arc::new(Control::default());
    let sa = Arc::new(PipelineStats::default());
    let ta = h.consumer_with_stats(
        &bs,
        "m6",
        10,
        Duration::from_millis(50),
        a.clone(),
        0,
        sa.clone(),
    );
    // Three batches in flight and a full fourth: the consumer pauses well before 2000.
    wait_for("A consumed and blocked", Duration::from_secs(30), || {
        sa.consumed.load(Ordering::Relaxed) >= 40
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        sa.consumed.load(Ordering::Relaxed) < 2000,
        "backpressure stopped consumption"
    );
    let b = Arc::new(Control::default());
    let tb = h.consumer(&bs, "m6", 10, Duration::from_millis(50), b.clone(), 1);
    std::thread::sleep(Duration::from_secs(12));
    h.sink.refuse_with.store(0, Ordering::Relaxed);
    wait_for(
        "all 2000 committed after the outage",
        Duration::from_secs(60),
        || committed_total(&bs, "m6", 4) == 2000,
    );
    assert_eq!(h.received(), (0..2000).collect());
    a.stop.store(true, Ordering::Relaxed);
    b.stop.store(true, Ordering::Relaxed);
    ta.join().unwrap();
    tb.join().unwrap();
}
