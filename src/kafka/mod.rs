//! Kafka I/O: everything that touches librdkafka, nothing of pipeline policy.
//!
//! Owns the clients' properties (our defaults, then the operator's pass-through), the consumer
//! threads and their poll loop (`consumer`), librdkafka's callbacks (`context`, a few
//! lines each, each one call into the worker), the worker's `Kafka` port on a live consumer
//! (`client`), our queues below rust-rdkafka ([`queue`]) and the dead-letter producer
//! ([`deadletter`]). Must never decide what to
//! flush, pause or commit: that is `pipeline::worker`'s, asked through its port.

mod client;
mod consumer;
mod context;
pub mod deadletter;
pub mod queue;

pub use consumer::{ConsumerHandle, spawn_consumer};

use crate::config::{Config, PipelineConfig};

/// The librdkafka properties of a consumer of pipeline `p` for `destination`: our defaults
/// (the destination's consumer group among them), then `[kafka] properties` (which win).
pub fn consumer_properties(
    config: &Config,
    p: &PipelineConfig,
    destination: &str,
) -> Vec<(String, String)> {
    let mut props: Vec<(String, String)> = vec![
        ("bootstrap.servers".into(), config.brokers(p).to_owned()),
        ("group.id".into(), config.group_id_for(p, destination)),
        ("enable.auto.commit".into(), "false".into()),
        ("enable.auto.offset.store".into(), "false".into()),
        ("auto.offset.reset".into(), "earliest".into()),
        // Bounds what librdkafka prefetches per consumer (part of the memory bound).
        ("queued.max.messages.kbytes".into(), "16384".into()),
        ("max.partition.fetch.bytes".into(), (4 << 20).to_string()),
        // Incremental rebalancing: a joining member does not stop everyone, and the
        // revoking member's final commit is accepted (with the eager protocol librdkafka's
        // mock cluster answers it with REBALANCE_IN_PROGRESS).
        (
            "partition.assignment.strategy".into(),
            "cooperative-sticky".into(),
        ),
    ];
    props.extend((config.kafka.properties.iter()).map(|(k, v)| (k.clone(), v.clone())));
    props
}

/// The dead-letter producer's librdkafka properties: our defaults, then `[kafka] properties`.
pub fn producer_properties(config: &Config, p: &PipelineConfig) -> Vec<(String, String)> {
    let mut props: Vec<(String, String)> = vec![
        ("bootstrap.servers".into(), config.brokers(p).to_owned()),
        ("acks".into(), "all".into()),
        // Dead letters are as large as the largest message we accept, plus headers.
        (
            "message.max.bytes".into(),
            (config.persister.max_message_bytes + (64 << 10)).to_string(),
        ),
    ];
    props.extend((config.kafka.properties.iter()).map(|(k, v)| (k.clone(), v.clone())));
    props
}

/// The producer that sends pipeline `p`'s dead letters (created on a tokio runtime).
pub fn dead_letter_producer(
    config: &Config,
    p: &PipelineConfig,
) -> Result<rdkafka::producer::FutureProducer, rdkafka::error::KafkaError> {
    client_config(&producer_properties(config, p)).create()
}

/// A rust-rdkafka client configuration holding `props`.
pub fn client_config(props: &[(String, String)]) -> rdkafka::config::ClientConfig {
    let mut cc = rdkafka::config::ClientConfig::new();
    for (k, v) in props {
        cc.set(k, v);
    }
    cc
}
