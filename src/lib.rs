//! # monasca-persister
//!
//! Consumes Monasca metric and alarm-transition messages (JSON) from Kafka and writes them to
//! InfluxDB as line protocol, losing nothing: a message is either written, or rejected with a
//! typed reason and dead-lettered.
//!
//! # One message, one file per stage
//!
//! ```text
//!  1 kafka/consumer.rs    the consumer thread's poll loop takes up to a batch of messages
//!  2 kafka/queue.rs       … from our queue below rust-rdkafka, as `Fetch`es (no copy)
//!  3 pipeline/worker/     the worker takes them into the batch and feeds the decisions
//!  4 pipeline/batch.rs    Batcher::add: one message → convert → lines of its database
//!  5 convert.rs           decode (decode/, simd-json in place) then encode (encode/)
//!  6 pipeline/state.rs    the decisions: flush a full or due batch, pause, commit what
//!  7 pipeline/flush.rs    the batch handed to the runtime: written, rejects dead-lettered
//!  8 sink/writer.rs       …over pooled hyper connections, every answer classified, retried
//!  9 kafka/deadletter.rs  rejects to the dead-letter topic, reason in headers
//! 10 kafka/client.rs      the worker commits the finished offsets through its Kafka port
//! ```
//!
//! # Layout
//!
//! ```text
//!  config    TOML, or the Python persister's INI file → one validated Config (plain data)
//!  daemon    builds the pieces from a Config (per destination: a writer and a consumer
//!            group of its own), runs until a signal or a fatal end;
//!            `daemon::start` is the process: memory, logging, signals, exit statuses
//!  kafka     everything librdkafka: client properties, consumer threads and callbacks
//!            (each one call into the worker), our queues, the dead-letter producer
//!  pipeline  policy, no librdkafka: the Worker drives the decisions (`state`, pure, fed
//!            events, answering actions) through two ports (`ports`: Kafka without poll,
//!            Flush), so its executor is unit-tested with fakes; `offsets` is what is
//!            committable per partition; `series` the per-tenant series limit
//!  decode    simd-json, in place, into structs that borrow a per-worker scratch buffer
//!  encode    one line of InfluxDB line protocol appended to a reused BytesMut
//!  convert   the two above as one per-message step; Reject = DecodeError | EncodeError
//!  sink      lines → InfluxDB (1.x /write or 2.x /api/v2/write); `retry` its backoff
//!  stats     counters the others bump; `admin` renders them (/metrics, /healthz, /ready)
//!  cli       operator commands (convert, produce, loadgen, discard-sink, mock-kafka,
//!            dead-letters), each a `main` over parsed arguments (`cli::args`)
//! ```
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
