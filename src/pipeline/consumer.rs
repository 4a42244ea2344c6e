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
use super::offsets::OffsetTracker;
use super::{BatchError, Control, Done, PipelineSettings, PipelineStats, due, process_batch};
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

/// How long after a failed commit it is retried (unless a finished batch commits first).
const COMMIT_RETRY: Duration = Duration::from_secs(1);

/// The most events (other than messages) served in one turn of the poll loop.
const EVENTS_MAX: usize = 1024;

/// A running consumer thread.
pub struct ConsumerHandle {
    pub label: String,
    pub thread: JoinHandle<()>,
}

/// Everything the poll loop and the rebalance callbacks share (they run on the same thread,
/// one at a time; the mutex only satisfies `ConsumerContext: Sync`).
struct State {
    settings: Arc<PipelineSettings>,
    converter: Converter,
    batch: PendingBatch,
    next_id: u64,
    in_flight: usize,
    tracker: OffsetTracker,
    /// Offsets to commit: computed and not yet sent, or sent and failed (retried).
    uncommitted: std::collections::BTreeMap<i32, i64>,
    /// The highest offset sent in a commit, per partition: a failed commit is retried only if
    /// no later one was sent since.
    last_sent: std::collections::HashMap<i32, i64>,
    /// When to retry failed commits if no finished batch commits before.
    retry_commit_at: Option<Instant>,
    done_tx: Sender<Done>,
    done_rx: Receiver<Done>,
    writer: Writer,
    dead: Arc<DeadLetters>,
    stats: Arc<PipelineStats>,
    rt: tokio::runtime::Handle,
    keep_payload: bool,
    /// Whether the assigned partitions are paused; `None` after a rebalance, when the new
    /// assignment's state is unknown and must be set again.
    paused: Option<bool>,
    /// Since when the partitions are paused for backpressure, and whether that was logged:
    /// a pause is logged (and its end) only once it lasts `PAUSE_WORTH_LOGGING`, since under
    /// full load short pauses come and go many times a second.
    paused_since: Option<(Instant, bool)>,
    label: String,
    /// Offset of the last message consumed, per partition (for the lag gauge).
    positions: std::collections::HashMap<i32, i64>,
    /// The partitions assigned, as the rebalance callbacks told.
    assigned: std::collections::BTreeSet<i32>,
    /// Buffers of finished batches, for the next ones.
    spares: Vec<super::batch::Spare>,
    /// The daemon's fatal switch, for a batch that failed.
    control: Arc<Control>,
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
    brokers_down_since: Mutex<Option<Instant>>,
    /// The daemon's stop and fatal switches.
    control: Arc<Control>,
    label: String,
    /// For the counters the poll loop bumps without taking `state`.
    stats: Arc<PipelineStats>,
}

impl Ctx {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state usable; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn brokers_down(&self) -> Option<Instant> {
        *self
            .brokers_down_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Records that every broker is unreachable (once per outage: logged and gauged).
    fn brokers_lost(&self, reason: &str) {
        let mut since = self
            .brokers_down_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if since.is_none() {
            *since = Some(Instant::now());
            self.stats.brokers_down.set(self.label.clone(), 1);
            tracing::error!(consumer = %self.label, "all Kafka brokers are down: {reason}");
        }
    }

