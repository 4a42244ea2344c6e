//! The resolved options, rendered as the TOML schema's table: one step per concern (the
//! checks oslo makes, the options mapped one to one, ours, logging, librdkafka properties,
//! the repositories), in the order the Python persister meets them.
//!
//! Owns where each INI option lands in the TOML table, the file and line each mapped key came
//! from, and the warnings to log once. Must never: accept what oslo.config refuses, or quote a
//! password or token in an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::parse::{Sections, parse, section_name};
use super::resolve::{Conf, V, list};
use super::tables::{
    DESTINATION_PREFIX, LOGGING, MAPPED, OURS, PROPERTIES_GROUP, READ_GROUPS, kind_of, used,
};
use crate::config::ConfigError;
use crate::config::pylog::{self, PyLogging};

/// The mapped table, the file and line of each mapped key (`section.key`), and warnings to
/// log once.
type Mapped = (toml::Table, BTreeMap<String, (PathBuf, usize)>, Vec<String>);

/// Parses the files and maps them onto a TOML table for the TOML schema, reading
/// `OS_<GROUP>__<OPTION>` variables through `env`. Also returns the line of every mapped key
/// (`section.key`) and the warnings to log once.
pub(in crate::config) fn to_toml(
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
    let mut out = Render {
        conf: Conf {
            sections: &sections,
            env,
        },
        first: files.first().map(|f| f.0.clone()).unwrap_or_default(),
        table: toml::Table::new(),
        lines: BTreeMap::new(),
        warnings: Vec::new(),
    };
    out.check_read_groups()?;
    out.map_mapped()?;
    out.map_ours()?;
    out.map_destinations(files)?;
    out.map_logging()?;
    out.map_kafka_properties();
    out.check_repositories()?;
    out.warn_kafka_events()?;
    out.warn_unused();
    Ok((out.table, out.lines, out.warnings))
}

/// A value as the TOML schema takes it: `tenants` is a list, other lists are strings.
fn schema_value(name: &str, v: &V) -> Option<toml::Value> {
    match (name, v) {
        ("tenants", V::List(items)) => Some(toml::Value::Array(
            items.iter().cloned().map(toml::Value::String).collect(),
        )),
        _ => v.to_toml(),
    }
}

/// The file and line of the last `[section]` header naming `section`, if any.
fn header_line(files: &[(PathBuf, String)], section: &str) -> Option<(PathBuf, usize)> {
    files.iter().rev().find_map(|(path, text)| {
        let line = text.lines().position(|l| {
            let l = l.trim_end();
            l.starts_with('[') && section_name(l).is_ok_and(|n| n == section)
        })?;
        Some((path.clone(), line + 1))
    })
}

/// The table being built, and where its keys came from.
struct Render<'a> {
    conf: Conf<'a>,
    /// Where a problem without a line of its own is reported.
    first: PathBuf,
    table: toml::Table,
    lines: BTreeMap<String, (PathBuf, usize)>,
    warnings: Vec<String>,
}

