//! `cargo fuzz run sdp`: see fuzz/README.md; the body is [`acd::fuzzing::sdp_offer`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| acd::fuzzing::sdp_offer(data));
