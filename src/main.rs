//! The `monasca-persister` binary: parses the command line and hands it to the library (the
//! daemon's start-up in `daemon::start`, each operator command's `main` in `cli`).

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};
use monasca_persister::cli::{self, args::Args, args::Command};
use monasca_persister::daemon;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let matches = Args::command().get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match args.command {
        None => match cli::args::config_files(&matches) {
            Ok(files) => daemon::start::main(&files, args.check_config),
            Err(e) => {
                eprintln!("monasca-persister: configuration error: {e}");
                ExitCode::from(2)
            }
        },
        Some(Command::Convert(a)) => cli::convert::main(a),
        Some(Command::Produce(a)) => cli::produce::main(a),
        Some(Command::Loadgen(a)) => cli::loadgen::main(a),
        Some(Command::DiscardSink(a)) => cli::discard::main(a),
        Some(Command::MockKafka(a)) => cli::mock_kafka::main(a),
        Some(Command::DeadLetters { action }) => cli::dead_letters::main(action),
    }
}
