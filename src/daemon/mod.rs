//! The daemon: builds the writer, the dead-letter producer and the consumers from a
//! [`Config`], runs until its `shutdown` future resolves (the binary passes SIGTERM/SIGINT;
//! exit 0 after a clean stop) or until every Kafka broker has been unreachable too long
//! (exit 1, for systemd to restart us).
//!
//! Owns the life cycle: what is built in which order, what stops first (consumers, then the
//! writes, then the admin endpoint). Must never exit 0 when a consumer ended on its own.

pub mod start;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, InfluxConfig, PipelineConfig, Routes};
use crate::convert::Kind;
use crate::kafka::{self, ConsumerHandle, deadletter::DeadLetters};
use crate::pipeline::batch::Routing;
use crate::pipeline::series::SeriesLimit;
use crate::pipeline::{Control, Ending, PipelineSettings, PipelineStats};
use crate::sink::Writer;
use crate::stats::Labelled;

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

/// What every consumer shares, and the daemon's ends of the stop and exit signals.
struct Shared {
    /// Cancelled once the consumers have stopped: abandons what the writers still try.
    /// Each consumer gets a child of its own (its shutdown timeout abandons only its writes).
    cancel: CancellationToken,
    control: Arc<Control>,
    /// Each consumer thread's end, however it ends (see `Control::exits`).
    exits: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Which destination takes which tenant.
    routes: Arc<Routes>,
    /// `[influxdb]` first, then `[destinations.NAME]` by name.
    destinations: Vec<Target>,
}

/// One destination: its writer, and the counters of its consumers.
struct Target {
    name: String,
    influx: InfluxConfig,
    writer: Writer,
    stats: Arc<PipelineStats>,
    series_limit: Option<Arc<SeriesLimit>>,
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
    let (exits_tx, exits) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let mut destinations = Vec::new();
    for (name, influx) in config.destinations() {
        let _guard = rt.enter();
        destinations.push(Target {
            name: name.to_owned(),
            influx: influx.clone(),
            writer: Writer::new(influx.clone(), cancel.clone())?,
            stats: Arc::new(PipelineStats::default()),
            series_limit: (influx.max_hourly_series_per_tenant > 0).then(|| {
                Arc::new(SeriesLimit::new(
                    influx.max_hourly_series_per_tenant as usize,
                ))
            }),
        });
    }
    let mut shared = Shared {
        cancel,
        control: Arc::new(Control {
            exits: Some(exits_tx),
            ..Control::default()
        }),
        exits,
        routes: Arc::new(Routes::of(&config)),
        destinations,
    };
    let mut consumers = Vec::new();
    for (kind, p) in [
        (Kind::Metrics, &config.kafka_metrics),
        (Kind::Alarms, &config.kafka_alarm_history),
    ] {
        if !p.enabled {
            continue;
        }
        // One dead-letter producer per pipeline, shared by its destinations.
        let producer = dead_letter_producer(&config, p, &rt)?;
        for d in 0..shared.destinations.len() {
            // Consumer threads are numbered on across destinations (`metrics-0`, `metrics-1`
            // …): a thread name holds 15 bytes, too few for a destination's name.
            let first = d * p.num_processors;
            let dead = DeadLetters::new(p.topic.clone(), producer.clone(), shared.cancel.clone());
            consumers.extend(start_pipeline(
                &config, kind, p, &shared, d, first, dead, &rt,
            )?);
        }
    }
    // The admin endpoint outlives the consumers and the writes, so /metrics answers to the
    // end.
    let admin_stop = CancellationToken::new();
    if !config.persister.admin_listen.is_empty() {
        start_admin(&config, &shared, &rt, admin_stop.clone());
    }
    // Until the shutdown future resolves or a consumer thread ends on its own (it gave up,
    // or a bug ended it).
    let ended_first = rt.block_on(async {
        tokio::select! {
            _ = shutdown => None,
            Some(label) = shared.exits.recv() => Some(label),
        }
    });
    let exit = stop(consumers, ended_first, &shared.control);
    shared.cancel.cancel();
    admin_stop.cancel();
    rt.shutdown_timeout(Duration::from_secs(5));
    let stats = &shared.destinations[0].stats;
    tracing::info!(
        consumed = stats.consumed(),
        rejected = stats.rejected.load(Ordering::Relaxed),
        batches = stats.batches.load(Ordering::Relaxed),
        "persister stopped"
    );
    Ok(exit)
}

