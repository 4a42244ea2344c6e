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

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new("tansu")
            .args([
                "topic",
                "create",
                name,
                "--partitions",
                &partitions.to_string(),
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

    /// Sum of the committed offsets of `group` on `topic` (0 where none).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> i64 {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", group)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        match c.committed_offsets(tpl, Duration::from_secs(10)) {
            Ok(got) => got
                .elements()
                .iter()
                .map(|e| {
                    if let Offset::Offset(o) = e.offset() {
                        o
                    } else {
                        0
                    }
                })
                .sum(),
            Err(_) => 0,
        }
    }
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

    /// Resident memory in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
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

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
