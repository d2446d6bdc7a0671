//! acd: an automatic call distribution engine.
//!
//! - [`config`]: the config file, its defaults and validation.
//! - [`engine`]: the deterministic routing core (queues, agents, offers).
//! - [`callctl`]: per-call control (B2BUA legs) and the `Core` = call control + engine.
//! - [`sip`]: the rsipstack adapter (the only module that uses it), digest auth, registrar.
//! - [`media`]: the RTP plane: SDP, hold music and prompts, the bridge relay.
//! - [`ops`]: operations around the core: event log, reports, metrics.
//! - [`shell`]: the thin tokio layer that drives the core in the daemon.
// One exception, allowed where it stands: `shell::ops::trim_heap` calls
// glibc's `malloc_trim` (no safe wrapper crate exists for it).
#![deny(unsafe_code)]

pub mod callctl;
pub mod config;
pub mod engine;
/// Fuzz target bodies, shared with `tests/fuzz_corpus.rs`; not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod media;
pub mod ops;
pub mod shell;
pub mod sip;
