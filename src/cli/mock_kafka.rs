//! `mock-kafka`: librdkafka's in-memory mock cluster in a process of its own, as a Kafka
//! broker that is never the bottleneck (benches) and that keeps up with any dead-letter storm.
//! Prints `bootstrap=<host:port,…>` once the topics exist, then serves until killed.

use std::io::Write;

use rdkafka::mocking::MockCluster;

/// Runs the mock cluster with `brokers` brokers and `topics` (`name:partitions`); returns
/// only on error.
pub fn run(brokers: i32, topics: &[String], out: &mut dyn Write) -> Result<(), String> {
    let cluster = MockCluster::new(brokers).map_err(|e| format!("mock cluster: {e}"))?;
    for t in topics {
        let (name, partitions) = match t.split_once(':') {
            Some((n, p)) => (
                n,
                p.parse::<i32>()
                    .map_err(|_| format!("topic {t:?}: partitions {p:?} is no number"))?,
            ),
            None => (t.as_str(), 1),
        };
        cluster
            .create_topic(name, partitions, 1)
            .map_err(|e| format!("topic {name:?}: {e}"))?;
    }
    writeln!(out, "bootstrap={}", cluster.bootstrap_servers())
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    loop {
        std::thread::park();
    }
}

/// `mock-kafka`'s command line: serves until killed; exit 1 if it cannot.
pub fn main(a: super::args::MockKafkaArgs) -> std::process::ExitCode {
    let e = run(a.brokers, &a.topics, &mut std::io::stdout());
    eprintln!(
        "monasca-persister mock-kafka: {}",
        e.err().unwrap_or_default()
    );
    std::process::ExitCode::from(1)
}
