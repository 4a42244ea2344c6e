//! Shared test harness: a real InfluxDB 1.x started in a temp dir on free ports, a minimal
//! HTTP/1.0 client for it, and the message generators the property tests and the InfluxDB
//! round-trip test share.

#![allow(dead_code)]

pub mod e2e;
pub mod kafka;
pub mod strategy;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The Python persister's reference virtualenv's interpreter (`scripts/python-reference`
/// creates the virtualenv on first use and prints the path), looked up once per test binary.
pub fn python_reference() -> &'static str {
    static PY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PY.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/python-reference");
        let out = Command::new(script)
            .output()
            .expect("run scripts/python-reference");
        assert!(
            out.status.success(),
            "scripts/python-reference failed (install-deps creates the virtualenv): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
}

/// Runs `openssl` in `dir`; panics with its error output when it fails.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (Debian's `openssl` package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Throw-away certificates in `dir`: a CA per `(name, common name)` of `cas` (`<name>.pem`,
/// `<name>.key`), and a server certificate (`server.pem`, `server.key`) for `san` (e.g.
/// `IP:127.0.0.1`) signed by the first of them.
pub fn make_certs(dir: &std::path::Path, san: &str, cas: &[(&str, &str)]) {
    std::fs::write(dir.join("san.ext"), format!("subjectAltName={san}\n")).expect("write san.ext");
    for (name, cn) in cas {
        let (key, pem, subj) = (
            format!("{name}.key"),
            format!("{name}.pem"),
            format!("/CN={cn}"),
        );
        openssl(
            dir,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subj,
                "-keyout", &key, "-out", &pem,
            ],
        );
    }
    let (ca_pem, ca_key) = (format!("{}.pem", cas[0].0), format!("{}.key", cas[0].0));
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// One row of an InfluxDB query answer (`SELECT * …`): measurement, time, and its non-null columns.
#[derive(Debug)]
pub struct Row {
    pub measurement: String,
    pub time: i64,
    pub columns: BTreeMap<String, Value>,
}

pub fn rows(answer: &Value) -> Vec<Row> {
    let mut out = Vec::new();
    for series in answer["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = series["name"].as_str().expect("series name").to_owned();
        let cols: Vec<&str> = series["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c.as_str().expect("column name"))
            .collect();
        for values in series["values"].as_array().expect("values") {
            let mut columns = BTreeMap::new();
            let mut time = None;
            for (c, v) in cols.iter().zip(values.as_array().expect("row")) {
                if *c == "time" {
                    time = v.as_i64();
                } else if !v.is_null() {
                    columns.insert((*c).to_owned(), v.clone());
                }
            }
            out.push(Row {
                measurement: name.clone(),
                time: time.expect("time column"),
                columns,
            });
        }
    }
    out
}

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

/// A port for a server a test starts, chosen so that nothing else takes it before the server
/// binds it: outside the kernel's ephemeral range (so no outgoing connection, ours or a
/// child's, is ever given it), never handed out twice by this process, and free right now.
/// Servers that can still lose it (another process binding the same port) exit at start-up;
/// the starters below then try again with a new port.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    // Below Linux's default ip_local_port_range (32768-60999) and above the well-known ports.
    const LOW: u32 = 20_000;
    const HIGH: u32 = 32_000;
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    // A per-process start point, so test binaries that run one after another do not all try
    // the same ports first.
    let mut x = std::process::id().wrapping_mul(2_654_435_761) ^ given.len() as u32;
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let port = (LOW + x % (HIGH - LOW)) as u16;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port in {LOW}..{HIGH}");
}

/// Spawns a server with `spawn(port)` on a [`free_port`] and waits until `ready(port)`; if it
/// exits first (its port taken meanwhile), tries again on another port.
pub fn start_server(
    what: &str,
    limit: Duration,
    mut spawn: impl FnMut(u16) -> Child,
    ready: impl Fn(u16) -> bool,
) -> (Child, u16) {
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        let mut child = spawn(port);
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                last = format!("{what} exited with {status} on port {port}");
                break;
            }
            // Ready, and still ours: a server that lost the port exits soon after binding fails.
            if ready(port) && matches!(child.try_wait(), Ok(None)) {
                return (child, port);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                last = format!("{what} not ready on port {port} within {limit:?}");
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("could not start {what}: {last}");
}

/// A throw-away `influxd` (InfluxDB 1.x). Killed and its data removed on drop; can be stopped
/// and started again on the same data and ports.
pub struct Influx {
    child: Option<Child>,
    pub addr: String,
    pub port: u16,
    rpc: u16,
    env: Vec<(String, String)>,
    dir: TempDir,
    /// Credentials `query` sends, once auth is on.
    pub auth: Option<(String, String)>,
    /// With HTTPS: the CA that signed the server's certificate (the harness itself talks to
    /// the server through `curl`, trusting it).
    pub ca: Option<PathBuf>,
    /// Where the certificates live (removed on drop).
    certs: Option<TempDir>,
}

impl Influx {
    /// Starts `influxd` with extra `INFLUXDB_*` environment settings and waits for `/ping`.
    /// Picks new ports and tries again if the server exits at once (a port taken meanwhile).
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        Self::start_inner(env, None)
    }

    fn start_inner(env: &[(&str, &str)], certs: Option<TempDir>) -> Self {
        let ca = certs.as_ref().map(|c| c.0.join("ca.pem"));
        let mut influx = Influx {
            child: None,
            addr: String::new(),
            port: 0,
            rpc: 0,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            dir: TempDir::new("influx"),
            auth: None,
            ca,
            certs,
        };
        for _ in 0..5 {
            influx.port = free_port();
            influx.rpc = free_port();
            influx.addr = format!("127.0.0.1:{}", influx.port);
            if influx.try_start() {
                return influx;
            }
        }
        panic!("influxd would not start: {}", influx.log_tail());
    }

    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts `influxd` serving HTTPS only, with a certificate for `localhost` and
    /// `127.0.0.1` signed by a throw-away CA (`self.ca`), made with the `openssl` command.
    pub fn start_tls() -> Self {
        let certs = TempDir::new("influx-tls");
        let d = &certs.0;
        make_certs(
            d,
            "DNS:localhost,IP:127.0.0.1",
            &[("ca", "monasca-persister test CA")],
        );
        let cert = d.join("server.pem").to_string_lossy().into_owned();
        let key = d.join("server.key").to_string_lossy().into_owned();
        Self::start_inner(
            &[
                ("INFLUXDB_HTTP_HTTPS_ENABLED", "true"),
                ("INFLUXDB_HTTP_HTTPS_CERTIFICATE", &cert),
                ("INFLUXDB_HTTP_HTTPS_PRIVATE_KEY", &key),
            ],
            Some(certs),
        )
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.0.join("influxd.log")).unwrap_or_default();
        log.lines().rev().take(15).collect::<Vec<_>>().join("\n")
    }

    /// Kills the server (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same data and ports and waits until it answers.
    pub fn restart(&mut self) {
        for _ in 0..5 {
            if self.try_start() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("influxd would not restart: {}", self.log_tail());
    }

    /// Spawns `influxd`; true once it answers `/ping`, false if it exits first.
    fn try_start(&mut self) -> bool {
        self.stop();
        let dir = &self.dir.0;
        let log = std::fs::File::create(dir.join("influxd.log")).expect("influxd log file");
        let mut cmd = Command::new("influxd");
        cmd.arg("run")
            .env("INFLUXDB_META_DIR", dir.join("meta"))
            .env("INFLUXDB_DATA_DIR", dir.join("data"))
            .env("INFLUXDB_DATA_WAL_DIR", dir.join("wal"))
            .env("INFLUXDB_BIND_ADDRESS", format!("127.0.0.1:{}", self.rpc))
            .env("INFLUXDB_HTTP_BIND_ADDRESS", &self.addr)
            .env("INFLUXDB_REPORTING_DISABLED", "true")
            .env("INFLUXDB_DATA_QUERY_LOG_ENABLED", "false")
            .env("INFLUXDB_HTTP_LOG_ENABLED", "false")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .expect("start influxd (install Debian's `influxdb` package)");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            // Answering, and still ours (one that lost its port exits right after).
            if matches!(self.request("GET", "/ping", b""), Ok((204, _)))
                && matches!(child.try_wait(), Ok(None))
            {
                self.child = Some(child);
                return true;
            }
            if matches!(child.try_wait(), Ok(Some(_))) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
        match &self.ca {
            None => http_request(&self.addr, method, path, body),
            Some(ca) => curl_request(ca, &format!("https://{}{path}", self.addr), method, body),
        }
    }

    /// Runs an InfluxQL statement; panics unless it answers 200.
    pub fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let body = format!("db={}&epoch=ms&q={}", urlencode(db), urlencode(q));
        // 1.6 reads credentials from the URL, not the form body.
        let path = match &self.auth {
            Some((u, p)) => format!("/query?u={}&p={}", urlencode(u), urlencode(p)),
            None => "/query".to_owned(),
        };
        let (status, body) = self.request("POST", &path, body.as_bytes()).expect("query");
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

impl Influx {
    /// `SELECT count(*)` of one measurement in `db`: 0 only when InfluxDB answered, for a
    /// database that exists, that the measurement holds nothing; panics on any other answer.
    pub fn count(&self, db: &str, measurement: &str) -> i64 {
        let q = format!("SELECT count(*) FROM \"{measurement}\"");
        self.points(db, &q)
            .unwrap_or_else(|e| panic!("counting {db}.{measurement}: {e:?}"))
    }

    /// Runs a `SELECT count(…)` statement: the sum over the series it answers of each series'
    /// largest count column (0 when the answer has no series: nothing matched).
    pub fn points(&self, db: &str, q: &str) -> Result<i64, CountError> {
        counted(&self.query(db, q))
    }

    /// InfluxDB with authentication on, three tenant databases (`mon_tenant-0` to `-2`), an
    /// admin the harness queries as, and a user `persister` (password `w-only`) that may
    /// write to `mon_tenant-0` and `mon_tenant-1` but not to `mon_tenant-2`.
    pub fn start_refusing_tenant_2() -> Self {
        let mut influx = Influx::start_with(&[("INFLUXDB_HTTP_AUTH_ENABLED", "true")]);
        influx.query(
            "",
            "CREATE USER admin WITH PASSWORD 's3cret' WITH ALL PRIVILEGES",
        );
        influx.auth = Some(("admin".into(), "s3cret".into()));
        for t in 0..3 {
            influx.query("", &format!("CREATE DATABASE \"mon_tenant-{t}\""));
        }
        influx.query("", "CREATE USER persister WITH PASSWORD 'w-only'");
        for t in 0..2 {
            influx.query(
                "",
                &format!("GRANT WRITE ON \"mon_tenant-{t}\" TO persister"),
            );
        }
        influx
    }

    /// Points of `metric` messages of tenant `t` in its database `mon_tenant-{t}`; panics
    /// when they cannot be counted.
    pub fn tenant_points(&self, t: usize) -> i64 {
        let db = format!("mon_tenant-{t}");
        self.points(&db, r#"SELECT count(value) FROM "e2e.metric""#)
            .unwrap_or_else(|e| panic!("points in {db}: {e:?}"))
    }

    /// As [`Influx::points`], reading a database that does not exist (yet) as 0: for
    /// databases the persister creates at its first write.
    pub fn points_or_no_database(&self, db: &str, q: &str) -> i64 {
        match self.points(db, q) {
            Ok(n) => n,
            Err(CountError::NoDatabase(_)) => 0,
            Err(e) => panic!("{q} in {db}: {e:?}"),
        }
    }
}

/// Why a count query gave no count.
#[derive(Debug)]
pub enum CountError {
    /// InfluxDB answered that the database does not exist.
    NoDatabase(String),
    /// Any other error in the answer, or an answer not shaped like a count.
    Answer(String),
}

/// The count in a `SELECT count(…)` answer: see [`Influx::points`].
pub fn counted(answer: &Value) -> Result<i64, CountError> {
    let result = &answer["results"][0];
    if !result.is_object() {
        return Err(CountError::Answer(format!("no result: {answer}")));
    }
    if let Some(e) = result.get("error") {
        let e = e.as_str().unwrap_or_default().to_owned();
        return Err(if e.starts_with("database not found") {
            CountError::NoDatabase(e)
        } else {
            CountError::Answer(e)
        });
    }
    let Some(series) = result.get("series") else {
        return Ok(0);
    };
    let bad = || CountError::Answer(format!("not a count: {answer}"));
    let mut total = 0;
    for s in series.as_array().ok_or_else(bad)? {
        let row = s["values"][0].as_array().ok_or_else(bad)?;
        let counts = row
            .get(1..)
            .ok_or_else(bad)?
            .iter()
            // count(*) answers null for a field no point of the series has.
            .filter(|c| !c.is_null())
            .map(|c| c.as_i64().ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()?;
        total += counts.into_iter().max().ok_or_else(bad)?;
    }
    Ok(total)
}

impl Drop for Influx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throw-away VictoriaMetrics (Debian's `victoria-metrics`), killed on drop.
pub struct Victoria {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl Victoria {
    pub fn start() -> Self {
        let dir = TempDir::new("victoria");
        let (child, port) = start_server(
            "victoria-metrics (install Debian's `victoria-metrics` package)",
            Duration::from_secs(30),
            |port| {
                Command::new("victoria-metrics")
                    .arg(format!("-storageDataPath={}", dir.0.display()))
                    .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                    .arg("-loggerLevel=ERROR")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start victoria-metrics (install Debian's `victoria-metrics` package)")
            },
            |port| {
                matches!(
                    http_request(&format!("127.0.0.1:{port}"), "GET", "/health", b""),
                    Ok((200, _))
                )
            },
        );
        Victoria {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_request(&format!("127.0.0.1:{}", self.port), "GET", path, b"")
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 request (so the server neither keeps the connection nor chunks the body).
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n",
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
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("no HTTP status line from {addr}: {text:?}"),
            )
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// One HTTPS request through `curl`, trusting `ca`: (status, body); `Err` when curl got no
/// answer (it prints status 000 then).
fn curl_request(
    ca: &std::path::Path,
    url: &str,
    method: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut child = Command::new("curl")
        .args(["-s", "--max-time", "60", "--cacert"])
        .arg(ca)
        .args([
            "-X",
            method,
            "--data-binary",
            "@-",
            "-w",
            "\n%{http_code}",
            url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("curl stdin"))?
        .write_all(body)?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    match code.trim().parse() {
        Ok(code) if code != 0 => Ok((code, body.to_owned())),
        _ => Err(std::io::Error::other(format!(
            "curl got no answer from {url} ({}): {text:?}",
            out.status
        ))),
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
