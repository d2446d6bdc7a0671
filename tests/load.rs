//! Tier 3, the load tool: `acd-load` against a real daemon on loopback, at
//! small rates (the figures themselves come from `scripts/load-series`, never
//! from timed assertions here).
//!
//! - Calls placed by the tool's trunk are answered by its registered agents,
//!   and RTP flows both ways with nothing lost or crossed between calls.
//! - Busy and unanswered offers roll over to other agents, and the tool sees
//!   acd's CANCEL for each unanswered one.
//! - Callers nobody answers hear acd's music (not silence) until they hang up,
//!   at the full 50 frames a second on every stream (a stream that plays
//!   slowly loses no sequence number, so it is counted apart).
//! - A non-loopback target is refused; an unanswered INVITE is retransmitted.

mod common;

use acd::shell::DaemonHandle;
use common::*;
use serde_json::Value;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_acd-load"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("acd-load-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A daemon on the config `acd-load gen-config` writes for `agents`, with
/// `edit` applied to its text.
fn daemon(agents: usize, edit: impl Fn(String) -> String) -> (std::sync::MutexGuard<'static, ()>, u16, DaemonHandle) {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let music = root().join("config/sounds/music/default.wav");
    let out = tool()
        .args(["gen-config", "--agents", &agents.max(1).to_string(), "--metrics", ""])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--music", music.to_str().unwrap()])
        .output()
        .expect("acd-load gen-config");
    assert!(out.status.success(), "gen-config: {}", String::from_utf8_lossy(&out.stderr));
    let base = free_rtp_range(64);
    let text = String::from_utf8(out.stdout)
        .unwrap()
        .replace("rtp_port_min = 20000", &format!("rtp_port_min = {base}"))
        .replace("rtp_port_max = 60000", &format!("rtp_port_max = {}", base + 128));
    let text = edit(text);
    let path = scratch("cfg").join(format!("acd-{port}.toml"));
    std::fs::write(&path, &text).unwrap();
    let config = acd::config::load(&path).unwrap_or_else(|e| panic!("generated config: {e}\n{text}"));
    let d = DaemonHandle::spawn(config).expect("daemon");
    (guard, port, d)
}

/// Runs the tool; returns its exit code and JSON report.
fn run(port: u16, args: &[&str]) -> (i32, Value) {
    let json = scratch("out").join(format!("report-{port}-{}.json", args.join("_").replace(['/', ' '], "")));
    let out = tool()
        .args(["--target", &format!("127.0.0.1:{port}"), "--quiet", "--json", json.to_str().unwrap()])
        .args(args)
        .output()
        .expect("acd-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON report")).unwrap();
    (out.status.code().unwrap_or(-1), report)
}

fn n(v: &Value, path: &str) -> f64 {
    let mut x = v;
    for k in path.split('.') {
        x = &x[k];
    }
    x.as_f64().unwrap_or_else(|| panic!("no number at {path} in {v}"))
}

#[test]
fn calls_are_answered_by_registered_agents_with_audio_both_ways() {
    let (_g, port, d) = daemon(30, |t| t);
    let (code, r) =
        run(port, &["--agents", "30", "--calls", "30", "--rate", "15", "--duration", "1.5", "--ring-delay-ms", "200"]);
    assert_eq!(code, 0, "a clean run exits 0: {r}");
    assert_eq!(n(&r, "registered"), 30.0);
    assert_eq!(n(&r, "attempted"), 30.0);
    assert_eq!(n(&r, "answered"), 30.0);
    assert_eq!(n(&r, "agent_answered"), 30.0);
    assert_eq!(n(&r, "completed"), 30.0);
    assert_eq!(n(&r, "failed"), 0.0);
    assert_eq!(n(&r, "setup_ms.count"), 30.0);
    // Queue time covers the agents' 200 ms ring delay.
    assert!(n(&r, "queue_ms.p50") >= 200.0, "{r}");
    // Each side of each call sends about 1.3 s of audio (1.5 s less the
    // ring): nearly all of it arrives at the other side, relayed by acd.
    assert!(n(&r, "rtp.relayed") > 30.0 * 2.0 * 50.0, "{r}");
    assert_eq!(n(&r, "rtp.lost"), 0.0, "{r}");
    assert_eq!(n(&r, "rtp.crosstalk"), 0.0, "{r}");
    // Waiting through the ring delay, callers heard acd's music.
    assert!(n(&r, "rtp.acd_audio") > 30.0 * 5.0, "{r}");
    // 200 ms of music is too short to judge; the ~1.3 s of relayed audio on
    // both sides of each call is judged, at full rate.
    assert_eq!(n(&r, "frame_rate.slow_streams"), 0.0, "{r}");
    assert_eq!(n(&r, "frame_rate.music.judged"), 0.0, "{r}");
    assert_eq!(n(&r, "frame_rate.music.short"), 30.0, "{r}");
    assert!(n(&r, "frame_rate.relayed.judged") >= 55.0, "{r}");
    assert!(n(&r, "frame_rate.relayed.p1") > 47.5 && n(&r, "frame_rate.relayed.p50") < 52.0, "{r}");
    assert_drained(&d);
    d.shutdown();
}

