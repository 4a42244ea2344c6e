//! The executor against fakes: a Kafka that records what it is asked (and fails commits on
//! demand), a flusher whose batches finish when the test says.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use super::*;
use crate::convert::Kind;
use crate::pipeline::batch::{PendingBatch, Routing, Spare};
use crate::pipeline::state::COMMIT_RETRY;
use crate::sink::WriteError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Pause(Vec<i32>),
    Resume(Vec<i32>),
    Commit(Vec<(i32, i64)>, bool),
    Probe,
}

#[derive(Default)]
struct FakeKafka {
    calls: RefCell<Vec<Call>>,
    /// How many of the next commits fail.
    failing_commits: Cell<usize>,
    reachable: Cell<bool>,
}

impl FakeKafka {
    fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.calls.borrow_mut())
    }
}

impl Kafka for FakeKafka {
    fn pause(&self, partitions: &[i32]) -> Result<(), String> {
        self.calls
            .borrow_mut()
            .push(Call::Pause(partitions.to_vec()));
        Ok(())
    }
    fn resume(&self, partitions: &[i32]) -> Result<(), String> {
        self.calls
            .borrow_mut()
            .push(Call::Resume(partitions.to_vec()));
        Ok(())
    }
    fn commit(&self, offsets: &[(i32, i64)], sync: bool) -> Result<(), String> {
        self.calls
            .borrow_mut()
            .push(Call::Commit(offsets.to_vec(), sync));
        match self.failing_commits.get() {
            0 => Ok(()),
            n => {
                self.failing_commits.set(n - 1);
                Err("coordinator not available".into())
            }
        }
    }
    fn brokers_reachable(&self) -> bool {
        self.calls.borrow_mut().push(Call::Probe);
        self.reachable.get()
    }
    fn high_watermark(&self, _: i32) -> Option<i64> {
        None
    }
}

/// The batches a worker started, and what the test made of them.
#[derive(Default)]
struct Flushes {
    /// Started and not finished: id and message count.
    in_flight: Vec<(u64, usize)>,
    /// Every batch started: id and message count.
    started: Vec<(u64, usize)>,
    done: VecDeque<Done>,
    /// A wait finishes the oldest batch in flight (a fast InfluxDB).
    finish_on_wait: bool,
    abandoned: bool,
}

impl Flushes {
    fn finish(&mut self, id: u64, result: Result<Spare, BatchError>) {
        self.in_flight.retain(|&(i, _)| i != id);
        self.done.push_back(Done { id, result });
    }
}

struct FakeFlusher(Rc<RefCell<Flushes>>);

impl Flush for FakeFlusher {
    fn start(&mut self, batch: PendingBatch) {
        let mut f = self.0.borrow_mut();
        f.in_flight.push((batch.id, batch.len()));
        f.started.push((batch.id, batch.len()));
    }
    fn finished(&mut self) -> Option<Done> {
        self.0.borrow_mut().done.pop_front()
    }
    fn wait_finished(&mut self, _timeout: Duration) -> Option<Done> {
        let mut f = self.0.borrow_mut();
        if f.done.is_empty() && f.finish_on_wait && !f.in_flight.is_empty() {
            let (id, _) = f.in_flight[0];
            f.finish(id, Ok(Spare::default()));
        }
        f.done.pop_front()
    }
    fn abandon(&mut self) {
        let mut f = self.0.borrow_mut();
        f.abandoned = true;
        for (id, _) in std::mem::take(&mut f.in_flight) {
            f.done.push_back(Done {
                id,
                result: Err(BatchError::Write(WriteError::ShuttingDown)),
            });
        }
    }
}

const IDLE: Duration = Duration::from_millis(100);

fn settings(batch_size: usize, max_in_flight: usize) -> Arc<PipelineSettings> {
    Arc::new(PipelineSettings {
        name: "metrics",
        kind: Kind::Metrics,
        topic: "metrics".into(),
        batch_size,
        // Never due by time within a test: flushes come from size, revocation, shutdown.
        max_wait: Duration::from_secs(3600),
        max_batches_in_flight: max_in_flight,
        routing: Routing::Single("mon".into()),
        converter_policy: Default::default(),
        max_message_bytes: 1 << 20,
        consumer_properties: Vec::new(),
        group_instance_id: None,
        brokers_down_exit: Duration::from_secs(600),
        shutdown_timeout: Duration::from_millis(50),
        lag_interval: Duration::from_secs(3600),
        database_refused: Duration::from_secs(300),
        series_limit: None,
        destination: None,
    })
}

