//! One consumer thread: creates the client, subscribes, and runs the poll loop that feeds the
//! worker, until the daemon stops it or the worker gives up; then stops the worker, closes
//! our queues and leaves the group.
//!
//! Owns the thread and the order of librdkafka calls around it. Must never hold the worker
//! across a `poll` (the callbacks take it) or destroy the client before our queues.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::channel;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;

use super::client::Client;
use super::context::{Ctx, connection_error};
use super::queue::Fetched;
use crate::kafka::deadletter::DeadLetters;
use crate::pipeline::flush::Flusher;
use crate::pipeline::ports::Fetch;
use crate::pipeline::worker::Worker;
use crate::pipeline::{Control, Ending, PipelineSettings, PipelineStats};
use crate::sink::Writer;

/// The most messages taken from librdkafka in one call.
const FETCH_MAX: usize = 1024;

/// The longest the consumer loop waits for messages or a finished batch before it looks
/// again at its timers, the stop switch and rebalance events.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// The longest a stopping consumer waits for librdkafka to leave the group.
const LEAVE_GROUP_LIMIT: Duration = Duration::from_secs(10);

/// The most events (other than messages) served in one turn of the poll loop.
const EVENTS_MAX: usize = 1024;

/// A running consumer thread; it answers how it ended.
pub struct ConsumerHandle {
    pub label: String,
    pub thread: JoinHandle<Ending>,
}

/// Reports the thread's end to the daemon when dropped, however the thread ends (a panic
/// included).
struct ExitGuard {
    label: String,
    exits: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if let Some(tx) = &self.exits {
            let _ = tx.send(std::mem::take(&mut self.label));
        }
    }
}

/// Creates consumer `index` of a pipeline, subscribes, and starts its thread.
#[allow(clippy::too_many_arguments)]
pub fn spawn_consumer(
    settings: Arc<PipelineSettings>,
    index: usize,
    writer: Writer,
    dead: Arc<DeadLetters>,
    stats: Arc<PipelineStats>,
    control: Arc<Control>,
    abandon: tokio_util::sync::CancellationToken,
    rt: tokio::runtime::Handle,
) -> Result<ConsumerHandle, KafkaError> {
    let label = crate::stats::thread_names::consumer(settings.name, index);
    let mut cc = super::client_config(&settings.consumer_properties);
    if let Some(id) = &settings.group_instance_id {
        cc.set(
            "group.instance.id",
            format!("{id}-{}-{index}", settings.name),
        );
    }
    let keep_payloads = dead.target.is_some();
    let flusher = Flusher::new(
        &settings,
        writer,
        dead,
        stats.clone(),
        rt,
        abandon,
        control.clone(),
    );
    let worker = Worker::new(
        settings.clone(),
        label.clone(),
        stats.clone(),
        keep_payloads,
        flusher,
    );
    let topic = std::ffi::CString::new(settings.topic.as_str())
        .map_err(|_| KafkaError::ClientCreation("topic name contains NUL".into()))?;
    let redactor = crate::config::Redactor::of(&settings.consumer_properties);
    let consumer: BaseConsumer<Ctx> =
        cc.create_with_context(Ctx::new(worker, topic, stats, redactor))?;
    consumer.subscribe(&[settings.topic.as_str()])?;
    let guard = ExitGuard {
        label: label.clone(),
        exits: control.exits.clone(),
    };
    let thread = std::thread::Builder::new()
        .name(label.clone())
        .spawn(move || {
            let _guard = guard;
            run(consumer, &control)
        })
        .map_err(|e| KafkaError::ClientCreation(format!("cannot start consumer thread: {e}")))?;
    Ok(ConsumerHandle { label, thread })
}

fn run(consumer: BaseConsumer<Ctx>, control: &Control) -> Ending {
    let ctx = consumer.context().clone();
    // SAFETY: opened before the first poll (so before any assignment is forwarded) and
    // closed by `close_queues`, which is declared after `consumer` and so dropped before it.
    unsafe {
        ctx.queue.open(consumer.client().native_ptr());
        ctx.events.open(consumer.client().native_ptr());
    }
    // Declared after `consumer`, so dropped before it (also on a panic): the queues hold
    // librdkafka objects that must go before the client does.
    let close_queues = CloseQueues(&ctx);
    let mut fetched = Fetched::with_capacity(FETCH_MAX);
    let mut errors_logged = crate::stats::RateLimit::new(5, Duration::from_secs(30));
    let client = Client::new(&consumer);
    let ending = loop {
        if control.stop.is_cancelled() {
            break Ending::Stopped;
        }
        let turn = {
            let mut worker = ctx.worker();
            if worker.is_fatal() {
                break Ending::Fatal;
            }
            worker.turn(&client, IDLE_WAIT)
        };
        let room = turn.room.min(FETCH_MAX);
        let t0 = Instant::now();
        let polled = serve_events(&consumer, &ctx, room, &mut errors_logged);
        if polled >= room {
            // Blocked: wait for a batch to finish instead of for messages.
            ctx.worker().wait_one(&client, turn.wait);
            ctx.stats.poll_seconds.add(t0.elapsed());
        } else {
            let wait = if polled > 0 {
                Duration::ZERO
            } else {
                turn.wait
            };
            // SAFETY: this thread is the only one that consumes, forwards or closes.
            let n = unsafe { ctx.queue.consume(wait, room - polled, &mut fetched) };
            let t1 = Instant::now();
            ctx.stats.poll_seconds.add(t1 - t0);
            if n > 0 {
                ctx.stats.fetches.fetch_add(1, Ordering::Relaxed);
                ctx.worker().take(fetched.iter());
                fetched.release();
                ctx.stats.convert_seconds.add(t1.elapsed());
            }
        }
    };
    ctx.worker().shut_down(&client);
    consumer.unsubscribe();
    // The revocation that unsubscribing triggers commits synchronously, without our queues.
    drop(close_queues);
    tracing::info!(consumer = %ctx.label, "consumer stopped");
    leave_group(consumer, LEAVE_GROUP_LIMIT, &ctx.label);
    ending
}

/// Serves what waits on the consumer queue: rebalances, commit results, client errors and
/// librdkafka's log lines (within a bound; `poll` answers `None` also right after serving one
/// of them, see `ConsumerQueue`), and messages only of partitions not forwarded to our queue
/// (taken while they come, up to `room`, so that path is slow but not stuck; a full batch may
/// take one more). Answers how many messages it took.
fn serve_events(
    consumer: &BaseConsumer<Ctx>,
    ctx: &Ctx,
    room: usize,
    errors_logged: &mut crate::stats::RateLimit,
) -> usize {
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
                ctx.worker().take(std::iter::once(one));
                polled += 1;
                if polled >= room {
                    return polled;
                }
            }
            Some(Err(e)) => {
                // Client errors came through `Ctx::error` first; while every broker is
                // down, their echoes here say nothing new.
                if !(ctx.worker().brokers_down() && connection_error(&e))
                    && let Some(suppressed) = errors_logged.allow()
                {
                    tracing::warn!(consumer = %ctx.label, error = %e, suppressed_since_last = suppressed, "Kafka consume error");
                }
                served += 1;
                if served >= EVENTS_MAX {
                    return polled;
                }
            }
            None => {
                served += 1;
                // SAFETY: this thread is the only one that opens, reads or closes it.
                if served >= EVENTS_MAX || !unsafe { ctx.events.pending() } {
                    return polled;
                }
            }
        }
    }
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
            self.0.events.close();
        }
    }
}
