//! The shell's errors: what can stop the daemon from starting, and why a
//! reload was refused. (A peer's mistakes are answered in SIP and never
//! become one of these.)

use crate::config::ConfigError;
use crate::media::plane::MediaError;
use crate::sip::adapter::SipError;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error(transparent)]
    Sip(#[from] SipError),
    #[error("cannot listen on {addr} (admin http): {reason}")]
    AdminListen { addr: SocketAddr, reason: String },
    #[error("cannot open the event log {}: {reason}", path.display())]
    EventLog { path: PathBuf, reason: String },
    #[error("media plane: {0}")]
    Media(#[from] MediaError),
    #[error("cannot handle SIGHUP: {0}")]
    Signal(std::io::Error),
    #[error("the daemon thread ended during start-up")]
    ThreadEnded,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("acd was started without a config file")]
    NoFile,
    /// The file, the key and the reason.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error("the daemon has stopped")]
    Stopped,
}
