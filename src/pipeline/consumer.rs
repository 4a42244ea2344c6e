//! One consumer: a thread that polls Kafka, converts messages into the current batch, hands
//! full or due batches to the runtime, and commits what is finished.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::batch::PendingBatch;
use super::commit::CommitQueue;
use super::deadletter::DeadLetters;
use super::fetch::{EventQueue, Fetch, Fetched, MessageQueue};
use super::state::{Action, ConsumerState, Event, Fatal, Limits, Outcome};
use super::unreadable::{Cause, Report, Unreadable};
use super::{BatchError, Control, Done, PipelineSettings, PipelineStats, process_batch};
use crate::convert::Converter;
use crate::sink::Writer;
use std::sync::atomic::Ordering;

/// The most messages taken from librdkafka in one call.
const FETCH_MAX: usize = 1024;

/// The longest the consumer loop waits for messages or a finished batch before it looks
/// again at its timers, the stop switch and rebalance events.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// A backpressure pause is logged once it lasts this long (shorter ones are normal at full
/// load).
const PAUSE_WORTH_LOGGING: Duration = Duration::from_secs(2);

/// The longest a stopping consumer waits for librdkafka to leave the group.
const LEAVE_GROUP_LIMIT: Duration = Duration::from_secs(10);

/// The most events (other than messages) served in one turn of the poll loop.
const EVENTS_MAX: usize = 1024;

/// A running consumer thread.
pub struct ConsumerHandle {
    pub label: String,
    pub thread: JoinHandle<()>,
}

/// Everything the poll loop and the rebalance callbacks share (they run on the same thread,
/// one at a time; the mutex only satisfies `ConsumerContext: Sync`): the decisions
/// ([`ConsumerState`]) and what carries them out.
struct State {
    settings: Arc<PipelineSettings>,
    /// What to flush, pause, commit: fed events, answers actions (see `state`).
    machine: ConsumerState,
    converter: Converter,
    /// The batch being filled; its id is `machine.batch_id()`.
    batch: PendingBatch,
    done_tx: Sender<Done>,
    done_rx: Receiver<Done>,
    writer: Writer,
    dead: Arc<DeadLetters>,
    stats: Arc<PipelineStats>,
    rt: tokio::runtime::Handle,
    keep_payload: bool,
    /// Since when the partitions are paused for backpressure, and whether that was logged:
    /// a pause is logged (and its end) only once it lasts `PAUSE_WORTH_LOGGING`, since under
    /// full load short pauses come and go many times a second.
    paused_since: Option<(Instant, bool)>,
    label: String,
    /// Buffers of finished batches, for the next ones.
    spares: Vec<super::batch::Spare>,
    /// The daemon's fatal switch, for a batch that failed.
    control: Arc<Control>,
    /// This consumer's own: cancelled when its shutdown timeout abandons its in-flight
    /// batches (the other consumers' writes go on).
    abandon: CancellationToken,
    /// Partitions librdkafka reports errors for instead of messages.
    unreadable: Unreadable,
    /// `max_hourly_series_per_tenant`, when set (metrics only).
    series: Option<super::series::SeriesGate>,
}

struct Ctx {
    state: Mutex<State>,
    /// Where assigned partitions' messages go (see `fetch`).
    queue: MessageQueue,
    /// Where commit results go (see `commit`).
    commits: CommitQueue,
    /// The queue `poll` serves, to know whether events still wait there (see `fetch`).
    events: EventQueue,
    /// The topic, for forwarding its partitions.
    topic: std::ffi::CString,
    /// The daemon's stop and fatal switches.
    control: Arc<Control>,
    label: String,
    /// For the counters the poll loop bumps without taking `state`.
    stats: Arc<PipelineStats>,
    /// Scrubs secret property values from librdkafka's log lines and errors.
    redactor: crate::config::Redactor,
}

