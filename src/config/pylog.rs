//! `[DEFAULT] log_config_append`: a Python `logging.config.fileConfig` file, which oslo.log
//! loads instead of its own options (`debug`, `log_dir`, `log_file` are then ignored).
//!
//! We honour what maps onto our logging: the root logger's level and the file of the first
//! file handler the root logger uses (`FileHandler`, `RotatingFileHandler`,
//! `WatchedFileHandler`, `TimedRotatingFileHandler`: the first of its `args`, or its
//! `kwargs` `filename`). Everything else (other loggers, handler levels, formats, rotation,
//! syslog) is named in one warning. A file Python's `fileConfig` would refuse (missing,
//! no `[logger_root]`, an unknown level, a handler without a section) is refused, as the
//! Python persister cannot start with it either.
//!
//! The file is read with `configparser`'s rules as `fileConfig` uses them: `key = value` or
//! `key: value`, keys lower-cased, section names as written, `#`/`;` whole-line comments,
//! indented continuation lines.
//!
//! Owns reading that file into the level and log file we use. Must never accept a file
//! Python's `fileConfig` refuses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What we take from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PyLogging {
    /// Our `log_level` (`error`, `warn`, `info`, `debug`).
    pub level: &'static str,
    /// The file the root logger writes to; `None`: standard output only.
    pub file: Option<PathBuf>,
    /// What the file asks for that we do not do (empty: nothing).
    pub not_applied: Vec<String>,
}

type Sections = BTreeMap<String, BTreeMap<String, String>>;

/// Reads and interprets the file; the error is a sentence without the path.
pub(super) fn read(path: &Path) -> Result<PyLogging, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    interpret(&parse(&text)?)
}

fn parse(text: &str) -> Result<Sections, String> {
    let mut sections = Sections::new();
    let mut current: Option<String> = None;
    let mut last_key: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if trimmed.is_empty() {
            last_key = None;
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        if indented
            && let (Some(s), Some(k)) = (&current, &last_key)
            && let Some(v) = sections.get_mut(s).and_then(|e| e.get_mut(k))
        {
            v.push('\n');
            v.push_str(trimmed);
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            if sections.insert(name.to_owned(), BTreeMap::new()).is_some() {
                return Err(format!("line {}: section [{name}] repeated", n + 1));
            }
            current = Some(name.to_owned());
            last_key = None;
            continue;
        }
        let Some(section) = &current else {
            return Err(format!("line {}: no section header before it", n + 1));
        };
        let Some(at) = trimmed.find(['=', ':']) else {
            return Err(format!("line {}: {trimmed:?} is no `key = value`", n + 1));
        };
        let key = trimmed[..at].trim().to_lowercase();
        let value = trimmed[at + 1..].trim().to_owned();
        let entries = sections.entry(section.clone()).or_default();
        if entries.insert(key.clone(), value).is_some() {
            // configparser is strict: fileConfig refuses a repeated option.
            return Err(format!(
                "line {}: option {key:?} repeated in [{section}]",
                n + 1
            ));
        }
        last_key = Some(key);
    }
    Ok(sections)
}

fn level(name: &str) -> Result<&'static str, String> {
    Ok(match name.trim() {
        "CRITICAL" | "FATAL" | "ERROR" => "error",
        "WARNING" | "WARN" => "warn",
        "INFO" => "info",
        // Python's NOTSET on the root logger lets everything through.
        "DEBUG" | "NOTSET" => "debug",
        other => return Err(format!("unknown level {other:?}")),
    })
}

fn items(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The `keys` list of `[loggers]`, `[handlers]` or `[formatters]`, which fileConfig requires.
fn keys<'a>(sections: &'a Sections, of: &str) -> Result<Vec<&'a str>, String> {
    sections
        .get(of)
        .and_then(|s| s.get("keys"))
        .map(|k| items(k))
        .ok_or_else(|| format!("it has no [{of}] keys"))
}

