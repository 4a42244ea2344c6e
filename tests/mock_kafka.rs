//! `mock-kafka` (the benches' broker that is never the bottleneck): it prints a bootstrap
//! address whose topics exist with the partitions asked for, and it takes and serves messages.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

#[test]
fn mock_kafka_serves_the_topics_it_was_asked_for() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_monasca-persister"))
        .args(["mock-kafka", "--topic", "metrics:3", "--topic", "dlq"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let bootstrap = line
        .trim()
        .strip_prefix("bootstrap=")
        .expect(&line)
        .to_owned();

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let meta = producer
        .client()
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let partitions = |t: &str| {
        meta.topics()
            .iter()
            .find(|m| m.name() == t)
            .map(|m| m.partitions().len())
    };
    assert_eq!(
        (partitions("metrics"), partitions("dlq")),
        (Some(3), Some(1))
    );
    for i in 0..10 {
        producer
            .send(BaseRecord::<(), _>::to("dlq").payload(&format!("m{i}")))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "t")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("dlq", 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 10 && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            got.push(String::from_utf8_lossy(m.payload().unwrap()).into_owned());
        }
    }
    // The clients close while their broker is still there (else closing waits for it).
    drop((consumer, producer));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(got, (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>());
}
