//! `cargo fuzz run digest`: see fuzz/README.md; the body is [`acd::fuzzing::digest_authorization`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| acd::fuzzing::digest_authorization(data));
