//! Hold music at scale: N waiting callers, each with its own RTP socket,
//! fed by the real media plane (shard threads, one 1 ms slot clock each).
//!
//! ```text
//! cargo bench --bench hold_music                 # 1,000 and 10,000 listeners, 10 s each
//! cargo bench --bench hold_music -- --bench 5000 # one size of your choice
//! ```
//!
//! Every listener's RTP goes to one of 16 loopback sink sockets that nobody
//! reads. On loopback the sender's `sendto` also carries the kernel's
//! receive path up to the (full) sink socket, so the CPU figure is acd's
//! cost per packet plus part of what the receiving host would spend.
//!
//! Printed per size: packets per second sent (and the ideal, 50 per
//! listener), pacing lateness (how long after its 1 ms slot each frame left:
//! p50 / p99 / max, from the shards' histograms, 100 µs buckets), slots
//! skipped, and the process's CPU time per second of wall time.
//!
//! `--talk`: each listener's phone also sends 50 RTP frames/s to its leg
//! (from its sink socket), as trunks do while a caller waits; then
//! `media_threads_cpu` (acd's shard threads alone) is the figure to read.
//!
//! Without `--bench` (e.g. under `cargo test --benches`) it runs 200
//! listeners for one second as a smoke test.

use acd::media::audio::{load_wav, Clip};
use acd::media::core::{MusicClass, ShardStats};
use acd::media::g711::Codec;
use acd::media::plane::{Plane, PlaneSettings};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// The process's (user, system) CPU seconds so far.
fn cpu_secs() -> (f64, f64) {
    // utime and stime (fields 14 and 15) in clock ticks of 1/100 s.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) / 100.0, t(12) / 100.0)
}

/// CPU seconds (user + system) of this process's `acd-media-*` threads: acd's
/// own share, apart from the benchmark's talkers.
fn media_cpu_secs() -> f64 {
    let mut total = 0.0;
    for t in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("acd-media") {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or_default();
        let f: Vec<&str> = after.split_whitespace().collect();
        let v = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        total += (v(11) + v(12)) / 100.0;
    }
    total
}

/// Plays the callers' side: every listener's "phone" sends a 20 ms RTP
/// frame to its leg every 20 ms (as trunks do while a caller waits), from
/// the sink sockets, spread over 1 ms slots like acd's own music.
fn talk(sinks: Vec<UdpSocket>, legs: Vec<SocketAddr>, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let start = Instant::now();
    let mut seq = 0u16;
    let mut ms = 0u64;
    let mut pkt = [0u8; 172];
    pkt[0] = 0x80;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let due = Duration::from_millis(ms);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let slot = (ms % 20) as usize;
        if slot == 0 {
            seq = seq.wrapping_add(1);
        }
        pkt[2..4].copy_from_slice(&seq.to_be_bytes());
        pkt[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
        for (i, to) in legs.iter().enumerate().skip(slot).step_by(20) {
            // The same sink per listener throughout (its latched address).
            let sink = &sinks[i % sinks.len()];
            pkt[8..12].copy_from_slice(&(i as u32).to_be_bytes());
            sink.send_to(&pkt, to).ok();
        }
        ms += 1;
    }
}

fn diff(a: &ShardStats, b: &ShardStats) -> ShardStats {
    ShardStats {
        generated: b.generated - a.generated,
        relayed: b.relayed - a.relayed,
        received: b.received - a.received,
        dropped: b.dropped - a.dropped,
        skipped_slots: b.skipped_slots - a.skipped_slots,
        lateness: b.lateness.iter().zip(a.lateness.iter().chain(std::iter::repeat(&0))).map(|(x, y)| x - y).collect(),
    }
}

fn max_lateness_us(s: &ShardStats) -> u64 {
    s.lateness.iter().rposition(|n| *n > 0).map(|i| (i as u64 + 1) * 100).unwrap_or(0)
}

