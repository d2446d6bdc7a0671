//! `acd`: the daemon and its admin commands.

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
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
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
                tracing::info!("acd running on {}; Ctrl-C to stop", path.display());
                match acd::shell::run(cfg, shutdown).await {
                    Ok(()) => {
                        tracing::info!("acd stopped");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("acd: {e}");
                        ExitCode::from(EXIT_UNAVAILABLE)
                    }
                }
            })
        }
    }
}

fn bad_config(e: &ConfigError) -> ExitCode {
    eprintln!("acd: invalid config: {e}");
    ExitCode::from(EXIT_BAD_CONFIG)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ACD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: logs piped to a file or journald stay plain.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi).init();
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
