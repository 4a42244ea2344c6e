//! Values as oslo.config resolves them: environment over files over defaults, `$` references,
//! and oslo's types (booleans, integers, ports, host addresses, lists, dicts).
//!
//! Owns what one option's value is. Must never decide where a value goes in the TOML schema
//! (that is `render`'s), nor accept a value oslo.config refuses.

use super::oslo::OSLO;
use super::parse::{Entry, Sections};
use super::tables::{K, group_known, kind_of};

/// A typed value, as oslo returns it.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum V {
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

    pub(super) fn to_toml(&self) -> Option<toml::Value> {
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
pub(super) struct Conf<'a> {
    pub(super) sections: &'a Sections,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
}

impl Conf<'_> {
    pub(super) fn entry(&self, group: &str, name: &str) -> Option<&Entry> {
        self.sections.get(group).and_then(|s| s.get(name))
    }

    pub(super) fn env_name(group: &str, name: &str) -> String {
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
    pub(super) fn get(&self, group: &str, name: &str, depth: usize) -> Result<(V, bool), String> {
        self.get_as(group, name, group, depth)
    }

    /// The value of `[group] name` typed as the option `[typed_as] name` (a destination's
    /// section read as `[influxdb]`), and whether it was set. Another group's option has no
    /// default here: unset, it is inherited.
    pub(super) fn get_as(
        &self,
        group: &str,
        name: &str,
        typed_as: &str,
        depth: usize,
    ) -> Result<(V, bool), String> {
        let Some((kind, is_oslo)) = kind_of(typed_as, name) else {
            return Err(format!("no such option {name} in group [{typed_as}]"));
        };
        if depth > 20 {
            return Err("references nest too deeply (a cycle?)".into());
        }
        let (raw, set) = self.raw(group, name, is_oslo && group == typed_as);
        let Some(raw) = raw else {
            return Ok((V::None, set));
        };
        let text = self.substitute(&raw, typed_as, depth)?;
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

pub(super) fn list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
