//! Configuration: our TOML file or the Python persister's oslo-style INI file, read into one
//! validated [`Config`].
//!
//! Owns every default, every cross-field check and the mapping from the Python persister's
//! option names. Errors name the file, the line (where the format has one) and the key. Must
//! never print a password or token (see [`Secret`]).

mod influx;
mod ini;
mod pylog;
mod secret;

pub use influx::{Api, InfluxConfig};
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

/// A pipeline section as written: every key optional, defaults depend on the pipeline.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    enabled: Option<bool>,
    uri: Option<String>,
    topic: Option<String>,
    group_id: Option<String>,
    batch_size: Option<usize>,
    max_wait_time_seconds: Option<f64>,
    num_processors: Option<usize>,
    group_instance_id: Option<String>,
    dead_letter_topic: Option<String>,
}

impl PipelineFile {
    fn resolve(self, kind: Kind) -> PipelineConfig {
        let d = pipeline_defaults(kind);
        PipelineConfig {
            enabled: self.enabled.unwrap_or(d.enabled),
            uri: self.uri.unwrap_or(d.uri),
            topic: self.topic.unwrap_or(d.topic),
            group_id: self.group_id.unwrap_or(d.group_id),
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            max_wait_time_seconds: self
                .max_wait_time_seconds
                .unwrap_or(d.max_wait_time_seconds),
            num_processors: self.num_processors.unwrap_or(d.num_processors),
            group_instance_id: self.group_instance_id.unwrap_or(d.group_instance_id),
            dead_letter_topic: self.dead_letter_topic.unwrap_or(d.dead_letter_topic),
        }
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

/// The file as written, before defaults that depend on the section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    kafka: KafkaConfig,
    #[serde(default)]
    kafka_metrics: PipelineFile,
    #[serde(default)]
    kafka_alarm_history: PipelineFile,
    #[serde(default)]
    influxdb: InfluxConfig,
    #[serde(default)]
    persister: PersisterConfig,
}

/// A configuration problem: which file, which line (when known), which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
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

/// A loaded configuration and what the operator should hear about it once.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Keys read but not used, suspicious permissions…: logged once at start-up.
    pub warnings: Vec<String>,
}

/// Which syntax a file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Ini,
}

/// By extension (`.toml`; `.conf`/`.ini`/`.cfg`), else by content: a `[DEFAULT]` section or
/// unquoted values mean INI.
pub fn detect_format(path: &Path, text: &str) -> Format {
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => return Format::Toml,
        Some("conf" | "ini" | "cfg") => return Format::Ini,
        _ => {}
    }
    if toml::from_str::<toml::Table>(text).is_ok() && !text.contains("[DEFAULT]") {
        Format::Toml
    } else {
        Format::Ini
    }
}

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    load_all(&[path.to_owned()], &|name| std::env::var(name).ok())
}

