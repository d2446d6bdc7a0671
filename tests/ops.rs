//! Operations end to end: admin API, reload from the file, shutdown,
//! metrics endpoint and event log, with the daemon in-process on loopback
//! and pjsua2 phones and trunks (see tests/common).

mod common;

use acd::shell::DaemonHandle;
use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token-0123456789";

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("acd-ops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn waiting_ids(admin: std::net::SocketAddr) -> Vec<(u64, String)> {
    let (status, body) = http(admin, "GET", "/calls", Some(TOKEN), None);
    assert_eq!(status, 200, "{body}");
    json(&body)["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["call"].as_u64().unwrap(), c["queue"].as_str().unwrap().to_string()))
        .collect()
}

const QUEUES: &str = r#"
[[queue]]
name = "q"
members = [{ agent = "anna" }]

[[queue]]
name = "other"
members = [{ agent = "bert" }]

[[number]]
number = "100"
queue = "q"
"#;

fn ops_section(extra: &str) -> String {
    format!("[metrics]\nlisten = \"\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n{extra}\n")
}

#[test]
fn admin_api_shows_the_floor_and_changes_it_only_with_the_token() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let text = config_text_with(port, &ops_section(""), &format!("{TWO_AGENTS}{QUEUES}"));
    let cfg = acd::config::from_toml_str("ops.toml", &text).unwrap();
    let d = DaemonHandle::spawn(cfg).expect("daemon");
    let admin = d.admin_addr.expect("admin API bound");

    // Probes need no token; everything else does.
    assert_eq!(http(admin, "GET", "/live", None, None).0, 200);
    assert_eq!(http(admin, "GET", "/ready", None, None).0, 200);
    let (status, body) = http(admin, "GET", "/agents", None, None);
    assert_eq!(status, 401, "{body}");
    assert!(json(&body)["error"].as_str().unwrap().contains("Bearer"), "{body}");
    assert_eq!(http(admin, "GET", "/agents", Some("wrong-token-0123456789"), None).0, 403);
    assert_eq!(http(admin, "POST", "/agents/anna/logout", None, None).0, 401);

    // Two callers wait (nobody registered to take them).
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    let (status, body) = http(admin, "GET", "/calls", Some(TOKEN), None);
    assert_eq!(status, 200);
    let calls = json(&body)["calls"].as_array().unwrap().clone();
    assert_eq!(calls.len(), 2, "{body}");
    assert_eq!(calls[0]["position"], 1);
    assert_eq!(calls[1]["position"], 2);
    assert_eq!(calls[0]["caller"], "trunk");
    let first = calls[0]["call"].as_u64().unwrap();
    let second = calls[1]["call"].as_u64().unwrap();

    let (status, body) = http(admin, "GET", "/queues", Some(TOKEN), None);
    assert_eq!(status, 200);
    let queues = json(&body);
    let q = queues["queues"].as_array().unwrap().iter().find(|q| q["name"] == "q").unwrap().clone();
    assert_eq!(q["waiting"], 2, "{q}");
    assert_eq!(q["agents"]["available"], 1, "{q}");

    // Agent state: pause with a reason, seen by supervisors; errors are clear.
    let (status, body) = http(admin, "POST", "/agents/anna/pause", Some(TOKEN), Some(r#"{"reason":"coaching"}"#));
    assert_eq!(status, 200, "{body}");
    let (_, body) = http(admin, "GET", "/agents", Some(TOKEN), None);
    let anna = json(&body)["agents"].as_array().unwrap().iter().find(|a| a["id"] == "anna").unwrap().clone();
    assert_eq!((anna["state"].as_str(), anna["reason"].as_str()), (Some("paused"), Some("coaching")));
    assert_eq!(http(admin, "POST", "/agents/anna/ready", Some(TOKEN), None).0, 200);
    let (status, body) = http(admin, "POST", "/agents/nobody/login", Some(TOKEN), None);
    assert_eq!(status, 404, "{body}");
    let (status, body) = http(admin, "POST", "/agents/anna/pause", Some(TOKEN), Some("{not json"));
    assert_eq!(status, 400, "{body}");
    assert!(json(&body)["error"].as_str().unwrap().contains("JSON"), "{body}");
    assert_eq!(http(admin, "POST", "/agents/anna/logout", Some(TOKEN), None).0, 200);
    let (status, body) = http(admin, "POST", "/agents/anna/pause", Some(TOKEN), Some(r#"{"reason":"x"}"#));
    assert_eq!(status, 409, "pausing a logged-out agent: {body}");

    // Move the second caller to another queue, withdraw the first.
    let (status, body) =
        http(admin, "POST", &format!("/calls/{second}/move"), Some(TOKEN), Some(r#"{"queue":"other"}"#));
    assert_eq!(status, 200, "{body}");
    assert_eq!(waiting_ids(admin), vec![(first, "q".to_string()), (second, "other".to_string())]);
    let (status, body) = http(admin, "POST", "/calls/999/move", Some(TOKEN), Some(r#"{"queue":"other"}"#));
    assert_eq!(status, 404, "{body}");
    let (status, body) = http(admin, "POST", &format!("/calls/{first}/withdraw"), Some(TOKEN), None);
    assert_eq!(status, 200, "{body}");
    // The withdrawn caller is hung up.
    let gone = trunk.expect("disconnected", Duration::from_secs(5));
    assert_eq!(gone["call"].as_u64(), Some(1), "{gone}");
    assert_eq!(waiting_ids(admin), vec![(second, "other".to_string())]);

    // The event stream delivers engine events as they happen.
    let mut sse = std::net::TcpStream::connect(admin).unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(sse, "GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(http(admin, "POST", "/agents/bert/logout", Some(TOKEN), None).0, 200);
    let mut got = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while !got.contains("agent_state") && Instant::now() < deadline {
        if let Ok(n) = sse.read(&mut buf) {
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert!(got.contains("event: engine") && got.contains("\"agent\":\"bert\""), "{got}");

    trunk.send("hangup");
    trunk.expect("disconnected", Duration::from_secs(5));
    drop(trunk);
    wait_for("calls to end", Duration::from_secs(10), || d.snapshot().calls == 0);
}

#[test]
fn a_config_file_change_reloads_keeping_callers_in_order_and_a_bad_file_changes_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let dir = temp_dir("reload");
    let path = dir.join("acd.toml");
    let ops = ops_section("[shutdown]\nreload_debounce_ms = 200\n");
    std::fs::write(&path, config_text_with(port, &ops, &format!("{TWO_AGENTS}{QUEUES}"))).unwrap();
    let cfg = acd::config::load(&path).unwrap();
    let d = DaemonHandle::spawn_with_path(cfg, Some(path.clone())).expect("daemon");
    let admin = d.admin_addr.unwrap();

    // Three callers wait; nobody is registered.
    let mut trunk = trunk();
    for _ in 0..3 {
        trunk.send(&format!("call {}", uri("100", port)));
        trunk.expect("answered", Duration::from_secs(5));
    }
    let before = waiting_ids(admin);
    assert_eq!(before.len(), 3);

    // The admin edits the file: a new queue and number, a new strategy.
    let edited = format!(
        "{TWO_AGENTS}{}\n[[queue]]\nname = \"sales\"\nmembers = [{{ agent = \"bert\" }}]\n\n[[number]]\nnumber = \"200\"\nqueue = \"sales\"\n",
        QUEUES.replace("name = \"q\"\n", "name = \"q\"\nstrategy = \"ring-all\"\n")
    );
    std::fs::write(&path, config_text_with(port, &ops, &edited)).unwrap();
    wait_for("the file change to be reloaded", Duration::from_secs(10), || d.snapshot().reloads == 1);
    assert_eq!(waiting_ids(admin), before, "callers keep their place across the reload");
    let (_, body) = http(admin, "GET", "/queues", Some(TOKEN), None);
    let queues = json(&body);
    let names: Vec<&str> = queues["queues"].as_array().unwrap().iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["q", "other", "sales"]);
    assert_eq!(queues["queues"][0]["strategy"], "ring-all");
    // The new number works at once.
    trunk.send(&format!("call {}", uri("200", port)));
    trunk.expect("answered", Duration::from_secs(5));
    assert_eq!(waiting_ids(admin).len(), 4);

    // A broken file: refused whole, nothing changes, the error names the key.
    std::fs::write(&path, config_text_with(port, &ops, &edited.replace("ring-all", "fastest"))).unwrap();
    wait_for("the bad file to be refused", Duration::from_secs(10), || d.snapshot().failed_reloads == 1);
    let err = d.reload().unwrap_err().to_string();
    assert!(err.contains("queue[q].strategy") && err.contains("fastest"), "{err}");
    let (_, body) = http(admin, "GET", "/queues", Some(TOKEN), None);
    assert_eq!(json(&body)["queues"][0]["strategy"], "ring-all");
    assert_eq!(waiting_ids(admin).len(), 4);

    // Removing a queue with callers: with no overflow target they stay
    // (never dropped) and are still listed.
    std::fs::write(&path, config_text_with(port, &ops, &format!("{TWO_AGENTS}{QUEUES}"))).unwrap();
    wait_for("the queue removal to be reloaded", Duration::from_secs(10), || d.snapshot().reloads >= 2);
    assert_eq!(waiting_ids(admin).len(), 4);

    // An agent registers and serves the first caller.
    let mut anna = Ua::agent("anna", port, "anna-pw", "answer");
    anna.expect("answered", Duration::from_secs(5));
    let after: Vec<u64> = waiting_ids(admin).iter().map(|c| c.0).collect();
    assert!(!after.contains(&before[0].0), "the first caller was served first: {after:?}");
    assert_eq!(&after[..2], &[before[1].0, before[2].0], "the others kept their order");
    trunk.send("hangup");
    drop(trunk);
    drop(anna);
    wait_for("calls to end", Duration::from_secs(10), || d.snapshot().calls == 0);
}

#[test]
fn sigterm_refuses_new_calls_sends_waiting_callers_to_overflow_and_ends_calls_after_the_grace_period() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let mut voicemail = Ua::spawn("vm", &["--behaviour", "answer"]);
    let vm_port = voicemail.seen[0]["port"].as_u64().unwrap();
    let body = format!(
        r#"{TWO_AGENTS}
[[queue]]
name = "q"
max_wait_secs = 600
overflow = "sip:vm@127.0.0.1:{vm_port}"
members = [{{ agent = "anna" }}]

[[number]]
number = "100"
queue = "q"
"#
    );
    let text = config_text_with(port, &ops_section("[shutdown]\ngrace_secs = 2\n"), &body);
    let d = DaemonHandle::spawn(acd::config::from_toml_str("ops.toml", &text).unwrap()).expect("daemon");
    let mut anna = Ua::agent("anna", port, "anna-pw", "answer");
    let mut trunk = trunk();
    // Call 1 talks to anna; call 2 waits behind it.
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    anna.expect("answered", Duration::from_secs(5));
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));

    let t0 = Instant::now();
    let stopper = std::thread::spawn(move || d.shutdown());
    // The waiting caller goes to the overflow target (voicemail answers).
    voicemail.expect("answered", Duration::from_secs(5));
    // A new call is refused with 503 while draining.
    trunk.send(&format!("call {}", uri("100", port)));
    let refused = trunk.expect("disconnected", Duration::from_secs(5));
    assert_eq!(refused["code"].as_i64(), Some(503), "{refused}");
    // The bridged call has the grace period, then both sides get BYE.
    anna.expect("disconnected", Duration::from_secs(6));
    assert!(t0.elapsed() >= Duration::from_millis(1800), "hung up before the grace period: {:?}", t0.elapsed());
    voicemail.expect("disconnected", Duration::from_secs(6));
    stopper.join().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(8), "shutdown took {:?}", t0.elapsed());
}

#[test]
fn the_event_log_records_every_call_and_acd_report_reads_it_back() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let dir = temp_dir("eventlog");
    let log = dir.join("events.jsonl");
    let ops =
        format!("[metrics]\nlisten = \"\"\n\n[admin]\nlisten = \"\"\n\n[event_log]\npath = \"{}\"\n", log.display());
    let text = config_text_with(port, &ops, &format!("{TWO_AGENTS}{QUEUES}"));
    let d = DaemonHandle::spawn(acd::config::from_toml_str("ops.toml", &text).unwrap()).expect("daemon");
    let mut anna = Ua::agent("anna", port, "anna-pw", "answer");
    let mut trunk = trunk();
    // Two answered calls, then one abandoned while anna is away.
    for _ in 0..2 {
        trunk.send(&format!("call {}", uri("100", port)));
        trunk.expect("answered", Duration::from_secs(5));
        anna.expect("answered", Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(200));
        trunk.send("hangup");
        anna.expect("disconnected", Duration::from_secs(5));
    }
    anna.send("unregister");
    anna.expect("unregistered", Duration::from_secs(5));
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    trunk.send("hangup");
    trunk.expect("disconnected", Duration::from_secs(5));
    wait_for("calls to end", Duration::from_secs(10), || d.snapshot().calls == 0);
    drop(d);

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text.lines().map(json).collect();
    let count = |event: &str, outcome: Option<&str>| {
        lines.iter().filter(|l| l["event"] == event && outcome.is_none_or(|o| l["outcome"] == o)).count()
    };
    assert_eq!(count("call_arrived", None), 3, "{text}");
    assert_eq!(count("offered", None), 2);
    assert_eq!(count("answered", None), 2);
    assert_eq!(count("call_finished", Some("answered")), 2);
    assert_eq!(count("call_finished", Some("abandoned")), 1);
    assert!(lines.iter().any(|l| l["event"] == "agent_state" && l["agent"] == "anna"), "{text}");
    assert!(lines.iter().all(|l| l["ts"].as_str().is_some_and(|t| t.ends_with('Z'))));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_acd")).arg("report").arg(&log).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    let row: Vec<&str> =
        report.lines().find(|l| l.starts_with("q ")).expect("a row for queue q").split_whitespace().collect();
    // queue offered answered abandoned overflowed rejected ...
    assert_eq!(&row[..6], ["q", "3", "2", "1", "0", "0"], "{report}");
    // The same caller called three times: two repeats within 24 h, and
    // neither answered call resolved the matter at first contact (each was
    // followed by another call from the same number).
    assert_eq!(&row[row.len() - 2..], ["2", "0.0%"], "{report}");
}

/// Prometheus text exposition: `(name{labels}, value)` for every sample.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

#[test]
fn the_metrics_endpoint_is_scraped_after_real_calls() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let mport = free_port();
    let ops = format!("[metrics]\nlisten = \"127.0.0.1:{mport}\"\n\n[admin]\nlisten = \"\"\n");
    let text = config_text_with(port, &ops, &format!("{TWO_AGENTS}{QUEUES}"));
    let d = DaemonHandle::spawn(acd::config::from_toml_str("ops.toml", &text).unwrap()).expect("daemon");
    let mut anna = Ua::agent("anna", port, "anna-pw", "answer");
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    anna.expect("answered", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    trunk.send("hangup");
    anna.expect("disconnected", Duration::from_secs(5));
    // An unknown number is refused before any queue.
    trunk.send(&format!("call {}", uri("999", port)));
    trunk.expect("disconnected", Duration::from_secs(5));
    wait_for("calls to end", Duration::from_secs(10), || d.snapshot().calls == 0);
    // Gauges refresh every second.
    std::thread::sleep(Duration::from_millis(1200));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{mport}").parse().unwrap();
    let (status, body) = http(addr, "GET", "/metrics", None, None);
    assert_eq!(status, 200);
    let s = samples(&body);
    let get = |key: &str| s.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
    assert_eq!(get("acd_calls_offered_total{queue=\"q\"}"), Some(1.0), "{body}");
    assert_eq!(get("acd_calls_answered_total{queue=\"q\"}"), Some(1.0), "{body}");
    assert_eq!(get("acd_calls_refused_total{status=\"404\"}"), Some(1.0), "{body}");
    assert_eq!(get("acd_queue_callers_waiting{queue=\"q\"}"), Some(0.0), "{body}");
    assert_eq!(get("acd_queue_agents{queue=\"q\",state=\"available\"}"), Some(1.0), "{body}");
    assert_eq!(get("acd_queue_agents{queue=\"other\",state=\"unregistered\"}"), Some(1.0), "{body}");
    assert_eq!(get("acd_queue_service_level_ratio{queue=\"q\"}"), Some(1.0), "{body}");
    assert!(body.contains("# TYPE acd_talk_seconds histogram"), "{body}");
    let talk_count = get("acd_talk_seconds_count{queue=\"q\"}").expect("talk histogram");
    assert_eq!(talk_count, 1.0);
    assert!(s.iter().any(|(k, _)| k.starts_with("acd_wait_seconds_bucket{") && k.contains("le=\"20\"")), "{body}");
    // The stack's own tables: no call is up. At most the 404'd INVITE still
    // runs (RFC 3261 Timer I: T4 = 5 s after its ACK on UDP); the answered
    // INVITEs do not (anna's ran 32 s more before rsipstack patch 6), and
    // the finished transactions (BYEs, the 404, ...) are kept for
    // retransmissions.
    assert_eq!(get("acd_sip_dialogs"), Some(0.0), "{body}");
    // Hold music's own health: no slot given up (frames never sent).
    assert_eq!(get("acd_media_skipped_slots_total"), Some(0.0), "{body}");
    assert!(get("acd_media_frames_generated_total").is_some(), "{body}");
    let running = get("acd_sip_transactions{state=\"running\"}").expect("running transactions");
    assert!(running <= 1.0, "{body}");
    let finished = get("acd_sip_transactions{state=\"finished\"}").expect("finished transactions");
    assert!(finished >= 3.0, "{body}");
    // The SIP socket's own queue, from the kernel's receive timestamps:
    // every datagram read (anna's REGISTERs, two INVITEs, ACKs, a BYE, the
    // 200 to acd's BYE) waited there a little, and none was dropped.
    let listen = format!("listen=\"127.0.0.1:{port}\"");
    let read = get(&format!("acd_sip_socket_wait_seconds_count{{{listen}}}")).expect("socket wait histogram");
    assert!(read >= 6.0, "{read} datagrams: {body}");
    let waited = get(&format!("acd_sip_socket_wait_seconds_sum{{{listen}}}")).unwrap();
    assert!(waited / read < 0.5, "mean wait {} s: {body}", waited / read);
    assert_eq!(get(&format!("acd_sip_socket_drops_total{{{listen}}}")), Some(0.0), "{body}");
}

/// A fire drill: the admin closes queue q's schedule (always open by its
/// hours) with the emergency switch; a real SIP caller (pjsua2) is then
/// refused with the queue's `when_closed` status before being answered, a
/// reload keeps the switch, and clearing it lets the next caller in.
#[test]
fn the_emergency_switch_closes_a_queue_for_real_callers_and_survives_a_reload() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let dir = temp_dir("hours");
    let queues =
        QUEUES.replace("name = \"q\"\n", "name = \"q\"\nschedule = \"always\"\nwhen_closed = \"reject:486\"\n");
    let schedule = "[schedule.always]\ntime_zone = \"UTC\"\nhours = [\"mon-sun 00:00-24:00\"]\n";
    let text = config_text_with(port, &ops_section(""), &format!("{schedule}{TWO_AGENTS}{queues}"));
    let path = dir.join("acd.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = acd::config::from_toml_str(path.to_str().unwrap(), &text).unwrap();
    let d = DaemonHandle::spawn_with_path(cfg, Some(path.clone())).expect("daemon");
    let admin = d.admin_addr.expect("admin API bound");

    let (status, body) = http(admin, "GET", "/schedules", Some(TOKEN), None);
    assert_eq!(status, 200, "{body}");
    let s = json(&body);
    assert_eq!(s["schedules"][0]["name"], "always");
    assert_eq!(s["schedules"][0]["queues"][0]["hours"]["open"], true, "{body}");
    assert_eq!(http(admin, "POST", "/schedules/always/emergency", None, Some("{\"state\":\"closed\"}")).0, 401);
    let (status, body) = http(admin, "POST", "/schedules/always/emergency", Some(TOKEN), Some("{\"state\":\"shut\"}"));
    assert_eq!(status, 400, "{body}");
    assert_eq!(http(admin, "POST", "/schedules/nope/emergency", Some(TOKEN), Some("{\"state\":\"closed\"}")).0, 404);
    let (status, body) =
        http(admin, "POST", "/schedules/always/emergency", Some(TOKEN), Some("{\"state\":\"closed\"}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["schedules"][0]["emergency"], "closed", "{body}");

    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    let ev = trunk.expect("disconnected", Duration::from_secs(5));
    assert_eq!(ev["code"], 486, "{ev}");
    let (_, body) = http(admin, "GET", "/queues", Some(TOKEN), None);
    let q = json(&body)["queues"].as_array().unwrap().iter().find(|q| q["name"] == "q").cloned().unwrap();
    assert_eq!(q["open"]["open"], false, "{q}");
    assert_eq!(q["open"]["why"], "emergency", "{q}");

    // A reload (SIGHUP's path) keeps the switch.
    d.reload().expect("reload");
    trunk.send(&format!("call {}", uri("100", port)));
    let ev = trunk.expect("disconnected", Duration::from_secs(5));
    assert_eq!(ev["code"], 486, "still closed after the reload: {ev}");

    let (status, body) = http(admin, "POST", "/schedules/always/emergency", Some(TOKEN), Some("{\"state\":\"clear\"}"));
    assert_eq!(status, 200, "{body}");
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    trunk.send("hangup");
    std::fs::remove_dir_all(&dir).ok();
}
