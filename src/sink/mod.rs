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

pub use classify::{Action, Api, RetryCause, classify, error_message, parse_partial};

use crate::config::Secret;

/// Where and how to write. Field names follow the Python persister's `[influxdb]` group.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct InfluxConfig {
    /// Which write API to use.
    pub api: Api,
    /// Host name or address of the server.
    pub ip_address: String,
    pub port: u16,
    /// `https` instead of `http`.
    pub ssl: bool,
    /// Verify the server's certificate (only with `ssl`). Turning it off is logged.
    pub verify_ssl: bool,
    /// 1.x user and password (sent as HTTP basic auth, never in the URL).
    pub user: String,
    pub password: Secret,
    /// 2.x/3.x token and organisation.
    pub token: Secret,
    pub org: String,
    /// Database (1.x) or bucket (2.x); with `db_per_tenant`, the prefix of `<name>_<tenant>`.
    pub database_name: String,
    pub db_per_tenant: bool,
    /// When > 0, a database the persister creates gets a default retention policy of this
    /// many hours. Existing databases are never altered.
    pub default_retention_hours: u32,
    /// Most points written per second, over all writes (0: unlimited): a token bucket of
    /// one second's worth; a capped writer pauses the consumers (backpressure).
    pub max_points_per_second: u64,
    /// Per tenant, at most this many distinct series (measurement + tag set) in a clock hour
    /// (0: off); a message that would add one more is dead-lettered (`series_limit`).
    pub max_hourly_series_per_tenant: u64,
    /// With `db_per_tenant`: the default retention policy, in hours, of the database created
    /// for each tenant named here (0: none); the others get `default_retention_hours`.
    pub retention_hours_per_tenant: std::collections::BTreeMap<String, u32>,
    /// 1.x retention policy to write into (`rp=`); empty means the database's default.
    pub retention_policy: String,
    /// Most points in one request.
    pub batch_size: usize,
    /// Most bytes in one request body (before compression).
    pub max_body_bytes: usize,
    /// Compress request bodies (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// Give up on a request (and retry it) after this long.
    pub request_timeout_seconds: f64,
    /// Most write calls in flight at once; further callers wait (backpressure).
    pub max_in_flight: usize,
    /// Idle pooled connections are closed after this long.
    pub pool_idle_timeout_seconds: f64,
    /// Most idle connections kept per host.
    pub pool_max_idle: usize,
    /// First retry wait; doubles per attempt up to `retry_max_seconds`, with jitter.
    pub retry_initial_ms: u64,
    pub retry_max_seconds: f64,
    /// Line-protocol escaping the server reads: `v1` (InfluxDB 1.x/2.x, default) or `v3`
    /// (VictoriaMetrics, InfluxDB 3: backslashes in identifiers escaped). Used by the encoder.
    pub line_protocol: crate::encode::Dialect,
}

impl Default for InfluxConfig {
    fn default() -> Self {
        Self {
            api: Api::V1,
            ip_address: "127.0.0.1".into(),
            port: 8086,
            ssl: false,
            verify_ssl: true,
            user: String::new(),
            password: Secret::default(),
            token: Secret::default(),
            org: String::new(),
            database_name: "mon".into(),
            db_per_tenant: false,
            default_retention_hours: 0,
            retention_hours_per_tenant: Default::default(),
            max_points_per_second: 0,
            max_hourly_series_per_tenant: 0,
            retention_policy: String::new(),
            batch_size: 10_000,
            max_body_bytes: 8 << 20,
            gzip: false,
            request_timeout_seconds: 30.0,
            max_in_flight: 4,
            pool_idle_timeout_seconds: 90.0,
            pool_max_idle: 8,
            retry_initial_ms: 100,
            retry_max_seconds: 30.0,
            line_protocol: crate::encode::Dialect::V1,
        }
    }
}

impl InfluxConfig {
    /// The database (or bucket) a tenant's points go to.
    pub fn database_for<'a>(&'a self, tenant: &str) -> std::borrow::Cow<'a, str> {
        if self.db_per_tenant {
            format!("{}_{}", self.database_name, tenant).into()
        } else {
            self.database_name.as_str().into()
        }
    }
}

mod batch;
mod outage;
mod partial;
mod stats;
mod writer;

pub use batch::{Batch, RejectedLine, WriteReport};
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
