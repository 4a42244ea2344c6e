//! The Python persister's oslo.config INI file, read unchanged and mapped onto our TOML schema,
//! with oslo.config 10.7's rules (checked option by option against oslo.config itself by
//! `tests/oslo_config.rs`):
//!
//! - `[group]` headers: names are lower-cased, except `DEFAULT`, which must be written so;
//!   `key = value` or `key: value` (the first `=` or `:` splits); keys are case-sensitive;
//!   whole-line `#` / `;` comments only (a `#` after a value is part of it); a value in one
//!   pair of matching quotes loses them; indented lines continue the previous value (joined
//!   with a newline; a blank line ends it); a later value of a key replaces an earlier one.
//! - Every option monasca-persister 9.0.0 registers (and the oslo.log ones) has its oslo
//!   default, so `[kafka_metrics] num_processors` defaults to `$kafka.num_processors`,
//!   `[influxdb] user` to `mon_persister`, `verify_ssl` to false.
//! - `$name`, `$group.name`, `${group.name}` name registered options (set or default; ours
//!   too); `$$` and `\$` are a `$`; a `$` not followed by a name is kept as written; a name
//!   that is no option is an error.
//! - `OS_<GROUP>__<OPTION>` environment variables override the file.
//! - Values are typed as oslo types them (booleans `true/false/yes/no/on/off/1/0`, ports,
//!   host addresses, `host:port` lists); an empty value of a typed option is unset.
//!
//! What oslo refuses we refuse, naming file, line and key. Keys we do not use (`[zookeeper]`,
//! `consumer_id`, …) are reported once as warnings, never fatal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ConfigError;

/// Option types, as oslo.config's (`Float` is ours only).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum K {
    Str,
    Bool,
    Int,
    Port,
    Host,
    List,
    HostPortList,
    Float,
    /// oslo's `DictOpt` of integers: `key:value,key:value`.
    IntDict,
}

