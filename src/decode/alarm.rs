//! The alarm state transition (`alarm-state-transitions` topic), `../README.md` "Message mapping".

use super::{DecodeError, Json, object, opt_string, required, string, timestamp_ms};

/// A decoded `alarm-transitioned` message. Strings borrow from the decoder's scratch buffer.
#[derive(Debug, Clone)]
pub struct AlarmTransition<'t, 'a> {
    /// `tenantId`: the tag, and a field.
    pub tenant_id: &'a str,
    /// `alarmId`.
    pub alarm_id: &'a str,
    /// `metrics`, any JSON value; stored as its JSON text.
    pub metrics: Json<'t, 'a>,
    /// `oldState`.
    pub old_state: &'a str,
    /// `newState`.
    pub new_state: &'a str,
    /// `link`; "" when absent or null.
    pub link: &'a str,
    /// `lifecycleState`; "" when absent or null.
    pub lifecycle_state: &'a str,
    /// `stateChangeReason`.
    pub reason: &'a str,
    /// `subAlarms`; `None` when absent or null. Stored as JSON text with renamed keys.
    pub sub_alarms: Option<Json<'t, 'a>>,
    /// `timestamp` in milliseconds.
    pub timestamp_ms: i64,
}

impl<'t, 'a> AlarmTransition<'t, 'a> {
    pub(super) fn from_json(root: Json<'t, 'a>) -> Result<Self, DecodeError> {
        if !root.is_object() {
            return Err(DecodeError::WrongType {
                field: "message",
                expected: "an object",
            });
        }
        let mut body = None;
        for (k, v) in root.entries() {
            if k == "alarm-transitioned" {
                body = Some(v);
            }
        }
        let body = object("alarm-transitioned", body)?;
        let mut f: [Option<Json<'t, 'a>>; 10] = [None; 10];
        for (k, v) in body.entries() {
            let slot = match k {
                "tenantId" => 0,
                "alarmId" => 1,
                "metrics" => 2,
                "oldState" => 3,
                "newState" => 4,
                "link" => 5,
                "lifecycleState" => 6,
                "stateChangeReason" => 7,
                "subAlarms" => 8,
                "timestamp" => 9,
                _ => continue,
            };
            f[slot] = Some(v);
        }
        let sub_alarms = f[8].filter(|v| !v.is_null());
        Ok(AlarmTransition {
            tenant_id: string("alarm-transitioned.tenantId", f[0])?,
            alarm_id: string("alarm-transitioned.alarmId", f[1])?,
            metrics: required("alarm-transitioned.metrics", f[2])?,
            old_state: string("alarm-transitioned.oldState", f[3])?,
            new_state: string("alarm-transitioned.newState", f[4])?,
            link: opt_string("alarm-transitioned.link", f[5])?,
            lifecycle_state: opt_string("alarm-transitioned.lifecycleState", f[6])?,
            reason: string("alarm-transitioned.stateChangeReason", f[7])?,
            sub_alarms,
            timestamp_ms: timestamp_ms(
                "alarm-transitioned.timestamp",
                required("alarm-transitioned.timestamp", f[9])?,
            )?,
        })
    }
}
