//! Every Kafka compression codec is consumed, and a partition that cannot be read is loud.
//!
//! The real binary writes into a real InfluxDB 1.6; Kafka is librdkafka's mock cluster (it
//! stores record batches as produced, so every codec librdkafka offers reaches the consumer
//! as produced) and tansu (a real broker, for the codecs it serves). A partition that cannot
//! be read is made on purpose: a record batch with a codec id no Kafka client knows, produced
//! to the mock cluster by hand (a raw Produce request), which librdkafka reports as
//! "Decompression (codec 0x5) … failed: Local: Not implemented", as it did for zstd before
//! the build had it.

mod common;

use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::e2e::{BASE_TS, metric, persister_toml, scrape, value};
use common::kafka::{Persister, Tansu, send};
use common::{Influx, TempDir};
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Messages per codec.
const N: usize = 1000;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Produces `metric(i)` for `i` in `range` to one partition, compressed with `codec`.
fn produce_compressed(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    codec: &str,
    range: std::ops::Range<usize>,
) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", codec)
        // Many messages per batch, so each batch is compressed as a whole.
        .set("linger.ms", "50")
        .create()
        .expect("producer");
    for i in range {
        let payload = metric(i);
        send(
            &p,
            BaseRecord::to(topic)
                .payload(payload.as_slice())
                .partition(partition),
        );
    }
    p.flush(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{codec} messages not acknowledged: {e}"));
}

/// Points stored of `metric(i)` for `i` in `range` (their timestamps are `BASE_TS + i` ms).
fn points_in(influx: &Influx, range: &std::ops::Range<usize>) -> i64 {
    let q = format!(
        r#"SELECT count(value) FROM "e2e.metric" WHERE time >= {}ms AND time < {}ms"#,
        BASE_TS + range.start as i64,
        BASE_TS + range.end as i64
    );
    influx.points_or_no_database("mon", &q)
}

/// Waits until every codec's points are stored; fails naming the codecs that are not.
fn wait_all_stored(influx: &Influx, codecs: &[&str], daemon: &Persister) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let counts: Vec<(&str, i64)> = codecs
            .iter()
            .enumerate()
            .map(|(k, c)| (*c, points_in(influx, &(k * N..(k + 1) * N))))
            .collect();
        if counts.iter().all(|(_, n)| *n == N as i64) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "not every codec's {N} messages stored: {counts:?}\ndaemon log:\n{}",
                daemon.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn start_daemon(dir: &TempDir, bootstrap: &str, influx: &Influx, extra: &str) -> Persister {
    let config = persister_toml(
        &dir.0,
        bootstrap,
        influx.port,
        "",
        &format!("admin_listen = \"127.0.0.1:0\"\n{extra}"),
    );
    Persister::start(&config)
}

/// The value of one sample of `name` whose labels include all of `labels`; `None` if absent.
fn sample(port: u16, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    value(&scrape(port), name, labels)
}

fn no_read_errors(daemon: &Persister) {
    let port = daemon.admin_port();
    let errors: Vec<_> = scrape(port)
        .samples
        .into_iter()
        .filter(|s| s.metric == "monasca_persister_partition_read_errors_total")
        .collect();
    assert!(errors.is_empty(), "read errors: {errors:?}");
    assert!(
        !daemon.log_text().contains("partition unreadable"),
        "{}",
        daemon.log_text()
    );
}

#[test]
fn every_codec_librdkafka_offers_is_stored_from_the_mock_cluster() {
    let _g = serial();
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic("metrics", codecs.len() as i32, 1)
        .unwrap();
    cluster
        .create_topic("alarm-state-transitions", 1, 1)
        .unwrap();
    let bootstrap = cluster.bootstrap_servers();
    for (k, codec) in codecs.iter().enumerate() {
        produce_compressed(&bootstrap, "metrics", k as i32, codec, k * N..(k + 1) * N);
    }
    let influx = Influx::start();
    let dir = TempDir::new("codecs-mock");
    let daemon = start_daemon(&dir, &bootstrap, &influx, "");
    wait_all_stored(&influx, &codecs, &daemon);
    no_read_errors(&daemon);
}

