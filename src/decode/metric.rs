//! The metric envelope (`metrics` topic), `../README.md` "Message mapping".

use smallvec::SmallVec;

use super::{DecodeError, Json, number_f64, object, string, timestamp_ms};

/// Tag keys the envelope owns (`meta.tenantId`, `meta.region`).
pub const TENANT_TAG: &str = "_tenant_id";
pub const REGION_TAG: &str = "_region";

/// Dimensions sorted by key (byte order), one entry per key. Inline capacity covers Monasca's
/// usual 3–8 dimensions with room to spare, so they stay on the stack.
pub type Dimensions<'a> = SmallVec<[(&'a str, &'a str); 16]>;

/// A decoded metric message. Strings borrow from the decoder's scratch buffer.
#[derive(Debug, Clone)]
pub struct Metric<'t, 'a> {
    /// `metric.name`: the measurement.
    pub name: &'a str,
    /// `metric.dimensions`, sorted by key. Where a key repeats, the last value wins, as for
    /// any JSON object; a null value counts as "" (no tag). Dimensions named `_tenant_id` or
    /// `_region` are left out: those tags come from `meta` only, so no tenant can write into
    /// another tenant's series.
    pub dimensions: Dimensions<'a>,
    /// `metric.timestamp` in milliseconds, fractions truncated toward zero.
    pub timestamp_ms: i64,
    /// `metric.value`; may be non-finite here (the encoder decides what to do with it).
    pub value: f64,
    /// `metric.value_meta`; `None` when absent or null.
    pub value_meta: Option<Json<'t, 'a>>,
    /// `meta.tenantId`: the owning tenant, from the envelope, never from a dimension.
    pub tenant_id: &'a str,
    /// `meta.region`.
    pub region: &'a str,
}

impl<'t, 'a> Metric<'t, 'a> {
    pub(super) fn from_json(root: Json<'t, 'a>) -> Result<Self, DecodeError> {
        if !root.is_object() {
            return Err(DecodeError::WrongType {
                field: "message",
                expected: "an object",
            });
        }
        let (mut metric, mut meta) = (None, None);
        for (k, v) in root.entries() {
            match k {
                "metric" => metric = Some(v),
                "meta" => meta = Some(v),
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
        let mut dimensions = Dimensions::new();
        if let Some(d) = dims.filter(|d| !d.is_null()) {
            if !d.is_object() {
                return Err(DecodeError::WrongType {
                    field: "metric.dimensions",
                    expected: "an object",
                });
            }
            for (k, v) in d.entries() {
                let value = match v.as_str() {
                    Some(s) => s,
                    None if v.is_null() => "",
                    None => {
                        return Err(DecodeError::WrongType {
                            field: "metric.dimensions",
                            expected: "an object whose values are strings",
                        });
                    }
                };
                if k != TENANT_TAG && k != REGION_TAG {
                    insert_sorted(&mut dimensions, k, value);
                }
            }
        }
        let value_meta = match value_meta.filter(|v| !v.is_null()) {
            Some(v) if v.is_object() => Some(v),
            Some(_) => {
                return Err(DecodeError::WrongType {
                    field: "metric.value_meta",
                    expected: "an object or null",
                });
            }
            None => None,
        };
        Ok(Metric {
            name,
            dimensions,
            timestamp_ms,
            value,
            value_meta,
            tenant_id: string("meta.tenantId", tenant)?,
            region: string("meta.region", region)?,
        })
    }
}

/// Inserts keeping `dims` sorted by key; a repeated key replaces the earlier value. Insertion
/// from the end: a handful of entries, often already nearly in order, and no allocation.
fn insert_sorted<'a>(dims: &mut Dimensions<'a>, key: &'a str, value: &'a str) {
    let mut i = dims.len();
    while i > 0 && dims[i - 1].0 > key {
        i -= 1;
    }
    if i > 0 && dims[i - 1].0 == key {
        dims[i - 1].1 = value;
    } else {
        dims.insert(i, (key, value));
    }
}
