//! Destinations: InfluxDB replicas that never wait for each other, and tenants routed to
//! their own InfluxDB. The real binary, tansu and two InfluxDB 1.6 servers.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Influx;
use common::e2e::{Feeder, Stack, metric, metric_points};

/// The metrics pipeline's default consumer group (the Python persister's).
const GROUP: &str = "1_metrics";

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_replica_that_is_down_holds_back_nobody_and_catches_up_from_kafka() {
    let mut replica = Influx::start();
    let s = Stack::builder("dest-replica")
        .persister(&format!("\n[destinations.b]\nport = {}\n", replica.port))
        .start();
    let feeder = Feeder::start(&s.tansu, 4, 0);
    wait_for("both destinations writing", Duration::from_secs(60), || {
        metric_points(&s.influx) > 0 && metric_points(&replica) > 0
    });

    // The replica is down for 20 s under a steady load: the first destination's points keep
    // landing within its normal batch wait (0.5 s) plus a write.
    replica.stop();
    let outage = Instant::now();
    let (mut last, mut grew_at, mut worst) =
        (metric_points(&s.influx), Instant::now(), Duration::ZERO);
    while outage.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
        let now = metric_points(&s.influx);
        if now > last {
            worst = worst.max(grew_at.elapsed());
            (last, grew_at) = (now, Instant::now());
        }
    }
    worst = worst.max(grew_at.elapsed());
    eprintln!("longest the first destination went without new points during the outage: {worst:?}");
    assert!(
        worst < Duration::from_secs(5),
        "the first destination stalled {worst:?} while the replica was down:\n{}",
        s.persister.log_text()
    );
    replica.restart();
    let n = feeder.stop() as i64;

    // The replica catches up from Kafka; both hold every point, and each group's committed
    // offsets cover everything.
    wait_for(
        "both destinations to hold every point",
        Duration::from_secs(180),
        || metric_points(&s.influx) == n && metric_points(&replica) == n,
    );
    wait_for("both groups committed", Duration::from_secs(60), || {
        s.tansu.committed(GROUP, "metrics", 4).is_ok_and(|c| c == n)
            && s.tansu
                .committed(&format!("{GROUP}.b"), "metrics", 4)
                .is_ok_and(|c| c == n)
    });
    assert_eq!(s.tansu.committed_now(GROUP, "metrics", 4), n);
    assert_eq!(
        s.tansu.committed_now(&format!("{GROUP}.b"), "metrics", 4),
        n
    );
}

/// Waits until both destinations' groups have committed past `n` messages of `metrics`.
fn both_groups_past(s: &Stack, n: i64) {
    wait_for(
        "both groups past every message",
        Duration::from_secs(120),
        || {
            [GROUP.to_owned(), format!("{GROUP}.b")]
                .iter()
                .all(|g| s.tansu.committed(g, "metrics", 4).is_ok_and(|c| c == n))
        },
    );
}

/// What `dead-letters list` prints for the stack's config.
fn listed(config: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_monasca-persister"))
        .args(["dead-letters", "list", "--config-file"])
        .arg(config)
        .output()
        .expect("run dead-letters list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Points of tenant `t` in database `mon`.
fn tenant_points(influx: &Influx, t: &str) -> i64 {
    influx.points_or_no_database(
        "mon",
        &format!(r#"SELECT count(value) FROM "e2e.metric" WHERE "_tenant_id" = '{t}'"#),
    )
}

#[test]
fn tenants_are_sharded_and_a_tenant_nobody_takes_is_dead_lettered_once() {
    let other = Influx::start();
    let s = Stack::builder("dest-shards")
        .dead_letter_topic("dlq")
        .influxdb(r#"tenants = ["tenant-0"]"#)
        .persister(&format!(
            "\n[destinations.b]\nport = {}\ntenants = [\"tenant-1\"]\n",
            other.port
        ))
        .start();
    // metric(i) is tenant-(i % 3): 100 messages each.
    let messages: Vec<Vec<u8>> = (0..300).map(metric).collect();
    s.tansu
        .produce("metrics", 4, messages.iter().map(Vec::as_slice));
    both_groups_past(&s, 300);
    assert_eq!(
        (
            metric_points(&s.influx),
            tenant_points(&s.influx, "tenant-0")
        ),
        (100, 100),
        "the first InfluxDB holds exactly tenant-0's points"
    );
    assert_eq!(
        (metric_points(&other), tenant_points(&other, "tenant-1")),
        (100, 100),
        "the other holds exactly tenant-1's points"
    );
    let text = listed(&s.config);
    let unrouted: Vec<&str> = text.lines().filter(|l| l.contains("unrouted")).collect();
    assert_eq!(unrouted.len(), 1, "{text}");
    assert!(
        unrouted[0].contains("tenant-2") && unrouted[0].split_whitespace().any(|w| w == "100"),
        "tenant-2's 100 messages dead-lettered once, reason unrouted:\n{text}"
    );
    assert!(
        text.contains("total: 100"),
        "nothing else dead-lettered:\n{text}"
    );
}

#[test]
fn a_replica_refusing_one_tenant_dead_letters_it_with_its_name_and_slows_nobody() {
    let replica = Influx::start_refusing_tenant_2();
    let s = Stack::builder("dest-refused")
        .dead_letter_topic("dlq")
        .influxdb("db_per_tenant = true")
        .persister(&format!(
            "database_refused_seconds = 3\n\n[destinations.b]\nport = {}\nuser = \"persister\"\npassword = \"w-only\"\n",
            replica.port
        ))
        .start();
    let started = Instant::now();
    let messages: Vec<Vec<u8>> = (0..3000).map(metric).collect();
    s.tansu
        .produce("metrics", 4, messages.iter().map(Vec::as_slice));
    let all_first = |t: usize| {
        s.influx.points_or_no_database(
            &format!("mon_tenant-{t}"),
            r#"SELECT count(value) FROM "e2e.metric""#,
        )
    };
    wait_for(
        "the first destination to hold every point",
        Duration::from_secs(120),
        || (0..3).all(|t| all_first(t) == 1000),
    );
    eprintln!("first destination complete after {:?}", started.elapsed());
    both_groups_past(&s, 3000);
    assert_eq!(
        (replica.tenant_points(0), replica.tenant_points(1)),
        (1000, 1000)
    );
    assert_eq!(replica.tenant_points(2), 0, "refused by the replica");
    let letters = common::kafka::read_letters(&s.tansu.bootstrap(), "dlq", 1000);
    assert_eq!(letters.len(), 1000, "tenant-2's messages");
    assert!(
        listed(&s.config).contains("total: 1000"),
        "dead-lettered once, by the replica alone"
    );
    assert!(
        letters.iter().all(|(_, h)| {
            h.get("reason").map(String::as_str) == Some("database_refused")
                && h.get("destination").map(String::as_str) == Some("b")
        }),
        "{:?}",
        letters.first().map(|(_, h)| h)
    );
}
