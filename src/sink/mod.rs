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

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Secret;
use crate::stats::RateLimit;

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

/// A finished batch: line protocol and where each line ends. Line ends come from the encoder,
/// not from scanning for `\n`, because string fields may hold raw newlines.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The lines, back to back, each ending in `\n`.
    pub body: Bytes,
    /// Exclusive end offset of each line in `body`.
    pub line_ends: Vec<usize>,
}

impl Batch {
    /// A batch from lines that hold no raw newline (all metric lines).
    pub fn from_newline_separated(body: Bytes) -> Self {
        let line_ends = body
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .map(|(i, _)| i + 1)
            .collect();
        Batch { body, line_ends }
    }

    /// A batch from an encoder's buffer and its recorded line ends.
    pub fn new(body: BytesMut, line_ends: Vec<usize>) -> Self {
        Batch {
            body: body.freeze(),
            line_ends,
        }
    }

    pub fn len(&self) -> usize {
        self.line_ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.line_ends.is_empty()
    }

    fn start(&self, line: usize) -> usize {
        if line == 0 {
            0
        } else {
            self.line_ends[line - 1]
        }
    }

    /// The bytes of lines `r` (zero-copy).
    fn slice(&self, r: &Range<usize>) -> Bytes {
        self.body
            .slice(self.start(r.start)..self.line_ends[r.end - 1])
    }

    /// One line without its final newline.
    fn line(&self, i: usize) -> &[u8] {
        &self.body[self.start(i)..self.line_ends[i] - 1]
    }
}

/// A line InfluxDB refused for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedLine {
    /// Index of the line in the batch.
    pub index: usize,
    /// InfluxDB's reason.
    pub reason: String,
}

/// The fate of a batch: every line not listed in `rejected` or `refused` is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub written: usize,
    pub rejected: Vec<RejectedLine>,
    /// Lines not written because the database refused them for longer than the caller
    /// allowed (see [`Writer::write_or_give_up`]); none of them is stored.
    pub refused: Vec<RejectedLine>,
    /// HTTP requests it took (splits and retries included).
    pub requests: u32,
}

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

/// Counters the admin endpoint reads; updated by the writer.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub requests: AtomicU64,
    pub points_written: AtomicU64,
    pub points_rejected: AtomicU64,
    pub databases_created: AtomicU64,
    /// Retries by cause, indexed like [`RetryCause`]'s declaration order.
    pub retries: [AtomicU64; RetryCause::ALL.len()],
    /// The latest attempt failed and is being retried.
    pub failing: AtomicBool,
    /// Duration of each HTTP write request (answered or failed).
    pub latency: crate::stats::Histogram,
    /// Line-protocol bytes handed to `write` and not yet decided.
    pub bytes_in_flight: std::sync::atomic::AtomicI64,
    /// Time writes waited for `max_points_per_second`.
    pub rate_limited: crate::stats::Seconds,
    /// Databases whose writes are failing now, each with its run of failed attempts.
    outages: std::sync::Mutex<std::collections::HashMap<String, Outage>>,
}

/// A database whose writes are failing.
#[derive(Debug, Clone, PartialEq)]
pub struct FailingDatabase {
    pub db: String,
    /// Since the first failed attempt of this run.
    pub failing_for: Duration,
    /// Since when it refuses (403, bucket missing), if it does.
    pub refused_for: Option<Duration>,
}

impl WriterStats {
    /// The databases whose writes are failing now, by name.
    pub fn failing_databases(&self) -> Vec<FailingDatabase> {
        let outages = self.outages.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<FailingDatabase> = outages
            .iter()
            .map(|(db, o)| FailingDatabase {
                db: db.clone(),
                failing_for: o.since.elapsed(),
                refused_for: o.refused_since.map(|t| t.elapsed()),
            })
            .collect();
        out.sort_by(|a, b| a.db.cmp(&b.db));
        out
    }

    /// Marks `db` as failing now (refusing, if `refused`), as a failed write would.
    #[cfg(test)]
    pub(crate) fn mark_failing(&self, db: &str, refused: bool) {
        let mut outages = self.outages.lock().unwrap_or_else(|e| e.into_inner());
        let o = outages.entry(db.to_owned()).or_insert_with(Outage::new);
        if refused {
            o.refused_since = Some(std::time::Instant::now());
        }
    }
}

/// The InfluxDB writer. Cheap to clone; all clones share one connection pool and one
/// in-flight bound.
#[derive(Clone)]
pub struct Writer {
    inner: Arc<Inner>,
}

