//! Proves the hot path does not touch the heap per message once warm: a counting global
//! allocator (this binary's own) watches decode + encode of the sample messages.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::BytesMut;
use monasca_persister::{Converter, Dialect, Encoder, Kind, Policy};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on the thread whose allocations are counted. Other threads (the test harness's own
    /// main thread, which may allocate at any moment, most visibly on a loaded machine) are
    /// not what the test is about. A const-initialized `Cell` has no destructor, so reading
    /// it never allocates.
    static THIS_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn counted() -> bool {
    COUNTING.load(Ordering::Relaxed) && THIS_THREAD.try_with(|c| c.get()).unwrap_or(false)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made while converting every message `rounds` times after one warm-up pass.
fn allocations(kind: Kind, messages: &[&str], rounds: usize) -> (usize, usize) {
    allocations_with(Converter::default(), kind, messages, rounds)
}

fn allocations_with(
    mut converter: Converter,
    kind: Kind,
    messages: &[&str],
    rounds: usize,
) -> (usize, usize) {
    let mut out = BytesMut::with_capacity(1 << 20);
    for m in messages {
        converter
            .convert(kind, m.as_bytes(), &mut out)
            .expect("sample accepted");
    }
    out.clear();
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let mut lines = 0;
    for _ in 0..rounds {
        for m in messages {
            if converter.convert(kind, m.as_bytes(), &mut out).is_ok() {
                lines += 1;
            }
            out.clear();
        }
    }
    COUNTING.store(false, Ordering::SeqCst);
    (ALLOCS.load(Ordering::SeqCst), lines)
}

#[test]
fn metric_and_alarm_conversion_allocate_nothing_after_warm_up() {
    // One test function: the counter is global, so nothing may run beside it. Only this
    // thread's allocations count.
    THIS_THREAD.with(|c| c.set(true));
    // First make sure the counter counts at all, or the zeros below would prove nothing.
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let v: Vec<u64> = std::hint::black_box(Vec::with_capacity(16));
    COUNTING.store(false, Ordering::SeqCst);
    drop(v);
    assert!(
        ALLOCS.load(Ordering::SeqCst) >= 1,
        "counting allocator is not counting"
    );

    let metrics: Vec<&str> = include_str!("fixtures/sample-metrics.jsonl")
        .lines()
        .collect();
    let (allocs, lines) = allocations(Kind::Metrics, &metrics, 20);
    assert_eq!(lines, metrics.len() * 20);
    assert_eq!(
        allocs, 0,
        "heap allocations while converting {lines} metric messages"
    );

    // Loosely typed inputs stored as the Python persister stores them: boolean and string
    // values, number and boolean dimension values (formatted as Python's `str()`),
    // value_meta of other types, underscores in numeric strings.
    let odd = [
        r#"{"metric":{"name":"m","dimensions":{"b":true,"i":-42,"u":18446744073709551615,"f":1.5e-7,"g":1e16,"h":0.1},"timestamp":1,"value":true},"meta":{"tenantId":"t","region":"r"}}"#,
        r#"{"metric":{"name":"m","dimensions":{"n":null,"s":"x"},"timestamp":"1_000","value":"1_000.5","value_meta":"note"},"meta":{"tenantId":"t","region":"r"}}"#,
        r#"{"metric":{"name":"m","dimensions":null,"timestamp":1.5,"value":false,"value_meta":[1,"two",{"a":null}]},"meta":{"tenantId":"t","region":"r"}}"#,
        r#"{"metric":{"name":"m","timestamp":1,"value":2,"value_meta":0},"meta":{"tenantId":"t","region":"r"}}"#,
    ];
    let (allocs, lines) = allocations(Kind::Metrics, &odd, 20);
    assert_eq!(lines, odd.len() * 20);
    assert_eq!(
        allocs, 0,
        "heap allocations while converting {lines} loosely typed metric messages"
    );

    // The v3 dialect (backslashes doubled), over messages with backslashes to double.
    let v3 = Encoder {
        policy: Policy::Reject,
        dialect: Dialect::V3,
    };
    let backslashes = [
        r#"{"metric":{"name":"a\\b","dimensions":{"path":"C:\\","k\\ey":"x\\ y,z=1"},"timestamp":1,"value":1},"meta":{"tenantId":"t","region":"r"}}"#,
    ];
    let mut all = metrics.clone();
    all.extend_from_slice(&backslashes);
    let (allocs, lines) = allocations_with(Converter::new(v3, 1 << 20), Kind::Metrics, &all, 20);
    assert_eq!(lines, all.len() * 20);
    assert_eq!(
        allocs, 0,
        "heap allocations while converting {lines} metric messages (v3 dialect)"
    );

    let alarms: Vec<&str> = include_str!("fixtures/sample-alarms.jsonl")
        .lines()
        .collect();
    let (allocs, lines) = allocations(Kind::Alarms, &alarms, 20);
    assert_eq!(lines, alarms.len() * 20);
    assert_eq!(
        allocs, 0,
        "heap allocations while converting {lines} alarm messages"
    );
}