fn interpret(sections: &Sections) -> Result<PyLogging, String> {
    let loggers = keys(sections, "loggers")?;
    let handlers = keys(sections, "handlers")?;
    keys(sections, "formatters")?;
    if !loggers.contains(&"root") {
        return Err("[loggers] keys does not name root".into());
    }
    let root = sections
        .get("logger_root")
        .ok_or("it has no [logger_root] section")?;
    let level = level(root.get("level").map_or("WARNING", String::as_str))
        .map_err(|e| format!("[logger_root] level: {e}"))?;
    let mut not_applied = Vec::new();
    let others: Vec<&str> = loggers.into_iter().filter(|&k| k != "root").collect();
    if !others.is_empty() {
        not_applied.push(format!("loggers {} (Python's)", others.join(", ")));
    }
    let mut file = None;
    for name in items(root.get("handlers").map_or("", String::as_str)) {
        if !handlers.contains(&name) {
            return Err(format!(
                "handler {name:?} of the root logger is not in [handlers] keys"
            ));
        }
        let h = sections
            .get(&format!("handler_{name}"))
            .ok_or_else(|| format!("handler {name:?} has no [handler_{name}] section"))?;
        let class = h.get("class").map_or("", String::as_str);
        let short = class.rsplit('.').next().unwrap_or(class);
        match short {
            "FileHandler"
            | "RotatingFileHandler"
            | "WatchedFileHandler"
            | "TimedRotatingFileHandler" => {
                let path = filename(h).ok_or_else(|| {
                    format!("handler {name:?} ({class}): no file name in its args or kwargs")
                })?;
                if file.is_none() {
                    if short != "FileHandler" && short != "WatchedFileHandler" {
                        not_applied.push(format!(
                            "handler {name:?}: rotation ({short}; rotate with logrotate's copytruncate)"
                        ));
                    }
                    file = Some(PathBuf::from(path));
                } else {
                    not_applied.push(format!("handler {name:?}: a second log file ({path})"));
                }
            }
            // We always log to standard output (the journal, under systemd).
            "StreamHandler" | "OSJournalHandler" => {}
            _ => not_applied.push(format!(
                "handler {name:?} ({class}; we log to standard output)"
            )),
        }
    }
    Ok(PyLogging {
        level,
        file,
        not_applied,
    })
}

/// The file name of a file handler: its first positional argument, else `kwargs`'
/// `filename`, when written as a Python string literal.
fn filename(h: &BTreeMap<String, String>) -> Option<String> {
    if let Some(args) = h.get("args") {
        let inner = args.trim().strip_prefix('(')?.trim_start();
        if let Some(s) = string_literal(inner) {
            return Some(s);
        }
    }
    let kwargs = h.get("kwargs")?;
    let at = kwargs
        .find("'filename'")
        .or_else(|| kwargs.find("\"filename\""))?;
    let rest = kwargs[at + "'filename'".len()..].trim_start();
    string_literal(rest.strip_prefix(':')?.trim_start())
}

