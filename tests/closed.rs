//! Issue 14's closed prompt against a real phone (pjsua2 through
//! tests/interop/ua.py): a caller of a closed queue with a `closed_prompt`
//! gets 183 with SDP, hears the prompt (a tone, checked by frequency) as
//! early media, and then the configured final status, never a 200.
mod common;

use common::audio::*;
use common::*;
use std::time::Duration;

/// A daemon whose queue `q` is closed today (a holiday on the days around
/// now, in UTC), with a 440 Hz hold music and a 2.5 s 880 Hz closed prompt.
fn closed_daemon(
    tag: &str,
    settings: &str,
) -> (std::sync::MutexGuard<'static, ()>, u16, acd::shell::DaemonHandle, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("acd-closed-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let music = dir.join("music.wav");
    write_tone_wav(&music, 8000, &[440.0], 4.0);
    write_tone_wav(&dir.join("closed.wav"), 8000, &[880.0], 2.5);
    let today = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
    let days: Vec<String> = [-1i32, 0, 1]
        .iter()
        .map(|d| format!("\"{}\"", today.checked_add(jiff::Span::new().days(*d)).ok().unwrap()))
        .collect();
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let base = free_rtp_range(8);
    let body = format!(
        "[schedule.office]\ntime_zone = \"UTC\"\nhours = [\"mon-sun 00:00-24:00\"]\nholidays = [{}]\n\n{}\n\
         [media]\nrtp_port_min = {base}\nrtp_port_max = {}\n\n[music.default]\nfile = \"{}\"\n",
        days.join(", "),
        queue_q(&format!("schedule = \"office\"\n{settings}")),
        base + 15,
        music.display()
    );
    // closed_prompt is relative to the config file: write it next to the prompt.
    let path = dir.join("acd.toml");
    std::fs::write(&path, config_text(port, &body)).unwrap();
    let cfg = acd::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let d = acd::shell::DaemonHandle::spawn(cfg).expect("daemon");
    (guard, port, d, dir)
}

#[test]
fn a_caller_of_a_closed_queue_hears_the_prompt_as_early_media_then_gets_the_configured_status() {
    let (_g, port, d, dir) = closed_daemon(
        "reject",
        "when_closed = \"reject:486\"\nclosed_prompt = \"closed.wav\"\nmembers = [{ agent = \"anna\" }]",
    );
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    let early = trunk.expect("early", Duration::from_secs(5));
    assert_eq!(early["code"], 183, "{early}");
    // The prompt's 880 Hz, not the 440 Hz music, before any answer.
    let (heard, rate) = record(&mut trunk, 1, &dir.join("early.wav"), 1.5);
    let (prompt_r, music_r) = (tone_ratio(&heard, rate, 880.0), tone_ratio(&heard, rate, 440.0));
    assert!(prompt_r > 0.8 && music_r < 0.1, "early media: prompt 880 Hz {prompt_r}, music {music_r}");
    assert!(rms(&heard) > 0.05, "not silence: {}", rms(&heard));
    assert!(!trunk.seen.iter().any(|e| e["event"] == "answered" || e["event"] == "disconnected"), "{:?}", trunk.seen);
    // Then the configured final status; never answered.
    let gone = trunk.expect("disconnected", Duration::from_secs(5));
    assert_eq!(gone["code"], 486, "{gone}");
    assert_eq!(gone["answered"], false, "{gone}");
    assert!(!trunk.seen.iter().any(|e| e["event"] == "answered"), "{:?}", trunk.seen);
    assert!(gone["total_ms"].as_u64().unwrap() >= 2500, "the status comes only once the 2.5 s prompt is over: {gone}");
    assert_drained(&d);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_caller_of_a_closed_queue_without_a_prompt_is_rejected_at_once() {
    let (_g, port, d, dir) = closed_daemon("plain", "when_closed = \"reject:486\"\nmembers = [{ agent = \"anna\" }]");
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    let gone = trunk.expect("disconnected", Duration::from_secs(5));
    assert_eq!(gone["code"], 486, "{gone}");
    assert!(!trunk.seen.iter().any(|e| e["event"] == "early" && e["code"] == 183), "{:?}", trunk.seen);
    assert!(gone["total_ms"].as_u64().unwrap() < 2000, "{gone}");
    assert_drained(&d);
    std::fs::remove_dir_all(&dir).ok();
}
