//! The `monasca-persister` binary: argument parsing only; the work lives in the library.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use monasca_persister::{Converter, Kind, Policy, cli, decode::DEFAULT_MAX_MESSAGE_BYTES};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "Monasca persister: Kafka → InfluxDB")]
struct Args {
    #[command(subcommand)]
    command: Command,
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
        /// Input file; standard input when absent or `-`.
        file: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    Metrics,
    Alarms,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Convert {
            kind,
            sanitize,
            max_message_bytes,
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
            let mut converter = Converter::new(policy, max_message_bytes);
            let (stdout, stderr) = (io::stdout().lock(), io::stderr().lock());
            let result = match file.filter(|f| f.as_os_str() != "-") {
                Some(path) => match File::open(&path) {
                    Ok(f) => {
                        cli::convert::run(kind, &mut converter, BufReader::new(f), stdout, stderr)
                    }
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