/// Pipeline `p`'s dead-letter producer and topic (None: no dead-letter topic).
fn dead_letter_producer(
    config: &Config,
    p: &PipelineConfig,
    rt: &tokio::runtime::Runtime,
) -> Result<Option<(FutureProducer, String)>, DaemonError> {
    let topic = config.dead_letter_topic(p);
    if topic.is_empty() {
        return Ok(None);
    }
    let _guard = rt.enter();
    let producer = kafka::dead_letter_producer(config, p).map_err(|e| DaemonError::Kafka {
        what: "dead-letter producer".into(),
        detail: config.kafka.redactor().error(&e),
    })?;
    Ok(Some((producer, topic.to_owned())))
}

/// Starts one pipeline's `num_processors` consumers for destination `d` (numbered from
/// `first`), sending their dead letters through `dead`.
#[allow(clippy::too_many_arguments)]
fn start_pipeline(
    config: &Config,
    kind: Kind,
    p: &PipelineConfig,
    shared: &Shared,
    d: usize,
    first: usize,
    dead: DeadLetters,
    rt: &tokio::runtime::Runtime,
) -> Result<Vec<ConsumerHandle>, DaemonError> {
    let target = &shared.destinations[d];
    let redactor = config.kafka.redactor();
    // Letters of a destination other than the first name it (a write only it refused).
    let dead = Arc::new(if d == 0 {
        dead
    } else {
        dead.for_destination(&target.name)
    });
    let mut settings = settings(config, kind, p, target);
    if shared.destinations.len() > 1 || !shared.routes.takes_all(0) {
        settings.destination = Some(crate::pipeline::Place {
            routes: shared.routes.clone(),
            index: d,
            name: target.name.clone(),
        });
    }
    let settings = Arc::new(settings);
    let group = config.group_id_for(p, &target.name);
    let mut consumers = Vec::new();
    for i in first..first + p.num_processors {
        let h = kafka::spawn_consumer(
            settings.clone(),
            i,
            target.writer.clone(),
            dead.clone(),
            target.stats.clone(),
            shared.control.clone(),
            shared.cancel.child_token(),
            rt.handle().clone(),
        )
        .map_err(|e| DaemonError::Kafka {
            what: format!("consumer {}-{i}", settings.name),
            detail: redactor.error(&e),
        })?;
        tracing::info!(consumer = %h.label, destination = %target.name, topic = %p.topic, group = %group, "consumer started");
        consumers.push(h);
    }
    Ok(consumers)
}

/// What every consumer of pipeline `p` needs, from the configuration.
fn settings(config: &Config, kind: Kind, p: &PipelineConfig, target: &Target) -> PipelineSettings {
    let instance = if p.group_instance_id.is_empty() {
        &config.kafka.group_instance_id
    } else {
        &p.group_instance_id
    };
    let seconds = Duration::from_secs_f64;
    let influx = &target.influx;
    PipelineSettings {
        name: match kind {
            Kind::Metrics => crate::stats::thread_names::METRICS,
            Kind::Alarms => crate::stats::thread_names::ALARMS,
        },
        kind,
        topic: p.topic.clone(),
        batch_size: p.batch_size,
        max_wait: seconds(p.max_wait_time_seconds),
        max_batches_in_flight: config.persister.max_batches_in_flight,
        routing: if influx.db_per_tenant {
            Routing::PerTenant(influx.database_name.clone())
        } else {
            Routing::Single(influx.database_name.clone())
        },
        converter_policy: crate::Encoder {
            policy: config.persister.policy,
            dialect: influx.line_protocol,
        },
        max_message_bytes: config.persister.max_message_bytes,
        consumer_properties: kafka::consumer_properties(config, p, &target.name),
        group_instance_id: (!instance.is_empty()).then(|| instance.clone()),
        brokers_down_exit: seconds(config.kafka.brokers_down_exit_seconds),
        shutdown_timeout: seconds(config.persister.shutdown_timeout_seconds.max(0.0)),
        lag_interval: seconds(config.persister.lag_interval_seconds),
        database_refused: seconds(config.persister.database_refused_seconds),
        // Series come from metrics; alarm transitions add a handful per alarm.
        series_limit: match kind {
            Kind::Metrics => target.series_limit.clone(),
            Kind::Alarms => None,
        },
        destination: None,
    }
}