type TestWorker = Worker<FakeFlusher>;

fn worker(batch_size: usize, max_in_flight: usize) -> (TestWorker, Rc<RefCell<Flushes>>) {
    let flushes = Rc::new(RefCell::new(Flushes::default()));
    let w = Worker::new(
        settings(batch_size, max_in_flight),
        "metrics-0".into(),
        Arc::new(PipelineStats::default()),
        false,
        FakeFlusher(flushes.clone()),
    );
    (w, flushes)
}

fn metric(v: i64) -> Vec<u8> {
    format!(
        r#"{{"metric":{{"name":"m","timestamp":{v},"value":{v}}},"meta":{{"tenantId":"t","region":"r"}}}}"#
    )
    .into_bytes()
}

/// Messages `offsets` of `partition` into the worker's batch.
fn take(w: &mut TestWorker, partition: i32, offsets: std::ops::Range<i64>) {
    let payloads: Vec<(i64, Vec<u8>)> = offsets.map(|o| (o, metric(o))).collect();
    w.take(payloads.iter().map(|(o, p)| Fetch::Message {
        partition,
        offset: *o,
        payload: p,
    }));
}

/// A worker (batches of 2, 2 in flight) whose first batch, messages 0..2 of partition 0, was
/// sent and written; the commit is for the next turn.
fn first_batch_written() -> (FakeKafka, TestWorker, Rc<RefCell<Flushes>>) {
    let k = FakeKafka::default();
    let (mut w, flushes) = worker(2, 2);
    w.assigned(&k, vec![0]);
    take(&mut w, 0, 0..2);
    w.turn(&k, IDLE);
    assert_eq!(flushes.borrow().started, vec![(1, 2)]);
    flushes.borrow_mut().finish(1, Ok(Spare::default()));
    (k, w, flushes)
}

