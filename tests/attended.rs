//! Attended transfer (REFER with Replaces, RFC 3515 + RFC 3891) from a real
//! phone: pjsua2 (tests/interop/ua.py) as the trunk's customer and as the
//! agents. anna, in the front queue, holds her customer, calls the tech
//! line (200) from the same registered phone (digest as anna), bert
//! answers, and anna's phone sends REFER with Replaces naming that
//! consultation: the customer and bert hear each other, both of anna's
//! calls end, anna is in wrap-up (admin API), and bert wraps up after the
//! customer hangs up. A transfer while the consultation still rings is
//! refused (603) and the customer stays with anna.
mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

const TOKEN: &str = "attended-token-0123456789";

fn daemon() -> (std::sync::MutexGuard<'static, ()>, u16, acd::shell::DaemonHandle, std::net::SocketAddr) {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let ops = format!("[metrics]\nlisten = \"\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n");
    let body = front_and_tech("wrap_up_secs = 60").replace(
        "name = \"tech\"\nmembers = [{ agent = \"bert\" }]",
        "name = \"tech\"\nmembers = [{ agent = \"bert\" }]\nwrap_up_secs = 60",
    );
    let text = config_text_with(port, &ops, &body);
    let d =
        acd::shell::DaemonHandle::spawn(acd::config::from_toml_str("attended.toml", &text).unwrap()).expect("daemon");
    let admin = d.admin_addr.expect("admin API bound");
    (guard, port, d, admin)
}

fn agent_state(admin: std::net::SocketAddr, id: &str) -> String {
    let (status, body) = http(admin, "GET", "/agents", Some(TOKEN), None);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let agents = v["agents"].as_array().cloned().unwrap_or_default();
    let a = agents.iter().find(|a| a["id"] == id).unwrap_or_else(|| panic!("no {id} in {body}"));
    a["state"].as_str().unwrap().to_string()
}

/// The customer reaches anna (600 Hz); anna holds it and calls 200 from her
/// phone. Returns (trunk, anna, customer call no at anna, consultation no).
fn anna_consults(port: u16) -> (Ua, Ua, i64, i64) {
    let mut anna = Ua::agent("anna", port, "anna-pw", "answer");
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    let customer = anna.expect("incoming", Duration::from_secs(5))["call"].as_i64().unwrap();
    anna.expect("answered", Duration::from_secs(5));
    trunk.send("tone 1 440");
    anna.send(&format!("hold {customer}"));
    anna.expect("hold_sent", Duration::from_secs(5));
    anna.send(&format!("call {}", uri("200", port)));
    let consult = anna.expect("calling", Duration::from_secs(5))["call"].as_i64().unwrap();
    (trunk, anna, customer, consult)
}

#[test]
fn pjsua_attended_transfer_bridges_the_customer_to_the_consulted_agent() {
    let (_g, port, d, admin) = daemon();
    let dir = std::env::temp_dir().join(format!("acd-attended-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bert = Ua::agent("bert", port, "bert-pw", "answer");
    let (mut trunk, mut anna, customer, consult) = anna_consults(port);
    // The consultation went through acd as anna's call: bert rings and answers.
    let inc = bert.expect("incoming", Duration::from_secs(10));
    assert!(inc["from"].as_str().unwrap_or("").contains("anna"), "{inc}");
    let bcall = inc["call"].as_i64().unwrap();
    bert.expect("answered", Duration::from_secs(5));
    anna.expect("answered", Duration::from_secs(5));
    bert.send(&format!("tone {bcall} 700"));
    bert.expect("playing", Duration::from_secs(5));
    assert_eq!(d.snapshot().calls, 2);
    assert_eq!(agent_state(admin, "bert"), "on-call");

    // anna presses transfer: REFER on the customer's call, Replaces = the consultation.
    anna.send(&format!("xfer_replaces {customer} {consult}"));
    // Its answer, the NOTIFYs, and both of anna's calls ending (customer's
    // leg and consultation), in whatever order they cross.
    let (mut final_status, mut ended) = (None, Vec::new());
    for _ in 0..10 {
        if final_status.is_some() && ended.len() == 2 {
            break;
        }
        let ev = anna.expect_any(&["xfer_status", "disconnected"], Duration::from_secs(5));
        match ev["event"].as_str() {
            Some("xfer_status") if ev["final"] == true => final_status = Some(ev["code"].clone()),
            Some("disconnected") => ended.push(ev["call"].as_i64().unwrap()),
            _ => {}
        }
    }
    assert_eq!(final_status, Some(Value::from(200)), "NOTIFY sipfrag 200; saw {:?}", anna.seen);
    ended.sort();
    assert_eq!(ended, vec![customer.min(consult), customer.max(consult)]);
    trunk.quiet("disconnected", Duration::from_millis(300));
    bert.quiet("disconnected", Duration::from_millis(300));
    assert_eq!(d.snapshot().calls, 1, "the consultation is gone, the customer's call goes on");

    std::thread::sleep(Duration::from_millis(600));
    let c = hears(&mut trunk, 1, &dir, "customer-hears-bert", 700.0);
    assert!(c > 0.8, "the customer should hear bert's 700 Hz: {c}");
    let b = hears(&mut bert, bcall, &dir, "bert-hears-customer", 440.0);
    assert!(b > 0.8, "bert should hear the customer's 440 Hz: {b}");
    assert_eq!(agent_state(admin, "anna"), "wrap-up");
    assert_eq!(agent_state(admin, "bert"), "on-call");

    trunk.send("hangup");
    bert.expect("disconnected", Duration::from_secs(5));
    let s = assert_drained(&d);
    assert_eq!(s.errors, 0);
    assert_eq!(agent_state(admin, "bert"), "wrap-up");
    drop(bert);
    drop(anna);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_transfer_to_a_consultation_still_ringing_is_refused_and_the_customer_stays() {
    let (_g, port, d, admin) = daemon();
    let dir = std::env::temp_dir().join(format!("acd-attended-ring-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bert = Ua::agent("bert", port, "bert-pw", "ignore");
    let (mut trunk, mut anna, customer, consult) = anna_consults(port);
    bert.expect("incoming", Duration::from_secs(10));
    anna.send(&format!("xfer_replaces {customer} {consult}"));
    let status = anna.expect("xfer_status", Duration::from_secs(5));
    assert_eq!(status["code"], 603, "{status}");
    trunk.quiet("disconnected", Duration::from_millis(500));
    assert_eq!(agent_state(admin, "anna"), "on-call");
    // anna drops the consultation and takes her customer back.
    anna.send(&format!("hangup {consult}"));
    bert.expect("disconnected", Duration::from_secs(5));
    anna.send(&format!("unhold {customer}"));
    anna.send(&format!("tone {customer} 600"));
    std::thread::sleep(Duration::from_millis(1000));
    let r = hears(&mut trunk, 1, &dir, "kept", 600.0);
    assert!(r > 0.8, "the customer should hear anna again: {r}");
    trunk.send("hangup");
    anna.expect("disconnected", Duration::from_secs(5));
    assert_drained(&d);
    drop(bert);
    std::fs::remove_dir_all(&dir).ok();
}
