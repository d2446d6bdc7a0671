//! acd: an automatic call distribution engine.
//!
//! - [`config`]: the config file, its defaults and validation.
//! - [`engine`]: the deterministic routing core (queues, agents, offers).
//! - [`shell`]: the thin tokio layer that drives the engine in the daemon.
#![forbid(unsafe_code)]

pub mod callctl;
pub mod config;
pub mod engine;
pub mod shell;
pub mod sip;
