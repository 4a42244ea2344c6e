//! Differential test against the Python persister's own code: every message of
//! `tests/fixtures/odd-metrics.jsonl` (loosely typed and odd inputs, each named by its `case`)
//! goes through monasca-persister 9.0.0's `MetricInfluxdbRepository.process_message`
//! (`tests/python/process_messages.py`, in the virtualenv `scripts/python-reference` makes)
//! and through our `Converter`. Both sides' lines are written to one InfluxDB 1.6 each (one
//! request per line, as a failing line would otherwise take its batch with it) and read back:
//! the stored points (series, tags, fields, timestamps) must be the same, except for the cases
//! in `DIFFERENCES`, which must differ (so the list cannot go stale) and are each explained in
//! the README ("Where our output differs from the Python persister's, on purpose").

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use bytes::BytesMut;
use common::{Influx, rows};
use monasca_persister::{Converter, Kind};
use serde_json::Value;

/// Cases where we store something other than the Python persister, on purpose.
const DIFFERENCES: &[(&str, &str)] = &[
    (
        "value-big-int",
        "integers beyond 64 bits are invalid numbers to simd-json: rejected",
    ),
    (
        "dim-bigger-than-u64",
        "Python keeps the exact digits; simd-json rejects the number",
    ),
    (
        "dim-float-overflow",
        "1e400: Python stores the tag `inf`; simd-json rejects the number",
    ),
    (
        "dim-null",
        "Python stores the tag value `None`; a null dimension is no tag here",
    ),
    (
        "dim-empty-string",
        "Python writes `empty=`, which InfluxDB refuses; no tag here",
    ),
    (
        "dim-object",
        "Python stores its repr `{'a': 1}`; rejected here",
    ),
    (
        "dim-array",
        "Python stores its repr `[1, 2]`; rejected here",
    ),
    (
        "dims-null",
        "Python raises TypeError; stored without dimensions here",
    ),
    (
        "dim-newline",
        "Python's line splits in two and stores measurement `b`; rejected here",
    ),
    (
        "dim-backslash",
        "Python doubles the backslash, 1.x stores both; stored as sent here",
    ),
    (
        "timestamp-string-float",
        "Python's int() raises on \"….5\"; stored, truncated, here",
    ),
    (
        "timestamp-bool",
        "Python stores the point at 1 ms (int(True)); rejected here",
    ),
    (
        "tenant-number",
        "Python stores _tenant_id=5; a tenant must be a string here",
    ),
    (
        "region-number",
        "Python stores _region=7; a region must be a string here",
    ),
    (
        "tenant-null",
        "Python stores _tenant_id=None; missing tenant here",
    ),
    (
        "name-number",
        "Python stores measurement `42`; a name must be a string here",
    ),
];

/// One stored point, comparable across the two databases.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone)]
struct Point {
    measurement: String,
    time: i64,
    /// Tags and fields, JSON text fields parsed, numbers as JSON numbers.
    columns: BTreeMap<String, String>,
}

fn points(answer: &Value) -> Vec<Point> {
    let text = |c: &str, v: Value| match (c, v) {
        ("value_meta", Value::String(s)) => {
            let json: Value = serde_json::from_str(&s)
                .unwrap_or_else(|e| panic!("value_meta {s:?} is not JSON: {e}"));
            format!("json {json}")
        }
        (_, Value::String(s)) => format!("str {s}"),
        (_, Value::Number(n)) => format!("num {}", n.as_f64().unwrap()),
        (_, v) => format!("other {v}"),
    };
    rows(answer)
        .into_iter()
        .map(|r| Point {
            measurement: r.measurement,
            time: r.time,
            columns: r
                .columns
                .into_iter()
                .map(|(c, v)| {
                    let t = text(&c, v);
                    (c, t)
                })
                .collect(),
        })
        .collect()
}

/// What the Python persister produced for each message: its line, or `None` if it raised.
fn python_lines(root: &Path, input: &str) -> Vec<Option<String>> {
    let mut child = Command::new(common::python_reference())
        .arg(root.join("tests/python/process_messages.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the reference");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "process_messages.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("ERROR ") {
                None
            } else if let Some(split) = l.strip_prefix("SPLIT ") {
                // The raw newline Python left in a tag: written as it is, two lines.
                Some(split.replace("\\n", "\n"))
            } else {
                Some(l.to_owned())
            }
        })
        .collect()
}