impl Render<'_> {
    /// A problem with `[group] name`, at its line if it has one; never a fragment of a secret.
    fn err_at(&self, group: &str, name: &str, message: String) -> ConfigError {
        let (file, line) = self
            .conf
            .entry(group, name)
            .map_or((self.first.clone(), None), |e| {
                (e.file.clone(), Some(e.line))
            });
        let env = Conf::env_name(group, name);
        // Never a fragment of a secret in an error.
        let message = if ["password", "token"].contains(&name) {
            "cannot be resolved: a `$` followed by a name is a reference to an option (write \
             `$$` for a `$`)"
                .to_owned()
        } else {
            message
        };
        let message = if (self.conf.env)(&env).is_some() {
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
    }

    /// `file:line` of `[group] name` for a warning (the first file and 0 when it is unset).
    fn at(&self, group: &str, name: &str) -> String {
        let e = self.conf.entry(group, name);
        format!(
            "{}:{}",
            e.map_or(self.first.display().to_string(), |e| e
                .file
                .display()
                .to_string()),
            e.map_or(0, |e| e.line)
        )
    }

    /// The typed value of a registered option and whether it was set.
    fn get(&self, group: &str, name: &str) -> Result<(V, bool), ConfigError> {
        self.conf
            .get(group, name, 0)
            .map_err(|m| self.err_at(group, name, m))
    }

    /// The table `[name]` of the output.
    fn section(&mut self, name: &str) -> Option<&mut toml::Table> {
        match self
            .table
            .entry(name)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => Some(t),
            _ => None,
        }
    }

    /// Sets `target.key`, remembering the line of the INI option `from` it came from.
    fn put(&mut self, target: &str, key: &str, value: toml::Value, from: (&str, &str)) {
        if let Some(t) = self.section(target) {
            t.insert(key.to_owned(), value);
        }
        if let Some(e) = self.conf.entry(from.0, from.1) {
            let at = (e.file.clone(), e.line);
            self.lines.insert(format!("{target}.{key}"), at);
        }
    }

    /// What the Python persister reads, oslo checks: so do we, in file order.
    fn check_read_groups(&self) -> Result<(), ConfigError> {
        for (section, entries) in self.conf.sections {
            for key in entries.keys() {
                let read = READ_GROUPS.contains(&section.as_str()) || section == "persister";
                if read && kind_of(section, key).is_some() {
                    self.get(section, key)?;
                }
            }
        }
        Ok(())
    }

    /// The oslo options we map one to one.
    fn map_mapped(&mut self) -> Result<(), ConfigError> {
        for &(group, name) in MAPPED {
            let (v, set) = self.get(group, name)?;
            if name == "uri" && !set {
                // Unset: ours falls back to `[kafka] uri` (default the same 127.0.0.1:9092).
                continue;
            }
            let v = match (name, v) {
                // oslo's integer seconds; ours take fractions.
                ("max_wait_time_seconds", V::Int(i)) => V::Float(i as f64),
                // A negative count is nothing oslo refuses, nor anything we can use.
                (_, V::Int(i)) if i < 0 => {
                    return Err(self.err_at(
                        group,
                        name,
                        format!("{i} is negative (the Python persister cannot use it either)"),
                    ));
                }
                (_, v) => v,
            };
            if name == "num_processors" && v == V::Int(0) {
                // The Python persister starts no process for a pipeline with 0 processors.
                self.put(group, "enabled", toml::Value::Boolean(false), (group, name));
                continue;
            }
            if let Some(value) = v.to_toml() {
                self.put(group, name, value, (group, name));
            }
        }
        Ok(())
    }

    /// Our own options, where set.
    fn map_ours(&mut self) -> Result<(), ConfigError> {
        for &(group, name, _) in OURS {
            let (v, set) = self.get(group, name)?;
            // Our `[kafka] uri` is a string (so `$kafka.uri` substitutes it as written), yet a
            // list when used: items continued over lines are joined by `,` as oslo's lists.
            let v = match (group, name, v) {
                ("kafka", "uri", V::Str(s)) => V::Str(list(&s).join(",")),
                (_, _, v) => v,
            };
            if set && let Some(value) = schema_value(name, &v) {
                self.put(group, name, value, (group, name));
            }
        }
        Ok(())
    }

    /// `[destination:NAME]` sections become `[destinations.NAME]` tables: each option set is
    /// typed as `[influxdb]`'s (unset ones are inherited from it later).
    fn map_destinations(&mut self, files: &[(PathBuf, String)]) -> Result<(), ConfigError> {
        let sections = self.conf.sections;
        for (section, entries) in sections {
            let Some(name) = section.strip_prefix(DESTINATION_PREFIX) else {
                continue;
            };
            if !crate::config::destinations::valid_name(name) {
                let (file, line) = header_line(files, section)
                    .map_or((self.first.clone(), None), |(f, l)| (f, Some(l)));
                return Err(ConfigError {
                    file,
                    line,
                    key: format!("[{section}]"),
                    message: format!("{name:?}: a destination's name is [a-z0-9_-]+"),
                });
            }
            let mut table = toml::Table::new();
            for (key, e) in entries {
                if kind_of("influxdb", key).is_none() {
                    return Err(ConfigError {
                        file: e.file.clone(),
                        line: Some(e.line),
                        key: format!("{section}.{key}"),
                        message: "unknown option (a destination takes the options of \
                                  [influxdb])"
                            .into(),
                    });
                }
                let (v, _) = self
                    .conf
                    .get_as(section, key, "influxdb", 0)
                    .map_err(|m| self.err_at(section, key, m))?;
                if let Some(value) = schema_value(key, &v) {
                    table.insert(key.clone(), value);
                }
                let at = (e.file.clone(), e.line);
                self.lines.insert(format!("destinations.{name}.{key}"), at);
            }
            if let Some(t) = self.section("destinations") {
                t.insert(name.to_owned(), toml::Value::Table(table));
            }
        }
        Ok(())
    }

    /// oslo.log: a logging config file replaces `debug`, `log_dir` and `log_file`.
    fn map_logging(&mut self) -> Result<(), ConfigError> {
        let appended = self.log_config_append()?;
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
                (self.get("DEFAULT", "debug")?.0 == V::Bool(true)).then(|| "debug".to_owned()),
                match self.get("DEFAULT", "log_dir")? {
                    (V::Str(dir), true) => Some(dir),
                    _ => None,
                },
                match self.get("DEFAULT", "log_file")? {
                    (V::Str(f), true) => Some(f),
                    _ => None,
                },
            ),
        };
        // In the order of LOGGING: debug, log_dir, log_file.
        for (&(name, key), value) in LOGGING.iter().zip([level, dir, file]) {
            let from = if appended.is_some() {
                ("DEFAULT", "log_config_append")
            } else {
                ("DEFAULT", name)
            };
            if let Some(value) = value
                && self.conf.entry("persister", key).is_none()
            {
                self.put("persister", key, toml::Value::String(value), from);
            }
        }
        if let Some((path, l)) = &appended {
            self.warn_log_config_append(path, l);
        }
        Ok(())
    }

    /// The logging config file `[DEFAULT] log_config_append` names, read, if it is set.
    fn log_config_append(&self) -> Result<Option<(String, PyLogging)>, ConfigError> {
        Ok(match self.get("DEFAULT", "log_config_append")? {
            (V::Str(path), true) if !path.is_empty() => {
                let logging = pylog::read(Path::new(&path)).map_err(|m| {
                    self.err_at(
                        "DEFAULT",
                        "log_config_append",
                        format!("{path}: {m} (Python's logging.config.fileConfig refuses it too)"),
                    )
                })?;
                Some((path, logging))
            }
            _ => None,
        })
    }

    fn warn_log_config_append(&mut self, path: &str, l: &PyLogging) {
        let mut w = format!(
            "{}: DEFAULT.log_config_append = {path}: logging at level {} to {}, as its root \
             logger; DEFAULT.debug, log_dir and log_file are ignored, as oslo.log ignores them",
            self.at("DEFAULT", "log_config_append"),
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
        self.warnings.push(w);
    }

    /// `[kafka_properties]` becomes `kafka.properties`.
    fn map_kafka_properties(&mut self) {
        if let Some(props) = self.conf.sections.get(PROPERTIES_GROUP) {
            // oslo never reads this group: values are taken as written (no `$` references).
            let t: toml::Table = props
                .iter()
                .map(|(k, e)| (k.clone(), toml::Value::String(e.value.clone())))
                .collect();
            if let Some(k) = self.section("kafka") {
                k.insert("properties".into(), toml::Value::Table(t));
            }
        }
    }

    /// A repository that is not InfluxDB's is refused: this persister cannot write there.
    fn check_repositories(&self) -> Result<(), ConfigError> {
        for name in ["metrics_driver", "alarm_state_history_driver"] {
            if let (V::Str(raw), true) = self.get("repositories", name)?
                && !raw.to_ascii_lowercase().contains("influx")
            {
                return Err(self.err_at(
                    "repositories",
                    name,
                    format!("{raw:?}: this persister writes to InfluxDB only"),
                ));
            }
        }
        Ok(())
    }

    fn warn_kafka_events(&mut self) -> Result<(), ConfigError> {
        if let (V::Bool(true), true) = self.get("kafka_events", "enabled")? {
            let w = format!(
                "{}: kafka_events.enabled: events are not persisted by this persister (Elasticsearch only); ignored",
                self.at("kafka_events", "enabled")
            );
            self.warnings.push(w);
        }
        Ok(())
    }

    /// Every option set but not used, in one warning.
    fn warn_unused(&mut self) {
        let mut unused = Vec::new();
        for (section, entries) in self.conf.sections {
            for (key, e) in entries {
                if !used(section, key) {
                    unused.push(format!("{section}.{key} (line {})", e.line));
                }
            }
        }
        if !unused.is_empty() {
            self.warnings.push(format!(
                "{}: options not used by this persister (ignored): {}",
                self.first.display(),
                unused.join(", ")
            ));
        }
    }
}
