//! End-to-end latency: every point written is observed once, from its message's creation
//! (a metric's `creation_time`, an alarm transition's `timestamp`) to InfluxDB's
//! acknowledgement. The real binary, tansu and InfluxDB 1.6.

mod common;

use std::time::{Duration, Instant};

use common::e2e::{Stack, scrape, value};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn every_point_written_is_observed_once_with_its_latency() {
    let s = Stack::builder("latency")
        .persister("admin_listen = \"127.0.0.1:0\"")
        .start();
    let admin = s.persister.admin_port();
    let created_s = now_ms() / 1000;
    // Metrics made now (creation_time in seconds, as Monasca's API writes it), one without a
    // creation time (written, not observed), and alarm transitions made now.
    let mut metrics: Vec<Vec<u8>> = (0..3000)
        .map(|i| {
            format!(
                r#"{{"metric":{{"name":"lat.test","dimensions":{{"hostname":"h{}"}},"timestamp":{},"value":{i}}},"meta":{{"tenantId":"t","region":"r"}},"creation_time":{created_s}}}"#,
                i % 20,
                now_ms() + i
            )
            .into_bytes()
        })
        .collect();
    metrics.push(
        format!(
            r#"{{"metric":{{"name":"lat.test","dimensions":{{"hostname":"none"}},"timestamp":{},"value":1}},"meta":{{"tenantId":"t","region":"r"}}}}"#,
            now_ms()
        )
        .into_bytes(),
    );
    let alarms: Vec<Vec<u8>> = (0..100)
        .map(|i| {
            format!(
                r#"{{"alarm-transitioned":{{"tenantId":"t","alarmId":"a{i}","alarmDefinitionId":"d","alarmName":"n","alarmDescription":"","metrics":[],"oldState":"OK","newState":"ALARM","actionsEnabled":true,"stateChangeReason":"r","severity":"LOW","subAlarms":[],"timestamp":{}}}}}"#,
                now_ms() + i
            )
            .into_bytes()
        })
        .collect();
    s.tansu
        .produce("metrics", 4, metrics.iter().map(Vec::as_slice));
    s.tansu.produce(
        "alarm-state-transitions",
        1,
        alarms.iter().map(Vec::as_slice),
    );

    let deadline = Instant::now() + Duration::from_secs(180);
    let written = || common::e2e::total(&scrape(admin), "monasca_persister_points_written_total");
    while written() < 3101.0 {
        assert!(
            Instant::now() < deadline,
            "not written:\n{}",
            s.persister.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let s = scrape(admin);
    let count = |pipeline| {
        value(
            &s,
            "monasca_persister_end_to_end_latency_seconds_count",
            &[("pipeline", pipeline)],
        )
        .unwrap_or_else(|| panic!("no latency count for {pipeline}"))
    };
    assert_eq!(
        value(&s, "monasca_persister_points_written_total", &[]),
        Some(3101.0)
    );
    assert_eq!(
        count("metrics"),
        3000.0,
        "every metric point with a creation time"
    );
    assert_eq!(count("alarms"), 100.0, "every alarm transition");
    // Made a moment ago: all within the minute (a creation time misread as milliseconds
    // would be 55 years old, as seconds read as ms in the future 0).
    for pipeline in ["metrics", "alarms"] {
        let within_a_minute = s
            .samples
            .iter()
            .find(|x| {
                x.metric == "monasca_persister_end_to_end_latency_seconds"
                    && x.labels.get("pipeline") == Some(pipeline)
            })
            .map(|x| match &x.value {
                prometheus_parse::Value::Histogram(h) => h
                    .iter()
                    .find(|b| b.less_than == 60.0)
                    .map(|b| b.count)
                    .expect("a 60 s bucket"),
                other => panic!("not a histogram: {other:?}"),
            })
            .expect("latency buckets");
        assert_eq!(within_a_minute, count(pipeline), "{pipeline}");
        let sum = value(
            &s,
            "monasca_persister_end_to_end_latency_seconds_sum",
            &[("pipeline", pipeline)],
        )
        .expect("sum");
        assert!(sum > 0.0, "{pipeline}: latencies add up to {sum}");
    }
}