impl Ctx {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state usable; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        let msg = self.redactor.redact(msg);
        match level {
            // A failed broker connection at error level: librdkafka sends the same text as an
            // error event, which `error` logs (and keeps quiet while every broker is down).
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
                if fac == "FAIL" =>
            {
                tracing::debug!(consumer = %self.label, facility = fac, "librdkafka: {msg}")
            }
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                tracing::warn!(consumer = %self.label, facility = fac, "librdkafka: {msg}")
            }
            _ => tracing::debug!(consumer = %self.label, facility = fac, "librdkafka: {msg}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reason = self.redactor.redact(reason);
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            // librdkafka repeats this on every poll while it lasts: log the transition only.
            self.state().brokers_lost(&reason);
        } else if self.state().machine.brokers_down_since().is_some() && connection_error(&error) {
            // Every reconnect fails again, and librdkafka's own suppression of repeats (same
            // text as the one before, for 30 s) does not hold: a failed TLS handshake comes in
            // two texts. The failure that took the last broker down was logged just before the
            // outage began (it is queued before "all brokers are down").
            tracing::debug!(consumer = %self.label, error = %error, "Kafka client error: {reason}");
        } else {
            tracing::warn!(consumer = %self.label, error = %error, "Kafka client error: {reason}");
        }
    }
}

/// Errors librdkafka reports for every failed attempt to connect to a broker.
fn connection_error(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::SSL
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::AllBrokersDown
        )
    )
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut st = self.state();
            // Flush and wait, so what we consumed from these partitions is committed by us
            // before their new owner starts; whatever cannot finish in time is not committed
            // (the new owner consumes it again: at-least-once, and InfluxDB overwrites the
            // identical points). A batch that cannot be sent within the in-flight bound stays
            // (it is written later; its revoked partitions' offsets are forgotten), so
            // rebalances during an outage do not pile up batches.
            let deadline = Instant::now() + st.settings.shutdown_timeout;
            st.flush_by(consumer, deadline);
            st.wait_all(consumer, deadline);
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            // Commits synchronously, then forgets the partitions. What stays uncommitted (the
            // coordinator refused: librdkafka's mock cluster answers REBALANCE_IN_PROGRESS
            // while the group waits for this very member to rejoin, so no retry inside the
            // callback can help; Kafka accepts commits of the current generation then) is read
            // again by the partitions' next owner: at-least-once, and the rewritten points are
            // identical.
            let actions = st.machine.on(Event::Revoked(parts.clone()));
            let failed = st.apply(consumer, actions);
            let pending: Vec<(i32, i64)> = failed
                .into_iter()
                .filter(|(p, _)| parts.contains(p))
                .collect();
            if !pending.is_empty() {
                tracing::warn!(consumer = %self.label, offsets = ?pending, "could not commit revoked partitions; their next owner reads these messages again");
            }
            for &p in &parts {
                // Its lag is now the new owner's to report.
                st.stats.lag.remove(&(st.settings.topic.clone(), p));
                st.stats
                    .oldest_uncommitted
                    .remove(&(st.settings.topic.clone(), p));
                st.clear_unreadable(p);
            }
            st.unreadable.forget(&parts);
            tracing::info!(consumer = %self.label, partitions = ?parts, in_flight = st.machine.in_flight(), "partitions revoked");
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        let mut st = self.state();
        let mut failed = Vec::new();
        let mut error = result.as_ref().err().map(|e| e.to_string());
        for el in offsets.elements() {
            let Offset::Offset(o) = el.offset() else {
                continue;
            };
            let is_failed = match el.error() {
                Err(e) => {
                    error.get_or_insert_with(|| e.to_string());
                    true
                }
                Ok(()) => result.is_err(),
            };
            if is_failed {
                failed.push((el.partition(), o));
            }
        }
        let Some(e) = error else {
            st.stats.commits.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let actions = st.machine.on(Event::CommitFailed {
            offsets: failed,
            now: Instant::now(),
        });
        let mut retried = false;
        for a in actions {
            if let Action::CommitRetry { offsets, .. } = a {
                retried = true;
                tracing::warn!(consumer = %self.label, error = %e, offsets = ?offsets, "offset commit failed; will retry");
            }
        }
        if !retried {
            tracing::info!(consumer = %self.label, error = %e, "offset commit failed for partitions no longer ours or already committed further");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut st = self.state();
        match rebalance {
            Rebalance::Assign(tpl) => {
                let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                for &p in &parts {
                    // SAFETY: the client is alive while it runs this callback.
                    let forwarded = unsafe {
                        self.queue
                            .forward(consumer.client().native_ptr(), &self.topic, p)
                    };
                    if !forwarded {
                        // Its messages would never arrive: stop (exit 1; systemd restarts us).
                        tracing::error!(consumer = %self.label, partition = p, "cannot forward an assigned partition to the batch queue; stopping");
                        self.control.fatal.store(true, Ordering::Relaxed);
                    }
                }
                st.feed(consumer, Event::Assigned(parts.clone()));
                tracing::info!(consumer = %self.label, partitions = ?parts, "partitions assigned");
            }
            // Done before the partitions went (`pre_rebalance`).
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(consumer = %self.label, error = %e, "rebalance failed")
            }
        }
        // Counted from the callbacks rather than asked of librdkafka: during close, once the
        // last partitions are unassigned the group handle may terminate, and librdkafka then
        // drops requests such as `rd_kafka_assignment` unanswered, so it would wait forever
        // (seen on the mock cluster: a consumer that never finished stopping).
        self.stats
            .assigned
            .set(self.label.clone(), st.machine.assigned().len() as i64);
    }
}

