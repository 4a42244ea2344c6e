//! The writer's counters, which the admin endpoint reads: requests, points, retries by cause,
//! latency, bytes in flight, and the databases whose writes are failing now.
//!
//! Updated by the writer only, with atomic adds per request or per batch. Must never be read
//! under a lock the writer holds across an await (the outage map's lock is held briefly).

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use super::RetryCause;
use super::outage::Outage;

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
    pub(super) outages: std::sync::Mutex<std::collections::HashMap<String, Outage>>,
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
