//! SIP side of acd: digest auth, registrar, and (in adapter.rs) the rsipstack adapter.
pub mod adapter;
pub mod digest;
pub mod registrar;
