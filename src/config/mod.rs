//! Configuration: our TOML file or the Python persister's oslo-style INI file, read into one
//! validated [`Config`].
//!
//! Owns the configuration as plain data: the sections' fields and every default (here and in
//! `influx`), the rules that combine fields (a pipeline's brokers and dead-letter topic; the
//! destinations, their consumer groups and routing, in `destinations`), and, through its
//! parts, the reading (`load`, `ini`, `pylog`), the checks (`validate`) and the mapping from
//! the Python persister's option names (`ini`). Errors name the file, the line
//! (where the format has one) and the key. Must never: print a password or token (see
//! [`Secret`]), or depend on the modules that use it (`sink`, `pipeline`, `daemon`): it
//! imports only the leaves (`convert`, `encode`, `decode`).

mod destinations;
mod influx;
mod ini;
mod load;
mod pylog;
mod secret;
mod validate;

pub use destinations::{Destination, PRIMARY, Route, Routes};
pub use influx::{Api, InfluxConfig};
pub use load::{Format, Loaded, config_dir_files, detect_format, load, load_all};
pub use secret::{Redactor, Secret};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::convert::Kind;
use crate::encode::Policy;

/// The whole effective configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub kafka_metrics: PipelineConfig,
    pub kafka_alarm_history: PipelineConfig,
    pub influxdb: InfluxConfig,
    /// More destinations (`[destinations.NAME]`), ordered by name; [`Config::destinations`]
    /// lists `[influxdb]` first, then these.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "destinations::serialize"
    )]
    pub destinations: Vec<Destination>,
    pub persister: PersisterConfig,
}

/// Settings shared by every Kafka client. `Debug` shows secret properties as `***`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port,host:port`. A pipeline's own `uri` wins.
    pub uri: String,
    /// Static group membership: consumers use `<this>-<pipeline>-<index>` as their
    /// `group.instance.id`, so a restarted daemon gets its partitions back at once. Empty: off.
    pub group_instance_id: String,
    /// Exit (non-zero) when every broker has been unreachable this long; systemd restarts us.
    pub brokers_down_exit_seconds: f64,
    /// Topic for rejected messages (raw payload, reason in headers). Empty: log and count only.
    pub dead_letter_topic: String,
    /// librdkafka properties applied to every consumer and producer (TLS, SASL, tuning).
    pub properties: BTreeMap<String, String>,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("uri", &self.uri)
            .field("group_instance_id", &self.group_instance_id)
            .field("brokers_down_exit_seconds", &self.brokers_down_exit_seconds)
            .field("dead_letter_topic", &self.dead_letter_topic)
            .field("properties", &redacted_properties(&self.properties))
            .finish()
    }
}

