//! The daemon: builds the writer, the dead-letter producer and the consumers from a
//! [`Config`], runs until its `shutdown` future resolves (the binary passes SIGTERM/SIGINT;
//! exit 0 after a clean stop) or until every Kafka broker has been unreachable too long
//! (exit 1, for systemd to restart us).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, PipelineKind};
use crate::convert::Kind;
use crate::pipeline::batch::Routing;
use crate::pipeline::deadletter::DeadLetters;
use crate::pipeline::{Control, PipelineSettings, PipelineStats, spawn_consumer};
use crate::sink::Writer;

/// Start-up failures (after config validation).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    /// librdkafka refused a client; `detail` is its error with secret property values
    /// scrubbed (see `config::Redactor`).
    #[error("creating the Kafka {what}: {detail}")]
    Kafka { what: String, detail: String },
}

/// How the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Stopped by the shutdown future (a signal), everything written was committed.
    Clean,
    /// Gave up (brokers unreachable, a consumer thread died): restart me.
    Failed,
}

/// Runs the daemon until `shutdown` resolves (the binary passes SIGTERM/SIGINT; tests their
/// own trigger) or a fatal condition. `shutdown` is polled on the daemon's runtime, so it may
/// use tokio (signals, channels).
pub fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<Exit, DaemonError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(crate::stats::thread_names::IO_RUNTIME)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let cancel = CancellationToken::new();
    // The admin endpoint outlives the write cancellation, so /metrics answers to the end.
    let admin_stop = CancellationToken::new();
    let control = Arc::new(Control::default());
    let stats = Arc::new(PipelineStats::default());
    let writer = {
        let _guard = rt.enter();
        Writer::new(config.influxdb.clone(), cancel.clone())?
    };
    let shutdown_timeout =
        Duration::from_secs_f64(config.persister.shutdown_timeout_seconds.max(0.0));

    let redactor = crate::config::Redactor::new(
        (config.kafka.properties.iter()).map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let series_limit = (config.influxdb.max_hourly_series_per_tenant > 0).then(|| {
        Arc::new(crate::pipeline::series::SeriesLimit::new(
            config.influxdb.max_hourly_series_per_tenant as usize,
        ))
    });
    let mut consumers = Vec::new();
    for (kind, p) in [
        (PipelineKind::Metrics, &config.kafka_metrics),
        (PipelineKind::AlarmHistory, &config.kafka_alarm_history),
    ] {
        if !p.enabled {
            continue;
        }
        let brokers = config.brokers(p).to_owned();
        let dlq_topic = if p.dead_letter_topic.is_empty() {
            &config.kafka.dead_letter_topic
        } else {
            &p.dead_letter_topic
        };
        let target = if dlq_topic.is_empty() {
            None
        } else {
            let mut pc = ClientConfig::new();
            // Dead letters are as large as the largest message we accept, plus headers.
            pc.set("bootstrap.servers", &brokers)
                .set("acks", "all")
                .set(
                    "message.max.bytes",
                    (config.persister.max_message_bytes + (64 << 10)).to_string(),
                );
            for (k, v) in &config.kafka.properties {
                pc.set(k, v);
            }
            let producer: FutureProducer = {
                let _guard = rt.enter();
                pc.create().map_err(|e| DaemonError::Kafka {
                    what: "dead-letter producer".into(),
                    detail: redactor.error(&e),
                })?
            };
            Some((producer, dlq_topic.clone()))
        };
        let dead = Arc::new(DeadLetters::new(p.topic.clone(), target, cancel.clone()));
        let (name, msg_kind) = match kind {
            PipelineKind::Metrics => (crate::stats::thread_names::METRICS, Kind::Metrics),
            PipelineKind::AlarmHistory => (crate::stats::thread_names::ALARMS, Kind::Alarms),
        };
        let mut props: Vec<(String, String)> = vec![
            ("bootstrap.servers".into(), brokers),
            ("group.id".into(), p.group_id.clone()),
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
        props.extend(
            config
                .kafka
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let instance = if p.group_instance_id.is_empty() {
            &config.kafka.group_instance_id
        } else {
            &p.group_instance_id
        };
        let settings = Arc::new(PipelineSettings {
            name,
            kind: msg_kind,
            topic: p.topic.clone(),
            batch_size: p.batch_size,
            max_wait: Duration::from_secs_f64(p.max_wait_time_seconds),
            max_batches_in_flight: config.persister.max_batches_in_flight,
            routing: if config.influxdb.db_per_tenant {
                Routing::PerTenant(config.influxdb.database_name.clone())
            } else {
                Routing::Single(config.influxdb.database_name.clone())
            },
            converter_policy: crate::Encoder {
                policy: config.persister.policy.into(),
                dialect: config.influxdb.line_protocol,
            },
            max_message_bytes: config.persister.max_message_bytes,
            consumer_properties: props,
            group_instance_id: (!instance.is_empty()).then(|| instance.clone()),
            brokers_down_exit: Duration::from_secs_f64(config.kafka.brokers_down_exit_seconds),
            shutdown_timeout,
            lag_interval: Duration::from_secs_f64(config.persister.lag_interval_seconds),
            database_refused: Duration::from_secs_f64(config.persister.database_refused_seconds),
            // Series come from metrics; alarm transitions add a handful per alarm.
            series_limit: match kind {
                PipelineKind::Metrics => series_limit.clone(),
                PipelineKind::AlarmHistory => None,
            },
        });
        for i in 0..p.num_processors {
            let h = spawn_consumer(
                settings.clone(),
                i,
                writer.clone(),
                dead.clone(),
                stats.clone(),
                control.clone(),
                // Its own: its shutdown timeout abandons only its own writes.
                cancel.child_token(),
                rt.handle().clone(),
            )
            .map_err(|e| DaemonError::Kafka {
                what: format!("consumer {name}-{i}"),
                detail: redactor.error(&e),
            })?;
            tracing::info!(consumer = %h.label, topic = %p.topic, group = %p.group_id, "consumer started");
            consumers.push(h);
        }
    }

    if !config.persister.admin_listen.is_empty() {
        let state = Arc::new(crate::admin::AdminState {
            pipeline: stats.clone(),
            writer: writer.stats(),
            started: std::time::Instant::now(),
            ready_max_uncommitted: (config.persister.ready_max_uncommitted_seconds > 0.0)
                .then(|| Duration::from_secs_f64(config.persister.ready_max_uncommitted_seconds)),
            series: series_limit.clone(),
            ready_max_unreadable: (config.persister.ready_max_unreadable_seconds > 0.0)
                .then(|| Duration::from_secs_f64(config.persister.ready_max_unreadable_seconds)),
        });
        let addr = config.persister.admin_listen.clone();
        let stop = admin_stop.clone();
        rt.spawn(async move {
            match tokio::net::TcpListener::bind(&addr).await {
                Ok(l) => {
                    // The bound address, not the configured one: with port 0 the kernel picks.
                    let bound = l.local_addr().map(|a| a.to_string()).unwrap_or(addr);
                    tracing::info!(address = %bound, "admin endpoint listening (/metrics, /healthz, /ready)");
                    crate::admin::serve(l, state, stop).await;
                }
                Err(e) => tracing::error!(address = %addr, error = %e, "admin endpoint not started"),
            }
        });
    }

    // Wait for the shutdown future, a fatal condition, or a consumer thread that ended on its
    // own.
    let exit = rt.block_on(async {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = &mut shutdown => return Exit::Clean,
                _ = tick.tick() => {
                    if control.fatal.load(Ordering::Relaxed) {
                        return Exit::Failed;
                    }
                    if consumers.iter().any(|c| c.thread.is_finished()) {
                        tracing::error!("a consumer thread ended unexpectedly; stopping");
                        return Exit::Failed;
                    }
                }
            }
        }
    });
    control.stop.store(true, Ordering::Relaxed);
    for c in consumers {
        if c.thread.join().is_err() {
            tracing::error!(consumer = %c.label, "consumer thread panicked");
        }
    }
    cancel.cancel();
    admin_stop.cancel();
    rt.shutdown_timeout(Duration::from_secs(5));
    tracing::info!(
        consumed = stats.consumed(),
        rejected = stats.rejected.load(Ordering::Relaxed),
        batches = stats.batches.load(Ordering::Relaxed),
        "persister stopped"
    );
    Ok(exit)
}
