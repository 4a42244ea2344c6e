//! Metric → `name,_region=…,_tenant_id=…,dims… value=…,value_meta="…" ts`.

use bytes::{BufMut, BytesMut};
use smallvec::SmallVec;

use super::{
    EncodeError, Encoded, Encoder, Ident, Place, Problem, check_series_key, ident, json_text,
    kept_len, tag, timestamp, whole_line,
};
use crate::decode::Metric;

/// Tag keys the envelope owns. A dimension with one of these names is ignored, so no tenant
/// can write into another tenant's series.
pub const TENANT_TAG: &str = "_tenant_id";
pub const REGION_TAG: &str = "_region";

impl Encoder {
    /// Appends the metric's line to `out`, or appends nothing and says why not.
    pub fn metric(&self, m: &Metric<'_, '_>, out: &mut BytesMut) -> Result<Encoded, EncodeError> {
        if !m.value.is_finite() {
            return Err(EncodeError::NonFinite(m.value));
        }
        let policy = self.policy;
        let mut tags: SmallVec<[(&str, &str); 18]> = SmallVec::new();
        tags.extend(
            m.dimensions
                .iter()
                .copied()
                .filter(|(k, _)| *k != TENANT_TAG && *k != REGION_TAG),
        );
        tags.push((TENANT_TAG, m.tenant_id));
        tags.push((REGION_TAG, m.region));
        sort_keep_last(&mut tags);

        whole_line(out, |out, start| {
            let mut edits = ident(out, m.name, Ident::Measurement, policy).map_err(|problem| {
                EncodeError::Unrepresentable {
                    place: Place::Measurement,
                    problem,
                }
            })?;
            for &(k, v) in &tags {
                // Dimensions with these names were filtered out above, so these are the
                // envelope's. They must be written as they are: dropping an empty tenant
                // would put the point in no tenant's series.
                let own = k == TENANT_TAG || k == REGION_TAG;
                if own && kept_len(v, policy) == 0 {
                    return Err(EncodeError::Unrepresentable {
                        place: if k == TENANT_TAG {
                            Place::Tenant
                        } else {
                            Place::Region
                        },
                        problem: Problem::Empty,
                    });
                }
                edits += tag(out, k, v, policy, |is_key| match (own, is_key, k) {
                    (true, _, TENANT_TAG) => Place::Tenant,
                    (true, _, _) => Place::Region,
                    (false, true, _) => Place::DimensionKey(Place::key(k)),
                    (false, false, _) => Place::DimensionValue(Place::key(k)),
                })?;
            }
            check_series_key(out, start)?;
            out.extend_from_slice(b" value=");
            out.extend_from_slice(ryu::Buffer::new().format_finite(m.value).as_bytes());
            out.extend_from_slice(b",value_meta=\"");
            match m.value_meta {
                Some(v) => json_text::write(out, v, None),
                None => out.extend_from_slice(b"{}"),
            }
            out.put_u8(b'"');
            timestamp(out, m.timestamp_ms);
            Ok(Encoded { sanitized: edits })
        })
    }
}

/// Sorts tags by key (byte order) and, where a key repeats, keeps the one that came last, as a
/// JSON object with duplicate keys means. Insertion sort: there are a handful of tags, and
/// this neither allocates nor reorders equal keys.
fn sort_keep_last(tags: &mut SmallVec<[(&str, &str); 18]>) {
    for i in 1..tags.len() {
        let mut j = i;
        while j > 0 && tags[j - 1].0 > tags[j].0 {
            tags.swap(j - 1, j);
            j -= 1;
        }
    }
    let mut w = 0;
    for r in 0..tags.len() {
        if r + 1 < tags.len() && tags[r + 1].0 == tags[r].0 {
            continue;
        }
        tags[w] = tags[r];
        w += 1;
    }
    tags.truncate(w);
}
