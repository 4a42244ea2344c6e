//! Shared test harness: a real InfluxDB 1.x started in a temp dir on free ports, a minimal
//! HTTP/1.0 client for it, and the message generators the property tests and the InfluxDB
//! round-trip test share.

#![allow(dead_code)]

pub mod strategy;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "mp-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A throw-away `influxd` (InfluxDB 1.x). Killed and its data removed on drop.
pub struct Influx {
    child: Child,
    pub addr: String,
    _dir: TempDir,
}

impl Influx {
    /// Starts `influxd` with extra `INFLUXDB_*` environment settings and waits for `/ping`.
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let dir = TempDir::new("influx");
        let http = free_port();
        let rpc = free_port();
        let addr = format!("127.0.0.1:{http}");
        let mut cmd = Command::new("influxd");
        cmd.arg("run")
            .env("INFLUXDB_META_DIR", dir.0.join("meta"))
            .env("INFLUXDB_DATA_DIR", dir.0.join("data"))
            .env("INFLUXDB_DATA_WAL_DIR", dir.0.join("wal"))
            .env("INFLUXDB_BIND_ADDRESS", format!("127.0.0.1:{rpc}"))
            .env("INFLUXDB_HTTP_BIND_ADDRESS", &addr)
            .env("INFLUXDB_REPORTING_DISABLED", "true")
            .env("INFLUXDB_DATA_QUERY_LOG_ENABLED", "false")
            .env("INFLUXDB_HTTP_LOG_ENABLED", "false")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .expect("start influxd (install Debian's `influxdb` package)");
        let influx = Influx {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(influx.request("GET", "/ping", b""), Ok((204, _))) {
                return influx;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "influxd did not answer /ping on {} within 30 s",
            influx.addr
        );
    }

    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// One HTTP/1.0 request (so the server neither keeps the connection nor chunks the body).
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(&self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Length: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n",
            self.addr,
            body.len()
        );
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)?;
        let text = String::from_utf8_lossy(&resp);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// Runs an InfluxQL statement; panics unless it answers 200.
    pub fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let body = format!("db={}&epoch=ms&q={}", urlencode(db), urlencode(q));
        let (status, body) = self
            .request("POST", "/query", body.as_bytes())
            .expect("query");
        assert_eq!(status, 200, "query {q:?} failed: {body}");
        serde_json::from_str(&body).expect("query answers JSON")
    }

    /// Writes line protocol with ms precision; returns status and body.
    pub fn write(&self, db: &str, lines: &[u8]) -> (u16, String) {
        self.request(
            "POST",
            &format!("/write?db={}&precision=ms", urlencode(db)),
            lines,
        )
        .expect("write")
    }
}

impl Drop for Influx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