/// Timestamps a line (or two, for a split one) carries: how stored points are matched to
/// the message they came from.
fn times(line: &str) -> Vec<i64> {
    line.lines()
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn odd_messages_are_stored_as_the_python_persister_stores_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let input = include_str!("fixtures/odd-metrics.jsonl");
    let messages: Vec<&str> = input.lines().collect();
    let theirs = python_lines(root, input);
    assert_eq!(
        theirs.len(),
        messages.len(),
        "one reference answer per message"
    );

    let mut converter = Converter::default();
    let ours: Vec<Option<String>> = messages
        .iter()
        .map(|m| {
            let mut out = BytesMut::new();
            converter
                .convert(Kind::Metrics, m.as_bytes(), &mut out)
                .ok()
                .map(|_| String::from_utf8(out.to_vec()).unwrap())
        })
        .collect();

    let influx = Influx::start();
    for db in ["python", "rust"] {
        influx.query("", &format!("CREATE DATABASE {db}"));
    }
    // One request per line: a line InfluxDB refuses must not take the others with it.
    let mut refused = BTreeMap::new();
    for (db, lines) in [("python", &theirs), ("rust", &ours)] {
        for (i, line) in lines.iter().enumerate() {
            if let Some(line) = line {
                let (status, body) = influx.write(db, line.as_bytes());
                if status != 204 {
                    refused.insert((db, i), body);
                }
            }
        }
    }
    for ((db, i), body) in &refused {
        // We never produce a line InfluxDB refuses.
        assert_eq!(
            *db,
            "python",
            "our line for message {} refused: {body}",
            i + 1
        );
    }
    let stored = |db: &str| points(&influx.query(db, "SELECT * FROM /.*/"));
    let (python_points, rust_points) = (stored("python"), stored("rust"));

    let allowed: BTreeMap<&str, &str> = DIFFERENCES.iter().copied().collect();
    let mut cases = BTreeSet::new();
    let mut same_and_stored = 0;
    let mut report = String::new();
    for (i, m) in messages.iter().enumerate() {
        // Not through serde_json: some lines hold numbers it refuses (`1e400`).
        let case = m
            .strip_prefix(r#"{"case":""#)
            .and_then(|rest| rest.split('"').next())
            .expect("every fixture line starts with its case");
        assert!(cases.insert(case.to_owned()), "case {case} appears twice");
        let ts: BTreeSet<i64> = [&theirs[i], &ours[i]]
            .into_iter()
            .flatten()
            .flat_map(|l| times(l))
            .collect();
        let pick = |all: &[Point]| -> Vec<Point> {
            let mut v: Vec<Point> = all
                .iter()
                .filter(|p| ts.contains(&p.time))
                .cloned()
                .collect();
            v.sort();
            v
        };
        let (py, rs) = (pick(&python_points), pick(&rust_points));
        let same = py == rs;
        match (same, allowed.get(case)) {
            (true, Some(_)) => report.push_str(&format!(
                "{case}: allow-listed but stored the same: {rs:?}\n"
            )),
            (false, None) => report.push_str(&format!(
                "{case}: stored differently\n  python {:?}\n    {py:?}\n  rust   {:?}\n    {rs:?}\n",
                theirs[i], ours[i]
            )),
            (true, None) => same_and_stored += usize::from(!rs.is_empty()),
            (false, Some(_)) => {}
        }
    }
    for case in allowed.keys() {
        assert!(
            cases.contains(*case),
            "allow-listed case {case} not in the fixture"
        );
    }
    assert!(report.is_empty(), "{report}");
    // What the README says of the reference's raw newline in a tag: a point of its own.
    assert!(
        python_points.iter().any(|p| p.measurement == "b"),
        "the reference's split line did not store measurement `b`"
    );
    assert!(
        same_and_stored >= 35,
        "only {same_and_stored} cases stored identically: the corpus must exercise storing"
    );
}
