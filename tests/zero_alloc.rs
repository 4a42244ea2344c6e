//! Proves the hot path does not touch the heap per message once warm: a counting global
//! allocator (this binary's own) watches decode + encode of the sample messages.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::BytesMut;
use monasca_persister::{Converter, Kind};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
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
    let mut converter = Converter::default();
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
    // One test function: the counter is global, so nothing may run beside it.
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
