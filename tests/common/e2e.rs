//! What the end-to-end tests share: starting InfluxDB, tansu and the daemon together, the
//! metric messages they produce, counting what landed, a background producer, and reading the
//! daemon's `/metrics`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::kafka::{Persister, Tansu, produce_to};
use super::{Influx, TempDir};

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

/// An end-to-end stack: InfluxDB 1.6, tansu with the persister's topics, and the persister
/// binary running a [`persister_toml`] config written to a temporary directory. Made by
/// [`Stack::builder`].
///
/// The fields drop in the order declared: the persister stops before its directory is removed
/// and before the servers it uses stop.
pub struct Stack {
    pub persister: Persister,
    /// The config file the persister runs (`<dir>/persister.toml`).
    pub config: PathBuf,
    pub dir: TempDir,
    pub tansu: Tansu,
    pub influx: Influx,
}

impl Stack {
    /// A stack whose temporary directory is named after `tag`: by default a plain
    /// `Influx::start()`, topic `metrics` with 4 partitions and `alarm-state-transitions`
    /// with 1, no dead-letter topic, and nothing added to the config.
    pub fn builder(tag: &str) -> StackBuilder<'_> {
        StackBuilder {
            tag,
            influx: None,
            dead_letter_topic: None,
            influxdb: "",
            persister: "",
        }
    }
}

/// How to start a [`Stack`]; see [`Stack::builder`].
pub struct StackBuilder<'a> {
    tag: &'a str,
    influx: Option<Influx>,
    dead_letter_topic: Option<&'a str>,
    influxdb: &'a str,
    persister: &'a str,
}

impl<'a> StackBuilder<'a> {
    /// Uses an InfluxDB the test has started itself (authentication, say).
    pub fn influx(mut self, influx: Influx) -> Self {
        self.influx = Some(influx);
        self
    }

    /// Creates `topic` (1 partition) and names it as `[kafka] dead_letter_topic`.
    pub fn dead_letter_topic(mut self, topic: &'a str) -> Self {
        self.dead_letter_topic = Some(topic);
        self
    }

    /// Lines added at the top of `[influxdb]`.
    pub fn influxdb(mut self, lines: &'a str) -> Self {
        self.influxdb = lines;
        self
    }

    /// Lines appended to `[persister]`.
    pub fn persister(mut self, lines: &'a str) -> Self {
        self.persister = lines;
        self
    }

    /// Starts InfluxDB (unless given one), then tansu and its topics, writes the config and
    /// starts the persister on it.
    pub fn start(self) -> Stack {
        let influx = self.influx.unwrap_or_else(Influx::start);
        let tansu = Tansu::start();
        tansu.create_topic("metrics", 4);
        tansu.create_topic("alarm-state-transitions", 1);
        let kafka_extra = match self.dead_letter_topic {
            Some(topic) => {
                tansu.create_topic(topic, 1);
                format!("dead_letter_topic = \"{topic}\"")
            }
            None => String::new(),
        };
        let dir = TempDir::new(self.tag);
        let config = persister_toml(
            &dir.0,
            &tansu.bootstrap(),
            influx.port,
            &kafka_extra,
            self.persister,
        );
        if !self.influxdb.is_empty() {
            let text = std::fs::read_to_string(&config)
                .unwrap()
                .replace("[influxdb]\n", &format!("[influxdb]\n{}\n", self.influxdb));
            std::fs::write(&config, text).unwrap();
        }
        let persister = Persister::start(&config);
        Stack {
            persister,
            config,
            dir,
            tansu,
            influx,
        }
    }
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
