//! The `monasca-persister` binary: argument parsing only; the work lives in the library.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use monasca_persister::{
    Converter, Dialect, Encoder, Kind, Policy, cli, decode::DEFAULT_MAX_MESSAGE_BYTES,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Monasca persister: Kafka → InfluxDB",
    long_about = "Without a subcommand, runs the daemon: consumes Monasca metrics and alarm \
                  transitions from Kafka and writes them to InfluxDB."
)]
struct Args {
    /// Configuration file: TOML, or the Python persister's INI (oslo.config) file. INI files
    /// may be repeated (later ones override earlier ones, key by key, as oslo.config).
    #[arg(long, default_value = "/etc/monasca/monasca-persister.conf")]
    config_file: Vec<PathBuf>,
    /// A directory whose `*.conf` files (INI, sorted by name) are read after the
    /// `--config-file`s given before it (repeatable, as oslo.config's).
    #[arg(long)]
    config_dir: Vec<PathBuf>,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Convert JSON messages (one per line) to line protocol, as the daemon would write them.
    Convert {
        /// Message format.
        #[arg(long, value_enum)]
        kind: KindArg,
        /// Alter strings InfluxDB cannot store instead of rejecting the message.
        #[arg(long)]
        sanitize: bool,
        /// Reject messages larger than this many bytes.
        #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
        max_message_bytes: usize,
        /// Line-protocol escaping: v1 (InfluxDB 1.x/2.x) or v3 (VictoriaMetrics, InfluxDB 3).
        #[arg(long, value_enum, default_value = "v1")]
        line_protocol: DialectArg,
        /// Input file; standard input when absent or `-`. A regular file is read through a
        /// memory map: one that another process truncates meanwhile ends the command with
        /// SIGBUS (pipe such a file in on standard input instead).
        file: Option<PathBuf>,
    },
    /// Send each line of a file (or stdin) as one Kafka message.
    Produce {
        /// Bootstrap brokers.
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Topic to produce to.
        #[arg(long)]
        topic: String,
        /// librdkafka properties, `key=value` (repeatable).
        #[arg(long = "property", value_parser = parse_property)]
        properties: Vec<(String, String)>,
        /// Input file; standard input when absent or `-`.
        file: Option<PathBuf>,
    },
    /// Produce realistic Monasca metric or alarm messages into Kafka (benchmarks, tests).
    Loadgen {
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Message kind.
        #[arg(long, value_enum, default_value = "metrics")]
        kind: KindArg,
        /// Topic; default `metrics` or `alarm-state-transitions` by kind.
        #[arg(long)]
        topic: Option<String>,
        /// Messages to produce.
        #[arg(long)]
        count: Option<u64>,
        /// Seconds to run.
        #[arg(long)]
        duration: Option<f64>,
        /// Messages per second; 0 = as fast as possible.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Distinct dimension sets.
        #[arg(long, default_value_t = 1000)]
        cardinality: u64,
        /// Distinct tenants.
        #[arg(long, default_value_t = 10)]
        tenants: u64,
        /// Share of metrics carrying value_meta (0 to 1).
        #[arg(long, default_value_t = 0.1)]
        value_meta_share: f64,
        /// First timestamp in ms (default: now); message i gets this + i.
        #[arg(long)]
        start_ms: Option<i64>,
        /// librdkafka properties, `key=value` (repeatable).
        #[arg(long = "property", value_parser = parse_property)]
        properties: Vec<(String, String)>,
    },
    /// Accept InfluxDB writes, count the points and drop them (for throughput benchmarks).
    DiscardSink {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8086")]
        listen: std::net::SocketAddr,
        /// Print the counters this often (seconds); 0 prints only at exit.
        #[arg(long, default_value_t = 1.0)]
        report_every: f64,
    },
    /// Run librdkafka's in-memory mock Kafka cluster (benchmarks): prints `bootstrap=…`,
    /// serves until killed.
    MockKafka {
        /// Brokers in the cluster.
        #[arg(long, default_value_t = 1)]
        brokers: i32,
        /// Topics to create, `name:partitions` (repeatable).
        #[arg(long = "topic")]
        topics: Vec<String>,
    },
    /// The dead-letter topic: count what waits there, or replay it to its source topics.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLettersAction,
    },
}

