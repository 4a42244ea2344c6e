//! Encoding: a decoded message → exactly one line of InfluxDB line protocol in a `BytesMut`.
//!
//! Owns the escaping rules of InfluxDB 1.x (which 2.x shares) and the decision of what can be
//! written at all. Must never: write a line that InfluxDB would split in two, merge with the
//! next line or store differently from the input; leave half a line behind on error (every
//! encoder truncates back to where it started); allocate on the accepted path.
//!
//! Why the rules are what they are (observed on InfluxDB 1.6.7, see the README):
//! - identifiers (measurement, tag keys, tag values) escape only `,`, `=` and space; a
//!   backslash is written as it is, because 1.x does not unescape `\\`;
//! - an identifier ending in `\` would escape the delimiter after it, so it cannot be written;
//! - 1.x finds line ends with a scanner that pairs every `\` with the next byte, while its tag
//!   parser only looks at the byte before a delimiter; after an odd run of backslashes the two
//!   disagree about a following space, which can let a later `"` swallow the next line. Such
//!   an identifier is not written;
//! - 1.6 unescapes a measurement twice when indexing it: one with a backslash right before
//!   `,`, `=` or a space is stored under a name that queries never find, so it is not written;
//! - a line starting with `#` is a comment and one starting with a tab or NUL is trimmed, so
//!   such measurements cannot be written;
//! - string fields escape `"` and `\` and keep newlines as they are.

mod alarm;
mod json_text;
pub mod lineproto;
mod metric;
mod pytext;
mod scan;

use std::fmt;

use bytes::{BufMut, BytesMut};

use lineproto::{BACKSLASH, CARRIAGE_RETURN, COMMA, EQUALS, LINE_END, SPACE, STRING_ESCAPED};

/// What to do with a string InfluxDB cannot store as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "daemon",
    derive(serde::Deserialize, serde::Serialize),
    serde(rename_all = "lowercase")
)]
pub enum Policy {
    /// Reject the message with a typed reason (default): nothing is silently altered.
    #[default]
    Reject,
    /// Alter the string so it can be stored and count the alteration: line breaks become
    /// spaces, trailing backslashes are removed, a space after an odd run of backslashes, a
    /// measurement's `,` `=` or space right after a backslash and a measurement's leading `#`,
    /// tab or NUL become `_`, and dimensions with an empty key are
    /// dropped. Non-finite values and over-long series keys are still rejected.
    Sanitize,
}

/// Which line-protocol escaping the server reads.
///
/// InfluxDB 1.x and 2.x do not unescape `\\` in measurements, tag keys and tag values (a
/// backslash is written as it is, and one at the end of a value cannot be written at all);
/// VictoriaMetrics and InfluxDB 3 do, so there every backslash must be doubled, and then any
/// string with backslashes can be stored as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "daemon",
    derive(serde::Deserialize, serde::Serialize, clap::ValueEnum),
    serde(rename_all = "lowercase")
)]
pub enum Dialect {
    /// InfluxDB 1.x/2.x (default).
    #[default]
    V1,
    /// VictoriaMetrics, InfluxDB 3: `\` escaped as `\\` in identifiers.
    V3,
}

/// Why a decoded message cannot become a line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// `value` is NaN or infinite; line protocol has no way to write it.
    #[error("value is not finite ({0})")]
    NonFinite(f64),
    /// A string that InfluxDB cannot store as it is.
    #[error("{place} {problem}")]
    Unrepresentable { place: Place, problem: Problem },
    /// Measurement plus tags exceed InfluxDB's series key limit.
    #[error("series key is {len} bytes, over InfluxDB's limit of {MAX_SERIES_KEY} bytes")]
    SeriesKeyTooLong { len: usize },
}

/// Longest series key (measurement and tags, escaped) InfluxDB 1.x accepts.
pub const MAX_SERIES_KEY: usize = 65_535;

