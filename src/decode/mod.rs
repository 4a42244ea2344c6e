//! Decoding: one Kafka payload → a typed message that borrows from a scratch buffer.
//!
//! Owns the per-worker parse state (the scratch copy of the payload, simd-json's buffers and
//! the reused tape), so that after warm-up a message is decoded without touching the heap.
//! Strings in the decoded structs point into the scratch copy, where simd-json unescapes them
//! in place. Must never: allocate per message, panic on any input, or accept a message that
//! lacks a required field.

mod alarm;
mod json;
mod metric;

pub use alarm::AlarmTransition;
pub use json::Json;
pub(crate) use metric::key_less;
pub use metric::{DimValue, Dimensions, Metric, REGION_TAG, TENANT_TAG};

use simd_json::{Buffers, Node, StaticNode, Tape};

/// Why a payload could not be decoded. Each variant is a per-message outcome that the pipeline
/// counts and dead-letters; none of them stops anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload exceeds the configured `max_message_bytes`.
    #[error("message too large: {size} bytes (limit {limit})")]
    TooLarge { size: usize, limit: usize },
    /// The payload is not UTF-8; JSON text must be.
    #[error("invalid UTF-8 at byte {at}")]
    InvalidUtf8 { at: usize },
    /// The payload is not a JSON document.
    #[error("invalid JSON at byte {at}: {what}")]
    InvalidJson { at: usize, what: &'static str },
    /// A required field is absent or null.
    #[error("missing field `{field}`")]
    Missing { field: &'static str },
    /// A field has a type the format does not allow.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    /// A numeric string that does not parse as a number.
    #[error("field `{field}` is not a number")]
    NotANumber { field: &'static str },
    /// A timestamp outside the range of signed 64-bit milliseconds.
    #[error("field `{field}` is out of range")]
    OutOfRange { field: &'static str },
}

/// Largest accepted payload unless configured otherwise: far above any real Monasca message,
/// small enough that one message cannot make a worker hold a large buffer.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Per-worker decoder. Reuse one per thread; it keeps its buffers between messages.
pub struct Decoder {
    /// Mutable copy of the payload, followed by simd-json's padding: simd-json unescapes
    /// strings in place, and Kafka hands us an immutable slice.
    scratch: Vec<u8>,
    /// simd-json's stage-1/stage-2 buffers, reused so parsing does not allocate.
    buffers: Buffers,
    /// The tape's allocation, kept between messages with its lifetime erased by
    /// `Tape::reset` (it is empty whenever it is stored here).
    tape: Option<Tape<'static>>,
    /// Payloads larger than this are rejected before parsing.
    max_message_bytes: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE_BYTES)
    }
}

impl Decoder {
    /// A decoder that rejects payloads longer than `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            scratch: Vec::with_capacity(4096),
            buffers: Buffers::new(4096),
            tape: Some(Tape(Vec::with_capacity(256))),
            max_message_bytes,
        }
    }

    /// Decodes a metric envelope and hands it (or the reason it was rejected) to `f`.
    ///
    /// A closure rather than a return value because the decoded struct borrows the
    /// decoder's scratch buffer and tape, which are recycled as soon as `f` returns.
    pub fn metric<R>(
        &mut self,
        payload: &[u8],
        f: impl FnOnce(Result<Metric<'_, '_>, DecodeError>) -> R,
    ) -> R {
        self.with_tape(payload, |root| match root {
            Ok(root) => f(Metric::from_json(root)),
            Err(e) => f(Err(e)),
        })
    }

    /// Decodes an alarm state transition and hands it (or the reason) to `f`.
    pub fn alarm<R>(
        &mut self,
        payload: &[u8],
        f: impl FnOnce(Result<AlarmTransition<'_, '_>, DecodeError>) -> R,
    ) -> R {
        self.with_tape(payload, |root| f(root.and_then(AlarmTransition::from_json)))
    }

    /// Parses `payload` into the reused tape and calls `f` with the root value.
    fn with_tape<R>(
        &mut self,
        payload: &[u8],
        f: impl FnOnce(Result<Json<'_, '_>, DecodeError>) -> R,
    ) -> R {
        if payload.len() > self.max_message_bytes {
            return f(Err(DecodeError::TooLarge {
                size: payload.len(),
                limit: self.max_message_bytes,
            }));
        }
        // The padding after the copy may hold anything (an earlier message's bytes), so the
        // buffer is only ever grown, never cleared or zeroed per message.
        let padded = payload.len() + simd_json::INPUT_PADDING;
        if self.scratch.len() < padded {
            self.scratch.resize(padded, 0);
        }
        let scratch = &mut self.scratch[..padded];
        scratch[..payload.len()].copy_from_slice(payload);
        let mut tape: Tape<'_> = self.tape.take().unwrap_or_else(|| Tape(Vec::new())).reset();
        let parsed =
            simd_json::fill_tape_padded(scratch, payload.len(), &mut self.buffers, &mut tape);
        let out = match parsed {
            Ok(()) => match tape.0.first() {
                Some(_) => f(Ok(Json::new(&tape.0))),
                None => f(Err(DecodeError::InvalidJson {
                    at: 0,
                    what: "empty document",
                })),
            },
            Err(e) => f(Err(cut_off(payload).unwrap_or_else(|| map_parse_error(&e)))),
        };
        self.tape = Some(tape.reset());
        out
    }
}

