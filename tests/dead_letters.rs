//! The way back from the dead-letter topic, end to end: the real binary, tansu and InfluxDB
//! 1.6 with authentication. A tenant's database refuses writes, its messages are
//! dead-lettered (`database_refused`); the grant is added; one `dead-letters replay` run and
//! the running daemon store every one of its points; a second run replays nothing; letters the
//! filter did not take stay waiting for a later run.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::e2e::{Stack, metric, persister_toml};
use common::kafka::Persister;
use common::{Influx, TempDir};

fn wait_until(what: &str, limit: Duration, p: &Persister, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; persister log:\n{}",
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs `monasca-persister dead-letters ARGS --config-file CONFIG`: exit code and stdout.
fn dead_letters(config: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_monasca-persister"))
        .arg("dead-letters")
        .args(args)
        .arg("--config-file")
        .arg(config)
        .output()
        .expect("run dead-letters");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().expect("exited"),
        format!("{stdout}{stderr}"),
    )
}

/// The count on the table line naming `reason` and `tenant` in `section` of the output (the
/// lines after the heading that contains `section`, up to its `total:`); 0 when none.
fn count_in(output: &str, section: &str, reason: &str, tenant: &str) -> u64 {
    let mut lines = output.lines().skip_while(|l| !l.contains(section));
    assert!(lines.next().is_some(), "no {section:?} in:\n{output}");
    lines
        .take_while(|l| !l.trim_start().starts_with("total:"))
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.first() == Some(&reason) && cols.get(2) == Some(&tenant)
        })
        .map(|l| {
            l.split_whitespace()
                .nth(3)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no count in {l:?}"))
        })
        .sum()
}

#[test]
fn replay_after_the_grant_stores_every_refused_point_once_and_keeps_what_it_did_not_take() {
    let s = Stack::builder("replay")
        .influx(Influx::start_refusing_tenant_2())
        .dead_letter_topic("dlq")
        .influxdb("db_per_tenant = true\nuser = \"persister\"\npassword = \"w-only\"")
        .persister("database_refused_seconds = 3\nadmin_listen = \"\"")
        .start();

    // 3 000 metrics over tenants 0, 1, 2 (tenant-2's database refuses us) and 5 messages
    // that are not JSON (dead-lettered as invalid_json, tenant unknown).
    let mut messages: Vec<Vec<u8>> = (0..3000).map(metric).collect();
    messages.extend((0..5).map(|i| format!("not json {i}").into_bytes()));
    s.tansu
        .produce("metrics", 4, messages.iter().map(Vec::as_slice));
    wait_until(
        "every offset committed",
        Duration::from_secs(180),
        &s.persister,
        || {
            s.tansu
                .committed("1_metrics", "metrics", 4)
                .is_ok_and(|n| n == 3005)
        },
    );
    assert_eq!(s.influx.tenant_points(0), 1000);
    assert_eq!(s.influx.tenant_points(1), 1000);
    assert_eq!(s.influx.tenant_points(2), 0);

    let (code, out) = dead_letters(&s.config, &["list"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        count_in(&out, "waiting", "database_refused", "tenant-2"),
        1000,
        "{out}"
    );
    assert_eq!(count_in(&out, "waiting", "invalid_json", "?"), 5, "{out}");

    // A dry run changes nothing.
    let (code, out) = dead_letters(
        &s.config,
        &["replay", "--reason", "database_refused", "--dry-run"],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        count_in(&out, "would replay", "database_refused", "tenant-2"),
        1000,
        "{out}"
    );
    let (_, listed) = dead_letters(&s.config, &["list"]);
    assert_eq!(
        count_in(&listed, "waiting", "database_refused", "tenant-2"),
        1000,
        "{listed}"
    );

    // The grant, then one replay of that reason: every refused point lands.
    s.influx
        .query("", "GRANT WRITE ON \"mon_tenant-2\" TO persister");
    let (code, out) = dead_letters(&s.config, &["replay", "--reason", "database_refused"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        count_in(&out, "replayed", "database_refused", "tenant-2"),
        1000,
        "{out}"
    );
    assert_eq!(
        count_in(&out, "left waiting", "invalid_json", "?"),
        5,
        "{out}"
    );
    wait_until(
        "tenant-2's 1 000 points",
        Duration::from_secs(120),
        &s.persister,
        || s.influx.tenant_points(2) == 1000,
    );
    wait_until(
        "the replayed messages committed by the daemon",
        Duration::from_secs(120),
        &s.persister,
        || {
            s.tansu
                .committed("1_metrics", "metrics", 4)
                .is_ok_and(|n| n == 4005)
        },
    );

    // A second run replays nothing; the letters the filter did not take still wait.
    let (code, out) = dead_letters(&s.config, &["replay", "--reason", "database_refused"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        count_in(&out, "replayed", "database_refused", "tenant-2"),
        0,
        "{out}"
    );
    let (code, listed) = dead_letters(&s.config, &["list"]);
    assert_eq!(code, 0, "{listed}");
    assert_eq!(
        count_in(&listed, "waiting", "database_refused", "tenant-2"),
        0,
        "{listed}"
    );
    assert_eq!(
        count_in(&listed, "waiting", "invalid_json", "?"),
        5,
        "{listed}"
    );
    assert_eq!(s.influx.tenant_points(2), 1000);
}

#[test]
fn without_a_dead_letter_topic_the_commands_say_so_and_exit_2() {
    let dir = TempDir::new("replay-none");
    let config = persister_toml(&dir.0, "127.0.0.1:1", 1, "", "");
    let (code, out) = dead_letters(&config, &["list"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no dead-letter topic is configured"), "{out}");
}
