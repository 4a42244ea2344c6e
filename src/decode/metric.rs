//! The metric envelope (`metrics` topic), `../README.md` "Message mapping".

use smallvec::SmallVec;

use simd_json::{Node, StaticNode};

use super::{DecodeError, Json, number_f64, object, string, timestamp_ms};

/// Tag keys the envelope owns (`meta.tenantId`, `meta.region`).
pub const TENANT_TAG: &str = "_tenant_id";
pub const REGION_TAG: &str = "_region";

/// Dimensions sorted by key (byte order), one entry per key. Inline capacity covers Monasca's
/// usual 3–8 dimensions with room to spare, so they stay on the stack.
pub type Dimensions<'a> = SmallVec<[(&'a str, DimValue<'a>); 16]>;

/// A dimension value as sent. The Monasca API sends strings; a number or boolean (which the
/// Python persister stores as Python's `str()` of it) is kept as parsed and written as that
/// same text by the encoder, so nothing is formatted here and nothing is allocated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DimValue<'a> {
    /// A string; null arrives as "" (no tag).
    Str(&'a str),
    /// A JSON integer in the range of `i64`.
    Int(i64),
    /// A JSON integer above `i64::MAX`.
    UInt(u64),
    /// A JSON number with a fraction or exponent.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
}

impl<'a> DimValue<'a> {
    /// The string, if the value is one.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            DimValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A decoded metric message. Strings borrow from the decoder's scratch buffer.
#[derive(Debug, Clone)]
pub struct Metric<'t, 'a> {
    /// `metric.name`: the measurement.
    pub name: &'a str,
    /// `metric.dimensions`, sorted by key. Where a key repeats, the last value wins, as for
    /// any JSON object; a null value counts as "" (no tag); numbers and booleans are kept as
    /// such (see [`DimValue`]). Dimensions named `_tenant_id` or
    /// `_region` are left out: those tags come from `meta` only, so no tenant can write into
    /// another tenant's series.
    pub dimensions: Dimensions<'a>,
    /// `metric.timestamp` in milliseconds, fractions truncated toward zero.
    pub timestamp_ms: i64,
    /// `metric.value`; may be non-finite here (the encoder decides what to do with it).
    pub value: f64,
    /// `metric.value_meta`; `None` when absent or "falsy" as the Python persister tests it
    /// (null, `false`, `0`, `""`, `[]`, `{}`): all of those are stored as `{}`. Any other
    /// value (normally an object) is stored as its JSON text.
    pub value_meta: Option<Json<'t, 'a>>,
    /// `meta.tenantId`: the owning tenant, from the envelope, never from a dimension.
    pub tenant_id: &'a str,
    /// `meta.region`.
    pub region: &'a str,
    /// The envelope's `creation_time` in milliseconds (Monasca's API writes seconds; a value
    /// of 10^11 or more is read as milliseconds already); 0 when absent or not a positive
    /// number, which is never a reason to reject the message.
    pub created_ms: i64,
}

/// The envelope's `creation_time` in milliseconds; see [`Metric::created_ms`].
fn creation_ms(v: Json<'_, '_>) -> i64 {
    let f = match v.node() {
        Node::Static(StaticNode::I64(i)) => i as f64,
        Node::Static(StaticNode::U64(u)) => u as f64,
        Node::Static(StaticNode::F64(f)) => f,
        _ => return 0,
    };
    if !(f.is_finite() && f > 0.0 && f < 1e15) {
        0
    } else if f >= 1e11 {
        f as i64
    } else {
        (f * 1000.0) as i64
    }
}

impl<'t, 'a> Metric<'t, 'a> {
    pub(super) fn from_json(root: Json<'t, 'a>) -> Result<Self, DecodeError> {
        if !root.is_object() {
            return Err(DecodeError::WrongType {
                field: "message",
                expected: "an object",
            });
        }
        let (mut metric, mut meta, mut created) = (None, None, None);
        for (k, v) in root.entries() {
            match k {
                "metric" => metric = Some(v),
                "meta" => meta = Some(v),
                "creation_time" => created = Some(v),
                _ => {}
            }
        }
        let metric = object("metric", metric)?;
        let meta = object("meta", meta)?;

        let (mut name, mut dims, mut ts, mut value, mut value_meta) =
            (None, None, None, None, None);
        for (k, v) in metric.entries() {
            match k {
                "name" => name = Some(v),
                "dimensions" => dims = Some(v),
                "timestamp" => ts = Some(v),
                "value" => value = Some(v),
                "value_meta" => value_meta = Some(v),
                _ => {}
            }
        }
        let (mut tenant, mut region) = (None, None);
        for (k, v) in meta.entries() {
            match k {
                "tenantId" => tenant = Some(v),
                "region" => region = Some(v),
                _ => {}
            }
        }

        let name = string("metric.name", name)?;
        let timestamp_ms = match ts {
            Some(ts) => timestamp_ms("metric.timestamp", ts)?,
            None => {
                return Err(DecodeError::Missing {
                    field: "metric.timestamp",
                });
            }
        };
        let value = match value {
            Some(v) => number_f64("metric.value", v)?,
            None => {
                return Err(DecodeError::Missing {
                    field: "metric.value",
                });
            }
        };
        // Built in place: the dimensions are most of the struct's size, and moving it costs.
        let mut m = Metric {
            name,
            dimensions: Dimensions::new(),
            timestamp_ms,
            value,
            value_meta: value_meta.filter(|v| !falsy(v)),
            tenant_id: "",
            region: "",
            created_ms: created.map_or(0, creation_ms),
        };
        if let Some(d) = dims.filter(|d| !d.is_null()) {
            if !d.is_object() {
                return Err(DecodeError::WrongType {
                    field: "metric.dimensions",
                    expected: "an object",
                });
            }
            for (k, v) in d.entries() {
                let value = match v.node() {
                    Node::String(s) => DimValue::Str(s),
                    Node::Static(StaticNode::Null) => DimValue::Str(""),
                    Node::Static(StaticNode::I64(i)) => DimValue::Int(i),
                    Node::Static(StaticNode::U64(u)) => DimValue::UInt(u),
                    Node::Static(StaticNode::F64(f)) => DimValue::Float(f),
                    Node::Static(StaticNode::Bool(b)) => DimValue::Bool(b),
                    Node::Object { .. } | Node::Array { .. } => {
                        return Err(DecodeError::WrongType {
                            field: "metric.dimensions",
                            expected: "an object whose values are strings, numbers or booleans",
                        });
                    }
                };
                if k != TENANT_TAG && k != REGION_TAG {
                    insert_sorted(&mut m.dimensions, k, value);
                }
            }
        }
        m.tenant_id = string("meta.tenantId", tenant)?;
        m.region = string("meta.region", region)?;
        Ok(m)
    }
}

/// Python's truth test, which the Python persister applies to `value_meta` (`if not
/// value_meta: "{}"`).
fn falsy(v: &Json<'_, '_>) -> bool {
    match v.node() {
        Node::Static(StaticNode::Null | StaticNode::Bool(false)) => true,
        Node::Static(StaticNode::I64(0) | StaticNode::U64(0)) => true,
        Node::Static(StaticNode::F64(f)) => f == 0.0,
        Node::String(s) => s.is_empty(),
        Node::Object { len, .. } | Node::Array { len, .. } => len == 0,
        _ => false,
    }
}

/// Inserts keeping `dims` sorted by key; a repeated key replaces the earlier value. Insertion
/// from the end: a handful of entries, often already nearly in order, and no allocation.
fn insert_sorted<'a>(dims: &mut Dimensions<'a>, key: &'a str, value: DimValue<'a>) {
    let mut i = dims.len();
    while i > 0 && key_less(key, dims[i - 1].0) {
        i -= 1;
    }
    if i > 0 && dims[i - 1].0 == key {
        dims[i - 1].1 = value;
    } else {
        dims.insert(i, (key, value));
    }
}

/// `a < b` in byte order, deciding on the first byte where that suffices (dimension keys
/// mostly differ there) instead of calling `memcmp`.
#[inline]
pub(crate) fn key_less(a: &str, b: &str) -> bool {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x < y,
        _ => a < b,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Sorted by key in byte order, one entry per key, the last value of a repeated key:
        /// what a map filled in document order holds.
        #[test]
        fn dimensions_sort_like_a_map_filled_in_document_order(
            keys in proptest::collection::vec(
                prop::sample::select(vec!["", "a", "ab", "b", "B", "ba", "é", "a\u{0}", "zz"]),
                0..=16,
            ),
        ) {
            let mut dims = Dimensions::new();
            let mut model = BTreeMap::new();
            for (i, &k) in keys.iter().enumerate() {
                let v = DimValue::Int(i as i64);
                insert_sorted(&mut dims, k, v);
                model.insert(k, v);
            }
            let want: Vec<_> = model.into_iter().collect();
            prop_assert_eq!(dims.as_slice(), want.as_slice());
        }
    }
}
