//! End to end: the real binary, a real InfluxDB 1.6 and the tansu Kafka broker, all started
//! here on free ports. The tests run one at a time (they share the machine's two cores).

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::e2e::{BASE_TS, Feeder, metric, metric_points, scrape, total};
use common::kafka::{Persister, Tansu};
use common::{Influx, TempDir};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn alarm(i: usize) -> Vec<u8> {
    format!(
        r#"{{"alarm-transitioned":{{"tenantId":"tenant-1","alarmId":"alarm-{i}","alarmDefinitionId":"d","alarmName":"n","alarmDescription":"","metrics":[{{"id":null,"name":"cpu","dimensions":{{"hostname":"h"}}}}],"oldState":"OK","newState":"ALARM","actionsEnabled":true,"stateChangeReason":"r {i}","severity":"LOW","subAlarms":[],"timestamp":{}}}}}"#,
        BASE_TS + i as i64
    )
    .into_bytes()
}

fn alarm_points(influx: &Influx) -> i64 {
    influx.points_or_no_database("mon", "SELECT count(alarm_id) FROM alarm_state_history")
}

fn wait_until(what: &str, limit: Duration, p: &Persister, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = p.log_text();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    panic!(
        "timed out waiting for {what}; persister log tail:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}

struct Setup {
    influx: Influx,
    tansu: Tansu,
    dir: TempDir,
}

fn setup() -> Setup {
    setup_with(Influx::start())
}

fn setup_with(influx: Influx) -> Setup {
    let tansu = Tansu::start();
    tansu.create_topic("metrics", 4);
    tansu.create_topic("alarm-state-transitions", 1);
    Setup {
        influx,
        tansu,
        dir: TempDir::new("e2e"),
    }
}

/// A TOML config for this setup; `extra` is appended (more keys or sections).
fn toml_config(s: &Setup, kafka_extra: &str, extra: &str) -> std::path::PathBuf {
    let down = if kafka_extra.contains("brokers_down_exit_seconds") {
        ""
    } else {
        "brokers_down_exit_seconds = 120"
    };
    common::e2e::persister_toml(
        &s.dir.0,
        &s.tansu.bootstrap(),
        s.influx.port,
        &format!("{down}\n{kafka_extra}"),
        extra,
    )
}

#[test]
fn hundred_thousand_metrics_and_a_thousand_alarms_land_exactly() {
    let _g = serial();
    let s = setup();
    let mut p = Persister::start(&toml_config(&s, "", ""));
    let metrics: Vec<Vec<u8>> = (0..100_000).map(metric).collect();
    let alarms: Vec<Vec<u8>> = (0..1000).map(alarm).collect();
    s.tansu
        .produce("metrics", 4, metrics.iter().map(Vec::as_slice));
    s.tansu.produce(
        "alarm-state-transitions",
        1,
        alarms.iter().map(Vec::as_slice),
    );
    wait_until(
        "100 000 metric points",
        Duration::from_secs(180),
        &p,
        || metric_points(&s.influx) == 100_000,
    );
    wait_until("1 000 alarm points", Duration::from_secs(60), &p, || {
        alarm_points(&s.influx) == 1000
    });
    wait_until("offsets committed", Duration::from_secs(90), &p, || {
        s.tansu
            .committed("1_metrics", "metrics", 4)
            .is_ok_and(|n| n == 100_000)
            && s.tansu
                .committed("1_alarm-state-transitions", "alarm-state-transitions", 1)
                .is_ok_and(|n| n == 1000)
    });
    p.signal("-TERM");
    let status = p
        .wait(Duration::from_secs(20))
        .expect("exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}\n{}", p.log_text());
    assert_eq!(
        metric_points(&s.influx),
        100_000,
        "nothing more, nothing less"
    );
}

#[test]
fn sigterm_mid_stream_exits_zero_and_commits_match_what_influxdb_holds() {
    let _g = serial();
    let s = setup();
    let mut p = Persister::start(&toml_config(&s, "", ""));
    let metrics: Vec<Vec<u8>> = (0..20_000).map(metric).collect();
    s.tansu
        .produce("metrics", 4, metrics.iter().map(Vec::as_slice));
    // Messages keep arriving while the signal lands.
    let feeder = Feeder::start(&s.tansu, 4, 20_000);
    wait_until("a first part written", Duration::from_secs(120), &p, || {
        metric_points(&s.influx) > 5000
    });
    p.signal("-TERM");
    let status = p
        .wait(Duration::from_secs(120))
        .expect("exits after SIGTERM");
    let produced = feeder.stop();
    assert!(status.success(), "exit status {status:?}\n{}", p.log_text());
    let stored = metric_points(&s.influx);
    let committed = s.tansu.committed_now("1_metrics", "metrics", 4);
    eprintln!("produced: {produced}, stored at SIGTERM: {stored}, committed: {committed}");
    assert_eq!(
        committed, stored,
        "committed offsets = points stored (each message one point)"
    );
    // A restart picks up from the commits and finishes the rest.
    let p2 = Persister::start(&toml_config(&s, "", ""));
    wait_until(
        "every produced point after restart",
        Duration::from_secs(180),
        &p2,
        || metric_points(&s.influx) == produced as i64,
    );
}

#[test]
fn kill_9_mid_stream_and_restart_loses_no_point() {
    let _g = serial();
    let s = setup();
    // tansu never expires a member that died without leaving; static membership lets the
    // restarted consumer take its partitions back.
    let cfg = toml_config(&s, r#"group_instance_id = "e2e-node""#, "");
    let mut p = Persister::start(&cfg);
    let metrics: Vec<Vec<u8>> = (0..20_000).map(metric).collect();
    s.tansu
        .produce("metrics", 4, metrics.iter().map(Vec::as_slice));
    let feeder = Feeder::start(&s.tansu, 4, 20_000);
    wait_until("mid-stream", Duration::from_secs(120), &p, || {
        metric_points(&s.influx) > 5000
    });
    p.signal("-KILL");
    p.wait(Duration::from_secs(60)).expect("killed");
    let produced = feeder.stop();
    eprintln!(
        "points stored when killed: {}, produced: {produced}",
        metric_points(&s.influx)
    );
    let p2 = Persister::start(&cfg);
    wait_until(
        "every produced point after kill -9 and restart",
        Duration::from_secs(180),
        &p2,
        || metric_points(&s.influx) == produced as i64,
    );
}

#[test]
fn influxdb_outage_pauses_then_every_point_lands_with_bounded_memory() {
    let _g = serial();
    let mut s = setup();
    let mut p = Persister::start(&toml_config(&s, "", ""));
    let first: Vec<Vec<u8>> = (0..10_000).map(metric).collect();
    s.tansu
        .produce("metrics", 4, first.iter().map(Vec::as_slice));
    wait_until("first 10 000", Duration::from_secs(120), &p, || {
        metric_points(&s.influx) == 10_000
    });
    s.influx.stop();
    let rest: Vec<Vec<u8>> = (10_000..60_000).map(metric).collect();
    s.tansu
        .produce("metrics", 4, rest.iter().map(Vec::as_slice));
    wait_until(
        "the failing write noticed",
        Duration::from_secs(60),
        &p,
        || p.log_text().contains("retrying"),
    );
    // Sample memory while the rest piles up behind the outage.
    let mut peak = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        peak = peak.max(p.rss_kib());
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        matches!(p.child.try_wait(), Ok(None)),
        "still running during the outage:\n{}",
        p.log_text()
    );
    wait_until("the pause logged", Duration::from_secs(60), &p, || {
        p.log_text().contains("partitions paused")
    });
    s.influx.restart();
    wait_until(
        "all 60 000 after the outage",
        Duration::from_secs(180),
        &p,
        || metric_points(&s.influx) == 60_000,
    );
    // Both ends of each state change are logged once.
    let log = p.log_text();
    for line in [
        "InfluxDB write failed; retrying",
        "InfluxDB writes succeed again",
        "partitions paused",
        "partitions resumed",
    ] {
        assert!(log.contains(line), "{line:?} missing from the log:\n{log}");
    }
    assert!(
        log.matches("InfluxDB writes succeed again").count() == 1,
        "the recovery logged once:\n{log}"
    );
    eprintln!("peak RSS during the outage: {peak} KiB");
    // The README's goal is 48 MiB peak RSS (release build, default settings: 41 MiB
    // measured). This test runs the debug build `cargo test` makes, whose peak here measured
    // 49.3, 52.4 and 54.4 MiB in three runs on a 2-core VM; the bound is the goal plus 16 MiB
    // for the debug build's larger code and the machine's variation.
    const BOUND_KIB: u64 = (48 + 16) * 1024;
    assert!(
        peak < BOUND_KIB,
        "RSS peaked at {peak} KiB during the outage (bound {BOUND_KIB} KiB)"
    );
}

#[test]
fn poison_messages_go_to_the_dead_letter_topic_and_the_rest_lands() {
    let _g = serial();
    let s = setup();
    s.tansu.create_topic("dlq", 1);
    let mut p = Persister::start(&toml_config(&s, r#"dead_letter_topic = "dlq""#, ""));
    let mut payloads = Vec::new();
    let mut poison = Vec::new();
    for i in 0..10_000 {
        let m = match i % 100 {
            7 => b"{not json".to_vec(),
            42 => format!(r#"{{"metric":{{"name":"e2e.metric","timestamp":{},"value":"NaN"}},"meta":{{"tenantId":"t","region":"r"}}}}"#, BASE_TS + i).into_bytes(),
            77 => format!(r#"{{"metric":{{"name":"e2e.metric","dimensions":{{"path":"c:\\"}},"timestamp":{},"value":1}},"meta":{{"tenantId":"t","region":"r"}}}}"#, BASE_TS + i).into_bytes(),
            _ => metric(i as usize),
        };
        if matches!(i % 100, 7 | 42 | 77) {
            poison.push(m.clone());
        }
        payloads.push(m);
    }
    s.tansu
        .produce("metrics", 4, payloads.iter().map(Vec::as_slice));
    wait_until("every valid point", Duration::from_secs(120), &p, || {
        metric_points(&s.influx) == 9_700
    });
    wait_until("everything committed", Duration::from_secs(90), &p, || {
        s.tansu
            .committed("1_metrics", "metrics", 4)
            .is_ok_and(|n| n == 10_000)
    });

    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", s.tansu.bootstrap())
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&["dlq"]).unwrap();
    let mut letters = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while letters.len() < poison.len() && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            let headers = m.headers().expect("dead letters carry headers");
            let h = |k: &str| {
                headers
                    .iter()
                    .find(|h| h.key == k)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            letters.push((
                m.payload().unwrap_or_default().to_vec(),
                h("reason"),
                h("source_topic"),
                h("source_offset"),
            ));
        }
    }
    assert_eq!(
        letters.len(),
        poison.len(),
        "one dead letter per poison message"
    );
    let mut reasons: Vec<String> = letters.iter().map(|l| l.1.clone()).collect();
    reasons.sort();
    reasons.dedup();
    assert_eq!(
        reasons,
        vec!["invalid_json", "non_finite", "unrepresentable"]
    );
    for l in &letters {
        assert!(poison.contains(&l.0), "payload is the raw message");
        assert_eq!(l.2, "metrics");
        assert!(!l.3.is_empty());
    }
    p.signal("-TERM");
    assert!(p.wait(Duration::from_secs(20)).expect("exits").success());
}

#[test]
fn the_python_persisters_ini_file_starts_the_daemon() {
    let _g = serial();
    let s = setup();
    let ini = format!(
        "[DEFAULT]\ndebug = False\n\n[repositories]\nmetrics_driver = monasca_persister.repositories.influxdb.metrics_repository:MetricInfluxdbRepository\n\n[zookeeper]\nuri = 127.0.0.1:2181\npartition_interval_recheck_seconds = 15\n\n[kafka]\nuri = {bs}\n\n[kafka_alarm_history]\nenabled = True\nuri = $kafka.uri\ngroup_id = 1_alarm-state-transitions\ntopic = alarm-state-transitions\nconsumer_id = 1\nclient_id = 1\nbatch_size = 1\nmax_wait_time_seconds = 1\nfetch_size_bytes = 4096\n\n[kafka_metrics]\nenabled = True\nuri = $kafka.uri\ngroup_id = 1_metrics\ntopic = metrics\nbatch_size = 500\nmax_wait_time_seconds = 1\n\n[influxdb]\ndatabase_name = mon\nip_address = 127.0.0.1\nport = {port}\nuser =\npassword =\n",
        bs = s.tansu.bootstrap(),
        port = s.influx.port
    );
    let path = s.dir.0.join("monasca-persister.conf");
    std::fs::write(&path, ini).unwrap();
    let mut p = Persister::start(&path);
    let metrics: Vec<Vec<u8>> = (0..1000).map(metric).collect();
    s.tansu
        .produce("metrics", 4, metrics.iter().map(Vec::as_slice));
    let alarms: Vec<Vec<u8>> = (0..10).map(alarm).collect();
    s.tansu.produce(
        "alarm-state-transitions",
        1,
        alarms.iter().map(Vec::as_slice),
    );
    wait_until(
        "1 000 metrics and 10 alarms",
        Duration::from_secs(120),
        &p,
        || metric_points(&s.influx) == 1000 && alarm_points(&s.influx) == 10,
    );
    assert!(
        p.log_text().contains("zookeeper.uri"),
        "unused keys reported"
    );
    p.signal("-TERM");
    assert!(p.wait(Duration::from_secs(20)).expect("exits").success());
}

#[test]
fn all_brokers_down_for_too_long_exits_non_zero() {
    let _g = serial();
    let mut s = setup();
    let mut p = Persister::start(&toml_config(&s, "brokers_down_exit_seconds = 3", ""));
    let metrics: Vec<Vec<u8>> = (0..100).map(metric).collect();
    s.tansu
        .produce("metrics", 4, metrics.iter().map(Vec::as_slice));
    wait_until("first points", Duration::from_secs(60), &p, || {
        metric_points(&s.influx) == 100
    });
    drop(std::mem::replace(&mut s.tansu, Tansu::start()));
    let status = p
        .wait(Duration::from_secs(60))
        .expect("exits once the brokers are gone long enough");
    assert_eq!(status.code(), Some(1), "{}", p.log_text());
    assert!(p.log_text().contains("unreachable too long"));
}

/// Sum of all metric points across measurements (loadgen spreads them over several names).
fn all_metric_points(influx: &Influx) -> i64 {
    influx.points_or_no_database("mon", "SELECT count(value) FROM /.*/")
}

/// The status `/ready` answers; `Err` when it does not answer. For polling.
fn ready_status(port: u16) -> std::io::Result<u16> {
    common::http_request(&format!("127.0.0.1:{port}"), "GET", "/ready", b"").map(|(s, _)| s)
}

#[test]
fn loadgen_messages_all_land_and_metrics_endpoint_agrees_and_ready_flips() {
    let _g = serial();
    let mut s = setup();
    let cfg = toml_config(
        &s,
        "",
        "admin_listen = \"127.0.0.1:0\"\nlag_interval_seconds = 0.5",
    );
    let p = Persister::start(&cfg);
    let admin = p.admin_port();
    let loadgen = std::process::Command::new(env!("CARGO_BIN_EXE_monasca-persister"))
        .args([
            "loadgen",
            "--brokers",
            &s.tansu.bootstrap(),
            "--count",
            "5000",
            "--start-ms",
            &BASE_TS.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        loadgen.status.success(),
        "{}",
        String::from_utf8_lossy(&loadgen.stderr)
    );
    assert!(String::from_utf8_lossy(&loadgen.stderr).contains("acknowledged 5000, failed 0"));
    wait_until("5 000 loadgen points", Duration::from_secs(120), &p, || {
        all_metric_points(&s.influx) == 5000
    });
    wait_until("ready", Duration::from_secs(90), &p, || {
        ready_status(admin).is_ok_and(|s| s == 200)
    });
    // A commit is acknowledged after the write it follows: wait for it, then read the rest.
    wait_until(
        "an acknowledged commit",
        Duration::from_secs(60),
        &p,
        || total(&scrape(admin), "monasca_persister_commits_total") >= 1.0,
    );

    let m = scrape(admin);
    let text = common::http_request(&format!("127.0.0.1:{admin}"), "GET", "/metrics", b"")
        .unwrap()
        .1;
    assert_eq!(
        total(&m, "monasca_persister_messages_consumed_total"),
        5000.0,
        "{text}"
    );
    assert_eq!(
        total(&m, "monasca_persister_points_written_total"),
        all_metric_points(&s.influx) as f64
    );
    assert_eq!(total(&m, "monasca_persister_messages_rejected_total"), 0.0);
    assert!(total(&m, "monasca_persister_batches_total") >= 1.0);
    assert!(total(&m, "monasca_persister_write_duration_seconds_count") >= 1.0);
    assert_eq!(
        total(&m, "monasca_persister_partitions_assigned"),
        5.0,
        "4 metric + 1 alarm partitions"
    );
    let (status, body) =
        common::http_request(&format!("127.0.0.1:{admin}"), "GET", "/healthz", b"").unwrap();
    assert_eq!(status, 200, "{body}");

    s.influx.stop();
    let more: Vec<Vec<u8>> = (0..100).map(|i| metric(10_000 + i)).collect();
    s.tansu
        .produce("metrics", 4, more.iter().map(Vec::as_slice));
    wait_until(
        "not ready while InfluxDB is down",
        Duration::from_secs(90),
        &p,
        || ready_status(admin).is_ok_and(|s| s == 503),
    );
    s.influx.restart();
    wait_until("ready again", Duration::from_secs(60), &p, || {
        ready_status(admin).is_ok_and(|s| s == 200)
    });
    wait_until("the extra 100 landed", Duration::from_secs(60), &p, || {
        all_metric_points(&s.influx) == 5100
    });
}

/// A throw-away Prometheus (Debian's `prometheus`) scraping `target` every second.
struct Prometheus {
    child: std::process::Child,
    port: u16,
    _dir: TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        let dir = TempDir::new("prometheus");
        let cfg = dir.0.join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: monasca-persister\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let (child, port) = common::start_server(
            "prometheus (install Debian's `prometheus` package)",
            Duration::from_secs(60),
            |port| {
                std::process::Command::new("prometheus")
                    .arg(format!("--config.file={}", cfg.display()))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        dir.0.join("data").display()
                    ))
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("start prometheus (install Debian's `prometheus` package)")
            },
            |port| {
                matches!(
                    common::http_request(&format!("127.0.0.1:{port}"), "GET", "/-/ready", b""),
                    Ok((200, _))
                )
            },
        );
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// Evaluates `expr` now: `Err` with Prometheus's answer unless it succeeded, else the
    /// result's series.
    fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let path = format!("/api/v1/query?query={}", common::urlencode(expr));
        let (status, body) =
            common::http_request(&format!("127.0.0.1:{}", self.port), "GET", &path, b"")
                .map_err(|e| e.to_string())?;
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
        if v["status"] != "success" {
            return Err(format!("{status}: {body}"));
        }
        v["data"]["result"]
            .as_array()
            .cloned()
            .ok_or_else(|| format!("no result array: {body}"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The PromQL expressions of the shipped alert rules or dashboard, as `scripts/promql-exprs`
/// prints them (Grafana variables substituted).
fn promql(only: &str) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/promql-exprs");
    let out = std::process::Command::new("python3")
        .args([script, "--only", only])
        .output()
        .expect("run scripts/promql-exprs with python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exprs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    assert!(exprs.len() >= 5, "{only}: {exprs:?}");
    exprs
}

/// The series selectors (metric name plus matchers) in an expression.
fn selectors(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &expr[i..];
        let starts_name = (rest.starts_with("monasca_persister_") || rest.starts_with("up{"))
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if !starts_name {
            i += 1;
            continue;
        }
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let mut end = i + name_len;
        if expr[end..].starts_with('{') {
            end += expr[end..].find('}').map_or(0, |j| j + 1);
        }
        out.push(expr[i..end].to_owned());
        i = end;
    }
    out
}

/// Metrics that exist only while something is wrong (a partition librdkafka cannot read):
/// a healthy daemon exports their `# TYPE` line and no sample. `tests/codecs.rs` reads them
/// with data.
const ONLY_WHEN_WRONG: &[&str] = &[
    "monasca_persister_partition_unreadable_seconds",
    "monasca_persister_partition_read_errors_total",
];

#[test]
fn prometheus_scrapes_the_daemon_and_every_dashboard_and_alert_expression_has_data() {
    let _g = serial();
    let s = setup();
    s.tansu.create_topic("dlq", 1);
    let cfg = toml_config(
        &s,
        r#"dead_letter_topic = "dlq""#,
        "admin_listen = \"127.0.0.1:0\"\nlag_interval_seconds = 0.5",
    );
    // The series limit on (never reached), so that its metrics exist.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[influxdb]\n",
        "[influxdb]\nmax_hourly_series_per_tenant = 100000\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let p = Persister::start(&cfg);
    let admin = p.admin_port();
    let prom = Prometheus::start(&format!("127.0.0.1:{admin}"));
    // A short load with one poison message, so that rejects and dead letters have series.
    let mut payloads: Vec<Vec<u8>> = (0..2000).map(metric).collect();
    payloads.push(b"{not json".to_vec());
    s.tansu
        .produce("metrics", 4, payloads.iter().map(Vec::as_slice));
    wait_until("2 000 points", Duration::from_secs(120), &p, || {
        metric_points(&s.influx) == 2000
    });
    wait_until(
        "the dead letter counted",
        Duration::from_secs(60),
        &p,
        || total(&scrape(admin), "monasca_persister_dead_letters_total") >= 1.0,
    );

    // Those that exist only while something is wrong are at least exported by name.
    let (_, exported) =
        common::http_request(&format!("127.0.0.1:{admin}"), "GET", "/metrics", b"").unwrap();
    let only_when_wrong = |expr: &str| ONLY_WHEN_WRONG.iter().any(|m| expr.contains(m));
    for m in ONLY_WHEN_WRONG {
        assert!(
            exported.contains(&format!("# TYPE {m} ")),
            "{m} is not exported:\n{exported}"
        );
    }
    // Every other dashboard panel shows data (rates need two scrapes after the counters
    // moved).
    for expr in promql("dashboard")
        .into_iter()
        .filter(|e| !only_when_wrong(e))
    {
        let mut last = Err(String::new());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            last = prom.query(&expr);
            if last.as_ref().is_ok_and(|r| !r.is_empty()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let series = last.unwrap_or_else(|e| panic!("dashboard expression {expr:?}: {e}"));
        assert!(
            !series.is_empty(),
            "no data for dashboard expression {expr:?}"
        );
    }
    // Alert expressions are empty while nothing is wrong: each must be valid and every series
    // it selects must exist.
    for expr in promql("alerts") {
        if let Err(e) = prom.query(&expr) {
            panic!("alert expression {expr:?}: {e}");
        }
        let sels = selectors(&expr);
        assert!(!sels.is_empty(), "no selector found in {expr:?}");
        for sel in sels.into_iter().filter(|s| !only_when_wrong(s)) {
            let series = prom
                .query(&sel)
                .unwrap_or_else(|e| panic!("selector {sel:?} of {expr:?}: {e}"));
            assert!(!series.is_empty(), "{sel:?} (in {expr:?}) selects nothing");
        }
    }
}

#[test]
fn selectors_are_found_in_promql() {
    assert_eq!(
        selectors(
            r#"sum by (job) (increase(monasca_persister_commits_total[10m])) == 0 and up{job="x"} == 0"#
        ),
        vec!["monasca_persister_commits_total", r#"up{job="x"}"#]
    );
    assert_eq!(
        selectors(
            r#"rate(monasca_persister_write_retries_total{cause="auth"}[5m]) / count(xmonasca_persister_y)"#
        ),
        vec![r#"monasca_persister_write_retries_total{cause="auth"}"#]
    );
}

#[test]
fn db_per_tenant_writes_each_tenants_points_to_its_own_database() {
    let _g = serial();
    let s = setup();
    // Three tenants (metric(i) belongs to tenant-{i % 3}); each batch holds all three, written
    // to their databases at once.
    let cfg = toml_config(&s, "", "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[influxdb]\n", "[influxdb]\ndb_per_tenant = true\n");
    std::fs::write(&cfg, text).unwrap();
    let mut p = Persister::start(&cfg);
    let metrics: Vec<Vec<u8>> = (0..3000).map(metric).collect();
    s.tansu
        .produce("metrics", 4, metrics.iter().map(Vec::as_slice));
    // The persister creates each tenant's database at its first write to it.
    let tenant_points = |t: usize| {
        s.influx.points_or_no_database(
            &format!("mon_tenant-{t}"),
            r#"SELECT count(value) FROM "e2e.metric""#,
        )
    };
    wait_until(
        "1 000 points in each tenant's database",
        Duration::from_secs(120),
        &p,
        || (0..3).all(|t| tenant_points(t) == 1000),
    );
    wait_until("everything committed", Duration::from_secs(90), &p, || {
        s.tansu
            .committed("1_metrics", "metrics", 4)
            .is_ok_and(|n| n == 3000)
    });
    assert_eq!(
        metric_points(&s.influx),
        0,
        "nothing in the shared database"
    );
    p.signal("-TERM");
    assert!(p.wait(Duration::from_secs(60)).expect("exits").success());
}

/// InfluxDB with authentication on, three tenant databases, and a user `persister` that may
/// write to `mon_tenant-0` and `mon_tenant-1` but not to `mon_tenant-2`; a config for it with
/// a database per tenant (`extra` appended to `[kafka]`).
fn refusing_tenant_setup(kafka_extra: &str) -> (Setup, std::path::PathBuf) {
    let influx = Influx::start_refusing_tenant_2();
    let s = setup_with(influx);
    let cfg = toml_config(
        &s,
        kafka_extra,
        "admin_listen = \"127.0.0.1:0\"\ndatabase_refused_seconds = 3",
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[influxdb]\n",
        "[influxdb]\ndb_per_tenant = true\nuser = \"persister\"\npassword = \"w-only\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    (s, cfg)
}

/// Produces 3 000 metrics over the three tenants and waits until the two writable tenants'
/// 1 000 points each have landed.
fn writable_tenants_land(s: &Setup, p: &Persister) {
    let metrics: Vec<Vec<u8>> = (0..3000).map(metric).collect();
    s.tansu
        .produce("metrics", 4, metrics.iter().map(Vec::as_slice));
    wait_until(
        "the two writable tenants' points",
        Duration::from_secs(120),
        p,
        || s.influx.tenant_points(0) == 1000 && s.influx.tenant_points(1) == 1000,
    );
}

/// Reads `n` dead letters from `topic` (up to a minute): (payload, reason header).
fn dead_letters(bootstrap: &str, topic: &str, n: usize) -> Vec<(Vec<u8>, String)> {
    common::kafka::read_letters(bootstrap, topic, n)
        .into_iter()
        .map(|(payload, headers)| (payload, headers.get("reason").cloned().unwrap_or_default()))
        .collect()
}

#[test]
fn a_refused_tenant_database_is_dead_lettered_and_the_other_tenants_move_on() {
    let _g = serial();
    let (s, cfg) = refusing_tenant_setup(r#"dead_letter_topic = "dlq""#);
    s.tansu.create_topic("dlq", 1);
    let mut p = Persister::start(&cfg);
    writable_tenants_land(&s, &p);
    // After database_refused_seconds (3), the refused tenant's lines are dead-lettered and
    // every offset is committed.
    wait_until("everything committed", Duration::from_secs(120), &p, || {
        s.tansu
            .committed("1_metrics", "metrics", 4)
            .is_ok_and(|n| n == 3000)
    });
    let letters = dead_letters(&s.tansu.bootstrap(), "dlq", 1000);
    assert_eq!(letters.len(), 1000, "one dead letter per refused message");
    assert!(letters.iter().all(|(_, r)| r == "database_refused"));
    let refused: std::collections::BTreeSet<Vec<u8>> =
        (0..3000).filter(|i| i % 3 == 2).map(metric).collect();
    assert!(
        letters.iter().all(|(payload, _)| refused.contains(payload)),
        "only the refused tenant's messages, raw"
    );
    assert_eq!(s.influx.tenant_points(2), 0);
    p.signal("-TERM");
    assert!(p.wait(Duration::from_secs(60)).expect("exits").success());
}

#[test]
fn without_a_dead_letter_topic_a_refused_tenant_waits_loudly_until_granted() {
    let _g = serial();
    let (s, cfg) = refusing_tenant_setup("");
    let p = Persister::start(&cfg);
    let admin = p.admin_port();
    writable_tenants_land(&s, &p);
    // Past the bound, nothing is dropped: the refused database is named, /ready says no.
    wait_until(
        "the refused database named past the bound",
        Duration::from_secs(60),
        &p,
        || {
            scrape(admin).samples.iter().any(|m| {
                m.metric == "monasca_persister_influxdb_database_refused_seconds"
                    && m.labels.get("db") == Some("mon_tenant-2")
                    && matches!(m.value, prometheus_parse::Value::Gauge(v) if v >= 3.0)
            })
        },
    );
    let (status, body) =
        common::http_request(&format!("127.0.0.1:{admin}"), "GET", "/ready", b"").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(r#""failing_databases":["mon_tenant-2"]"#),
        "{body}"
    );
    assert_eq!(
        s.tansu.committed_now("1_metrics", "metrics", 4),
        0,
        "every partition's first batch waits for the refused tenant"
    );
    assert_eq!(s.influx.tenant_points(2), 0);
    // The grant arrives: everything lands and is committed.
    s.influx
        .query("", "GRANT WRITE ON \"mon_tenant-2\" TO persister");
    wait_until(
        "the refused tenant's points",
        Duration::from_secs(120),
        &p,
        || s.influx.tenant_points(2) == 1000,
    );
    wait_until("everything committed", Duration::from_secs(120), &p, || {
        s.tansu
            .committed("1_metrics", "metrics", 4)
            .is_ok_and(|n| n == 3000)
    });
    wait_until("ready again", Duration::from_secs(60), &p, || {
        ready_status(admin).is_ok_and(|s| s == 200)
    });
    assert!(
        p.log_text().contains("InfluxDB writes succeed again"),
        "the recovery is logged"
    );
}

/// The secret forms that must never appear in a log: as written, and TOML-, JSON- and
/// Rust-escaped.
fn secret_forms(secret: &str) -> Vec<String> {
    let unquote = |s: String| s[1..s.len() - 1].to_owned();
    vec![
        secret.to_owned(),
        unquote(toml::Value::String(secret.to_owned()).to_string()),
        unquote(serde_json::to_string(secret).unwrap()),
        unquote(format!("{secret:?}")),
    ]
}

fn assert_no_secret(log: &str, secrets: &[&str]) {
    for secret in secrets {
        for form in secret_forms(secret) {
            assert!(
                !log.contains(&form),
                "the log holds the secret as {form:?}:\n{log}"
            );
        }
    }
}

#[test]
fn secrets_refused_by_influxdb_or_kafka_never_reach_the_log() {
    let _g = serial();
    const DB_SECRET: &str = r#"pa"ss\wo'rd$x$$y ünï"#;
    const KAFKA_SECRET: &str = r#"sa"sl\se'cr$et ☃"#;
    let mut influx = Influx::start_with(&[("INFLUXDB_HTTP_AUTH_ENABLED", "true")]);
    influx.query(
        "",
        "CREATE USER admin WITH PASSWORD 's3cret' WITH ALL PRIVILEGES",
    );
    influx.auth = Some(("admin".into(), "s3cret".into()));
    influx.query("", "CREATE USER mon_persister WITH PASSWORD 'right'");
    let s = setup_with(influx);
    let quoted = |v: &str| toml::Value::String(v.to_owned()).to_string();

    // InfluxDB refuses the password (401), retried at debug level with librdkafka's own
    // debug output on.
    let cfg = toml_config(
        &s,
        "[kafka.properties]\ndebug = \"broker,security,conf\"",
        "admin_listen = \"127.0.0.1:0\"",
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[influxdb]\n",
        &format!(
            "[influxdb]\nuser = \"mon_persister\"\npassword = {}\n",
            quoted(DB_SECRET)
        ),
    );
    std::fs::write(&cfg, text).unwrap();
    let mut p = Persister::start_logging(&cfg, "debug");
    let port = p.admin_port();
    s.tansu.produce(
        "metrics",
        4,
        (0..10)
            .map(metric)
            .collect::<Vec<_>>()
            .iter()
            .map(Vec::as_slice),
    );
    wait_until(
        "writes refused 3 times for auth",
        Duration::from_secs(120),
        &p,
        || {
            scrape(port)
                .samples
                .iter()
                .find(|m| {
                    m.metric == "monasca_persister_write_retries_total"
                        && m.labels.get("cause") == Some("auth")
                })
                .is_some_and(|m| matches!(m.value, prometheus_parse::Value::Counter(v) if v >= 3.0))
        },
    );
    p.signal("-TERM");
    // A stop by signal is clean (exit 0) even with writes refused: they are abandoned
    // uncommitted after the shutdown timeout.
    let status = p.wait(Duration::from_secs(30)).expect("stops");
    assert_eq!(status.code(), Some(0), "{}", p.log_text());
    assert_no_secret(&p.log_text(), &[DB_SECRET]);
    assert_eq!(metric_points(&s.influx), 0);

    // Kafka is asked for SASL with a password; the broker does not accept it.
    std::fs::remove_file(&p.log).unwrap();
    let cfg = toml_config(
        &s,
        &format!(
            "brokers_down_exit_seconds = 5\n[kafka.properties]\ndebug = \"broker,security,conf\"\n\
             \"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanisms\" = \"PLAIN\"\n\
             \"sasl.username\" = \"persister\"\n\"sasl.password\" = {}\n",
            quoted(KAFKA_SECRET)
        ),
        "",
    );
    let mut p = Persister::start_logging(&cfg, "debug");
    let status = p
        .wait(Duration::from_secs(120))
        .expect("exits once brokers are down");
    // 1: stopped after a fatal condition (src/main.rs); a panic would be 101.
    assert_eq!(status.code(), Some(1), "{}", p.log_text());
    let log = p.log_text();
    assert!(log.contains("all Kafka brokers are down"), "{log}");
    assert!(
        log.contains("SASL"),
        "librdkafka's SASL debug output is in the log: {log}"
    );
    assert_no_secret(&log, &[KAFKA_SECRET, DB_SECRET]);
}
