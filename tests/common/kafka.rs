//! A real Kafka-protocol broker for end-to-end tests (tansu 0.6, sqlite storage, in a temp
//! dir on a free port), a producer into it, and the persister binary as a child process.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{TempDir, start_server};

pub struct Tansu {
    child: Child,
    pub port: u16,
    pub dir: TempDir,
}

impl Tansu {
    pub fn start() -> Self {
        let dir = TempDir::new("tansu");
        let (child, port) = start_server(
            "tansu",
            Duration::from_secs(30),
            |port| {
                let url = format!("tcp://127.0.0.1:{port}");
                let log = std::fs::File::create(dir.0.join("tansu.log")).unwrap();
                Command::new("tansu")
                    .args([
                        "broker",
                        "--listener-url",
                        &url,
                        "--advertised-listener-url",
                        &url,
                    ])
                    .args(["--storage-engine", "sqlite://tansu.db", "--silent"])
                    .current_dir(&dir.0)
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("start tansu (cargo install tansu --version 0.6.0 --locked --features libsql)")
            },
            |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        Tansu { child, port, dir }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates topic `name` with `partitions` partitions and Kafka's default retention set
    /// explicitly (7 days): tansu reports a topic's `retention.ms` only when it was given,
    /// where Kafka reports its default.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new("tansu")
            .args([
                "topic",
                "create",
                name,
                "--partitions",
                &partitions.to_string(),
                "--config",
                "retention.ms=604800000",
            ])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .status()
            .expect("tansu topic create");
        assert!(status.success(), "creating topic {name}");
    }

    /// Produces every payload (round-robin over partitions) and waits for acknowledgement.
    pub fn produce<'a>(
        &self,
        topic: &str,
        partitions: i32,
        payloads: impl IntoIterator<Item = &'a [u8]>,
    ) {
        produce_to(&self.bootstrap(), topic, partitions, payloads)
    }

    /// Sum of the committed offsets of `group` on `topic` (partitions with no commit count
    /// 0); `Err` when the broker's answer could not be read. For polling.
    pub fn committed(
        &self,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> Result<i64, CommittedError> {
        committed_sum(&self.client(group), topic, partitions)
    }

    /// As [`Tansu::committed`], for a final assertion: a failed read is tried again (a
    /// loaded machine can miss the 10 s answer limit), and panics if it keeps failing.
    pub fn committed_now(&self, group: &str, topic: &str, partitions: i32) -> i64 {
        committed_read(&self.client(group), topic, partitions)
    }

    fn client(&self, group: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap())
            .set("group.id", group);
        c
    }
}

/// Why committed offsets could not be read.
#[derive(Debug)]
pub enum CommittedError {
    /// The client could not be made, or the broker did not answer in time.
    Kafka(rdkafka::error::KafkaError),
    /// A partition's answer is neither an offset nor "nothing committed".
    Unexpected(i32, Offset),
}

/// Sum of the committed offsets of the group `config` names on `topic`'s partitions
/// `0..partitions`: a partition with nothing committed counts 0 (the broker said so); every
/// other failure is an error.
pub fn committed_sum(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
) -> Result<i64, CommittedError> {
    let c: BaseConsumer = config.create().map_err(CommittedError::Kafka)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .map_err(CommittedError::Kafka)?;
    let mut sum = 0;
    for e in got.elements() {
        if let Err(err) = e.error() {
            return Err(CommittedError::Kafka(err));
        }
        match e.offset() {
            Offset::Offset(o) => sum += o,
            Offset::Invalid => {}
            other => return Err(CommittedError::Unexpected(e.partition(), other)),
        }
    }
    Ok(sum)
}

/// [`committed_sum`] for a final assertion: up to three reads; panics with the last error
/// when none succeeds.
pub fn committed_read(config: &ClientConfig, topic: &str, partitions: i32) -> i64 {
    let mut last = None;
    for _ in 0..3 {
        match committed_sum(config, topic, partitions) {
            Ok(n) => return n,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("could not read the committed offsets of {topic}: {last:?}");
}

/// Produces every payload to `topic` at `bootstrap` (round-robin over partitions) and waits
/// for acknowledgement.
pub fn produce_to<'a>(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    payloads: impl IntoIterator<Item = &'a [u8]>,
) {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("queue.buffering.max.messages", "200000");
    produce_with(c, topic, partitions, payloads);
}

/// As [`produce_to`], with the client configured by `config` (TLS, say).
pub fn produce_with<'a>(
    mut config: ClientConfig,
    topic: &str,
    partitions: i32,
    payloads: impl IntoIterator<Item = &'a [u8]>,
) {
    let p: BaseProducer = config.set("linger.ms", "20").create().expect("producer");
    for (i, payload) in payloads.into_iter().enumerate() {
        send(
            &p,
            BaseRecord::to(topic)
                .payload(payload)
                .partition(i as i32 % partitions),
        );
    }
    p.flush(Duration::from_secs(60)).expect("all produced");
}

/// Queues `rec`, waiting for room in the producer's queue while it is full.
pub fn send<'a>(p: &BaseProducer, mut rec: BaseRecord<'a, (), [u8]>) {
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((_, r)) => {
                rec = r;
                p.poll(Duration::from_millis(5));
            }
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The persister binary running a config file, its output in `<dir>/persister.log`.
pub struct Persister {
    pub child: Child,
    pub log: PathBuf,
}

impl Persister {
    pub fn start(config: &std::path::Path) -> Self {
        Self::start_logging(config, "info")
    }

    /// As `start`, with `RUST_LOG` set to `filter`.
    pub fn start_logging(config: &std::path::Path, filter: &str) -> Self {
        let log = config.with_file_name("persister.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_monasca-persister"))
            .arg("--config-file")
            .arg(config)
            .env("RUST_LOG", filter)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start monasca-persister");
        Persister { child, log }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for exit up to `limit`; `None` if still running.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Resident memory in KiB (VmRSS); panics when it cannot be read (the process is gone).
    pub fn rss_kib(&self) -> u64 {
        let path = format!("/proc/{}/status", self.child.id());
        let s = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in {path}:\n{s}"))
    }

    /// The admin endpoint's port, read from the "admin endpoint listening" log line (start the
    /// daemon with `admin_listen = "127.0.0.1:0"` so the kernel picks a port no one holds).
    pub fn admin_port(&self) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let port = self
                .log_text()
                .lines()
                .find(|l| l.contains("admin endpoint listening"))
                .and_then(|l| l.split("address=").nth(1))
                .and_then(|a| a.split_whitespace().next())
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok());
            if let Some(port) = port {
                return port;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no admin endpoint in the log:\n{}", self.log_text());
    }

    /// The log so far; panics when it cannot be read (a check on what the log does not hold
    /// must not pass on a failed read).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| panic!("{}: {e}", self.log.display()))
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `n` messages from `topic` from its start (up to a minute), as a dead-letter reader
/// does: each payload with its headers.
#[allow(dead_code)]
pub fn read_letters(
    bootstrap: &str,
    topic: &str,
    n: usize,
) -> Vec<(Vec<u8>, std::collections::BTreeMap<String, String>)> {
    use rdkafka::message::{Headers, Message};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("dead-letter reader");
    c.subscribe(&[topic])
        .expect("subscribe to the dead-letter topic");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            let headers = (m.headers().into_iter())
                .flat_map(|h| h.iter())
                .map(|h| {
                    let v = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                    (h.key.to_owned(), v.into_owned())
                })
                .collect();
            out.push((m.payload().unwrap_or_default().to_vec(), headers));
        }
    }
    out
}