/// The properties with every secret one's value replaced by `***`.
pub fn redacted_properties(props: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    props
        .iter()
        .map(|(k, v)| {
            let v = if is_secret_property(k) && !v.is_empty() {
                "***".to_owned()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

impl KafkaConfig {
    /// What scrubs this configuration's secret properties out of a client's error text.
    pub fn redactor(&self) -> Redactor {
        Redactor::new((self.properties.iter()).map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            uri: "127.0.0.1:9092".into(),
            group_instance_id: String::new(),
            brokers_down_exit_seconds: 60.0,
            dead_letter_topic: String::new(),
            properties: BTreeMap::new(),
        }
    }
}

/// One consuming pipeline (metrics or alarm state history).
#[derive(Debug, Clone, Serialize)]
pub struct PipelineConfig {
    pub enabled: bool,
    /// Brokers for this pipeline; empty means `kafka.uri`.
    pub uri: String,
    pub topic: String,
    pub group_id: String,
    /// Messages per batch; a batch is written when full…
    pub batch_size: usize,
    /// …or this long after its first message.
    pub max_wait_time_seconds: f64,
    /// Consumers (each with its own thread) in this pipeline.
    pub num_processors: usize,
    /// Overrides `kafka.group_instance_id` for this pipeline.
    pub group_instance_id: String,
    /// Overrides `kafka.dead_letter_topic` for this pipeline.
    pub dead_letter_topic: String,
}

/// A pipeline's defaults (as the Python persister's): they depend on its kind.
fn pipeline_defaults(kind: Kind) -> PipelineConfig {
    let (topic, group, batch) = match kind {
        Kind::Metrics => ("metrics", "1_metrics", 20_000),
        Kind::Alarms => ("alarm-state-transitions", "1_alarm-state-transitions", 1),
    };
    PipelineConfig {
        enabled: true,
        uri: String::new(),
        topic: topic.into(),
        group_id: group.into(),
        batch_size: batch,
        max_wait_time_seconds: 30.0,
        num_processors: 1,
        group_instance_id: String::new(),
        dead_letter_topic: String::new(),
    }
}

/// The daemon itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersisterConfig {
    /// `reject` (default) or `sanitize` strings InfluxDB cannot store (README, "Escaping").
    pub policy: Policy,
    /// Larger Kafka messages are rejected (and dead-lettered) unparsed.
    pub max_message_bytes: usize,
    /// Batches per consumer being written at once; beyond it, consumption pauses.
    pub max_batches_in_flight: usize,
    /// On SIGTERM/SIGINT, how long in-flight writes may take before they are abandoned
    /// (uncommitted, so they are consumed again after restart).
    pub shutdown_timeout_seconds: f64,
    /// Log level (`error`…`trace`, or a `tracing` filter); `RUST_LOG` overrides it.
    pub log_level: String,
    /// Also write logs to `<log_dir>/monasca-persister.log`. Empty: standard output only.
    pub log_dir: String,
    /// Also write logs to this file (as oslo.log's `log_file`: a relative name is under
    /// `log_dir`; empty: `monasca-persister.log` when `log_dir` is set).
    pub log_file: String,
    /// Address of the admin endpoint (`/metrics`, `/healthz`, `/ready`). Empty: off.
    pub admin_listen: String,
    /// How often each consumer refreshes its consumer-lag gauge (from librdkafka's cached
    /// high watermarks; no request to the broker), in seconds.
    pub lag_interval_seconds: f64,
    /// `/ready` answers 503 once a message has waited this long, consumed but not committed
    /// (writes failing, a stuck batch). 0: never.
    pub ready_max_uncommitted_seconds: f64,
    /// `/ready` answers 503 once a partition has been unreadable this long (librdkafka
    /// reports an error for it instead of its messages: a batch it cannot decompress, a
    /// corrupt one). 0: never.
    pub ready_max_unreadable_seconds: f64,
    /// With a dead-letter topic: a database that refuses every write (403 for a missing
    /// grant, a v2 bucket that does not exist) for this long has its lines dead-lettered
    /// (reason `database_refused`) so the others move on. Without one, they wait.
    pub database_refused_seconds: f64,
}

impl Default for PersisterConfig {
    fn default() -> Self {
        Self {
            policy: Policy::Reject,
            max_message_bytes: crate::decode::DEFAULT_MAX_MESSAGE_BYTES,
            max_batches_in_flight: 2,
            shutdown_timeout_seconds: 30.0,
            log_level: "info".into(),
            log_dir: String::new(),
            log_file: String::new(),
            admin_listen: "127.0.0.1:9091".into(),
            lag_interval_seconds: 1.0,
            ready_max_uncommitted_seconds: 300.0,
            ready_max_unreadable_seconds: 60.0,
            database_refused_seconds: 300.0,
        }
    }
}

impl PersisterConfig {
    /// The log file, as oslo.log chooses it from `log_dir` and `log_file`; `None`: standard
    /// output only.
    pub fn log_path(&self) -> Option<PathBuf> {
        match (self.log_dir.as_str(), self.log_file.as_str()) {
            ("", "") => None,
            ("", file) => Some(PathBuf::from(file)),
            (dir, "") => Some(Path::new(dir).join("monasca-persister.log")),
            (dir, file) => Some(Path::new(dir).join(file)),
        }
    }
}

/// A configuration problem: which file, which line (when known), which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl ConfigError {
    /// A problem with a whole file: no line, no key.
    pub fn whole_file(file: PathBuf, message: String) -> Self {
        Self {
            file,
            line: None,
            key: String::new(),
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl Config {
    /// Both pipelines with their section names.
    pub fn pipelines(&self) -> [(&'static str, &PipelineConfig); 2] {
        [
            ("kafka_metrics", &self.kafka_metrics),
            ("kafka_alarm_history", &self.kafka_alarm_history),
        ]
    }

    /// The dead-letter topic of a pipeline: its own, else `[kafka] dead_letter_topic`; empty:
    /// none.
    pub fn dead_letter_topic<'a>(&'a self, p: &'a PipelineConfig) -> &'a str {
        if p.dead_letter_topic.is_empty() {
            &self.kafka.dead_letter_topic
        } else {
            &p.dead_letter_topic
        }
    }

    /// The brokers a pipeline connects to.
    pub fn brokers<'a>(&'a self, p: &'a PipelineConfig) -> &'a str {
        if p.uri.is_empty() {
            &self.kafka.uri
        } else {
            &p.uri
        }
    }

    /// The effective configuration as TOML, secrets shown as `***` (for `--check-config`):
    /// the data is redacted before it is serialized (passwords and tokens serialize as `***`
    /// themselves; secret librdkafka properties are replaced here).
    pub fn to_redacted_toml(&self) -> String {
        let mut redacted = self.clone();
        redacted.kafka.properties = redacted_properties(&self.kafka.properties);
        toml::to_string_pretty(&redacted).unwrap_or_else(|_| "# cannot print\n".to_owned())
    }
}

/// librdkafka property names whose values are secrets: `sasl.password`, `ssl.key.password`,
/// `ssl.keystore.password`, `sasl.oauthbearer.client.secret`, `ssl.key.pem`,
/// `sasl.oauthbearer.config`, and any name containing `password` or `secret` (any case).
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key.ends_with("key.pem")
        || key.contains("sasl.oauthbearer.config")
}
