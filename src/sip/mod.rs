//! SIP side of acd: digest auth, registrar, session timers (RFC 4028), and
//! (in adapter.rs) the rsipstack adapter.
pub mod adapter;
pub mod digest;
pub mod registrar;
pub mod session_timer;
