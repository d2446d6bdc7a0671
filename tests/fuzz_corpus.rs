//! The fuzz corpus on the stable toolchain: every file committed under
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes through the
//! same body the fuzz target runs (`acd::fuzzing`), so `cargo test` keeps
//! the inputs the fuzzer found interesting, and every crash it found, passing.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Runs every file in the target's corpus and regressions directories;
/// fails naming each input that panicked.
fn run(target: &str, body: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut ran = 0;
    let mut panicked = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.expect("a readable directory entry").path()).collect();
        paths.sort();
        for path in paths.into_iter().filter(|p| p.is_file()) {
            let data = std::fs::read(&path).expect("a readable corpus file");
            if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
                panicked.push(path.display().to_string());
            }
            ran += 1;
        }
    }
    assert!(ran > 0, "no corpus for {target} under {}", root.display());
    assert!(panicked.is_empty(), "{target}: {} of {ran} inputs panicked: {panicked:#?}", panicked.len());
}

#[test]
fn sip_datagram_corpus() {
    run("sip_datagram", acd::fuzzing::sip_datagram);
}

#[test]
fn sip_stream_corpus() {
    run("sip_stream", acd::fuzzing::sip_stream);
}

#[test]
fn sdp_corpus() {
    run("sdp", acd::fuzzing::sdp_offer);
}

#[test]
fn digest_corpus() {
    run("digest", acd::fuzzing::digest_authorization);
}
