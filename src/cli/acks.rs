//! Counting a producer's delivery reports: how many messages Kafka acknowledged and how many
//! it did not, for the commands that produce (`loadgen`, `dead-letters replay`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::ClientContext;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::ProducerContext;

/// Delivery reports so far.
#[derive(Debug, Default)]
pub struct Acks {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

/// A producer context that counts every delivery report into its [`Acks`].
pub struct AcksContext(pub Arc<Acks>);

impl ClientContext for AcksContext {}

impl ProducerContext for AcksContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.0.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.0.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}
