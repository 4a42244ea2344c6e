//! Property tests: every accepted message becomes exactly one line that a line-protocol
//! parser reads back as the same point; every rejection names a real problem of the input.
//!
//! The parser is the `influxdb-line-protocol` crate (InfluxDB IOx rules). Where IOx and 1.x
//! disagree (backslashes, tabs and NUL in identifiers; `\=` in measurements) the generator
//! here stays clear of it, and `tests/influx_roundtrip.rs` asks a real 1.x server instead.

mod common;

use std::collections::BTreeMap;

use bytes::BytesMut;
use common::strategy::{Case, assert_rejection_is_justified, case, hostile_string};
use influxdb_line_protocol::{FieldValue, parse_lines};
use monasca_persister::{Converter, Dialect, Encoder, Kind, Policy};
use proptest::prelude::*;
use serde_json::Value;

fn convert(kind: Kind, policy: Policy, json: &str) -> Result<String, monasca_persister::Reject> {
    let mut c = Converter::new(policy, 1 << 20);
    let mut out = BytesMut::new();
    c.convert(kind, json.as_bytes(), &mut out)?;
    Ok(String::from_utf8(out.to_vec()).expect("UTF-8 output"))
}

/// Tab and NUL end identifiers for the IOx parser (not for 1.x): replaced, so that the v3
/// property can use IOx as its oracle for everything else, backslashes included.
fn without_tab_and_nul(mut case: Case) -> Case {
    let clean = |s: &mut String| *s = s.replace(['\t', '\0'], "x");
    clean(&mut case.name);
    clean(&mut case.tenant);
    clean(&mut case.region);
    for (k, v) in &mut case.dims {
        clean(k);
        clean(v);
    }
    case
}