    /// Records that a broker answered; ends an outage (logged once, with its length).
    fn brokers_back(&self) {
        let mut since = self
            .brokers_down_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(t) = since.take() {
            self.stats.brokers_down.set(self.label.clone(), 0);
            tracing::info!(consumer = %self.label, outage_seconds = t.elapsed().as_secs_f64(), "Kafka brokers reachable again");
        }
    }
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
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
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            // librdkafka repeats this on every poll while it lasts: log the transition only.
            self.brokers_lost(reason);
        } else if self.brokers_down().is_some() && connection_error(&error) {
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
            // (it is written later; its revoked partitions' offsets are forgotten below), so
            // rebalances during an outage do not pile up batches.
            let deadline = Instant::now() + st.settings.shutdown_timeout;
            st.flush_by(deadline);
            st.wait_all(deadline);
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            st.commit_revoked(consumer, &parts);
            for &p in &parts {
                st.tracker.forget(p);
                st.uncommitted.remove(&p);
                st.last_sent.remove(&p);
                st.positions.remove(&p);
                // Its lag is now the new owner's to report.
                st.stats.lag.remove(&(st.settings.topic.clone(), p));
                st.stats
                    .oldest_uncommitted
                    .remove(&(st.settings.topic.clone(), p));
            }
            st.paused = None;
            tracing::info!(consumer = %self.label, partitions = ?parts, in_flight = st.in_flight, "partitions revoked");
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        let mut st = self.state();
        let mut retry = Vec::new();
        let mut error = result.as_ref().err().map(|e| e.to_string());
        for el in offsets.elements() {
            let Offset::Offset(o) = el.offset() else {
                continue;
            };
            let p = el.partition();
            let failed = match el.error() {
                Err(e) => {
                    error.get_or_insert_with(|| e.to_string());
                    true
                }
                Ok(()) => result.is_err(),
            };
            // Retry for partitions still ours, unless a later commit superseded this one.
            if failed
                && st.positions.contains_key(&p)
                && st.last_sent.get(&p).is_none_or(|&sent| sent <= o)
            {
                let entry = st.uncommitted.entry(p).or_insert(o);
                *entry = (*entry).max(o);
                retry.push((p, o));
            }
        }
        match error {
            None => {
                st.stats.commits.fetch_add(1, Ordering::Relaxed);
            }
            Some(e) if !retry.is_empty() => {
                st.retry_commit_at = Some(Instant::now() + COMMIT_RETRY);
                tracing::warn!(consumer = %self.label, error = %e, offsets = ?retry, "offset commit failed; will retry");
            }
            Some(e) => {
                tracing::info!(consumer = %self.label, error = %e, "offset commit failed for partitions no longer ours or already committed further");
            }
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
                st.assigned.extend(&parts);
                st.paused = None;
                tracing::info!(consumer = %self.label, partitions = ?parts, "partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                for e in tpl.elements() {
                    st.assigned.remove(&e.partition());
                }
            }
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
            .set(self.label.clone(), st.assigned.len() as i64);
    }
}

