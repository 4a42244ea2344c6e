//! The INI text, read as oslo.config's iniparser reads it: sections, `key = value` or
//! `key: value`, whole-line comments, quotes, continuation lines.
//!
//! Owns the syntax only: values stay strings, with their file and line. Must never interpret
//! a value (types, `$` references and defaults are `resolve`'s).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One `key = value` as read, with its file and line.
pub(super) struct Entry {
    pub(super) value: String,
    pub(super) file: PathBuf,
    pub(super) line: usize,
}

pub(super) type Sections = BTreeMap<String, BTreeMap<String, Entry>>;

/// Adds the sections of one file (oslo's iniparser rules). Errors carry the line.
pub(super) fn parse(
    path: &Path,
    text: &str,
    sections: &mut Sections,
) -> Result<(), (usize, String)> {
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
            let name = section_name(l).map_err(|m| (line, m))?;
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

/// The name in a `[section]` header: lower-cased, except `DEFAULT`.
pub(super) fn section_name(l: &str) -> Result<String, String> {
    let name = l
        .strip_suffix(']')
        .ok_or_else(|| format!("invalid section (must end with ]): {l:?}"))?;
    let name = &name[1..];
    if name.is_empty() {
        return Err("empty section name".into());
    }
    Ok(if name == "DEFAULT" {
        name.to_owned()
    } else {
        name.to_lowercase()
    })
}
