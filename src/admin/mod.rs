//! The admin endpoint: `/metrics` (Prometheus text), `/healthz`, `/ready`.
//!
//! Runs on the async runtime beside the writes, off the per-message path: it only reads the
//! counters. Must never block or fail the data plane (a bind failure is logged, not fatal).
//!
//! Here: the server, its routes, `/healthz` and `/ready`'s readiness; `metrics` renders
//! `/metrics`, `procfs` reads the process's and its threads' CPU time.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::pipeline::PipelineStats;
use crate::sink::WriterStats;

mod metrics;
mod procfs;

pub use metrics::render;

/// One destination's counters: its consumers' and its writer's.
pub struct DestinationStats {
    /// `influxdb` for `[influxdb]`, else the `[destinations.NAME]` name.
    pub name: String,
    pub pipeline: Arc<PipelineStats>,
    pub writer: Arc<WriterStats>,
    /// Its `max_hourly_series_per_tenant`'s counts, when set.
    pub series: Option<Arc<crate::pipeline::series::SeriesLimit>>,
}

/// What the endpoint reports on.
pub struct AdminState {
    /// `[influxdb]` first, then the other destinations.
    pub destinations: Vec<DestinationStats>,
    pub started: Instant,
    /// `/ready` fails once a message has waited longer than this uncommitted (`None`: never).
    pub ready_max_uncommitted: Option<std::time::Duration>,
    /// `/ready` fails once a partition has been unreadable longer than this (`None`: never).
    pub ready_max_unreadable: Option<std::time::Duration>,
    /// Each consumed topic's `retention.ms` as the broker reports it (absent: unknown or
    /// forever).
    pub topic_retention: Arc<crate::stats::Labelled<String>>,
}

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "admin endpoint: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<AdminState>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match req.uri().path() {
        "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4", render(&state)),
        "/healthz" => reply(
            StatusCode::OK,
            "application/json",
            format!(
                r#"{{"status":"ok","uptime_seconds":{:.1}}}"#,
                state.started.elapsed().as_secs_f64()
            ),
        ),
        "/ready" => {
            let (ready, body) = readiness(&state);
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, "application/json", body)
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}

/// Ready: partitions assigned, the latest InfluxDB write did not fail, no message has
/// waited uncommitted longer than the bound, and no partition has been unreadable longer than
/// its bound. Also the JSON detail, which names every unreadable partition.
fn readiness(state: &AdminState) -> (bool, String) {
    let ds = &state.destinations;
    let assigned: i64 = ds.iter().map(|d| d.pipeline.assigned.sum()).sum();
    let mut databases = Vec::new();
    let mut failing_destinations = Vec::new();
    for d in ds {
        let dbs = d.writer.failing_databases();
        if d.writer.failing.load(Ordering::Relaxed) || !dbs.is_empty() {
            failing_destinations.push(format!("\"{}\"", json_escape(&d.name)));
        }
        databases.extend(
            dbs.into_iter()
                .map(|f| format!("\"{}\"", json_escape(&f.db))),
        );
    }
    databases.sort();
    databases.dedup();
    let failing = !failing_destinations.is_empty();
    let oldest_ms = (ds.iter())
        .flat_map(|d| d.pipeline.oldest_uncommitted.snapshot())
        .map(|(_, ms)| ms)
        .max()
        .unwrap_or(0);
    let stuck = state
        .ready_max_uncommitted
        .is_some_and(|max| oldest_ms as u128 > max.as_millis());
    let unreadable: Vec<_> = ds
        .iter()
        .flat_map(|d| unreadable_seconds(&d.pipeline))
        .collect();
    let unreadable_too_long = state.ready_max_unreadable.is_some_and(|max| {
        unreadable
            .iter()
            .any(|(.., secs)| *secs > max.as_secs_f64())
    });
    let ready = assigned > 0 && !failing && !stuck && !unreadable_too_long;
    let partitions: Vec<String> = unreadable
        .iter()
        .map(|((topic, partition, cause), secs)| {
            format!(
                r#"{{"topic":"{}","partition":{partition},"cause":"{cause}","seconds":{secs:.1}}}"#,
                json_escape(topic)
            )
        })
        .collect();
    let body = format!(
        r#"{{"ready":{ready},"partitions_assigned":{assigned},"influxdb_failing":{failing},"failing_destinations":[{}],"failing_databases":[{}],"oldest_uncommitted_seconds":{:.1},"unreadable_partitions":[{}]}}"#,
        failing_destinations.join(","),
        databases.join(","),
        oldest_ms as f64 / 1000.0,
        partitions.join(",")
    );
    (ready, body)
}

