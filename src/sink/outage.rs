//! Runs of failed writes per database: when one starts and ends, how long it has lasted, and
//! whether the database refuses (403, bucket missing) rather than fails.
//!
//! Owns the outage log lines: one when a run starts, at most one per 30 s while it lasts, one
//! when writes succeed again. Must never log a line per failed attempt at warn level.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{RetryCause, WriterStats};
use crate::stats::RateLimit;

/// A run of failed write attempts to one database: logged when it starts, at most every 30 s
/// while it lasts (concurrent batches each retry; a line per attempt would flood the journal),
/// and when a write succeeds again, with its length and retry count.
#[derive(Debug)]
pub(super) struct Outage {
    pub(super) since: std::time::Instant,
    /// Since when every attempt was refused for this database alone (403, bucket missing);
    /// `None` once another kind of failure comes between.
    pub(super) refused_since: Option<std::time::Instant>,
    retries: u64,
    log: RateLimit,
}

impl Outage {
    pub(super) fn new() -> Self {
        Outage {
            since: std::time::Instant::now(),
            refused_since: None,
            retries: 0,
            log: RateLimit::new(1, Duration::from_secs(30)),
        }
    }
}

/// What one more failed attempt on a database came to.
pub(super) struct Failure {
    /// `Some(attempts not logged since the last logged one)` when this one is to be logged.
    pub(super) log: Option<u64>,
    /// How long the database has refused every attempt, if it does.
    pub(super) refused_for: Option<Duration>,
}

impl WriterStats {
    /// A write to `db` was answered: ends its failure run, if any (logged once, with its
    /// length and retries).
    pub(super) fn succeeded(&self, db: &str) {
        self.failing.store(false, Ordering::Relaxed);
        let ended = {
            let mut outages = self.outages.lock().unwrap_or_else(|e| e.into_inner());
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

    /// A write to `db` failed with `cause` and is to be retried: counted, by cause and in
    /// `db`'s run of failures.
    pub(super) fn failed(&self, db: &str, cause: RetryCause) -> Failure {
        self.failing.store(true, Ordering::Relaxed);
        self.retries[cause as usize].fetch_add(1, Ordering::Relaxed);
        let mut outages = self.outages.lock().unwrap_or_else(|e| e.into_inner());
        let o = outages.entry(db.to_owned()).or_insert_with(Outage::new);
        o.retries += 1;
        if cause.refuses_database() {
            o.refused_since.get_or_insert_with(std::time::Instant::now);
        } else {
            o.refused_since = None;
        }
        Failure {
            log: o.log.allow(),
            refused_for: o.refused_since.map(|t| t.elapsed()),
        }
    }
}
