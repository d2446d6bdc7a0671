//! Tier 3, media: what callers and agents hear, with pjsua2 softphones
//! (`tests/interop/ua.py`) recording the audio they receive.
//!
//! - A waiting caller hears the queue's music: the recording is not silence
//!   and its spectrum matches the source file's.
//! - A bridged call carries audio both ways: each side plays its own tone,
//!   and the other side's recording holds that tone's frequency.
//! - RTP ports go back to the pool when a leg ends and are used again; with
//!   none free a new call gets 503.
//! - An agent whose phone dies mid-call (no BYE, no RTP) is freed by the
//!   media timeout, and both sides are hung up.
//! - An offer without G.711 gets 488.

mod common;

use acd::shell::DaemonHandle;
use common::audio::*;
use common::*;
use serde_json::Value;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("acd-media-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A daemon on `queue_q(settings)` plus extra tables (`[media]`, `[music]`).
fn media_daemon(settings: &str, extra: &str) -> (std::sync::MutexGuard<'static, ()>, u16, DaemonHandle) {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let body = format!("{}\n{extra}\n", queue_q(settings));
    let d = DaemonHandle::spawn(config(port, &body)).expect("daemon");
    (guard, port, d)
}

/// The newest `media` event (it may come before or after `answered`).
fn media_event(ua: &mut Ua) -> Value {
    if let Some(v) = ua.seen.iter().rev().find(|v| v["event"] == "media") {
        let v = v.clone();
        ua.seen.retain(|x| x["event"] != "media");
        return v;
    }
    let v = ua.expect("media", Duration::from_secs(5));
    ua.seen.retain(|x| x["event"] != "media");
    v
}

fn rtp_port(media_event: &Value) -> u16 {
    let a = media_event["remote_rtp"].as_str().unwrap_or_else(|| panic!("no remote_rtp in {media_event}"));
    a.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn a_waiting_caller_hears_the_queues_music() {
    let dir = scratch("music");
    let source = dir.join("chord.wav");
    // A steady three-note chord: its spectrum is the same in any window.
    write_tone_wav(&source, 8000, &[440.0, 1100.0, 2300.0], 6.0);
    let base = free_rtp_range(4);
    let (_g, port, d) = media_daemon(
        r#"members = [{ agent = "anna" }]"#, // anna is not registered: the caller waits
        &format!(
            "[media]\nrtp_port_min = {base}\nrtp_port_max = {}\n\n[music.default]\nfile = \"{}\"\n",
            base + 7,
            source.display()
        ),
    );
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    let rtp = rtp_port(&media_event(&mut trunk));
    assert!(
        (base..base + 8).contains(&rtp) && rtp.is_multiple_of(2),
        "acd's RTP port {rtp} outside {base}..{}",
        base + 7
    );

    let (heard, rate) = record(&mut trunk, 1, &dir.join("heard.wav"), 3.0);
    let (src, src_rate) = read_wav(&source);
    assert!(rms(&heard) > 0.05, "the caller heard silence (rms {})", rms(&heard));
    let sim = spectrum_similarity(&heard, rate, &src, src_rate);
    assert!(sim > 0.9, "what the caller heard does not sound like the music: similarity {sim}");
    for f in [440.0, 1100.0, 2300.0] {
        let r = tone_ratio(&heard, rate, f);
        assert!(r > 0.15, "{f} Hz is {r} of the heard power");
    }
    // And it is not some other sound: a different chord does not match.
    let other: Vec<f32> =
        (0..16000).map(|i| ((i as f32) * 2.0 * std::f32::consts::PI * 700.0 / 8000.0).sin()).collect();
    assert!(spectrum_similarity(&heard, rate, &other, 8000) < 0.3);

    trunk.send("hangup");
    trunk.expect("disconnected", Duration::from_secs(5));
    assert_drained(&d);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_bridged_call_carries_audio_both_ways() {
    let dir = scratch("bridge");
    let (_g, port, d) = media_daemon(r#"members = [{ agent = "anna" }]"#, "");
    let mut anna = Ua::agent("anna", port, "anna-pw", "answer");
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    let inc = anna.expect("incoming", Duration::from_secs(5));
    let anna_call = inc["call"].as_i64().unwrap();
    anna.expect("answered", Duration::from_secs(5));

    trunk.send("tone 1 700");
    anna.send(&format!("tone {anna_call} 1500"));
    trunk.expect("playing", Duration::from_secs(5));
    anna.expect("playing", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    anna.send(&format!("record {anna_call} {}", dir.join("anna.wav").display()));
    anna.expect("recording", Duration::from_secs(5));
    let (caller_heard, rate) = record(&mut trunk, 1, &dir.join("caller.wav"), 2.5);
    anna.send(&format!("stoprecord {anna_call}"));
    anna.expect("recorded", Duration::from_secs(5));
    let (agent_heard, arate) = read_wav(&dir.join("anna.wav"));
    let agent_heard = &agent_heard[(arate as usize * 3 / 10).min(agent_heard.len())..];

    let (to_caller, echo_c) = (tone_ratio(&caller_heard, rate, 1500.0), tone_ratio(&caller_heard, rate, 700.0));
    let (to_agent, echo_a) = (tone_ratio(agent_heard, arate, 700.0), tone_ratio(agent_heard, arate, 1500.0));
    assert!(to_caller > 0.8, "the caller should hear the agent's 1500 Hz: {to_caller} (700 Hz: {echo_c})");
    assert!(to_agent > 0.8, "the agent should hear the caller's 700 Hz: {to_agent} (1500 Hz: {echo_a})");
    assert!(echo_c < 0.05 && echo_a < 0.05, "each side hears only the other: {echo_c} {echo_a}");

    trunk.send("hangup");
    trunk.expect("disconnected", Duration::from_secs(5));
    anna.expect("disconnected", Duration::from_secs(5));
    assert_drained(&d);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn rtp_ports_are_released_with_the_leg_and_reused_and_none_free_is_503() {
    // Two pairs: exactly one bridged call (caller leg + agent leg).
    let base = free_rtp_range(2);
    let (_g, port, d) = media_daemon(
        r#"members = [{ agent = "anna" }]"#,
        &format!("[media]\nrtp_port_min = {base}\nrtp_port_max = {}\n", base + 3),
    );
    let mut anna = Ua::agent("anna", port, "anna-pw", "answer");
    let mut trunk = trunk();
    let mut caller_ports = Vec::new();
    for round in 0..3 {
        trunk.send(&format!("call {}", uri("100", port)));
        trunk.expect("answered", Duration::from_secs(5));
        caller_ports.push(rtp_port(&media_event(&mut trunk)));
        anna.expect("answered", Duration::from_secs(5));
        let s = d.snapshot();
        assert_eq!((s.media_legs, s.rtp_ports_in_use), (2, 2), "round {round}: {s:?}");
        if round == 0 {
            // The range is full: the next caller is told to come back.
            let mut other = Ua::spawn("trunk2", &[]);
            other.send(&format!("call {}", uri("100", port)));
            let ev = other.expect("disconnected", Duration::from_secs(5));
            assert_eq!(ev["code"].as_i64(), Some(503), "{ev}");
        }
        trunk.send("hangup");
        trunk.expect("disconnected", Duration::from_secs(5));
        anna.expect("disconnected", Duration::from_secs(5));
        assert_drained(&d);
        // The sockets are really closed: another program can bind them.
        for p in [base, base + 1, base + 2, base + 3] {
            let deadline = Instant::now() + Duration::from_secs(2);
            while UdpSocket::bind(("127.0.0.1", p)).is_err() {
                assert!(Instant::now() < deadline, "port {p} still bound after the call");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    assert!(caller_ports.iter().all(|p| *p == base || *p == base + 2), "{caller_ports:?} outside {base}..");
}

#[test]
fn an_agent_whose_phone_dies_is_freed_by_the_media_timeout() {
    let (_g, port, d) = media_daemon(r#"members = [{ agent = "anna" }]"#, "[media]\ntimeout_secs = 5\n");
    let mut anna = Ua::agent("anna", port, "anna-pw", "answer");
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    anna.expect("answered", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    // The phone dies: no BYE, no more RTP.
    anna.child.kill().unwrap();
    let died = Instant::now();
    let ev = trunk.expect("disconnected", Duration::from_secs(15));
    let after = died.elapsed();
    assert!(after >= Duration::from_secs(4), "hung up after {after:?}, before the 5 s timeout");
    assert_eq!(ev["answered"], true, "{ev}");
    drop(anna);
    // The dead phone's leg gets no answer to its BYE: wait for it to time out.
    let deadline = Instant::now() + Duration::from_secs(40);
    while d.snapshot().calls > 0 {
        assert!(Instant::now() < deadline, "{:?}", d.snapshot());
        std::thread::sleep(Duration::from_millis(200));
    }
    // The agent is free again: her new phone is rung for the next call.
    let mut anna = Ua::agent("anna", port, "anna-pw", "answer");
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    anna.expect("answered", Duration::from_secs(5));
    trunk.send("hangup");
    anna.expect("disconnected", Duration::from_secs(5));
    // The BYE to the dead phone ends by its transaction timeout (32 s).
    let deadline = Instant::now() + Duration::from_secs(40);
    while d.snapshot().stack.dialogs > 0 {
        assert!(Instant::now() < deadline, "{:?}", d.snapshot());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_drained(&d);
}

#[test]
fn an_offer_without_g711_is_488() {
    let (_g, port, d) = media_daemon(r#"members = [{ agent = "anna" }]"#, "");
    let mut trunk = Ua::spawn("trunk", &["--codecs", "speex/8000"]);
    trunk.send(&format!("call {}", uri("100", port)));
    let ev = trunk.expect("disconnected", Duration::from_secs(5));
    assert_eq!(ev["code"].as_i64(), Some(488), "{ev}");
    assert_drained(&d);
}

#[test]
fn waiting_callers_hear_their_position_between_the_music() {
    let dir = scratch("announce");
    let music = dir.join("tone.wav");
    write_tone_wav(&music, 8000, &[440.0], 4.0);
    let prompts = root().join("config/sounds/prompts/en");
    let (_g, port, d) = media_daemon(
        "members = [{ agent = \"anna\" }]\nannounce_every_secs = 10",
        &format!("[media]\nprompts = \"{}\"\n\n[music.default]\nfile = \"{}\"\n", prompts.display(), music.display()),
    );
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    let (heard, rate) = record(&mut trunk, 1, &dir.join("heard.wav"), 17.0);
    // Quarter-second windows: music (a pure 440 Hz) or something else.
    let win = rate as usize / 4;
    let music_share: Vec<f32> =
        heard.chunks(win).filter(|w| w.len() == win).map(|w| tone_ratio(w, rate, 440.0)).collect();
    let t = |i: usize| 0.3 + i as f32 * 0.25; // seconds since answer
    let first_speech = music_share.iter().position(|r| *r < 0.3).map(t);
    let speech_windows = music_share.iter().filter(|r| **r < 0.3).count();
    // Music until the first announcement at 10 s, then several seconds of
    // speech ("you are caller number one in the queue..."), then music again.
    let first = first_speech.unwrap_or_else(|| panic!("no announcement heard: {music_share:?}"));
    assert!((9.0..11.5).contains(&first), "first announcement at {first} s: {music_share:?}");
    assert!(speech_windows as f32 * 0.25 >= 2.0, "announcement of {} s: {music_share:?}", speech_windows as f32 * 0.25);
    let last = *music_share.last().unwrap();
    assert!(last > 0.8, "music did not come back after the announcement: {music_share:?}");
    // The speech is the shipped voice: louder than a dropout, not silence.
    let speech: Vec<f32> = heard
        .chunks(win)
        .zip(&music_share)
        .filter(|(w, r)| **r < 0.3 && w.len() == win)
        .flat_map(|(w, _)| w.iter().copied())
        .collect();
    assert!(rms(&speech) > 0.02, "the announcement was silent: rms {}", rms(&speech));
    trunk.send("hangup");
    trunk.expect("disconnected", Duration::from_secs(5));
    assert_drained(&d);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn waiting_callers_hear_the_queues_recorded_announcement_between_the_music() {
    let dir = scratch("periodic");
    let music = dir.join("tone.wav");
    write_tone_wav(&music, 8000, &[440.0], 4.0);
    // The "recording": 2 s of 1 kHz, told apart from the music by frequency.
    let message = dir.join("message.wav");
    write_tone_wav(&message, 8000, &[1000.0], 2.0);
    let (_g, port, d) = media_daemon(
        &format!(
            "members = [{{ agent = \"anna\" }}]\nperiodic_announce = [\"{}\"]\nperiodic_announce_every_secs = 10",
            message.display()
        ),
        &format!("[music.default]\nfile = \"{}\"\n", music.display()),
    );
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    let (heard, rate) = record(&mut trunk, 1, &dir.join("heard.wav"), 14.0);
    let win = rate as usize / 4;
    let windows: Vec<&[f32]> = heard.chunks(win).filter(|w| w.len() == win).collect();
    let t = |i: usize| 0.3 + i as f32 * 0.25; // seconds since answer
    let message_at: Vec<f32> =
        windows.iter().enumerate().filter(|(_, w)| tone_ratio(w, rate, 1000.0) > 0.8).map(|(i, _)| t(i)).collect();
    let first = *message_at.first().unwrap_or_else(|| panic!("the recorded announcement was not heard"));
    assert!((9.0..11.5).contains(&first), "announcement at {first} s");
    let secs = message_at.len() as f32 * 0.25;
    assert!((1.25..=2.5).contains(&secs), "heard {secs} s of the 2 s announcement");
    // Music before it and after it.
    let music = |i: usize| tone_ratio(windows[i], rate, 440.0) > 0.8;
    assert!(music(4) && music(windows.len() - 1), "music around the announcement");
    trunk.send("hangup");
    trunk.expect("disconnected", Duration::from_secs(5));
    assert_drained(&d);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_agent_can_hold_and_resume_without_the_media_timeout_cutting_the_call() {
    let dir = scratch("hold");
    let (_g, port, d) = media_daemon(r#"members = [{ agent = "anna" }]"#, "[media]\ntimeout_secs = 5\n");
    let mut anna = Ua::agent("anna", port, "anna-pw", "answer");
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    let call = anna.expect("incoming", Duration::from_secs(5))["call"].as_i64().unwrap();
    anna.expect("answered", Duration::from_secs(5));
    anna.seen.clear();
    // Hold: a re-INVITE with a=sendonly, answered by acd (recvonly).
    anna.send(&format!("hold {call}"));
    let m = anna.expect("media", Duration::from_secs(5));
    assert_eq!(m["status"], "local_hold", "acd accepted the hold: {m}");
    // Held for longer than the media timeout: the call stays up.
    trunk.quiet("disconnected", Duration::from_secs(8));
    anna.send(&format!("unhold {call}"));
    let m = anna.expect("media", Duration::from_secs(5));
    assert_eq!(m["status"], "active", "{m}");
    // Audio flows again after the resume.
    trunk.send("tone 1 700");
    trunk.expect("playing", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    let (heard, rate) = record(&mut anna, call, &dir.join("anna.wav"), 2.0);
    let r = tone_ratio(&heard, rate, 700.0);
    assert!(r > 0.8, "after the resume the agent should hear the caller: {r}");
    trunk.send("hangup");
    anna.expect("disconnected", Duration::from_secs(5));
    assert_drained(&d);
    std::fs::remove_dir_all(&dir).ok();
}
