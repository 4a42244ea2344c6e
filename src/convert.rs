//! Decode + encode as one step: a raw payload in, one line (or a typed rejection) out.
//!
//! This is the unit of per-message work for every caller: the daemon's workers, the `convert`
//! command, the benches and the fuzz targets. It owns no I/O.

use bytes::BytesMut;

use crate::decode::{DecodeError, Decoder};
use crate::encode::{EncodeError, Encoded, Encoder, Policy};

/// Which topic's format a payload is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "daemon", derive(clap::ValueEnum))]
pub enum Kind {
    /// Monasca metric envelopes (`metrics` topic).
    Metrics,
    /// Alarm state transitions (`alarm-state-transitions` topic).
    Alarms,
}

/// Why a message produced no line. Counted and dead-lettered by the caller.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Reject {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl Reject {
    /// A short, stable label for counters, dead-letter headers and log fields.
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::Decode(e) => match e {
                DecodeError::TooLarge { .. } => "too_large",
                DecodeError::InvalidUtf8 { .. } => "invalid_utf8",
                DecodeError::InvalidJson { .. } => "invalid_json",
                DecodeError::Missing { .. } => "missing_field",
                DecodeError::WrongType { .. } => "wrong_type",
                DecodeError::NotANumber { .. } => "not_a_number",
                DecodeError::OutOfRange { .. } => "out_of_range",
            },
            Reject::Encode(e) => match e {
                EncodeError::NonFinite(_) => "non_finite",
                EncodeError::Unrepresentable { .. } => "unrepresentable",
                EncodeError::SeriesKeyTooLong { .. } => "series_key_too_long",
            },
        }
    }
}

/// One per worker thread: keeps the decoder's buffers warm between messages.
pub struct Converter {
    decoder: Decoder,
    encoder: Encoder,
}

impl Converter {
    /// `encoder` is a [`Policy`] (v1 dialect) or a whole [`Encoder`] (policy and dialect).
    pub fn new(encoder: impl Into<Encoder>, max_message_bytes: usize) -> Self {
        Self {
            decoder: Decoder::new(max_message_bytes),
            encoder: encoder.into(),
        }
    }

    /// Appends the payload's line to `out`, or nothing and the reason.
    pub fn convert(
        &mut self,
        kind: Kind,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<Encoded, Reject> {
        self.convert_to(kind, payload, |_| out)
    }

    /// Like [`convert`](Self::convert), but `pick` chooses the buffer from the message's tenant
    /// once it is decoded (one buffer per database with `db_per_tenant`).
    pub fn convert_to<'o>(
        &mut self,
        kind: Kind,
        payload: &[u8],
        pick: impl FnOnce(&str) -> &'o mut BytesMut,
    ) -> Result<Encoded, Reject> {
        let encoder = self.encoder;
        match kind {
            Kind::Metrics => self.decoder.metric(payload, |m| match m {
                // By reference: a decoded metric is large, and moving it costs.
                Ok(ref m) => Ok(encoder.metric(m, pick(m.tenant_id))?),
                Err(e) => Err(e.into()),
            }),
            Kind::Alarms => self.decoder.alarm(payload, |a| {
                let a = a?;
                Ok(encoder.alarm(&a, pick(a.tenant_id))?)
            }),
        }
    }
}

impl Default for Converter {
    fn default() -> Self {
        Self::new(Policy::Reject, crate::decode::DEFAULT_MAX_MESSAGE_BYTES)
    }
}

/// Helpers for the unit tests of every module: one message in, its line (or rejection) out.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub fn convert_with(kind: Kind, policy: Policy, json: &str) -> Result<String, Reject> {
        let mut c = Converter::new(policy, crate::decode::DEFAULT_MAX_MESSAGE_BYTES);
        let mut out = BytesMut::new();
        c.convert(kind, json.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out.to_vec()).expect("encoder wrote UTF-8"))
    }

    /// The line for a metric message under the default (reject) policy.
    pub fn metric(json: &str) -> Result<String, Reject> {
        convert_with(Kind::Metrics, Policy::Reject, json)
    }

    /// A metric message with the given name and dimensions (a JSON object text).
    pub fn metric_json(name: &str, dims: &str) -> String {
        format!(
            r#"{{"metric":{{"name":{name},"dimensions":{dims},"timestamp":1000,"value":1.5}},"meta":{{"tenantId":"t","region":"r"}}}}"#
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn reason_labels_are_distinct_per_variant() {
        let bad_json = metric("{").unwrap_err();
        let missing = metric(r#"{"meta":{}}"#).unwrap_err();
        let nan = metric(
            r#"{"metric":{"name":"m","timestamp":1,"value":"NaN"},"meta":{"tenantId":"t","region":"r"}}"#,
        )
        .unwrap_err();
        assert_eq!(bad_json.reason(), "invalid_json");
        assert_eq!(missing.reason(), "missing_field");
        assert_eq!(nan.reason(), "non_finite");
    }

    #[test]
    fn converter_is_reusable_after_a_rejection() {
        let mut c = Converter::default();
        let mut out = BytesMut::new();
        let good = metric_json(r#""m""#, r#"{"a":"b"}"#);
        assert!(c.convert(Kind::Metrics, b"{not json", &mut out).is_err());
        assert!(out.is_empty());
        c.convert(Kind::Metrics, good.as_bytes(), &mut out).unwrap();
        c.convert(Kind::Metrics, good.as_bytes(), &mut out).unwrap();
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 2);
    }
}
