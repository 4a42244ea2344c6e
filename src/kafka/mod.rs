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

/// The retention of pipeline `p`'s topic (its `retention.ms`) as the broker reports it: None
/// when the topic keeps its messages forever (-1). `Err`: the broker did not say.
pub async fn topic_retention(
    config: &Config,
    p: &PipelineConfig,
) -> Result<Option<std::time::Duration>, String> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let props = [("bootstrap.servers".to_owned(), config.brokers(p).to_owned())];
    let mut cc = client_config(&props);
    for (k, v) in &config.kafka.properties {
        cc.set(k, v);
    }
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        cc.create().map_err(|e| config.kafka.redactor().error(&e))?;
    let opts = AdminOptions::new().request_timeout(Some(std::time::Duration::from_secs(10)));
    let answers = admin
        .describe_configs(&[ResourceSpecifier::Topic(&p.topic)], &opts)
        .await
        .map_err(|e| config.kafka.redactor().error(&e))?;
    let resource = (answers.into_iter().next())
        .ok_or("no answer")?
        .map_err(|code| code.to_string())?;
    let ms = (resource.get("retention.ms").and_then(|e| e.value.clone()))
        .ok_or("no retention.ms in the answer")?;
    let ms: i64 = ms.parse().map_err(|_| format!("retention.ms {ms:?}"))?;
    Ok((ms >= 0).then(|| std::time::Duration::from_millis(ms as u64)))
}

/// A rust-rdkafka client configuration holding `props`.
pub fn client_config(props: &[(String, String)]) -> rdkafka::config::ClientConfig {
    let mut cc = rdkafka::config::ClientConfig::new();
    for (k, v) in props {
        cc.set(k, v);
    }
    cc
}
