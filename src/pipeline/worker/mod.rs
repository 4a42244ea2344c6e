//! One consumer's worker: takes the messages Kafka delivers into the batch, feeds every event
//! to the decisions ([`ConsumerState`]) and carries out the actions they answer, through two
//! small ports: [`Kafka`] (pause, resume, commit, probe, high watermark) and [`Flush`] (start a
//! batch's write, hear that one finished).
//!
//! Owns the executor: what each action does, the per-consumer logs and gauges, the unreadable
//! partitions' reports. Must never poll Kafka (the [`Kafka`] port has no poll, so a callback
//! that runs the worker cannot re-enter it), block on a write, or import librdkafka: the
//! `kafka` module drives the worker and implements the port.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::batch::Batcher;
use super::ports::{Fetch, Flush, Kafka};
use super::state::{Action, ConsumerState, Event, Fatal, Limits, Outcome};
use super::unreadable::{Cause, Report, Unreadable};
use super::{BatchError, Done, PipelineSettings, PipelineStats};
use crate::convert::Converter;

/// A backpressure pause is logged once it lasts this long (shorter ones are normal at full
/// load).
const PAUSE_WORTH_LOGGING: Duration = Duration::from_secs(2);

/// How a worker's thread should go on after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    /// The longest to wait for messages before the next turn.
    pub wait: Duration,
    /// How many messages the batch can take now.
    pub room: usize,
}

/// One consumer's pipeline policy; see the module header.
pub struct Worker<F: Flush> {
    settings: Arc<PipelineSettings>,
    /// What to flush, pause, commit: fed events, answers actions (see `state`).
    machine: ConsumerState,
    batcher: Batcher,
    flusher: F,
    stats: Arc<PipelineStats>,
    label: String,
    /// Since when the partitions are paused for backpressure, and whether that was logged:
    /// a pause is logged (and its end) only once it lasts `PAUSE_WORTH_LOGGING`, since under
    /// full load short pauses come and go many times a second.
    paused_since: Option<(Instant, bool)>,
    /// Partitions librdkafka reports errors for instead of messages.
    unreadable: Unreadable,
    /// Set when this consumer cannot go on (brokers gone too long, a failed batch, a
    /// partition that cannot be forwarded): its thread ends and the daemon exits 1.
    fatal: bool,
    next_lag: Instant,
}

