//! SIP side of acd: the front door (front.rs: every out-of-dialog request
//! decided without sockets), digest auth, registrar, session timers
//! (RFC 4028), and (in adapter.rs) the rsipstack adapter.
pub mod adapter;
pub mod digest;
pub mod front;
pub mod registrar;
pub mod session_timer;
pub mod socket;
