//! Round trip through a real InfluxDB 1.x: converted samples and a generated corpus of hostile
//! strings (backslashes included) are written with `/write` and read back with `/query`;
//! every tag and field must equal the input message. Here the server, not a parser crate, is
//! the judge of what our escaping means.

mod common;

use std::collections::{BTreeMap, HashMap};

use bytes::BytesMut;
use common::strategy::{Case, assert_rejection_is_justified, case};
use common::{Influx, Row, rows};
use monasca_persister::{Converter, Kind, Policy};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};

fn convert_all(kind: Kind, policy: Policy, messages: &[String]) -> (BytesMut, Vec<usize>) {
    let mut converter = Converter::new(policy, 1 << 20);
    let mut out = BytesMut::new();
    let mut accepted = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        if converter.convert(kind, m.as_bytes(), &mut out).is_ok() {
            accepted.push(i);
        }
    }
    (out, accepted)
}

fn create_db(influx: &Influx, db: &str) {
    influx.query("", &format!("CREATE DATABASE \"{db}\""));
}

fn write_ok(influx: &Influx, db: &str, lines: &[u8]) {
    let (status, body) = influx.write(db, lines);
    assert_eq!(status, 204, "InfluxDB refused our lines: {body}");
}

/// Tags and the two fields a metric message must have become.
fn expected_metric_columns(msg: &Value) -> BTreeMap<String, Value> {
    let m = &msg["metric"];
    let mut cols = BTreeMap::new();
    for (k, v) in m["dimensions"].as_object().into_iter().flatten() {
        cols.insert(k.clone(), v.clone());
    }
    cols.insert("_tenant_id".into(), msg["meta"]["tenantId"].clone());
    cols.insert("_region".into(), msg["meta"]["region"].clone());
    cols.insert("value".into(), m["value"].clone());
    let vm = match &m["value_meta"] {
        Value::Null => json!({}),
        v => v.clone(),
    };
    cols.insert("value_meta".into(), vm);
    cols
}

/// Parses the JSON-text fields so they compare as JSON values, and floats as floats.
fn normalize(mut cols: BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    for (k, v) in cols.iter_mut() {
        if matches!(
            k.as_str(),
            "value_meta" | "metrics" | "sub_alarms" | "reason_data"
        ) {
            if let Some(s) = v.as_str() {
                *v = serde_json::from_str(s).expect("JSON text field");
            }
        } else if let Some(f) = v.as_f64().filter(|_| v.is_number()) {
            *v = json!(f);
        }
    }
    cols
}

