//! The command line: the daemon's options and the operator commands' arguments.
//!
//! Owns argument names, defaults and help texts, and the order in which `--config-file` and
//! `--config-dir` sources are read. Must never do the work: each command's `main` lives in
//! its own module.

use std::path::PathBuf;

use clap::{ArgMatches, Parser, Subcommand};

use crate::config::ConfigError;
use crate::convert::Kind;
use crate::decode::DEFAULT_MAX_MESSAGE_BYTES;
use crate::encode::Dialect;

/// The configuration file the Python persister's packages install.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/monasca/monasca-persister.conf";

#[derive(Parser)]
#[command(
    name = "monasca-persister",
    version,
    about = "Monasca persister: Kafka → InfluxDB",
    long_about = "Without a subcommand, runs the daemon: consumes Monasca metrics and alarm \
                  transitions from Kafka and writes them to InfluxDB."
)]
pub struct Args {
    /// Configuration file: TOML, or the Python persister's INI (oslo.config) file. INI files
    /// may be repeated (later ones override earlier ones, key by key, as oslo.config).
    #[arg(long, default_value = DEFAULT_CONFIG_FILE)]
    pub config_file: Vec<PathBuf>,
    /// A directory whose `*.conf` files (INI, sorted by name) are read after the
    /// `--config-file`s given before it (repeatable, as oslo.config's).
    #[arg(long)]
    pub config_dir: Vec<PathBuf>,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    pub check_config: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Convert JSON messages (one per line) to line protocol, as the daemon would write them.
    Convert(ConvertArgs),
    /// Send each line of a file (or stdin) as one Kafka message.
    Produce(ProduceArgs),
    /// Produce realistic Monasca metric or alarm messages into Kafka (benchmarks, tests).
    Loadgen(LoadgenArgs),
    /// Accept InfluxDB writes, count the points and drop them (for throughput benchmarks).
    DiscardSink(DiscardSinkArgs),
    /// Run librdkafka's in-memory mock Kafka cluster (benchmarks): prints `bootstrap=…`,
    /// serves until killed.
    MockKafka(MockKafkaArgs),
    /// The dead-letter topic: count what waits there, or replay it to its source topics.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLettersAction,
    },
}

#[derive(clap::Args)]
pub struct ConvertArgs {
    /// Message format.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Alter strings InfluxDB cannot store instead of rejecting the message.
    #[arg(long)]
    pub sanitize: bool,
    /// Reject messages larger than this many bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Line-protocol escaping: v1 (InfluxDB 1.x/2.x) or v3 (VictoriaMetrics, InfluxDB 3).
    #[arg(long, value_enum, default_value = "v1")]
    pub line_protocol: Dialect,
    /// Input file; standard input when absent or `-`. A regular file is read through a
    /// memory map: one that another process truncates meanwhile ends the command with
    /// SIGBUS (pipe such a file in on standard input instead).
    pub file: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ProduceArgs {
    /// Bootstrap brokers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic to produce to.
    #[arg(long)]
    pub topic: String,
    /// librdkafka properties, `key=value` (repeatable).
    #[arg(long = "property", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
    /// Input file; standard input when absent or `-`.
    pub file: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct LoadgenArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Message kind.
    #[arg(long, value_enum, default_value = "metrics")]
    pub kind: Kind,
    /// Topic; default `metrics` or `alarm-state-transitions` by kind.
    #[arg(long)]
    pub topic: Option<String>,
    /// Messages to produce.
    #[arg(long)]
    pub count: Option<u64>,
    /// Seconds to run.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Messages per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Distinct dimension sets.
    #[arg(long, default_value_t = 1000)]
    pub cardinality: u64,
    /// Distinct tenants.
    #[arg(long, default_value_t = 10)]
    pub tenants: u64,
    /// Share of metrics carrying value_meta (0 to 1).
    #[arg(long, default_value_t = 0.1)]
    pub value_meta_share: f64,
    /// First timestamp in ms (default: now); message i gets this + i.
    #[arg(long)]
    pub start_ms: Option<i64>,
    /// librdkafka properties, `key=value` (repeatable).
    #[arg(long = "property", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
}

#[derive(clap::Args)]
pub struct DiscardSinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8086")]
    pub listen: std::net::SocketAddr,
    /// Print the counters this often (seconds); 0 prints only at exit.
    #[arg(long, default_value_t = 1.0)]
    pub report_every: f64,
}

#[derive(clap::Args)]
pub struct MockKafkaArgs {
    /// Brokers in the cluster.
    #[arg(long, default_value_t = 1)]
    pub brokers: i32,
    /// Topics to create, `name:partitions` (repeatable).
    #[arg(long = "topic")]
    pub topics: Vec<String>,
}

#[derive(Subcommand)]
pub enum DeadLettersAction {
    /// Count the letters waiting (not yet replayed) by reason, source topic and tenant, with
    /// the oldest and newest. Changes nothing.
    List {
        /// The daemon's configuration file (repeatable, as for the daemon).
        #[arg(long, default_value = DEFAULT_CONFIG_FILE)]
        config_file: Vec<PathBuf>,
    },
    /// Re-produce each waiting letter that matches to its source topic (raw payload), move the
    /// others to the end of the dead-letter topic for a later run, and commit past both, so
    /// that a second run replays nothing already replayed.
    Replay {
        /// The daemon's configuration file (repeatable, as for the daemon).
        #[arg(long, default_value = DEFAULT_CONFIG_FILE)]
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

fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

/// The daemon's configuration files, in the order oslo.config reads them: `--config-file`s
/// and `--config-dir`s (each directory's `*.conf` sorted by name) in command-line order; the
/// default file first, and with `--config-dir` only when it exists (as oslo's
/// `default_config_files`).
pub fn config_files(matches: &ArgMatches) -> Result<Vec<PathBuf>, ConfigError> {
    let mut sources: Vec<(usize, PathBuf, bool)> = Vec::new();
    for (name, is_dir) in [("config_file", false), ("config_dir", true)] {
        let values = matches.get_many::<PathBuf>(name).into_iter().flatten();
        let indices = matches.indices_of(name).into_iter().flatten();
        for (i, v) in indices.zip(values) {
            sources.push((i, v.clone(), is_dir));
        }
    }
    if matches.value_source("config_file") == Some(clap::parser::ValueSource::DefaultValue) {
        sources.retain(|s| s.2);
        let default = PathBuf::from(DEFAULT_CONFIG_FILE);
        if sources.is_empty() || default.exists() {
            sources.insert(0, (0, default, false));
        }
    }
    sources.sort_by_key(|s| s.0);
    let mut files = Vec::new();
    for (_, path, is_dir) in sources {
        if is_dir {
            files.extend(crate::config::config_dir_files(&path)?);
        } else {
            files.push(path);
        }
    }
    Ok(files)
}
