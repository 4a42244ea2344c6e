//! The v3 line-protocol dialect against a real VictoriaMetrics: metric messages whose name,
//! tenant and dimension keys and values are arbitrary strings with backslashes (trailing ones
//! included), commas, `=`, spaces and unicode are converted with `line_protocol = v3`,
//! written through the crate's `Writer` (`/api/v2/write`) and read back from
//! `/api/v1/export`: every series must come back exactly as sent.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{Victoria, urlencode};
use monasca_persister::config::Secret;
use monasca_persister::sink::{Api, InfluxConfig, Lines, Writer};
use monasca_persister::{Converter, Dialect, Encoder, Kind, Policy};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Strings made of what line protocol escapes (backslash, comma, `=`, space) and unicode.
/// No `_` (so no dimension can be `_tenant_id`), no line breaks (rejected in every dialect).
fn text() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r"[a-c\\,= é😀]{1,10}").unwrap()
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    tenant: String,
    dims: BTreeMap<String, String>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        // Not starting with `#`: a comment line in every dialect.
        text(),
        text(),
        proptest::collection::btree_map(text(), text(), 0..4),
    )
        .prop_map(|(name, tenant, dims)| Case { name, tenant, dims })
}

const CASES: usize = 64;
const BATCHES: usize = 4;

#[tokio::test(flavor = "multi_thread")]
async fn v3_lines_with_backslashes_come_back_from_victoria_metrics_as_sent() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = case();
    let cases: Vec<Case> = (0..CASES)
        .map(|_| strategy.new_tree(&mut runner).expect("generate").current())
        .collect();
    assert!(
        cases
            .iter()
            .any(|c| c.dims.values().any(|v| v.ends_with('\\'))),
        "the corpus must hold a value ending in a backslash"
    );

    let vm = Victoria::start();
    let writer = Writer::new(
        InfluxConfig {
            api: Api::V2,
            port: vm.port,
            org: "monasca".into(),
            token: Secret::new("unused-by-victoria"),
            retry_initial_ms: 20,
            line_protocol: Dialect::V3,
            ..InfluxConfig::default()
        },
        CancellationToken::new(),
    )
    .expect("writer");
    let mut converter = Converter::new(
        Encoder {
            policy: Policy::Reject,
            dialect: Dialect::V3,
        },
        1 << 20,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for chunk in (0..CASES).collect::<Vec<_>>().chunks(CASES / BATCHES) {
        let mut lines = BytesMut::new();
        for &i in chunk {
            let c = &cases[i];
            let mut dims: serde_json::Map<String, Value> =
                c.dims.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            dims.insert("case".into(), json!(i.to_string()));
            let msg = json!({
                "metric": {"name": c.name, "dimensions": dims, "timestamp": now - i as i64,
                           "value": i as f64},
                "meta": {"tenantId": c.tenant, "region": "r"},
            });
            converter
                .convert(Kind::Metrics, msg.to_string().as_bytes(), &mut lines)
                .unwrap_or_else(|e| panic!("v3 rejected {c:?}: {e}"));
        }
        let batch = Lines::from_newline_separated(Bytes::from(lines.to_vec()));
        let report = writer.write("mon", &batch).await.expect("written");
        assert_eq!(report.written, chunk.len());
    }

    // Fresh samples become searchable a moment after the flush: poll.
    let path = format!(
        "/api/v1/export?match%5B%5D={}",
        urlencode(r#"{__name__=~".+_value"}"#)
    );
    let mut export = String::new();
    for _ in 0..300 {
        vm.get("/internal/force_flush").unwrap();
        let (status, body) = vm.get(&path).unwrap();
        assert_eq!(status, 200, "{body}");
        export = body;
        if export.lines().count() >= CASES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut by_case: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
    for line in export.lines() {
        let series: Value = serde_json::from_str(line).expect("export line is JSON");
        let mut labels: BTreeMap<String, String> = series["metric"]
            .as_object()
            .expect("labels")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("label value").to_owned()))
            .collect();
        let i: usize = labels
            .remove("case")
            .expect("case label")
            .parse()
            .expect("case number");
        assert_eq!(
            series["values"][0].as_f64(),
            Some(i as f64),
            "value of case {i}"
        );
        // VictoriaMetrics adds the bucket as `db` when no tag has that name.
        if labels.get("db").map(String::as_str) == Some("mon") && !cases[i].dims.contains_key("db")
        {
            labels.remove("db");
        }
        assert!(by_case.insert(i, labels).is_none(), "case {i} stored twice");
    }
    assert_eq!(by_case.len(), CASES, "{export}");
    for (i, c) in cases.iter().enumerate() {
        let mut want: BTreeMap<String, String> = c.dims.clone();
        want.insert("__name__".into(), format!("{}_value", c.name));
        want.insert("_tenant_id".into(), c.tenant.clone());
        want.insert("_region".into(), "r".into());
        assert_eq!(by_case[&i], want, "case {i}: {c:?}");
    }
}