/// Serves `/metrics`, `/healthz` and `/ready` on `persister.admin_listen` until `stop`.
fn start_admin(
    config: &Config,
    shared: &Shared,
    rt: &tokio::runtime::Runtime,
    stop: CancellationToken,
) {
    let limit = |s: f64| (s > 0.0).then(|| Duration::from_secs_f64(s));
    let state = Arc::new(crate::admin::AdminState {
        destinations: (shared.destinations.iter())
            .map(|d| crate::admin::DestinationStats {
                name: d.name.clone(),
                pipeline: d.stats.clone(),
                writer: d.writer.stats(),
                series: d.series_limit.clone(),
            })
            .collect(),
        started: std::time::Instant::now(),
        ready_max_uncommitted: limit(config.persister.ready_max_uncommitted_seconds),
        ready_max_unreadable: limit(config.persister.ready_max_unreadable_seconds),
        topic_retention: Arc::new(Labelled::default()),
    });
    watch_retention(config, rt, state.topic_retention.clone(), stop.clone());
    let addr = config.persister.admin_listen.clone();
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

/// How often the topics' retention is asked of the broker again.
const RETENTION_EVERY: Duration = Duration::from_secs(600);

/// Keeps each enabled pipeline's topic retention (ms) in `into`, asked of the broker now and
/// every `RETENTION_EVERY`, for the alert on a destination falling behind by nearly as much.
fn watch_retention(
    config: &Config,
    rt: &tokio::runtime::Runtime,
    into: Arc<Labelled<String>>,
    stop: CancellationToken,
) {
    let config = config.clone();
    rt.spawn(async move {
        let mut said = false;
        loop {
            for p in [&config.kafka_metrics, &config.kafka_alarm_history] {
                if !p.enabled {
                    continue;
                }
                match kafka::topic_retention(&config, p).await {
                    Ok(Some(r)) => into.set(p.topic.clone(), r.as_millis() as i64),
                    Ok(None) => into.remove(&p.topic),
                    Err(e) if !said => {
                        said = true;
                        tracing::info!(topic = %p.topic, error = %e, "cannot read the topic's retention.ms; monasca_persister_topic_retention_seconds stays absent");
                    }
                    Err(_) => {}
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RETENTION_EVERY) => {}
                _ = stop.cancelled() => return,
            }
        }
    });
}

/// Stops every consumer and waits for each (each flushes, commits and leaves its group);
/// `ended_first` names the consumer that ended on its own, if one did. Clean only if none
/// ended on its own, gave up or panicked.
fn stop(consumers: Vec<ConsumerHandle>, ended_first: Option<String>, control: &Control) -> Exit {
    control.stop.cancel();
    let mut exit = Exit::Clean;
    if let Some(label) = &ended_first {
        tracing::error!(consumer = %label, "a consumer stopped on its own; stopping the others");
        exit = Exit::Failed;
    }
    for c in consumers {
        match c.thread.join() {
            Ok(Ending::Stopped) => {}
            Ok(Ending::Fatal) => exit = Exit::Failed,
            Err(_) => {
                tracing::error!(consumer = %c.label, "consumer thread panicked");
                exit = Exit::Failed;
            }
        }
    }
    exit
}
