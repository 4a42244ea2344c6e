//! Differential test against oslo.config itself: every file of `tests/fixtures/oslo/*.conf` is
//! loaded by monasca-persister 9.0.0's option registrations under oslo.config 10.7.0
//! (`tests/python/oslo_dump.py`, in the virtualenv `scripts/python-reference` makes) and by our
//! binary (`--check-config`), and the values both resolve are compared option by option.
//! A file oslo refuses (dump exit 2) must be refused by us (exit 2, naming the file).
//! The corpus holds one file per reading rule, the generator's sample with every option set,
//! and renderings of devstack's, kolla-ansible's and the docker image's templates (their
//! first line names the source and commit).
//!
//! A fixture's `# env: NAME=VALUE` lines set environment variables for both (every other
//! `OS_*` variable is removed).
//!
//! Mapping, oslo `[group] option` → our effective configuration (`--check-config` TOML):
//!
//! | oslo                                   | ours                                              |
//! |----------------------------------------|---------------------------------------------------|
//! | `kafka_metrics.enabled`, `.num_processors` | pipeline runs iff `enabled and num_processors > 0` ↔ `kafka_metrics.enabled`; when it runs, `num_processors` equal |
//! | `kafka_metrics.uri` (list)             | `kafka_metrics.uri`, else `kafka.uri`, joined by `,` |
//! | `kafka_metrics.topic`, `.group_id`, `.batch_size`, `.max_wait_time_seconds` | same keys (seconds compared as numbers) |
//! | the same for `kafka_alarm_history`     | the same                                          |
//! | `influxdb.database_name`, `.db_per_tenant`, `.default_retention_hours`, `.batch_size`, `.ip_address`, `.port`, `.ssl`, `.verify_ssl`, `.user` | same keys |
//! | `influxdb.password`                    | `load_all(..).influxdb.password.expose()` (the library; `--check-config` shows `***` iff non-empty, never the value) |
//! | root logger's level after oslo.log's `setup` (`debug`, or `log_config_append`'s file) | `persister.log_level` (CRITICAL → `error`, NOTSET → `debug`) |
//! | the file its first file handler writes to (`log_dir`, `log_file`, or `log_config_append`'s file handler), absolute | `persister.log_path()`, made absolute |
//!
//! Allowed differences (ALLOWED below), each with its reason.
//!
//! Stricter than oslo on purpose (so not in the corpus): values oslo accepts but the Python
//! persister could not use either are refused by our validation: negative counts, a
//! `batch_size` of 0, an empty `database_name` or `topic`, both pipelines disabled. Our own
//! options (`[kafka] uri`, `[persister]`, …) are unknown to oslo: a file using them is ours
//! only (oslo refuses `$kafka.uri`: no such option).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as J;

/// (oslo option, oslo value, our value, reason): differences we keep on purpose.
const ALLOWED: &[(&str, &str, &str, &str)] = &[
    (
        "influxdb.ip_address",
        "null",
        "\"127.0.0.1\"",
        "oslo has no default host (the Python persister's InfluxDB client then uses \
         localhost); ours is 127.0.0.1",
    ),
    (
        "influxdb.port",
        "null",
        "8086",
        "`port =` (empty) is unset in oslo (None, passed on to the Python persister's \
         client); we take our default, which is oslo's default too",
    ),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# env: "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn with_env(mut cmd: Command, env: &[(String, String)]) -> Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("OS_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(cmd: Command) -> Outcome {
    let mut cmd = cmd;
    let out = cmd.output().expect("spawn");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `--config-file F` / `--config-dir D` arguments, in order.
fn args(sources: &[Source]) -> Vec<std::ffi::OsString> {
    let mut a = Vec::new();
    for s in sources {
        a.push(if s.0 { "--config-dir" } else { "--config-file" }.into());
        a.push(s.1.clone().into_os_string());
    }
    a
}

/// (is a directory, path).
type Source = (bool, PathBuf);

fn oslo(sources: &[Source], env: &[(String, String)]) -> Outcome {
    let mut cmd = Command::new(common::python_reference());
    cmd.arg(root().join("tests/python/oslo_dump.py"))
        .args(args(sources));
    run(with_env(cmd, env))
}

fn ours(sources: &[Source], env: &[(String, String)]) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_monasca-persister"));
    cmd.args(args(sources)).arg("--check-config");
    run(with_env(cmd, env))
}