/// Which string could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// The metric name.
    Measurement,
    /// A dimension key (the key itself, cut to 64 bytes, for the operator).
    DimensionKey(String),
    /// The value of the named dimension.
    DimensionValue(String),
    /// The tenant id (metric `meta.tenantId` or alarm `tenantId`).
    Tenant,
    /// The metric's `meta.region`.
    Region,
}

impl Place {
    fn key(key: &str) -> String {
        let mut end = key.len().min(64);
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        key[..end].to_owned()
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Measurement => f.write_str("metric name"),
            Place::DimensionKey(k) => write!(f, "dimension key {k:?}"),
            Place::DimensionValue(k) => write!(f, "value of dimension {k:?}"),
            Place::Tenant => f.write_str("tenant id"),
            Place::Region => f.write_str("region"),
        }
    }
}

/// What is wrong with the string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Empty where InfluxDB needs a name.
    Empty,
    /// Contains a newline or carriage return.
    LineBreak,
    /// Ends with a backslash.
    TrailingBackslash,
    /// A space follows an odd number of backslashes.
    BackslashBeforeSpace,
    /// A measurement has a backslash right before `,`, `=` or a space.
    BackslashBeforeSeparator,
    /// A measurement starting with `#` (a comment line) or tab/NUL (trimmed by InfluxDB).
    BadFirstCharacter,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Problem::Empty => "is empty",
            Problem::LineBreak => "contains a line break",
            Problem::TrailingBackslash => "ends with a backslash",
            Problem::BackslashBeforeSpace => "has a backslash before a space",
            Problem::BackslashBeforeSeparator => "has a backslash before ',', '=' or a space",
            Problem::BadFirstCharacter => "starts with '#', tab or NUL",
        })
    }
}

/// A line was written. `sanitized` counts strings altered under [`Policy::Sanitize`]
/// (always 0 under [`Policy::Reject`]); `created_ms` is when the message was made (a metric's
/// envelope `creation_time`, an alarm transition's `timestamp`), 0 when unknown: the start of
/// its end-to-end latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Encoded {
    pub sanitized: u32,
    pub created_ms: i64,
}

/// Turns decoded messages into lines. Cheap to copy; holds only the policy and the dialect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Encoder {
    pub policy: Policy,
    pub dialect: Dialect,
}

impl From<Policy> for Encoder {
    fn from(policy: Policy) -> Self {
        Encoder {
            policy,
            dialect: Dialect::V1,
        }
    }
}

/// True if an identifier byte may need escaping or checking. Space, LF and CR are below `!`;
/// other control bytes land here too and just take the careful path.
#[inline]
fn needs_care(bytes: &[u8]) -> bool {
    scan::any(bytes, care)
}

/// The word-at-a-time test behind [`needs_care`].
#[inline(always)]
fn care(x: u64) -> u64 {
    use scan::{has_byte, has_less};
    has_less(x, b'!') | has_byte(x, COMMA) | has_byte(x, EQUALS) | has_byte(x, BACKSLASH)
}

/// Which identifier is being written: measurements also care about their first byte.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ident {
    Measurement,
    Tag,
}

/// Length `s` has once the policy is applied to its end (trailing backslashes stripped under
/// `Sanitize` in the v1 dialect). Zero means the string has nothing left to write.
fn kept_len(s: &str, enc: Encoder) -> usize {
    match (enc.policy, enc.dialect) {
        (Policy::Sanitize, Dialect::V1) => s.trim_end_matches('\\').len(),
        _ => s.len(),
    }
}

/// Appends an identifier escaped for the encoder's dialect. Returns how many alterations were
/// made, or the first problem found. On error the caller truncates the line.
#[inline(always)]
fn ident(out: &mut BytesMut, s: &str, kind: Ident, enc: Encoder) -> Result<u32, Problem> {
    let bytes = s.as_bytes();
    let first_bad = kind == Ident::Measurement && matches!(bytes.first(), Some(b'#' | b'\t' | 0));
    if !first_bad && !bytes.is_empty() && !needs_care(bytes) {
        out.extend_from_slice(bytes);
        return Ok(0);
    }
    ident_careful(out, s, kind, enc, first_bad)
}

