//! Hot-path throughput: decode + encode of realistic messages on one core.
//!
//! Inputs are the sample fixtures (metrics: ~310 bytes, 2–8 dimensions, some value_meta;
//! `metrics_varied`: the same 200 a hundred times, each copy with its own value and timestamp;
//! alarms: ~900 bytes with nested sub-alarms) and `metrics_mix` (`scripts/gen-metrics-mix`:
//! ~640 bytes on average; unicode, URLs with `=` and `&` and other values that need escaping,
//! numeric strings, float timestamps, value_meta absent, small or ~1 KB). Each iteration
//! converts the whole set into a reused buffer, as a daemon worker does with a Kafka batch.
//! Criterion reports both messages/s (`elem/s`) and bytes/s.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use monasca_persister::{Converter, Kind};

fn load(text: &str) -> Vec<Vec<u8>> {
    text.lines().map(|l| l.as_bytes().to_vec()).collect()
}

fn bench_kind(c: &mut Criterion, name: &str, kind: Kind, messages: &[Vec<u8>]) {
    let bytes: usize = messages.iter().map(Vec::len).sum();
    let mut converter = Converter::default();
    let mut out = BytesMut::with_capacity(1 << 20);
    // Every message must become a line, or the bench would time rejections.
    for (i, m) in messages.iter().enumerate() {
        if let Err(e) = converter.convert(kind, m, &mut out) {
            panic!("{name}: message {} is rejected: {e}", i + 1);
        }
    }
    let mut run = |out: &mut BytesMut| {
        out.clear();
        for m in messages {
            let _ = black_box(converter.convert(kind, black_box(m), out));
        }
    };
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.bench_function("messages", |b| b.iter(|| run(&mut out)));
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("bytes", |b| b.iter(|| run(&mut out)));
    group.finish();
}

/// simd-json's parse alone (copy into a padded scratch buffer, tape into reused buffers), as
/// the decoder calls it: the floor under `metrics`, whatever decode and encode do after it.
fn parse_only(c: &mut Criterion, messages: &[Vec<u8>]) {
    let mut scratch = Vec::new();
    let mut buffers = simd_json::Buffers::default();
    let mut tape = Some(simd_json::Tape(Vec::new()));
    let mut run = || {
        for m in messages {
            scratch.clear();
            scratch.extend_from_slice(black_box(m));
            scratch.resize(m.len() + simd_json::INPUT_PADDING, 0);
            let mut t = tape
                .take()
                .unwrap_or_else(|| simd_json::Tape(Vec::new()))
                .reset();
            let r = simd_json::fill_tape_padded(&mut scratch, m.len(), &mut buffers, &mut t);
            assert!(r.is_ok());
            black_box(t.0.len());
            tape = Some(t.reset());
        }
    };
    let mut group = c.benchmark_group("metrics_simd_json_parse_only");
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.bench_function("messages", |b| b.iter(&mut run));
    group.finish();
}

/// The sample messages `copies` times over, each copy with its own `value` and `timestamp`
/// (same kinds and digit counts as the originals, from a fixed-seed xorshift).
///
/// `metrics` converts the same 200 messages again and again, and the CPU's branch predictors
/// learn them: number parsing and formatting branch on every digit. In a daemon no two
/// messages carry the same numbers. This group shows what that costs (about 15 %, see the
/// README), on data of the same shape.
fn varied(samples: &[Vec<u8>], copies: usize) -> Vec<Vec<u8>> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity(samples.len() * copies);
    for _ in 0..copies {
        for sample in samples {
            let text = std::str::from_utf8(sample).expect("the fixture is UTF-8");
            let unit = (next() >> 11) as f64 / (1u64 << 53) as f64;
            let (scale, int) = (next() % 10, next() % 1_000_000_000);
            let text = replace_number(text, "\"value\": ", |old| {
                if old.contains(['.', 'e', 'E']) {
                    (unit * 10f64.powi(scale as i32 - 3)).to_string()
                } else {
                    (int % 1_000_000).to_string()
                }
            });
            let text = replace_number(&text, "\"timestamp\": ", |old| {
                if old.contains('.') {
                    format!("{:.4}", 1.7e12 + unit * 1e9)
                } else {
                    (1_700_000_000_000 + int).to_string()
                }
            });
            out.push(text.into_bytes());
        }
    }
    out
}

/// `text` with the number after the first `key` replaced by `new(number)`; unchanged when no
/// number follows (a numeric string, say).
fn replace_number(text: &str, key: &str, new: impl FnOnce(&str) -> String) -> String {
    let Some(at) = text.find(key) else {
        return text.to_owned();
    };
    let start = at + key.len();
    let len = text[start..]
        .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
        .unwrap_or(text.len() - start);
    if len == 0 {
        return text.to_owned();
    }
    let end = start + len;
    format!(
        "{}{}{}",
        &text[..start],
        new(&text[start..end]),
        &text[end..]
    )
}

/// The consumer's per-message step, `Batcher::add` (convert into the batch, record the
/// source), over `messages`: without and with `max_hourly_series_per_tenant` (a limit no
/// tenant reaches, so every message is admitted: the steady state, where each series was seen
/// earlier in the hour). The difference is what the limit costs per message.
#[cfg(feature = "daemon")]
fn batch_add(c: &mut Criterion, name: &str, messages: &[Vec<u8>]) {
    use monasca_persister::pipeline::batch::{Batcher, Routing};
    use monasca_persister::pipeline::series::{SeriesGate, SeriesLimit, current_hour};
    let limit = std::sync::Arc::new(SeriesLimit::new(10_000_000));
    // The gate's cache of admitted series lives as long as the consumer: one for the run.
    let mut gate = Some(SeriesGate::new(limit));
    let run = |gate: &mut Option<SeriesGate>| {
        let mut batcher = Batcher::new(
            Converter::default(),
            Kind::Metrics,
            Routing::Single("mon".into()),
            messages.len(),
        )
        .with_series_gate(gate.take());
        batcher.set_hour(current_hour());
        for (i, m) in messages.iter().enumerate() {
            batcher.add(0, i as i64, black_box(m));
        }
        let batch = black_box(batcher.batch());
        assert!(batch.over_limit.is_empty() && batch.rejected.is_empty());
        *gate = batcher.into_series_gate();
    };
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.bench_function("series_limit_off", |b| b.iter(|| run(&mut None)));
    group.bench_function("series_limit_on", |b| b.iter(|| run(&mut gate)));
    group.finish();
}

fn hot_path(c: &mut Criterion) {
    let metrics = load(include_str!("../tests/fixtures/sample-metrics.jsonl"));
    let alarms = load(include_str!("../tests/fixtures/sample-alarms.jsonl"));
    bench_kind(c, "metrics", Kind::Metrics, &metrics);
    bench_kind(c, "metrics_varied", Kind::Metrics, &varied(&metrics, 100));
    parse_only(c, &metrics);
    bench_kind(c, "alarms", Kind::Alarms, &alarms);
    let mix = load(include_str!("../tests/fixtures/metrics-mix.jsonl"));
    bench_kind(c, "metrics_mix", Kind::Metrics, &mix);
    #[cfg(feature = "daemon")]
    batch_add(c, "batch_add_varied", &varied(&metrics, 100));
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