struct Inner {
    /// The one pooled HTTP(S) client.
    http: http::Client,
    /// Settings the request loop reads.
    config: InfluxConfig,
    /// Bounds concurrent `write` calls: the backpressure callers feel.
    in_flight: Semaphore,
    /// Cancelled on shutdown: ends retry waits.
    shutdown: CancellationToken,
    stats: Arc<WriterStats>,
    /// `max_points_per_second`, when set.
    rate: Option<tokio::sync::Mutex<rate::Bucket>>,
}

/// A run of failed write attempts to one database: logged when it starts, at most every 30 s
/// while it lasts (concurrent batches each retry; a line per attempt would flood the journal),
/// and when a write succeeds again, with its length and retry count.
#[derive(Debug)]
struct Outage {
    since: std::time::Instant,
    /// Since when every attempt was refused for this database alone (403, bucket missing);
    /// `None` once another kind of failure comes between.
    refused_since: Option<std::time::Instant>,
    retries: u64,
    log: RateLimit,
}

impl Outage {
    fn new() -> Self {
        Outage {
            since: std::time::Instant::now(),
            refused_since: None,
            retries: 0,
            log: RateLimit::new(1, Duration::from_secs(30)),
        }
    }
}

/// What one chunk of lines came to.
enum Fate {
    Written,
    /// InfluxDB dropped these (index within the batch, reason, in order) and says it stored
    /// the rest.
    Partial(Vec<RejectedLine>),
    /// Resend the halves.
    Split(String),
    /// The database has refused writes for longer than allowed: give up on it.
    Refused(String),
    /// None of these lines will ever be stored.
    RejectAll(String),
}

impl Writer {
    /// Builds the client and connection pool. Fails only on bad TLS or config values.
    pub fn new(config: InfluxConfig, shutdown: CancellationToken) -> Result<Self, SinkError> {
        if config.batch_size == 0 || config.max_in_flight == 0 || config.max_body_bytes == 0 {
            return Err(SinkError::Config(
                "batch_size, max_in_flight and max_body_bytes must be positive".into(),
            ));
        }
        if config.ssl && !config.verify_ssl {
            tracing::warn!(
                host = %config.ip_address,
                "influxdb.verify_ssl = false: the server's certificate is NOT verified"
            );
        }
        let http = http::Client::new(&config)?;
        Ok(Writer {
            inner: Arc::new(Inner {
                http,
                in_flight: Semaphore::new(config.max_in_flight),
                rate: (config.max_points_per_second > 0).then(|| {
                    tokio::sync::Mutex::new(rate::Bucket::new(
                        config.max_points_per_second,
                        std::time::Instant::now(),
                    ))
                }),
                config,
                shutdown,
                stats: Arc::new(WriterStats::default()),
            }),
        })
    }

    pub fn stats(&self) -> Arc<WriterStats> {
        self.inner.stats.clone()
    }

    pub fn config(&self) -> &InfluxConfig {
        &self.inner.config
    }