/// The `*.conf` files of a `--config-dir`, sorted by name (as oslo.config takes them).
pub fn config_dir_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ConfigError {
        file: dir.to_owned(),
        line: None,
        key: String::new(),
        message: format!("cannot read the --config-dir: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "conf") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Reads, parses and validates configuration files: one TOML file, or INI files (as
/// oslo.config: each later file overrides the earlier ones key by key, and
/// `OS_<GROUP>__<OPTION>` variables, read through `env`, override them all).
pub fn load_all(
    paths: &[PathBuf],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let Some(path) = paths.last() else {
        return Err(ConfigError {
            file: PathBuf::new(),
            line: None,
            key: String::new(),
            message: "no configuration file".into(),
        });
    };
    let path = path.as_path();
    let err = |message: String| ConfigError {
        file: path.to_owned(),
        line: None,
        key: String::new(),
        message,
    };
    let mut texts = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(p).map_err(|e| ConfigError {
            file: p.clone(),
            line: None,
            key: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        texts.push((p.clone(), text));
    }
    let text = &texts[texts.len() - 1].1;
    let mut warnings = Vec::new();
    let (file, lines) = match detect_format(path, text) {
        Format::Toml if paths.len() == 1 => (parse_toml(path, text)?, BTreeMap::new()),
        Format::Toml => {
            return Err(err(
                "a TOML configuration is one file; only INI (oslo.config) files combine".into(),
            ));
        }
        Format::Ini => {
            let (table, lines, w) = ini::to_toml(&texts, env)?;
            warnings.extend(w);
            let file = ConfigFile::deserialize(toml::Value::Table(table))
                .map_err(|e| err(e.to_string()))?;
            (file, lines)
        }
    };
    let config = Config {
        kafka: file.kafka,
        kafka_metrics: file.kafka_metrics.resolve(Kind::Metrics),
        kafka_alarm_history: file.kafka_alarm_history.resolve(Kind::Alarms),
        influxdb: file.influxdb,
        persister: file.persister,
    };
    config.validate().map_err(|(key, message)| {
        let at = lines.get(&key);
        ConfigError {
            file: at.map_or_else(|| path.to_owned(), |(f, _)| f.clone()),
            line: at.map(|(_, l)| *l),
            key,
            message,
        }
    })?;
    for (p, text) in &texts {
        // Of several files, only those that hold a secret themselves.
        if (texts.len() == 1 || mentions_secret(text))
            && let Some(w) = permission_warning(p, &config)
        {
            warnings.push(w);
        }
    }
    Ok(Loaded { config, warnings })
}

fn parse_toml(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        // The key, when the error is about one, is the last dotted path before the span.
        let key = e
            .span()
            .map(|s| {
                let start = text[..s.start.min(text.len())]
                    .rfind('\n')
                    .map_or(0, |i| i + 1);
                text[start..]
                    .split(['=', '\n'])
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default();
        ConfigError {
            file: path.to_owned(),
            line,
            key,
            message: e.message().to_owned(),
        }
    })
}

impl Config {
    /// Cross-field checks; the error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: &str| Err((k.to_owned(), m.to_owned()));
        for (name, p) in self.pipelines() {
            if !p.enabled {
                continue;
            }
            if self.brokers(p).trim().is_empty() {
                return bad(
                    &format!("{name}.uri"),
                    "no Kafka brokers (set kafka.uri or this)",
                );
            }
            if p.topic.is_empty() {
                return bad(&format!("{name}.topic"), "must not be empty");
            }
            if p.group_id.is_empty() {
                return bad(&format!("{name}.group_id"), "must not be empty");
            }
            if p.batch_size == 0 {
                return bad(&format!("{name}.batch_size"), "must be at least 1");
            }
            if p.num_processors == 0 {
                return bad(&format!("{name}.num_processors"), "must be at least 1");
            }
            if !positive(p.max_wait_time_seconds) {
                return bad(
                    &format!("{name}.max_wait_time_seconds"),
                    "must be a positive number",
                );
            }
        }
        if !self.kafka_metrics.enabled && !self.kafka_alarm_history.enabled {
            return bad(
                "kafka_metrics.enabled",
                "both pipelines are disabled: nothing to do",
            );
        }
        let i = &self.influxdb;
        if i.database_name.is_empty() {
            return bad("influxdb.database_name", "must not be empty");
        }
        if i.ip_address.is_empty() {
            return bad("influxdb.ip_address", "must not be empty");
        }
        if i.port == 0 {
            return bad("influxdb.port", "must not be 0");
        }
        if i.batch_size == 0 {
            return bad("influxdb.batch_size", "must be at least 1");
        }
        if i.max_in_flight == 0 {
            return bad("influxdb.max_in_flight", "must be at least 1");
        }
        if !positive(i.request_timeout_seconds) {
            return bad("influxdb.request_timeout_seconds", "must be positive");
        }
        if i.api == Api::V2 && i.org.is_empty() {
            return bad("influxdb.org", "the v2 API needs an organisation");
        }
        if !i.retention_hours_per_tenant.is_empty() && !i.db_per_tenant {
            return bad(
                "influxdb.retention_hours_per_tenant",
                "needs db_per_tenant = true (a retention per tenant is a retention per database)",
            );
        }
        if self.persister.max_batches_in_flight == 0 {
            return bad("persister.max_batches_in_flight", "must be at least 1");
        }
        if !self.persister.admin_listen.is_empty()
            && self
                .persister
                .admin_listen
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            return bad(
                "persister.admin_listen",
                "must be an address like 127.0.0.1:9091 (or empty)",
            );
        }
        if !positive(self.persister.lag_interval_seconds) {
            return bad(
                "persister.lag_interval_seconds",
                "must be a positive number",
            );
        }
        if !(self.persister.ready_max_uncommitted_seconds >= 0.0
            && self.persister.ready_max_uncommitted_seconds.is_finite())
        {
            return bad(
                "persister.ready_max_uncommitted_seconds",
                "must be a non-negative number (0: never)",
            );
        }
        if !(self.persister.ready_max_unreadable_seconds >= 0.0
            && self.persister.ready_max_unreadable_seconds.is_finite())
        {
            return bad(
                "persister.ready_max_unreadable_seconds",
                "must be a non-negative number (0: never)",
            );
        }
        if !positive(self.persister.database_refused_seconds) {
            return bad(
                "persister.database_refused_seconds",
                "must be a positive number",
            );
        }
        if self.persister.max_message_bytes == 0 {
            return bad("persister.max_message_bytes", "must be at least 1");
        }
        if !positive(self.kafka.brokers_down_exit_seconds) {
            return bad("kafka.brokers_down_exit_seconds", "must be positive");
        }
        // Offsets are committed by us, only after the write: librdkafka storing or committing
        // positions on its own would commit messages that were consumed but never written.
        for key in ["enable.auto.commit", "enable.auto.offset.store"] {
            if let Some(v) = self.kafka.properties.get(key)
                && v.trim() != "false"
            {
                return bad(
                    &format!("kafka.properties.{key}"),
                    "must be false (or unset): offsets are committed only after the write, \
                     and librdkafka committing on its own would lose unwritten messages",
                );
            }
        }
        Ok(())
    }

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

/// A finite number above zero (NaN is not).
fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
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

/// Whether a file sets a password, a token or a secret property to something.
fn mentions_secret(text: &str) -> bool {
    text.lines().any(|l| {
        let Some((k, v)) = l.split_once(['=', ':']) else {
            return false;
        };
        let k = k.trim().trim_matches(['"', '\'']);
        (k == "password" || k == "token" || is_secret_property(k))
            && !v.trim().trim_matches(['"', '\'']).is_empty()
    })
}

/// A config file holding a password or token that everyone may read deserves a word.
fn permission_warning(path: &Path, c: &Config) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let has_secret = !c.influxdb.password.is_empty()
            || !c.influxdb.token.is_empty()
            || c.kafka
                .properties
                .iter()
                .any(|(k, v)| is_secret_property(k) && !v.is_empty());
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        if has_secret && mode & 0o004 != 0 {
            return Some(format!(
                "{} holds a password but is world-readable (mode {:o}); chmod 640 it",
                path.display(),
                mode & 0o777
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mp-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn empty_toml_gives_the_python_persister_defaults() {
        let c = load(&write("empty.toml", "")).unwrap().config;
        assert_eq!(
            (
                c.kafka_metrics.topic.as_str(),
                c.kafka_metrics.group_id.as_str()
            ),
            ("metrics", "1_metrics")
        );
        assert_eq!(c.kafka_metrics.batch_size, 20_000);
        assert_eq!(c.kafka_alarm_history.topic, "alarm-state-transitions");
        assert_eq!(c.kafka_alarm_history.group_id, "1_alarm-state-transitions");
        assert_eq!(c.kafka_alarm_history.batch_size, 1);
        assert_eq!(c.influxdb.batch_size, 10_000);
        assert_eq!(c.influxdb.database_name, "mon");
    }

    #[test]
    fn unknown_toml_key_names_file_line_and_key() {
        let p = write(
            "unknown.toml",
            "[kafka]\nuri = \"k:9092\"\n\n[influxdb]\nportt = 8086\n",
        );
        let e = load(&p).unwrap_err();
        assert_eq!(e.line, Some(5));
        assert_eq!(e.key, "portt");
        assert!(
            e.to_string()
                .contains("unknown.toml:5: portt: unknown field `portt`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_toml_type_is_reported_with_line() {
        let e = load(&write(
            "type.toml",
            "[kafka_metrics]\nbatch_size = \"many\"\n",
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(2));
        assert_eq!(e.key, "batch_size");
    }

    #[test]
    fn invalid_value_names_the_key() {
        let e = load(&write("zero.toml", "[kafka_metrics]\nbatch_size = 0\n")).unwrap_err();
        assert_eq!(e.key, "kafka_metrics.batch_size");
    }

    #[test]
    fn auto_commit_properties_are_refused() {
        for key in ["enable.auto.commit", "enable.auto.offset.store"] {
            let text = format!("[kafka.properties]\n\"{key}\" = \"true\"\n");
            let e = load(&write("autocommit.toml", &text)).unwrap_err();
            assert_eq!(e.key, format!("kafka.properties.{key}"));
            let text = format!("[kafka.properties]\n\"{key}\" = \"false\"\n");
            assert!(
                load(&write("autocommit.toml", &text)).is_ok(),
                "{key} = false"
            );
        }
    }

    #[test]
    fn secrets_are_redacted_in_check_config_output() {
        let text = "[influxdb]\npassword = \"hunter2\"\n[kafka.properties]\n\"sasl.password\" = \"kafkapw\"\n\"client.id\" = \"x\"\n";
        let c = load(&write("secret.toml", text)).unwrap().config;
        let out = c.to_redacted_toml();
        assert!(
            !out.contains("hunter2") && !out.contains("kafkapw"),
            "{out}"
        );
        assert!(out.contains("\"x\""));
    }

    #[test]
    fn debug_of_a_config_shows_no_secret() {
        let text = "[influxdb]\npassword = \"hunter2\"\ntoken = \"tok3n-xyz\"\n[kafka.properties]\n\"sasl.password\" = \"kafkapw\"\n\"ssl.key.pem\" = \"PEMDATA\"\n\"SASL.OAUTHBEARER.CLIENT.SECRET\" = \"oauth-s\"\n";
        let loaded = load(&write("debug.toml", text)).unwrap();
        let debug = format!("{:?} {:#?}", loaded, loaded.config);
        for s in ["hunter2", "tok3n-xyz", "kafkapw", "PEMDATA", "oauth-s"] {
            assert!(!debug.contains(s), "{s} in {debug}");
        }
        assert!(debug.contains("***"));
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_file_with_password_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let p = write("perm.toml", "[influxdb]\npassword = \"pw\"\n");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load(&p).unwrap().warnings.len(), 1);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(load(&p).unwrap().warnings.is_empty());
    }

    #[test]
    fn format_is_detected_by_extension_then_content() {
        assert_eq!(
            detect_format(Path::new("a.toml"), "[DEFAULT]"),
            Format::Toml
        );
        assert_eq!(detect_format(Path::new("a.conf"), ""), Format::Ini);
        assert_eq!(
            detect_format(Path::new("a"), "[kafka]\nuri = \"x\"\n"),
            Format::Toml
        );
        assert_eq!(
            detect_format(Path::new("a"), "[kafka]\nuri = x:9092\n"),
            Format::Ini
        );
    }
}

#[cfg(test)]
mod shipped_files {
    #[test]
    fn the_documented_sample_config_loads_and_equals_the_defaults() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/monasca-persister.toml");
        let sample = super::load(&path).expect("sample config loads").config;
        let empty = std::env::temp_dir().join(format!("mp-empty-{}.toml", std::process::id()));
        std::fs::write(&empty, "").unwrap();
        let defaults = super::load(&empty).unwrap().config;
        assert_eq!(
            sample.to_redacted_toml(),
            defaults.to_redacted_toml(),
            "every documented default is the real one"
        );
    }
}