impl State {
    /// Feeds the decisions one event and carries out what they answer.
    fn feed(&mut self, consumer: &BaseConsumer<Ctx>, event: Event) {
        let actions = self.machine.on(event);
        self.apply(consumer, actions);
    }

    /// Carries out `actions`, in order; answers the offsets whose commit failed.
    fn apply(&mut self, consumer: &BaseConsumer<Ctx>, actions: Vec<Action>) -> Vec<(i32, i64)> {
        let mut failed = Vec::new();
        for action in actions {
            match action {
                Action::Flush { id } => self.hand_out(id),
                Action::Pause(parts) => self.pause(consumer, parts, true),
                Action::Resume(parts) => self.pause(consumer, parts, false),
                Action::Commit { offsets, sync } => {
                    if let Err(e) = self.commit(consumer, &offsets, sync) {
                        tracing::warn!(consumer = %self.label, error = %e, offsets = ?offsets, "commit failed");
                        failed.extend_from_slice(&offsets);
                        self.feed(
                            consumer,
                            Event::CommitFailed {
                                offsets,
                                now: Instant::now(),
                            },
                        );
                    }
                }
                Action::CommitRetry { offsets, at } => {
                    tracing::warn!(consumer = %self.label, offsets = ?offsets, retry_in_seconds = at.saturating_duration_since(Instant::now()).as_secs_f64(), "will retry the commit");
                }
                Action::ProbeBrokers => {
                    if consumer
                        .fetch_metadata(Some(&self.settings.topic), Duration::from_secs(2))
                        .is_ok()
                    {
                        self.brokers_back();
                    } else {
                        self.feed(consumer, Event::ProbeFailed(Instant::now()));
                    }
                }
                Action::Fatal(Fatal::BrokersDown { down_for }) => {
                    tracing::error!(consumer = %self.label, seconds = down_for.as_secs(), "every Kafka broker has been unreachable too long; exiting");
                    self.control.fatal.store(true, Ordering::Relaxed);
                }
                Action::Fatal(Fatal::BatchFailed { id }) => {
                    // Its offsets can never be committed, and so neither can any later one of
                    // its partitions: rather than stall silently, stop (exit 1) and let
                    // systemd restart us; the restart consumes the batch again.
                    tracing::error!(consumer = %self.label, batch = id, "batch failed; stopping so that a restart writes it again");
                    self.control.fatal.store(true, Ordering::Relaxed);
                }
            }
        }
        failed
    }