#[derive(Subcommand)]
enum DeadLettersAction {
    /// Count the letters waiting (not yet replayed) by reason, source topic and tenant, with
    /// the oldest and newest. Changes nothing.
    List {
        /// The daemon's configuration file (repeatable, as for the daemon).
        #[arg(long, default_value = "/etc/monasca/monasca-persister.conf")]
        config_file: Vec<PathBuf>,
    },
    /// Re-produce each waiting letter that matches to its source topic (raw payload), move the
    /// others to the end of the dead-letter topic for a later run, and commit past both, so
    /// that a second run replays nothing already replayed.
    Replay {
        /// The daemon's configuration file (repeatable, as for the daemon).
        #[arg(long, default_value = "/etc/monasca/monasca-persister.conf")]
        config_file: Vec<PathBuf>,
        /// Only letters with this reason (repeatable; any of them).
        #[arg(long)]
        reason: Vec<String>,
        /// Only letters of this tenant (repeatable; any of them).
        #[arg(long)]
        tenant: Vec<String>,
        /// Say what would be replayed; produce and commit nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    Metrics,
    Alarms,
}

#[derive(Clone, Copy, ValueEnum)]
enum DialectArg {
    V1,
    V3,
}

/// Memory settings for the whole process, made before any other thread exists:
///
/// - librdkafka takes each fetch response's buffer from the C allocator (glibc's malloc, not
///   ours): by default glibc maps large blocks afresh and hands freed memory back to the
///   kernel, so every fetch faulted in new zeroed pages (measured: ~80 % of the daemon's page
///   faults, 46 000 per 600 000 messages; with this, 10 000). Freed memory is kept for reuse.
/// - No transparent huge pages: mimalloc asks for them on its arenas, and a batch buffer
///   touched in part then stays resident in whole 2 MiB pages (measured: 26.6 MiB of huge
///   pages at peak for ~15 MiB of batch buffers). The buffers are reused, so the extra 4 KiB
///   page faults happen once.
fn memory_settings() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt and prctl only set parameters of the allocator and the process.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    memory_settings();
    use clap::{CommandFactory as _, FromArgMatches as _};
    let matches = Args::command().get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    let Some(command) = args.command else {
        // Files and directories in command-line order, as oslo.config reads them.
        let mut sources: Vec<(usize, PathBuf, bool)> = Vec::new();
        for (name, is_dir) in [("config_file", false), ("config_dir", true)] {
            let values = matches.get_many::<PathBuf>(name).into_iter().flatten();
            let indices = matches.indices_of(name).into_iter().flatten();
            for (i, v) in indices.zip(values) {
                sources.push((i, v.clone(), is_dir));
            }
        }
        if matches.value_source("config_file") == Some(clap::parser::ValueSource::DefaultValue) {
            // The default file, first; with --config-dir only when it exists (as oslo's
            // default_config_files).
            sources.retain(|s| s.2);
            let default = PathBuf::from("/etc/monasca/monasca-persister.conf");
            if sources.is_empty() || default.exists() {
                sources.insert(0, (0, default, false));
            }
        }
        sources.sort_by_key(|s| s.0);
        let mut files = Vec::new();
        for (_, path, is_dir) in sources {
            if !is_dir {
                files.push(path);
                continue;
            }
            match monasca_persister::config::config_dir_files(&path) {
                Ok(f) => files.extend(f),
                Err(e) => {
                    eprintln!("monasca-persister: configuration error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        return daemon(&files, args.check_config);
    };
    match command {
        Command::Loadgen {
            brokers,
            kind,
            topic,
            count,
            duration,
            rate,
            cardinality,
            tenants,
            value_meta_share,
            start_ms,
            properties,
        } => {
            let alarms = matches!(kind, KindArg::Alarms);
            let spec = cli::loadgen::LoadSpec {
                brokers,
                topic: topic.unwrap_or_else(|| {
                    if alarms {
                        "alarm-state-transitions"
                    } else {
                        "metrics"
                    }
                    .into()
                }),
                alarms,
                count,
                duration: duration.map(std::time::Duration::from_secs_f64),
                rate,
                cardinality,
                tenants,
                value_meta_share,
                start_ms: start_ms.unwrap_or_else(|| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as i64)
                        .unwrap_or(0)
                }),
                properties,
            };
            match cli::loadgen::run(&spec) {
                Ok(s) => {
                    eprintln!(
                        "loadgen: produced {} messages ({:.1} MB) to {} in {:.1} s: {:.0} msgs/s; acknowledged {}, failed {}",
                        s.sent,
                        s.bytes as f64 / 1e6,
                        spec.topic,
                        s.seconds,
                        s.sent as f64 / s.seconds.max(1e-9),
                        s.acknowledged,
                        s.failed
                    );
                    if s.failed > 0 || s.acknowledged != s.sent {
                        ExitCode::from(1)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("monasca-persister loadgen: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Produce {
            brokers,
            topic,
            properties,
            file,
        } => {
            let result = match file.filter(|f| f.as_os_str() != "-") {
                Some(path) => match File::open(&path) {
                    Ok(f) => cli::produce::run(&brokers, &topic, &properties, BufReader::new(f)),
                    Err(e) => Err(format!("cannot open {}: {e}", path.display())),
                },
                None => cli::produce::run(&brokers, &topic, &properties, io::stdin().lock()),
            };
            match result {
                Ok(n) => {
                    eprintln!("produced {n} messages to {topic}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("monasca-persister produce: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::DiscardSink {
            listen,
            report_every,
        } => discard_sink(listen, report_every),
        Command::DeadLetters { action } => dead_letters(action),
        Command::MockKafka { brokers, topics } => {
            let e =
                monasca_persister::cli::mock_kafka::run(brokers, &topics, &mut std::io::stdout());
            eprintln!(
                "monasca-persister mock-kafka: {}",
                e.err().unwrap_or_default()
            );
            ExitCode::from(1)
        }
        Command::Convert {
            kind,
            sanitize,
            max_message_bytes,
            line_protocol,
            file,
        } => {
            let kind = match kind {
                KindArg::Metrics => Kind::Metrics,
                KindArg::Alarms => Kind::Alarms,
            };
            let policy = if sanitize {
                Policy::Sanitize
            } else {
                Policy::Reject
            };
            let dialect = match line_protocol {
                DialectArg::V1 => Dialect::V1,
                DialectArg::V3 => Dialect::V3,
            };
            let mut converter = Converter::new(Encoder { policy, dialect }, max_message_bytes);
            let (stdout, stderr) = (io::stdout().lock(), io::stderr().lock());
            let result = match file.filter(|f| f.as_os_str() != "-") {
                Some(path) => match File::open(&path) {
                    Ok(f) => cli::convert::run_file(kind, &mut converter, f, stdout, stderr),
                    Err(e) => {
                        eprintln!(
                            "monasca-persister convert: cannot open {}: {e}",
                            path.display()
                        );
                        return ExitCode::from(2);
                    }
                },
                None => cli::convert::run(kind, &mut converter, io::stdin().lock(), stdout, stderr),
            };
            match result {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("monasca-persister convert: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn discard_sink(listen: std::net::SocketAddr, report_every: f64) -> ExitCode {
    use monasca_persister::cli::discard::{SinkStats, serve};
    use std::sync::Arc;
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("monasca-persister discard-sink: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("monasca-persister discard-sink: cannot listen on {listen}: {e}");
                return ExitCode::from(1);
            }
        };
        println!(
            "discard sink listening on {}",
            listener.local_addr().unwrap_or(listen)
        );
        let stats = Arc::new(SinkStats::default());
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(serve(listener, stats.clone(), shutdown.clone()));
        let report = {
            let stats = stats.clone();
            async move {
                if report_every <= 0.0 {
                    return std::future::pending().await;
                }
                let mut tick =
                    tokio::time::interval(std::time::Duration::from_secs_f64(report_every));
                let mut last = String::new();
                loop {
                    tick.tick().await;
                    let now = stats.json();
                    if now != last {
                        println!("{now}");
                        last = now;
                    }
                }
            }
        };
        tokio::select! {
            _ = report => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate() => {}
        }
        shutdown.cancel();
        let _ = server.await;
        println!("{}", stats.json());
        ExitCode::SUCCESS
    })
}

/// Resolves on SIGTERM (never elsewhere).
async fn terminate() {
    #[cfg(unix)]
    if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        s.recv().await;
        return;
    }
    std::future::pending::<()>().await
}

fn daemon(paths: &[PathBuf], check: bool) -> ExitCode {
    let loaded = match monasca_persister::config::load_all(paths, &|n| std::env::var(n).ok()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("monasca-persister: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if check {
        for w in &loaded.warnings {
            eprintln!("warning: {w}");
        }
        print!("{}", loaded.config.to_redacted_toml());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = init_logging(&loaded.config.persister) {
        eprintln!("monasca-persister: {e}");
        return ExitCode::from(2);
    }
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let config = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    tracing::info!(config = %config, version = env!("CARGO_PKG_VERSION"), "monasca-persister starting");
    let signalled = async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
            _ = terminate() => tracing::info!("SIGTERM: stopping"),
        }
    };
    match monasca_persister::daemon::run(loaded.config, signalled) {
        Ok(monasca_persister::daemon::Exit::Clean) => ExitCode::SUCCESS,
        Ok(monasca_persister::daemon::Exit::Failed) => {
            eprintln!(
                "monasca-persister: stopped after a fatal condition (see the log); exiting with 1 so the service manager restarts it"
            );
            ExitCode::from(1)
        }
        Err(e) => {
            tracing::error!(error = %e, "start-up failed");
            eprintln!("monasca-persister: {e}");
            ExitCode::from(1)
        }
    }
}

/// Logs to standard output, and also to the log file when configured (`log_dir`, `log_file`).
/// Level: `RUST_LOG` if set, else `persister.log_level`.
fn init_logging(p: &monasca_persister::config::PersisterConfig) -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&p.log_level))
        .map_err(|e| format!("persister.log_level {:?}: {e}", p.log_level))?;
    let file = if let Some(path) = p.log_path() {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
        Some(
            fmt::layer()
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f)),
        )
    } else {
        None
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(
            fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .with_writer(std::io::stdout),
        )
        .with(file)
        .try_init()
        .map_err(|e| e.to_string())
}

/// `dead-letters list` and `dead-letters replay`: exit 0 when done, 2 for a configuration
/// error, 1 when Kafka failed them.
fn dead_letters(action: DeadLettersAction) -> ExitCode {
    use monasca_persister::cli::dead_letters::{Filter, list, render, replay};
    let paths = match &action {
        DeadLettersAction::List { config_file } | DeadLettersAction::Replay { config_file, .. } => {
            config_file
        }
    };
    let config = match monasca_persister::config::load_all(paths, &|n| std::env::var(n).ok()) {
        Ok(l) => l.config,
        Err(e) => {
            eprintln!("monasca-persister dead-letters: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match action {
        DeadLettersAction::List { .. } => list(&config).map(|topics| {
            for (topic, tally) in topics {
                println!("dead-letter topic {topic}: letters waiting");
                print!("{}", render(&tally));
            }
        }),
        DeadLettersAction::Replay {
            reason,
            tenant,
            dry_run,
            ..
        } => {
            let filter = Filter {
                reasons: reason,
                tenants: tenant,
            };
            replay(&config, &filter, dry_run).map(|topics| {
                let (done, kept) = if dry_run {
                    ("would replay", "would leave waiting")
                } else {
                    ("replayed", "left waiting (moved to the end of the topic)")
                };
                for (topic, r) in topics {
                    println!("dead-letter topic {topic}: {done}");
                    print!("{}", render(&r.replayed));
                    println!("dead-letter topic {topic}: {kept}");
                    print!("{}", render(&r.kept));
                }
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("monasca-persister dead-letters: {e}");
            let config_error = matches!(
                e,
                monasca_persister::cli::dead_letters::DeadLetterError::NoTopic
            );
            ExitCode::from(if config_error { 2 } else { 1 })
        }
    }
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}