/// A document that ends inside a string or with containers still open was cut off (a
/// truncated message): say so, at its end, rather than wherever simd-json's structural pass
/// gave up (often byte 0). Only runs for input that failed to parse.
fn cut_off(payload: &[u8]) -> Option<DecodeError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in payload {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            // More closing than opening: not a cut-off document.
            b'}' | b']' => depth = depth.checked_sub(1)?,
            _ => {}
        }
    }
    (in_string || depth > 0).then_some(DecodeError::InvalidJson {
        at: payload.len(),
        what: "unexpected end of input (message cut off)",
    })
}

fn map_parse_error(e: &simd_json::Error) -> DecodeError {
    use simd_json::ErrorType as E;
    let at = e.index();
    let what = match e.error() {
        E::InvalidUtf8 => return DecodeError::InvalidUtf8 { at },
        E::Eof => "unexpected end of input",
        E::InvalidEscape | E::InvalidUnicodeEscape | E::InvalidUnicodeCodepoint => {
            "invalid string escape"
        }
        E::InvalidNumber | E::InvalidExponent => "invalid number",
        E::ExpectedObjectColon => "expected `:`",
        E::ExpectedMapComma | E::ExpectedArrayComma => "expected `,`",
        E::KeyMustBeAString | E::BadKeyType => "object key must be a string",
        E::NoStructure => "no JSON value",
        E::InputTooLarge => "input too large",
        _ => "syntax error",
    };
    DecodeError::InvalidJson { at, what }
}

/// Reads a number that may also arrive as a numeric string, as the Monasca API and the
/// Python persister allow, or as a boolean (1.0 or 0.0, Python's `float(True)`; the Monasca
/// API accepts `"value": true`).
fn number_f64(field: &'static str, v: Json<'_, '_>) -> Result<f64, DecodeError> {
    match v.node() {
        Node::Static(StaticNode::F64(f)) => Ok(f),
        Node::Static(StaticNode::Bool(b)) => Ok(f64::from(u8::from(b))),
        Node::Static(StaticNode::I64(i)) => Ok(i as f64),
        Node::Static(StaticNode::U64(u)) => Ok(u as f64),
        Node::String(s) => {
            let mut buf = [0; 64];
            python_digits(s.trim(), &mut buf)
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or(DecodeError::NotANumber { field })
        }
        Node::Static(StaticNode::Null) => Err(DecodeError::Missing { field }),
        _ => Err(DecodeError::WrongType {
            field,
            expected: "a number or a numeric string",
        }),
    }
}

/// `s` with the underscores Python's `float()` and `int()` allow (`1_000`: each one between
/// two digits) removed, copied into `buf` only when there are any. `None` for a misplaced
/// underscore or a string too long to be a number.
fn python_digits<'b>(s: &'b str, buf: &'b mut [u8; 64]) -> Option<&'b str> {
    let bytes = s.as_bytes();
    if !bytes.contains(&b'_') {
        return Some(s);
    }
    let mut n = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'_' {
            let digit_before = i > 0 && bytes[i - 1].is_ascii_digit();
            let digit_after = bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
            if !(digit_before && digit_after) {
                return None;
            }
            continue;
        }
        *buf.get_mut(n)? = b;
        n += 1;
    }
    std::str::from_utf8(&buf[..n]).ok()
}

