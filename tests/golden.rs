//! Golden tests: for every sample message, our line and the Python persister's line describe
//! the same point — measurement, tags, timestamp, float value, and string fields (JSON ones
//! compared as JSON values, since our JSON text is compact and theirs is not).

use std::collections::BTreeMap;

use bytes::BytesMut;
use influxdb_line_protocol::{FieldValue, ParsedLine, parse_lines};
use monasca_persister::{Converter, Kind};
use serde_json::Value;

/// String fields that hold JSON text.
const JSON_FIELDS: &[&str] = &["value_meta", "metrics", "sub_alarms", "reason_data"];

#[derive(Debug, PartialEq)]
enum Field {
    Float(u64),
    Json(Value),
    Text(String),
}

#[derive(Debug, PartialEq)]
struct Point {
    measurement: String,
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, Field>,
    timestamp: Option<i64>,
}

fn point(p: ParsedLine<'_>) -> Point {
    Point {
        measurement: p.series.measurement.to_string(),
        tags: p
            .series
            .tag_set
            .iter()
            .flatten()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        fields: p
            .field_set
            .iter()
            .map(|(k, v)| {
                let f = match v {
                    FieldValue::F64(f) => Field::Float(f.to_bits()),
                    FieldValue::String(s) if JSON_FIELDS.contains(&k.as_str()) => {
                        Field::Json(serde_json::from_str(s.as_str()).expect("JSON field"))
                    }
                    FieldValue::String(s) => Field::Text(s.to_string()),
                    other => panic!("unexpected field type {other:?}"),
                };
                (k.to_string(), f)
            })
            .collect(),
        timestamp: p.timestamp,
    }
}

fn check(kind: Kind, input: &str, expected: &str) {
    let mut converter = Converter::default();
    let expected: Vec<&str> = expected.lines().collect();
    let messages: Vec<&str> = input.lines().collect();
    assert_eq!(messages.len(), expected.len(), "fixture sizes differ");
    for (i, (msg, want)) in messages.iter().zip(&expected).enumerate() {
        let mut out = BytesMut::new();
        converter
            .convert(kind, msg.as_bytes(), &mut out)
            .unwrap_or_else(|e| panic!("sample {}: rejected: {e}", i + 1));
        let ours = std::str::from_utf8(&out).unwrap();
        let mut ours: Vec<_> = parse_lines(ours).collect();
        let mut theirs: Vec<_> = parse_lines(want).collect();
        assert_eq!((ours.len(), theirs.len()), (1, 1), "sample {}", i + 1);
        let ours = point(ours.remove(0).expect("our line parses"));
        let theirs = point(theirs.remove(0).expect("python line parses"));
        assert_eq!(ours, theirs, "sample {}", i + 1);
    }
}

#[test]
fn metric_samples_match_the_python_persister() {
    check(
        Kind::Metrics,
        include_str!("fixtures/sample-metrics.jsonl"),
        include_str!("fixtures/sample-metrics.expected.lp"),
    );
}

#[test]
fn alarm_samples_match_the_python_persister() {
    check(
        Kind::Alarms,
        include_str!("fixtures/sample-alarms.jsonl"),
        include_str!("fixtures/sample-alarms.expected.lp"),
    );
}