#[test]
fn samples_and_hostile_corpus_read_back_unchanged() {
    let influx = Influx::start();

    // --- metric samples -------------------------------------------------------------------
    create_db(&influx, "samples");
    let messages: Vec<String> = include_str!("fixtures/sample-metrics.jsonl")
        .lines()
        .map(str::to_owned)
        .collect();
    let (lines, accepted) = convert_all(Kind::Metrics, Policy::Reject, &messages);
    assert_eq!(accepted.len(), messages.len());
    write_ok(&influx, "samples", &lines);
    let got = rows(&influx.query("samples", "SELECT * FROM /.*/"));
    assert_eq!(got.len(), messages.len(), "one stored point per sample");
    let mut by_key: HashMap<(String, i64, String), BTreeMap<String, Value>> = HashMap::new();
    for r in got {
        let tags_id = r
            .columns
            .get("_tenant_id")
            .cloned()
            .unwrap_or_default()
            .to_string()
            + &r.columns
                .get("hostname")
                .cloned()
                .unwrap_or_default()
                .to_string();
        by_key.insert((r.measurement, r.time, tags_id), normalize(r.columns));
    }
    for m in &messages {
        let msg: Value = serde_json::from_str(m).unwrap();
        let ts = msg["metric"]["timestamp"].as_f64().unwrap().trunc() as i64;
        let name = msg["metric"]["name"].as_str().unwrap().to_owned();
        let expected = normalize(expected_metric_columns(&msg));
        let tags_id = expected["_tenant_id"].to_string()
            + &expected
                .get("hostname")
                .cloned()
                .unwrap_or_default()
                .to_string();
        let stored = by_key
            .get(&(name.clone(), ts, tags_id))
            .unwrap_or_else(|| panic!("no stored point for {m}"));
        assert_eq!(stored, &expected, "sample {m}");
    }

    // --- alarm samples --------------------------------------------------------------------
    let alarms: Vec<String> = include_str!("fixtures/sample-alarms.jsonl")
        .lines()
        .map(str::to_owned)
        .collect();
    let (lines, accepted) = convert_all(Kind::Alarms, Policy::Reject, &alarms);
    assert_eq!(accepted.len(), alarms.len());
    write_ok(&influx, "samples", &lines);
    let got = rows(&influx.query("samples", "SELECT * FROM alarm_state_history"));
    assert_eq!(got.len(), alarms.len());
    let by_time: HashMap<(i64, String), BTreeMap<String, Value>> = got
        .into_iter()
        .map(|r| {
            let id = r.columns["alarm_id"].as_str().unwrap().to_owned();
            ((r.time, id), normalize(r.columns))
        })
        .collect();
    for a in &alarms {
        let msg: Value = serde_json::from_str(a).unwrap();
        let t = &msg["alarm-transitioned"];
        let subs = serde_json::to_string(&t["subAlarms"])
            .unwrap()
            .replace("\"subAlarmExpression\"", "\"sub_alarm_expression\"")
            .replace("\"currentValues\"", "\"current_values\"")
            .replace("\"metricDefinition\"", "\"metric_definition\"")
            .replace("\"subAlarmState\"", "\"sub_alarm_state\"");
        let s = |v: &Value| json!(v.as_str().unwrap_or(""));
        let mut expected = BTreeMap::new();
        expected.insert("tenant_id".to_owned(), s(&t["tenantId"])); // tag and field share the column
        expected.insert("alarm_id".to_owned(), s(&t["alarmId"]));
        expected.insert("metrics".to_owned(), t["metrics"].clone());
        expected.insert("new_state".to_owned(), s(&t["newState"]));
        expected.insert("old_state".to_owned(), s(&t["oldState"]));
        expected.insert("link".to_owned(), s(&t["link"]));
        expected.insert("lifecycle_state".to_owned(), s(&t["lifecycleState"]));
        expected.insert("reason".to_owned(), s(&t["stateChangeReason"]));
        expected.insert("reason_data".to_owned(), json!({}));
        expected.insert(
            "sub_alarms".to_owned(),
            serde_json::from_str(&subs).unwrap(),
        );
        let key = (
            t["timestamp"].as_i64().unwrap(),
            t["alarmId"].as_str().unwrap().to_owned(),
        );
        let mut stored = by_time.get(&key).cloned().expect("stored alarm");
        // `tenant_id` is both a tag and a field; InfluxDB answers the field as `tenant_id_1`.
        if let Some(tag) = stored.remove("tenant_id_1") {
            assert_eq!(tag, expected["tenant_id"]);
        }
        assert_eq!(stored, expected, "alarm {a}");
    }

    // --- generated corpus with every hostile character --------------------------------------
    create_db(&influx, "corpus");
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = case(false);
    let cases: Vec<Case> = (0..1500)
        .map(|_| strategy.new_tree(&mut runner).expect("generate").current())
        .collect();
    let messages: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| c.to_json(i as i64))
        .collect();
    let mut converter = Converter::default();
    let mut lines = BytesMut::new();
    let mut accepted = Vec::new();
    for (i, (c, m)) in cases.iter().zip(&messages).enumerate() {
        match converter.convert(Kind::Metrics, m.as_bytes(), &mut lines) {
            Ok(_) => accepted.push(i),
            Err(reject) => assert_rejection_is_justified(c, &reject),
        }
    }
    assert!(
        accepted.len() > 300,
        "the corpus must exercise the accepted path"
    );
    write_ok(&influx, "corpus", &lines);
    let got = rows(&influx.query("corpus", "SELECT * FROM /.*/"));
    let by_time: HashMap<i64, Row> = got.into_iter().map(|r| (r.time, r)).collect();
    for i in accepted {
        let c = &cases[i];
        let row = by_time
            .get(&(i as i64))
            .unwrap_or_else(|| panic!("point {i} missing: {c:?}\nline: {}", messages[i]));
        assert_eq!(row.measurement, c.name, "measurement of {c:?}");
        let mut cols = normalize(row.columns.clone());
        let value = cols.remove("value").and_then(|v| v.as_f64());
        assert_eq!(value, Some(c.value), "value of {c:?}");
        let meta = cols.remove("value_meta");
        assert_eq!(meta, Some(c.expected_value_meta()), "value_meta of {c:?}");
        let tags: BTreeMap<String, String> = cols
            .into_iter()
            .map(|(k, v)| (k, v.as_str().expect("tag is a string").to_owned()))
            .collect();
        assert_eq!(tags, c.expected_tags(), "tags of {c:?}");
    }
}

#[test]
fn sanitized_corpus_is_stored_and_queryable() {
    let influx = Influx::start();
    create_db(&influx, "sanitized");
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = case(false);
    let messages: Vec<String> = (0..1500)
        .map(|i| {
            strategy
                .new_tree(&mut runner)
                .expect("generate")
                .current()
                .to_json(i)
        })
        .collect();
    let mut converter = Converter::new(Policy::Sanitize, 1 << 20);
    let mut lines = BytesMut::new();
    let mut accepted = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        match converter.convert(Kind::Metrics, m.as_bytes(), &mut lines) {
            Ok(_) => accepted.push(i),
            // Sanitizing gives up only on a name, tenant or region that is empty.
            Err(e) => assert!(e.to_string().ends_with("is empty"), "{e}: {m}"),
        }
    }
    assert!(
        accepted.len() > 500,
        "the corpus must exercise the accepted path"
    );
    write_ok(&influx, "sanitized", &lines);
    let got = rows(&influx.query("sanitized", "SELECT * FROM /.*/"));
    let mut times: Vec<i64> = got.iter().map(|r| r.time).collect();
    times.sort_unstable();
    let expected: Vec<i64> = accepted.iter().map(|&i| i as i64).collect();
    assert_eq!(
        times, expected,
        "every sanitized point is stored where a query finds it"
    );
}