/// [`ident`] for a string that is empty or has bytes to escape or check: kept out of line,
/// so that the common case above stays small enough to inline.
#[inline(never)]
fn ident_careful(
    out: &mut BytesMut,
    s: &str,
    kind: Ident,
    enc: Encoder,
    first_bad: bool,
) -> Result<u32, Problem> {
    let bytes = s.as_bytes();
    let policy = enc.policy;
    if bytes.is_empty() {
        return Err(Problem::Empty);
    }
    if enc.dialect == Dialect::V3 {
        return ident_v3(out, bytes, first_bad, policy);
    }
    let end = kept_len(s, enc);
    if end == 0 {
        return Err(Problem::Empty);
    }
    let mut edits = u32::from(end != bytes.len());
    if policy == Policy::Reject && bytes[end - 1] == BACKSLASH {
        return Err(Problem::TrailingBackslash);
    }
    let fix = |edits: &mut u32, problem| match policy {
        Policy::Reject => Err(problem),
        Policy::Sanitize => {
            *edits += 1;
            Ok(())
        }
    };
    let mut backslashes = 0usize;
    let mut run_start = 0;
    let mut i = 0;
    while i < end {
        // Bytes that need no care are written as they are and end a run of backslashes.
        let next = skip_plain(&bytes[..end], i, first_bad);
        if next > i {
            backslashes = 0;
            i = next;
            if i == end {
                break;
            }
        }
        let (at, b) = (i, bytes[i]);
        i += 1;
        let mut c = b;
        if at == 0 && first_bad {
            fix(&mut edits, Problem::BadFirstCharacter)?;
            c = b'_';
        } else if c == LINE_END || c == CARRIAGE_RETURN {
            fix(&mut edits, Problem::LineBreak)?;
            c = SPACE;
        }
        if c == BACKSLASH {
            backslashes += 1;
            continue;
        }
        if kind == Ident::Measurement && backslashes > 0 && lineproto::escaped_in_ident(c) {
            fix(&mut edits, Problem::BackslashBeforeSeparator)?;
            c = b'_';
        } else if c == SPACE && backslashes % 2 == 1 {
            fix(&mut edits, Problem::BackslashBeforeSpace)?;
            c = b'_';
        }
        backslashes = 0;
        let escape = lineproto::escaped_in_ident(c);
        if c != b || escape {
            out.extend_from_slice(&bytes[run_start..at]);
            if escape {
                out.put_u8(BACKSLASH);
            }
            out.put_u8(c);
            run_start = at + 1;
        }
    }
    out.extend_from_slice(&bytes[run_start..end]);
    Ok(edits)
}

/// Where the careful loops of [`ident`] go on from `i`: the next byte that needs care, or
/// `bytes.len()`; a measurement's bad first byte is always visited.
#[inline]
fn skip_plain(bytes: &[u8], i: usize, first_bad: bool) -> usize {
    if i == 0 && first_bad {
        0
    } else {
        i + bytes.get(i..).map_or(0, |rest| scan::find(rest, care))
    }
}

