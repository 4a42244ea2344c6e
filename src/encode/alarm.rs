//! Alarm transition → one `alarm_state_history` line with the Python persister's fields.

use bytes::{BufMut, BytesMut};

use super::lineproto::{COMMA, EQUALS, QUOTE, SPACE};
use super::{
    EncodeError, Encoded, Encoder, Place, Problem, check_series_key, json_text, kept_len,
    string_field, tag, timestamp, whole_line,
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
        // The tenant tag is the point's owner: never dropped, even when sanitizing empties it.
        if kept_len(a.tenant_id, *self) == 0 {
            return Err(EncodeError::Unrepresentable {
                place: Place::Tenant,
                problem: Problem::Empty,
            });
        }
        whole_line(out, |out, start| {
            out.extend_from_slice(ALARM_MEASUREMENT.as_bytes());
            let edits = tag(out, "tenant_id", a.tenant_id, *self, |_| Place::Tenant)?;
            check_series_key(out, start)?;
            out.put_u8(SPACE);
            str_field(out, "tenant_id", a.tenant_id);
            out.put_u8(COMMA);
            str_field(out, "alarm_id", a.alarm_id);
            out.extend_from_slice(b",metrics=\"");
            json_text::write(out, a.metrics, None);
            out.put_u8(QUOTE);
            for (k, v) in [
                ("new_state", a.new_state),
                ("old_state", a.old_state),
                ("link", a.link),
                ("lifecycle_state", a.lifecycle_state),
                ("reason", a.reason),
                ("reason_data", "{}"),
            ] {
                out.put_u8(COMMA);
                str_field(out, k, v);
            }
            out.extend_from_slice(b",sub_alarms=\"");
            match a.sub_alarms {
                Some(s) if !s.is_empty_container() => {
                    json_text::write(out, s, Some(rename_sub_alarm_key))
                }
                _ => out.extend_from_slice(b"[]"),
            }
            out.put_u8(QUOTE);
            timestamp(out, a.timestamp_ms);
            Ok(Encoded {
                sanitized: edits,
                created_ms: a.timestamp_ms,
            })
        })
    }
}

/// `key="escaped value"`.
fn str_field(out: &mut BytesMut, key: &str, value: &str) {
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&[EQUALS, QUOTE]);
    string_field(out, value);
    out.put_u8(QUOTE);
}

#[cfg(test)]
mod tests {
    use crate::Kind;
    use crate::Policy;
    use crate::convert::testing::convert_with;

    fn alarm(body: &str) -> String {
        let json = format!(
            r#"{{"alarm-transitioned":{{"tenantId":"t1","alarmId":"a1","metrics":[{{"id":null,"name":"cpu"}}],"oldState":"OK","newState":"ALARM","stateChangeReason":"r","timestamp":5{body}}}}}"#
        );
        convert_with(Kind::Alarms, Policy::Reject, &json).unwrap()
    }

    #[test]
    fn fields_in_python_persister_order() {
        assert_eq!(
            alarm(""),
            "alarm_state_history,tenant_id=t1 tenant_id=\"t1\",alarm_id=\"a1\",metrics=\"[{\\\"id\\\":null,\\\"name\\\":\\\"cpu\\\"}]\",new_state=\"ALARM\",old_state=\"OK\",link=\"\",lifecycle_state=\"\",reason=\"r\",reason_data=\"{}\",sub_alarms=\"[]\" 5\n"
        );
    }

    #[test]
    fn null_link_and_lifecycle_state_are_empty_strings() {
        let line = alarm(r#","link":null,"lifecycleState":null"#);
        assert!(line.contains(r#"link="",lifecycle_state="""#), "{line}");
        let line = alarm(r#","link":"http://x","lifecycleState":"OPEN""#);
        assert!(
            line.contains(r#"link="http://x",lifecycle_state="OPEN""#),
            "{line}"
        );
    }

    #[test]
    fn sub_alarm_keys_are_renamed_at_any_depth_but_not_in_values() {
        let line = alarm(
            r#","subAlarms":[{"subAlarmExpression":{"metricDefinition":{"name":"subAlarmState"}},"subAlarmState":"OK","currentValues":[1.5],"other":{"nested":[{"currentValues":"subAlarmExpression"}]}}]"#,
        );
        let expected = r#"sub_alarms="[{\"sub_alarm_expression\":{\"metric_definition\":{\"name\":\"subAlarmState\"}},\"sub_alarm_state\":\"OK\",\"current_values\":[1.5],\"other\":{\"nested\":[{\"current_values\":\"subAlarmExpression\"}]}}]""#;
        assert!(line.contains(expected), "{line}");
    }

    #[test]
    fn empty_or_null_sub_alarms_are_an_empty_list() {
        for s in [
            r#","subAlarms":[]"#,
            r#","subAlarms":null"#,
            r#","subAlarms":{}"#,
        ] {
            assert!(alarm(s).contains(r#"sub_alarms="[]""#), "{s}");
        }
    }

    #[test]
    fn reason_keeps_newlines_and_escapes_quotes() {
        let line = alarm(r#","stateChangeReason":"a \"b\"\nc \\ d""#);
        assert!(line.contains("reason=\"a \\\"b\\\"\nc \\\\ d\""), "{line}");
    }

    #[test]
    fn numeric_string_timestamp() {
        let line = alarm(r#","timestamp":"1554725987408.7""#);
        assert!(line.ends_with(" 1554725987408\n"), "{line}");
    }
}
