//! `[influxdb] max_hourly_series_per_tenant` end to end: the real binary, tansu and InfluxDB
//! 1.6. A tenant sending 5 000 distinct series with a limit of 1 000 gets exactly 1 000 series
//! stored and 4 000 dead letters with reason `series_limit`, while a small tenant in the same
//! stream loses nothing; `/metrics` counts both per tenant.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Influx;
use common::e2e::{BASE_TS, Stack, scrape, value};

/// A metric of `tenant` on host `h{host}` at `BASE_TS + i` ms: one series per host.
fn metric(tenant: &str, host: usize, i: usize) -> Vec<u8> {
    format!(
        r#"{{"metric":{{"name":"series.test","dimensions":{{"hostname":"h{host}"}},"timestamp":{},"value":{i}.0}},"meta":{{"tenantId":"{tenant}","region":"r"}},"creation_time":1}}"#,
        BASE_TS + i as i64
    )
    .into_bytes()
}

fn points(influx: &Influx, tenant: &str) -> i64 {
    influx.points_or_no_database(
        "mon",
        &format!(r#"SELECT count(value) FROM "series.test" WHERE "_tenant_id" = '{tenant}'"#),
    )
}

fn gauge(port: u16, name: &str, tenant: &str) -> Option<f64> {
    value(&scrape(port), name, &[("tenant", tenant)])
}

#[test]
fn a_tenant_past_its_series_limit_is_dead_lettered_and_a_small_one_loses_nothing() {
    // The limit counts per clock hour: do not straddle one.
    let into_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 3600;
    if into_hour > 3600 - 120 {
        std::thread::sleep(Duration::from_secs(3600 - into_hour + 1));
    }
    let s = Stack::builder("series")
        .dead_letter_topic("dlq")
        .influxdb("max_hourly_series_per_tenant = 1000")
        .persister("admin_listen = \"127.0.0.1:0\"")
        .start();
    let admin = s.persister.admin_port();

    // Interleaved: 5 000 series of "big" (one point each) and 10 series of "small" (30
    // points each).
    let mut messages = Vec::new();
    for i in 0..5000 {
        messages.push(metric("big", i, i));
        if i % 16 == 0 && i / 16 < 300 {
            let j = i / 16;
            messages.push(metric("small", j % 10, 10_000 + j));
        }
    }
    assert_eq!(messages.len(), 5300);
    s.tansu
        .produce("metrics", 4, messages.iter().map(Vec::as_slice));
    let deadline = Instant::now() + Duration::from_secs(180);
    while !s
        .tansu
        .committed("1_metrics", "metrics", 4)
        .is_ok_and(|n| n == 5300)
    {
        assert!(
            Instant::now() < deadline,
            "not everything committed:\n{}",
            s.persister.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    assert_eq!(points(&s.influx, "big"), 1000, "exactly the limit");
    assert_eq!(
        points(&s.influx, "small"),
        300,
        "the small tenant loses nothing"
    );
    let series = s.influx.points_or_no_database(
        "mon",
        r#"SELECT count(value) FROM (SELECT last(value) AS value FROM "series.test" WHERE "_tenant_id" = 'big' GROUP BY *)"#,
    );
    assert_eq!(series, 1000, "1 000 series of big");

    assert_eq!(
        gauge(admin, "monasca_persister_series_tracked", "big"),
        Some(1000.0)
    );
    assert_eq!(
        gauge(admin, "monasca_persister_series_tracked", "small"),
        Some(10.0)
    );
    assert_eq!(
        gauge(admin, "monasca_persister_series_refused_total", "big"),
        Some(4000.0)
    );
    assert_eq!(
        gauge(admin, "monasca_persister_series_refused_total", "small"),
        Some(0.0)
    );

    // The 4 000 refused messages wait on the dead-letter topic, as series_limit of big.
    let out = Command::new(env!("CARGO_BIN_EXE_monasca-persister"))
        .args(["dead-letters", "list", "--config-file"])
        .arg(&s.config)
        .output()
        .expect("dead-letters list");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|c: &Vec<&str>| c.first() == Some(&"series_limit"))
        .collect();
    assert_eq!(rows.len(), 1, "{text}");
    assert_eq!(
        &rows[0][..4],
        &["series_limit", "metrics", "big", "4000"],
        "{text}"
    );
}
