//! Kafka over TLS, end to end: the real binary, a real InfluxDB 1.6 and tansu behind stunnel.
//!
//! tansu 0.6 serves plain TCP only, so stunnel terminates TLS in front of it: tansu listens on
//! a plain port but advertises stunnel's TLS port in its metadata, so every client (the
//! daemon's consumers and dead-letter producer, and the test's own producer and readers) must
//! speak TLS after bootstrap. Topics are created through the plain port. The certificates come
//! from a throw-away CA made with the `openssl` command; a second CA signed nothing.
//! The tests run one at a time (they share the machine's two cores).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::kafka::Persister;
use common::{Influx, TempDir, free_port, make_certs, start_server};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};

use common::e2e::{metric, metric_points};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A throw-away CA (`ca.pem`), a server certificate for IP 127.0.0.1 only (`server.pem`,
/// `server.key`; no DNS name, so endpoint identification must match the IP SAN) signed by
/// it, and a second CA that signed nothing (`other-ca.pem`).
struct Certs(TempDir);

impl Certs {
    fn make() -> Self {
        let certs = TempDir::new("kafka-tls-certs");
        let d = &certs.0;
        make_certs(
            d,
            "IP:127.0.0.1",
            &[
                ("ca", "monasca-persister test CA"),
                ("other-ca", "monasca-persister unrelated CA"),
            ],
        );
        Certs(certs)
    }

    fn ca(&self) -> PathBuf {
        self.0.0.join("ca.pem")
    }

    fn other_ca(&self) -> PathBuf {
        self.0.0.join("other-ca.pem")
    }
}

/// True once a TLS handshake with `127.0.0.1:port` succeeds, the server's certificate
/// verified against `ca` for IP 127.0.0.1.
fn tls_handshake(port: u16, ca: &Path) -> bool {
    Command::new("openssl")
        .args(["s_client", "-brief", "-verify_return_error"])
        .args([
            "-verify_ip",
            "127.0.0.1",
            "-connect",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("-CAfile")
        .arg(ca)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// tansu on a plain port, advertising stunnel's TLS port; stunnel terminating TLS there.
/// Both killed (and their files removed) on drop.
struct TlsKafka {
    stunnel: Child,
    tansu: Child,
    /// tansu's own (plain) port: only for creating topics.
    plain: u16,
    /// stunnel's TLS port, the one tansu advertises.
    pub tls: u16,
    pub certs: Certs,
    _dir: TempDir,
}

impl TlsKafka {
    fn start() -> Self {
        let certs = Certs::make();
        let dir = TempDir::new("kafka-tls");
        let mut last = String::new();
        for _ in 0..5 {
            // tansu must advertise the TLS port before stunnel binds it.
            let tls = free_port();
            let (mut tansu, plain) = start_server(
                "tansu",
                Duration::from_secs(30),
                |port| {
                    let log = std::fs::File::create(dir.0.join("tansu.log")).unwrap();
                    Command::new("tansu")
                        .args(["broker", "--listener-url"])
                        .arg(format!("tcp://127.0.0.1:{port}"))
                        .arg("--advertised-listener-url")
                        .arg(format!("tcp://127.0.0.1:{tls}"))
                        .args(["--storage-engine", "sqlite://tansu.db", "--silent"])
                        .current_dir(&dir.0)
                        .stdout(Stdio::null())
                        .stderr(log)
                        .spawn()
                        .expect("start tansu (cargo install tansu --version 0.6.0 --locked --features libsql)")
                },
                |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            );
            match Self::stunnel(&dir.0, &certs, tls, plain) {
                Ok(stunnel) => {
                    return TlsKafka {
                        stunnel,
                        tansu,
                        plain,
                        tls,
                        certs,
                        _dir: dir,
                    };
                }
                Err(e) => {
                    last = e;
                    let _ = tansu.kill();
                    let _ = tansu.wait();
                }
            }
        }
        panic!("could not start stunnel in front of tansu: {last}");
    }

    /// Starts stunnel accepting TLS on `tls` and forwarding to `plain`; waits until a
    /// verified handshake succeeds. Err (with its log) if it exits first or never answers.
    fn stunnel(dir: &Path, certs: &Certs, tls: u16, plain: u16) -> Result<Child, String> {
        let conf = dir.join("stunnel.conf");
        let log_path = dir.join("stunnel.log");
        std::fs::write(
            &conf,
            format!(
                "foreground = yes\npid =\nsyslog = no\ndebug = notice\n\n[kafka]\naccept = 127.0.0.1:{tls}\nconnect = 127.0.0.1:{plain}\ncert = {}\nkey = {}\n",
                certs.0.0.join("server.pem").display(),
                certs.0.0.join("server.key").display(),
            ),
        )
        .expect("write stunnel.conf");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new("stunnel")
            .arg(&conf)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start stunnel (install Debian's `stunnel4` package)");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!(
                    "stunnel exited with {status} on port {tls}:\n{log}"
                ));
            }
            if tls_handshake(tls, &certs.ca()) && matches!(child.try_wait(), Ok(None)) {
                return Ok(child);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "stunnel not answering TLS on port {tls} within 30 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The bootstrap address clients use: the TLS port.
    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.tls)
    }

    fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new("tansu")
            .args(["topic", "create", name, "--partitions"])
            .arg(partitions.to_string())
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.plain)])
            .stdout(Stdio::null())
            .status()
            .expect("tansu topic create");
        assert!(status.success(), "creating topic {name}");
    }

    /// A client configuration for the TLS port, trusting the CA that signed the server's
    /// certificate and checking that the certificate names 127.0.0.1.
    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap())
            .set("security.protocol", "ssl")
            .set("ssl.ca.location", self.certs.ca().to_string_lossy())
            .set("ssl.endpoint.identification.algorithm", "https");
        c
    }

    /// Produces every payload over TLS (round-robin over partitions) and waits for
    /// acknowledgement.
    fn produce<'a>(
        &self,
        topic: &str,
        partitions: i32,
        payloads: impl IntoIterator<Item = &'a [u8]>,
    ) {
        common::kafka::produce_with(self.client(), topic, partitions, payloads);
    }

    /// Sum of the committed offsets of `group` on `topic` (partitions with none count 0),
    /// asked over TLS; `Err` when the answer could not be read. For polling.
    fn committed(
        &self,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> Result<i64, common::kafka::CommittedError> {
        common::kafka::committed_sum(self.client().set("group.id", group), topic, partitions)
    }

    /// As `committed`, for a final assertion: panics when the read keeps failing.
    fn committed_now(&self, group: &str, topic: &str, partitions: i32) -> i64 {
        common::kafka::committed_read(self.client().set("group.id", group), topic, partitions)
    }
}