    /// Hands the current batch (`id`) to the runtime, to be written and dead-lettered.
    fn hand_out(&mut self, id: u64) {
        let fresh = PendingBatch::reusing(
            self.machine.batch_id(),
            &self.settings.routing,
            self.settings.batch_size,
            self.spares.pop().unwrap_or_default(),
        );
        let batch = std::mem::replace(&mut self.batch, fresh);
        debug_assert_eq!(batch.id, id);
        self.stats
            .sanitized
            .fetch_add(batch.sanitized as u64, Ordering::Relaxed);
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
        let refused = self.settings.database_refused;
        let kind = self.settings.kind;
        let abandon = self.abandon.clone();
        let handle = self.rt.spawn(async move {
            if fail {
                panic!("injected batch failure (test hook)");
            }
            tokio::select! {
                r = process_batch(batch, kind, writer, dead, stats, refused) => r,
                _ = abandon.cancelled() => Err(crate::sink::WriteError::ShuttingDown),
            }
        });
        self.rt.spawn(async move {
            // A panic in the batch task must still be reported, or the in-flight count and
            // the commit point would wait for it forever. Its offsets stay uncommitted.
            let result = match handle.await {
                Ok(r) => r.map_err(BatchError::Write),
                Err(e) => Err(BatchError::Task(e.to_string())),
            };
            let _ = tx.send(Done { id, result });
        });
        self.stats.batches_in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Pauses (backpressure) or resumes `parts`.
    fn pause(&mut self, consumer: &BaseConsumer<Ctx>, parts: Vec<i32>, pause: bool) {
        let mut tpl = TopicPartitionList::new();
        for &p in &parts {
            tpl.add_partition(&self.settings.topic, p);
        }
        let r = if pause {
            consumer.pause(&tpl)
        } else {
            consumer.resume(&tpl)
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
                self.feed(consumer, Event::PauseFailed);
            }
        }
    }

    /// Records that every broker is unreachable (once per outage: logged and gauged).
    fn brokers_lost(&mut self, reason: &str) {
        if self.machine.brokers_down_since().is_none() {
            self.stats.brokers_down.set(self.label.clone(), 1);
            tracing::error!(consumer = %self.label, "all Kafka brokers are down: {reason}");
        }
        let actions = self.machine.on(Event::BrokersDown(Instant::now()));
        debug_assert!(actions.is_empty());
    }

