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
    /// Accept InfluxDB writes, count the points and drop them (for throughput benchmarks).
    DiscardSink {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8086")]
        listen: std::net::SocketAddr,
        /// Print the counters this often (seconds); 0 prints only at exit.
        #[arg(long, default_value_t = 1.0)]
        report_every: f64,
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
        Command::DiscardSink {
            listen,
            report_every,
        } => discard_sink(listen, report_every),
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