/// Our value for an oslo option, as JSON comparable with oslo's.
fn our_value(
    group: &str,
    opt: &str,
    t: &toml::Table,
    lib: &monasca_persister::config::Config,
) -> J {
    let get = |g: &str, k: &str| -> J {
        let v = &t[g][k];
        serde_json::to_value(v).unwrap()
    };
    match (group, opt) {
        ("logging", "level") => J::String(t["persister"]["log_level"].as_str().unwrap().into()),
        ("logging", "file") => match lib.persister.log_path() {
            None => J::Null,
            Some(p) => J::String(std::path::absolute(p).unwrap().display().to_string()),
        },
        ("influxdb", "password") => match lib.influxdb.password.expose() {
            "" => J::Null,
            s => J::String(s.into()),
        },
        (p, "uri") => {
            let own = t[p]["uri"].as_str().unwrap();
            J::String(if own.is_empty() {
                t["kafka"]["uri"].as_str().unwrap().to_owned()
            } else {
                own.to_owned()
            })
        }
        (g, "max_wait_time_seconds") => J::from(t[g][opt].as_float().unwrap()),
        (g, o) => get(g, o),
    }
}

fn oslo_value(group: &str, opt: &str, d: &J) -> J {
    if (group, opt) == ("logging", "level") {
        // Python's level names onto ours: tracing has no CRITICAL, and NOTSET lets all through.
        let ours = match d[group][opt].as_str().unwrap() {
            "CRITICAL" | "ERROR" => "error",
            "WARNING" => "warn",
            "INFO" => "info",
            "DEBUG" | "NOTSET" => "debug",
            other => other,
        };
        return J::String(ours.into());
    }
    let v = d[group][opt].clone();
    match (opt, &v) {
        ("uri", J::Array(items)) => J::String(
            items
                .iter()
                .map(|i| i.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("max_wait_time_seconds", J::Number(n)) => J::from(n.as_f64().unwrap()),
        // An empty password is no password.
        ("password", J::String(s)) if s.is_empty() => J::Null,
        _ => v,
    }
}

const COMPARED: &[(&str, &str)] = &[
    // What oslo.log's setup makes of `debug`, `log_dir`, `log_file` and
    // `log_config_append`: the root logger's level and the file it writes to (absolute).
    ("logging", "level"),
    ("logging", "file"),
    ("kafka_metrics", "uri"),
    ("kafka_metrics", "topic"),
    ("kafka_metrics", "group_id"),
    ("kafka_metrics", "batch_size"),
    ("kafka_metrics", "max_wait_time_seconds"),
    ("kafka_alarm_history", "uri"),
    ("kafka_alarm_history", "topic"),
    ("kafka_alarm_history", "group_id"),
    ("kafka_alarm_history", "batch_size"),
    ("kafka_alarm_history", "max_wait_time_seconds"),
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

/// Differences for one file (empty: none).
fn compare(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    compare_sources(&[(false, path.to_owned())], &fixture_env(&text))
}

/// Differences for files and directories read in this order (empty: none).
fn compare_sources(sources: &[Source], env: &[(String, String)]) -> Vec<String> {
    let env = env.to_vec();
    let py = oslo(sources, &env);
    let rs = ours(sources, &env);
    let path = &sources[0].1;
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut diffs = Vec::new();
    if py.code == 2 {
        if rs.code != 2 {
            diffs.push(format!(
                "oslo refuses ({}), we exit {}",
                py.stderr.trim(),
                rs.code
            ));
        } else if !rs.stderr.contains(&format!("{name}:")) {
            diffs.push(format!("our refusal does not name the file: {}", rs.stderr));
        } else if !rs.stderr.contains(&format!("{name}:1"))
            && !(2..10).any(|l| rs.stderr.contains(&format!("{name}:{l}:")))
        {
            diffs.push(format!("our refusal does not name the line: {}", rs.stderr));
        }
        return diffs;
    }
    assert_eq!(py.code, 0, "{name}: oslo_dump.py failed: {}", py.stderr);
    if rs.code != 0 {
        return vec![format!(
            "oslo accepts, we exit {}: {}",
            rs.code,
            rs.stderr.trim()
        )];
    }
    let d: J = serde_json::from_str(&py.stdout).unwrap();
    let t: toml::Table = toml::from_str(&rs.stdout).unwrap();
    let envmap: BTreeMap<String, String> = env.into_iter().collect();
    let mut files = Vec::new();
    for (is_dir, p) in sources {
        if *is_dir {
            files.extend(monasca_persister::config::config_dir_files(p).unwrap());
        } else {
            files.push(p.clone());
        }
    }
    let lib = monasca_persister::config::load_all(&files, &|n| envmap.get(n).cloned())
        .unwrap()
        .config;

    for pipeline in ["kafka_metrics", "kafka_alarm_history"] {
        let runs = d[pipeline]["enabled"] == J::Bool(true)
            && d[pipeline]["num_processors"].as_i64().unwrap() > 0;
        let our_runs = t[pipeline]["enabled"].as_bool().unwrap();
        if runs != our_runs {
            diffs.push(format!(
                "{pipeline} runs: oslo {runs} (enabled {}, num_processors {}), ours {our_runs}",
                d[pipeline]["enabled"], d[pipeline]["num_processors"]
            ));
        }
        if runs {
            let (o, r) = (
                &d[pipeline]["num_processors"],
                t[pipeline]["num_processors"].as_integer().unwrap(),
            );
            if o.as_i64() != Some(r) {
                diffs.push(format!("{pipeline}.num_processors: oslo {o}, ours {r}"));
            }
        }
    }
    for &(group, opt) in COMPARED {
        let o = oslo_value(group, opt, &d);
        let r = our_value(group, opt, &t, &lib);
        if o == r {
            continue;
        }
        let key = format!("{group}.{opt}");
        let (oj, rj) = (o.to_string(), r.to_string());
        let allowed = ALLOWED
            .iter()
            .any(|(k, ov, rv, _)| *k == key && *ov == oj && *rv == rj);
        if !allowed {
            diffs.push(format!("{key}: oslo {o}, ours {r}"));
        }
    }
    // The password never leaves in `--check-config` output, as a TOML value or quoted in a
    // message (a password such as devstack's `password` is also a key name: tests/secrets.rs
    // searches for arbitrary secrets as written).
    if let Some(pw) = d["influxdb"]["password"].as_str()
        && pw.len() >= 4
        && [
            toml::Value::String(pw.into()).to_string(),
            format!("{pw:?}"),
        ]
        .iter()
        .any(|f| rs.stdout.contains(f) || rs.stderr.contains(f))
    {
        diffs.push("the password is printed by --check-config".into());
    }
    diffs
}

fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("tests/fixtures/oslo"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_resolves_as_oslo_config_resolves_it() {
    let files = corpus();
    assert!(files.len() >= 10, "corpus: {files:?}");
    let mut report = Vec::new();
    for f in &files {
        for d in compare(f) {
            report.push(format!("{}: {d}", f.file_name().unwrap().to_string_lossy()));
        }
    }
    assert!(
        report.is_empty(),
        "{} difference(s) from oslo.config:\n{}",
        report.len(),
        report.join("\n")
    );
}

#[test]
fn refused_files_are_refused_by_oslo_too() {
    // The corpus's refused-*.conf are there to be refused: check oslo really does.
    for f in corpus() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&f).unwrap();
        let py = oslo(&[(false, f.clone())], &fixture_env(&text));
        // 2 is a refusal by oslo.config or oslo.log; anything but 0 or 2 is the script's
        // own failure.
        assert!(
            matches!(py.code, 0 | 2),
            "{name}: oslo_dump.py failed (exit {}): {}",
            py.code,
            py.stderr
        );
        assert_eq!(
            name.starts_with("refused-"),
            py.code == 2,
            "{name}: {}",
            py.stderr
        );
    }
}

#[test]
fn repeated_config_files_and_config_dirs_combine_as_in_oslo_config() {
    let m = root().join("tests/fixtures/oslo/multi");
    let (a, b, dir) = (
        (false, m.join("a.conf")),
        (false, m.join("b.conf")),
        (true, m.join("dir")),
    );
    for sources in [
        vec![a.clone(), b.clone()],
        vec![b.clone(), a.clone()],
        vec![a.clone(), dir.clone()],
        vec![dir.clone(), a.clone()],
        vec![a.clone(), dir.clone(), b.clone()],
        vec![dir.clone()],
    ] {
        let diffs = compare_sources(&sources, &[("OS_KAFKA__NUM_PROCESSORS".into(), "3".into())]);
        assert!(diffs.is_empty(), "{sources:?}: {diffs:#?}");
    }
}