#[test]
fn busy_and_unanswered_offers_roll_over_to_other_agents() {
    let (_g, port, d) = daemon(20, |t| t.replace("ring_timeout_secs = 5", "ring_timeout_secs = 1"));
    let (code, r) = run(
        port,
        &[
            "--agents",
            "20",
            "--calls",
            "12",
            "--rate",
            "6",
            "--duration",
            "8",
            "--busy",
            "0.3",
            "--no-answer",
            "0.2",
            "--seed",
            "7",
        ],
    );
    assert_eq!(n(&r, "failed"), 0.0, "{r}");
    assert_eq!(n(&r, "agent_answered"), 12.0, "every caller reached an agent: {r}");
    let busy = n(&r, "offers_busy");
    let let_ring = n(&r, "offers_no_answer");
    assert!(busy > 0.0 && let_ring > 0.0, "{r}");
    // acd cancelled every offer that rang out, and each refusal cost an offer.
    assert_eq!(n(&r, "offers_cancelled"), let_ring, "{r}");
    assert_eq!(n(&r, "offers"), 12.0 + busy + let_ring, "{r}");
    assert_eq!(code, 0, "{r}");
    assert_drained(&d);
    d.shutdown();
}

/// `sip.workers = 2`: rsipstack's receive loops, transactions and the
/// adapter's dialog tasks run on two worker threads while the daemon loop
/// owns the engine and call control on its own. Calls still reach agents,
/// busy and unanswered offers still roll over (CANCEL and 486 handled on a
/// worker while the loop decides), audio is relayed without crosstalk, and
/// every leg, dialog and port is released.
#[test]
fn with_two_sip_workers_calls_roll_over_and_reach_agents_and_nothing_is_left() {
    let (_g, port, d) = daemon(60, |t| {
        t.replacen("[sip]\n", "[sip]\nworkers = 2\n", 1).replace("ring_timeout_secs = 5", "ring_timeout_secs = 1")
    });
    // The daemon runs in this process: its two workers are threads here.
    let workers = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "acd-sip")
        .count();
    assert!(workers >= 2, "sip.workers = 2 starts two acd-sip worker threads, found {workers}");
    // The daemon has 64 RTP port pairs (32 calls at once): 8 calls/s of
    // 3 s stay under that.
    let (code, r) = run(
        port,
        &[
            "--agents",
            "60",
            "--calls",
            "24",
            "--rate",
            "8",
            "--duration",
            "3",
            "--busy",
            "0.2",
            "--no-answer",
            "0.1",
            "--seed",
            "3",
        ],
    );
    assert_eq!(n(&r, "failed"), 0.0, "{r}");
    assert_eq!(n(&r, "agent_answered"), 24.0, "every caller reached an agent: {r}");
    let busy = n(&r, "offers_busy");
    let let_ring = n(&r, "offers_no_answer");
    assert!(busy > 0.0 && let_ring > 0.0, "{r}");
    assert_eq!(n(&r, "offers_cancelled"), let_ring, "{r}");
    assert_eq!(n(&r, "offers"), 24.0 + busy + let_ring, "{r}");
    assert_eq!(n(&r, "rtp.lost"), 0.0, "{r}");
    assert_eq!(n(&r, "rtp.crosstalk"), 0.0, "{r}");
    assert_eq!(code, 0, "{r}");
    assert_drained(&d);
    d.shutdown();
}

