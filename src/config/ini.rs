//! The Python persister's oslo.config INI file, read unchanged and mapped onto our TOML schema.
//!
//! Supports what those files use: `[group]` sections, `key = value` (or `key: value`), `#` and
//! `;` comments, indented continuation lines, and `$key`, `$group.key`, `${group.key}`
//! references (`$$` is a literal `$`). Keys we know are typed by the schema below; keys we do
//! not use (`[zookeeper]`, `consumer_id`, …) are reported once as warnings, never fatal.

use std::collections::BTreeMap;
use std::path::Path;

use super::ConfigError;

#[derive(Clone, Copy)]
enum Ty {
    Str,
    Bool,
    Int,
    Float,
}

/// Pipeline keys, valid in `[kafka_metrics]` and `[kafka_alarm_history]`.
const PIPELINE_KEYS: &[(&str, Ty)] = &[
    ("enabled", Ty::Bool),
    ("uri", Ty::Str),
    ("topic", Ty::Str),
    ("group_id", Ty::Str),
    ("batch_size", Ty::Int),
    ("max_wait_time_seconds", Ty::Float),
    ("num_processors", Ty::Int),
    ("group_instance_id", Ty::Str),
    ("dead_letter_topic", Ty::Str),
];

/// Keys of the other groups we map one to one.
const KEYS: &[(&str, &[(&str, Ty)])] = &[
    (
        "kafka",
        &[
            ("uri", Ty::Str),
            ("group_instance_id", Ty::Str),
            ("brokers_down_exit_seconds", Ty::Float),
            ("dead_letter_topic", Ty::Str),
        ],
    ),
    (
        "influxdb",
        &[
            ("api", Ty::Str),
            ("ip_address", Ty::Str),
            ("port", Ty::Int),
            ("ssl", Ty::Bool),
            ("verify_ssl", Ty::Bool),
            ("user", Ty::Str),
            ("password", Ty::Str),
            ("token", Ty::Str),
            ("org", Ty::Str),
            ("database_name", Ty::Str),
            ("db_per_tenant", Ty::Bool),
            ("default_retention_hours", Ty::Int),
            ("retention_policy", Ty::Str),
            ("batch_size", Ty::Int),
            ("max_body_bytes", Ty::Int),
            ("gzip", Ty::Bool),
            ("request_timeout_seconds", Ty::Float),
            ("max_in_flight", Ty::Int),
            ("pool_idle_timeout_seconds", Ty::Float),
            ("pool_max_idle", Ty::Int),
            ("retry_initial_ms", Ty::Int),
            ("retry_max_seconds", Ty::Float),
            ("line_protocol", Ty::Str),
        ],
    ),
    (
        "persister",
        &[
            ("policy", Ty::Str),
            ("max_message_bytes", Ty::Int),
            ("max_batches_in_flight", Ty::Int),
            ("shutdown_timeout_seconds", Ty::Float),
            ("log_level", Ty::Str),
            ("log_dir", Ty::Str),
            ("admin_listen", Ty::Str),
            ("lag_interval_seconds", Ty::Float),
            ("ready_max_uncommitted_seconds", Ty::Float),
            ("database_refused_seconds", Ty::Float),
        ],
    ),
];

/// One `key = value` as read, with its line.
struct Entry {
    value: String,
    line: usize,
}

type Sections = BTreeMap<String, BTreeMap<String, Entry>>;

/// The mapped table, the line of each mapped key (`section.key`), and warnings to log once.
type Mapped = (toml::Table, BTreeMap<String, usize>, Vec<String>);

