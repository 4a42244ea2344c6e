//! Metric → `name,_region=…,_tenant_id=…,dims… value=…,value_meta="…" ts`.

use bytes::{BufMut, BytesMut};

use super::lineproto::{COMMA, EQUALS, QUOTE};
use super::{
    EncodeError, Encoded, Encoder, Ident, Place, Problem, check_series_key, ident, json_text,
    kept_len, pytext, tag, timestamp, whole_line,
};
use crate::decode::{Metric, REGION_TAG, TENANT_TAG, key_less};

impl Encoder {
    /// Appends the metric's line to `out`, or appends nothing and says why not.
    pub fn metric(&self, m: &Metric<'_, '_>, out: &mut BytesMut) -> Result<Encoded, EncodeError> {
        if !m.value.is_finite() {
            return Err(EncodeError::NonFinite(m.value));
        }
        let enc = *self;
        // The envelope's tags, merged into the (sorted) dimensions at their sorted places.
        let own = [
            (REGION_TAG, m.region, Place::Region),
            (TENANT_TAG, m.tenant_id, Place::Tenant),
        ];
        whole_line(out, |out, start| {
            let mut edits = ident(out, m.name, Ident::Measurement, enc).map_err(|problem| {
                EncodeError::Unrepresentable {
                    place: Place::Measurement,
                    problem,
                }
            })?;
            let mut own_tags = own.iter().peekable();
            let write_own = |out: &mut BytesMut, (k, v, place): &(&str, &str, Place)| {
                // Never dropped: without its tenant the point would be in no tenant's series.
                if kept_len(v, enc) == 0 {
                    return Err(EncodeError::Unrepresentable {
                        place: place.clone(),
                        problem: Problem::Empty,
                    });
                }
                // The key is a constant that needs no escaping in either dialect.
                out.put_u8(COMMA);
                out.extend_from_slice(k.as_bytes());
                out.put_u8(EQUALS);
                ident(out, v, Ident::Tag, enc).map_err(|problem| EncodeError::Unrepresentable {
                    place: place.clone(),
                    problem,
                })
            };
            let mut text = [0u8; 32];
            for &(k, v) in &m.dimensions {
                while let Some(o) = own_tags.next_if(|o| key_less(o.0, k)) {
                    edits += write_own(out, o)?;
                }
                let v = pytext::dim_text(v, &mut text);
                edits += tag(out, k, v, enc, |is_key| {
                    if is_key {
                        Place::DimensionKey(Place::key(k))
                    } else {
                        Place::DimensionValue(Place::key(k))
                    }
                })?;
            }
            for o in own_tags {
                edits += write_own(out, o)?;
            }
            check_series_key(out, start)?;
            out.extend_from_slice(b" value=");
            out.extend_from_slice(zmij::Buffer::new().format_finite(m.value).as_bytes());
            out.extend_from_slice(b",value_meta=\"");
            match m.value_meta {
                Some(v) => json_text::write(out, v, None),
                None => out.extend_from_slice(b"{}"),
            }
            out.put_u8(QUOTE);
            timestamp(out, m.timestamp_ms);
            Ok(Encoded {
                sanitized: edits,
                created_ms: m.created_ms,
            })
        })
    }
}
