//! Callback (virtual hold) with real phones, all pjsua2 (tests/interop/ua.py):
//! the trunk's caller presses the callback key (RFC 4733), hears the
//! confirmation prompt and is hung up by acd; the registered agent bert is
//! rung and answers; acd dials the customer — a pjsua2 UA on a free port
//! standing in for the carrier (`callback_trunk = "127.0.0.1:<port>"`) —
//! at the caller's number, and bridges: audio is checked both ways by tone
//! frequency. Second case: the customer declines the first dial, bert is
//! released, and the retry (2 s later) is answered.
mod common;

use common::audio::*;
use common::*;
use std::time::Duration;

/// Hold music: a steady 300 Hz tone, so the prompt is told from it.
const MUSIC_HZ: f32 = 300.0;

fn floor(trunk_port: u16, retry: u32, music: &std::path::Path) -> String {
    format!(
        r#"
[media]
prompts = "{root}/config/sounds/prompts/en"

[music.default]
file = "{music}"

[[agent]]
id = "bert"
password = "bert-pw"

[[queue]]
name = "front"
members = [{{ agent = "bert" }}]
callback_key = "*"
callback_trunk = "127.0.0.1:{trunk_port}"
callback_retry_delay_secs = {retry}
callback_max_attempts = 2

[[number]]
number = "100"
queue = "front"
"#,
        root = root().display(),
        music = music.display()
    )
}

fn hears(ua: &mut Ua, call: i64, dir: &std::path::Path, label: &str, freq: f32) -> f32 {
    let (heard, rate) = record(ua, call, &dir.join(format!("{label}.wav")), 1.5);
    tone_ratio(&heard, rate, freq)
}

