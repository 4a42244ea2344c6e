//! A fixed amount of hot-path work, for counting instructions with callgrind (wall-clock
//! timings are noisy on a shared machine; instruction counts are not):
//!
//! ```text
//! cargo build --release --example hot_path_count
//! valgrind --tool=callgrind --dump-instr=no target/release/examples/hot_path_count metrics 100
//! ```
//!
//! Converts every message of the fixture (`metrics`, `mix` or `alarms`) ROUNDS times into a
//! reused buffer. Per-message cost: the difference between two round counts, divided by the
//! extra messages.

use bytes::BytesMut;
use monasca_persister::{Converter, Kind};

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "metrics".into());
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(100);
    let (kind, text) = match which.as_str() {
        "alarms" => (
            Kind::Alarms,
            include_str!("../tests/fixtures/sample-alarms.jsonl"),
        ),
        "mix" => (
            Kind::Metrics,
            include_str!("../tests/fixtures/metrics-mix.jsonl"),
        ),
        _ => (
            Kind::Metrics,
            include_str!("../tests/fixtures/sample-metrics.jsonl"),
        ),
    };
    let messages: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    let mut converter = Converter::default();
    let mut out = BytesMut::with_capacity(1 << 20);
    let mut ok = 0usize;
    for _ in 0..rounds {
        out.clear();
        for m in &messages {
            ok += usize::from(
                converter
                    .convert(kind, std::hint::black_box(m), &mut out)
                    .is_ok(),
            );
        }
    }
    println!(
        "{} messages converted, {ok} accepted",
        rounds * messages.len()
    );
}
