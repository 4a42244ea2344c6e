//! `monasca-persister produce`: sends each line of a file (or stdin) as one Kafka message.
//!
//! For demos, smoke tests and replaying a dead-letter dump or `convert` input into a topic.
//! Lines are sent as they are (any bytes); blank lines are skipped.

use std::io::BufRead;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Produces every non-blank line of `input` to `topic`; returns how many were sent.
pub fn run(
    brokers: &str,
    topic: &str,
    properties: &[(String, String)],
    mut input: impl BufRead,
) -> Result<u64, String> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers).set("linger.ms", "20");
    for (k, v) in properties {
        cc.set(k, v);
    }
    let producer: BaseProducer = cc.create().map_err(|e| {
        let redactor = crate::config::Redactor::of(properties);
        format!("creating the producer: {}", redactor.error(&e))
    })?;
    let mut line = Vec::new();
    let mut sent = 0u64;
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("reading input: {e}"))?;
        if n == 0 {
            break;
        }
        let msg = line.trim_ascii();
        if msg.is_empty() {
            continue;
        }
        let mut rec = BaseRecord::<(), [u8]>::to(topic).payload(msg);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((e, r))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    rec = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(format!("producing to {topic}: {e}")),
            }
        }
        sent += 1;
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| format!("waiting for acknowledgements: {e}"))?;
    Ok(sent)
}

/// `produce`'s command line: exit 1 when the file cannot be read or Kafka failed.
pub fn main(a: super::args::ProduceArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    let result = match a.file.filter(|f| f.as_os_str() != "-") {
        Some(path) => match std::fs::File::open(&path) {
            Ok(f) => run(
                &a.brokers,
                &a.topic,
                &a.properties,
                std::io::BufReader::new(f),
            ),
            Err(e) => Err(format!("cannot open {}: {e}", path.display())),
        },
        None => run(&a.brokers, &a.topic, &a.properties, std::io::stdin().lock()),
    };
    match result {
        Ok(n) => {
            eprintln!("produced {n} messages to {}", a.topic);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("monasca-persister produce: {e}");
            ExitCode::from(1)
        }
    }
}
