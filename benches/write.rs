//! Write throughput into the discard sink (so InfluxDB is not the bottleneck): one batch of
//! 10 000 metric lines (the Python persister's default request size) per write, sequentially
//! and 8 at a time. Reports points/s; at the end prints requests and TCP connections the sink
//! saw — a constant handful of connections shows the pool reusing them.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use monasca_persister::cli::discard::{SinkStats, serve};
use monasca_persister::sink::{InfluxConfig, Lines, Writer};
use monasca_persister::{Converter, Kind};
use tokio_util::sync::CancellationToken;

fn batch_of(n: usize) -> Lines {
    let samples: Vec<&str> = include_str!("../tests/fixtures/sample-metrics.jsonl")
        .lines()
        .collect();
    let mut conv = Converter::default();
    let mut out = BytesMut::new();
    let mut ends = Vec::with_capacity(n);
    for i in 0..n {
        conv.convert(
            Kind::Metrics,
            samples[i % samples.len()].as_bytes(),
            &mut out,
        )
        .expect("sample converts");
        ends.push(out.len());
    }
    Lines::new(out, ends)
}

fn write(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let stats = Arc::new(SinkStats::default());
    let stop = CancellationToken::new();
    let port = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(serve(l, stats.clone(), stop.clone()));
        port
    });
    let batch = Arc::new(batch_of(10_000));
    let mut group = c.benchmark_group("write_discard");
    for gzip in [false, true] {
        let w = {
            let _guard = rt.enter();
            Writer::new(
                InfluxConfig {
                    port,
                    gzip,
                    max_in_flight: 8,
                    ..InfluxConfig::default()
                },
                CancellationToken::new(),
            )
            .unwrap()
        };
        let name = if gzip { "gzip" } else { "plain" };
        group.throughput(Throughput::Elements(batch.len() as u64));
        group.bench_function(format!("{name}/sequential"), |b| {
            b.iter(|| rt.block_on(async { black_box(w.write("mon", &batch).await.unwrap()) }))
        });
        group.throughput(Throughput::Elements(8 * batch.len() as u64));
        group.bench_function(format!("{name}/8_in_flight"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let tasks: Vec<_> = (0..8)
                        .map(|_| {
                            let (w, b) = (w.clone(), batch.clone());
                            tokio::spawn(async move { w.write("mon", &b).await.unwrap().written })
                        })
                        .collect();
                    for t in tasks {
                        black_box(t.await.unwrap());
                    }
                })
            })
        });
    }
    group.finish();
    eprintln!(
        "discard sink saw {} requests, {} points over {} TCP connections",
        stats.requests.load(Ordering::Relaxed),
        stats.points.load(Ordering::Relaxed),
        stats.connections.load(Ordering::Relaxed)
    );
    stop.cancel();
}

criterion_group!(benches, write);
criterion_main!(benches);