impl<F: Flush> Worker<F> {
    pub fn new(
        settings: Arc<PipelineSettings>,
        label: String,
        stats: Arc<PipelineStats>,
        keep_payloads: bool,
        flusher: F,
    ) -> Self {
        let converter = Converter::new(settings.converter_policy, settings.max_message_bytes);
        let batcher = Batcher::new(
            converter,
            settings.kind,
            settings.routing.clone(),
            settings.batch_size,
        )
        .keeping_payloads(keep_payloads)
        .with_series_gate(
            settings
                .series_limit
                .clone()
                .map(super::series::SeriesGate::new),
        )
        .keeping_spares(settings.max_batches_in_flight + 1);
        let batcher = match &settings.destination {
            Some(place) => batcher.at_destination(place.routes.clone(), place.index),
            None => batcher,
        };
        Worker {
            machine: ConsumerState::new(Limits {
                batch_size: settings.batch_size,
                max_wait: settings.max_wait,
                max_in_flight: settings.max_batches_in_flight,
                brokers_down_exit: settings.brokers_down_exit,
            }),
            batcher,
            flusher,
            stats,
            label,
            paused_since: None,
            unreadable: Unreadable::default(),
            fatal: false,
            next_lag: Instant::now(),
            settings,
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn settings(&self) -> &PipelineSettings {
        &self.settings
    }

    /// The decisions, for reading.
    pub fn machine(&self) -> &ConsumerState {
        &self.machine
    }

    /// Whether this consumer must stop (the daemon then exits 1).
    pub fn is_fatal(&self) -> bool {
        self.fatal
    }

    /// Stops this consumer for good, e.g. when Kafka cannot deliver an assigned partition.
    pub fn fail(&mut self) {
        self.fatal = true;
    }

    /// Whether every broker is unreachable, as far as the worker knows.
    pub fn brokers_down(&self) -> bool {
        self.machine.brokers_down_since().is_some()
    }

    /// One turn of the consumer loop before it fetches: takes finished batches, refreshes
    /// the gauges when due, commits what finished (or retries), flushes a full or due batch,
    /// pauses or resumes. Answers how long to wait for messages and how many to take.
    pub fn turn(&mut self, kafka: &impl Kafka, idle: Duration) -> Turn {
        self.drain(kafka);
        let now = Instant::now();
        if now >= self.next_lag {
            self.publish_lag(kafka);
            self.publish_uncommitted(now);
            self.check_unreadable(now);
            self.next_lag = now + self.settings.lag_interval;
        }
        self.feed(kafka, Event::Tick(now));
        self.log_long_pause(now);
        Turn {
            wait: self.machine.wait(now, idle),
            room: self.machine.room(),
        }
    }

    /// Feeds the decisions one event and carries out what they answer.
    pub fn feed(&mut self, kafka: &impl Kafka, event: Event) {
        let actions = self.machine.on(event);
        self.apply(kafka, actions);
    }

    /// Carries out `actions`, in order; answers the offsets whose commit failed.
    fn apply(&mut self, kafka: &impl Kafka, actions: Vec<Action>) -> Vec<(i32, i64)> {
        let mut failed = Vec::new();
        for action in actions {
            match action {
                Action::Flush { id } => self.hand_out(id),
                Action::Pause(parts) => self.pause(kafka, parts, true),
                Action::Resume(parts) => self.pause(kafka, parts, false),
                Action::Commit { offsets, sync } => {
                    if let Err(e) = self.commit(kafka, &offsets, sync) {
                        tracing::warn!(consumer = %self.label, error = %e, offsets = ?offsets, "commit failed");
                        failed.extend_from_slice(&offsets);
                        let now = Instant::now();
                        self.feed(kafka, Event::CommitFailed { offsets, now });
                    }
                }
                Action::CommitRetry { offsets, at } => {
                    tracing::warn!(consumer = %self.label, offsets = ?offsets, retry_in_seconds = at.saturating_duration_since(Instant::now()).as_secs_f64(), "will retry the commit");
                }
                Action::ProbeBrokers => {
                    if kafka.brokers_reachable() {
                        self.brokers_back();
                    } else {
                        self.feed(kafka, Event::ProbeFailed(Instant::now()));
                    }
                }
                Action::Fatal(Fatal::BrokersDown { down_for }) => {
                    tracing::error!(consumer = %self.label, seconds = down_for.as_secs(), "every Kafka broker has been unreachable too long; exiting");
                    self.fatal = true;
                }
                Action::Fatal(Fatal::BatchFailed { id }) => {
                    // Its offsets can never be committed, and so neither can any later one of
                    // its partitions: rather than stall silently, stop (exit 1) and let
                    // systemd restart us; the restart consumes the batch again.
                    tracing::error!(consumer = %self.label, batch = id, "batch failed; stopping so that a restart writes it again");
                    self.fatal = true;
                }
            }
        }
        failed
    }

    /// Hands the current batch (`id`) to the flusher.
    fn hand_out(&mut self, id: u64) {
        let batch = self.batcher.take(self.machine.batch_id());
        debug_assert_eq!(batch.id, id);
        self.stats
            .sanitized
            .fetch_add(batch.sanitized as u64, Ordering::Relaxed);
        self.flusher.start(batch);
        self.stats.batches_in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Pauses (backpressure) or resumes `parts`.
    fn pause(&mut self, kafka: &impl Kafka, parts: Vec<i32>, pause: bool) {
        let r = if pause {
            kafka.pause(&parts)
        } else {
            kafka.resume(&parts)
        };
        match r {
            Ok(()) => {
                let n = if pause { parts.len() as i64 } else { 0 };
                self.stats.paused.set(self.label.clone(), n);
                tracing::debug!(consumer = %self.label, paused = pause, in_flight = self.machine.in_flight(), "backpressure");
                if pause {
                    self.paused_since.get_or_insert((Instant::now(), false));
                } else if let Some((since, true)) = self.paused_since.take() {
                    tracing::info!(consumer = %self.label, paused_seconds = since.elapsed().as_secs_f64(), "partitions resumed: the sink caught up");
                }
            }
            Err(e) => {
                tracing::warn!(consumer = %self.label, error = %e, "pause/resume failed");
                self.feed(kafka, Event::PauseFailed);
            }
        }
    }

    /// Commits `offsets` through Kafka (counted when synchronous; an asynchronous commit is
    /// counted when its answer comes).
    fn commit(&self, kafka: &impl Kafka, offsets: &[(i32, i64)], sync: bool) -> Result<(), String> {
        kafka.commit(offsets, sync)?;
        if sync {
            self.stats.commits.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(consumer = %self.label, offsets = ?offsets, sync, "commit sent");
        Ok(())
    }

    /// Logs a backpressure pause once it lasts `PAUSE_WORTH_LOGGING`.
    fn log_long_pause(&mut self, now: Instant) {
        if let Some((since, logged @ false)) = &mut self.paused_since
            && now.duration_since(*since) >= PAUSE_WORTH_LOGGING
        {
            *logged = true;
            tracing::info!(consumer = %self.label, in_flight = self.machine.in_flight(), "partitions paused: the sink is behind (writes slow or failing)");
        }
    }

    /// Flushes the batch, first waiting until `deadline` for the in-flight bound to allow
    /// it. False if there was nothing to flush or no room in time (the batch stays).
    fn flush_by(&mut self, kafka: &impl Kafka, deadline: Instant) -> bool {
        while self.machine.batch_len() > 0
            && !self.machine.has_room()
            && self.finish_one_by(kafka, deadline)
        {}
        match self.machine.force_flush() {
            Some(id) => {
                self.hand_out(id);
                true
            }
            None => false,
        }
    }

    /// Waits until `deadline` for one in-flight batch to finish; false if none did.
    fn finish_one_by(&mut self, kafka: &impl Kafka, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.flusher.wait_finished(left) {
            Some(d) => {
                self.finish(kafka, d);
                true
            }
            None => false,
        }
    }

    /// Converts fetched messages into the current batch (which has room for all of them);
    /// bookkeeping is per run of one partition's messages, not per message.
    pub fn take<'a>(&mut self, fetched: impl Iterator<Item = Fetch<'a>>) {
        let now = Instant::now();
        self.batcher.refresh_hour();
        let mut run: Option<(i32, i64, i64)> = None; // partition, messages, last offset
        let mut got_any = false;
        for f in fetched {
            got_any = true;
            match f {
                Fetch::Message {
                    partition,
                    offset,
                    payload,
                } => {
                    match &mut run {
                        Some((p, n, last)) if *p == partition => {
                            *n += 1;
                            *last = offset;
                        }
                        _ => {
                            if let Some(r) = run.replace((partition, 1, offset)) {
                                self.end_run(r, now);
                            }
                        }
                    }
                    self.batcher.add(partition, offset, payload);
                }
                Fetch::End { .. } => {}
                Fetch::Error {
                    partition,
                    cause,
                    detail,
                } => self.read_error(partition, cause, &detail, now),
            }
        }
        if let Some(r) = run {
            self.end_run(r, now);
        }
        if got_any {
            // A broker answered.
            self.brokers_back();
        }
    }

    /// An error librdkafka reported for `partition` instead of its messages: counted, and
    /// logged once per state change (see `unreadable`), not once per repeat.
    fn read_error(&mut self, partition: i32, cause: Cause, detail: &str, now: Instant) {
        self.stats
            .read_errors
            .add((self.settings.topic.clone(), partition, cause.label()), 1);
        if let Some(r) = self.unreadable.error(partition, cause, detail, now) {
            self.report_unreadable(r);
        }
    }

    fn report_unreadable(&self, r: Report) {
        super::unreadable::publish(r, &self.stats, &self.settings.topic, &self.label);
    }

    /// Reminders of partitions still unreadable, and recoveries by quiet.
    fn check_unreadable(&mut self, now: Instant) {
        if self.unreadable.is_empty() {
            return;
        }
        for r in self.unreadable.tick(now) {
            self.report_unreadable(r);
        }
    }

    /// Records a run of `n` messages of `partition` ending at `last`.
    fn end_run(&mut self, (partition, n, last): (i32, i64, i64), now: Instant) {
        if !self.unreadable.is_empty()
            && let Some(r) = self.unreadable.read(partition, now)
        {
            self.report_unreadable(r);
        }
        self.stats
            .consumed_by
            .add((self.settings.topic.clone(), partition), n);
        let actions = self.machine.on(Event::Messages {
            partition,
            last,
            count: n as usize,
            now,
        });
        debug_assert!(actions.is_empty(), "messages only fill the batch");
    }

    /// Lag per partition: the high watermark the client last saw minus the next offset we
    /// will read.
    fn publish_lag(&self, kafka: &impl Kafka) {
        for (&p, &last) in self.machine.positions() {
            if let Some(high) = kafka.high_watermark(p) {
                let lag = (high - (last + 1)).max(0);
                self.stats.lag.set((self.settings.topic.clone(), p), lag);
            }
        }
    }

    /// The age of each partition's oldest message consumed and not yet committable, in ms.
    fn publish_uncommitted(&self, now: Instant) {
        for (p, age) in self.machine.oldest_uncommitted(now) {
            self.stats.oldest_uncommitted.set(
                (self.settings.topic.clone(), p),
                age.as_millis().min(i64::MAX as u128) as i64,
            );
        }
    }

    fn finish(&mut self, kafka: &impl Kafka, d: Done) {
        self.stats.batches_in_flight.fetch_sub(1, Ordering::Relaxed);
        let outcome = match d.result {
            Ok(spare) => {
                self.batcher.recycle(spare);
                Outcome::Written
            }
            Err(BatchError::Write(e)) => {
                tracing::warn!(consumer = %self.label, batch = d.id, error = %e, "batch abandoned; its offsets stay uncommitted");
                Outcome::Abandoned
            }
            Err(e @ BatchError::Task(_)) => {
                tracing::error!(consumer = %self.label, batch = d.id, error = %e, "batch task failed");
                Outcome::Failed
            }
        };
        self.feed(kafka, Event::BatchDone { id: d.id, outcome });
    }

    /// Takes finished batches without blocking (the next `Tick` commits).
    fn drain(&mut self, kafka: &impl Kafka) {
        while let Some(d) = self.flusher.finished() {
            self.finish(kafka, d);
        }
    }

    /// Waits up to `timeout` for one in-flight batch to finish, then takes any other (the
    /// consumer is blocked: its batch is full and no room to send it).
    pub fn wait_one(&mut self, kafka: &impl Kafka, timeout: Duration) {
        if let Some(d) = self.flusher.wait_finished(timeout) {
            self.finish(kafka, d);
            self.drain(kafka);
        }
    }

    /// Waits for every in-flight batch, until `deadline`.
    fn wait_all(&mut self, kafka: &impl Kafka, deadline: Instant) {
        while self.machine.in_flight() > 0 && self.finish_one_by(kafka, deadline) {}
    }
}

mod group;
#[cfg(test)]
mod tests;
