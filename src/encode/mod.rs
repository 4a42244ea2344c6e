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
//! - a line starting with `#` is a comment and one starting with a tab or NUL is trimmed, so
//!   such measurements cannot be written;
//! - string fields escape `"` and `\` and keep newlines as they are.

mod alarm;
mod json_text;
mod metric;

use std::fmt;

use bytes::{BufMut, BytesMut};

/// What to do with a string InfluxDB cannot store as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Reject the message with a typed reason (default): nothing is silently altered.
    #[default]
    Reject,
    /// Alter the string so it can be stored and count the alteration: line breaks become
    /// spaces, trailing backslashes are removed, a space after an odd run of backslashes and a
    /// leading `#`, tab or NUL of a measurement become `_`, and dimensions with an empty key are
    /// dropped. Non-finite values and over-long series keys are still rejected.
    Sanitize,
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
            Problem::BadFirstCharacter => "starts with '#', tab or NUL",
        })
    }
}

/// A line was written. `sanitized` counts strings altered under [`Policy::Sanitize`]
/// (always 0 under [`Policy::Reject`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Encoded {
    pub sanitized: u32,
}

/// Turns decoded messages into lines. Cheap to copy; holds only the policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Encoder {
    pub policy: Policy,
}

/// Bytes that need a look in an identifier.
const IDENT_SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b',' as usize] = true;
    t[b'=' as usize] = true;
    t[b' ' as usize] = true;
    t[b'\\' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'\r' as usize] = true;
    t
};

/// Which identifier is being written: measurements also care about their first byte.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ident {
    Measurement,
    Tag,
}

/// Length `s` has once the policy is applied to its end (trailing backslashes stripped under
/// `Sanitize`). Zero means the string has nothing left to write.
fn kept_len(s: &str, policy: Policy) -> usize {
    match policy {
        Policy::Reject => s.len(),
        Policy::Sanitize => s.trim_end_matches('\\').len(),
    }
}

/// Appends an identifier with 1.x escaping. Returns how many alterations were made, or the
/// first problem found. On error the caller truncates the line.
fn ident(out: &mut BytesMut, s: &str, kind: Ident, policy: Policy) -> Result<u32, Problem> {
    let bytes = s.as_bytes();
    let first_bad = kind == Ident::Measurement && matches!(bytes.first(), Some(b'#' | b'\t' | 0));
    if !first_bad && !bytes.iter().any(|&b| IDENT_SPECIAL[b as usize]) {
        if bytes.is_empty() {
            return Err(Problem::Empty);
        }
        out.extend_from_slice(bytes);
        return Ok(0);
    }
    let end = kept_len(s, policy);
    if end == 0 {
        return Err(Problem::Empty);
    }
    let mut edits = u32::from(end != bytes.len());
    if policy == Policy::Reject && bytes[end - 1] == b'\\' {
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
    for (i, &b) in bytes[..end].iter().enumerate() {
        let mut c = b;
        if i == 0 && first_bad {
            fix(&mut edits, Problem::BadFirstCharacter)?;
            c = b'_';
        } else if c == b'\n' || c == b'\r' {
            fix(&mut edits, Problem::LineBreak)?;
            c = b' ';
        }
        if c == b'\\' {
            backslashes += 1;
            continue;
        }
        if c == b' ' && backslashes % 2 == 1 {
            fix(&mut edits, Problem::BackslashBeforeSpace)?;
            c = b'_';
        }
        backslashes = 0;
        let escape = matches!(c, b',' | b'=' | b' ');
        if c != b || escape {
            out.extend_from_slice(&bytes[run_start..i]);
            if escape {
                out.put_u8(b'\\');
            }
            out.put_u8(c);
            run_start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[run_start..end]);
    Ok(edits)
}

/// Appends the body of a string field (without the quotes): `"` and `\` escaped, everything
/// else, newlines included, as it is.
fn string_field(out: &mut BytesMut, s: &str) {
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'"' || b == b'\\' {
            out.extend_from_slice(&bytes[run_start..i]);
            out.put_u8(b'\\');
            run_start = i;
        }
    }
    out.extend_from_slice(&bytes[run_start..]);
}

/// Appends ` <timestamp>\n`.
fn timestamp(out: &mut BytesMut, ms: i64) {
    out.put_u8(b' ');
    out.extend_from_slice(itoa::Buffer::new().format(ms).as_bytes());
    out.put_u8(b'\n');
}

/// Appends one tag, `,key=value`. An empty value means no tag (InfluxDB treats an absent tag
/// as empty); an empty key is a problem, or under `Sanitize` the tag is left out.
fn tag(
    out: &mut BytesMut,
    key: &str,
    value: &str,
    policy: Policy,
    place: impl Fn(bool) -> Place,
) -> Result<u32, EncodeError> {
    if kept_len(value, policy) == 0 {
        return Ok(u32::from(!value.is_empty()));
    }
    if kept_len(key, policy) == 0 {
        return match policy {
            Policy::Sanitize => Ok(1),
            Policy::Reject => Err(EncodeError::Unrepresentable {
                place: place(true),
                problem: Problem::Empty,
            }),
        };
    }
    out.put_u8(b',');
    let mut edits =
        ident(out, key, Ident::Tag, policy).map_err(|problem| EncodeError::Unrepresentable {
            place: place(true),
            problem,
        })?;
    out.put_u8(b'=');
    edits +=
        ident(out, value, Ident::Tag, policy).map_err(|problem| EncodeError::Unrepresentable {
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
