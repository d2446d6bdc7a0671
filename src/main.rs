//! `acd`: the daemon and its admin commands (`run`, `check-config`, `report`).

use acd::config::{self, ConfigError};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status for a bad config (EX_USAGE / EX_CONFIG family): scripts and
/// systemd can tell "fix the file" from a crash.
const EXIT_BAD_CONFIG: u8 = 64;
/// EX_UNAVAILABLE (sysexits.h): a listener could not be opened.
const EXIT_UNAVAILABLE: u8 = 69;

#[derive(Parser)]
#[command(name = "acd", version, about = "Automatic call distribution for SIP call centers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        /// Config file.
        #[arg(long, short, default_value = "config/acd.toml")]
        config: PathBuf,
    },
    /// Validate a config file and print what it builds; exit 64 if invalid.
    CheckConfig {
        #[arg(default_value = "config/acd.toml")]
        path: PathBuf,
    },
    /// Per-queue KPIs from an event log: offered, answered, abandoned,
    /// service level, ASA, AHT, repeat callers; exit 64 on a bad file or line.
    Report {
        /// The event log (JSON lines; "-" reads standard input). For rotated
        /// files, concatenate them oldest first.
        eventlog: PathBuf,
        /// Count calls arriving at or after this time: RFC 3339 UTC
        /// (2026-11-23T21:00:00Z) or Unix milliseconds.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        from: Option<u64>,
        /// Count calls arriving before this time (same forms as --from).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        to: Option<u64>,
        /// Answer threshold of the service level, in seconds.
        #[arg(long, default_value_t = 20)]
        service_level_secs: u32,
    },
}

fn parse_time(s: &str) -> Result<u64, String> {
    acd::ops::report::parse_timestamp(s)
        .ok_or_else(|| "expected RFC 3339 UTC like 2026-11-23T21:00:00Z or Unix milliseconds".to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { path } => match config::load(&path) {
            Ok(cfg) => {
                println!("{}: OK", path.display());
                for line in acd::shell::summary(&cfg) {
                    println!("  {line}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => bad_config(&e),
        },
        Command::Report { eventlog, from, to, service_level_secs } => report(&eventlog, from, to, service_level_secs),
        Command::Run { config: path } => {
            init_tracing();
            // Validate before anything else: a bad config binds no port.
            let cfg = match config::load(&path) {
                Ok(cfg) => cfg,
                Err(e) => return bad_config(&e),
            };
            for line in acd::shell::summary(&cfg) {
                tracing::info!("{line}");
            }
            let rt = match acd::shell::runtime::build(cfg.sip.workers) {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("acd: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            rt.block_on(async {
                let shutdown = match shutdown_signal() {
                    Ok(f) => f,
                    Err(e) => {
                        eprintln!("acd: cannot install signal handlers: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                match acd::shell::run(cfg, path.clone(), shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("acd: {e}");
                        ExitCode::from(EXIT_UNAVAILABLE)
                    }
                }
            })
        }
    }
}

/// `acd report`: prints the table, or says what is wrong with the log and
/// exits 64 (the file is the input the user gave us, like a bad config).
fn report(path: &std::path::Path, from: Option<u64>, to: Option<u64>, sl_secs: u32) -> ExitCode {
    use std::io::BufReader;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            eprintln!("acd: report: --from must be before --to");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    }
    let result = if path.as_os_str() == "-" {
        acd::ops::report::report(std::io::stdin().lock(), from, to, sl_secs)
    } else {
        match std::fs::File::open(path) {
            Ok(file) => acd::ops::report::report(BufReader::new(file), from, to, sl_secs),
            Err(e) => {
                eprintln!("acd: report: cannot open {}: {e}", path.display());
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        }
    };
    match result {
        Ok(r) => {
            print!("{r}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("acd: report: {}: {e}", path.display());
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

fn bad_config(e: &ConfigError) -> ExitCode {
    eprintln!("acd: invalid config: {e}");
    ExitCode::from(EXIT_BAD_CONFIG)
}

fn init_tracing() {
    use acd::ops::logging::{Redacting, DEFAULT_FILTER};
    let filter = tracing_subscriber::EnvFilter::try_from_env("ACD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    // Colours only on a terminal: logs piped to a file or journald stay plain.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    // Every line, at any level, loses Authorization values on its way out.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(Redacting(std::io::stdout))
        .init();
}

/// Installs the SIGINT / SIGTERM handlers now (so a signal that arrives
/// right after start-up is not lost) and returns the future that resolves
/// on the first of them.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
