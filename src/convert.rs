//! Decode + encode as one step: a raw payload in, one line (or a typed rejection) out.
//!
//! This is the unit of per-message work for every caller: the daemon's workers, the `convert`
//! command, the benches and the fuzz targets. It owns no I/O.

use bytes::BytesMut;

use crate::decode::{DecodeError, Decoder};
use crate::encode::{EncodeError, Encoded, Encoder, Policy};

/// Which topic's format a payload is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    pub fn new(policy: Policy, max_message_bytes: usize) -> Self {
        Self {
            decoder: Decoder::new(max_message_bytes),
            encoder: Encoder { policy },
        }
    }

    /// Appends the payload's line to `out`, or nothing and the reason.
    pub fn convert(
        &mut self,
        kind: Kind,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<Encoded, Reject> {
        let encoder = self.encoder;
        match kind {
            Kind::Metrics => self
                .decoder
                .metric(payload, |m| Ok(encoder.metric(&m?, out)?)),
            Kind::Alarms => self
                .decoder
                .alarm(payload, |a| Ok(encoder.alarm(&a?, out)?)),
        }
    }
}

impl Default for Converter {
    fn default() -> Self {
        Self::new(Policy::Reject, crate::decode::DEFAULT_MAX_MESSAGE_BYTES)
    }
}
