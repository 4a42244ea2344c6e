//! Reading configuration files: which syntax a file is in, TOML parsing with the line and key
//! of an error, INI files (through `ini`) combined as oslo.config combines them, the
//! section-dependent defaults, validation, and the warnings to log once.
//!
//! Owns the way from file names to a validated [`Config`]. Must never: accept a file that
//! does not validate, or put a password or token in an error or a warning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    Config, ConfigError, InfluxConfig, KafkaConfig, PersisterConfig, PipelineConfig, destinations,
    ini, is_secret_property, pipeline_defaults,
};
use crate::convert::Kind;

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
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ConfigError::whole_file(dir.to_owned(), format!("cannot read the --config-dir: {e}"))
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
        return Err(ConfigError::whole_file(
            PathBuf::new(),
            "no configuration file".into(),
        ));
    };
    let path = path.as_path();
    let err = |message: String| ConfigError::whole_file(path.to_owned(), message);
    let mut texts = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(p)
            .map_err(|e| ConfigError::whole_file(p.clone(), format!("cannot read: {e}")))?;
        texts.push((p.clone(), text));
    }
    let text = &texts[texts.len() - 1].1;
    let mut warnings = Vec::new();
    let (file, lines, raw) = match detect_format(path, text) {
        Format::Toml if paths.len() == 1 => {
            let file = parse_toml(path, text)?;
            // It parsed as a `ConfigFile`, so as a table too.
            let raw = toml::from_str(text).map_err(|e| err(e.to_string()))?;
            (file, BTreeMap::new(), raw)
        }
        Format::Toml => {
            return Err(err(
                "a TOML configuration is one file; only INI (oslo.config) files combine".into(),
            ));
        }
        Format::Ini => {
            let (table, lines, w) = ini::to_toml(&texts, env)?;
            warnings.extend(w);
            let file = ConfigFile::deserialize(toml::Value::Table(table.clone()))
                .map_err(|e| err(e.to_string()))?;
            (file, lines, table)
        }
    };
    // A problem with a key, at its file and line when the INI mapping knows them.
    let at_key = |(key, message): (String, String)| {
        let at = lines.get(&key);
        ConfigError {
            file: at.map_or_else(|| path.to_owned(), |(f, _)| f.clone()),
            line: at.map(|(_, l)| *l),
            key,
            message,
        }
    };
    let config = Config {
        kafka: file.kafka,
        kafka_metrics: file.kafka_metrics.resolve(Kind::Metrics),
        kafka_alarm_history: file.kafka_alarm_history.resolve(Kind::Alarms),
        influxdb: file.influxdb,
        destinations: destinations::resolve(&raw_influxdb(&raw), &file.destinations)
            .map_err(at_key)?,
        persister: file.persister,
    };
    config.validate().map_err(at_key)?;
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
    /// `[destinations.NAME]`: partial `[influxdb]` tables, merged by `destinations::resolve`.
    #[serde(default)]
    destinations: toml::Table,
    #[serde(default)]
    persister: PersisterConfig,
}

/// The `[influxdb]` table of a file as written (empty when it has none).
fn raw_influxdb(file: &toml::Table) -> toml::Table {
    match file.get("influxdb") {
        Some(toml::Value::Table(t)) => t.clone(),
        _ => toml::Table::new(),
    }
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
        let has_secret = c
            .destinations()
            .any(|(_, i)| !i.password.is_empty() || !i.token.is_empty())
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

    const DESTINATIONS: &str = "[influxdb]\npassword = \"hunter2\"\ntenants = [\"a\"]\n\
        [destinations.b]\nip_address = \"10.0.0.2\"\ntoken = \"tok3n\"\n\
        [destinations.a-1]\ntenants = [\"b\", \"c\"]\n";

    #[test]
    fn destinations_come_after_influxdb_with_their_consumer_groups() {
        let c = load(&write("dest.toml", DESTINATIONS)).unwrap().config;
        let names: Vec<&str> = c.destinations().map(|(n, _)| n).collect();
        assert_eq!(names, ["influxdb", "a-1", "b"]);
        let groups: Vec<String> = c
            .destinations()
            .map(|(n, _)| c.group_id_for(&c.kafka_metrics, n))
            .collect();
        assert_eq!(groups, ["1_metrics", "1_metrics.a-1", "1_metrics.b"]);
        assert_eq!(
            c.group_id_for(&c.kafka_alarm_history, "b"),
            "1_alarm-state-transitions.b"
        );
        let routes = crate::config::Routes::of(&c);
        let decide = |t: &str| [0, 1, 2].map(|i| routes.decide(i, t));
        use crate::config::Route::{Skip, Unrouted, Write};
        assert_eq!(decide("a"), [Write, Skip, Write], "b inherits tenants");
        assert_eq!(decide("c"), [Skip, Write, Skip]);
        assert_eq!(decide("z"), [Unrouted, Skip, Skip]);
    }

    #[test]
    fn destination_errors_name_the_table_and_key() {
        let e = load(&write("dest-key.toml", "[destinations.b]\nportt = 1\n")).unwrap_err();
        assert_eq!(e.key, "destinations.b.portt");
        let e = load(&write("dest-name.toml", "[destinations.B]\n")).unwrap_err();
        assert!(e.to_string().contains("destinations.B: "), "{e}");
        let e = load(&write("dest-zero.toml", "[destinations.b]\nport = 0\n")).unwrap_err();
        assert_eq!(e.key, "destinations.b.port");
        let e = load(&write(
            "dest-tenant.toml",
            "[destinations.b]\ntenants = [\"\"]\n",
        ))
        .unwrap_err();
        assert_eq!(e.key, "destinations.b.tenants");
        let e = load(&write("tenant.toml", "[influxdb]\ntenants = [\" \"]\n")).unwrap_err();
        assert_eq!(e.key, "influxdb.tenants");
    }

    #[test]
    fn check_config_shows_destinations_without_their_secrets() {
        let c = load(&write("dest-secret.toml", DESTINATIONS))
            .unwrap()
            .config;
        let out = c.to_redacted_toml();
        assert!(!out.contains("hunter2") && !out.contains("tok3n"), "{out}");
        let shown: toml::Table = toml::from_str(&out).unwrap();
        let b = &shown["destinations"]["b"];
        assert_eq!(b["ip_address"].as_str(), Some("10.0.0.2"));
        assert_eq!(b["password"].as_str(), Some("***"));
        assert_eq!(b["token"].as_str(), Some("***"));
        assert_eq!(
            shown["destinations"]["a-1"]["tenants"][1].as_str(),
            Some("c")
        );
        let plain = load(&write("plain.toml", "")).unwrap().config;
        assert!(!plain.to_redacted_toml().contains("destinations"));
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