/// [`ident`] for the v3 dialect: `,`, `=`, space and `\\` are escaped, so only line breaks
/// and a bad first character of a measurement are problems.
fn ident_v3(
    out: &mut BytesMut,
    bytes: &[u8],
    first_bad: bool,
    policy: Policy,
) -> Result<u32, Problem> {
    if bytes.is_empty() {
        return Err(Problem::Empty);
    }
    let mut edits = 0;
    let mut run_start = 0;
    let mut next = 0;
    loop {
        let i = skip_plain(bytes, next, first_bad);
        let Some(&b) = bytes.get(i) else { break };
        next = i + 1;
        let c = if i == 0 && first_bad {
            Some(Problem::BadFirstCharacter)
        } else if b == LINE_END || b == CARRIAGE_RETURN {
            Some(Problem::LineBreak)
        } else {
            None
        };
        let c = match c {
            Some(problem) if policy == Policy::Reject => return Err(problem),
            Some(Problem::BadFirstCharacter) => b'_',
            Some(_) => SPACE,
            None => b,
        };
        edits += u32::from(c != b);
        let escape = lineproto::escaped_in_ident_v3(c);
        if c != b || escape {
            out.extend_from_slice(&bytes[run_start..i]);
            if escape {
                out.put_u8(BACKSLASH);
            }
            out.put_u8(c);
            run_start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[run_start..]);
    Ok(edits)
}

/// Appends the body of a string field (without the quotes): `"` and `\` escaped, everything
/// else, newlines included, as it is.
fn string_field(out: &mut BytesMut, s: &str) {
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for i in memchr::memchr2_iter(STRING_ESCAPED[0], STRING_ESCAPED[1], bytes) {
        out.extend_from_slice(&bytes[run_start..i]);
        out.put_u8(BACKSLASH);
        run_start = i;
    }
    out.extend_from_slice(&bytes[run_start..]);
}

/// Appends ` <timestamp>\n`.
fn timestamp(out: &mut BytesMut, ms: i64) {
    out.put_u8(SPACE);
    out.extend_from_slice(itoa::Buffer::new().format(ms).as_bytes());
    out.put_u8(LINE_END);
}

/// Appends one tag, `,key=value`. An empty value means no tag (InfluxDB treats an absent tag
/// as empty); an empty key is a problem, or under `Sanitize` the tag is left out.
fn tag(
    out: &mut BytesMut,
    key: &str,
    value: &str,
    enc: Encoder,
    place: impl Fn(bool) -> Place,
) -> Result<u32, EncodeError> {
    if kept_len(value, enc) == 0 {
        return Ok(u32::from(!value.is_empty()));
    }
    if kept_len(key, enc) == 0 {
        return match enc.policy {
            Policy::Sanitize => Ok(1),
            Policy::Reject => Err(EncodeError::Unrepresentable {
                place: place(true),
                problem: Problem::Empty,
            }),
        };
    }
    out.put_u8(COMMA);
    let mut edits =
        ident(out, key, Ident::Tag, enc).map_err(|problem| EncodeError::Unrepresentable {
            place: place(true),
            problem,
        })?;
    out.put_u8(EQUALS);
    edits +=
        ident(out, value, Ident::Tag, enc).map_err(|problem| EncodeError::Unrepresentable {
            place: place(false),
            problem,
        })?;
    Ok(edits)
}

/// Checks the series key (everything from `line_start` up to here) against InfluxDB's limit.
fn check_series_key(out: &BytesMut, line_start: usize) -> Result<(), EncodeError> {
    let len = out.len() - line_start;
    if len > MAX_SERIES_KEY {
        Err(EncodeError::SeriesKeyTooLong { len })
    } else {
        Ok(())
    }
}

/// Runs `write` and, if it fails, removes whatever it appended: no half lines, ever.
fn whole_line<T>(
    out: &mut BytesMut,
    write: impl FnOnce(&mut BytesMut, usize) -> Result<T, EncodeError>,
) -> Result<T, EncodeError> {
    let start = out.len();
    let r = write(out, start);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;
    use crate::convert::Reject;
    use crate::convert::testing::{convert_with, metric, metric_json};

    fn ident_of(s: &str, kind: Ident, policy: Policy) -> Result<(String, u32), Problem> {
        let mut out = BytesMut::new();
        let edits = ident(&mut out, s, kind, policy.into())?;
        Ok((String::from_utf8(out.to_vec()).unwrap(), edits))
    }

    fn tag_ok(s: &str) -> String {
        ident_of(s, Ident::Tag, Policy::Reject).unwrap().0
    }

    fn unrepresentable(r: Result<String, Reject>) -> (Place, Problem) {
        match r {
            Err(Reject::Encode(EncodeError::Unrepresentable { place, problem })) => {
                (place, problem)
            }
            other => panic!("expected unrepresentable, got {other:?}"),
        }
    }

    #[test]
    fn comma_space_and_equals_are_escaped_in_identifiers() {
        assert_eq!(tag_ok("a,b c=d"), r"a\,b\ c\=d");
        assert_eq!(
            ident_of("m e=a,s", Ident::Measurement, Policy::Reject)
                .unwrap()
                .0,
            r"m\ e\=a\,s"
        );
    }

    #[test]
    fn backslashes_are_not_doubled_in_identifiers() {
        assert_eq!(tag_ok(r"a\b\c"), r"a\b\c");
        assert_eq!(tag_ok(r"a\,b"), r"a\\,b");
        assert_eq!(tag_ok(r"a\=b"), r"a\\=b");
        assert_eq!(tag_ok(r"a\\ b"), r"a\\\ b");
    }

    #[test]
    fn quotes_tabs_and_unicode_pass_through_identifiers() {
        assert_eq!(tag_ok("a\"b\tc\u{e9}\u{1F600}"), "a\"b\tc\u{e9}\u{1F600}");
    }

    #[test]
    fn trailing_backslash_is_rejected() {
        assert_eq!(
            ident_of(r"ab\", Ident::Tag, Policy::Reject),
            Err(Problem::TrailingBackslash)
        );
        assert_eq!(
            ident_of(r"ab\\", Ident::Tag, Policy::Reject),
            Err(Problem::TrailingBackslash)
        );
    }

    #[test]
    fn trailing_backslash_is_stripped_when_sanitizing() {
        assert_eq!(
            ident_of(r"ab\\", Ident::Tag, Policy::Sanitize),
            Ok(("ab".into(), 1))
        );
    }

    #[test]
    fn newline_and_carriage_return_are_rejected_in_identifiers() {
        assert_eq!(
            ident_of("a\nb", Ident::Tag, Policy::Reject),
            Err(Problem::LineBreak)
        );
        assert_eq!(
            ident_of("a\rb", Ident::Measurement, Policy::Reject),
            Err(Problem::LineBreak)
        );
    }

    #[test]
    fn newline_becomes_escaped_space_when_sanitizing() {
        assert_eq!(
            ident_of("a\nb\r", Ident::Tag, Policy::Sanitize),
            Ok((r"a\ b\ ".into(), 2))
        );
    }

    #[test]
    fn odd_backslash_run_before_space_is_rejected() {
        assert_eq!(
            ident_of(r"a\ b", Ident::Tag, Policy::Reject),
            Err(Problem::BackslashBeforeSpace)
        );
        assert_eq!(
            ident_of(r"a\\\ b", Ident::Tag, Policy::Reject),
            Err(Problem::BackslashBeforeSpace)
        );
        assert_eq!(
            ident_of(r"a\ b", Ident::Tag, Policy::Sanitize),
            Ok((r"a\_b".into(), 1))
        );
    }

    #[test]
    fn measurement_starting_with_hash_tab_or_nul_is_rejected() {
        for m in ["#m", "\tm", "\0m"] {
            assert_eq!(
                ident_of(m, Ident::Measurement, Policy::Reject),
                Err(Problem::BadFirstCharacter)
            );
            assert_eq!(
                ident_of(m, Ident::Measurement, Policy::Sanitize).unwrap().0,
                "_m"
            );
        }
        // Only the first byte matters, and only for measurements.
        assert_eq!(tag_ok("#m"), "#m");
        assert_eq!(
            ident_of("m#", Ident::Measurement, Policy::Reject)
                .unwrap()
                .0,
            "m#"
        );
    }

    #[test]
    fn measurement_with_backslash_before_separator_is_rejected() {
        for m in [r"a\,b", r"a\=b", r"a\\ b", r"a\\,b"] {
            assert_eq!(
                ident_of(m, Ident::Measurement, Policy::Reject),
                Err(Problem::BackslashBeforeSeparator),
                "{m}"
            );
        }
        assert_eq!(
            ident_of(r"a\,b", Ident::Measurement, Policy::Sanitize),
            Ok((r"a\_b".into(), 1))
        );
        assert_eq!(
            ident_of(r"a\b", Ident::Measurement, Policy::Reject),
            Ok((r"a\b".into(), 0))
        );
    }

    #[test]
    fn measurement_starting_with_space_is_escaped() {
        assert_eq!(
            ident_of(" m", Ident::Measurement, Policy::Reject)
                .unwrap()
                .0,
            r"\ m"
        );
    }

    fn v3(s: &str, kind: Ident, policy: Policy) -> Result<(String, u32), Problem> {
        let mut out = BytesMut::new();
        let enc = Encoder {
            policy,
            dialect: Dialect::V3,
        };
        let edits = ident(&mut out, s, kind, enc)?;
        Ok((String::from_utf8(out.to_vec()).unwrap(), edits))
    }

    #[test]
    fn v3_doubles_backslashes_and_so_stores_what_v1_cannot() {
        for (s, want) in [
            (r"C:\", r"C:\\"),
            (r"a\b", r"a\\b"),
            (r"a\ b", r"a\\\ b"),
            (r"a\,b=c d", r"a\\\,b\=c\ d"),
            ("plain", "plain"),
        ] {
            assert_eq!(
                v3(s, Ident::Tag, Policy::Reject),
                Ok((want.into(), 0)),
                "{s}"
            );
            assert_eq!(
                v3(s, Ident::Measurement, Policy::Reject),
                Ok((want.into(), 0)),
                "{s}"
            );
        }
    }

    #[test]
    fn v3_still_refuses_line_breaks_and_comment_lines() {
        assert_eq!(
            v3("a\nb", Ident::Tag, Policy::Reject),
            Err(Problem::LineBreak)
        );
        assert_eq!(
            v3("#m", Ident::Measurement, Policy::Reject),
            Err(Problem::BadFirstCharacter)
        );
        assert_eq!(v3("", Ident::Tag, Policy::Reject), Err(Problem::Empty));
        assert_eq!(
            v3("#a\nb\\", Ident::Measurement, Policy::Sanitize),
            Ok((r"_a\ b\\".into(), 2))
        );
    }

    #[test]
    fn v3_metric_line_keeps_a_trailing_backslash() {
        let json = metric_json(r#""m""#, r#"{"host":"c:\\"}"#);
        let mut c = crate::Converter::new(
            Encoder {
                policy: Policy::Reject,
                dialect: Dialect::V3,
            },
            1 << 20,
        );
        let mut out = BytesMut::new();
        c.convert(Kind::Metrics, json.as_bytes(), &mut out).unwrap();
        assert_eq!(
            &out[..],
            &b"m,_region=r,_tenant_id=t,host=c:\\\\ value=1.5,value_meta=\"{}\" 1000\n"[..]
        );
    }

    #[cfg(feature = "daemon")]
    #[test]
    fn line_protocol_is_read_from_toml_and_ini_and_defaults_to_v1() {
        let dir = std::env::temp_dir().join(format!("mp-dialect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text, want) in [
            (
                "a.toml",
                "[influxdb]\nline_protocol = \"v3\"\n",
                Dialect::V3,
            ),
            (
                "b.toml",
                "[influxdb]\nline_protocol = \"v1\"\n",
                Dialect::V1,
            ),
            ("c.toml", "[influxdb]\n", Dialect::V1),
            ("d.conf", "[influxdb]\nline_protocol = v3\n", Dialect::V3),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            let loaded = crate::config::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(loaded.config.influxdb.line_protocol, want, "{name}");
        }
        let path = dir.join("e.toml");
        std::fs::write(&path, "[influxdb]\nline_protocol = \"v2\"\n").unwrap();
        assert!(crate::config::load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn string_field_escapes_quote_and_backslash_only() {
        let mut out = BytesMut::new();
        string_field(&mut out, "a\"b\\c\nd,e=f g\u{e9}");
        assert_eq!(&out[..], "a\\\"b\\\\c\nd,e=f g\u{e9}".as_bytes());
    }

    #[test]
    fn line_shape_with_sorted_tags() {
        let line = metric(&metric_json(
            r#""cpu.idle_perc""#,
            r#"{"service":"monitoring","hostname":"devstack"}"#,
        ));
        assert_eq!(
            line.unwrap(),
            "cpu.idle_perc,_region=r,_tenant_id=t,hostname=devstack,service=monitoring value=1.5,value_meta=\"{}\" 1000\n"
        );
    }

    #[test]
    fn tenant_dimension_cannot_spoof_the_envelope_tenant() {
        let line = metric(&metric_json(
            r#""m""#,
            r#"{"_tenant_id":"victim","_region":"other","a":"b"}"#,
        ));
        assert_eq!(
            line.unwrap(),
            "m,_region=r,_tenant_id=t,a=b value=1.5,value_meta=\"{}\" 1000\n"
        );
    }

    #[test]
    fn empty_tenant_is_rejected_not_dropped() {
        let json = r#"{"metric":{"name":"m","timestamp":1,"value":1},"meta":{"tenantId":"","region":"r"}}"#;
        assert_eq!(
            unrepresentable(metric(json)),
            (Place::Tenant, Problem::Empty)
        );
    }

    #[test]
    fn duplicate_dimension_keeps_the_last_value() {
        let line = metric(&metric_json(
            r#""m""#,
            r#"{"a":"first","b":"x","a":"last"}"#,
        ));
        assert_eq!(
            line.unwrap(),
            "m,_region=r,_tenant_id=t,a=last,b=x value=1.5,value_meta=\"{}\" 1000\n"
        );
    }

    #[test]
    fn empty_dimension_value_is_dropped() {
        let line = metric(&metric_json(r#""m""#, r#"{"a":"","b":"x","c":null}"#));
        assert_eq!(
            line.unwrap(),
            "m,_region=r,_tenant_id=t,b=x value=1.5,value_meta=\"{}\" 1000\n"
        );
    }

    #[test]
    fn empty_dimension_key_is_rejected_or_dropped_when_sanitizing() {
        let json = metric_json(r#""m""#, r#"{"":"v","b":"x"}"#);
        assert_eq!(
            unrepresentable(metric(&json)),
            (Place::DimensionKey(String::new()), Problem::Empty)
        );
        let line = convert_with(Kind::Metrics, Policy::Sanitize, &json).unwrap();
        assert_eq!(
            line,
            "m,_region=r,_tenant_id=t,b=x value=1.5,value_meta=\"{}\" 1000\n"
        );
    }

    #[test]
    fn newline_in_dimension_value_cannot_inject_a_line() {
        let json = metric_json(r#""m""#, r#"{"a":"x\nevil,_tenant_id=victim value=1 1"}"#);
        assert_eq!(
            unrepresentable(metric(&json)),
            (Place::DimensionValue("a".into()), Problem::LineBreak)
        );
        let line = convert_with(Kind::Metrics, Policy::Sanitize, &json).unwrap();
        assert_eq!(line.matches('\n').count(), 1);
        assert!(
            line.starts_with(
                r"m,_region=r,_tenant_id=t,a=x\ evil\,_tenant_id\=victim\ value\=1\ 1 "
            )
        );
    }

    #[test]
    fn trailing_backslash_in_dimension_value_names_the_dimension() {
        let json = metric_json(r#""m""#, r#"{"host":"c:\\"}"#);
        assert_eq!(
            unrepresentable(metric(&json)),
            (
                Place::DimensionValue("host".into()),
                Problem::TrailingBackslash
            )
        );
    }

    #[test]
    fn non_finite_value_is_rejected() {
        for v in [r#""NaN""#, r#""inf""#, r#""-Infinity""#] {
            let json = format!(
                r#"{{"metric":{{"name":"m","timestamp":1,"value":{v}}},"meta":{{"tenantId":"t","region":"r"}}}}"#
            );
            assert!(
                matches!(
                    metric(&json),
                    Err(Reject::Encode(EncodeError::NonFinite(_)))
                ),
                "{v}"
            );
        }
    }

    #[test]
    fn value_is_always_a_float_field() {
        let json = r#"{"metric":{"name":"m","timestamp":1,"value":7},"meta":{"tenantId":"t","region":"r"}}"#;
        assert!(metric(json).unwrap().contains(" value=7.0,"));
        let json = r#"{"metric":{"name":"m","timestamp":1,"value":1e20},"meta":{"tenantId":"t","region":"r"}}"#;
        // A float with an exponent; InfluxDB's number scanner takes the `+`.
        assert!(metric(json).unwrap().contains(" value=1e+20,"));
    }

    #[test]
    fn boolean_value_is_stored_as_one_or_zero() {
        let json = r#"{"metric":{"name":"m","timestamp":1,"value":true},"meta":{"tenantId":"t","region":"r"}}"#;
        assert!(metric(json).unwrap().contains(" value=1.0,"));
    }

    #[test]
    fn number_and_boolean_dimension_values_are_stored_as_python_writes_them() {
        let line = metric(&metric_json(
            r#""m""#,
            r#"{"a":true,"b":false,"c":42,"d":1.5,"e":1e20,"f":0.00001,"g":-0.0,"h":3.0}"#,
        ));
        assert_eq!(
            line.unwrap(),
            "m,_region=r,_tenant_id=t,a=True,b=False,c=42,d=1.5,e=1e+20,f=1e-05,g=-0.0,h=3.0 value=1.5,value_meta=\"{}\" 1000\n"
        );
    }

    #[test]
    fn value_meta_that_is_not_an_object_is_stored_as_its_json_text() {
        for (vm, want) in [
            (r#""note""#, r#"value_meta="\"note\"""#),
            ("[1,2]", r#"value_meta="[1,2]""#),
            ("7", r#"value_meta="7""#),
            ("true", r#"value_meta="true""#),
            ("false", r#"value_meta="{}""#),
            ("[]", r#"value_meta="{}""#),
        ] {
            let json = format!(
                r#"{{"metric":{{"name":"m","timestamp":1,"value":1,"value_meta":{vm}}},"meta":{{"tenantId":"t","region":"r"}}}}"#
            );
            let line = metric(&json).unwrap();
            assert!(line.contains(want), "{vm}: {line}");
        }
    }

    #[test]
    fn series_key_over_the_limit_is_rejected() {
        let long = "x".repeat(MAX_SERIES_KEY);
        let json = metric_json(r#""m""#, &format!(r#"{{"a":"{long}"}}"#));
        assert!(matches!(
            metric(&json),
            Err(Reject::Encode(EncodeError::SeriesKeyTooLong { .. }))
        ));
    }

    #[test]
    fn value_meta_is_json_text_escaped_for_a_string_field() {
        let json = r#"{"metric":{"name":"m","timestamp":1,"value":1,"value_meta":{"msg":"a \"q\" \\ b\nc","n":[1,-2,2.5,true,null]}},"meta":{"tenantId":"t","region":"r"}}"#;
        let line = metric(json).unwrap();
        assert!(
            line.contains(
                r#"value_meta="{\"msg\":\"a \\\"q\\\" \\\\ b\\nc\",\"n\":[1,-2,2.5,true,null]}" "#
            ),
            "{line}"
        );
    }

    #[test]
    fn rejected_message_leaves_the_buffer_untouched() {
        let mut c = crate::Converter::default();
        let mut out = BytesMut::from(&b"previous line\n"[..]);
        let bad = metric_json(r#""m""#, r#"{"a":"ok","z":"bad\\"}"#);
        assert!(c.convert(Kind::Metrics, bad.as_bytes(), &mut out).is_err());
        assert_eq!(&out[..], b"previous line\n");
    }
}
