//! `[influxdb] max_points_per_second`: a catch-up flood is paced. A 200 000-message backlog
//! (librdkafka's mock cluster) drained by the real binary into InfluxDB 1.6 takes at least
//! (200 000 - 10 000) / 10 000 = 19 s with a cap of 10 000 points per second (the bucket
//! starts with one second's worth), and the daemon reports the time it held writes back.
//! The same backlog uncapped, drained first on the same machine, shows the cap is what took
//! the time.

mod common;

use std::time::{Duration, Instant};

use common::e2e::{metric, metric_points, persister_toml, scrape, total};
use common::kafka::{Persister, produce_to};

use common::{Influx, TempDir};
use rdkafka::mocking::MockCluster;

const BACKLOG: usize = 200_000;
const CAP: u64 = 10_000;
const PARTITIONS: i32 = 16;

/// Drains the backlog with `extra` in `[influxdb]`; the time from the daemon's start until
/// every point was stored, and the seconds the daemon reports it held writes back.
fn drain(extra: &str) -> (Duration, f64) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    // The mock cluster keeps only the last 5 MiB of each partition: 16 hold the backlog.
    cluster.create_topic("metrics", PARTITIONS, 1).unwrap();
    cluster
        .create_topic("alarm-state-transitions", 1, 1)
        .unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let messages: Vec<Vec<u8>> = (0..BACKLOG).map(metric).collect();
    produce_to(
        &bootstrap,
        "metrics",
        PARTITIONS,
        messages.iter().map(Vec::as_slice),
    );
    let influx = Influx::start();
    let dir = TempDir::new("rate-cap");
    let config = persister_toml(
        &dir.0,
        &bootstrap,
        influx.port,
        "",
        "admin_listen = \"127.0.0.1:0\"",
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[influxdb]\n", &format!("[influxdb]\n{extra}\n"));
    std::fs::write(&config, text).unwrap();
    let started = Instant::now();
    let p = Persister::start(&config);
    let deadline = started + Duration::from_secs(180);
    while metric_points(&influx) < BACKLOG as i64 {
        assert!(
            Instant::now() < deadline,
            "backlog not drained: {} points\n{}",
            metric_points(&influx),
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = started.elapsed();
    assert_eq!(metric_points(&influx), BACKLOG as i64);
    let waited = total(
        &scrape(p.admin_port()),
        "monasca_persister_rate_limited_seconds_total",
    );
    (took, waited)
}

#[test]
fn a_backlog_drains_no_faster_than_the_cap_and_the_wait_is_reported() {
    let (uncapped, free_waited) = drain("");
    assert_eq!(free_waited, 0.0, "no cap, no wait");
    let (capped, waited) = drain(&format!("max_points_per_second = {CAP}"));
    let floor = Duration::from_secs_f64((BACKLOG as u64 - CAP) as f64 / CAP as f64);
    eprintln!("{BACKLOG} messages: uncapped {uncapped:?}, capped at {CAP}/s {capped:?}");
    assert!(capped >= floor, "capped drain took {capped:?} < {floor:?}");
    assert!(
        waited >= floor.as_secs_f64() * 0.9,
        "the daemon reports {waited} s held back"
    );
    assert!(
        uncapped < floor,
        "uncapped, this machine drains {BACKLOG} in {uncapped:?}: too slow to show the cap"
    );
}
