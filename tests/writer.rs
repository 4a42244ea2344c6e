//! The InfluxDB writer against real servers: InfluxDB 1.6 (started per test in a temp dir on
//! free ports), VictoriaMetrics through the v2 API, and the discard sink.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::{Influx, Victoria};
use monasca_persister::cli::discard::{SinkStats, serve};
use monasca_persister::config::Secret;
use monasca_persister::sink::{Api, InfluxConfig, Lines, RetryCause, WriteError, Writer};
use tokio_util::sync::CancellationToken;

fn config(influx: &Influx) -> InfluxConfig {
    InfluxConfig {
        port: influx.port,
        retry_initial_ms: 20,
        retry_max_seconds: 0.5,
        request_timeout_seconds: 10.0,
        ..InfluxConfig::default()
    }
}

fn writer(c: InfluxConfig) -> (Writer, CancellationToken) {
    let shutdown = CancellationToken::new();
    (Writer::new(c, shutdown.clone()).expect("writer"), shutdown)
}

/// `n` points of measurement `m`, timestamps `1..=n` ms.
fn lines(m: &str, n: usize) -> String {
    lines_at(m, n, 0)
}

/// `n` points of measurement `m`, timestamps `base+1..=base+n` ms.
fn lines_at(m: &str, n: usize, base: i64) -> String {
    (1..=n)
        .map(|i| format!("{m},host=h{} value={i}.5 {}\n", i % 7, base + i as i64))
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn batch(text: String) -> Lines {
    Lines::from_newline_separated(Bytes::from(text))
}

#[tokio::test(flavor = "multi_thread")]
async fn database_is_created_with_its_retention_policy_and_existing_ones_are_left_alone() {
    let influx = Influx::start();
    let (w, _) = writer(InfluxConfig {
        database_name: "auto".into(),
        default_retention_hours: 48,
        ..config(&influx)
    });
    // Recent timestamps: the 48 h policy drops older points.
    let r = w
        .write("auto", &batch(lines_at("m", 10, now_ms() - 60_000)))
        .await
        .unwrap();
    assert_eq!((r.written, r.rejected.len()), (10, 0));
    assert_eq!(influx.count("auto", "m"), 10);
    let rps = influx.query("auto", "SHOW RETENTION POLICIES ON auto");
    let rows = rps["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .clone();
    let default: Vec<_> = rows
        .iter()
        .filter(|r| r[4] == true)
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(default, vec![serde_json::json!("48h")], "{rows:?}");
    assert_eq!(w.stats().databases_created.load(Ordering::Relaxed), 1);

    // A second write creates nothing; an existing database keeps its own policies.
    // Points older than the policy are rejected by InfluxDB, as a whole request.
    let old = w.write("auto", &batch(lines("old", 5))).await.unwrap();
    assert_eq!(old.written, 0);
    assert_eq!(old.rejected.len(), 5);
    assert!(
        old.rejected[0].reason.contains("beyond retention"),
        "{old:?}"
    );
    assert_eq!(
        old.requests, 1,
        "a request that lost every point is not bisected"
    );
    assert_eq!(w.stats().databases_created.load(Ordering::Relaxed), 1);
    influx.query("", "CREATE DATABASE existing");
    w.write("existing", &batch(lines("m", 3))).await.unwrap();
    let rps = influx.query("existing", "SHOW RETENTION POLICIES ON existing");
    let names: Vec<_> = rps["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(names, vec![serde_json::json!("autogen")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn db_per_tenant_routes_each_tenant_to_its_database() {
    let influx = Influx::start();
    let (w, _) = writer(InfluxConfig {
        database_name: "mon".into(),
        db_per_tenant: true,
        ..config(&influx)
    });
    for (tenant, n) in [("alpha", 3), ("beta", 4)] {
        let db = w.database_for(tenant).into_owned();
        assert_eq!(db, format!("mon_{tenant}"));
        w.write(&db, &batch(lines("m", n))).await.unwrap();
    }
    assert_eq!(influx.count("mon_alpha", "m"), 3);
    assert_eq!(influx.count("mon_beta", "m"), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_write_stores_the_good_points_and_names_the_conflicting_one() {
    let influx = Influx::start();
    let (w, _) = writer(config(&influx));
    influx.query("", "CREATE DATABASE mon");
    assert_eq!(influx.write("mon", b"conf value=\"text\" 1\n").0, 204);
    let text = format!(
        "{}conf value=2.5 100\n{}",
        lines("good", 3),
        lines("other", 2)
    );
    let r = w.write("mon", &batch(text)).await.unwrap();
    assert_eq!(r.written, 5);
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(r.rejected[0].index, 3);
    assert!(
        r.rejected[0].reason.contains("field type conflict"),
        "{:?}",
        r.rejected
    );
    assert_eq!(
        influx.count("mon", "good") + influx.count("mon", "other"),
        5
    );
    assert_eq!(influx.count("mon", "conf"), 1, "only the original point");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_unparseable_line_in_a_thousand_costs_only_itself() {
    let influx = Influx::start();
    let (w, _) = writer(config(&influx));
    let mut all: Vec<String> = lines("m", 999).lines().map(str::to_owned).collect();
    all.insert(500, "this is not line protocol".to_owned());
    let r = w.write("mon", &batch(all.join("\n") + "\n")).await.unwrap();
    assert_eq!(r.written, 999);
    assert_eq!(
        r.rejected.iter().map(|x| x.index).collect::<Vec<_>>(),
        vec![500]
    );
    assert!(
        r.rejected[0].reason.contains("unable to parse"),
        "{:?}",
        r.rejected
    );
    assert_eq!(influx.count("mon", "m"), 999);
}

#[tokio::test(flavor = "multi_thread")]
async fn conflict_inside_one_batch_is_bisected_down_to_the_bad_line() {
    // 1.6 answers a type conflict between two lines of the same request with a plain 400 and
    // stores nothing; splitting isolates the line.
    let influx = Influx::start();
    let (w, _) = writer(config(&influx));
    let mut all: Vec<String> = lines("ok", 98).lines().map(str::to_owned).collect();
    all.insert(0, "tc value=\"s\" 1".to_owned());
    all.insert(60, "tc value=1.5 2".to_owned());
    let r = w.write("mon", &batch(all.join("\n") + "\n")).await.unwrap();
    assert_eq!(r.written, 99, "{r:?}");
    assert_eq!(
        r.rejected.iter().map(|x| x.index).collect::<Vec<_>>(),
        vec![60]
    );
    assert!(r.requests > 2, "it took a split");
    assert_eq!(influx.count("mon", "ok"), 98);
}

#[tokio::test(flavor = "multi_thread")]
async fn too_large_bodies_are_split_until_they_fit() {
    let influx = Influx::start_with(&[("INFLUXDB_HTTP_MAX_BODY_SIZE", "4000")]);
    let (w, _) = writer(config(&influx));
    influx.query("", "CREATE DATABASE mon");
    let r = w.write("mon", &batch(lines("big", 2000))).await.unwrap();
    assert_eq!((r.written, r.rejected.len()), (2000, 0));
    assert!(
        r.requests >= 16,
        "a ~60 kB body needs many 4 kB requests: {}",
        r.requests
    );
    assert_eq!(influx.count("mon", "big"), 2000);
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_bodies_are_stored() {
    let influx = Influx::start();
    let (w, _) = writer(InfluxConfig {
        gzip: true,
        ..config(&influx)
    });
    let r = w.write("mon", &batch(lines("gz", 500))).await.unwrap();
    // The first request met no database: after creating it, the body compressed once was
    // sent again.
    assert_eq!((r.written, r.requests), (500, 2));
    assert_eq!(influx.count("mon", "gz"), 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_right_and_wrong() {
    let mut influx = Influx::start_with(&[("INFLUXDB_HTTP_AUTH_ENABLED", "true")]);
    // The first admin user may be created without credentials.
    influx.query(
        "",
        "CREATE USER admin WITH PASSWORD 's3cret' WITH ALL PRIVILEGES",
    );
    influx.auth = Some(("admin".into(), "s3cret".into()));

    let (good, _) = writer(InfluxConfig {
        user: "admin".into(),
        password: Secret::new("s3cret"),
        ..config(&influx)
    });
    let r = good.write("mon", &batch(lines("auth", 20))).await.unwrap();
    assert_eq!(r.written, 20);
    assert_eq!(influx.count("mon", "auth"), 20);

    let (bad, shutdown) = writer(InfluxConfig {
        user: "admin".into(),
        password: Secret::new("wrong"),
        ..config(&influx)
    });
    let stats = bad.stats();
    let b = batch(lines("auth", 5));
    let pending = {
        let (bad, b) = (bad.clone(), b.clone());
        tokio::spawn(async move { bad.write("mon", &b).await })
    };
    retried(&stats, RetryCause::Auth, 2).await;
    assert!(
        !pending.is_finished(),
        "a refused write must keep retrying, never report success"
    );
    assert!(stats.failing.load(Ordering::Relaxed));
    assert_eq!(stats.points_written.load(Ordering::Relaxed), 0);
    shutdown.cancel();
    let ended = bad.write("mon", &b).await;
    assert!(matches!(ended, Err(WriteError::ShuttingDown)));
    assert!(matches!(
        pending.await.expect("write task"),
        Err(WriteError::ShuttingDown)
    ));
}

/// Waits (up to a minute) until `stats` counted `n` retries for `cause`.
async fn retried(stats: &monasca_persister::sink::WriterStats, cause: RetryCause, n: u64) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while stats.retries[cause as usize].load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} retries for {cause:?} within a minute"));
}

#[tokio::test(flavor = "multi_thread")]
async fn server_stopped_mid_write_then_restarted_stores_every_point_once() {
    let mut influx = Influx::start();
    let (w, _) = writer(config(&influx));
    w.write("mon", &batch(lines("before", 100))).await.unwrap();
    influx.stop();
    let pending = {
        let w = w.clone();
        tokio::spawn(async move { w.write("mon", &batch(lines("during", 5000))).await })
    };
    // Proof the write is being tried: it failed to connect, twice.
    retried(&w.stats(), RetryCause::Transport, 2).await;
    assert!(
        !pending.is_finished(),
        "nothing can be written while the server is down"
    );
    assert!(w.stats().failing.load(Ordering::Relaxed));
    tokio::task::block_in_place(|| influx.restart());
    let r = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((r.written, r.rejected.len()), (5000, 0));
    assert_eq!(influx.count("mon", "during"), 5000);
    assert_eq!(influx.count("mon", "before"), 100);
    assert!(!w.stats().failing.load(Ordering::Relaxed));
}

#[tokio::test(flavor = "multi_thread")]
async fn victoria_metrics_takes_points_through_the_v2_api() {
    let vm = Victoria::start();
    let (w, _) = writer(InfluxConfig {
        api: Api::V2,
        port: vm.port,
        org: "monasca".into(),
        token: Secret::new("unused-by-victoria"),
        retry_initial_ms: 20,
        ..InfluxConfig::default()
    });
    let now = now_ms();
    let text: String = (0..100)
        .map(|i| format!("vmtest,host=h{i} value={i}.5 {}\n", now - i))
        .collect();
    let r = w.write("mon", &batch(text)).await.unwrap();
    assert_eq!(r.written, 100);
    // Fresh samples become searchable a moment after the flush: poll.
    let mut export = String::new();
    for _ in 0..300 {
        vm.get("/internal/force_flush").unwrap();
        let (status, body) = vm
            .get("/api/v1/export?match%5B%5D=%7B__name__%3D%22vmtest_value%22%7D")
            .unwrap();
        assert_eq!(status, 200, "{body}");
        export = body;
        if export.lines().count() == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let series: Vec<serde_json::Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(series.len(), 100, "{export}");
    let h7 = series
        .iter()
        .find(|s| s["metric"]["host"] == "h7")
        .expect("series h7");
    assert_eq!(h7["values"][0], serde_json::json!(7.5));
    assert_eq!(h7["timestamps"][0], serde_json::json!(now - 7));
}

#[tokio::test(flavor = "multi_thread")]
async fn discard_sink_counts_every_point_over_reused_connections() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stats = Arc::new(SinkStats::default());
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, stats.clone(), stop.clone()));
    for gzip in [false, true] {
        let (w, _) = writer(InfluxConfig {
            port,
            gzip,
            batch_size: 1000,
            max_in_flight: 4,
            ..InfluxConfig::default()
        });
        let b = Arc::new(batch(lines("d", 5000)));
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let (w, b) = (w.clone(), b.clone());
                tokio::spawn(async move { w.write("mon", &b).await.unwrap().written })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        assert_eq!(total, 200_000);
    }
    assert_eq!(stats.points.load(Ordering::Relaxed), 400_000);
    assert_eq!(stats.requests.load(Ordering::Relaxed), 400);
    // Two writers with at most 4 requests in flight each: 400 requests over a handful of
    // pooled connections. (hyper-util hands a finished connection back to its pool from a
    // background task, so under back-to-back load an occasional extra one is opened.)
    assert!(
        stats.connections.load(Ordering::Relaxed) <= 16,
        "{}",
        stats.json()
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn https_without_verification_writes_and_an_untrusted_certificate_is_never_written_to() {
    let influx = Influx::start_tls();
    let (w, _) = writer(InfluxConfig {
        ssl: true,
        verify_ssl: false,
        ..config(&influx)
    });
    let r = w.write("mon", &batch(lines("tls", 50))).await.unwrap();
    assert_eq!(r.written, 50);
    assert_eq!(influx.count("mon", "tls"), 50);

    // Verification on: the test CA is in no trust store this process reads.
    let (strict, shutdown) = writer(InfluxConfig {
        ssl: true,
        verify_ssl: true,
        ..config(&influx)
    });
    let stats = strict.stats();
    let b = batch(lines("tls_untrusted", 5));
    let pending = {
        let (strict, b) = (strict.clone(), b.clone());
        tokio::spawn(async move { strict.write("mon", &b).await })
    };
    retried(&stats, RetryCause::Transport, 2).await;
    assert!(
        !pending.is_finished(),
        "an unverifiable server must not be written to"
    );
    assert_eq!(stats.points_written.load(Ordering::Relaxed), 0);
    assert_eq!(influx.count("mon", "tls_untrusted"), 0);
    shutdown.cancel();
}

/// `SSL_CERT_FILE` replaces the system's CA store (how an operator trusts a private CA without
/// installing it system-wide). Environment variables are process-wide, so the write runs in a
/// child process: this test binary again, running only `https_child_verified_write`.
#[test]
fn https_with_verification_trusts_the_ca_named_by_ssl_cert_file() {
    let influx = Influx::start_tls();
    let exe = std::env::current_exe().expect("test binary path");
    let out = std::process::Command::new(exe)
        .args([
            "https_child_verified_write",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("SSL_CERT_FILE", influx.ca.as_ref().expect("TLS server"))
        .env("MP_TEST_HTTPS_PORT", influx.port.to_string())
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(influx.count("mon", "tls_verified"), 30);
}

#[test]
#[ignore = "run by https_with_verification_trusts_the_ca_named_by_ssl_cert_file in a child process"]
fn https_child_verified_write() {
    let Ok(port) = std::env::var("MP_TEST_HTTPS_PORT") else {
        eprintln!("not started by its parent test; nothing to do");
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (w, _) = writer(InfluxConfig {
            port: port.parse().expect("port"),
            ssl: true,
            verify_ssl: true,
            retry_initial_ms: 20,
            retry_max_seconds: 0.5,
            ..InfluxConfig::default()
        });
        let b = batch(lines("tls_verified", 30));
        let r = tokio::time::timeout(Duration::from_secs(20), w.write("mon", &b))
            .await
            .expect("a verified write finishes")
            .expect("written");
        assert_eq!(r.written, 30);
    });
}
