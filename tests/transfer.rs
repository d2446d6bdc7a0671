//! Blind transfer (REFER) from real phones: baresip's `/transfer` and
//! pjsua2's `Call.xfer()` as the agent, pjsua2 (tests/interop/ua.py) as the
//! trunk's callers and as the agent of the target queue.
//!
//! The story: caller 1 dials the front line (100) and reaches anna; caller 2
//! dials the tech line (200) later and waits (bert's phone is not registered
//! yet). anna first transfers to a number acd does not know: refused, and
//! caller 1 still hears anna (pjsua2 keeps the call; baresip hangs up on a
//! failed transfer, and acd rings anna again for the same caller). Then she transfers to 200: her leg ends, and
//! when bert registers, acd rings him for caller 1, who arrived before
//! caller 2, and caller 1 hears bert. Audio is checked by tone frequency on
//! the caller's side. Skipped with a message when baresip is not installed.
mod common;

use common::audio::*;
use common::baresip::{installed, Audio, Baresip};
use common::*;
use std::time::{Duration, Instant};

/// With `ACD_TEST_LOG=path`, the daemon's debug log goes to that file.
fn test_log() {
    if let Some(path) = std::env::var_os("ACD_TEST_LOG") {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("log file");
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,rsipstack=info")
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .try_init();
    }
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The second half of the story, common to both phones: caller 1 waits in
/// tech ahead of caller 2; bert registers, is rung for caller 1, and
/// caller 1 hears him while caller 2 still waits.
fn bert_gets_caller_one_first(port: u16, d: &acd::shell::DaemonHandle, trunk: &mut Ua, dir: &std::path::Path) {
    assert_eq!(d.snapshot().calls, 2, "both callers wait in tech");
    let mut bert = Ua::agent("bert", port, "bert-pw", "answer");
    let inc = bert.expect("incoming", Duration::from_secs(10));
    let bcall = inc["call"].as_i64().unwrap();
    bert.expect("answered", Duration::from_secs(5));
    bert.send(&format!("tone {bcall} 700"));
    bert.expect("playing", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(600));
    let one = hears(trunk, 1, dir, "caller1-bert", 700.0);
    assert!(one > 0.8, "caller 1 (transferred, arrived first) should hear bert's 700 Hz: {one}");
    let two = hears(trunk, 2, dir, "caller2-waiting", 700.0);
    assert!(two < 0.2, "caller 2 (joined tech later) still waits on music, not bert: {two}");
    assert_eq!(d.snapshot().calls, 2);
    trunk.send("hangup all");
    trunk.expect("disconnected", Duration::from_secs(5));
    trunk.expect("disconnected", Duration::from_secs(5));
    bert.expect("disconnected", Duration::from_secs(5));
    drop(bert);
}

/// Caller 1 to the front line (anna answers), then caller 2 to the tech line.
fn two_callers(port: u16) -> Ua {
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    trunk.send(&format!("call {}", uri("200", port)));
    trunk.expect("answered", Duration::from_secs(5));
    trunk
}

#[test]
fn baresip_blind_transfer_to_a_queue_keeps_the_callers_place_and_a_refused_one_keeps_the_bridge() {
    if !installed() {
        eprintln!("baresip not installed: skipped (scripts/test installs it)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("acd-xfer-baresip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("anna-tone.wav");
    write_tone_wav(&source, 8000, &[600.0], 60.0);
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    test_log();
    let port = free_port();
    let d = acd::shell::DaemonHandle::spawn(config(port, &front_and_tech(""))).expect("daemon");
    let mut anna = Baresip::agent("xfer", "anna", "anna-pw", port, Audio { source: Some(source.clone()), dump: false });
    wait_until("baresip to register", Duration::from_secs(10), || d.snapshot().registered_contacts == 1);

    let mut trunk = two_callers(port);
    anna.wait_for("answering call", 1, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    let r = hears(&mut trunk, 1, &dir, "caller1-anna", 600.0);
    assert!(r > 0.8, "caller 1 should hear anna's 600 Hz: {r}");

    // A number acd does not know: refused with 404. baresip 1.0 then hangs
    // up its call by itself (its menu does on any failed transfer); acd
    // keeps the caller and puts it back into its queue, where anna (no
    // wrap-up here) is rung again and baresip answers.
    anna.command(&format!("/transfer sip:999@127.0.0.1:{port}"));
    anna.wait_for("transfer failed: 404", 1, Duration::from_secs(5));
    anna.wait_for("answering call", 2, Duration::from_secs(10));
    trunk.quiet("disconnected", Duration::from_millis(800));
    let r = hears(&mut trunk, 1, &dir, "caller1-anna-after-refusal", 600.0);
    assert!(r > 0.8, "after the refused transfer caller 1 is with anna again: {r}\n{}", anna.log());
    assert_eq!(d.snapshot().calls, 2);

    // The tech line: anna's call ends, caller 1 waits on music.
    anna.command(&format!("/transfer sip:200@127.0.0.1:{port}"));
    wait_until("anna's leg to end", Duration::from_secs(5), || d.snapshot().legs == 2);
    trunk.quiet("disconnected", Duration::from_millis(500));
    let r = hears(&mut trunk, 1, &dir, "caller1-waiting", 600.0);
    assert!(r < 0.2, "caller 1 no longer hears anna: {r}");

    bert_gets_caller_one_first(port, &d, &mut trunk, &dir);
    let log = anna.log();
    drop(anna);
    let s = assert_drained(&d);
    assert_eq!(s.errors, 0, "call control bugs; baresip said:\n{log}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn pjsua2_blind_transfer_to_a_queue_keeps_the_callers_place_and_a_refused_one_keeps_the_bridge() {
    let dir = std::env::temp_dir().join(format!("acd-xfer-pjsua-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    test_log();
    let port = free_port();
    let d = acd::shell::DaemonHandle::spawn(config(port, &front_and_tech(""))).expect("daemon");
    let mut anna = Ua::agent("anna", port, "anna-pw", "answer");

    let mut trunk = two_callers(port);
    let inc = anna.expect("incoming", Duration::from_secs(5));
    let acall = inc["call"].as_i64().unwrap();
    anna.expect("answered", Duration::from_secs(5));
    anna.send(&format!("tone {acall} 600"));
    anna.expect("playing", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(600));
    let r = hears(&mut trunk, 1, &dir, "caller1-anna", 600.0);
    assert!(r > 0.8, "caller 1 should hear anna's 600 Hz: {r}");

    anna.send(&format!("xfer {acall} sip:999@127.0.0.1:{port}"));
    let st = anna.expect("xfer_status", Duration::from_secs(5));
    assert_eq!(st["code"], 404, "{st}");
    assert_eq!(st["final"], true, "{st}");
    std::thread::sleep(Duration::from_millis(500));
    let r = hears(&mut trunk, 1, &dir, "caller1-anna-after-refusal", 600.0);
    assert!(r > 0.8, "after the refused transfer caller 1 still hears anna: {r}");

    anna.send(&format!("xfer {acall} sip:200@127.0.0.1:{port}"));
    let mut codes = Vec::new();
    loop {
        let st = anna.expect("xfer_status", Duration::from_secs(5));
        codes.push(st["code"].as_i64().unwrap());
        if st["final"] == true {
            break;
        }
    }
    assert_eq!(codes.last(), Some(&200), "NOTIFY sipfrags seen by pjsua: {codes:?}");
    anna.expect("disconnected", Duration::from_secs(5));
    trunk.quiet("disconnected", Duration::from_millis(500));
    let r = hears(&mut trunk, 1, &dir, "caller1-waiting", 600.0);
    assert!(r < 0.2, "caller 1 no longer hears anna: {r}");

    bert_gets_caller_one_first(port, &d, &mut trunk, &dir);
    drop(anna);
    let s = assert_drained(&d);
    assert_eq!(s.errors, 0);
    std::fs::remove_dir_all(&dir).ok();
}

/// pjsua2's `Call.xfer()` to an agent: acd rings bert while the caller still
/// talks to anna. Busy: pjsua hears NOTIFY 100 then a final 486 and keeps
/// its call. Answered: a final 200, anna's call ends, the caller hears bert.
#[test]
fn pjsua2_blind_transfer_to_an_agent_rings_them_and_a_busy_one_keeps_the_bridge() {
    let dir = std::env::temp_dir().join(format!("acd-xfer-agent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    test_log();
    let port = free_port();
    let d = acd::shell::DaemonHandle::spawn(config(port, &front_and_tech(""))).expect("daemon");
    let mut anna = Ua::agent("anna", port, "anna-pw", "answer");
    let mut bert = Ua::agent("bert", port, "bert-pw", "busy");
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    let acall = anna.expect("incoming", Duration::from_secs(5))["call"].as_i64().unwrap();
    anna.expect("answered", Duration::from_secs(5));
    anna.send(&format!("tone {acall} 600"));
    anna.expect("playing", Duration::from_secs(5));

    anna.send(&format!("xfer {acall} sip:bert@127.0.0.1:{port}"));
    bert.expect("rejected", Duration::from_secs(5));
    let mut codes = Vec::new();
    loop {
        let st = anna.expect("xfer_status", Duration::from_secs(5));
        codes.push(st["code"].as_i64().unwrap());
        if st["final"] == true {
            break;
        }
    }
    assert_eq!(codes.last(), Some(&486), "bert was busy: {codes:?}");
    std::thread::sleep(Duration::from_millis(500));
    let r = hears(&mut trunk, 1, &dir, "caller-anna-after-busy", 600.0);
    assert!(r > 0.8, "after the failed transfer the caller still hears anna: {r}");

    bert.send("behaviour answer");
    bert.expect("behaviour", Duration::from_secs(5));
    // A transfer to a named agent does not wait for the back-off of his 486.
    anna.send(&format!("xfer {acall} sip:bert@127.0.0.1:{port}"));
    let mut codes = Vec::new();
    loop {
        let st = anna.expect("xfer_status", Duration::from_secs(10));
        codes.push(st["code"].as_i64().unwrap());
        if st["final"] == true {
            break;
        }
    }
    assert_eq!(codes.last(), Some(&200), "{codes:?}");
    let bcall = bert.expect("answered", Duration::from_secs(5))["call"].as_i64().unwrap();
    anna.expect("disconnected", Duration::from_secs(5));
    bert.send(&format!("tone {bcall} 700"));
    bert.expect("playing", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(600));
    let r = hears(&mut trunk, 1, &dir, "caller-bert", 700.0);
    assert!(r > 0.8, "the caller hears bert after the transfer: {r}");
    trunk.send("hangup all");
    trunk.expect("disconnected", Duration::from_secs(5));
    bert.expect("disconnected", Duration::from_secs(5));
    drop(bert);
    drop(anna);
    let s = assert_drained(&d);
    assert_eq!(s.errors, 0);
    std::fs::remove_dir_all(&dir).ok();
}

/// The admin API's transfer of a bridged call: to the tech queue, where
/// bert answers and the caller hears him; anna's leg ends with a BYE.
#[test]
fn admin_transfers_a_bridged_call_to_a_queue() {
    const TOKEN: &str = "xfer-token-0123456789";
    let dir = std::env::temp_dir().join(format!("acd-xfer-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    test_log();
    let port = free_port();
    let ops = format!("[metrics]\nlisten = \"\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n");
    let text = config_text_with(port, &ops, &front_and_tech(""));
    let d = acd::shell::DaemonHandle::spawn(acd::config::from_toml_str("xfer.toml", &text).unwrap()).expect("daemon");
    let admin = d.admin_addr.expect("admin API bound");
    let mut anna = Ua::agent("anna", port, "anna-pw", "answer");
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    anna.expect("answered", Duration::from_secs(5));

    let post = |path: &str, body: &str| http(admin, "POST", path, Some(TOKEN), Some(body));
    assert_eq!(post("/calls/1/transfer", r#"{"queue":"tech","agent":"bert"}"#).0, 400);
    assert_eq!(post("/calls/1/transfer", r#"{"queue":"nowhere"}"#).0, 404);
    assert_eq!(post("/calls/9/transfer", r#"{"queue":"tech"}"#).0, 404);
    let (status, body) = post("/calls/1/transfer", r#"{"agent":"bert"}"#);
    assert_eq!(status, 409, "bert's phone is not registered: {body}");
    let (status, body) = post("/calls/1/transfer", r#"{"queue":"tech"}"#);
    assert_eq!(status, 200, "{body}");
    anna.expect("disconnected", Duration::from_secs(5));
    let mut bert = Ua::agent("bert", port, "bert-pw", "answer");
    let bcall = bert.expect("answered", Duration::from_secs(10))["call"].as_i64().unwrap();
    bert.send(&format!("tone {bcall} 700"));
    bert.expect("playing", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(600));
    let r = hears(&mut trunk, 1, &dir, "caller-bert", 700.0);
    assert!(r > 0.8, "the caller hears bert after the admin's transfer: {r}");
    trunk.send("hangup all");
    trunk.expect("disconnected", Duration::from_secs(5));
    bert.expect("disconnected", Duration::from_secs(5));
    drop(bert);
    drop(anna);
    let s = assert_drained(&d);
    assert_eq!(s.errors, 0);
    std::fs::remove_dir_all(&dir).ok();
}
