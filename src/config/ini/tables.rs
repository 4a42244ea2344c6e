//! Which INI options exist and what becomes of them: the option types, our own options, the
//! oslo options mapped one to one onto the TOML schema, the groups the Python persister reads,
//! and which options are used at all.
//!
//! Owns the correspondence between INI options and TOML keys (with `oslo` for oslo's own
//! options). Must never read a file or a value: it is tables and look-ups only.

use super::oslo::OSLO;

/// Option types, as oslo.config's (`Float` is ours only).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum K {
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

/// Our own options, unknown to oslo.config; when absent the TOML schema's default applies.
pub(super) const OURS: &[(&str, &str, K)] = &[
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
    ("influxdb", "tenants", K::List),
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
pub(super) const MAPPED: &[(&str, &str)] = &[
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

/// oslo.log's `[DEFAULT]` options and the `[persister]` key each sets (unless that key is set
/// itself); a `log_config_append` file sets all three instead.
pub(super) const LOGGING: &[(&str, &str)] = &[
    ("debug", "log_level"),
    ("log_dir", "log_dir"),
    ("log_file", "log_file"),
];

/// The group whose options are librdkafka properties, taken as written: `kafka.properties`.
pub(super) const PROPERTIES_GROUP: &str = "kafka_properties";

/// TOML keys (`section.key`) that no INI option sets: an INI file always leaves them at their
/// default. A key of the TOML schema is either set by an option of the tables above or listed
/// here (the test below holds the two together).
#[cfg(test)]
const TOML_ONLY: &[&str] = &[];

/// A section `[destination:NAME]` is TOML's `[destinations.NAME]`: its options are
/// `[influxdb]`'s. oslo.config ignores a group nobody registers options for, so the Python
/// persister starts on a file that has them (and a `:` keeps `$group.option` references
/// unambiguous, as a `.` would not).
pub(super) const DESTINATION_PREFIX: &str = "destination:";

/// Groups whose options the Python persister reads at start-up (so oslo checks their values).
pub(super) const READ_GROUPS: &[&str] = &[
    "DEFAULT",
    "kafka",
    "kafka_metrics",
    "kafka_alarm_history",
    "kafka_events",
    "influxdb",
    "repositories",
];

/// The type of a registered option, and whether oslo registers it (else it is ours).
pub(super) fn kind_of(group: &str, name: &str) -> Option<(K, bool)> {
    OSLO.iter()
        .find(|(g, n, _, _)| *g == group && *n == name)
        .map(|&(_, _, k, _)| (k, true))
        .or_else(|| {
            OURS.iter()
                .find(|(g, n, _)| *g == group && *n == name)
                .map(|&(_, _, k)| (k, false))
        })
}

/// Whether a group has any registered option.
pub(super) fn group_known(group: &str) -> bool {
    OSLO.iter().any(|(g, ..)| *g == group) || OURS.iter().any(|(g, ..)| *g == group)
}

/// Whether the persister uses `[section] key` (else it is reported once as ignored).
pub(super) fn used(section: &str, key: &str) -> bool {
    MAPPED.contains(&(section, key))
        || OURS.iter().any(|(g, n, _)| *g == section && *n == key)
        || section == PROPERTIES_GROUP
        // Every key of a destination's section is checked to be an `[influxdb]` one.
        || section.starts_with(DESTINATION_PREFIX)
        // The pipelines' defaults.
        || (section == "kafka" && ["num_processors", "max_wait_time_seconds"].contains(&key))
        || (section == "DEFAULT"
            && (key == "log_config_append" || LOGGING.iter().any(|(n, _)| *n == key)))
        || (section == "repositories" && key.ends_with("_driver") && key != "events_driver")
        || (section == "kafka_events" && key == "enabled")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::config::{Config, InfluxConfig, KafkaConfig, PersisterConfig, pipeline_defaults};
    use crate::convert::Kind;

    /// Every `section.key` of the TOML schema, as serde writes a `Config` (maps such as
    /// `kafka.properties` are one key: their own keys are data).
    fn schema_keys() -> BTreeSet<String> {
        let config = Config {
            kafka: KafkaConfig::default(),
            kafka_metrics: pipeline_defaults(Kind::Metrics),
            kafka_alarm_history: pipeline_defaults(Kind::Alarms),
            influxdb: InfluxConfig::default(),
            destinations: Vec::new(),
            persister: PersisterConfig::default(),
        };
        let toml::Value::Table(top) = toml::Value::try_from(&config).unwrap() else {
            panic!("a Config serializes as a table");
        };
        let mut keys = BTreeSet::new();
        for (section, value) in top {
            let toml::Value::Table(t) = value else {
                panic!("[{section}] serializes as a table");
            };
            keys.extend(t.keys().map(|k| format!("{section}.{k}")));
        }
        keys
    }

    /// The TOML key each INI option of the tables sets, with the option.
    fn ini_targets() -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut add = |option: String, target: String| out.push((option, target));
        for &(g, n) in MAPPED {
            add(format!("[{g}] {n}"), format!("{g}.{n}"));
        }
        // `num_processors = 0` disables the pipeline.
        for &(g, n) in MAPPED.iter().filter(|(_, n)| *n == "num_processors") {
            add(format!("[{g}] {n}"), format!("{g}.enabled"));
        }
        for &(g, n, _) in OURS {
            add(format!("[{g}] {n}"), format!("{g}.{n}"));
        }
        for &(n, key) in LOGGING {
            add(format!("[DEFAULT] {n}"), format!("persister.{key}"));
        }
        add(format!("[{PROPERTIES_GROUP}]"), "kafka.properties".into());
        out
    }

    #[test]
    fn every_toml_key_is_set_by_an_ini_option_or_listed_as_toml_only() {
        let targets: BTreeSet<String> = ini_targets().into_iter().map(|(_, t)| t).collect();
        for key in schema_keys() {
            let only = TOML_ONLY.contains(&key.as_str());
            assert!(
                targets.contains(&key) || only,
                "{key}: no INI option sets it; map one in config/ini/tables.rs or list it in \
                 TOML_ONLY"
            );
            assert!(
                !(targets.contains(&key) && only),
                "{key}: an INI option sets it, yet it is listed in TOML_ONLY"
            );
        }
        for key in TOML_ONLY {
            assert!(schema_keys().contains(*key), "TOML_ONLY {key}: no such key");
        }
    }

    #[test]
    fn every_ini_option_sets_a_key_of_the_toml_schema() {
        let schema = schema_keys();
        for (option, target) in ini_targets() {
            assert!(
                schema.contains(&target),
                "{option} sets {target}, which the TOML schema does not have"
            );
        }
    }
}