/// A leading Python string literal (`'…'` or `"…"`, optionally `r`-prefixed), unescaped
/// for the common escapes.
fn string_literal(s: &str) -> Option<String> {
    let (raw, s) = match s.strip_prefix(['r', 'R']) {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let quote = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let mut out = String::new();
    let mut chars = s[1..].chars();
    while let Some(c) = chars.next() {
        match c {
            c if c == quote => return Some(out),
            '\\' if !raw => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file monasca-persister 9.0.0 ships as `etc/monasca/persister-logging.conf`.
    const SHIPPED: &str = "[loggers]
keys = root, kafka, influxdb, cassandra

[handlers]
keys = console, file

[formatters]
keys = generic

[logger_root]
level = INFO
formatter = default
handlers = console, file

[logger_kafka]
qualname = kafka
level = INFO
formatter = default
handlers = console, file
propagate = 0

[handler_console]
class = logging.StreamHandler
args = (sys.stderr,)
level = DEBUG
formatter = generic

[handler_file]
class = logging.handlers.RotatingFileHandler
level = DEBUG
formatter = generic
# store up to 5*100MB of logs
args = ('/var/log/monasca/persister/persister.log', 'a', 104857600, 5)

[formatter_generic]
format = %(asctime)s %(levelname)s [%(name)s][%(threadName)s] %(message)s
";

    #[test]
    fn shipped_file_gives_level_and_file() {
        let l = interpret(&parse(SHIPPED).unwrap()).unwrap();
        assert_eq!(l.level, "info");
        assert_eq!(
            l.file.as_deref(),
            Some(Path::new("/var/log/monasca/persister/persister.log"))
        );
        let text = l.not_applied.join("; ");
        assert!(text.contains("kafka, influxdb, cassandra"), "{text}");
        assert!(text.contains("RotatingFileHandler"), "{text}");
    }

    #[test]
    fn levels_and_kwargs() {
        let head = "[loggers]\nkeys = root\n[handlers]\nkeys = f, s\n[formatters]\nkeys =\n";
        let s = &format!(
            "{head}[logger_root]\nLEVEL: DEBUG\nhandlers = f\n[handler_f]\nclass = FileHandler\nargs = ()\nkwargs = {{'mode': 'a', 'filename': \"/tmp/x y.log\"}}\n"
        );
        let l = interpret(&parse(s).unwrap()).unwrap();
        assert_eq!(
            (l.level, l.file.as_deref()),
            ("debug", Some(Path::new("/tmp/x y.log")))
        );
        assert!(l.not_applied.is_empty(), "{:?}", l.not_applied);
        let s = &format!("{head}[logger_root]\nlevel = WARNING\nhandlers =\n");
        let l = interpret(&parse(s).unwrap()).unwrap();
        assert_eq!((l.level, l.file), ("warn", None));
    }

    const HEAD: &str = "[loggers]\nkeys = root\n[handlers]\nkeys = h\n[formatters]\nkeys =\n";

    #[test]
    fn refusals() {
        for (text, says) in [
            ("[loggers]\nkeys = root\n", "no [handlers] keys"),
            (
                "[handlers]\nkeys=\n[formatters]\nkeys=\n",
                "no [loggers] keys",
            ),
            (
                "[loggers]\nkeys = a\n[handlers]\nkeys=\n[formatters]\nkeys=\n",
                "does not name root",
            ),
            ("[logger_root]\nlevel = LOUD\n", "unknown level"),
            ("[logger_root]\nhandlers = h\n", "no [handler_h]"),
            ("[logger_root]\nhandlers = x\n", "not in [handlers] keys"),
            (
                "[logger_root]\nhandlers = h\n[handler_h]\nclass = FileHandler\nargs = (name,)\n",
                "no file name",
            ),
            ("[logger_root]\nlevel = INFO\nlevel = DEBUG\n", "repeated"),
            ("[logger_root]\n[logger_root]\n", "repeated"),
        ] {
            let text = if text.starts_with("[logger_root]") {
                format!("{HEAD}{text}")
            } else {
                format!("{text}[logger_root]\n")
            };
            let e = parse(&text).and_then(|s| interpret(&s)).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
        let e = parse("level = INFO\n").unwrap_err();
        assert!(e.contains("no section header"), "{e}");
    }

    #[test]
    fn syslog_is_named() {
        let s = format!(
            "{HEAD}[logger_root]\nlevel = ERROR\nhandlers = h\n[handler_h]\nclass = handlers.SysLogHandler\nargs = ('/dev/log',)\n"
        );
        let l = interpret(&parse(&s).unwrap()).unwrap();
        assert_eq!((l.level, l.file), ("error", None));
        assert!(l.not_applied[0].contains("SysLogHandler"));
    }
}