/// A millisecond timestamp: integer, float (truncated toward zero) or numeric string.
fn timestamp_ms(field: &'static str, v: Json<'_, '_>) -> Result<i64, DecodeError> {
    let from_float = |f: f64| {
        // `as` saturates; reject instead of silently clamping to the range's end.
        if f.is_finite() && f > -9.223_372_036_854_776e18 && f < 9.223_372_036_854_776e18 {
            Ok(f.trunc() as i64)
        } else {
            Err(DecodeError::OutOfRange { field })
        }
    };
    match v.node() {
        Node::Static(StaticNode::I64(i)) => Ok(i),
        Node::Static(StaticNode::U64(u)) => {
            i64::try_from(u).map_err(|_| DecodeError::OutOfRange { field })
        }
        Node::Static(StaticNode::F64(f)) => from_float(f),
        Node::String(s) => {
            let mut buf = [0; 64];
            let s = python_digits(s.trim(), &mut buf).ok_or(DecodeError::NotANumber { field })?;
            match s.parse::<i64>() {
                Ok(i) => Ok(i),
                Err(_) => from_float(
                    s.parse::<f64>()
                        .map_err(|_| DecodeError::NotANumber { field })?,
                ),
            }
        }
        Node::Static(StaticNode::Null) => Err(DecodeError::Missing { field }),
        _ => Err(DecodeError::WrongType {
            field,
            expected: "a number or a numeric string",
        }),
    }
}

/// A required string.
fn string<'a>(field: &'static str, v: Option<Json<'_, 'a>>) -> Result<&'a str, DecodeError> {
    match v.map(|v| v.node()) {
        Some(Node::String(s)) => Ok(s),
        None | Some(Node::Static(StaticNode::Null)) => Err(DecodeError::Missing { field }),
        Some(_) => Err(DecodeError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

/// An optional string: absent and null both mean "".
fn opt_string<'a>(field: &'static str, v: Option<Json<'_, 'a>>) -> Result<&'a str, DecodeError> {
    match v.map(|v| v.node()) {
        None | Some(Node::Static(StaticNode::Null)) => Ok(""),
        Some(Node::String(s)) => Ok(s),
        Some(_) => Err(DecodeError::WrongType {
            field,
            expected: "a string or null",
        }),
    }
}

/// A required value of any type (but not null).
fn required<'t, 'a>(
    field: &'static str,
    v: Option<Json<'t, 'a>>,
) -> Result<Json<'t, 'a>, DecodeError> {
    match v {
        Some(v) if !v.is_null() => Ok(v),
        _ => Err(DecodeError::Missing { field }),
    }
}