#[test]
fn every_codec_tansu_serves_is_stored_from_tansu() {
    let _g = serial();
    // Not snappy: tansu 0.6 fails to serve snappy batches itself (its log says
    // `UnexpectedType("Snappy")`), whoever consumes them.
    let codecs = ["none", "gzip", "lz4", "zstd"];
    let tansu = Tansu::start();
    tansu.create_topic("metrics", codecs.len() as u32);
    tansu.create_topic("alarm-state-transitions", 1);
    for (k, codec) in codecs.iter().enumerate() {
        produce_compressed(
            &tansu.bootstrap(),
            "metrics",
            k as i32,
            codec,
            k * N..(k + 1) * N,
        );
    }
    let influx = Influx::start();
    let dir = TempDir::new("codecs-tansu");
    let daemon = start_daemon(&dir, &tansu.bootstrap(), &influx, "");
    wait_all_stored(&influx, &codecs, &daemon);
    no_read_errors(&daemon);
}

/// CRC-32C (Castagnoli), as Kafka's record batches carry it.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A record batch (magic 2) of one record whose compression codec is `codec` (the low
/// three bits of the attributes) and whose "compressed" records are `body`; CRC correct.
fn record_batch(codec: i16, body: &[u8]) -> Vec<u8> {
    let mut after_crc = Vec::new();
    after_crc.extend(codec.to_be_bytes()); // attributes
    after_crc.extend(0i32.to_be_bytes()); // last offset delta
    after_crc.extend(BASE_TS.to_be_bytes()); // first timestamp
    after_crc.extend(BASE_TS.to_be_bytes()); // max timestamp
    after_crc.extend((-1i64).to_be_bytes()); // producer id
    after_crc.extend((-1i16).to_be_bytes()); // producer epoch
    after_crc.extend((-1i32).to_be_bytes()); // base sequence
    after_crc.extend(1i32.to_be_bytes()); // records
    after_crc.extend(body);
    let mut batch = Vec::new();
    batch.extend(0i64.to_be_bytes()); // base offset (the broker assigns it)
    let length = 4 + 1 + 4 + after_crc.len(); // leader epoch, magic, crc, the rest
    batch.extend((length as i32).to_be_bytes());
    batch.extend(0i32.to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend(crc32c(&after_crc).to_be_bytes());
    batch.extend(after_crc);
    batch
}

fn kafka_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as i16).to_be_bytes());
    out.extend(s.as_bytes());
}

/// Produces `batch` as it is to `topic`/`partition` with a Produce request (v3) of our own,
/// so no client recompresses or checks it; returns the broker's error code for it.
fn produce_raw(bootstrap: &str, topic: &str, partition: i32, batch: &[u8]) -> i16 {
    let addr = bootstrap.split(',').next().expect("a broker");
    let mut req = Vec::new();
    req.extend(0i16.to_be_bytes()); // Produce
    req.extend(3i16.to_be_bytes()); // version 3
    req.extend(7i32.to_be_bytes()); // correlation id
    kafka_string(&mut req, "raw-test");
    req.extend((-1i16).to_be_bytes()); // no transactional id
    req.extend((-1i16).to_be_bytes()); // acks: all
    req.extend(10_000i32.to_be_bytes()); // timeout ms
    req.extend(1i32.to_be_bytes()); // one topic
    kafka_string(&mut req, topic);
    req.extend(1i32.to_be_bytes()); // one partition
    req.extend(partition.to_be_bytes());
    req.extend((batch.len() as i32).to_be_bytes());
    req.extend(batch);
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the mock broker");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&(req.len() as i32).to_be_bytes()).unwrap();
    s.write_all(&req).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("Produce response");
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp).expect("Produce response body");
    // correlation id, 1 topic (count, name), 1 partition (count, index), then its error code.
    assert_eq!(resp[..4], 7i32.to_be_bytes(), "correlation id");
    let at = 4 + 4 + 2 + topic.len() + 4 + 4;
    i16::from_be_bytes([resp[at], resp[at + 1]])
}

