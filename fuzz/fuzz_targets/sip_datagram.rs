//! `cargo fuzz run sip_datagram`: see fuzz/README.md; the body is [`acd::fuzzing::sip_datagram`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| acd::fuzzing::sip_datagram(data));