    /// The database (or bucket) a tenant's points go to.
    pub fn database_for<'a>(&'a self, tenant: &str) -> std::borrow::Cow<'a, str> {
        self.inner.config.database_for(tenant)
    }

    /// Writes `batch` to database `db`. Returns when every line is either stored or rejected by
    /// the server for good; waits (retrying) as long as the server is unreachable, failing or
    /// refusing credentials, until shutdown.
    pub async fn write(&self, db: &str, batch: &Batch) -> Result<WriteReport, WriteError> {
        self.write_or_give_up(db, batch, None).await
    }

    /// As [`Writer::write`], but once `db` alone has refused every attempt (403, bucket not
    /// found) for `refused_after` (counted across batches), the lines not yet written come
    /// back in `refused` instead of waiting on.
    pub async fn write_or_give_up(
        &self,
        db: &str,
        batch: &Batch,
        refused_after: Option<Duration>,
    ) -> Result<WriteReport, WriteError> {
        let inner = &self.inner;
        let _permit = tokio::select! {
            p = inner.in_flight.acquire() => p.map_err(|_| WriteError::ShuttingDown)?,
            _ = inner.shutdown.cancelled() => return Err(WriteError::ShuttingDown),
        };
        if let Some(rate) = &inner.rate {
            // Charged once per batch, before its first request (retries and splits are free).
            let started = std::time::Instant::now();
            let mut bucket = rate.lock().await;
            let wait = bucket.take(batch.line_ends.len(), std::time::Instant::now());
            if !wait.is_zero() {
                // Held while waiting: the next batch's tokens are counted after this one's.
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = inner.shutdown.cancelled() => return Err(WriteError::ShuttingDown),
                }
            }
            drop(bucket);
            inner.stats.rate_limited.add(started.elapsed());
        }
        let mut report = WriteReport::default();
        let bytes = batch.body.len() as i64;
        inner
            .stats
            .bytes_in_flight
            .fetch_add(bytes, Ordering::Relaxed);
        let result = self
            .write_chunks(db, batch, refused_after, &mut report)
            .await;
        inner
            .stats
            .bytes_in_flight
            .fetch_sub(bytes, Ordering::Relaxed);
        result?;
        Ok(report)
    }

    async fn write_chunks(
        &self,
        db: &str,
        batch: &Batch,
        refused_after: Option<Duration>,
        report: &mut WriteReport,
    ) -> Result<(), WriteError> {
        let inner = &self.inner;
        // Work list of line ranges, in order; splits push their halves back.
        let mut todo: Vec<Range<usize>> = self.chunks(batch);
        todo.reverse();
        while let Some(range) = todo.pop() {
            match self
                .send_until_decided(db, batch, &range, refused_after, report)
                .await?
            {
                Fate::Written => report.written += range.len(),
                Fate::Partial(rejected) => {
                    // The message names what was dropped, but 1.x does not always name
                    // everything (it reports one error of several). The rest is sent again and
                    // counted only on a clean answer; rewriting stored points is harmless.
                    let mut runs = Vec::new();
                    let mut start = range.start;
                    for r in &rejected {
                        if r.index > start {
                            runs.push(start..r.index);
                        }
                        start = r.index + 1;
                    }
                    if start < range.end {
                        runs.push(start..range.end);
                    }
                    report.rejected.extend(rejected);
                    todo.extend(runs.into_iter().rev());
                }
                Fate::Split(message) if range.len() == 1 => report.rejected.push(RejectedLine {
                    index: range.start,
                    reason: message,
                }),
                Fate::Split(_) => {
                    let mid = range.start + range.len() / 2;
                    todo.push(mid..range.end);
                    todo.push(range.start..mid);
                }
                Fate::RejectAll(message) => {
                    report.rejected.extend(range.map(|index| RejectedLine {
                        index,
                        reason: message.clone(),
                    }));
                }
                Fate::Refused(message) => {
                    // The rest of the batch goes to the same database: give it all up.
                    for r in std::iter::once(range).chain(todo.drain(..).rev()) {
                        report.refused.extend(r.map(|index| RejectedLine {
                            index,
                            reason: message.clone(),
                        }));
                    }
                    report.refused.sort_by_key(|r| r.index);
                    tracing::warn!(
                        db,
                        lines = report.refused.len(),
                        error = %message,
                        "InfluxDB has refused this database too long; giving its lines up"
                    );
                    break;
                }
            }
        }
        report.rejected.sort_by_key(|r| r.index);
        let stats = &inner.stats;
        stats
            .points_written
            .fetch_add(report.written as u64, Ordering::Relaxed);
        stats
            .points_rejected
            .fetch_add(report.refused.len() as u64, Ordering::Relaxed);
        if !report.rejected.is_empty() {
            stats
                .points_rejected
                .fetch_add(report.rejected.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                db,
                rejected = report.rejected.len(),
                first_reason = %report.rejected[0].reason,
                "InfluxDB rejected lines"
            );
        }
        Ok(())
    }

    /// Splits a batch into requests of at most `batch_size` lines and `max_body_bytes` bytes
    /// (a single longer line goes alone).
    fn chunks(&self, batch: &Batch) -> Vec<Range<usize>> {
        let c = &self.inner.config;
        let mut out = Vec::new();
        let mut start = 0;
        while start < batch.len() {
            let mut end = start + 1;
            let base = batch.start(start);
            while end < batch.len()
                && end - start < c.batch_size
                && batch.line_ends[end] - base <= c.max_body_bytes
            {
                end += 1;
            }
            out.push(start..end);
            start = end;
        }
        out
    }

    /// A write to `db` was answered: ends its failure run, if any (logged once, with its
    /// length and retries).
    fn succeeded(&self, db: &str) {
        let inner = &self.inner;
        inner.stats.failing.store(false, Ordering::Relaxed);
        let ended = {
            let mut outages = inner
                .stats
                .outages
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if outages.is_empty() {
                return;
            }
            outages.remove(db)
        };
        if let Some(o) = ended {
            tracing::info!(
                db,
                outage_seconds = o.since.elapsed().as_secs_f64(),
                retries = o.retries,
                "InfluxDB writes succeed again"
            );
        }
    }

    /// Sends lines `range` until the answer decides their fate; retries in between.
    async fn send_until_decided(
        &self,
        db: &str,
        batch: &Batch,
        range: &Range<usize>,
        refused_after: Option<Duration>,
        report: &mut WriteReport,
    ) -> Result<Fate, WriteError> {
        let inner = &self.inner;
        let c = &inner.config;
        let body = inner.http.encode_body(batch.slice(range));
        let mut attempt = 0u32;
        loop {
            report.requests += 1;
            inner.stats.requests.fetch_add(1, Ordering::Relaxed);
            let started = std::time::Instant::now();
            let action = inner.http.write(db, body.clone()).await;
            inner.stats.latency.observe(started.elapsed());
            let (cause, after, message) = match action {
                Action::Done => {
                    self.succeeded(db);
                    return Ok(Fate::Written);
                }
                Action::Partial { message } => {
                    self.succeeded(db);
                    return Ok(identify_partial(batch, range, &message)
                        .map_or(Fate::Split(message), Fate::Partial));
                }
                Action::Split { message } => return Ok(Fate::Split(message)),
                Action::Reject { message } => return Ok(Fate::RejectAll(message)),
                Action::CreateDatabase => match inner.http.create_database(db).await {
                    Ok(()) => {
                        inner
                            .stats
                            .databases_created
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            db,
                            retention_hours = c.default_retention_hours,
                            "created InfluxDB database"
                        );
                        continue;
                    }
                    Err((cause, message)) => (cause, None, message),
                },
                Action::Retry {
                    cause,
                    after,
                    message,
                } => (cause, after, message),
            };
            inner.stats.failing.store(true, Ordering::Relaxed);
            inner.stats.retries[cause as usize].fetch_add(1, Ordering::Relaxed);
            let wait = after.unwrap_or_else(|| {
                crate::retry::wait(
                    attempt,
                    Duration::from_millis(c.retry_initial_ms),
                    Duration::from_secs_f64(c.retry_max_seconds),
                )
            });
            let (log, suppressed, refused_for) = {
                let mut outages = inner
                    .stats
                    .outages
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let o = outages.entry(db.to_owned()).or_insert_with(Outage::new);
                o.retries += 1;
                if cause.refuses_database() {
                    o.refused_since.get_or_insert_with(std::time::Instant::now);
                } else {
                    o.refused_since = None;
                }
                let (log, suppressed) = match o.log.allow() {
                    Some(suppressed) => (true, suppressed),
                    None => (false, 0),
                };
                (log, suppressed, o.refused_since.map(|t| t.elapsed()))
            };
            if let (Some(limit), Some(refused)) = (refused_after, refused_for)
                && refused >= limit
            {
                return Ok(Fate::Refused(message));
            }
            if !log {
                tracing::debug!(db, cause = cause.as_str(), attempt, error = %message, "InfluxDB write failed; retrying");
            } else if cause == RetryCause::Auth {
                tracing::error!(db, cause = cause.as_str(), attempt, wait_ms = wait.as_millis() as u64, suppressed_since_last = suppressed, error = %message,
                    "InfluxDB refused the credentials; retrying (check influxdb.user/password/token)");
            } else {
                tracing::warn!(db, cause = cause.as_str(), attempt, wait_ms = wait.as_millis() as u64, suppressed_since_last = suppressed, error = %message,
                    "InfluxDB write failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = inner.shutdown.cancelled() => return Err(WriteError::ShuttingDown),
            }
            attempt = attempt.saturating_add(1);
        }
    }
}

