//! Issue 14's queue rules against real phones (pjsua2 through
//! tests/interop/ua.py): queue while ringing (183 + early-media music, the
//! 200 only when the agent answers; a CANCEL while waiting; 180 and a final
//! error at max wait) and forking to an agent's two devices (first answer
//! wins, the other is cancelled; both refusing passes the agent over).
//! Audio checked by frequency.
mod common;

use common::audio::*;
use common::*;
use std::time::Duration;

/// A daemon whose queue `q` has `settings` and whose default music is a
/// steady 440 Hz tone (so "music" is a frequency, not a guess).
fn music_daemon(
    tag: &str,
    settings: &str,
) -> (std::sync::MutexGuard<'static, ()>, u16, acd::shell::DaemonHandle, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("acd-rules-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let music = dir.join("music.wav");
    write_tone_wav(&music, 8000, &[440.0], 4.0);
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let base = free_rtp_range(8);
    let body = format!(
        "{}\n[media]\nrtp_port_min = {base}\nrtp_port_max = {}\n\n[music.default]\nfile = \"{}\"\n",
        queue_q(settings),
        base + 15,
        music.display()
    );
    let d = acd::shell::DaemonHandle::spawn(config(port, &body)).expect("daemon");
    (guard, port, d, dir)
}

#[test]
fn an_on_agent_queue_gives_the_caller_183_with_music_and_the_200_when_the_agent_answers() {
    let (_g, port, d, dir) =
        music_daemon("early", "answer = \"on_agent\"\nearly_media = \"music\"\nmembers = [{ agent = \"anna\" }]");
    let mut anna = Ua::agent("anna", port, "anna-pw", "ignore");
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    let early = trunk.expect("early", Duration::from_secs(5));
    assert_eq!(early["code"], 183, "{early}");
    let call = anna.expect("incoming", Duration::from_secs(5))["call"].as_i64().unwrap();

    // While anna's phone rings the caller hears the queue's music as early media.
    std::thread::sleep(Duration::from_millis(500));
    let (heard, rate) = record(&mut trunk, 1, &dir.join("early.wav"), 2.0);
    let r = tone_ratio(&heard, rate, 440.0);
    assert!(r > 0.8, "the caller should hear the 440 Hz music before any answer: {r}");
    assert!(!trunk.seen.iter().any(|e| e["event"] == "answered"), "answered too early: {:?}", trunk.seen);
    assert_eq!(d.snapshot().calls, 1);

    // anna picks up: now, and only now, the caller gets its 200, and hears anna.
    anna.send(&format!("tone {call} 600"));
    anna.send(&format!("answer {call}"));
    trunk.expect("answered", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(800));
    let (heard, rate) = record(&mut trunk, 1, &dir.join("bridged.wav"), 2.0);
    let (agent_r, music_r) = (tone_ratio(&heard, rate, 600.0), tone_ratio(&heard, rate, 440.0));
    assert!(agent_r > 0.8 && music_r < 0.1, "bridged: anna's 600 Hz {agent_r}, music {music_r}");

    trunk.send("hangup");
    anna.expect("disconnected", Duration::from_secs(5));
    assert_drained(&d);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_early_caller_who_hangs_up_while_waiting_gets_487_and_the_agents_phone_stops_ringing() {
    let (_g, port, d, dir) = music_daemon("cancel", "answer = \"on_agent\"\nmembers = [{ agent = \"anna\" }]");
    let mut anna = Ua::agent("anna", port, "anna-pw", "ignore");
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    assert_eq!(trunk.expect("early", Duration::from_secs(5))["code"], 183);
    anna.expect("incoming", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    trunk.send("hangup"); // CANCEL: the INVITE never had a final response
    let gone = trunk.expect("disconnected", Duration::from_secs(5));
    assert_eq!(gone["code"], 487, "{gone}");
    anna.expect("disconnected", Duration::from_secs(5));
    assert_drained(&d);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_ringing_queue_sends_180_and_a_final_error_at_max_wait_never_a_200() {
    let (_g, port, d, dir) = music_daemon(
        "ringing",
        "answer = \"on_agent\"\nearly_media = \"ringing\"\nmax_wait_secs = 3\noverflow = \"reject:486\"\nmembers = [{ agent = \"anna\" }]",
    );
    let mut anna = Ua::agent("anna", port, "anna-pw", "ignore");
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    assert_eq!(trunk.expect("early", Duration::from_secs(5))["code"], 180);
    anna.expect("incoming", Duration::from_secs(5));
    let gone = trunk.expect("disconnected", Duration::from_secs(10));
    assert_eq!(gone["code"], 486, "max wait: the configured final status: {gone}");
    assert!(!trunk.seen.iter().any(|e| e["event"] == "answered"), "{:?}", trunk.seen);
    anna.expect("disconnected", Duration::from_secs(5));
    assert_drained(&d);
    std::fs::remove_dir_all(&dir).ok();
}

// ----- fork to all contacts (sip/adapter/fork.rs) --------------------------------

#[test]
fn an_agent_on_two_devices_rings_on_both_the_first_to_answer_wins_and_the_other_is_cancelled() {
    let (_g, port, d, dir) = music_daemon("fork", "members = [{ agent = \"anna\" }]");
    let mut desk = Ua::agent("anna", port, "anna-pw", "ignore");
    let mut soft = Ua::agent("anna", port, "anna-pw", "ignore");
    assert_eq!(d.snapshot().registered_contacts, 2, "two bindings for anna");
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    desk.expect("incoming", Duration::from_secs(5));
    let call = soft.expect("incoming", Duration::from_secs(5))["call"].as_i64().unwrap();

    // The softphone answers: the desk phone stops ringing (CANCEL).
    soft.send(&format!("tone {call} 600"));
    soft.send(&format!("answer {call}"));
    soft.expect("answered", Duration::from_secs(5));
    let gone = desk.expect("disconnected", Duration::from_secs(5));
    assert_eq!(gone["answered"], false, "the desk phone was cancelled, never answered: {gone}");
    std::thread::sleep(Duration::from_millis(800));
    let (heard, rate) = record(&mut trunk, 1, &dir.join("bridged.wav"), 2.0);
    let r = tone_ratio(&heard, rate, 600.0);
    assert!(r > 0.8, "the caller should hear the softphone's 600 Hz tone: {r}");
    assert_eq!(d.snapshot().calls, 1);

    trunk.send("hangup");
    soft.expect("disconnected", Duration::from_secs(5));
    desk.quiet("incoming", Duration::from_millis(500));
    assert_drained(&d);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_agent_whose_two_devices_both_refuse_is_passed_over_and_the_next_agent_answers() {
    let (_g, port, d, dir) =
        music_daemon("fork-busy", "members = [{ agent = \"anna\" }, { agent = \"bert\" }]\nstrategy = \"linear\"");
    let mut desk = Ua::agent("anna", port, "anna-pw", "busy");
    let mut soft = Ua::agent("anna", port, "anna-pw", "decline");
    let mut bert = Ua::agent("bert", port, "bert-pw", "answer");
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    desk.expect("incoming", Duration::from_secs(5));
    soft.expect("incoming", Duration::from_secs(5));
    // Both of anna's devices refused: bert is next, and answers.
    bert.expect("answered", Duration::from_secs(10));
    assert_eq!(d.snapshot().calls, 1);
    trunk.send("hangup");
    bert.expect("disconnected", Duration::from_secs(5));
    assert_drained(&d);
    std::fs::remove_dir_all(&dir).ok();
}

// Attended transfer (REFER with Replaces after a consultation through acd):
// tests/attended.rs.