/// Every option monasca-persister 9.0.0 registers with oslo.config (and oslo.log's), with its
/// default as oslo holds it (a list default comma-joined). Generated from the reference.
const OSLO: &[(&str, &str, K, Option<&str>)] = &[
    ("DEFAULT", "debug", K::Bool, Some(r#"False"#)),
    (
        "DEFAULT",
        "default_log_levels",
        K::List,
        Some(
            r#"amqp=WARN,boto=WARN,sqlalchemy=WARN,suds=INFO,oslo.messaging=INFO,oslo_messaging=INFO,iso8601=WARN,requests.packages.urllib3.connectionpool=WARN,urllib3.connectionpool=WARN,websocket=WARN,requests.packages.urllib3.util.retry=WARN,urllib3.util.retry=WARN,keystonemiddleware=WARN,routes.middleware=WARN,stevedore=WARN,taskflow=WARN,keystoneauth=WARN,oslo.cache=INFO,oslo_policy=INFO,dogpile.core.dogpile=INFO"#,
        ),
    ),
    (
        "DEFAULT",
        "instance_format",
        K::Str,
        Some(r#"[instance: %(uuid)s] "#),
    ),
    (
        "DEFAULT",
        "instance_uuid_format",
        K::Str,
        Some(r#"[instance: %(uuid)s] "#),
    ),
    ("DEFAULT", "log_color", K::Bool, Some(r#"False"#)),
    ("DEFAULT", "log_config_append", K::Str, None),
    (
        "DEFAULT",
        "log_date_format",
        K::Str,
        Some(r#"%Y-%m-%d %H:%M:%S"#),
    ),
    ("DEFAULT", "log_dir", K::Str, None),
    ("DEFAULT", "log_file", K::Str, None),
    ("DEFAULT", "log_rotate_interval", K::Int, Some(r#"1"#)),
    (
        "DEFAULT",
        "log_rotate_interval_type",
        K::Str,
        Some(r#"days"#),
    ),
    ("DEFAULT", "log_rotation_type", K::Str, Some(r#"none"#)),
    (
        "DEFAULT",
        "logging_context_format_string",
        K::Str,
        Some(
            r#"%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s [%(global_request_id)s %(request_id)s %(user_identity)s] %(instance)s%(message)s"#,
        ),
    ),
    (
        "DEFAULT",
        "logging_debug_format_suffix",
        K::Str,
        Some(r#"%(funcName)s %(pathname)s:%(lineno)d"#),
    ),
    (
        "DEFAULT",
        "logging_default_format_string",
        K::Str,
        Some(
            r#"%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s [-] %(instance)s%(message)s"#,
        ),
    ),
    (
        "DEFAULT",
        "logging_exception_prefix",
        K::Str,
        Some(r#"%(asctime)s.%(msecs)03d %(process)d ERROR %(name)s %(instance)s"#),
    ),
    (
        "DEFAULT",
        "logging_user_identity_format",
        K::Str,
        Some(
            r#"%(user)s %(project)s %(domain)s %(system_scope)s %(user_domain)s %(project_domain)s"#,
        ),
    ),
    ("DEFAULT", "max_logfile_count", K::Int, Some(r#"30"#)),
    ("DEFAULT", "max_logfile_size_mb", K::Int, Some(r#"200"#)),
    ("DEFAULT", "publish_errors", K::Bool, Some(r#"False"#)),
    ("DEFAULT", "rate_limit_burst", K::Int, Some(r#"0"#)),
    (
        "DEFAULT",
        "rate_limit_except_level",
        K::Str,
        Some(r#"CRITICAL"#),
    ),
    ("DEFAULT", "rate_limit_interval", K::Int, Some(r#"0"#)),
    (
        "DEFAULT",
        "syslog_log_facility",
        K::Str,
        Some(r#"LOG_USER"#),
    ),
    ("DEFAULT", "use_journal", K::Bool, Some(r#"False"#)),
    ("DEFAULT", "use_json", K::Bool, Some(r#"False"#)),
    ("DEFAULT", "use_stderr", K::Bool, Some(r#"False"#)),
    ("DEFAULT", "use_syslog", K::Bool, Some(r#"False"#)),
    ("cassandra", "connection_timeout", K::Int, Some(r#"5"#)),
    ("cassandra", "consistency_level", K::Str, Some(r#"ONE"#)),
    ("cassandra", "contact_points", K::List, Some(r#"127.0.0.1"#)),
    ("cassandra", "keyspace", K::Str, Some(r#"monasca"#)),
    ("cassandra", "local_data_center", K::Str, None),
    ("cassandra", "max_batches", K::Int, Some(r#"250"#)),
    (
        "cassandra",
        "max_definition_cache_size",
        K::Int,
        Some(r#"20000000"#),
    ),
    ("cassandra", "max_write_retries", K::Int, Some(r#"1"#)),
    ("cassandra", "password", K::Str, Some(r#""#)),
    ("cassandra", "port", K::Int, Some(r#"8086"#)),
    ("cassandra", "read_timeout", K::Int, Some(r#"60"#)),
    ("cassandra", "retention_policy", K::Int, Some(r#"45"#)),
    ("cassandra", "user", K::Str, Some(r#""#)),
    (
        "elasticsearch",
        "hosts",
        K::HostPortList,
        Some(r#"localhost:9200"#),
    ),
    ("elasticsearch", "index_name", K::Str, Some(r#"events"#)),
    ("elasticsearch", "max_retries", K::Int, Some(r#"3"#)),
    (
        "elasticsearch",
        "sniff_on_connection_fail",
        K::Bool,
        Some(r#"False"#),
    ),
    ("elasticsearch", "sniff_on_start", K::Bool, Some(r#"False"#)),
    ("elasticsearch", "sniffer_timeout", K::Int, None),
    ("influxdb", "batch_size", K::Int, Some(r#"10000"#)),
    ("influxdb", "database_name", K::Str, Some(r#"mon"#)),
    ("influxdb", "db_per_tenant", K::Bool, Some(r#"False"#)),
    ("influxdb", "default_retention_hours", K::Int, Some(r#"0"#)),
    ("influxdb", "ip_address", K::Host, None),
    ("influxdb", "password", K::Str, None),
    ("influxdb", "port", K::Port, Some(r#"8086"#)),
    ("influxdb", "ssl", K::Bool, Some(r#"False"#)),
    ("influxdb", "user", K::Str, Some(r#"mon_persister"#)),
    ("influxdb", "verify_ssl", K::Bool, Some(r#"False"#)),
    (
        "kafka",
        "buffer_size",
        K::Int,
        Some(r#"$kafka.fetch_size_bytes"#),
    ),
    ("kafka", "client_id", K::Str, Some(r#"monasca-persister"#)),
    ("kafka", "consumer_id", K::Str, Some(r#"monasca-persister"#)),
    ("kafka", "fetch_size_bytes", K::Int, Some(r#"4096"#)),
    (
        "kafka",
        "legacy_kafka_client_enabled",
        K::Bool,
        Some(r#"False"#),
    ),
    ("kafka", "max_buffer_size", K::Int, Some(r#"32768"#)),
    ("kafka", "max_wait_time_seconds", K::Int, Some(r#"30"#)),
    ("kafka", "num_processors", K::Int, Some(r#"1"#)),
    ("kafka_alarm_history", "batch_size", K::Int, Some(r#"1"#)),
    (
        "kafka_alarm_history",
        "buffer_size",
        K::Int,
        Some(r#"$kafka.buffer_size"#),
    ),
    (
        "kafka_alarm_history",
        "client_id",
        K::Str,
        Some(r#"$kafka.client_id"#),
    ),
    (
        "kafka_alarm_history",
        "consumer_id",
        K::Str,
        Some(r#"$kafka.consumer_id"#),
    ),
    ("kafka_alarm_history", "enabled", K::Bool, Some(r#"True"#)),
    (
        "kafka_alarm_history",
        "fetch_size_bytes",
        K::Int,
        Some(r#"$kafka.fetch_size_bytes"#),
    ),
    (
        "kafka_alarm_history",
        "group_id",
        K::Str,
        Some(r#"1_alarm-state-transitions"#),
    ),
    (
        "kafka_alarm_history",
        "legacy_kafka_client_enabled",
        K::Bool,
        Some(r#"$kafka.legacy_kafka_client_enabled"#),
    ),
    (
        "kafka_alarm_history",
        "max_buffer_size",
        K::Int,
        Some(r#"$kafka.max_buffer_size"#),
    ),
    (
        "kafka_alarm_history",
        "max_wait_time_seconds",
        K::Int,
        Some(r#"$kafka.max_wait_time_seconds"#),
    ),
    (
        "kafka_alarm_history",
        "num_processors",
        K::Int,
        Some(r#"$kafka.num_processors"#),
    ),
    (
        "kafka_alarm_history",
        "topic",
        K::Str,
        Some(r#"alarm-state-transitions"#),
    ),
    (
        "kafka_alarm_history",
        "uri",
        K::HostPortList,
        Some(r#"127.0.0.1:9092"#),
    ),
    (
        "kafka_alarm_history",
        "zookeeper_path",
        K::Str,
        Some(r#"/persister_partitions/$kafka_alarm_history.topic"#),
    ),
    ("kafka_events", "batch_size", K::Int, Some(r#"1"#)),
    (
        "kafka_events",
        "buffer_size",
        K::Int,
        Some(r#"$kafka.buffer_size"#),
    ),
    (
        "kafka_events",
        "client_id",
        K::Str,
        Some(r#"$kafka.client_id"#),
    ),
    (
        "kafka_events",
        "consumer_id",
        K::Str,
        Some(r#"$kafka.consumer_id"#),
    ),
    ("kafka_events", "enabled", K::Bool, Some(r#"False"#)),
    (
        "kafka_events",
        "fetch_size_bytes",
        K::Int,
        Some(r#"$kafka.fetch_size_bytes"#),
    ),
    ("kafka_events", "group_id", K::Str, Some(r#"1_events"#)),
    (
        "kafka_events",
        "legacy_kafka_client_enabled",
        K::Bool,
        Some(r#"$kafka.legacy_kafka_client_enabled"#),
    ),
    (
        "kafka_events",
        "max_buffer_size",
        K::Int,
        Some(r#"$kafka.max_buffer_size"#),
    ),
    (
        "kafka_events",
        "max_wait_time_seconds",
        K::Int,
        Some(r#"$kafka.max_wait_time_seconds"#),
    ),
    (
        "kafka_events",
        "num_processors",
        K::Int,
        Some(r#"$kafka.num_processors"#),
    ),
    ("kafka_events", "topic", K::Str, Some(r#"monevents"#)),
    (
        "kafka_events",
        "uri",
        K::HostPortList,
        Some(r#"127.0.0.1:9092"#),
    ),
    (
        "kafka_events",
        "zookeeper_path",
        K::Str,
        Some(r#"/persister_partitions/$kafka_events.topic"#),
    ),
    ("kafka_metrics", "batch_size", K::Int, Some(r#"20000"#)),
    (
        "kafka_metrics",
        "buffer_size",
        K::Int,
        Some(r#"$kafka.buffer_size"#),
    ),
    (
        "kafka_metrics",
        "client_id",
        K::Str,
        Some(r#"$kafka.client_id"#),
    ),
    (
        "kafka_metrics",
        "consumer_id",
        K::Str,
        Some(r#"$kafka.consumer_id"#),
    ),
    ("kafka_metrics", "enabled", K::Bool, Some(r#"True"#)),
    (
        "kafka_metrics",
        "fetch_size_bytes",
        K::Int,
        Some(r#"$kafka.fetch_size_bytes"#),
    ),
    ("kafka_metrics", "group_id", K::Str, Some(r#"1_metrics"#)),
    (
        "kafka_metrics",
        "legacy_kafka_client_enabled",
        K::Bool,
        Some(r#"$kafka.legacy_kafka_client_enabled"#),
    ),
    (
        "kafka_metrics",
        "max_buffer_size",
        K::Int,
        Some(r#"$kafka.max_buffer_size"#),
    ),
    (
        "kafka_metrics",
        "max_wait_time_seconds",
        K::Int,
        Some(r#"$kafka.max_wait_time_seconds"#),
    ),
    (
        "kafka_metrics",
        "num_processors",
        K::Int,
        Some(r#"$kafka.num_processors"#),
    ),
    ("kafka_metrics", "topic", K::Str, Some(r#"metrics"#)),
    (
        "kafka_metrics",
        "uri",
        K::HostPortList,
        Some(r#"127.0.0.1:9092"#),
    ),
    (
        "kafka_metrics",
        "zookeeper_path",
        K::Str,
        Some(r#"/persister_partitions/$kafka_metrics.topic"#),
    ),
    (
        "repositories",
        "alarm_state_history_driver",
        K::Str,
        Some(
            r#"monasca_persister.repositories.influxdb.alarm_state_history_repository:AlarmStateHistInfluxdbRepository"#,
        ),
    ),
    (
        "repositories",
        "events_driver",
        K::Str,
        Some(
            r#"monasca_persister.repositories.elasticsearch.events_repository:ElasticSearchEventsRepository"#,
        ),
    ),
    (
        "repositories",
        "ignore_parse_point_error",
        K::Bool,
        Some(r#"False"#),
    ),
    (
        "repositories",
        "metrics_driver",
        K::Str,
        Some(
            r#"monasca_persister.repositories.influxdb.metrics_repository:MetricInfluxdbRepository"#,
        ),
    ),
    (
        "zookeeper",
        "partition_interval_recheck_seconds",
        K::Int,
        Some(r#"15"#),
    ),
    (
        "zookeeper",
        "uri",
        K::HostPortList,
        Some(r#"127.0.0.1:2181"#),
    ),
];

/// Our own options, unknown to oslo.config; when absent the TOML schema's default applies.
const OURS: &[(&str, &str, K)] = &[
    ("kafka", "uri", K::Str),
    ("kafka", "group_instance_id", K::Str),
    ("kafka", "brokers_down_exit_seconds", K::Float),
    ("kafka", "dead_letter_topic", K::Str),
    ("kafka_metrics", "group_instance_id", K::Str),
    ("kafka_metrics", "dead_letter_topic", K::Str),
    ("kafka_alarm_history", "group_instance_id", K::Str),
    ("kafka_alarm_history", "dead_letter_topic", K::Str),
    ("influxdb", "api", K::Str),
    ("influxdb", "token", K::Str),
    ("influxdb", "org", K::Str),
    ("influxdb", "retention_policy", K::Str),
    ("influxdb", "max_body_bytes", K::Int),
    ("influxdb", "gzip", K::Bool),
    ("influxdb", "request_timeout_seconds", K::Float),
    ("influxdb", "max_in_flight", K::Int),
    ("influxdb", "pool_idle_timeout_seconds", K::Float),
    ("influxdb", "pool_max_idle", K::Int),
    ("influxdb", "retry_initial_ms", K::Int),
    ("influxdb", "retry_max_seconds", K::Float),
    ("influxdb", "line_protocol", K::Str),
    ("influxdb", "retention_hours_per_tenant", K::IntDict),
    ("influxdb", "max_points_per_second", K::Int),
    ("influxdb", "max_hourly_series_per_tenant", K::Int),
    ("persister", "policy", K::Str),
    ("persister", "max_message_bytes", K::Int),
    ("persister", "max_batches_in_flight", K::Int),
    ("persister", "shutdown_timeout_seconds", K::Float),
    ("persister", "log_level", K::Str),
    ("persister", "log_dir", K::Str),
    ("persister", "log_file", K::Str),
    ("persister", "admin_listen", K::Str),
    ("persister", "lag_interval_seconds", K::Float),
    ("persister", "ready_max_uncommitted_seconds", K::Float),
    ("persister", "ready_max_unreadable_seconds", K::Float),
    ("persister", "database_refused_seconds", K::Float),
];

/// Options oslo registers that we map one to one onto the same `[group] key`.
const MAPPED: &[(&str, &str)] = &[
    ("kafka_metrics", "enabled"),
    ("kafka_metrics", "uri"),
    ("kafka_metrics", "topic"),
    ("kafka_metrics", "group_id"),
    ("kafka_metrics", "batch_size"),
    ("kafka_metrics", "max_wait_time_seconds"),
    ("kafka_metrics", "num_processors"),
    ("kafka_alarm_history", "enabled"),
    ("kafka_alarm_history", "uri"),
    ("kafka_alarm_history", "topic"),
    ("kafka_alarm_history", "group_id"),
    ("kafka_alarm_history", "batch_size"),
    ("kafka_alarm_history", "max_wait_time_seconds"),
    ("kafka_alarm_history", "num_processors"),
    ("influxdb", "database_name"),
    ("influxdb", "db_per_tenant"),
    ("influxdb", "default_retention_hours"),
    ("influxdb", "batch_size"),
    ("influxdb", "ip_address"),
    ("influxdb", "port"),
    ("influxdb", "ssl"),
    ("influxdb", "verify_ssl"),
    ("influxdb", "user"),
    ("influxdb", "password"),
];

/// Groups whose options the Python persister reads at start-up (so oslo checks their values).
const READ_GROUPS: &[&str] = &[
    "DEFAULT",
    "kafka",
    "kafka_metrics",
    "kafka_alarm_history",
    "kafka_events",
    "influxdb",
    "repositories",
];

fn kind_of(group: &str, name: &str) -> Option<(K, bool)> {
    OSLO.iter()
        .find(|(g, n, _, _)| *g == group && *n == name)
        .map(|&(_, _, k, _)| (k, true))
        .or_else(|| {
            OURS.iter()
                .find(|(g, n, _)| *g == group && *n == name)
                .map(|&(_, _, k)| (k, false))
        })
}

fn group_known(group: &str) -> bool {
    OSLO.iter().any(|(g, ..)| *g == group) || OURS.iter().any(|(g, ..)| *g == group)
}

/// One `key = value` as read, with its file and line.
struct Entry {
    value: String,
    file: PathBuf,
    line: usize,
}

type Sections = BTreeMap<String, BTreeMap<String, Entry>>;

/// The mapped table, the file and line of each mapped key (`section.key`), and warnings to
/// log once.
type Mapped = (toml::Table, BTreeMap<String, (PathBuf, usize)>, Vec<String>);

/// A typed value, as oslo returns it.
#[derive(Clone, Debug, PartialEq)]
enum V {
    None,
    Str(String),
    Bool(bool),
    Int(i64),
    Float(f64),
    List(Vec<String>),
    IntDict(Vec<(String, i64)>),
}

impl V {
    /// As Python's `str()` renders it (what a `$reference` to it substitutes).
    fn py_str(&self) -> String {
        match self {
            V::None => String::new(),
            V::Str(s) => s.clone(),
            V::Bool(b) => if *b { "True" } else { "False" }.into(),
            V::Int(i) => i.to_string(),
            V::Float(f) => format!("{f:?}"),
            V::List(items) => {
                let quoted: Vec<String> = items.iter().map(|i| format!("'{i}'")).collect();
                format!("[{}]", quoted.join(", "))
            }
            V::IntDict(items) => {
                let pairs: Vec<String> = items.iter().map(|(k, v)| format!("'{k}': {v}")).collect();
                format!("{{{}}}", pairs.join(", "))
            }
        }
    }

    fn to_toml(&self) -> Option<toml::Value> {
        Some(match self {
            V::None => return None,
            V::Str(s) => toml::Value::String(s.clone()),
            V::Bool(b) => toml::Value::Boolean(*b),
            V::Int(i) => toml::Value::Integer(*i),
            V::Float(f) => toml::Value::Float(*f),
            V::List(items) => toml::Value::String(items.join(",")),
            V::IntDict(items) => toml::Value::Table(
                items
                    .iter()
                    .map(|(k, v)| (k.clone(), toml::Value::Integer(*v)))
                    .collect(),
            ),
        })
    }
}

/// Reads the files (later ones override earlier ones, key by key) and the `OS_*` environment.
struct Conf<'a> {
    sections: &'a Sections,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Conf<'_> {
    fn entry(&self, group: &str, name: &str) -> Option<&Entry> {
        self.sections.get(group).and_then(|s| s.get(name))
    }

    fn env_name(group: &str, name: &str) -> String {
        format!(
            "OS_{}__{}",
            group.to_ascii_uppercase(),
            name.to_ascii_uppercase()
        )
    }

    /// The raw value: environment, else file, else oslo's default; and whether it was set.
    fn raw(&self, group: &str, name: &str, is_oslo: bool) -> (Option<String>, bool) {
        if let Some(v) = (self.env)(&Self::env_name(group, name)) {
            return (Some(v), true);
        }
        if let Some(e) = self.entry(group, name) {
            return (Some(e.value.clone()), true);
        }
        let default = if is_oslo {
            OSLO.iter()
                .find(|(g, n, _, _)| *g == group && *n == name)
                .and_then(|&(_, _, _, d)| d.map(str::to_owned))
        } else {
            None
        };
        (default, false)
    }

    /// The typed value of a registered option and whether it was set (file or environment).
    fn get(&self, group: &str, name: &str, depth: usize) -> Result<(V, bool), String> {
        let Some((kind, is_oslo)) = kind_of(group, name) else {
            return Err(format!("no such option {name} in group [{group}]"));
        };
        if depth > 20 {
            return Err("references nest too deeply (a cycle?)".into());
        }
        let (raw, set) = self.raw(group, name, is_oslo);
        let Some(raw) = raw else {
            return Ok((V::None, set));
        };
        let text = self.substitute(&raw, group, depth)?;
        Ok((convert(&text, kind)?, set))
    }

    /// oslo's `string.Template.safe_substitute` with its option lookup.
    fn substitute(&self, value: &str, group: &str, depth: usize) -> Result<String, String> {
        if !value.contains('$') {
            return Ok(value.to_owned());
        }
        let value = value.replace("\\$", "$$");
        let mut out = String::with_capacity(value.len());
        let mut rest = value.as_str();
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(r) = rest.strip_prefix('$') {
                out.push('$');
                rest = r;
                continue;
            }
            let (braced, body) = match rest.strip_prefix('{') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let len = ident_len(body);
            if len == 0 || (braced && !body[len..].starts_with('}')) {
                // Not a placeholder: kept as written.
                out.push('$');
                continue;
            }
            let name = &body[..len];
            out.push_str(&self.lookup(name, group, depth)?.py_str());
            rest = &body[len + usize::from(braced)..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn lookup(&self, key: &str, group: &str, depth: usize) -> Result<V, String> {
        let found = match key.split_once('.') {
            Some((g, o)) => {
                if !group_known(g) {
                    return Err(format!("${key}: no such group [{g}]"));
                }
                if kind_of(g, o).is_some() {
                    self.get(g, o, depth + 1)
                } else {
                    self.get("DEFAULT", key, depth + 1)
                }
            }
            None if kind_of(group, key).is_some() => self.get(group, key, depth + 1),
            None => self.get("DEFAULT", key, depth + 1),
        };
        found.map(|(v, _)| v).map_err(|e| format!("${key}: {e}"))
    }
}

/// Length of oslo's placeholder name at the start of `s`: `[_a-z][._a-z0-9]*`, any case.
fn ident_len(s: &str) -> usize {
    let b = s.as_bytes();
    if b.is_empty() || !(b[0] == b'_' || b[0].is_ascii_alphabetic()) {
        return 0;
    }
    b.iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.'))
        .unwrap_or(b.len())
}

/// Converts as oslo's types do.
fn convert(raw: &str, kind: K) -> Result<V, String> {
    // oslo: an empty integer, port, host or number is unset; an empty boolean is refused.
    let typed_empty = !matches!(
        kind,
        K::Str | K::List | K::HostPortList | K::Bool | K::IntDict
    );
    if typed_empty && raw.is_empty() {
        return Ok(V::None);
    }
    Ok(match kind {
        K::Str => V::Str(raw.to_owned()),
        K::Bool => match raw.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => V::Bool(true),
            "false" | "no" | "off" | "0" => V::Bool(false),
            _ => return Err(format!("{raw:?} is not a boolean (true/false)")),
        },
        K::Int => V::Int(int(raw)?),
        K::Port => V::Int(port(raw)?),
        K::Float => V::Float(
            raw.trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| format!("{raw:?} is not a number"))?,
        ),
        K::Host => V::Str(host(raw)?),
        K::List => V::List(list(raw)),
        K::HostPortList => V::List(
            list(raw)
                .iter()
                .map(|item| {
                    let parts: Vec<&str> = item.split(':').collect();
                    match parts.as_slice() {
                        [h, p] => Ok(format!("{}:{}", host(h)?, port(p)?)),
                        _ => Err(format!("{item:?} is not host:port")),
                    }
                })
                .collect::<Result<_, String>>()?,
        ),
        K::IntDict => V::IntDict(
            list(raw)
                .iter()
                .map(|item| match item.split_once(':') {
                    Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), int(v)?)),
                    _ => Err(format!("{item:?} is not key:value")),
                })
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// As Python's `int()`: surrounding blanks, a sign, leading zeros and single `_` between
/// digits are fine.
fn int(raw: &str) -> Result<i64, String> {
    let t = raw.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    let ok = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.bytes().all(|c| c.is_ascii_digit() || c == b'_');
    ok.then(|| t.replace('_', "").parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| format!("{raw:?} is not an integer"))
}

fn port(raw: &str) -> Result<i64, String> {
    let p = int(raw)?;
    if (0..=65535).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{raw:?} is not a port (0 to 65535)"))
    }
}

/// An IP address or an RFC 1123 host name, as oslo's `HostAddress`.
fn host(raw: &str) -> Result<String, String> {
    if raw.parse::<std::net::IpAddr>().is_ok() {
        return Ok(raw.to_owned());
    }
    let name = raw.strip_suffix('.').unwrap_or(raw);
    let labels: Vec<&str> = name.split('.').collect();
    let ok = !name.is_empty()
        && name.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
        && !labels
            .last()
            .is_some_and(|l| l.bytes().all(|c| c.is_ascii_digit()));
    if ok {
        // oslo drops the trailing dot.
        Ok(name.to_owned())
    } else {
        Err(format!("{raw:?} is not a valid host address"))
    }
}

fn list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses the files and maps them onto a TOML table for the TOML schema, reading
/// `OS_<GROUP>__<OPTION>` variables through `env`. Also returns the line of every mapped key
/// (`section.key`) and the warnings to log once.
pub(super) fn to_toml(
    files: &[(PathBuf, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Mapped, ConfigError> {
    let mut sections = Sections::new();
    for (path, text) in files {
        parse(path, text, &mut sections).map_err(|(line, m)| ConfigError {
            file: path.clone(),
            line: Some(line),
            key: String::new(),
            message: m,
        })?;
    }
    let first = files.first().map(|f| f.0.clone()).unwrap_or_default();
    let conf = Conf {
        sections: &sections,
        env,
    };
    let err_at = |group: &str, name: &str, message: String| {
        let (file, line) = conf
            .entry(group, name)
            .map_or((first.clone(), None), |e| (e.file.clone(), Some(e.line)));
        let env = Conf::env_name(group, name);
        // Never a fragment of a secret in an error.
        let message = if ["password", "token"].contains(&name) {
            "cannot be resolved: a `$` followed by a name is a reference to an option (write \
             `$$` for a `$`)"
                .to_owned()
        } else {
            message
        };
        let message = if env_is_set(&conf, &env) {
            format!("(from ${env}) {message}")
        } else {
            message
        };
        ConfigError {
            file,
            line,
            key: format!("{group}.{name}"),
            message,
        }
    };
    let get =
        |group: &str, name: &str| conf.get(group, name, 0).map_err(|m| err_at(group, name, m));

    // What the Python persister reads, oslo checks: so do we, in file order.
    for (section, entries) in &sections {
        for key in entries.keys() {
            let read = READ_GROUPS.contains(&section.as_str()) || section == "persister";
            if read && kind_of(section, key).is_some() {
                get(section, key)?;
            }
        }
    }

    let mut table = toml::Table::new();
    let mut lines = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut put = |target: &str, key: &str, value: toml::Value, from: (&str, &str)| {
        if let toml::Value::Table(t) = table
            .entry(target)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            t.insert(key.to_owned(), value);
        }
        if let Some(e) = conf.entry(from.0, from.1) {
            lines.insert(format!("{target}.{key}"), (e.file.clone(), e.line));
        }
    };

    for &(group, name) in MAPPED {
        let (v, set) = get(group, name)?;
        if name == "uri" && !set {
            // Unset: ours falls back to `[kafka] uri` (default the same 127.0.0.1:9092).
            continue;
        }
        let v = match (name, v) {
            // oslo's integer seconds; ours take fractions.
            ("max_wait_time_seconds", V::Int(i)) => V::Float(i as f64),
            // A negative count is nothing oslo refuses, nor anything we can use.
            (_, V::Int(i)) if i < 0 => {
                return Err(err_at(
                    group,
                    name,
                    format!("{i} is negative (the Python persister cannot use it either)"),
                ));
            }
            (_, v) => v,
        };
        if name == "num_processors" && v == V::Int(0) {
            // The Python persister starts no process for a pipeline with 0 processors.
            put(group, "enabled", toml::Value::Boolean(false), (group, name));
            continue;
        }
        if let Some(value) = v.to_toml() {
            put(group, name, value, (group, name));
        }
    }
    for &(group, name, _) in OURS {
        let (v, set) = get(group, name)?;
        // Our `[kafka] uri` is a string (so `$kafka.uri` substitutes it as written), yet a
        // list when used: items continued over lines are joined by `,` as oslo's lists.
        let v = match (group, name, v) {
            ("kafka", "uri", V::Str(s)) => V::Str(list(&s).join(",")),
            (_, _, v) => v,
        };
        if set && let Some(value) = v.to_toml() {
            put(group, name, value, (group, name));
        }
    }
    // oslo.log: a logging config file replaces `debug`, `log_dir` and `log_file`.
    let appended = match get("DEFAULT", "log_config_append")? {
        (V::Str(path), true) if !path.is_empty() => {
            let logging = super::pylog::read(Path::new(&path)).map_err(|m| {
                err_at(
                    "DEFAULT",
                    "log_config_append",
                    format!("{path}: {m} (Python's logging.config.fileConfig refuses it too)"),
                )
            })?;
            Some((path, logging))
        }
        _ => None,
    };
    let (level, dir, file) = match &appended {
        Some((_, l)) => (
            Some(l.level.to_owned()),
            Some(String::new()),
            Some(
                l.file
                    .as_ref()
                    .map_or(String::new(), |f| f.display().to_string()),
            ),
        ),
        None => (
            (get("DEFAULT", "debug")?.0 == V::Bool(true)).then(|| "debug".to_owned()),
            match get("DEFAULT", "log_dir")? {
                (V::Str(dir), true) => Some(dir),
                _ => None,
            },
            match get("DEFAULT", "log_file")? {
                (V::Str(f), true) => Some(f),
                _ => None,
            },
        ),
    };
    let from = |name: &'static str| {
        if appended.is_some() {
            ("DEFAULT", "log_config_append")
        } else {
            ("DEFAULT", name)
        }
    };
    for (key, value, name) in [
        ("log_level", level, "debug"),
        ("log_dir", dir, "log_dir"),
        ("log_file", file, "log_file"),
    ] {
        if let Some(value) = value
            && conf.entry("persister", key).is_none()
        {
            put("persister", key, toml::Value::String(value), from(name));
        }
    }
    if let Some((path, l)) = &appended {
        let e = conf.entry("DEFAULT", "log_config_append");
        let mut w = format!(
            "{}:{}: DEFAULT.log_config_append = {path}: logging at level {} to {}, as its root \
             logger; DEFAULT.debug, log_dir and log_file are ignored, as oslo.log ignores them",
            e.map_or(first.display().to_string(), |e| e
                .file
                .display()
                .to_string()),
            e.map_or(0, |e| e.line),
            l.level,
            l.file
                .as_ref()
                .map_or("standard output only".to_owned(), |f| {
                    format!("standard output and {}", f.display())
                }),
        );
        if !l.not_applied.is_empty() {
            w.push_str("; not applied: ");
            w.push_str(&l.not_applied.join("; "));
        }
        warnings.push(w);
    }

    if let Some(props) = sections.get("kafka_properties") {
        // oslo never reads this group: values are taken as written (no `$` references).
        let t: toml::Table = props
            .iter()
            .map(|(k, e)| (k.clone(), toml::Value::String(e.value.clone())))
            .collect();
        if let toml::Value::Table(k) = table
            .entry("kafka")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            k.insert("properties".into(), toml::Value::Table(t));
        }
    }
    for name in ["metrics_driver", "alarm_state_history_driver"] {
        if let (V::Str(raw), true) = get("repositories", name)?
            && !raw.to_ascii_lowercase().contains("influx")
        {
            return Err(err_at(
                "repositories",
                name,
                format!("{raw:?}: this persister writes to InfluxDB only"),
            ));
        }
    }
    if let (V::Bool(true), true) = get("kafka_events", "enabled")? {
        let e = conf.entry("kafka_events", "enabled");
        warnings.push(format!(
            "{}:{}: kafka_events.enabled: events are not persisted by this persister (Elasticsearch only); ignored",
            e.map_or(first.display().to_string(), |e| e.file.display().to_string()),
            e.map_or(0, |e| e.line)
        ));
    }
    let mut unused = Vec::new();
    for (section, entries) in &sections {
        for (key, e) in entries {
            let used = MAPPED.contains(&(section.as_str(), key.as_str()))
                || OURS.iter().any(|(g, n, _)| g == section && n == key)
                || section == "kafka_properties"
                // The pipelines' defaults.
                || (section == "kafka"
                    && ["num_processors", "max_wait_time_seconds"].contains(&key.as_str()))
                || (section == "DEFAULT"
                    && ["debug", "log_dir", "log_file", "log_config_append"].contains(&key.as_str()))
                || (section == "repositories" && key.ends_with("_driver") && key != "events_driver")
                || (section == "kafka_events" && key == "enabled");
            if !used {
                unused.push(format!("{section}.{key} (line {})", e.line));
            }
        }
    }
    if !unused.is_empty() {
        warnings.push(format!(
            "{}: options not used by this persister (ignored): {}",
            first.display(),
            unused.join(", ")
        ));
    }
    Ok((table, lines, warnings))
}

fn env_is_set(conf: &Conf<'_>, name: &str) -> bool {
    (conf.env)(name).is_some()
}

/// Adds the sections of one file (oslo's iniparser rules). Errors carry the line.
fn parse(path: &Path, text: &str, sections: &mut Sections) -> Result<(), (usize, String)> {
    let mut current: Option<String> = None;
    // The option being read (continuation lines extend it) and its lines so far.
    let mut pending: Option<(String, usize, Vec<String>)> = None;
    let flush = |current: &Option<String>,
                 pending: &mut Option<(String, usize, Vec<String>)>,
                 sections: &mut Sections| {
        if let (Some(s), Some((key, line, value))) = (current, pending.take()) {
            sections.entry(s.clone()).or_default().insert(
                key,
                Entry {
                    value: value.join("\n"),
                    file: path.to_owned(),
                    line,
                },
            );
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim_end();
        if l.is_empty() {
            // A blank line ends a multi-line value.
            flush(&current, &mut pending, sections);
            continue;
        }
        if l.starts_with([' ', '\t']) {
            match &mut pending {
                Some((_, _, value)) => {
                    value.push(l.trim_start().to_owned());
                    continue;
                }
                None => return Err((line, format!("unexpected continuation line: {l:?}"))),
            }
        }
        flush(&current, &mut pending, sections);
        if l.starts_with('[') {
            let name = l
                .strip_suffix(']')
                .ok_or_else(|| (line, format!("invalid section (must end with ]): {l:?}")))?;
            let name = &name[1..];
            if name.is_empty() {
                return Err((line, "empty section name".into()));
            }
            let name = if name == "DEFAULT" {
                name.to_owned()
            } else {
                name.to_lowercase()
            };
            sections.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        if l.starts_with(['#', ';']) {
            continue;
        }
        let split = l
            .find(['=', ':'])
            .ok_or_else(|| (line, format!("no ':' or '=' found in assignment: {l:?}")))?;
        let key = l[..split].trim();
        if key.is_empty() {
            return Err((line, "empty option name".into()));
        }
        if current.is_none() {
            return Err((line, format!("option before any [section]: {l:?}")));
        }
        let mut value = l[split + 1..].trim();
        let b = value.as_bytes();
        if !b.is_empty() && (b[0] == b'"' || b[0] == b'\'') && b[0] == b[b.len() - 1] {
            // Python's value[1:-1]: a lone quote becomes empty.
            value = value.get(1..value.len() - 1).unwrap_or("");
        }
        pending = Some((key.to_owned(), line, vec![value.to_owned()]));
    }
    flush(&current, &mut pending, sections);
    Ok(())
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
batch_size = $kafka.fetch_size_bytes
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
            c.kafka_metrics.batch_size, 4096,
            "$kafka.fetch_size_bytes: a reference to an option's oslo default"
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
    fn retention_per_tenant_is_read_as_an_oslo_dict() {
        let c = load(&write(
            "retention.conf",
            "[influxdb]\ndb_per_tenant = True\nretention_hours_per_tenant = gold:720, free : 0,abc-123:24\n",
        ))
        .unwrap()
        .config;
        let want: std::collections::BTreeMap<String, u32> =
            [("gold", 720), ("free", 0), ("abc-123", 24)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
        assert_eq!(c.influxdb.retention_hours_per_tenant, want);
        let e = load(&write(
            "retention-bad.conf",
            "[influxdb]\ndb_per_tenant = True\nretention_hours_per_tenant = gold=720\n",
        ))
        .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(3), "influxdb.retention_hours_per_tenant")
        );
        assert!(
            e.to_string().contains("\"gold=720\" is not key:value"),
            "{e}"
        );
        let e = load(&write(
            "retention-shared.conf",
            "[influxdb]\nretention_hours_per_tenant = gold:720\n",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("needs db_per_tenant = true"), "{e}");
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
        let e = load(&write("zero.conf", "[kafka_metrics]\n\nbatch_size = 0\n")).unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(3), "kafka_metrics.batch_size")
        );
    }

    #[test]
    fn num_processors_zero_disables_the_pipeline() {
        let c = load(&write(
            "zero-procs.conf",
            "[kafka_alarm_history]\nnum_processors = 0\n",
        ))
        .unwrap()
        .config;
        assert!(!c.kafka_alarm_history.enabled && c.kafka_metrics.enabled);
    }

    #[test]
    fn reference_to_an_unregistered_option_is_refused_as_oslo_does() {
        let e = load(&write(
            "unreg.conf",
            "[kafka]\nbatch_size = 5\n[kafka_metrics]\nbatch_size = $kafka.batch_size\n",
        ))
        .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(4), "kafka_metrics.batch_size")
        );
    }

    #[test]
    fn environment_overrides_the_files_and_later_files_override_earlier_ones() {
        let a = write("a.conf", "[influxdb]\nport = 1\ndatabase_name = a\n");
        let b = write("b.conf", "[influxdb]\nport = 2\n");
        let env = |n: &str| (n == "OS_INFLUXDB__DATABASE_NAME").then(|| "env".to_owned());
        let c = super::super::load_all(&[a.clone(), b.clone()], &env)
            .unwrap()
            .config;
        assert_eq!(
            (c.influxdb.port, c.influxdb.database_name.as_str()),
            (2, "env")
        );
        let c = super::super::load_all(&[b, a], &|_| None).unwrap().config;
        assert_eq!(
            (c.influxdb.port, c.influxdb.database_name.as_str()),
            (1, "a")
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
        assert_eq!(c.kafka.uri, "a:1,b:2");
    }
}