fn commits(calls: &[Call]) -> Vec<(Vec<(i32, i64)>, bool)> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Commit(o, sync) => Some((o.clone(), *sync)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_full_batch_without_room_to_send_pauses_until_a_write_finishes() {
    let k = FakeKafka::default();
    let (mut w, flushes) = worker(2, 1);
    w.assigned(&k, vec![0]);
    take(&mut w, 0, 0..2);
    w.turn(&k, IDLE);
    assert_eq!(
        flushes.borrow().started,
        vec![(1, 2)],
        "a full batch is sent"
    );
    k.take_calls();

    take(&mut w, 0, 2..4);
    let turn = w.turn(&k, IDLE);
    assert_eq!(k.take_calls(), vec![Call::Pause(vec![0])]);
    assert_eq!(turn.room, 0, "nothing more is taken while paused");
    assert_eq!(flushes.borrow().started.len(), 1, "the bound holds");

    flushes.borrow_mut().finish(1, Ok(Spare::default()));
    w.turn(&k, IDLE);
    let calls = k.take_calls();
    assert_eq!(
        commits(&calls),
        vec![(vec![(0, 2)], false)],
        "the written batch is committed, asynchronously: {calls:?}"
    );
    assert!(calls.contains(&Call::Resume(vec![0])), "{calls:?}");
    assert_eq!(flushes.borrow().started, vec![(1, 2), (2, 2)]);
}

#[test]
fn a_commit_that_cannot_be_sent_is_retried() {
    let (k, mut w, _) = first_batch_written();
    k.failing_commits.set(1);
    w.turn(&k, IDLE);
    assert_eq!(commits(&k.take_calls()), vec![(vec![(0, 2)], false)]);

    w.turn(&k, IDLE);
    assert_eq!(
        commits(&k.take_calls()),
        vec![],
        "not before the retry delay"
    );
    w.feed(&k, Event::Tick(Instant::now() + COMMIT_RETRY));
    assert_eq!(
        commits(&k.take_calls()),
        vec![(vec![(0, 2)], false)],
        "retried"
    );
}

#[test]
fn a_commit_the_broker_refused_is_retried() {
    let (k, mut w, _) = first_batch_written();
    w.turn(&k, IDLE);
    assert_eq!(commits(&k.take_calls()), vec![(vec![(0, 2)], false)]);

    w.commit_answered(vec![(0, 2)], Some("REBALANCE_IN_PROGRESS".into()));
    w.feed(&k, Event::Tick(Instant::now() + COMMIT_RETRY));
    assert_eq!(commits(&k.take_calls()), vec![(vec![(0, 2)], false)]);
    w.commit_answered(Vec::new(), None);
    assert_eq!(w.stats.commits.load(Ordering::Relaxed), 1);
}

#[test]
fn a_revocation_sends_the_batch_waits_for_it_and_commits_synchronously() {
    let k = FakeKafka::default();
    let (mut w, flushes) = worker(10, 2);
    flushes.borrow_mut().finish_on_wait = true;
    w.assigned(&k, vec![0, 1]);
    take(&mut w, 0, 0..3);
    take(&mut w, 1, 5..7);
    w.turn(&k, IDLE);
    assert!(flushes.borrow().started.is_empty(), "not full, not due");

    w.revoking(&k, vec![0]);
    assert_eq!(flushes.borrow().started, vec![(1, 5)], "flushed first");
    assert!(flushes.borrow().in_flight.is_empty(), "and waited for");
    let c = commits(&k.take_calls());
    assert_eq!(c.len(), 1, "{c:?}");
    let (mut offsets, sync) = c[0].clone();
    offsets.sort();
    assert!(sync, "a revocation commits before the partitions go");
    assert!(offsets.contains(&(0, 3)), "{offsets:?}");
    assert_eq!(
        w.machine().assigned().iter().copied().collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(w.stats.commits.load(Ordering::Relaxed), 1);
}

#[test]
fn shutdown_abandons_the_writes_that_do_not_finish_and_commits_only_what_was_written() {
    let (k, mut w, flushes) = first_batch_written();
    take(&mut w, 0, 2..4);
    w.turn(&k, IDLE);
    assert_eq!(flushes.borrow().in_flight, vec![(2, 2)]);
    k.take_calls();

    // Batch 2 never finishes (InfluxDB hangs): the shutdown timeout (50 ms) abandons it.
    w.shut_down(&k);
    assert!(flushes.borrow().abandoned);
    assert_eq!(
        w.machine().in_flight(),
        0,
        "the abandoned batch was taken back"
    );
    for (offsets, _) in commits(&k.take_calls()) {
        assert!(
            offsets.iter().all(|&(p, o)| (p, o) != (0, 4)),
            "an abandoned batch's offsets stay uncommitted: {offsets:?}"
        );
    }
}

#[test]
fn shutdown_does_not_abandon_writes_that_finish_in_time() {
    let k = FakeKafka::default();
    let (mut w, flushes) = worker(10, 2);
    flushes.borrow_mut().finish_on_wait = true;
    w.assigned(&k, vec![0]);
    take(&mut w, 0, 0..3);
    w.shut_down(&k);
    assert!(!flushes.borrow().abandoned);
    assert_eq!(
        flushes.borrow().started,
        vec![(1, 3)],
        "the last batch is sent"
    );
    assert_eq!(commits(&k.take_calls()), vec![(vec![(0, 3)], true)]);
}

#[test]
fn a_failed_batch_stops_the_consumer() {
    let k = FakeKafka::default();
    let (mut w, flushes) = worker(2, 2);
    w.assigned(&k, vec![0]);
    take(&mut w, 0, 0..2);
    w.turn(&k, IDLE);
    assert!(!w.is_fatal());
    flushes
        .borrow_mut()
        .finish(1, Err(BatchError::Task("panicked".into())));
    w.turn(&k, IDLE);
    assert!(w.is_fatal());
    assert_eq!(
        commits(&k.take_calls()),
        vec![],
        "nothing past it is committed"
    );
}

#[test]
fn a_long_broker_outage_is_probed_once_and_ends_if_a_broker_answers() {
    let k = FakeKafka::default();
    k.reachable.set(true);
    let (mut w, _) = worker(2, 2);
    w.brokers_lost("all brokers down");
    assert!(w.brokers_down());
    w.feed(
        &k,
        Event::Tick(Instant::now() + w.settings().brokers_down_exit),
    );
    assert_eq!(k.take_calls(), vec![Call::Probe]);
    assert!(!w.brokers_down(), "a broker answered the probe");
    assert!(!w.is_fatal());
}

#[test]
fn a_long_broker_outage_with_no_answer_to_the_probe_is_fatal() {
    let k = FakeKafka::default();
    let (mut w, _) = worker(2, 2);
    w.brokers_lost("all brokers down");
    w.feed(
        &k,
        Event::Tick(Instant::now() + w.settings().brokers_down_exit),
    );
    assert_eq!(k.take_calls(), vec![Call::Probe]);
    assert!(w.is_fatal(), "the daemon exits 1 for systemd to restart it");
}