/// Each unreadable partition with how long it has been unreadable, in seconds.
fn unreadable_seconds(p: &PipelineStats) -> Vec<((String, i32, &'static str), f64)> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    p.unreadable_since
        .snapshot()
        .into_iter()
        .map(|(k, since)| (k, (now_ms - since).max(0) as f64 / 1000.0))
        .collect()
}

/// A string as the inside of a JSON string literal.
fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An `AdminState` with nothing counted yet.
    pub(super) fn state(bound: Option<Duration>) -> AdminState {
        AdminState {
            destinations: vec![destination(crate::config::PRIMARY)],
            started: Instant::now(),
            ready_max_uncommitted: bound,
            ready_max_unreadable: Some(Duration::from_secs(60)),
            topic_retention: Arc::default(),
        }
    }

    /// A destination with nothing counted yet.
    pub(super) fn destination(name: &str) -> DestinationStats {
        DestinationStats {
            name: name.into(),
            pipeline: Arc::new(PipelineStats::default()),
            writer: Arc::new(WriterStats::default()),
            series: None,
        }
    }

    #[test]
    fn a_partition_unreadable_past_the_bound_makes_it_unready_and_is_named() {
        let s = state(None);
        s.destinations[0]
            .pipeline
            .assigned
            .set("metrics-0".into(), 4);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let key = ("metrics".to_string(), 3, "decompression");
        s.destinations[0]
            .pipeline
            .unreadable_since
            .set(key.clone(), now_ms - 30_000);
        let (ready, body) = readiness(&s);
        assert!(ready, "within the bound: {body}");
        assert!(
            body.contains(r#""unreadable_partitions":[{"topic":"metrics","partition":3,"cause":"decompression","seconds":30."#),
            "named while still within the bound: {body}"
        );
        s.destinations[0]
            .pipeline
            .unreadable_since
            .set(key.clone(), now_ms - 61_000);
        let (ready, body) = readiness(&s);
        assert!(!ready, "past the bound: {body}");
        assert!(body.contains(r#""partition":3"#), "{body}");
        let text = render(&s);
        assert!(
            text.contains(r#"monasca_persister_partition_unreadable_seconds{destination="influxdb",topic="metrics",partition="3",cause="decompression"} 61."#),
            "{text}"
        );
        s.destinations[0].pipeline.unreadable_since.remove(&key);
        assert!(readiness(&s).0, "readable again");
    }

    #[test]
    fn ready_needs_partitions_and_a_working_sink() {
        let s = state(None);
        assert!(!readiness(&s).0, "nothing assigned yet");
        s.destinations[0]
            .pipeline
            .assigned
            .set("metrics-0".into(), 4);
        assert!(readiness(&s).0);
        s.destinations[0]
            .writer
            .failing
            .store(true, Ordering::Relaxed);
        assert!(!readiness(&s).0, "InfluxDB failing");
    }

    #[test]
    fn a_message_waiting_uncommitted_past_the_bound_makes_it_unready() {
        let s = state(Some(Duration::from_secs(300)));
        s.destinations[0]
            .pipeline
            .assigned
            .set("metrics-0".into(), 4);
        s.destinations[0]
            .pipeline
            .oldest_uncommitted
            .set(("metrics".into(), 2), 300_000);
        assert!(readiness(&s).0, "at the bound: still ready");
        s.destinations[0]
            .pipeline
            .oldest_uncommitted
            .set(("metrics".into(), 2), 300_001);
        let (ready, body) = readiness(&s);
        assert!(!ready, "{body}");
        assert!(
            body.contains(r#""oldest_uncommitted_seconds":300.0"#),
            "{body}"
        );
        let never = state(None);
        never.destinations[0]
            .pipeline
            .assigned
            .set("metrics-0".into(), 4);
        never.destinations[0]
            .pipeline
            .oldest_uncommitted
            .set(("metrics".into(), 2), i64::MAX);
        assert!(readiness(&never).0, "no bound: never unready for it");
    }

    #[test]
    fn a_failing_destination_makes_it_unready_and_is_named() {
        let mut s = state(None);
        s.destinations.push(destination("b"));
        s.destinations[0]
            .pipeline
            .assigned
            .set("metrics-0".into(), 4);
        s.destinations[1]
            .pipeline
            .assigned
            .set("metrics-1".into(), 4);
        assert!(readiness(&s).0);
        s.destinations[1]
            .writer
            .failing
            .store(true, Ordering::Relaxed);
        let (ready, body) = readiness(&s);
        assert!(!ready, "{body}");
        assert!(body.contains(r#""failing_destinations":["b"]"#), "{body}");
        let text = render(&s);
        assert!(
            text.contains("monasca_persister_influxdb_failing{destination=\"b\"} 1\n")
                && text
                    .contains("monasca_persister_influxdb_failing{destination=\"influxdb\"} 0\n"),
            "{text}"
        );
    }
}
