//! `cargo fuzz run sip_stream`: see fuzz/README.md; the body is [`acd::fuzzing::sip_stream`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| acd::fuzzing::sip_stream(data));
