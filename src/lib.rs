//! # monasca-persister
//!
//! Consumes Monasca metric and alarm-transition messages (JSON) from Kafka and writes them to
//! InfluxDB as line protocol, losing nothing: a message is either written, or rejected with a
//! typed reason and dead-lettered.
//!
//! # Layout
//!
//! The modules follow one message through the daemon:
//!
//! ```text
//!  Kafka payload (&[u8])
//!     │
//!     ▼
//!  decode   simd-json, in place, into structs that borrow a per-worker scratch buffer
//!     │     (Metric, AlarmTransition) — or a DecodeError
//!     ▼
//!  encode   one line of InfluxDB 1.x line protocol appended to a reused BytesMut
//!     │     — or an EncodeError (a string InfluxDB cannot store, NaN, …)
//!     ▼
//!  convert  the two above as one per-message step; Reject = DecodeError | EncodeError
//!     │
//!     ▼
//!  sink     batches of lines → InfluxDB (1.x /write or 2.x /api/v2/write) over pooled
//!           hyper connections; every answer classified; retries until written or rejected
//! ```
//!
//! Beside the flow: `config` (TOML and the Python persister's INI, validated), `cli` (operator commands:
//! `convert`, `discard-sink`).

pub mod cli;
pub mod config;
pub mod convert;
pub mod decode;
pub mod encode;
pub mod sink;

pub use convert::{Converter, Kind, Reject};
pub use encode::Policy;
