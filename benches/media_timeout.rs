//! The media timeout's cost in one shard (sans-IO core, no sockets):
//! 10,000 legs each sending a 20 ms packet, `timed_out` polled every 1 ms
//! (the plane's loop polls it after every wake-up; music wakes it each ms).
//!
//! ```text
//! cargo bench --bench media_timeout
//! ```
//!
//! Printed per scenario: nanoseconds per `on_rtp`, per `timed_out` poll
//! (mean) and the longest single poll (a long one delays the music slots).
//! Scenarios: `bridged` (5,000 pairs talking), `waiting` (10,000 callers on
//! music talking), `waiting-silent` (never sent RTP). Without `--bench` it
//! runs 200 legs for 2 s of shard time as a smoke test.

use acd::media::core::{LegSetup, Shard};
use acd::media::g711::Codec;
use std::net::SocketAddr;
use std::time::Instant;

fn packet(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; 12 + 160];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

fn run(name: &str, legs: u64, secs: u64, bridged: bool, talking: bool) {
    let mut s = Shard::new(vec![], 5, 0);
    let addr = |k: u64| -> SocketAddr { SocketAddr::from(([127, 0, 0, 1], 10000 + (k % 50000) as u16)) };
    for k in 0..legs {
        s.open(k, LegSetup { codec: Codec::Pcmu, dtmf_pt: None, remote: Some(addr(k)), ssrc: k as u32, seq: 0, ts: 0 });
        if !bridged {
            s.hold(k, "default");
        }
    }
    if bridged {
        for k in (0..legs).step_by(2) {
            s.bridge(k, k + 1, 0);
        }
    }
    let mut buf = packet(0, 0);
    let (mut rtp_ns, mut rtp_n, mut poll_ns, mut poll_n, mut poll_max, mut reported) =
        (0u128, 0u64, 0u128, 0u64, 0u128, 0);
    for ms in 0..secs * 1000 {
        let now = ms * 1000;
        if talking {
            // Each leg talks on its own 20 ms phase.
            let t0 = Instant::now();
            for k in (ms % 20..legs).step_by(20) {
                buf.copy_from_slice(&packet(k as u32, (ms / 20) as u16));
                let len = buf.len();
                let _ = s.on_rtp(now, k, addr(k), &mut buf, len);
                rtp_n += 1;
            }
            rtp_ns += t0.elapsed().as_nanos();
        }
        let t0 = Instant::now();
        reported += s.timed_out(now).len();
        let d = t0.elapsed().as_nanos();
        poll_ns += d;
        poll_n += 1;
        poll_max = poll_max.max(d);
    }
    println!(
        "media_timeout {name:<15} legs={legs} shard_secs={secs} on_rtp={:.0} ns/packet timed_out={:.0} ns/poll (max {:.1} µs) reported={reported}",
        rtp_ns as f64 / rtp_n.max(1) as f64,
        poll_ns as f64 / poll_n as f64,
        poll_max as f64 / 1000.0,
    );
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (legs, secs) = if bench { (10_000, 30) } else { (200, 2) };
    run("bridged", legs, secs, true, true);
    run("waiting", legs, secs, false, true);
    run("waiting-silent", legs, secs, false, false);
}
