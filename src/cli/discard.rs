//! `monasca-persister discard-sink`: a tiny write endpoint that counts points and drops them.
//!
//! For throughput measurements without InfluxDB as the bottleneck: accepts `/write` and
//! `/api/v2/write` (gzip too), counts lines, answers 204; `/ping` answers 204, `/query` answers
//! an empty success (so database creation works), `/stats` returns the counters as JSON.

use std::convert::Infallible;
use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the sink has seen.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub requests: AtomicU64,
    pub points: AtomicU64,
    /// Request body bytes as received (compressed size when gzip).
    pub bytes: AtomicU64,
    /// TCP connections accepted: constant under a pooled client.
    pub connections: AtomicU64,
    /// Fault injection for tests and benches: while non-zero, writes are answered with this
    /// status (and not counted).
    pub refuse_with: std::sync::atomic::AtomicU16,
    /// When set, every accepted write body is kept in `received`.
    pub record: std::sync::atomic::AtomicBool,
    pub received: std::sync::Mutex<Vec<Bytes>>,
}

impl SinkStats {
    pub fn json(&self) -> String {
        format!(
            r#"{{"requests":{},"points":{},"bytes":{},"connections":{}}}"#,
            self.requests.load(Ordering::Relaxed),
            self.points.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.connections.load(Ordering::Relaxed)
        )
    }
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    stats: Arc<SinkStats>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => r?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let stats = stats.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, stats.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

async fn handle(
    req: Request<Incoming>,
    stats: Arc<SinkStats>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let gzip = req
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(reply(StatusCode::BAD_REQUEST, e.to_string())),
    };
    Ok(match path.as_str() {
        "/write" | "/api/v2/write" => {
            let refuse = stats.refuse_with.load(Ordering::Relaxed);
            if refuse != 0 {
                let status =
                    StatusCode::from_u16(refuse).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                return Ok(reply(status, r#"{"error":"refused by discard sink"}"#));
            }
            stats.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            let plain = if gzip {
                let mut out = Vec::with_capacity(body.len() * 4);
                if let Err(e) = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out) {
                    return Ok(reply(
                        StatusCode::BAD_REQUEST,
                        format!("bad gzip body: {e}"),
                    ));
                }
                Bytes::from(out)
            } else {
                body
            };
            let lines = plain.iter().filter(|&&b| b == b'\n').count()
                + usize::from(plain.last().is_some_and(|&b| b != b'\n'));
            if stats.record.load(Ordering::Relaxed)
                && let Ok(mut r) = stats.received.lock()
            {
                r.push(plain.clone());
            }
            stats.requests.fetch_add(1, Ordering::Relaxed);
            stats.points.fetch_add(lines as u64, Ordering::Relaxed);
            reply(StatusCode::NO_CONTENT, Bytes::new())
        }
        "/ping" => reply(StatusCode::NO_CONTENT, Bytes::new()),
        "/query" => reply(StatusCode::OK, r#"{"results":[{"statement_id":0}]}"#),
        "/stats" => reply(StatusCode::OK, stats.json()),
        _ => reply(StatusCode::NOT_FOUND, "not found"),
    })
}

/// `discard-sink`'s command line: serves until SIGINT or SIGTERM, printing the counters
/// every `report_every` seconds (when they changed) and once at the end.
pub fn main(a: super::args::DiscardSinkArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    let (listen, report_every) = (a.listen, a.report_every);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("monasca-persister discard-sink: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let listener = match TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("monasca-persister discard-sink: cannot listen on {listen}: {e}");
                return ExitCode::from(1);
            }
        };
        println!(
            "discard sink listening on {}",
            listener.local_addr().unwrap_or(listen)
        );
        let stats = Arc::new(SinkStats::default());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, stats.clone(), shutdown.clone()));
        tokio::select! {
            _ = report(&stats, report_every) => {}
            _ = crate::daemon::start::stop_signal() => {}
        }
        shutdown.cancel();
        let _ = server.await;
        println!("{}", stats.json());
        ExitCode::SUCCESS
    })
}

/// Prints the counters every `every` seconds when they changed (never when `every` ≤ 0).
async fn report(stats: &SinkStats, every: f64) {
    if every <= 0.0 {
        return std::future::pending().await;
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_secs_f64(every));
    let mut last = String::new();
    loop {
        tick.tick().await;
        let now = stats.json();
        if now != last {
            println!("{now}");
            last = now;
        }
    }
}
