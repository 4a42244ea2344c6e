//! Flushing: a full or due batch is handed to the async runtime, written to InfluxDB and its
//! rejects dead-lettered ([`process_batch`]); the result comes back to the consumer that
//! handed it out, as a [`Done`].
//!
//! Owns the hand-off and the completion channel. Must never block the consumer thread on a
//! write, or report a batch finished before every line is written or dead-lettered.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::batch::{self, PendingBatch, Source};
use super::ports::Flush;
use super::{BatchError, Control, Done, PipelineSettings, PipelineStats};
use crate::convert::Kind;
use crate::kafka::deadletter::{DeadLetter, DeadLetters};
use crate::sink::{Lines, WriteError, Writer};

/// Writes batches on the async runtime; one per consumer.
pub struct Flusher {
    done_tx: Sender<Done>,
    done_rx: Receiver<Done>,
    writer: Writer,
    dead: Arc<DeadLetters>,
    stats: Arc<PipelineStats>,
    rt: tokio::runtime::Handle,
    kind: Kind,
    database_refused: Duration,
    /// This consumer's own: cancelled when its shutdown timeout abandons its in-flight
    /// batches (the other consumers' writes go on).
    abandon: CancellationToken,
    /// For the test hook that fails a batch.
    control: Arc<Control>,
    /// With several destinations: names this one in the logs of its writes.
    span: tracing::Span,
}

impl Flusher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: &PipelineSettings,
        writer: Writer,
        dead: Arc<DeadLetters>,
        stats: Arc<PipelineStats>,
        rt: tokio::runtime::Handle,
        abandon: CancellationToken,
        control: Arc<Control>,
    ) -> Self {
        let (done_tx, done_rx) = channel();
        Flusher {
            done_tx,
            done_rx,
            writer,
            dead,
            stats,
            rt,
            kind: settings.kind,
            database_refused: settings.database_refused,
            abandon,
            control,
            span: match &settings.destination {
                Some(place) => tracing::info_span!("destination", name = %place.name),
                None => tracing::Span::none(),
            },
        }
    }
}

impl Flush for Flusher {
    fn start(&mut self, batch: PendingBatch) {
        let id = batch.id;
        let (tx, writer, dead, stats) = (
            self.done_tx.clone(),
            self.writer.clone(),
            self.dead.clone(),
            self.stats.clone(),
        );
        let fail = self
            .control
            .inject_batch_failure
            .swap(false, Ordering::Relaxed);
        let (refused, kind, abandon) = (self.database_refused, self.kind, self.abandon.clone());
        let handle = self.rt.spawn(
            async move {
                if fail {
                    panic!("injected batch failure (test hook)");
                }
                tokio::select! {
                    r = process_batch(batch, kind, writer, dead, stats, refused) => r,
                    _ = abandon.cancelled() => Err(WriteError::ShuttingDown),
                }
            }
            .instrument(self.span.clone()),
        );
        self.rt.spawn(async move {
            // A panic in the batch task must still be reported, or the in-flight count and
            // the commit point would wait for it forever. Its offsets stay uncommitted.
            let result = match handle.await {
                Ok(r) => r.map_err(BatchError::Write),
                Err(e) => Err(BatchError::Task(e.to_string())),
            };
            let _ = tx.send(Done { id, result });
        });
    }

    fn finished(&mut self) -> Option<Done> {
        self.done_rx.try_recv().ok()
    }

    fn wait_finished(&mut self, timeout: Duration) -> Option<Done> {
        self.done_rx.recv_timeout(timeout).ok()
    }

    fn abandon(&mut self) {
        self.abandon.cancel();
    }
}

/// Observes the end-to-end latency of every line of a write that InfluxDB stored (all but
/// those `report` gives back as rejected or refused), now, in one update of `into`.
fn observe_latency(
    into: &crate::stats::Histogram,
    created: &[i64],
    report: &crate::sink::WriteReport,
) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut not_written: Vec<usize> = (report.refused.iter().chain(&report.rejected))
        .map(|r| r.index)
        .collect();
    not_written.sort_unstable();
    let mut skip = not_written.into_iter().peekable();
    let mut tally = crate::stats::Tally::default();
    for (i, &c) in created.iter().enumerate() {
        if skip.next_if_eq(&i).is_some() {
            continue;
        }
        if c > 0 {
            tally.observe_ms(into.bounds(), now_ms - c);
        }
    }
    into.add(&tally);
}