#[test]
fn a_partition_that_cannot_be_read_makes_ready_fail_naming_it_and_nothing_is_skipped() {
    let _g = serial();
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("metrics", 2, 1).unwrap();
    cluster
        .create_topic("alarm-state-transitions", 1, 1)
        .unwrap();
    let bootstrap = cluster.bootstrap_servers();
    // Partition 0: readable. Partition 1: a batch with codec 5 first, then good messages,
    // which must wait behind it (never be skipped to).
    produce_compressed(&bootstrap, "metrics", 0, "none", 0..100);
    let code = produce_raw(&bootstrap, "metrics", 1, &record_batch(5, b"not a codec"));
    assert_eq!(code, 0, "the mock broker took the batch");
    produce_compressed(&bootstrap, "metrics", 1, "none", 100..200);

    let influx = Influx::start();
    let dir = TempDir::new("unreadable");
    let daemon = start_daemon(
        &dir,
        &bootstrap,
        &influx,
        "ready_max_unreadable_seconds = 3",
    );
    let port = daemon.admin_port();
    let deadline = Instant::now() + Duration::from_secs(120);
    while points_in(&influx, &(0..100)) != 100 {
        assert!(
            Instant::now() < deadline,
            "partition 0 not stored: {:?}\n{}",
            points_in(&influx, &(0..100)),
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // /ready turns 503 once partition 1 has been unreadable past the bound, and names it.
    let ready = |port: u16| {
        common::http_request(&format!("127.0.0.1:{port}"), "GET", "/ready", b"")
            .expect("/ready answers")
    };
    let (status, body) = loop {
        let (status, body) = ready(port);
        if status == 503 || Instant::now() > deadline {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(status, 503, "{body}\n{}", daemon.log_text());
    let detail: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let parts = detail["unreadable_partitions"].as_array().expect(&body);
    assert_eq!(parts.len(), 1, "{body}");
    assert_eq!(parts[0]["topic"], "metrics", "{body}");
    assert_eq!(parts[0]["partition"], 1, "{body}");
    assert_eq!(parts[0]["cause"], "decompression", "{body}");
    assert!(parts[0]["seconds"].as_f64().expect(&body) >= 3.0, "{body}");

    // The counter moves while the partition stays unreadable ...
    let errors = |port| {
        sample(
            port,
            "monasca_persister_partition_read_errors_total",
            &[("partition", "1"), ("cause", "decompression")],
        )
        .unwrap_or_else(|| panic!("no read-error counter for partition 1"))
    };
    let first = errors(port);
    while errors(port) <= first {
        assert!(Instant::now() < deadline, "the counter stays at {first}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let gauge = sample(
        port,
        "monasca_persister_partition_unreadable_seconds",
        &[("partition", "1"), ("cause", "decompression")],
    )
    .expect("unreadable gauge for partition 1");
    assert!(gauge >= 3.0, "{gauge}");

    // ... but it was logged once, however often librdkafka repeated the error.
    let log = daemon.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("partition unreadable"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning per state change:\n{log}");
    assert!(
        warnings[0].contains("partition=1") && warnings[0].contains("codec 0x5"),
        "{}",
        warnings[0]
    );
    assert!(
        !log.contains("Kafka consume error"),
        "no per-error lines:\n{log}"
    );

    // Nothing behind the unreadable batch was skipped to.
    assert_eq!(points_in(&influx, &(100..200)), 0);
    assert_eq!(
        sample(
            port,
            "monasca_persister_messages_consumed_total",
            &[("partition", "1")]
        ),
        None,
        "nothing consumed from partition 1"
    );
}
