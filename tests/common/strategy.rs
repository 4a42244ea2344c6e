//! Generators of metric messages with hostile strings, and the point each one must become.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};

/// Characters that matter to line protocol or JSON, plus ordinary and non-ASCII ones.
const HOSTILE: &[char] = &[
    '\\', '"', ',', '=', ' ', '\n', '\r', '\t', '#', '\'', '{', '}', 'é', '中', '😀', '\u{0}', 'a',
    'b', 'Z', '0', '_', '-', '.',
];

/// Strings of hostile characters. With `iox_safe`, leaves out what the IOx parser used as the
/// test oracle reads differently from InfluxDB 1.x (`\\` is an escape there; tab and NUL end
/// identifiers there), so that only a real 1.x server can judge those.
pub fn hostile_string(max: usize, iox_safe: bool) -> impl Strategy<Value = String> {
    let chars: Vec<char> = HOSTILE
        .iter()
        .copied()
        .filter(|c| !iox_safe || !matches!(c, '\\' | '\t' | '\u{0}'))
        .collect();
    // Mostly ordinary characters, so that most messages are accepted and their round trip is
    // checked; one in four is hostile.
    let ch = prop_oneof![
        3 => prop::sample::select(&b"abcxyzABC019_-."[..]).prop_map(char::from),
        1 => prop::sample::select(chars),
    ];
    prop::collection::vec(ch, 0..max).prop_map(|v| v.into_iter().collect())
}

/// A generated metric and the tags/fields InfluxDB must end up holding for it.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub dims: Vec<(String, String)>,
    pub tenant: String,
    pub region: String,
    pub value: f64,
    pub value_meta: Option<Value>,
}

impl Case {
    pub fn to_json(&self, timestamp: i64) -> String {
        // Built by hand so duplicate dimension keys survive into the message.
        let dims: Vec<String> = self
            .dims
            .iter()
            .map(|(k, v)| format!("{}:{}", json!(k), json!(v)))
            .collect();
        format!(
            r#"{{"metric":{{"name":{},"dimensions":{{{}}},"timestamp":{},"value":{},"value_meta":{}}},"meta":{{"tenantId":{},"region":{}}},"creation_time":1}}"#,
            json!(self.name),
            dims.join(","),
            timestamp,
            json!(self.value),
            self.value_meta.clone().unwrap_or(Value::Null),
            json!(self.tenant),
            json!(self.region),
        )
    }

    /// The tags the point must carry: dimensions (last duplicate wins, empty values dropped,
    /// `_tenant_id`/`_region` ignored) plus the envelope's tenant and region.
    pub fn expected_tags(&self) -> BTreeMap<String, String> {
        let mut tags = BTreeMap::new();
        for (k, v) in &self.dims {
            if k == "_tenant_id" || k == "_region" {
                continue;
            }
            if v.is_empty() {
                tags.remove(k);
            } else {
                tags.insert(k.clone(), v.clone());
            }
        }
        tags.insert("_tenant_id".into(), self.tenant.clone());
        tags.insert("_region".into(), self.region.clone());
        tags
    }

    /// The `value_meta` field as a JSON value.
    pub fn expected_value_meta(&self) -> Value {
        self.value_meta.clone().unwrap_or_else(|| json!({}))
    }
}

/// Tag keys that would collide with the field names or `time` in query results.
fn usable_key(k: &str) -> bool {
    !matches!(k, "value" | "value_meta" | "time")
}

pub fn case(iox_safe: bool) -> impl Strategy<Value = Case> {
    let dims = prop::collection::vec(
        (
            prop_oneof![
                hostile_string(8, iox_safe),
                Just("_tenant_id".to_owned()),
                Just("hostname".to_owned())
            ]
            .prop_filter("key collides with a field", |k| usable_key(k)),
            hostile_string(12, iox_safe),
        ),
        0..8,
    );
    let meta = prop::option::of(prop::collection::btree_map(
        hostile_string(6, false),
        prop_oneof![
            hostile_string(20, false).prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
        ],
        0..4,
    ))
    .prop_map(|m| m.map(|m| Value::Object(m.into_iter().collect())));
    (
        hostile_string(12, iox_safe),
        dims,
        hostile_string(8, iox_safe),
        hostile_string(6, iox_safe),
        prop_oneof![
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
            Just(0.0),
            Just(-0.0)
        ],
        meta,
    )
        .prop_map(|(name, dims, tenant, region, value, value_meta)| Case {
            name,
            dims,
            tenant,
            region,
            value,
            value_meta,
        })
}

/// Panics unless `reject` is a reason this case really has: the named string exists and shows
/// the named problem. A rejection is only allowed when InfluxDB could not store the input.
pub fn assert_rejection_is_justified(case: &Case, reject: &monasca_persister::Reject) {
    use monasca_persister::Reject;
    use monasca_persister::encode::{EncodeError, Place, Problem};
    let Reject::Encode(EncodeError::Unrepresentable { place, problem }) = reject else {
        panic!("unexpected rejection {reject:?} for {case:?}");
    };
    let candidates: Vec<&str> = match place {
        Place::Measurement => vec![&case.name],
        Place::Tenant => vec![&case.tenant],
        Place::Region => vec![&case.region],
        Place::DimensionKey(k) => case
            .dims
            .iter()
            .filter(|(key, _)| key.starts_with(k.as_str()))
            .map(|(key, _)| key.as_str())
            .collect(),
        Place::DimensionValue(k) => case
            .dims
            .iter()
            .filter(|(key, _)| key.starts_with(k.as_str()))
            .map(|(_, v)| v.as_str())
            .collect(),
    };
    let shows = |s: &str| match problem {
        Problem::Empty => s.is_empty(),
        Problem::LineBreak => s.contains(['\n', '\r']),
        Problem::TrailingBackslash => s.ends_with('\\'),
        Problem::BadFirstCharacter => s.starts_with(['#', '\t', '\0']),
        Problem::BackslashBeforeSeparator => {
            s.contains("\\,") || s.contains("\\=") || s.contains("\\ ")
        }
        Problem::BackslashBeforeSpace => {
            let b = s.as_bytes();
            (0..b.len()).any(|i| {
                b[i] == b' ' && b[..i].iter().rev().take_while(|&&c| c == b'\\').count() % 2 == 1
            })
        }
    };
    assert!(
        candidates.iter().any(|s| shows(s)),
        "rejection {reject:?} not justified by {case:?}"
    );
}