    /// Records that a broker answered; ends an outage (logged once, with its length).
    fn brokers_back(&mut self) {
        if let Some(t) = self.machine.brokers_down_since() {
            self.stats.brokers_down.set(self.label.clone(), 0);
            tracing::info!(consumer = %self.label, outage_seconds = t.elapsed().as_secs_f64(), "Kafka brokers reachable again");
            let actions = self.machine.on(Event::BrokersUp);
            debug_assert!(actions.is_empty());
        }
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
    fn flush_by(&mut self, consumer: &BaseConsumer<Ctx>, deadline: Instant) -> bool {
        while self.machine.batch_len() > 0
            && !self.machine.has_room()
            && self.finish_one_by(consumer, deadline)
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
    fn finish_one_by(&mut self, consumer: &BaseConsumer<Ctx>, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.done_rx.recv_timeout(left) {
            Ok(d) => {
                self.finish(consumer, d);
                true
            }
            Err(_) => false,
        }
    }

    /// Converts fetched messages into the current batch (which has room for all of them);
    /// bookkeeping is per run of one partition's messages, not per message.
    fn take<'a>(&mut self, fetched: impl Iterator<Item = Fetch<'a>>) {
        let now = Instant::now();
        if let Some(gate) = &mut self.series {
            gate.set_hour(super::series::current_hour());
        }
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
                    let State {
                        batch,
                        converter,
                        settings,
                        keep_payload,
                        series,
                        ..
                    } = self;
                    batch.add(
                        converter,
                        settings.kind,
                        &settings.routing,
                        *keep_payload,
                        partition,
                        offset,
                        payload,
                        series.as_mut(),
                    );
                }
                // Only delivered when the operator enabled `enable.partition.eof`.
                Fetch::Error {
                    code: RDKafkaErrorCode::PartitionEOF,
                    ..
                } => {}
                Fetch::Error {
                    partition,
                    code,
                    detail,
                } => self.read_error(partition, code, &detail, now),
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
    fn read_error(&mut self, partition: i32, code: RDKafkaErrorCode, detail: &str, now: Instant) {
        let cause = Cause::of(code, detail);
        self.stats
            .read_errors
            .add((self.settings.topic.clone(), partition, cause.label()), 1);
        if let Some(r) = self.unreadable.error(partition, cause, detail, now) {
            self.report_unreadable(r);
        }
    }

    /// Logs a change of a partition's readability and publishes it for `/metrics` and
    /// `/ready`.
    fn report_unreadable(&mut self, r: Report) {
        let topic = &self.settings.topic;
        match r {
            Report::Began {
                partition,
                cause,
                detail,
            } => {
                self.clear_unreadable(partition);
                let epoch_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                self.stats
                    .unreadable_since
                    .set((topic.clone(), partition, cause.label()), epoch_ms);
                tracing::warn!(consumer = %self.label, topic = %topic, partition, cause = cause.label(), "partition unreadable: its messages wait (nothing is skipped) until librdkafka can read them: {detail}");
            }
            Report::Still {
                partition,
                cause,
                unreadable_for,
                errors,
                detail,
            } => {
                tracing::warn!(consumer = %self.label, topic = %topic, partition, cause = cause.label(), unreadable_seconds = unreadable_for.as_secs(), errors_since_last_report = errors, "partition still unreadable: {detail}");
            }
            Report::Ended {
                partition,
                cause,
                unreadable_for,
                by_message,
            } => {
                self.clear_unreadable(partition);
                let how = if by_message {
                    "a message was read"
                } else {
                    "no error for a while"
                };
                tracing::info!(consumer = %self.label, topic = %topic, partition, cause = cause.label(), unreadable_seconds = unreadable_for.as_secs_f64(), "partition readable again ({how})");
            }
        }
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

    /// Drops `partition`'s unreadable gauge, whatever its cause.
    fn clear_unreadable(&self, partition: i32) {
        for cause in Cause::ALL {
            self.stats.unreadable_since.remove(&(
                self.settings.topic.clone(),
                partition,
                cause.label(),
            ));
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

    /// Lag per partition: the high watermark librdkafka last saw (cached, no request) minus
    /// the next offset we will read.
    fn publish_lag(&self, consumer: &BaseConsumer<Ctx>) {
        let Ok(topic) = std::ffi::CString::new(self.settings.topic.as_str()) else {
            return;
        };
        for (&p, &last) in self.machine.positions() {
            let (mut low, mut high) = (-1i64, -1i64);
            // SAFETY: the client pointer is valid for the consumer's lifetime, `topic` is a
            // NUL-terminated string that outlives the call, and librdkafka only writes the two
            // out-parameters. rust-rdkafka exposes only the network variant of this call.
            let err = unsafe {
                rdkafka::bindings::rd_kafka_get_watermark_offsets(
                    consumer.client().native_ptr(),
                    topic.as_ptr(),
                    p,
                    &mut low,
                    &mut high,
                )
            };
            if err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                && high >= 0
            {
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

    fn finish(&mut self, consumer: &BaseConsumer<Ctx>, d: Done) {
        self.stats.batches_in_flight.fetch_sub(1, Ordering::Relaxed);
        let outcome = match d.result {
            Ok(spare) => {
                if self.spares.len() <= self.settings.max_batches_in_flight {
                    self.spares.push(spare);
                }
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
        self.feed(consumer, Event::BatchDone { id: d.id, outcome });
    }

    /// Takes finished batches without blocking (the next `Tick` commits).
    fn drain(&mut self, consumer: &BaseConsumer<Ctx>) {
        while let Ok(d) = self.done_rx.try_recv() {
            self.finish(consumer, d);
        }
    }

    /// Waits up to `timeout` for one in-flight batch to finish, then takes any other.
    fn wait_one(&mut self, consumer: &BaseConsumer<Ctx>, timeout: Duration) {
        if let Ok(d) = self.done_rx.recv_timeout(timeout) {
            self.finish(consumer, d);
            self.drain(consumer);
        }
    }

    /// Waits for every in-flight batch, until `deadline`.
    fn wait_all(&mut self, consumer: &BaseConsumer<Ctx>, deadline: Instant) {
        while self.machine.in_flight() > 0 && self.finish_one_by(consumer, deadline) {}
    }

    /// Commits `offsets`. `sync` waits for the answer (revocation, shutdown); otherwise it
    /// comes later through `commit_callback`. An error: the commit did not happen.
    fn commit(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
        offsets: &[(i32, i64)],
        sync: bool,
    ) -> Result<(), String> {
        let mut tpl = TopicPartitionList::new();
        for &(p, o) in offsets {
            tpl.add_partition_offset(&self.settings.topic, p, Offset::Offset(o))
                .map_err(|e| format!("cannot build commit: {e}"))?;
        }
        if sync {
            consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(|e| e.to_string())?;
            self.stats.commits.fetch_add(1, Ordering::Relaxed);
        } else {
            // SAFETY: on the consumer thread, while the client lives (the queue is closed
            // before it is destroyed).
            unsafe {
                consumer
                    .context()
                    .commits
                    .commit(consumer.client().native_ptr(), &tpl)
            }
            .map_err(|e| e.to_string())?;
        }
        tracing::debug!(consumer = %self.label, offsets = ?offsets, sync, "commit sent");
        Ok(())
    }
}

/// Creates the consumer, subscribes, and starts its thread.
#[allow(clippy::too_many_arguments)]
pub fn spawn_consumer(
    settings: Arc<PipelineSettings>,
    index: usize,
    writer: Writer,
    dead: Arc<DeadLetters>,
    stats: Arc<PipelineStats>,
    control: Arc<Control>,
    cancel: CancellationToken,
    rt: tokio::runtime::Handle,
) -> Result<ConsumerHandle, KafkaError> {
    let label = crate::stats::thread_names::consumer(settings.name, index);
    let mut cc = ClientConfig::new();
    for (k, v) in &settings.consumer_properties {
        cc.set(k, v);
    }
    if let Some(id) = &settings.group_instance_id {
        cc.set(
            "group.instance.id",
            format!("{id}-{}-{index}", settings.name),
        );
    }
    let (done_tx, done_rx) = channel();
    let state = State {
        machine: ConsumerState::new(Limits {
            batch_size: settings.batch_size,
            max_wait: settings.max_wait,
            max_in_flight: settings.max_batches_in_flight,
            brokers_down_exit: settings.brokers_down_exit,
        }),
        converter: Converter::new(settings.converter_policy, settings.max_message_bytes),
        batch: PendingBatch::new(1, &settings.routing, settings.batch_size),
        done_tx,
        done_rx,
        keep_payload: dead.target.is_some(),
        writer,
        dead,
        stats,
        rt,
        paused_since: None,
        label: label.clone(),
        spares: Vec::new(),
        control: control.clone(),
        abandon: cancel.clone(),
        unreadable: Unreadable::default(),
        series: (settings.series_limit.clone()).map(super::series::SeriesGate::new),
        settings: settings.clone(),
    };
    let topic = std::ffi::CString::new(settings.topic.as_str())
        .map_err(|_| KafkaError::ClientCreation("topic name contains NUL".into()))?;
    let ctx = Ctx {
        stats: state.stats.clone(),
        state: Mutex::new(state),
        queue: MessageQueue::closed(),
        commits: CommitQueue::closed(),
        events: EventQueue::closed(),
        topic,
        control: control.clone(),
        label: label.clone(),
        redactor: crate::config::Redactor::of(&settings.consumer_properties),
    };
    let consumer: BaseConsumer<Ctx> = cc.create_with_context(ctx)?;
    consumer.subscribe(&[settings.topic.as_str()])?;
    let thread_label = label.clone();
    let thread = std::thread::Builder::new()
        .name(label.clone())
        .spawn(move || run(consumer, settings, control, cancel, thread_label))
        .map_err(|e| KafkaError::ClientCreation(format!("cannot start consumer thread: {e}")))?;
    Ok(ConsumerHandle { label, thread })
}

fn run(
    consumer: BaseConsumer<Ctx>,
    settings: Arc<PipelineSettings>,
    control: Arc<Control>,
    cancel: CancellationToken,
    label: String,
) {
    let ctx = consumer.context().clone();
    // SAFETY: opened before the first poll (so before any assignment is forwarded) and
    // closed by `_close`, which is declared after `consumer` and so dropped before it.
    unsafe {
        ctx.queue.open(consumer.client().native_ptr());
        ctx.commits.open(consumer.client().native_ptr());
        ctx.events.open(consumer.client().native_ptr());
    }
    // Declared after `consumer`, so dropped before it (also on a panic): the queues hold
    // librdkafka objects that must go before the client does.
    let close_queues = CloseQueues(&ctx);
    let mut fetched = Fetched::with_capacity(FETCH_MAX);
    let mut next_lag = Instant::now();
    let mut errors_logged = crate::stats::RateLimit::new(5, Duration::from_secs(30));
    loop {
        if control.stop.load(Ordering::Relaxed) || control.fatal.load(Ordering::Relaxed) {
            break;
        }
        let (timeout, room) = {
            let mut st = ctx.state();
            st.drain(&consumer);
            let now = Instant::now();
            if now >= next_lag {
                st.publish_lag(&consumer);
                st.publish_uncommitted(now);
                st.check_unreadable(now);
                next_lag = now + settings.lag_interval;
            }
            // Commit what finished (or retry what failed), flush a full or due batch, pause
            // or resume.
            st.feed(&consumer, Event::Tick(now));
            st.log_long_pause(now);
            (
                st.machine.wait(now, IDLE_WAIT),
                st.machine.room().min(FETCH_MAX),
            )
        };
        let t0 = Instant::now();
        // Rebalances, commit results, client errors and librdkafka's log lines, all that
        // wait (within a bound; `poll` answers `None` also right after serving one of them,
        // see `EventQueue`); messages only of partitions not forwarded to our queue (taken
        // while they come, so that path is slow but not stuck; a full batch may take one more).
        let (mut polled, mut served) = (0, 0);
        loop {
            match consumer.poll(Duration::ZERO) {
                Some(Ok(m)) => {
                    ctx.stats.fetches.fetch_add(1, Ordering::Relaxed);
                    let one = Fetch::Message {
                        partition: m.partition(),
                        offset: m.offset(),
                        payload: m.payload().unwrap_or(&[]),
                    };
                    ctx.state().take(std::iter::once(one));
                    polled += 1;
                    if polled >= room {
                        break;
                    }
                }
                Some(Err(e)) => {
                    // Client errors came through `Ctx::error` first; while every broker is
                    // down, their echoes here say nothing new.
                    if !(ctx.state().machine.brokers_down_since().is_some() && connection_error(&e))
                        && let Some(suppressed) = errors_logged.allow()
                    {
                        tracing::warn!(consumer = %label, error = %e, suppressed_since_last = suppressed, "Kafka consume error");
                    }
                    served += 1;
                    if served >= EVENTS_MAX {
                        break;
                    }
                }
                None => {
                    served += 1;
                    // SAFETY: this thread is the only one that opens, reads or closes it.
                    if served >= EVENTS_MAX || !unsafe { ctx.events.pending() } {
                        break;
                    }
                }
            }
        }
        if polled >= room {
            // Blocked: wait for a batch to finish instead of for messages.
            ctx.state().wait_one(&consumer, timeout);
            ctx.stats.poll_seconds.add(t0.elapsed());
        } else {
            let wait = if polled > 0 { Duration::ZERO } else { timeout };
            // SAFETY: this thread is the only one that consumes, forwards or closes.
            let n = unsafe { ctx.queue.consume(wait, room - polled, &mut fetched) };
            let t1 = Instant::now();
            ctx.stats.poll_seconds.add(t1 - t0);
            if n > 0 {
                ctx.stats.fetches.fetch_add(1, Ordering::Relaxed);
                ctx.state().take(fetched.iter());
                fetched.release();
                ctx.stats.convert_seconds.add(t1.elapsed());
            }
        }
    }
    shutdown(&consumer, &settings, &cancel, &label);
    drop(close_queues);
    leave_group(consumer, LEAVE_GROUP_LIMIT, &label);
}

/// Closes the consumer (leaves the group), serving its callbacks, on a thread of its own that
/// is abandoned after `limit`.
///
/// librdkafka 2.12 does not always finish closing: right after an incremental rebalance (a
/// member joined, this one revoked half its partitions and had not rejoined yet) the close
/// blocked for good on the mock cluster, inside librdkafka (a request to the group handle that
/// is never answered once the handle terminated, as with `rd_kafka_assignment`), and
/// rust-rdkafka's `Drop` also loops without a limit on `rd_kafka_consumer_closed`. A stopping
/// daemon must not hang on it: past the limit the client is left to that thread (the process
/// is about to exit). Everything written was committed before; the group hands the partitions
/// on after the session timeout.
fn leave_group(consumer: BaseConsumer<Ctx>, limit: Duration, label: &str) {
    let (done_tx, done_rx) = channel();
    let closing = std::thread::Builder::new()
        .name(format!("{label}-close"))
        .spawn(move || {
            if consumer.close_queue().is_ok() {
                while !consumer.closed() {
                    // Only callbacks and events come now: partitions are unassigned and our
                    // queues closed.
                    let _ = consumer.poll(Duration::from_millis(100));
                }
            }
            drop(consumer);
            let _ = done_tx.send(());
        });
    match closing {
        Ok(_) => {
            if done_rx.recv_timeout(limit).is_err() {
                tracing::error!(consumer = %label, seconds = limit.as_secs_f64(), "leaving the consumer group did not finish; abandoning the Kafka client");
            }
        }
        Err(e) => {
            tracing::warn!(consumer = %label, error = %e, "cannot start a thread to leave the group; the client is dropped here")
        }
    }
}

/// Closes our queues when the consumer thread ends, however it ends.
struct CloseQueues<'a>(&'a Ctx);

impl Drop for CloseQueues<'_> {
    fn drop(&mut self) {
        // SAFETY: runs on the consumer thread, the only one using the queues.
        unsafe {
            self.0.queue.close();
            self.0.commits.close();
            self.0.events.close();
        }
    }
}

/// Flushes (within the in-flight bound), waits for in-flight writes up to the shutdown
/// timeout (then abandons them), commits what was written and leaves the group.
fn shutdown(
    consumer: &BaseConsumer<Ctx>,
    settings: &PipelineSettings,
    cancel: &CancellationToken,
    label: &str,
) {
    let ctx = consumer.context();
    let mut st = ctx.state();
    st.drain(consumer);
    let deadline = Instant::now() + settings.shutdown_timeout;
    if !st.flush_by(consumer, deadline) && st.machine.batch_len() > 0 {
        tracing::warn!(consumer = %label, messages = st.machine.batch_len(), "shutdown timeout: no room to send the last batch in time; it stays uncommitted");
    }
    st.wait_all(consumer, deadline);
    if st.machine.in_flight() > 0 {
        tracing::warn!(consumer = %label, in_flight = st.machine.in_flight(), "shutdown timeout: abandoning in-flight writes (they stay uncommitted)");
        cancel.cancel();
        st.wait_all(consumer, Instant::now() + Duration::from_secs(5));
    }
    st.feed(consumer, Event::Shutdown);
    drop(st);
    consumer.unsubscribe();
    // SAFETY: on the consumer thread, the only one using the queues. The revocation that
    // closing the consumer triggers commits synchronously, without the commit queue.
    unsafe {
        ctx.queue.close();
        ctx.commits.close();
        ctx.events.close();
    }
    tracing::info!(consumer = %label, "consumer stopped");
}