fn check_metric_line(case: &Case, line: &str) -> Result<(), TestCaseError> {
    prop_assert!(line.ends_with('\n'));
    prop_assert_eq!(
        line.matches('\n').count(),
        1,
        "metric lines never hold a raw newline"
    );
    let parsed: Vec<_> = parse_lines(line).collect();
    prop_assert_eq!(parsed.len(), 1);
    let p = parsed
        .into_iter()
        .next()
        .unwrap()
        .map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
    // IOx does not unescape `\=` in measurements; 1.6 does (see the module doc).
    prop_assert_eq!(
        p.series.measurement.to_string().replace("\\=", "="),
        case.name.clone()
    );
    let tags: BTreeMap<String, String> = p
        .series
        .tag_set
        .iter()
        .flatten()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    prop_assert_eq!(tags, case.expected_tags());
    prop_assert_eq!(p.field_set.len(), 2);
    match &p.field_set[0] {
        (k, FieldValue::F64(v)) if k.as_str() == "value" => {
            prop_assert_eq!(v.to_bits(), case.value.to_bits())
        }
        other => return Err(TestCaseError::fail(format!("first field {other:?}"))),
    }
    match &p.field_set[1] {
        (k, FieldValue::String(s)) if k.as_str() == "value_meta" => {
            let v: Value = serde_json::from_str(s.as_str())
                .map_err(|e| TestCaseError::fail(format!("value_meta not JSON: {e}: {s}")))?;
            prop_assert_eq!(v, case.expected_value_meta());
        }
        other => return Err(TestCaseError::fail(format!("second field {other:?}"))),
    }
    prop_assert_eq!(p.timestamp, Some(1_554_725_987_408));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn accepted_metric_is_one_line_with_the_same_point(case in case(true)) {
        match convert(Kind::Metrics, Policy::Reject, &case.to_json(1_554_725_987_408)) {
            Ok(line) => check_metric_line(&case, &line)?,
            Err(reject) => assert_rejection_is_justified(&case, &reject),
        }
    }

    #[test]
    fn any_identifier_bytes_never_make_more_than_one_line(case in case(false)) {
        // Backslashes, tabs and NUL included: the line count and the tenant must hold even
        // where the IOx parser's reading of the values cannot be trusted.
        for policy in [Policy::Reject, Policy::Sanitize] {
            match convert(Kind::Metrics, policy, &case.to_json(7)) {
                Ok(line) => {
                    prop_assert_eq!(line.matches('\n').count(), 1);
                    prop_assert!(line.ends_with(" 7\n"));
                    let tenant_tags = line.matches(",_tenant_id=").count();
                    prop_assert_eq!(tenant_tags, 1, "exactly one tenant tag: {}", line);
                }
                Err(reject) if policy == Policy::Reject => assert_rejection_is_justified(&case, &reject),
                Err(reject) => {
                    // Sanitize only gives up on names that are empty once cleaned.
                    let msg = reject.to_string();
                    prop_assert!(msg.ends_with("is empty"), "{} for {:?}", msg, case);
                }
            }
        }
    }

    #[test]
    fn v3_line_reads_back_as_the_same_point_backslashes_included(
        case in case(false).prop_map(without_tab_and_nul)
    ) {
        // The IOx parser is InfluxDB 3's: it unescapes `\\` as the v3 dialect expects.
        let v3 = Encoder { policy: Policy::Reject, dialect: Dialect::V3 };
        let mut c = Converter::new(v3, 1 << 20);
        let mut out = BytesMut::new();
        match c.convert(Kind::Metrics, case.to_json(1_554_725_987_408).as_bytes(), &mut out) {
            Ok(_) => {
                let line = std::str::from_utf8(&out).unwrap();
                // IOx refuses an identifier whose text ends in a backslash, even an escaped
                // one (VictoriaMetrics stores it: tests/victoria_dialect.rs).
                let ends_in_backslash = |s: &str| s.ends_with('\\');
                let dims = case.expected_tags();
                if ends_in_backslash(&case.name)
                    || dims.iter().any(|(k, v)| ends_in_backslash(k) || ends_in_backslash(v))
                {
                    let parsed: Vec<_> = parse_lines(line).collect();
                    prop_assert_eq!(parsed.len(), 1);
                    let err = parsed[0].as_ref().expect_err("IOx refuses a trailing backslash");
                    prop_assert!(err.to_string().contains("may not end with a backslash"), "{}", err);
                } else {
                    check_metric_line(&case, line)?;
                }
            }
            Err(reject) => {
                // Only what no dialect can write: line breaks, comment-like names, empties,
                // over-long series keys.
                let msg = reject.to_string();
                prop_assert!(
                    msg.ends_with("contains a line break")
                        || msg.ends_with("starts with '#', tab or NUL")
                        || msg.ends_with("is empty")
                        || msg.contains("series key"),
                    "{} for {:?}", msg, case
                );
            }
        }
    }

    #[test]
    fn sanitized_metric_is_one_parseable_line(case in case(true)) {
        if let Ok(line) = convert(Kind::Metrics, Policy::Sanitize, &case.to_json(3)) {
            prop_assert_eq!(line.matches('\n').count(), 1);
            let parsed: Vec<_> = parse_lines(&line).collect();
            prop_assert_eq!(parsed.len(), 1);
            prop_assert!(parsed[0].is_ok(), "{:?}: {}", parsed[0], line);
        }
    }

    #[test]
    fn alarm_string_fields_survive_any_content(
        tenant in hostile_string(10, true).prop_filter("non-empty, storable", |t| {
            !t.is_empty() && !t.contains(['\n', '\r'])
        }),
        reason in hostile_string(40, false),
        alarm_id in hostile_string(10, false),
        metric_name in hostile_string(10, false),
    ) {
        let json = serde_json::json!({"alarm-transitioned": {
            "tenantId": tenant, "alarmId": alarm_id, "oldState": "OK", "newState": "ALARM",
            "metrics": [{"id": null, "name": metric_name}], "stateChangeReason": reason,
            "subAlarms": [{"subAlarmState": reason}], "timestamp": 99}});
        let line = convert(Kind::Alarms, Policy::Reject, &json.to_string()).expect("accepted");
        let parsed: Vec<_> = parse_lines(&line).collect();
        prop_assert_eq!(parsed.len(), 1, "one line: {}", line);
        let p = parsed.into_iter().next().unwrap().map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
        let tags: Vec<_> = p.series.tag_set.iter().flatten().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        prop_assert_eq!(tags, vec![("tenant_id".to_owned(), tenant.clone())]);
        let fields: BTreeMap<String, String> = p.field_set.iter().map(|(k, v)| match v {
            FieldValue::String(s) => (k.to_string(), s.to_string()),
            other => (k.to_string(), format!("{other:?}")),
        }).collect();
        prop_assert_eq!(&fields["tenant_id"], &tenant);
        prop_assert_eq!(&fields["alarm_id"], &alarm_id);
        prop_assert_eq!(&fields["reason"], &reason);
        let metrics: Value = serde_json::from_str(&fields["metrics"]).expect("metrics is JSON");
        prop_assert_eq!(&metrics, &json["alarm-transitioned"]["metrics"]);
        let subs: Value = serde_json::from_str(&fields["sub_alarms"]).expect("sub_alarms is JSON");
        prop_assert_eq!(subs, serde_json::json!([{"sub_alarm_state": reason}]));
        prop_assert_eq!(p.timestamp, Some(99));
    }
}
