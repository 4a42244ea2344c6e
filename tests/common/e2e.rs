//! What the end-to-end tests share: the metric messages they produce, counting what landed,
//! a background producer, and reading the daemon's `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::Influx;
use super::kafka::{Tansu, produce_to};

/// Writes `<dir>/persister.toml` for the end-to-end tests: Kafka at `bootstrap` (`kafka_extra`
/// appended to `[kafka]`), InfluxDB on `influx_port`, small batches and quick retries;
/// `extra` appended to `[persister]`.
pub fn persister_toml(
    dir: &std::path::Path,
    bootstrap: &str,
    influx_port: u16,
    kafka_extra: &str,
    extra: &str,
) -> std::path::PathBuf {
    let text = format!(
        r#"
[kafka]
uri = "{bootstrap}"
{kafka_extra}

[kafka_metrics]
batch_size = 5000
max_wait_time_seconds = 0.5

[kafka_alarm_history]
batch_size = 100
max_wait_time_seconds = 0.5

[influxdb]
port = {influx_port}
database_name = "mon"
retry_initial_ms = 50
retry_max_seconds = 1.0

[persister]
shutdown_timeout_seconds = 10
{extra}
"#
    );
    let path = dir.join("persister.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The first message's timestamp; message `i` is `i` ms later.
pub const BASE_TS: i64 = 1_700_000_000_000;

/// Metric message `i`: its own timestamp, so each message is a distinct point (series + time);
/// tenant `tenant-{i % 3}`, host `h{i % 50}`, value `i.5`.
pub fn metric(i: usize) -> Vec<u8> {
    format!(
        r#"{{"metric":{{"name":"e2e.metric","dimensions":{{"hostname":"h{}","service":"s"}},"timestamp":{},"value":{i}.5,"value_meta":null}},"meta":{{"tenantId":"tenant-{}","region":"RegionOne"}},"creation_time":1}}"#,
        i % 50,
        BASE_TS + i as i64,
        i % 3
    )
    .into_bytes()
}

/// Points of [`metric`] messages stored in database `mon` (0 before the persister's first
/// write has created it); panics on any answer that is not a count.
pub fn metric_points(influx: &Influx) -> i64 {
    influx.points_or_no_database("mon", r#"SELECT count(value) FROM "e2e.metric""#)
}

/// Produces `metric(i)` for `i = from, from + 1, …` to topic `metrics` (`partitions`
/// partitions) in the background, a chunk at a time, until stopped; so that whatever a test
/// does meanwhile happens while messages are still arriving, however fast the machine is.
pub struct Feeder {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl Feeder {
    pub fn start(tansu: &Tansu, partitions: i32, from: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let bootstrap = tansu.bootstrap();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut next = from;
            while !flag.load(Ordering::Relaxed) {
                let chunk: Vec<Vec<u8>> = (next..next + 500).map(metric).collect();
                produce_to(
                    &bootstrap,
                    "metrics",
                    partitions,
                    chunk.iter().map(Vec::as_slice),
                );
                next += 500;
                // Pacing of the load, not synchronisation.
                std::thread::sleep(Duration::from_millis(50));
            }
            next
        });
        Feeder { stop, thread }
    }

    /// Stops producing; returns the index after the last message produced (all acknowledged).
    pub fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("feeder thread")
    }
}

/// The daemon's `/metrics` on `port`, parsed; panics unless it answers 200 with valid text.
pub fn scrape(port: u16) -> prometheus_parse::Scrape {
    try_scrape(&format!("127.0.0.1:{port}")).unwrap_or_else(|e| panic!("/metrics: {e}"))
}

/// The daemon's `/metrics` at `addr`, parsed; `Err` unless it answers 200 with valid text.
pub fn try_scrape(addr: &str) -> std::io::Result<prometheus_parse::Scrape> {
    let (status, body) = super::http_request(addr, "GET", "/metrics", b"")?;
    if status != 200 {
        return Err(std::io::Error::other(format!(
            "/metrics answered {status}: {body}"
        )));
    }
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
}

/// The sum of every sample of metric `name`.
pub fn total(scrape: &prometheus_parse::Scrape, name: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// The value of the first sample of `name` whose labels include all of `labels`; `None` when
/// there is none.
pub fn value(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{name}: not a single value: {other:?}"),
        })
}