/// Parses `text` and maps it onto a TOML table for the TOML schema. Also returns the line of
/// every mapped key (`section.key`) and the warnings to log once.
pub(super) fn to_toml(path: &Path, text: &str) -> Result<Mapped, ConfigError> {
    let err = |line: usize, key: &str, message: String| ConfigError {
        file: path.to_owned(),
        line: Some(line),
        key: key.to_owned(),
        message,
    };
    let sections = parse(text).map_err(|(line, m)| err(line, "", m))?;
    let mut table = toml::Table::new();
    let mut lines = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut unused = Vec::new();

    for (section, entries) in &sections {
        for (key, entry) in entries {
            let raw = resolve(&sections, section, &entry.value, 0)
                .map_err(|m| err(entry.line, &format!("{section}.{key}"), m))?;
            let schema = match section.as_str() {
                "kafka_metrics" | "kafka_alarm_history" => PIPELINE_KEYS
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|&(_, t)| t),
                s => KEYS
                    .iter()
                    .find(|(g, _)| *g == s)
                    .and_then(|(_, keys)| keys.iter().find(|(k, _)| k == key).map(|&(_, t)| t)),
            };
            let full = format!("{section}.{key}");
            let (target, tkey, value) = match (section.as_str(), key.as_str(), schema) {
                (_, _, Some(ty)) => (
                    section.as_str(),
                    key.as_str(),
                    typed(&raw, ty).map_err(|m| err(entry.line, &full, m))?,
                ),
                ("DEFAULT", "debug", _) => {
                    if typed(&raw, Ty::Bool).map_err(|m| err(entry.line, &full, m))?
                        == toml::Value::Boolean(true)
                    {
                        (
                            "persister",
                            "log_level",
                            toml::Value::String("debug".into()),
                        )
                    } else {
                        continue;
                    }
                }
                ("DEFAULT", "log_dir", _) => ("persister", "log_dir", toml::Value::String(raw)),
                ("kafka_properties", k, _) => {
                    let props = table
                        .entry("kafka")
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    if let toml::Value::Table(t) = props {
                        let p = t
                            .entry("properties")
                            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                        if let toml::Value::Table(p) = p {
                            p.insert(k.to_owned(), toml::Value::String(raw));
                        }
                    }
                    continue;
                }
                ("repositories", k, _) if k.ends_with("_driver") && k != "events_driver" => {
                    if !raw.to_ascii_lowercase().contains("influx") {
                        return Err(err(
                            entry.line,
                            &full,
                            format!("{raw:?}: this persister writes to InfluxDB only"),
                        ));
                    }
                    continue;
                }
                ("kafka_events", "enabled", _) => {
                    if typed(&raw, Ty::Bool).ok() == Some(toml::Value::Boolean(true)) {
                        warnings.push(format!(
                            "{}:{}: kafka_events.enabled: events are not persisted by this persister (Elasticsearch only); ignored",
                            path.display(),
                            entry.line
                        ));
                    }
                    continue;
                }
                _ => {
                    unused.push(format!("{full} (line {})", entry.line));
                    continue;
                }
            };
            let section_table = table
                .entry(target)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = section_table {
                t.insert(tkey.to_owned(), value);
            }
            lines.insert(format!("{target}.{tkey}"), entry.line);
        }
    }
    if !unused.is_empty() {
        warnings.push(format!(
            "{}: options not used by this persister (ignored): {}",
            path.display(),
            unused.join(", ")
        ));
    }
    Ok((table, lines, warnings))
}

/// Sections of `key = value` entries. Errors carry the line.
fn parse(text: &str) -> Result<Sections, (usize, String)> {
    let mut sections: Sections = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut last_key: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            // Continuation of the previous value.
            match (&current, &last_key) {
                (Some(s), Some(k)) => {
                    if let Some(e) = sections.get_mut(s).and_then(|m| m.get_mut(k)) {
                        e.value.push('\n');
                        e.value.push_str(trimmed);
                    }
                    continue;
                }
                _ => {
                    return Err((
                        line,
                        format!("indented line outside any option: {trimmed:?}"),
                    ));
                }
            }
        }
        if let Some(name) = trimmed.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| (line, format!("unterminated section header {trimmed:?}")))?
                .trim();
            if name.is_empty() {
                return Err((line, "empty section name".into()));
            }
            sections.entry(name.to_owned()).or_default();
            current = Some(name.to_owned());
            last_key = None;
            continue;
        }
        let Some(section) = &current else {
            return Err((line, format!("option before any [section]: {trimmed:?}")));
        };
        let split = trimmed
            .find(['=', ':'])
            .ok_or_else(|| (line, format!("expected `key = value`, found {trimmed:?}")))?;
        let key = trimmed[..split].trim();
        if key.is_empty() {
            return Err((line, "empty option name".into()));
        }
        let value = trimmed[split + 1..].trim().to_owned();
        sections
            .entry(section.clone())
            .or_default()
            .insert(key.to_owned(), Entry { value, line });
        last_key = Some(key.to_owned());
    }
    Ok(sections)
}

