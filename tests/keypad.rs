//! A waiting caller's keypad with real phones: pjsua2 (tests/interop/ua.py)
//! as the trunk's caller sends RFC 4733 telephone-events (`dtmf`), pjsua2
//! as the agents.
//!
//! Exit key: a caller waits in `front` (anna's phone is not registered, so
//! nobody rings); keys that mean nothing there change nothing; the exit key
//! `0` takes it to `tech`, where bert is rung, answers, and the caller hears
//! bert's tone (and bert the caller's), checked by frequency on both sides;
//! the event log has the `exited` record.
mod common;

use common::*;
use std::time::Duration;

#[test]
fn pjsua2_caller_pressing_the_exit_key_reaches_an_agent_of_the_target_queue() {
    let dir = std::env::temp_dir().join(format!("acd-keypad-exit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let log = dir.join("events.jsonl");
    let ops =
        format!("[metrics]\nlisten = \"\"\n\n[admin]\nlisten = \"\"\n\n[event_log]\npath = \"{}\"\n", log.display());
    let text = config_text_with(port, &ops, &front_and_tech("exit_key = \"0\"\nexit_target = \"200\""));
    let d = acd::shell::DaemonHandle::spawn(acd::config::from_toml_str("keypad.toml", &text).unwrap()).expect("daemon");
    let mut bert = Ua::agent("bert", port, "bert-pw", "answer");

    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    // Not the exit key: still waiting in front, nobody rung.
    trunk.send("dtmf 1 5");
    bert.quiet("incoming", Duration::from_millis(1500));
    assert_eq!(d.snapshot().calls, 1);

    trunk.send("dtmf 1 0");
    let inc = bert.expect("incoming", Duration::from_secs(5));
    let bcall = inc["call"].as_i64().unwrap();
    bert.expect("answered", Duration::from_secs(5));
    bert.send(&format!("tone {bcall} 700"));
    bert.expect("playing", Duration::from_secs(5));
    trunk.send("tone 1 450");
    trunk.expect("playing", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(600));
    let r = hears(&mut trunk, 1, &dir, "caller-hears-bert", 700.0);
    assert!(r > 0.8, "the caller should hear bert's 700 Hz after the exit key: {r}");
    let r = hears(&mut bert, bcall, &dir, "bert-hears-caller", 450.0);
    assert!(r > 0.8, "bert should hear the caller's 450 Hz: {r}");

    trunk.send("hangup all");
    trunk.expect("disconnected", Duration::from_secs(5));
    bert.expect("disconnected", Duration::from_secs(5));
    drop(bert);
    drop(trunk);
    assert_drained(&d);
    drop(d);
    // One `exited` record, from front to tech, before tech's `call_queued`.
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let exited: Vec<usize> = (0..lines.len()).filter(|&i| lines[i]["event"] == "exited").collect();
    assert_eq!(exited.len(), 1, "{lines:?}");
    let e = &lines[exited[0]];
    assert_eq!((e["queue"].as_str(), e["to"].as_str()), (Some("front"), Some("queue:tech")), "{e}");
    assert!(lines[exited[0]..].iter().any(|l| l["event"] == "call_queued" && l["queue"] == "tech"), "{lines:?}");
    std::fs::remove_dir_all(&dir).ok();
}