/// Names the lines a `partial write` dropped, if the message identifies them all: exact text
/// for unparseable lines, the measurement for type conflicts. `None` means "cannot tell":
/// the caller then splits (resending stored points is harmless, see `classify`).
fn identify_partial(
    batch: &Batch,
    range: &Range<usize>,
    message: &str,
) -> Option<Vec<RejectedLine>> {
    let d = parse_partial(message);
    if d.unparseable.is_empty() && d.type_conflicts.is_empty() && d.dropped == Some(range.len()) {
        // Every point dropped (e.g. "points beyond retention policy"): no need to split.
        return Some(
            range
                .clone()
                .map(|index| RejectedLine {
                    index,
                    reason: format!("InfluxDB: {message}"),
                })
                .collect(),
        );
    }
    let mut rejected = Vec::new();
    let mut matched_unparseable = vec![false; d.unparseable.len()];
    let mut conflicts = 0usize;
    for i in range.clone() {
        let line = batch.line(i);
        if let Some(k) = d.unparseable.iter().position(|(u, _)| u.as_bytes() == line) {
            matched_unparseable[k] = true;
            rejected.push(RejectedLine {
                index: i,
                reason: format!("InfluxDB: unable to parse: {}", d.unparseable[k].1),
            });
        } else if !d.type_conflicts.is_empty() {
            let m = measurement(line);
            if let Some(name) = d
                .type_conflicts
                .iter()
                .find(|c| c.as_bytes() == m.as_slice())
            {
                conflicts += 1;
                rejected.push(RejectedLine {
                    index: i,
                    reason: format!("InfluxDB: field type conflict on measurement {name:?}"),
                });
            }
        }
    }
    let all_found = matched_unparseable.iter().all(|&m| m)
        && (d.type_conflicts.is_empty() || d.dropped == Some(conflicts));
    (all_found && !rejected.is_empty()).then_some(rejected)
}