/// Expands `$key`, `$group.key`, `${group.key}` and `$$`.
fn resolve(
    sections: &Sections,
    section: &str,
    value: &str,
    depth: usize,
) -> Result<String, String> {
    if !value.contains('$') {
        return Ok(value.to_owned());
    }
    if depth > 10 {
        return Err("references nest too deeply (a cycle?)".into());
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let (name, after) = if let Some(r) = rest.strip_prefix('{') {
            let end = r.find('}').ok_or("unterminated `${`")?;
            (&r[..end], &r[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(rest.len());
            (
                rest[..end].trim_end_matches('.'),
                &rest[rest[..end].trim_end_matches('.').len()..],
            )
        };
        let (group, key) = match name.split_once('.') {
            Some((g, k)) => (g, k),
            None => (section, name),
        };
        let found = sections
            .get(group)
            .and_then(|s| s.get(key))
            .or_else(|| {
                sections
                    .get("DEFAULT")
                    .and_then(|s| s.get(key))
                    .filter(|_| !name.contains('.'))
            })
            .ok_or_else(|| format!("reference ${name} names no option"))?;
        out.push_str(&resolve(sections, group, &found.value, depth + 1)?);
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

fn typed(raw: &str, ty: Ty) -> Result<toml::Value, String> {
    Ok(match ty {
        Ty::Str => toml::Value::String(raw.to_owned()),
        Ty::Bool => match raw.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => toml::Value::Boolean(true),
            "false" | "no" | "off" | "0" => toml::Value::Boolean(false),
            _ => return Err(format!("{raw:?} is not a boolean (true/false)")),
        },
        Ty::Int => toml::Value::Integer(
            raw.parse::<i64>()
                .ok()
                .filter(|i| *i >= 0)
                .ok_or_else(|| format!("{raw:?} is not a non-negative integer"))?,
        ),
        Ty::Float => toml::Value::Float(
            raw.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| format!("{raw:?} is not a number"))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::super::load;

    /// Shaped like the Python persister's shipped monasca-persister.conf.
    const PYTHON_CONF: &str = "\
[DEFAULT]
debug = False
log_dir = /var/log/monasca/persister

[repositories]
metrics_driver = monasca_persister.repositories.influxdb.metrics_repository:MetricInfluxdbRepository
alarm_state_history_driver = monasca_persister.repositories.influxdb.alarm_state_history_repository:AlarmStateHistInfluxdbRepository

[zookeeper]
uri = 127.0.0.1:2181
partition_interval_recheck_seconds = 15

[kafka]
uri = 10.0.0.1:9092,10.0.0.2:9092
batch_size = 5000

[kafka_alarm_history]
enabled = True
uri = $kafka.uri
group_id = 1_alarm-state-transitions
topic = alarm-state-transitions
consumer_id = 1
client_id = 1
batch_size = 1
max_wait_time_seconds = 30
fetch_size_bytes = 4096

[kafka_metrics]
enabled = True
uri = ${kafka.uri}
group_id = 1_metrics
topic = metrics
batch_size = $kafka.batch_size
max_wait_time_seconds = 30
num_processors = 2

[kafka_events]
enabled = False

[influxdb]
database_name = mon
ip_address = 192.168.1.5
port = 8086
user = mon_persister
password = p$$ss
ssl = False
verify_ssl = False
";

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mp-ini-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn python_persister_conf_is_read_unchanged() {
        let loaded = load(&write("persister.conf", PYTHON_CONF)).unwrap();
        let c = loaded.config;
        assert_eq!(c.kafka_metrics.uri, "10.0.0.1:9092,10.0.0.2:9092");
        assert_eq!(c.kafka_alarm_history.uri, "10.0.0.1:9092,10.0.0.2:9092");
        assert_eq!(
            c.kafka_metrics.batch_size, 5000,
            "$kafka.batch_size reference"
        );
        assert_eq!(c.kafka_metrics.num_processors, 2);
        assert_eq!(c.kafka_alarm_history.batch_size, 1);
        assert_eq!(c.influxdb.ip_address, "192.168.1.5");
        assert_eq!(c.influxdb.user, "mon_persister");
        assert_eq!(c.influxdb.password.expose(), "p$ss");
        assert_eq!(c.persister.log_dir, "/var/log/monasca/persister");
        let unused = loaded
            .warnings
            .iter()
            .find(|w| w.contains("not used"))
            .expect("unused keys reported");
        for k in [
            "zookeeper.uri",
            "kafka_alarm_history.consumer_id",
            "kafka.batch_size",
        ] {
            assert!(unused.contains(k), "{k} in {unused}");
        }
    }

    #[test]
    fn bad_value_names_file_line_and_key() {
        let e = load(&write(
            "bad.conf",
            "[kafka_metrics]\nenabled = True\nbatch_size = lots\n",
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key, "kafka_metrics.batch_size");
        assert!(
            e.to_string()
                .contains("bad.conf:3: kafka_metrics.batch_size:"),
            "{e}"
        );
    }

    #[test]
    fn validation_error_points_at_the_ini_line() {
        let e = load(&write(
            "zero.conf",
            "[kafka_metrics]\n\nnum_processors = 0\n",
        ))
        .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(3), "kafka_metrics.num_processors")
        );
    }

    #[test]
    fn dangling_reference_is_an_error() {
        let e = load(&write("ref.conf", "[kafka_metrics]\nuri = $kafka.nope\n")).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("$kafka.nope"), "{e}");
    }

    #[test]
    fn non_influx_repository_is_refused() {
        let e = load(&write("cass.conf", "[repositories]\nmetrics_driver = monasca_persister.repositories.cassandra.metrics_repository:MetricCassandraRepository\n")).unwrap_err();
        assert_eq!(e.key, "repositories.metrics_driver");
    }

    #[test]
    fn kafka_properties_pass_through() {
        let c = load(&write(
            "props.conf",
            "[kafka_properties]\nsecurity.protocol = SASL_SSL\nsasl.password = x\n",
        ))
        .unwrap()
        .config;
        assert_eq!(c.kafka.properties["security.protocol"], "SASL_SSL");
        assert_eq!(c.kafka.properties["sasl.password"], "x");
    }

    #[test]
    fn continuation_lines_and_comments() {
        let c = load(&write(
            "cont.conf",
            "# comment\n[kafka]\n; another\nuri = a:1,\n  b:2\n",
        ))
        .unwrap()
        .config;
        assert_eq!(c.kafka.uri, "a:1,\nb:2");
    }
}