impl State {
    /// Hands the current batch to the runtime unless it is empty or the in-flight bound is
    /// reached.
    fn flush(&mut self) -> bool {
        if self.batch.is_empty() || self.in_flight >= self.settings.max_batches_in_flight {
            return false;
        }
        self.next_id += 1;
        let fresh = PendingBatch::reusing(
            self.next_id,
            &self.settings.routing,
            self.settings.batch_size,
            self.spares.pop().unwrap_or_default(),
        );
        let batch = std::mem::replace(&mut self.batch, fresh);
        let id = batch.id;
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
        let handle = self.rt.spawn(async move {
            if fail {
                panic!("injected batch failure (test hook)");
            }
            process_batch(batch, writer, dead, stats, refused).await
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
        self.in_flight += 1;
        self.stats.batches_in_flight.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Flushes the batch, first waiting until `deadline` for the in-flight bound to allow
    /// it. False if there was nothing to flush or no room in time (the batch stays).
    fn flush_by(&mut self, deadline: Instant) -> bool {
        while !self.batch.is_empty()
            && self.in_flight >= self.settings.max_batches_in_flight
            && self.finish_one_by(deadline)
        {}
        self.flush()
    }

    /// Waits until `deadline` for one in-flight batch to finish; false if none did.
    fn finish_one_by(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.done_rx.recv_timeout(left) {
            Ok(d) => {
                self.finish(d);
                true
            }
            Err(_) => false,
        }
    }

    /// Converts fetched messages into the current batch (which has room for all of them);
    /// bookkeeping is per run of one partition's messages, not per message.
    fn take<'a>(
        &mut self,
        fetched: impl Iterator<Item = Fetch<'a>>,
        errors_logged: &mut crate::stats::RateLimit,
    ) {
        let mut run: Option<(i32, i64, i64)> = None; // partition, messages, last offset
        for f in fetched {
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
                                self.end_run(r);
                            }
                        }
                    }
                    let State {
                        batch,
                        converter,
                        settings,
                        keep_payload,
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
                } => {
                    if let Some(suppressed) = errors_logged.allow() {
                        tracing::warn!(consumer = %self.label, partition, error = %code, suppressed_since_last = suppressed, "Kafka consume error: {detail}");
                    }
                }
            }
        }
        if let Some(r) = run {
            self.end_run(r);
        }
    }

    /// Records a run of `n` messages of `partition` ending at `last`.
    fn end_run(&mut self, (partition, n, last): (i32, i64, i64)) {
        self.stats
            .consumed_by
            .add((self.settings.topic.clone(), partition), n);
        self.positions.insert(partition, last);
        self.tracker.record(partition, self.batch.id, last);
    }

    /// Lag per partition: the high watermark librdkafka last saw (cached, no request) minus
    /// the next offset we will read.
    fn publish_lag(&self, consumer: &BaseConsumer<Ctx>) {
        let Ok(topic) = std::ffi::CString::new(self.settings.topic.as_str()) else {
            return;
        };
        for (&p, &last) in &self.positions {
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
        for (p, age) in self.tracker.oldest_uncommitted(now) {
            self.stats.oldest_uncommitted.set(
                (self.settings.topic.clone(), p),
                age.as_millis().min(i64::MAX as u128) as i64,
            );
        }
    }

    fn finish(&mut self, d: Done) {
        self.in_flight -= 1;
        self.stats.batches_in_flight.fetch_sub(1, Ordering::Relaxed);
        match d.result {
            Ok(spare) => {
                self.tracker.complete(d.id);
                if self.spares.len() <= self.settings.max_batches_in_flight {
                    self.spares.push(spare);
                }
            }
            Err(BatchError::Write(e)) => {
                tracing::warn!(consumer = %self.label, batch = d.id, error = %e, "batch abandoned; its offsets stay uncommitted")
            }
            Err(e @ BatchError::Task(_)) => {
                // Its offsets can never be committed, and so neither can any later one of its
                // partitions: rather than stall silently, stop (exit 1) and let systemd
                // restart us; the restart consumes the batch again.
                tracing::error!(consumer = %self.label, batch = d.id, error = %e, "batch failed; stopping so that a restart writes it again");
                self.control.fatal.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Takes finished batches without blocking and commits what became committable.
    fn drain(&mut self, consumer: &BaseConsumer<Ctx>) {
        let mut any = false;
        while let Ok(d) = self.done_rx.try_recv() {
            self.finish(d);
            any = true;
        }
        if any {
            self.commit(consumer, CommitMode::Async);
        }
    }

    /// Waits up to `timeout` for one in-flight batch to finish, then commits.
    fn wait_one(&mut self, consumer: &BaseConsumer<Ctx>, timeout: Duration) {
        if let Ok(d) = self.done_rx.recv_timeout(timeout) {
            self.finish(d);
            while let Ok(d) = self.done_rx.try_recv() {
                self.finish(d);
            }
            self.commit(consumer, CommitMode::Async);
        }
    }

    /// Waits for every in-flight batch, until `deadline`.
    fn wait_all(&mut self, deadline: Instant) {
        while self.in_flight > 0 && self.finish_one_by(deadline) {}
    }

    /// Commits synchronously before `parts` are revoked. What stays uncommitted (the
    /// coordinator refused: librdkafka's mock cluster answers REBALANCE_IN_PROGRESS while the
    /// group waits for this very member to rejoin, so no retry inside the callback can help;
    /// Kafka accepts commits of the current generation then) is read again by the partitions'
    /// next owner: at-least-once, and the rewritten points are identical.
    fn commit_revoked(&mut self, consumer: &BaseConsumer<Ctx>, parts: &[i32]) {
        self.commit(consumer, CommitMode::Sync);
        let pending: Vec<(i32, i64)> = parts
            .iter()
            .filter_map(|p| self.uncommitted.get(p).map(|&o| (*p, o)))
            .collect();
        if !pending.is_empty() {
            tracing::warn!(consumer = %self.label, offsets = ?pending, "could not commit revoked partitions; their next owner reads these messages again");
        }
    }

    /// Commits what became committable plus what failed before. `Sync` waits for the
    /// answer (revocation, shutdown); `Async` gets it later through `commit_callback`.
    fn commit(&mut self, consumer: &BaseConsumer<Ctx>, mode: CommitMode) {
        self.retry_commit_at = None;
        for (p, o) in self.tracker.committable() {
            self.uncommitted.insert(p, o);
        }
        if self.uncommitted.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (&p, &o) in &self.uncommitted {
            if let Err(e) = tpl.add_partition_offset(&self.settings.topic, p, Offset::Offset(o)) {
                tracing::warn!(consumer = %self.label, error = %e, "cannot build commit");
                return;
            }
        }
        let sent = match mode {
            CommitMode::Sync => consumer.commit(&tpl, mode).map_err(|e| e.to_string()),
            // SAFETY: on the consumer thread, while the client lives (the queue is closed
            // before it is destroyed).
            CommitMode::Async => unsafe {
                consumer
                    .context()
                    .commits
                    .commit(consumer.client().native_ptr(), &tpl)
            }
            .map_err(|e| e.to_string()),
        };
        match sent {
            Ok(()) => {
                if matches!(mode, CommitMode::Sync) {
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(consumer = %self.label, offsets = ?self.uncommitted, ?mode, "commit sent");
                for (&p, &o) in &self.uncommitted {
                    self.last_sent.insert(p, o);
                }
                self.uncommitted.clear();
            }
            Err(e) => {
                self.retry_commit_at = Some(Instant::now() + COMMIT_RETRY);
                tracing::warn!(consumer = %self.label, error = %e, offsets = ?self.uncommitted, "commit failed; will retry")
            }
        }
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
    let label = format!("{}-{index}", settings.name);
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
        converter: Converter::new(settings.converter_policy, settings.max_message_bytes),
        batch: PendingBatch::new(1, &settings.routing, settings.batch_size),
        next_id: 1,
        in_flight: 0,
        tracker: OffsetTracker::default(),
        uncommitted: Default::default(),
        last_sent: Default::default(),
        retry_commit_at: None,
        done_tx,
        done_rx,
        keep_payload: dead.target.is_some(),
        writer,
        dead,
        stats,
        rt,
        paused: None,
        paused_since: None,
        label: label.clone(),
        positions: Default::default(),
        assigned: Default::default(),
        spares: Vec::new(),
        control: control.clone(),
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
        brokers_down_since: Mutex::new(None),
        control: control.clone(),
        label: label.clone(),
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
    let batch_size = settings.batch_size;
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
            if st.retry_commit_at.is_some_and(|t| now >= t) {
                st.commit(&consumer, CommitMode::Async);
            }
            if now >= next_lag {
                st.publish_lag(&consumer);
                st.publish_uncommitted(now);
                next_lag = now + settings.lag_interval;
            }
            let due_at = due(st.batch.started, settings.max_wait);
            if st.batch.len() >= batch_size || due_at.is_some_and(|d| now >= d) {
                st.flush();
            }
            // Backpressure: a full batch with no room to send it pauses the partitions; polling
            // goes on (group membership, callbacks) but fetches nothing.
            let blocked =
                st.batch.len() >= batch_size && st.in_flight >= settings.max_batches_in_flight;
            if Some(blocked) != st.paused
                && let Ok(assigned) = consumer.assignment()
            {
                let r = if blocked {
                    consumer.pause(&assigned)
                } else {
                    consumer.resume(&assigned)
                };
                match r {
                    Ok(()) => {
                        st.paused = Some(blocked);
                        let n = if blocked { assigned.count() as i64 } else { 0 };
                        st.stats.paused.set(label.clone(), n);
                        tracing::debug!(consumer = %label, paused = blocked, in_flight = st.in_flight, "backpressure");
                        if blocked {
                            st.paused_since.get_or_insert((now, false));
                        } else if let Some((since, true)) = st.paused_since.take() {
                            tracing::info!(consumer = %label, paused_seconds = since.elapsed().as_secs_f64(), "partitions resumed: the sink caught up");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(consumer = %label, error = %e, "pause/resume failed")
                    }
                }
            }
            if let Some((since, logged @ false)) = &mut st.paused_since
                && now.duration_since(*since) >= PAUSE_WORTH_LOGGING
            {
                *logged = true;
                tracing::info!(consumer = %label, in_flight = st.in_flight, "partitions paused: the sink is behind (writes slow or failing)");
            }
            // How long the wait below may last: until the batch is due, if it can be sent
            // then. With no room in flight, only a finished batch (which ends the wait for
            // one, see below) or new messages make progress: a due time already past must not
            // turn the wait into a spin while the sink is down.
            let until_due = match due(st.batch.started, settings.max_wait) {
                Some(d) if st.in_flight < settings.max_batches_in_flight => {
                    d.saturating_duration_since(now)
                }
                _ => IDLE_WAIT,
            };
            (
                until_due.clamp(Duration::from_millis(1), IDLE_WAIT),
                batch_size.saturating_sub(st.batch.len()).min(FETCH_MAX),
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
                    ctx.brokers_back();
                    ctx.stats.fetches.fetch_add(1, Ordering::Relaxed);
                    let one = Fetch::Message {
                        partition: m.partition(),
                        offset: m.offset(),
                        payload: m.payload().unwrap_or(&[]),
                    };
                    ctx.state().take(std::iter::once(one), &mut errors_logged);
                    polled += 1;
                    if polled >= room {
                        break;
                    }
                }
                Some(Err(e)) => {
                    // Client errors came through `Ctx::error` first; while every broker is
                    // down, their echoes here say nothing new.
                    if !(ctx.brokers_down().is_some() && connection_error(&e))
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
                ctx.brokers_back();
                ctx.stats.fetches.fetch_add(1, Ordering::Relaxed);
                ctx.state().take(fetched.iter(), &mut errors_logged);
                fetched.release();
                ctx.stats.convert_seconds.add(t1.elapsed());
            }
        }
        if let Some(since) = ctx.brokers_down()
            && since.elapsed() >= settings.brokers_down_exit
        {
            if consumer
                .fetch_metadata(Some(&settings.topic), Duration::from_secs(2))
                .is_ok()
            {
                ctx.brokers_back();
            } else {
                tracing::error!(consumer = %label, seconds = since.elapsed().as_secs(), "every Kafka broker has been unreachable too long; exiting");
                control.fatal.store(true, Ordering::Relaxed);
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
    if !st.flush_by(deadline) && !st.batch.is_empty() {
        tracing::warn!(consumer = %label, messages = st.batch.len(), "shutdown timeout: no room to send the last batch in time; it stays uncommitted");
    }
    st.wait_all(deadline);
    if st.in_flight > 0 {
        tracing::warn!(consumer = %label, in_flight = st.in_flight, "shutdown timeout: abandoning in-flight writes (they stay uncommitted)");
        cancel.cancel();
        st.wait_all(Instant::now() + Duration::from_secs(5));
    }
    st.commit(consumer, CommitMode::Sync);
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
