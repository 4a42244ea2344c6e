//! The InfluxDB writer: a batch in, its fate out.
//!
//! Owns the write loop: the in-flight bound and rate limit, request chunking (points and bytes
//! per request), splitting on a `partial write` it cannot attribute, database creation, and
//! the retry waits. Must never report a line written before InfluxDB said so, nor give up on a
//! batch while the server is down (only a database refused longer than the caller allows).

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::partial::identify_partial;
use super::{
    InfluxConfig, Lines, RejectedLine, RetryCause, SinkError, Verdict, WriteError, WriteReport,
    WriterStats, http, rate,
};

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
        if config.zero_request_limit().is_some() {
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
    pub async fn write(&self, db: &str, batch: &Lines) -> Result<WriteReport, WriteError> {
        self.write_or_give_up(db, batch, None).await
    }

    /// As [`Writer::write`], but once `db` alone has refused every attempt (403, bucket not
    /// found) for `refused_after` (counted across batches), the lines not yet written come
    /// back in `refused` instead of waiting on.
    pub async fn write_or_give_up(
        &self,
        db: &str,
        batch: &Lines,
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

    /// Sends the batch's chunks until each line's fate is known, splitting and resending as the
    /// answers ask; then counts what came of them.
    async fn write_chunks(
        &self,
        db: &str,
        batch: &Lines,
        refused_after: Option<Duration>,
        report: &mut WriteReport,
    ) -> Result<(), WriteError> {
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
                    todo.extend(runs_between(&range, &rejected).into_iter().rev());
                    report.rejected.extend(rejected);
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
                Fate::RejectAll(message) => report.rejected.extend(lines(range, &message)),
                Fate::Refused(message) => {
                    // The rest of the batch goes to the same database: give it all up.
                    for r in std::iter::once(range).chain(todo.drain(..).rev()) {
                        report.refused.extend(lines(r, &message));
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
        self.count(db, report);
        Ok(())
    }

    /// Adds a decided batch's points to the counters; logs its rejected lines, if any.
    fn count(&self, db: &str, report: &WriteReport) {
        let stats = &self.inner.stats;
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
    }

    /// Splits a batch into requests of at most `batch_size` lines and `max_body_bytes` bytes
    /// (a single longer line goes alone).
    fn chunks(&self, batch: &Lines) -> Vec<Range<usize>> {
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

    /// Sends lines `range` until the answer decides their fate; retries in between.
    async fn send_until_decided(
        &self,
        db: &str,
        batch: &Lines,
        range: &Range<usize>,
        refused_after: Option<Duration>,
        report: &mut WriteReport,
    ) -> Result<Fate, WriteError> {
        let inner = &self.inner;
        let c = &inner.config;
        let body = inner.http.encode_body(batch.slice(range));
        let mut attempt = 0u32;
        loop {
            let (cause, after, message) = match self.send(db, body.clone(), report).await {
                Verdict::Done => {
                    inner.stats.succeeded(db);
                    return Ok(Fate::Written);
                }
                Verdict::Partial { message } => {
                    inner.stats.succeeded(db);
                    return Ok(identify_partial(batch, range, &message)
                        .map_or(Fate::Split(message), Fate::Partial));
                }
                Verdict::Split { message } => return Ok(Fate::Split(message)),
                Verdict::Reject { message } => return Ok(Fate::RejectAll(message)),
                Verdict::CreateDatabase => match self.create_database(db).await {
                    Ok(()) => continue,
                    Err((cause, message)) => (cause, None, message),
                },
                Verdict::Retry {
                    cause,
                    after,
                    message,
                } => (cause, after, message),
            };
            let wait = after.unwrap_or_else(|| {
                crate::retry::wait(
                    attempt,
                    Duration::from_millis(c.retry_initial_ms),
                    Duration::from_secs_f64(c.retry_max_seconds),
                )
            });
            let failure = inner.stats.failed(db, cause);
            if let (Some(limit), Some(refused)) = (refused_after, failure.refused_for)
                && refused >= limit
            {
                return Ok(Fate::Refused(message));
            }
            log_retry(db, cause, attempt, wait, failure.log, &message);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = inner.shutdown.cancelled() => return Err(WriteError::ShuttingDown),
            }
            attempt = attempt.saturating_add(1);
        }
    }

    /// One write request, counted and timed; the answer, classified.
    async fn send(&self, db: &str, body: Bytes, report: &mut WriteReport) -> Verdict {
        let inner = &self.inner;
        report.requests += 1;
        inner.stats.requests.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let action = inner.http.write(db, body).await;
        inner.stats.latency.observe(started.elapsed());
        action
    }

    /// Creates `db` (with the default retention policy, if set), counted and logged.
    async fn create_database(&self, db: &str) -> Result<(), (RetryCause, String)> {
        let inner = &self.inner;
        inner.http.create_database(db).await?;
        inner
            .stats
            .databases_created
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            db,
            retention_hours = inner.config.default_retention_hours,
            "created InfluxDB database"
        );
        Ok(())
    }
}

/// The runs of lines in `range` between the `rejected` ones (in order).
fn runs_between(range: &Range<usize>, rejected: &[RejectedLine]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = range.start;
    for r in rejected {
        if r.index > start {
            runs.push(start..r.index);
        }
        start = r.index + 1;
    }
    if start < range.end {
        runs.push(start..range.end);
    }
    runs
}

/// Each line of `range`, with `reason`.
fn lines(range: Range<usize>, reason: &str) -> impl Iterator<Item = RejectedLine> + '_ {
    range.map(move |index| RejectedLine {
        index,
        reason: reason.to_owned(),
    })
}

/// A failed attempt, logged: at debug level unless `log` (attempts not logged since the last
/// logged one) says this one is the outage's to log.
fn log_retry(
    db: &str,
    cause: RetryCause,
    attempt: u32,
    wait: Duration,
    log: Option<u64>,
    message: &str,
) {
    match log {
        None => {
            tracing::debug!(db, cause = cause.as_str(), attempt, error = %message, "InfluxDB write failed; retrying");
        }
        Some(suppressed) if cause == RetryCause::Auth => {
            tracing::error!(db, cause = cause.as_str(), attempt, wait_ms = wait.as_millis() as u64, suppressed_since_last = suppressed, error = %message,
                "InfluxDB refused the credentials; retrying (check influxdb.user/password/token)");
        }
        Some(suppressed) => {
            tracing::warn!(db, cause = cause.as_str(), attempt, wait_ms = wait.as_millis() as u64, suppressed_since_last = suppressed, error = %message,
                "InfluxDB write failed; retrying");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::lines::tests::batch;

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