/// Writes a batch's lines and dead-letters its rejects; the consumer commits once it's `Ok`.
pub async fn process_batch(
    batch: PendingBatch,
    kind: Kind,
    writer: Writer,
    dead: Arc<DeadLetters>,
    stats: Arc<PipelineStats>,
    database_refused: Duration,
) -> Result<batch::Spare, WriteError> {
    let PendingBatch {
        groups,
        mut sources,
        payloads,
        rejected,
        over_limit,
        unrouted,
        ..
    } = batch;
    let single = groups.len() == 1;
    let mut spare = batch::Spare::default();
    let payloads = payloads.freeze();
    let mut letters = refused_before_writing(&sources, &payloads, rejected, over_limit, unrouted);
    // One write per database, all at once: the writer's `max_in_flight` bounds how many run
    // (with a database per tenant, a batch holds many). Dropping the set (an early return)
    // aborts the rest.
    // A database that refuses us (a missing grant, a bucket that does not exist) holds back
    // only its own lines: with somewhere to put them, they are dead-lettered once it has
    // refused long enough; without, they wait (nothing is dropped).
    let refused_after = dead.target.is_some().then_some(database_refused);
    let mut writes = tokio::task::JoinSet::new();
    for g in groups.into_iter().filter(|g| !g.line_ends.is_empty()) {
        let writer = writer.clone();
        writes.spawn(
            async move {
                let body = Lines::new(g.lines, g.line_ends);
                let report = writer.write_or_give_up(&g.db, &body, refused_after).await;
                (body, g.sources, g.created, report)
            }
            .in_current_span(),
        );
    }
    while let Some(joined) = writes.join_next().await {
        let (body, line_sources, created, report) = match joined {
            Ok(done) => done,
            // A panic in a write is the batch's: it fails (see `BatchError::Task`).
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return Err(WriteError::ShuttingDown),
        };
        let report = report?;
        observe_latency(&stats.end_to_end[kind as usize].0, &created, &report);
        let refused = report.refused.into_iter().map(|r| ("database_refused", r));
        let rejected = report
            .rejected
            .into_iter()
            .map(|r| ("influxdb_rejected", r));
        for (reason, r) in refused.chain(rejected) {
            let i = line_sources[r.index];
            letters.push(letter(&sources, &payloads, i, reason, r.reason));
        }
        if single {
            spare.lines = body.body.try_into_mut().ok();
            spare.line_ends = body.line_ends;
            spare.line_sources = line_sources;
            spare.line_created = created;
        }
    }
    dead.send_all(&letters).await?;
    count(&stats, &letters, dead.target.is_some());
    drop(letters);
    spare.payloads = payloads.try_into_mut().ok();
    sources.clear();
    spare.sources = sources;
    Ok(spare)
}

/// The dead letters of a batch's messages refused before any write: rejected by the
/// converter, over the series limit, or of a tenant no destination takes.
fn refused_before_writing(
    sources: &[Source],
    payloads: &Bytes,
    rejected: Vec<(usize, crate::convert::Reject)>,
    over_limit: Vec<(usize, String)>,
    unrouted: Vec<(usize, String)>,
) -> Vec<DeadLetter> {
    rejected
        .into_iter()
        .map(|(i, r)| letter(sources, payloads, i, r.reason(), r.to_string()))
        .chain(over_limit.into_iter().map(|(i, tenant)| {
            let detail = format!(
                "tenant {tenant:?} has reached max_hourly_series_per_tenant: this message would add a series beyond the limit in this hour"
            );
            letter(sources, payloads, i, "series_limit", detail)
        }))
        .chain(unrouted.into_iter().map(|(i, tenant)| {
            let detail = format!("no destination takes tenant {tenant:?} (see `tenants`)");
            letter(sources, payloads, i, "unrouted", detail)
        }))
        .collect()
}

/// The dead letter of the batch's message `i`.
fn letter(
    sources: &[Source],
    payloads: &Bytes,
    i: usize,
    reason: &'static str,
    detail: String,
) -> DeadLetter {
    let s = &sources[i];
    DeadLetter {
        partition: s.partition,
        offset: s.offset,
        reason,
        detail,
        payload: payloads.slice(s.payload.clone()),
    }
}

/// Counts a finished batch and its rejects (`sent`: they went to a dead-letter topic).
fn count(stats: &PipelineStats, letters: &[DeadLetter], sent: bool) {
    for d in letters {
        stats.rejected_by.add(d.reason, 1);
    }
    let n = letters.len() as u64;
    stats.rejected.fetch_add(n, Ordering::Relaxed);
    if sent {
        stats.dead_lettered.fetch_add(n, Ordering::Relaxed);
    }
    stats.batches.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod latency_tests {
    use super::*;
    use crate::sink::{RejectedLine, WriteReport};

    #[test]
    fn only_stored_lines_with_a_creation_time_are_observed() {
        let h = crate::stats::Histogram::with_bounds(crate::stats::END_TO_END_BOUNDS);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let line = |index| RejectedLine {
            index,
            reason: String::new(),
        };
        let report = WriteReport {
            written: 3,
            rejected: vec![line(1)],
            refused: vec![line(4)],
            requests: 1,
        };
        // Lines 0, 2, 3 stored; 3 has no creation time; 1 rejected, 4 refused.
        let created = [now - 2_000, now, now - 700_000, 0, now];
        observe_latency(&h, &created, &report);
        assert_eq!(h.count(), 2);
        let mut out = String::new();
        h.render_samples(&mut out, "l", "");
        assert!(out.contains("l_bucket{le=\"2.5\"} 1\n"), "{out}");
        assert!(out.contains("l_bucket{le=\"600\"} 1\n"), "{out}");
        assert!(out.contains("l_bucket{le=\"1800\"} 2\n"), "{out}");
    }
}