/// The object under `field`, or an error naming it.
fn object<'t, 'a>(
    field: &'static str,
    v: Option<Json<'t, 'a>>,
) -> Result<Json<'t, 'a>, DecodeError> {
    let v = required(field, v)?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(DecodeError::WrongType {
            field,
            expected: "an object",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric<T>(json: &str, f: impl FnOnce(&Metric<'_, '_>) -> T) -> Result<T, DecodeError> {
        Decoder::default().metric(json.as_bytes(), |m| m.map(|m| f(&m)))
    }

    fn envelope(metric_fields: &str) -> String {
        format!(
            r#"{{"metric":{{{metric_fields}}},"meta":{{"tenantId":"t","region":"r"}},"creation_time":1}}"#
        )
    }

    #[test]
    fn creation_time_is_read_in_seconds_or_milliseconds_and_never_rejects() {
        let created = |extra: &str| {
            let json = format!(
                r#"{{"metric":{{"name":"m","timestamp":1,"value":1}},"meta":{{"tenantId":"t","region":"r"}}{extra}}}"#
            );
            metric(&json, |m| m.created_ms)
        };
        assert_eq!(
            created(r#","creation_time":1700000000"#),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            created(r#","creation_time":1700000000.25"#),
            Ok(1_700_000_000_250)
        );
        assert_eq!(
            created(r#","creation_time":1700000000123"#),
            Ok(1_700_000_000_123),
            "already milliseconds"
        );
        for unknown in [
            "",
            r#","creation_time":null"#,
            r#","creation_time":"1700000000""#,
            r#","creation_time":-5"#,
            r#","creation_time":{}"#,
            r#","creation_time":1e300"#,
        ] {
            assert_eq!(created(unknown), Ok(0), "{unknown}");
        }
    }

    #[test]
    fn integer_timestamp() {
        let ts = metric(
            &envelope(r#""name":"m","timestamp":1554725987408,"value":1"#),
            |m| m.timestamp_ms,
        );
        assert_eq!(ts, Ok(1554725987408));
    }

    #[test]
    fn float_timestamp_truncates_toward_zero() {
        let ts = metric(
            &envelope(r#""name":"m","timestamp":1554725987408.9,"value":1"#),
            |m| m.timestamp_ms,
        );
        assert_eq!(ts, Ok(1554725987408));
        let neg = metric(&envelope(r#""name":"m","timestamp":-1.9,"value":1"#), |m| {
            m.timestamp_ms
        });
        assert_eq!(neg, Ok(-1));
    }

    #[test]
    fn numeric_string_timestamp_and_value() {
        let got = metric(
            &envelope(r#""name":"m","timestamp":"1554725987408.5","value":"7.25""#),
            |m| (m.timestamp_ms, m.value),
        );
        assert_eq!(got, Ok((1554725987408, 7.25)));
    }

    #[test]
    fn underscores_between_digits_are_accepted_as_python_does() {
        let got = metric(
            &envelope(r#""name":"m","timestamp":"1_554_725_987_408","value":"1_000.2_5""#),
            |m| (m.timestamp_ms, m.value),
        );
        assert_eq!(got, Ok((1554725987408, 1000.25)));
        for bad in ["_1", "1_", "1__0", "1_.5", "1._5"] {
            let got = metric(
                &envelope(&format!(r#""name":"m","timestamp":1,"value":"{bad}""#)),
                |_| (),
            );
            assert_eq!(
                got,
                Err(DecodeError::NotANumber {
                    field: "metric.value"
                }),
                "{bad}"
            );
        }
    }

    #[test]
    fn non_numeric_string_value_is_rejected_by_name() {
        let got = metric(
            &envelope(r#""name":"m","timestamp":1,"value":"seven""#),
            |_| (),
        );
        assert_eq!(
            got,
            Err(DecodeError::NotANumber {
                field: "metric.value"
            })
        );
    }

    #[test]
    fn timestamp_out_of_range_is_rejected() {
        let got = metric(
            &envelope(r#""name":"m","timestamp":1e300,"value":1"#),
            |_| (),
        );
        assert_eq!(
            got,
            Err(DecodeError::OutOfRange {
                field: "metric.timestamp"
            })
        );
        let got = metric(
            &envelope(r#""name":"m","timestamp":18446744073709551615,"value":1"#),
            |_| (),
        );
        assert_eq!(
            got,
            Err(DecodeError::OutOfRange {
                field: "metric.timestamp"
            })
        );
    }

    #[test]
    fn missing_required_fields_are_named() {
        for (fields, missing) in [
            (r#""timestamp":1,"value":1"#, "metric.name"),
            (r#""name":"m","value":1"#, "metric.timestamp"),
            (r#""name":"m","timestamp":1"#, "metric.value"),
            (r#""name":null,"timestamp":1,"value":1"#, "metric.name"),
            (r#""name":"m","timestamp":1,"value":null"#, "metric.value"),
        ] {
            assert_eq!(
                metric(&envelope(fields), |_| ()),
                Err(DecodeError::Missing { field: missing }),
                "{fields}"
            );
        }
        let no_region =
            r#"{"metric":{"name":"m","timestamp":1,"value":1},"meta":{"tenantId":"t"}}"#;
        assert_eq!(
            metric(no_region, |_| ()),
            Err(DecodeError::Missing {
                field: "meta.region"
            })
        );
        let no_meta = r#"{"metric":{"name":"m","timestamp":1,"value":1}}"#;
        assert_eq!(
            metric(no_meta, |_| ()),
            Err(DecodeError::Missing { field: "meta" })
        );
    }

    #[test]
    fn ill_typed_fields_are_named() {
        for (json, field) in [
            (
                envelope(r#""name":5,"timestamp":1,"value":1"#),
                "metric.name",
            ),
            (
                envelope(r#""name":"m","timestamp":1,"value":[1]"#),
                "metric.value",
            ),
            (
                envelope(r#""name":"m","timestamp":true,"value":1"#),
                "metric.timestamp",
            ),
            (
                envelope(r#""name":"m","timestamp":1,"value":1,"dimensions":{"a":[1]}"#),
                "metric.dimensions",
            ),
            (
                envelope(r#""name":"m","timestamp":1,"value":1,"dimensions":{"a":{}}"#),
                "metric.dimensions",
            ),
            (
                r#"{"metric":{"name":"m","timestamp":1,"value":1},"meta":{"tenantId":5,"region":"r"}}"#.to_owned(),
                "meta.tenantId",
            ),
            ("[1,2]".to_owned(), "message"),
        ] {
            let got = metric(&json, |_| ());
            assert!(
                matches!(got, Err(DecodeError::WrongType { field: f, .. }) if f == field),
                "{json}: {got:?}"
            );
        }
    }

    #[test]
    fn boolean_value_is_one_or_zero_as_in_python() {
        for (v, want) in [("true", 1.0), ("false", 0.0)] {
            let got = metric(
                &envelope(&format!(r#""name":"m","timestamp":1,"value":{v}"#)),
                |m| m.value,
            );
            assert_eq!(got, Ok(want), "{v}");
        }
    }

    #[test]
    fn number_and_boolean_dimension_values_are_kept_as_parsed() {
        let got = metric(
            &envelope(
                r#""name":"m","timestamp":1,"value":1,"dimensions":{"i":-3,"u":18446744073709551615,"f":1.5,"b":true,"n":null,"s":"x"}"#,
            ),
            |m| {
                let d = &m.dimensions;
                d.iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect::<Vec<_>>()
            },
        );
        let want = [
            ("b", DimValue::Bool(true)),
            ("f", DimValue::Float(1.5)),
            ("i", DimValue::Int(-3)),
            ("n", DimValue::Str("")),
            ("s", DimValue::Str("x")),
            ("u", DimValue::UInt(u64::MAX)),
        ];
        let want: Vec<String> = want.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        assert_eq!(got, Ok(want));
    }

    #[test]
    fn value_meta_of_any_type_python_treats_as_false_is_none() {
        for vm in ["null", "false", "0", "0.0", r#""""#, "[]", "{}"] {
            let got = metric(
                &envelope(&format!(
                    r#""name":"m","timestamp":1,"value":1,"value_meta":{vm}"#
                )),
                |m| m.value_meta.is_none(),
            );
            assert_eq!(got, Ok(true), "{vm}");
        }
        for vm in ["true", "1", r#""x""#, "[0]", r#"{"a":null}"#] {
            let got = metric(
                &envelope(&format!(
                    r#""name":"m","timestamp":1,"value":1,"value_meta":{vm}"#
                )),
                |m| m.value_meta.is_some(),
            );
            assert_eq!(got, Ok(true), "{vm}");
        }
    }

    #[test]
    fn absent_null_and_empty_optionals() {
        for fields in [
            r#""name":"m","timestamp":1,"value":1"#,
            r#""name":"m","timestamp":1,"value":1,"dimensions":null,"value_meta":null"#,
            r#""name":"m","timestamp":1,"value":1,"dimensions":{},"value_meta":{}"#,
        ] {
            let got = metric(&envelope(fields), |m| {
                (
                    m.dimensions.len(),
                    m.value_meta.is_none_or(|v| v.is_empty_container()),
                )
            });
            assert_eq!(got, Ok((0, true)), "{fields}");
        }
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let got = metric(
            &envelope(r#""name":"m","x":[1,{"y":2}],"timestamp":1,"value":1,"extra":{"a":"b"}"#),
            |m| m.name.to_owned(),
        );
        assert_eq!(got, Ok("m".to_owned()));
    }

    #[test]
    fn escaped_strings_are_unescaped_in_place() {
        let got = metric(
            &envelope(r#""name":"a\"b\\c\u00e9\n","timestamp":1,"value":1"#),
            |m| m.name.to_owned(),
        );
        assert_eq!(got, Ok("a\"b\\c\u{e9}\n".to_owned()));
    }

    #[test]
    fn a_cut_off_message_is_reported_at_its_end() {
        let cut = |s: &str| metric(s, |_| ()).err();
        for s in [
            r#"{"metric":{"na"#,
            r#"{"metric":{"name":"x""#,
            r#"{"metric":{"name":"a"}""#,
            r#"{"metric": [1,2"#,
        ] {
            assert_eq!(
                cut(s),
                Some(DecodeError::InvalidJson {
                    at: s.len(),
                    what: "unexpected end of input (message cut off)"
                }),
                "{s}"
            );
        }
        // Complete but wrong: the parser's own position and reason.
        for s in [r#"{"a":tru}"#, r#"{"a":1}}"#, r#"{"a" 1}"#] {
            assert!(
                !matches!(cut(s), Some(DecodeError::InvalidJson { what, .. }) if what.contains("cut off")),
                "{s}"
            );
        }
    }

    #[test]
    fn invalid_json_is_rejected_with_position() {
        assert!(matches!(
            metric("{\"metric\":", |_| ()),
            Err(DecodeError::InvalidJson { .. })
        ));
        assert!(matches!(
            metric("", |_| ()),
            Err(DecodeError::InvalidJson { .. })
        ));
        assert!(matches!(
            metric("{} {}", |_| ()),
            Err(DecodeError::InvalidJson { .. })
        ));
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let mut bytes = envelope(r#""name":"mXX","timestamp":1,"value":1"#).into_bytes();
        let at = bytes.windows(2).position(|w| w == b"XX").unwrap();
        bytes[at] = 0xff;
        let got = Decoder::default().metric(&bytes, |m| m.map(|_| ()));
        assert!(
            matches!(got, Err(DecodeError::InvalidUtf8 { .. })),
            "{got:?}"
        );
    }

    #[test]
    fn too_large_message_is_rejected_before_parsing() {
        let json = envelope(r#""name":"m","timestamp":1,"value":1"#);
        let got = Decoder::new(10).metric(json.as_bytes(), |m| m.map(|_| ()));
        assert_eq!(
            got,
            Err(DecodeError::TooLarge {
                size: json.len(),
                limit: 10
            })
        );
    }

    #[test]
    fn alarm_required_fields_are_named() {
        let got = Decoder::default().alarm(br#"{"alarm-transitioned":{"tenantId":"t"}}"#, |a| {
            a.map(|_| ())
        });
        assert_eq!(
            got,
            Err(DecodeError::Missing {
                field: "alarm-transitioned.alarmId"
            })
        );
        let got = Decoder::default().alarm(br#"{"other":{}}"#, |a| a.map(|_| ()));
        assert_eq!(
            got,
            Err(DecodeError::Missing {
                field: "alarm-transitioned"
            })
        );
    }

    /// The scratch buffer's padding is not cleared between messages: whatever an earlier,
    /// longer message left there (quotes, backslashes, structure) must not change how a
    /// shorter one decodes, whether it is valid, cut off or malformed.
    #[test]
    fn stale_padding_from_a_longer_message_changes_nothing() {
        let long = format!(
            r#"{{"metric":{{"name":"{q}","dimensions":{{"{q}":"{q}"}},"timestamp":1,"value":1}},"meta":{{"tenantId":"t","region":"r"}}}}"#,
            q = r#"\\\"\\\"}],:{[\"\\"#.repeat(40)
        );
        let short = [
            envelope(r#""name":"m","timestamp":1,"value":1"#),
            envelope(r#""name":"a\"b","dimensions":{"k":"v\\"},"timestamp":1,"value":"2""#),
            r#"{"metric":{"name":"m"#.to_owned(),
            r#"{"metric":{"name":"m\"#.to_owned(),
            r#"{"metric":{"name":"m","value":1e"#.to_owned(),
            r#"["#.to_owned(),
            r#"""#.to_owned(),
            "1".to_owned(),
            String::new(),
        ];
        let describe = |d: &mut Decoder, json: &str| {
            d.metric(json.as_bytes(), |m| {
                m.map(|m| format!("{} {:?} {} {}", m.name, m.dimensions, m.value, m.tenant_id))
            })
        };
        let mut reused = Decoder::default();
        for json in &short {
            let fresh = describe(&mut Decoder::default(), json);
            describe(&mut reused, &long).expect("the long message is valid");
            assert_eq!(describe(&mut reused, json), fresh, "{json}");
        }
    }
}
