//! Where and how the sink writes: the `[influxdb]` section, as plain data.
//!
//! Owns the InfluxDB settings' fields, their defaults and what follows from them alone (the
//! database a tenant's points go to). Must never: talk to a server, or show a password or token
//! (they are [`Secret`]s).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Secret;
use crate::encode::Dialect;

/// Which write API to use (`v1`, `v2`); they word their errors differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// InfluxDB 1.x `/write` (also VictoriaMetrics).
    #[default]
    V1,
    /// InfluxDB 2.x/3.x `/api/v2/write` (also VictoriaMetrics).
    V2,
}

/// Where and how to write. Field names follow the Python persister's `[influxdb]` group.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    pub retention_hours_per_tenant: BTreeMap<String, u32>,
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
    pub line_protocol: Dialect,
    /// The tenants (project ids) whose messages this destination writes; empty: every tenant.
    /// A message of another tenant is skipped (committed without being written).
    pub tenants: Vec<String>,
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
            line_protocol: Dialect::V1,
            tenants: Vec::new(),
        }
    }
}

impl InfluxConfig {
    /// The first of the request limits (`batch_size`, `max_in_flight`, `max_body_bytes`) that
    /// is 0, which no writer can work with. The writer refuses all three (its callers may
    /// build an `InfluxConfig` themselves); validation refuses the first two by key.
    pub fn zero_request_limit(&self) -> Option<&'static str> {
        [
            ("batch_size", self.batch_size),
            ("max_in_flight", self.max_in_flight),
            ("max_body_bytes", self.max_body_bytes),
        ]
        .into_iter()
        .find(|&(_, limit)| limit == 0)
        .map(|(key, _)| key)
    }

    /// The database (or bucket) a tenant's points go to.
    pub fn database_for<'a>(&'a self, tenant: &str) -> Cow<'a, str> {
        if self.db_per_tenant {
            format!("{}_{}", self.database_name, tenant).into()
        } else {
            self.database_name.as_str().into()
        }
    }
}
