//! Alarm transition → one `alarm_state_history` line with the Python persister's fields.

use bytes::{BufMut, BytesMut};

use super::{
    EncodeError, Encoded, Encoder, Place, Problem, check_series_key, json_text, string_field, tag,
    timestamp, whole_line,
};
use crate::decode::AlarmTransition;

/// Measurement for alarm transitions.
pub const ALARM_MEASUREMENT: &str = "alarm_state_history";

/// `subAlarms` keys as the Python persister stores them.
fn rename_sub_alarm_key(k: &str) -> &str {
    match k {
        "subAlarmExpression" => "sub_alarm_expression",
        "currentValues" => "current_values",
        "metricDefinition" => "metric_definition",
        "subAlarmState" => "sub_alarm_state",
        other => other,
    }
}

impl Encoder {
    /// Appends the transition's line to `out`, or appends nothing and says why not.
    pub fn alarm(
        &self,
        a: &AlarmTransition<'_, '_>,
        out: &mut BytesMut,
    ) -> Result<Encoded, EncodeError> {
        if a.tenant_id.is_empty() {
            return Err(EncodeError::Unrepresentable {
                place: Place::Tenant,
                problem: Problem::Empty,
            });
        }
        whole_line(out, |out, start| {
            out.extend_from_slice(ALARM_MEASUREMENT.as_bytes());
            let edits = tag(out, "tenant_id", a.tenant_id, self.policy, |_| {
                Place::Tenant
            })?;
            if out.len() - start == ALARM_MEASUREMENT.len() {
                // Sanitizing left nothing of the tenant: the point would belong to nobody.
                return Err(EncodeError::Unrepresentable {
                    place: Place::Tenant,
                    problem: Problem::Empty,
                });
            }
            check_series_key(out, start)?;
            out.put_u8(b' ');
            str_field(out, "tenant_id", a.tenant_id);
            out.put_u8(b',');
            str_field(out, "alarm_id", a.alarm_id);
            out.extend_from_slice(b",metrics=\"");
            json_text::write(out, a.metrics, None);
            out.put_u8(b'"');
            for (k, v) in [
                ("new_state", a.new_state),
                ("old_state", a.old_state),
                ("link", a.link),
                ("lifecycle_state", a.lifecycle_state),
                ("reason", a.reason),
                ("reason_data", "{}"),
            ] {
                out.put_u8(b',');
                str_field(out, k, v);
            }
            out.extend_from_slice(b",sub_alarms=\"");
            match a.sub_alarms {
                Some(s) if !s.is_empty_container() => {
                    json_text::write(out, s, Some(rename_sub_alarm_key))
                }
                _ => out.extend_from_slice(b"[]"),
            }
            out.put_u8(b'"');
            timestamp(out, a.timestamp_ms);
            Ok(Encoded { sanitized: edits })
        })
    }
}

/// `key="escaped value"`.
fn str_field(out: &mut BytesMut, key: &str, value: &str) {
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"=\"");
    string_field(out, value);
    out.put_u8(b'"');
}