impl Drop for TlsKafka {
    fn drop(&mut self) {
        for c in [&mut self.stunnel, &mut self.tansu] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn log_tail(p: &Persister) -> String {
    let log = p.log_text();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

fn wait_until(what: &str, limit: Duration, p: &Persister, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!(
        "timed out waiting for {what}; persister log tail:\n{}",
        log_tail(p)
    );
}

/// The persister's TOML config: Kafka over TLS trusting `ca`, everything else as in
/// `tests/e2e.rs`.
fn toml_config(
    dir: &Path,
    kafka: &TlsKafka,
    influx: &Influx,
    ca: &Path,
    kafka_extra: &str,
) -> PathBuf {
    common::e2e::persister_toml(
        dir,
        &kafka.bootstrap(),
        influx.port,
        &format!(
            "{kafka_extra}\n\n[kafka.properties]\n\"security.protocol\" = \"ssl\"\n\
             \"ssl.ca.location\" = \"{}\"\n\"ssl.endpoint.identification.algorithm\" = \"https\"",
            ca.display()
        ),
        "admin_listen = \"\"",
    )
}

const N: usize = 5000;

#[test]
fn metrics_over_tls_with_a_verified_ca_land_commit_and_dead_letter() {
    let _g = serial();
    let influx = Influx::start();
    let kafka = TlsKafka::start();
    kafka.create_topic("metrics", 4);
    kafka.create_topic("alarm-state-transitions", 1);
    kafka.create_topic("dlq", 1);
    let dir = TempDir::new("kafka-tls-e2e");
    let config = toml_config(
        &dir.0,
        &kafka,
        &influx,
        &kafka.certs.ca(),
        "brokers_down_exit_seconds = 120\ndead_letter_topic = \"dlq\"",
    );
    let mut p = Persister::start(&config);

    let mut payloads: Vec<Vec<u8>> = (0..N).map(metric).collect();
    payloads.push(b"{not json".to_vec());
    kafka.produce("metrics", 4, payloads.iter().map(Vec::as_slice));

    wait_until("every metric point", Duration::from_secs(120), &p, || {
        metric_points(&influx) == N as i64
    });
    wait_until("everything committed", Duration::from_secs(90), &p, || {
        kafka
            .committed("1_metrics", "metrics", 4)
            .is_ok_and(|n| n == N as i64 + 1)
    });

    // The dead letter, read back over TLS.
    let c: BaseConsumer = kafka
        .client()
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&["dlq"]).unwrap();
    let mut letters = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while letters.is_empty() && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            let reason = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "reason"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned());
            letters.push((m.payload().unwrap_or_default().to_vec(), reason));
        }
    }
    assert_eq!(
        letters,
        vec![(b"{not json".to_vec(), Some("invalid_json".to_owned()))],
        "the poison message is dead-lettered over TLS; log:\n{}",
        log_tail(&p)
    );

    p.signal("-TERM");
    let status = p
        .wait(Duration::from_secs(30))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{}", log_tail(&p));
    let log = p.log_text();
    assert!(
        !log.contains("brokers are down"),
        "no outage over a working TLS link:\n{log}"
    );
}

