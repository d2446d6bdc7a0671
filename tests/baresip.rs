//! Debian's baresip against acd's default SIP settings: it must register
//! (baresip 1.0 failed acd's former MD5 + SHA-256 double challenge with
//! "Register: Function not implemented") and be refused with a wrong
//! password; as an agent it answers, holds past the media timeout, resumes
//! and hangs up, with its audio and the caller's checked by frequency.
//! Skipped with a message when `baresip` is not installed (the README test
//! command installs it).
mod common;

use common::audio::*;

use common::baresip::{installed, Audio, Baresip};
use common::*;
use std::time::{Duration, Instant};

/// baresip as agent `user` with `password`, registering to acd on `port`.
fn baresip(user: &str, password: &str, port: u16) -> Baresip {
    baresip_with(user, password, port, Audio::default())
}

fn baresip_with(user: &str, password: &str, port: u16, audio: Audio) -> Baresip {
    Baresip::agent("i", user, password, port, audio)
}

#[test]
fn baresip_registers_with_the_defaults_and_a_wrong_password_is_refused() {
    if !installed() {
        eprintln!("baresip not installed: skipped (scripts/test installs it)");
        return;
    }
    let (_g, port, d) = daemon_q(r#"members = [{ agent = "anna" }]"#);
    // Wrong password: never registered, and baresip says why.
    let wrong = baresip("bert", "nope", port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !wrong.log().contains("403") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(wrong.log().contains("403"), "{}", wrong.log());
    assert_eq!(d.snapshot().registered_contacts, 0);
    drop(wrong);

    let anna = baresip("anna", "anna-pw", port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.snapshot().registered_contacts == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(d.snapshot().registered_contacts, 1, "baresip did not register:\n{}", anna.log());

    // Unregisters on exit: the binding goes.
    drop(anna);
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.snapshot().registered_contacts != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_drained(&d);
}

/// baresip (auto answer) as the agent: it answers acd's INVITE, the caller
/// and baresip hear each other (tones checked by frequency on both sides),
/// baresip holds the call longer than the media timeout (the caller hears
/// the queue's music meanwhile, not baresip and not silence) and resumes it
/// (its re-INVITEs answered by acd, the call not cut, baresip heard again),
/// and baresip's hang-up ends the caller's call.
#[test]
fn baresip_answers_holds_resumes_and_hangs_up() {
    if !installed() {
        eprintln!("baresip not installed: skipped (scripts/test installs it)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("acd-baresip-call-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("agent-tone.wav");
    write_tone_wav(&source, 8000, &[600.0], 30.0);
    let music = dir.join("music.wav");
    write_tone_wav(&music, 8000, &[440.0], 4.0);
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let text = config_text(
        port,
        &format!(
            "{}\n[media]\ntimeout_secs = 5\n\n[music.default]\nfile = \"{}\"\n",
            queue_q(r#"members = [{ agent = "anna" }]"#),
            music.display()
        ),
    );
    let d =
        acd::shell::DaemonHandle::spawn(acd::config::from_toml_str("baresip.toml", &text).unwrap()).expect("daemon");
    let mut anna = baresip_with("anna", "anna-pw", port, Audio { source: Some(source), dump: true });
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.snapshot().registered_contacts == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(d.snapshot().registered_contacts, 1, "baresip did not register:\n{}", anna.log());

    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    anna.wait_for("answering call", 1, Duration::from_secs(5));
    // The caller hears baresip's tone through acd's bridge.
    trunk.send("tone 1 1000");
    trunk.expect("playing", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    let (heard, rate) = record(&mut trunk, 1, &dir.join("caller-1.wav"), 2.0);
    let r = tone_ratio(&heard, rate, 600.0);
    assert!(r > 0.8, "the caller should hear baresip's 600 Hz tone: {r}");

    // Hold (re-INVITE a=sendonly) for longer than the 5 s media timeout.
    anna.command("/hold");
    anna.wait_for("call: hold", 1, Duration::from_secs(5));
    // While held the caller hears the queue's 440 Hz music, not baresip.
    std::thread::sleep(Duration::from_millis(500));
    let (heard, rate) = record(&mut trunk, 1, &dir.join("caller-held.wav"), 2.0);
    let (music_r, agent_r) = (tone_ratio(&heard, rate, 440.0), tone_ratio(&heard, rate, 600.0));
    assert!(
        music_r > 0.8 && agent_r < 0.1,
        "on hold the caller should hear the music: 440 Hz {music_r}, 600 Hz {agent_r}"
    );
    trunk.quiet("disconnected", Duration::from_secs(6));
    assert_eq!(d.snapshot().calls, 1, "the held call must stay up:\n{}", anna.log());
    anna.command("/resume");
    anna.wait_for("call: resume", 1, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(800));
    let (heard, rate) = record(&mut trunk, 1, &dir.join("caller-2.wav"), 2.0);
    let r = tone_ratio(&heard, rate, 600.0);
    assert!(r > 0.8, "after the resume the caller should hear baresip again: {r}\n{}", anna.log());
    assert!(tone_ratio(&heard, rate, 440.0) < 0.1, "the music stopped on resume");

    // baresip hangs up: the caller's call ends, nothing is left in acd.
    anna.command("/hangup");
    trunk.expect("disconnected", Duration::from_secs(5));
    assert_drained(&d);
    // What baresip received: the caller's 1 kHz tone.
    let wav = anna.received_wav().unwrap_or_else(|| panic!("sndfile wrote no dump:\n{}", anna.log()));
    let (got, rate) = read_wav(&wav);
    let r = tone_ratio(&got[(rate as usize)..], rate, 1000.0);
    assert!(r > 0.5, "baresip should have heard the caller's 1 kHz tone: {r}");
    drop(anna);
    std::fs::remove_dir_all(&dir).ok();
}
