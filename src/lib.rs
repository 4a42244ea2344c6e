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
//!  config    TOML, or the Python persister's INI file → one validated Config
//!     │
//!  pipeline  a consumer thread per `num_processors` takes Kafka messages from librdkafka
//!     │      in batches (`fetch`): payload (&[u8]) …
//!     ▼
//!  decode    simd-json, in place, into structs that borrow a per-worker scratch buffer
//!     │      (Metric, AlarmTransition) — or a DecodeError
//!     ▼
//!  encode    one line of InfluxDB 1.x line protocol appended to a reused BytesMut
//!     │      — or an EncodeError (a string InfluxDB cannot store, NaN, …)
//!     ▼
//!  convert   the two above as one per-message step; Reject = DecodeError | EncodeError
//!     │
//!  pipeline  … into a batch (lines per database, where each came from, the rejects)
//!     ▼
//!  sink      batch → InfluxDB (1.x /write or 2.x /api/v2/write) over pooled hyper
//!     │      connections; every answer classified; retried until written or rejected
//!     ▼
//!  pipeline  rejects → dead-letter topic; then per-partition commits of what is finished
//! ```
//!
//! Inside `pipeline`, what a consumer decides is apart from how it talks to librdkafka:
//! `pipeline::state` (`ConsumerState`) is fed events (messages taken, batch finished,
//! partitions assigned or revoked, commit failed, time passed, shutdown) and answers actions
//! (flush, pause, resume, commit, give up), with no Kafka, I/O or clock; `pipeline::consumer`
//! owns the thread, the librdkafka callbacks (which only forward events) and carries the
//! actions out; `pipeline::offsets` is the per-partition bookkeeping behind the commits.
//!
//! `daemon` wires these together and owns the life cycle: it runs until the shutdown future it
//! is given resolves (the binary's resolves on SIGTERM/SIGINT, a test's when it likes) or a
//! fatal condition. Beside the flow: `stats` and `admin` (self-metrics, `/metrics`,
//! `/healthz`, `/ready`), `cli` (operator commands: `convert`, `produce`, `loadgen`,
//! `discard-sink`, `mock-kafka`).
//!
//! Without the default `daemon` feature only the hot path is built (`decode`, `encode`,
//! `convert`, `cli::convert`): what the fuzz targets need.

#[cfg(feature = "daemon")]
pub mod admin;
pub mod cli;
#[cfg(feature = "daemon")]
pub mod config;
pub mod convert;
#[cfg(feature = "daemon")]
pub mod daemon;
pub mod decode;
pub mod encode;
#[cfg(feature = "daemon")]
pub mod kafka;
#[cfg(feature = "daemon")]
pub mod pipeline;
#[cfg(feature = "daemon")]
pub mod retry;
#[cfg(feature = "daemon")]
pub mod sink;
#[cfg(feature = "daemon")]
pub mod stats;

pub use convert::{Converter, Kind, Reject};
pub use encode::{Dialect, Encoder, Policy};