fn run(n: usize, secs: u64, music: &Clip, rtcp: bool, talking: bool) {
    let threads = std::thread::available_parallelism().map(|x| x.get()).unwrap_or(1).min(4);
    let (tx, _rx) = tokio::sync::mpsc::channel(acd::media::plane::EVENT_CAPACITY);
    let base = 20000u16;
    let mut plane = Plane::start(
        PlaneSettings {
            rtp_ip: "127.0.0.1".parse().unwrap(),
            port_min: base,
            port_max: base + (2 * n + 400).min(40000) as u16,
            threads,
            media_timeout_secs: 0,
            rtcp,
        },
        vec![MusicClass { name: "default".into(), clip: music.clone() }],
        tx,
    )
    .expect("media plane");
    let sinks: Vec<UdpSocket> = (0..16).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let addrs: Vec<SocketAddr> = sinks.iter().map(|s| s.local_addr().unwrap()).collect();
    let t0 = Instant::now();
    let mut legs = Vec::new();
    for i in 0..n as u64 {
        legs.push(plane.open(i, i, Codec::Pcmu, None, Some(addrs[i as usize % addrs.len()])).expect("open a leg"));
        plane.hold(i, "default");
    }
    let setup = t0.elapsed();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let talker = talking.then(|| {
        let sinks: Vec<UdpSocket> = sinks.iter().map(|s| s.try_clone().unwrap()).collect();
        let stop = stop.clone();
        std::thread::spawn(move || talk(sinks, legs, stop))
    });
    // Warm up, then measure between two publications of the shards' figures.
    std::thread::sleep(Duration::from_millis(2500));
    let a = plane.published();
    let cpu_a = cpu_secs();
    let media_a = media_cpu_secs();
    let wall_a = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let b = plane.published();
    let cpu_b = cpu_secs();
    let (user, sys) = (cpu_b.0 - cpu_a.0, cpu_b.1 - cpu_a.1);
    let cpu = user + sys;
    let media = media_cpu_secs() - media_a;
    let wall = wall_a.elapsed().as_secs_f64();
    let d = diff(&a.stats, &b.stats);
    let span = (b.at_us - a.at_us) as f64 / 1e6;
    let pps = d.generated as f64 / span;
    let rx = d.received as f64 / span;
    println!(
        "hold_music listeners={n:>6} rtcp={rtcp} threads={threads} pps={pps:>9.0} (ideal {:>7}) lateness p50={:.1}ms p99={:.1}ms \
         max={:.1}ms skipped_slots={} dropped={} cpu={:.2} s/s (sys {:.0} %) cpu_per_packet={:.2}us \
         talk={talking} received/s={rx:.0} media_threads_cpu={:.2} s/s setup={:.2}s listeners_seen={}",
        n * 50,
        d.lateness_quantile_us(0.50) as f64 / 1000.0,
        d.lateness_quantile_us(0.99) as f64 / 1000.0,
        max_lateness_us(&d) as f64 / 1000.0,
        d.skipped_slots,
        d.dropped,
        cpu / wall,
        100.0 * sys / cpu.max(1e-9),
        cpu * 1e6 / d.generated.max(1) as f64,
        media / wall,
        setup.as_secs_f64(),
        b.listeners,
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(t) = talker {
        t.join().ok();
    }
    for i in 0..n as u64 {
        plane.close(i);
    }
    plane.shutdown();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let music_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sounds/music/default.wav");
    let music = Clip::from_pcm(&load_wav(&music_path).expect("shipped music"));
    if !bench {
        run(200, 1, &music, true, true);
        return;
    }
    // `--no-rtcp`: reserve RTCP ports without binding them (half the
    // descriptors: 10,000 legs with RTCP need more than 20,000).
    let rtcp = !args.iter().any(|a| a == "--no-rtcp");
    // `--talk`: the callers send RTP to acd too (50 frames/s each).
    let talking = args.iter().any(|a| a == "--talk");
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![1_000, 10_000] } else { sizes };
    for n in sizes {
        run(n, 10, &music, rtcp, talking);
    }
}
