//! The RTP plane: acd anchors every call's media (it is a B2BUA).
//!
//! Sans-IO parts, driven with `now` like the engine:
//! - [`sdp`]: offer/answer (PCMU, PCMA, telephone-event) over `rtc-sdp`;
//! - [`ports`]: the RTP/RTCP port range;
//! - [`stream`]: the stream acd sends on a leg (its own SSRC, sequence and
//!   timestamp, continuous across music → prompts → agent);
//! - [`core`]: one shard's legs: hold music and prompts paced on a 1 ms slot
//!   clock (one clock for every listener, not a timer per caller), symmetric
//!   RTP latching, the bridge relay, media timeouts, a waiting caller's keys;
//! - [`dtmf`]: RFC 4733 telephone-event key presses;
//! - [`audio`], [`g711`], [`prompts`]: sound files, loaded and encoded once.
//!
//! The I/O shell is [`plane`]: a few OS threads ("shards"), each with a mio
//! poll over its legs' UDP sockets, feeding packets into its [`core::Shard`].

pub mod audio;
pub mod core;
pub mod dtmf;
pub mod g711;
pub mod plane;
pub mod ports;
pub mod prompts;
pub mod sdp;
pub mod stream;