/// The measurement of a line, unescaped as 1.x does (`\,`, `\ `, `\=`).
fn measurement(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if b == b'\\' && i + 1 < line.len() && matches!(line[i + 1], b',' | b' ' | b'=') {
            out.push(line[i + 1]);
            i += 2;
            continue;
        }
        if b == b',' || b == b' ' {
            break;
        }
        out.push(b);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(lines: &[&str]) -> Batch {
        Batch::from_newline_separated(Bytes::from(
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        ))
    }

    #[test]
    fn partial_write_names_unparseable_lines() {
        let b = batch(&["m value=1 1", "bad one", "m value=2 2"]);
        let got = identify_partial(
            &b,
            &(0..3),
            "partial write: unable to parse 'bad one': invalid field format dropped=0",
        );
        assert_eq!(
            got,
            Some(vec![RejectedLine {
                index: 1,
                reason: "InfluxDB: unable to parse: invalid field format".into()
            }])
        );
    }

    #[test]
    fn partial_write_names_type_conflicts_by_measurement() {
        let b = batch(&["zz value=1 1", "ok value=1 1", "zz,a=b value=2 2"]);
        let msg = r#"partial write: field type conflict: input field "value" on measurement "zz" is type float, already exists as type string dropped=2"#;
        let got = identify_partial(&b, &(0..3), msg).expect("identified");
        assert_eq!(got.iter().map(|r| r.index).collect::<Vec<_>>(), vec![0, 2]);
    }

    #[test]
    fn partial_write_that_cannot_be_matched_asks_for_a_split() {
        let b = batch(&["zz value=1 1", "ok value=1 1"]);
        let msg = r#"partial write: field type conflict: input field "value" on measurement "zz" is type float, already exists as type string dropped=2"#;
        assert_eq!(identify_partial(&b, &(0..2), msg), None);
        assert_eq!(
            identify_partial(
                &b,
                &(0..2),
                "partial write: unable to parse 'x': y dropped=0"
            ),
            None
        );
    }

    #[test]
    fn partial_write_that_dropped_every_point_rejects_them_all() {
        let b = batch(&["old v=1 1", "old v=2 2"]);
        let got = identify_partial(
            &b,
            &(0..2),
            "partial write: points beyond retention policy dropped=2",
        )
        .unwrap();
        assert_eq!(got.iter().map(|r| r.index).collect::<Vec<_>>(), vec![0, 1]);
        assert!(got[0].reason.contains("beyond retention"));
    }

    #[test]
    fn measurement_is_unescaped() {
        assert_eq!(measurement(br"a\,b\ c,t=1 v=1"), b"a,b c".to_vec());
        assert_eq!(measurement(b"m v=1"), b"m".to_vec());
    }

    #[test]
    fn batch_slices_are_whole_lines() {
        let b = batch(&["a v=1 1", "b v=1 1", "c v=1 1"]);
        assert_eq!(&b.slice(&(1..3))[..], b"b v=1 1\nc v=1 1\n");
        assert_eq!(b.line(2), b"c v=1 1");
    }

    #[test]
    fn chunks_respect_points_and_bytes() {
        let w = Writer::new(
            InfluxConfig {
                batch_size: 2,
                max_body_bytes: 16,
                ..InfluxConfig::default()
            },
            CancellationToken::new(),
        )
        .unwrap();
        let b = batch(&[
            "a v=1 1",
            "b v=1 1",
            "c v=1 1",
            "dddddddddddddddddddddd v=1 1",
            "e v=1 1",
        ]);
        assert_eq!(w.chunks(&b), vec![0..2, 2..3, 3..4, 4..5]);
    }
}
