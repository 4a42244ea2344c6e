//! Sink: finished batches of line protocol → InfluxDB over pooled HTTP connections.
//!
//! Owns the write side: the one pooled `hyper` client, request chunking (points and bytes per
//! request), database creation, and the retry loop. A call to [`Writer::write`] returns only
//! when the batch's fate is known: every line written or rejected by the server with its
//! reason. Must never: report a point written before InfluxDB said so, give up on a batch
//! because the server is down or refuses the credentials (it retries until shutdown), put a
//! password or token in a log line or error.

mod classify;
mod http;
mod rate;

pub use classify::{Api, RetryCause, Verdict, classify, error_message, parse_partial};

pub use crate::config::InfluxConfig;

mod lines;
mod outage;
mod partial;
mod stats;
mod writer;

pub use lines::{Lines, RejectedLine, WriteReport};
pub use stats::{FailingDatabase, WriterStats};
pub use writer::Writer;

/// Why a write ended without a fate for every line.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Shutdown was requested while the batch was waiting or being retried; none of its lines
    /// may be counted as written.
    #[error("shutting down before the batch was written")]
    ShuttingDown,
}

/// Start-up problems building the writer.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("influxdb: {0}")]
    Config(String),
    #[error("influxdb TLS setup: {0}")]
    Tls(String),
}