fn events(log: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The caller waits (nobody registered), presses `*`, hears the
/// prompt and is hung up; returns once acd's BYE arrived.
fn request_callback(trunk: &mut Ua, d: &acd::shell::DaemonHandle, port: u16, dir: &std::path::Path) {
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    let (heard, rate) = record(trunk, 1, &dir.join("music.wav"), 1.0);
    let r = tone_ratio(&heard, rate, MUSIC_HZ);
    assert!(r > 0.8, "the waiting caller should hear the 300 Hz music: {r}");
    trunk.send("dtmf 1 *");
    std::thread::sleep(Duration::from_millis(300));
    // The confirmation prompt (about 5 s of speech) plays instead of the music.
    let (heard, rate) = record(trunk, 1, &dir.join("confirmation.wav"), 1.5);
    let r = tone_ratio(&heard, rate, MUSIC_HZ);
    assert!(
        rms(&heard) > 0.01 && r < 0.3,
        "the caller should hear the confirmation, not music: rms {} ratio {r}",
        rms(&heard)
    );
    trunk.expect("disconnected", Duration::from_secs(10));
    assert_eq!(d.snapshot().calls, 1, "the callback keeps its place in acd");
}

fn bridged_both_ways(bert: &mut Ua, bcall: i64, customer: &mut Ua, ccall: i64, dir: &std::path::Path) {
    bert.send(&format!("tone {bcall} 700"));
    bert.expect("playing", Duration::from_secs(5));
    customer.send(&format!("tone {ccall} 450"));
    customer.expect("playing", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(600));
    let r = hears(customer, ccall, dir, "customer-hears-bert", 700.0);
    assert!(r > 0.8, "the customer should hear bert's 700 Hz: {r}");
    let r = hears(bert, bcall, dir, "bert-hears-customer", 450.0);
    assert!(r > 0.8, "bert should hear the customer's 450 Hz: {r}");
}

/// acd with the customer's UA as its callback trunk; bert's phone is not
/// registered yet, so callers wait.
fn setup(tag: &str, behaviour: &str, retry: u32) -> (std::path::PathBuf, u16, Ua, acd::shell::DaemonHandle, Ua) {
    let dir = std::env::temp_dir().join(format!("acd-callback-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let customer = Ua::spawn("customer", &["--behaviour", behaviour]);
    let cport = customer.seen[0]["port"].as_u64().expect("customer port") as u16;
    let log = dir.join("events.jsonl");
    let ops =
        format!("[metrics]\nlisten = \"\"\n\n[admin]\nlisten = \"\"\n\n[event_log]\npath = \"{}\"\n", log.display());
    let music = dir.join("music-300.wav");
    write_tone_wav(&music, 8000, &[MUSIC_HZ], 6.0);
    let text = config_text_with(port, &ops, &floor(cport, retry, &music));
    let d =
        acd::shell::DaemonHandle::spawn(acd::config::from_toml_str("callback.toml", &text).unwrap()).expect("daemon");
    (dir, port, customer, d, trunk())
}

#[test]
fn pjsua2_caller_asks_for_a_callback_the_agent_answers_and_the_customer_is_bridged() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, port, mut customer, d, mut trunk) = setup("ok", "answer", 2);
    request_callback(&mut trunk, &d, port, &dir);
    let mut bert = Ua::agent("bert", port, "bert-pw", "answer");
    let inc = bert.expect("incoming", Duration::from_secs(5));
    let bcall = inc["call"].as_i64().unwrap();
    bert.expect("answered", Duration::from_secs(5));
    let inc = customer.expect("incoming", Duration::from_secs(5));
    assert!(
        inc["ruri"].as_str().unwrap_or("").starts_with("sip:trunk@127.0.0.1"),
        "dialled the caller's number: {inc}"
    );
    let ccall = inc["call"].as_i64().unwrap();
    customer.expect("answered", Duration::from_secs(5));
    bridged_both_ways(&mut bert, bcall, &mut customer, ccall, &dir);
    customer.send("hangup all");
    customer.expect("disconnected", Duration::from_secs(5));
    bert.expect("disconnected", Duration::from_secs(5));
    drop((bert, customer, trunk));
    assert_drained(&d);
    drop(d);
    let lines = events(&dir.join("events.jsonl"));
    let steps: Vec<&str> =
        lines.iter().filter_map(|l| l["event"].as_str()).filter(|e| e.starts_with("callback_")).collect();
    assert_eq!(steps, ["callback_requested", "callback_attempt", "callback_connected"], "{lines:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn pjsua2_customer_declining_the_first_dial_is_called_again_after_the_retry_delay() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, port, mut customer, d, mut trunk) = setup("retry", "decline", 2);
    request_callback(&mut trunk, &d, port, &dir);
    let mut bert = Ua::agent("bert", port, "bert-pw", "answer");
    bert.expect("incoming", Duration::from_secs(5));
    bert.expect("answered", Duration::from_secs(5));
    customer.expect("rejected", Duration::from_secs(5));
    // bert's leg is released: acd hangs up on him.
    bert.expect("disconnected", Duration::from_secs(5));
    customer.send("behaviour answer");
    let inc = bert.expect("incoming", Duration::from_secs(8));
    let bcall = inc["call"].as_i64().unwrap();
    bert.expect("answered", Duration::from_secs(5));
    let inc = customer.expect("incoming", Duration::from_secs(5));
    let ccall = inc["call"].as_i64().unwrap();
    customer.expect("answered", Duration::from_secs(5));
    bridged_both_ways(&mut bert, bcall, &mut customer, ccall, &dir);
    bert.send("hangup all");
    bert.expect("disconnected", Duration::from_secs(5));
    customer.expect("disconnected", Duration::from_secs(5));
    drop((bert, customer, trunk));
    assert_drained(&d);
    drop(d);
    let lines = events(&dir.join("events.jsonl"));
    let failed: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"] == "callback_failed").collect();
    assert_eq!(failed.len(), 1, "{lines:?}");
    assert_eq!((failed[0]["attempt"].as_u64(), failed[0]["reason"].as_str()), (Some(1), Some("declined")));
    assert!(lines.iter().any(|l| l["event"] == "callback_connected" && l["attempt"] == 2), "{lines:?}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `engine.callback_state_file`: the caller presses `*`, acd shuts down
/// (the drain SIGTERM starts) and writes the pending callback to the state
/// file; a new acd on the same config reads it back (and removes it), and
/// when bert registers he is rung for it, answers, and the carrier UA gets
/// the INVITE for the caller's number.
#[test]
fn pjsua2_pending_callback_survives_a_restart_with_the_state_file() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("acd-callback-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let mut customer = Ua::spawn("customer", &["--behaviour", "answer"]);
    let cport = customer.seen[0]["port"].as_u64().expect("customer port") as u16;
    let log = dir.join("events.jsonl");
    let state = dir.join("callbacks.json");
    let ops = format!(
        "[metrics]\nlisten = \"\"\n\n[admin]\nlisten = \"\"\n\n[event_log]\npath = \"{}\"\n\n[engine]\ncallback_state_file = \"{}\"\n",
        log.display(),
        state.display()
    );
    let music = dir.join("music-300.wav");
    write_tone_wav(&music, 8000, &[MUSIC_HZ], 6.0);
    let text = config_text_with(port, &ops, &floor(cport, 2, &music));
    let config = || acd::config::from_toml_str("callback.toml", &text).unwrap();
    let d = acd::shell::DaemonHandle::spawn(config()).expect("daemon");
    let mut trunk = trunk();
    request_callback(&mut trunk, &d, port, &dir);
    d.shutdown();

    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let cbs = saved["callbacks"].as_array().expect("callbacks");
    assert_eq!(cbs.len(), 1, "{saved}");
    assert_eq!((cbs[0]["queue"].as_str(), cbs[0]["caller"].as_str()), (Some("front"), Some("trunk")), "{saved}");
    assert_eq!(cbs[0]["attempts"], 0, "{saved}");
    assert!(cbs[0]["waited_ms"].as_u64().unwrap() >= 2000, "waited through the music and the prompt: {saved}");

    let d = acd::shell::DaemonHandle::spawn(config()).expect("restarted daemon");
    assert!(!state.exists(), "the state file is taken at start-up");
    assert_eq!(d.snapshot().engine_calls, 1, "the callback is pending again");
    let mut bert = Ua::agent("bert", port, "bert-pw", "answer");
    bert.expect("incoming", Duration::from_secs(5));
    bert.expect("answered", Duration::from_secs(5));
    let inc = customer.expect("incoming", Duration::from_secs(5));
    assert!(
        inc["ruri"].as_str().unwrap_or("").starts_with("sip:trunk@127.0.0.1"),
        "dialled the caller's number: {inc}"
    );
    customer.expect("answered", Duration::from_secs(5));
    customer.send("hangup all");
    customer.expect("disconnected", Duration::from_secs(5));
    bert.expect("disconnected", Duration::from_secs(5));
    drop((bert, customer, trunk));
    assert_drained(&d);
    drop(d);
    assert!(!state.exists(), "nothing pending at the second shutdown: no file");
    let lines = events(&log);
    let steps: Vec<&str> =
        lines.iter().filter_map(|l| l["event"].as_str()).filter(|e| e.starts_with("callback_")).collect();
    assert_eq!(
        steps,
        ["callback_requested", "callback_saved", "callback_restored", "callback_attempt", "callback_connected"],
        "{lines:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Polls `f` for up to 10 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_acd(config: &std::path::Path, admin: std::net::SocketAddr) -> std::process::Child {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_acd"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("acd binary");
    eventually("the admin API", || {
        std::net::TcpStream::connect(admin).is_ok() && http(admin, "GET", "/live", None, None).0 == 200
    });
    child
}

fn sigterm(mut child: std::process::Child) {
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(child.wait().unwrap().success(), "SIGTERM is a clean stop");
}

fn pending_metric(metrics: std::net::SocketAddr, queue: &str) -> Option<f64> {
    let (_, body) = http(metrics, "GET", "/metrics", None, None);
    let head = format!("acd_callbacks_pending{{queue=\"{queue}\"}} ");
    body.lines().find_map(|l| l.strip_prefix(&head)).and_then(|v| v.trim().parse().ok())
}

/// The real `acd` binary and real signals: a pjsua2 caller presses `*`;
/// SIGTERM writes the state file; a restart shows the callback pending again
/// (`acd_callbacks_pending`, the event log); after another SIGTERM, a
/// restart on a config whose queue was renamed records it `callback_lost`.
#[test]
fn acd_binary_sigterm_keeps_a_pending_callback_and_a_gone_queue_loses_it() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("acd-callback-binary-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (port, mport, aport) = (free_port(), free_port(), free_port());
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{mport}").parse().unwrap();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{aport}").parse().unwrap();
    let log = dir.join("events.jsonl");
    let ops = format!(
        "[metrics]\nlisten = \"{metrics}\"\n\n[admin]\nlisten = \"{admin}\"\n\n[event_log]\npath = \"{}\"\n\n[engine]\ncallback_state_file = \"callbacks.json\"\n",
        log.display()
    );
    let music = dir.join("music-300.wav");
    write_tone_wav(&music, 8000, &[MUSIC_HZ], 6.0);
    let text = config_text_with(port, &ops, &floor(9, 2, &music));
    let path = dir.join("acd.toml");
    std::fs::write(&path, &text).unwrap();
    let state = dir.join("callbacks.json");

    let acd = start_acd(&path, admin);
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(800));
    trunk.send("dtmf 1 *");
    trunk.expect("disconnected", Duration::from_secs(10));
    eventually("one callback pending", || pending_metric(metrics, "front") == Some(1.0));
    sigterm(acd);
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let cbs = saved["callbacks"].as_array().expect("callbacks");
    assert_eq!(cbs.len(), 1, "{saved}");
    assert_eq!((cbs[0]["queue"].as_str(), cbs[0]["caller"].as_str()), (Some("front"), Some("trunk")), "{saved}");

    let acd = start_acd(&path, admin);
    assert!(!state.exists(), "taken at start-up");
    eventually("the callback pending again", || pending_metric(metrics, "front") == Some(1.0));
    sigterm(acd);
    assert!(state.exists(), "still pending at the second shutdown: saved again");

    // The queue is renamed: the saved callback has nowhere to go.
    std::fs::write(
        &path,
        text.replace("name = \"front\"", "name = \"desk\"").replace("queue = \"front\"", "queue = \"desk\""),
    )
    .unwrap();
    let acd = start_acd(&path, admin);
    assert!(!state.exists());
    eventually("desk's gauge", || pending_metric(metrics, "desk") == Some(0.0));
    sigterm(acd);
    assert!(!state.exists(), "nothing pending: no file");
    drop(trunk);
    let lines = events(&log);
    let steps: Vec<&str> =
        lines.iter().filter_map(|l| l["event"].as_str()).filter(|e| e.starts_with("callback_")).collect();
    assert_eq!(
        steps,
        ["callback_requested", "callback_saved", "callback_restored", "callback_saved", "callback_lost"],
        "{lines:?}"
    );
    let lost = lines.iter().find(|l| l["event"] == "callback_lost").unwrap();
    assert_eq!((lost["queue"].as_str(), lost["reason"].as_str()), (Some("front"), Some("queue-gone")), "{lost}");
    std::fs::remove_dir_all(&dir).ok();
}