#[test]
fn an_untrusted_broker_certificate_is_reported_once_and_exits_one() {
    let _g = serial();
    let influx = Influx::start();
    let kafka = TlsKafka::start();
    kafka.create_topic("metrics", 4);
    kafka.create_topic("alarm-state-transitions", 1);
    // Data waiting, so that "nothing consumed" means something.
    let payloads: Vec<Vec<u8>> = (0..100).map(metric).collect();
    kafka.produce("metrics", 4, payloads.iter().map(Vec::as_slice));
    let dir = TempDir::new("kafka-tls-e2e");
    let config = toml_config(
        &dir.0,
        &kafka,
        &influx,
        &kafka.certs.other_ca(),
        "brokers_down_exit_seconds = 5",
    );
    let mut p = Persister::start(&config);
    let status = p
        .wait(Duration::from_secs(90))
        .unwrap_or_else(|| panic!("still running; log:\n{}", log_tail(&p)));
    let log = p.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("unreachable too long"), "{log}");
    // Each consumer (one per pipeline, each its own Kafka client) tells once.
    for consumer in ["metrics-0", "alarms-0"] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(consumer)).collect();
        let down = lines
            .iter()
            .filter(|l| l.contains("all Kafka brokers are down"))
            .count();
        assert_eq!(down, 1, "{consumer}: outage logged once:\n{log}");
        // Why: OpenSSL's verdict, as librdkafka reports it; once, although librdkafka
        // fails again on every reconnect, several times a second.
        let why: Vec<&&str> = lines
            .iter()
            .filter(|l| {
                (l.contains(" WARN ") || l.contains(" ERROR "))
                    && l.contains("certificate verify failed")
            })
            .collect();
        assert_eq!(
            why.len(),
            1,
            "{consumer}: the TLS failure is named once:\n{log}"
        );
        // librdkafka words it either "SSL handshake failed: error:0A000086:SSL
        // routines::certificate verify failed: broker certificate could not be verified, …"
        // or just "error:0A000086:SSL routines::certificate verify failed"; both name the
        // broker.
        let broker = format!("ssl://127.0.0.1:{}/bootstrap", kafka.tls);
        assert!(why[0].contains(&broker), "{consumer}: {}", why[0]);
    }
    assert_eq!(metric_points(&influx), 0, "nothing written");
    assert_eq!(
        kafka.committed_now("1_metrics", "metrics", 4),
        0,
        "nothing committed"
    );
}