#[test]
fn waiting_callers_hear_music_until_they_hang_up() {
    let (_g, port, d) = daemon(1, |t| t);
    let (code, r) = run(port, &["--agents", "0", "--calls", "20", "--rate", "20", "--duration", "3"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(n(&r, "answered"), 20.0);
    assert_eq!(n(&r, "agent_answered"), 0.0);
    assert_eq!(n(&r, "offers"), 0.0);
    // 20 callers × 3 s × 50 frames/s of music, nearly all with sound in it.
    let audio = n(&r, "rtp.acd_audio");
    assert!(audio > 20.0 * 3.0 * 50.0 * 0.9, "{r}");
    assert!(n(&r, "rtp.acd_silent") < audio * 0.05, "{r}");
    assert_eq!(n(&r, "rtp.lost"), 0.0);
    assert!(n(&r, "pacing_ms.count") > 1000.0, "{r}");
    // Every caller's music stream, judged over its ~3 s, is at 50 frames/s
    // (not slowed down), and the frames add up to 50/s of the streams' lives.
    assert_eq!(n(&r, "frame_rate.music.judged"), 20.0, "{r}");
    assert_eq!(n(&r, "frame_rate.music.slow"), 0.0, "{r}");
    assert_eq!(n(&r, "frame_rate.slow_streams"), 0.0, "{r}");
    assert_eq!(n(&r, "frame_rate.relayed.judged"), 0.0, "{r}");
    let (p1, p50) = (n(&r, "frame_rate.music.p1"), n(&r, "frame_rate.music.p50"));
    assert!(p1 > 47.5 && (48.5..=51.5).contains(&p50), "{r}");
    let share = n(&r, "frame_rate.received") / n(&r, "frame_rate.expected");
    assert!((0.9..=1.02).contains(&share), "received / expected {share}: {r}");
    assert_drained(&d);
    d.shutdown();
}

#[test]
fn a_non_loopback_target_is_refused() {
    let out = tool().args(["--target", "192.0.2.1:5060", "--calls", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address") && err.contains("--allow-remote"), "{err}");
    let out = tool().args(["--busy", "0.8", "--no-answer", "0.5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "shares above 1 are refused");
    let out = tool().args(["--min-frame-rate", "60"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a threshold above 50 frames/s is refused");
}

#[test]
fn an_unanswered_invite_is_retransmitted_and_reported_unfinished() {
    // A socket that swallows everything: the tool's timer A fires at 0.5 s
    // and 1.5 s; the time limit ends the run before timer B.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sink.local_addr().unwrap().port();
    let (code, r) = run(port, &["--agents", "0", "--calls", "2", "--rate", "10", "--time-limit", "2"]);
    assert_eq!(code, 1, "calls left unanswered are not a clean run");
    assert_eq!(n(&r, "answered"), 0.0);
    assert_eq!(n(&r, "unfinished"), 2.0);
    assert!(n(&r, "retransmissions_sent") >= 4.0, "{r}");
    let mut buf = [0u8; 4096];
    sink.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let (len, _) = sink.recv_from(&mut buf).unwrap();
    assert!(buf[..len].starts_with(b"INVITE sip:100@"), "{}", String::from_utf8_lossy(&buf[..len]));
}

/// A stand-in for acd that answers one call and plays its music at
/// `frames_per_sec`, until the caller's BYE.
fn slow_music_peer(sip: UdpSocket, frames_per_sec: f64) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtp_port = rtp.local_addr().unwrap().port();
        let mut buf = [0u8; 4096];
        sip.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (len, from) = sip.recv_from(&mut buf).expect("an INVITE");
        let invite = String::from_utf8_lossy(&buf[..len]).to_string();
        assert!(invite.starts_with("INVITE "), "{invite}");
        let port: u16 = invite
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|m| m.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .expect("an audio port in the INVITE's SDP");
        let sdp = format!(
            "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
        );
        let me = sip.local_addr().unwrap();
        let ok = reply(&invite, &format!("Contact: <sip:acd@{me}>\r\n"), &sdp);
        sip.send_to(ok.as_bytes(), from).unwrap();
        // Music, evenly spaced and in sequence (nothing lost), but slow.
        sip.set_nonblocking(true).unwrap();
        let gap = Duration::from_secs_f64(1.0 / frames_per_sec);
        let mut pkt = [0u8; 172];
        pkt[0] = 0x80;
        for (i, b) in pkt[12..].iter_mut().enumerate() {
            *b = if i % 2 == 0 { 0x10 } else { 0x90 };
        }
        let mut sent = 0u64;
        for seq in 0u16..1000 {
            pkt[2..4].copy_from_slice(&seq.to_be_bytes());
            pkt[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
            rtp.send_to(&pkt, ("127.0.0.1", port)).unwrap();
            sent += 1;
            std::thread::sleep(gap);
            if let Ok((len, from)) = sip.recv_from(&mut buf) {
                let req = String::from_utf8_lossy(&buf[..len]).to_string();
                if req.starts_with("BYE ") {
                    sip.send_to(reply(&req, "", "").as_bytes(), from).unwrap();
                    break;
                }
            }
        }
        sent
    })
}

/// A 200 OK to `req`, echoing its Via, From, To (with a tag), Call-ID, CSeq.
fn reply(req: &str, extra: &str, sdp: &str) -> String {
    let mut s = String::from("SIP/2.0 200 OK\r\n");
    for line in req.lines() {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        match name.as_str() {
            "via" | "from" | "call-id" | "cseq" => s.push_str(&format!("{line}\r\n")),
            "to" if line.contains("tag=") => s.push_str(&format!("{line}\r\n")),
            "to" => s.push_str(&format!("{line};tag=peer\r\n")),
            _ => {}
        }
    }
    s.push_str(extra);
    if sdp.is_empty() {
        s.push_str("Content-Length: 0\r\n\r\n");
    } else {
        s.push_str(&format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", sdp.len()));
    }
    s
}

#[test]
fn music_at_34_frames_a_second_is_a_slow_stream_and_fails_the_run() {
    // Nothing is lost (every sequence number arrives), so only the frame
    // rate tells that the music plays at two thirds of its speed.
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sip.local_addr().unwrap().port();
    let peer = slow_music_peer(sip, 34.0);
    let (code, r) = run(port, &["--agents", "0", "--calls", "1", "--duration", "2.5", "--time-limit", "10"]);
    let sent = peer.join().unwrap();
    assert!(sent > 50, "{sent}");
    assert_eq!(n(&r, "answered"), 1.0, "{r}");
    assert_eq!(n(&r, "failed"), 0.0, "{r}");
    assert_eq!(n(&r, "rtp.lost"), 0.0, "{r}");
    assert_eq!(n(&r, "frame_rate.music.judged"), 1.0, "{r}");
    assert_eq!(n(&r, "frame_rate.music.slow"), 1.0, "{r}");
    assert_eq!(n(&r, "frame_rate.slow_streams"), 1.0, "{r}");
    // The peer sleeps 1/34 s between frames, so it cannot send faster.
    assert!(n(&r, "frame_rate.music.p50") <= 34.5, "{r}");
    assert!(n(&r, "frame_rate.received") < n(&r, "frame_rate.expected") * 0.8, "{r}");
    assert_eq!(r["clean"], Value::Bool(false), "{r}");
    assert_eq!(code, 1, "a slow stream fails the run: {r}");
}

/// `gen-config --rate R --call-secs D` sizes the RTP range for the load it
/// advertises (both legs of every call up at once, with room to spare), and
/// acd accepts the config; without `--rate` it is the widest range.
#[test]
fn gen_config_sizes_the_rtp_range_for_the_rate_it_is_given() {
    let range = |args: &[&str]| -> (u32, u32, String) {
        let out = tool().arg("gen-config").args(args).output().expect("gen-config");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let config = acd::config::from_toml_str("gen.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        (config.media.rtp_port_min as u32, config.media.rtp_port_max as u32, text)
    };
    let (lo, hi, text) = range(&["--rate", "500", "--call-secs", "4"]);
    // 500/s x (4 s + 1 s) = 2,500 calls, 5,000 legs: at least that many pairs.
    assert!((hi - lo) / 2 >= 5_000, "{lo}-{hi}");
    assert!((hi - lo) / 2 <= 8_000, "{lo}-{hi}: not sized, just wide");
    assert!(text.contains("open-file limit"), "{text}");
    let (lo2, hi2, _) = range(&["--rate", "2000", "--call-secs", "4"]);
    assert!(hi2 - lo2 > hi - lo, "a higher rate gets a wider range");
    assert!(hi2 <= 65_535);
    assert_eq!(range(&[]).0..range(&[]).1, 20_000..60_000);
}
