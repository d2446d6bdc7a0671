//! Tier 3: acd against real third-party SIP stacks on loopback.
//!
//! pjsua2 (PyPI `pjsua2-python`, driven by `tests/interop/ua.py`) plays the
//! agents' softphones and the trunk; sipsak (Debian) is the second,
//! independent stack. The README test command installs both; without them
//! these tests fail with a message saying so (they are never skipped).
//!
//! The daemon runs in-process ([`DaemonHandle`]) on its own thread so each
//! test can check, after the calls, that no leg, dialog or transaction
//! outlived its call.

mod common;

use acd::shell::DaemonHandle;
use common::*;
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn digest_registration_then_random_routing_bridges_and_hangs_up() {
    let (_g, port, d) = daemon_q(
        r#"strategy = "random"
members = [{ agent = "anna" }, { agent = "bert" }]"#,
    );
    // Wrong password: 403 after the challenge; an unknown user gets the same
    // challenge and the same 403, so a scanner cannot tell who exists.
    let mut wrong =
        Ua::spawn("anna", &["--registrar", &format!("127.0.0.1:{port}"), "--user", "anna", "--password", "nope"]);
    let ev = wrong.expect_any(&["registered", "register_failed"], Duration::from_secs(10));
    assert_eq!((ev["event"].as_str(), ev["code"].as_i64()), (Some("register_failed"), Some(403)), "{ev}");
    drop(wrong);
    let mut ghost =
        Ua::spawn("ghost", &["--registrar", &format!("127.0.0.1:{port}"), "--user", "ghost", "--password", "x"]);
    let ev = ghost.expect_any(&["registered", "register_failed"], Duration::from_secs(10));
    assert_eq!((ev["event"].as_str(), ev["code"].as_i64()), (Some("register_failed"), Some(403)), "{ev}");
    drop(ghost);

    let mut anna = Ua::agent("anna", port, "anna-pw", "answer");
    let mut bert = Ua::agent("bert", port, "bert-pw", "answer");
    assert_eq!(d.snapshot().registered_contacts, 2);

    let mut trunk = trunk();
    let mut answered_by = Vec::new();
    for _ in 0..4 {
        trunk.send(&format!("call {}", uri("100", port)));
        trunk.expect("answered", Duration::from_secs(5));
        // Exactly one agent's phone rings and answers.
        let deadline = Instant::now() + Duration::from_secs(5);
        let who = loop {
            if let Ok(v) = anna.events.try_recv() {
                anna.seen.push(v.clone());
                if v["event"] == "answered" {
                    break "anna";
                }
            }
            if let Ok(v) = bert.events.try_recv() {
                bert.seen.push(v.clone());
                if v["event"] == "answered" {
                    break "bert";
                }
            }
            assert!(Instant::now() < deadline, "no agent answered");
            std::thread::sleep(Duration::from_millis(20));
        };
        answered_by.push(who);
        std::thread::sleep(Duration::from_millis(300));
        trunk.send("hangup");
        trunk.expect("disconnected", Duration::from_secs(5));
        let agent = if who == "anna" { &mut anna } else { &mut bert };
        // The caller's BYE reached the agent through acd.
        agent.expect("disconnected", Duration::from_secs(5));
        assert_drained(&d);
    }
    assert_eq!(answered_by.len(), 4);
}

#[test]
fn priority_rings_the_first_tier_and_rolls_over_after_ring_timeout() {
    let (_g, port, d) = daemon_q(
        r#"strategy = "priority"
ring_timeout_secs = 3
members = [{ agent = "anna", tier = 1 }, { agent = "bert", tier = 2 }]"#,
    );
    let mut anna = Ua::agent("anna", port, "anna-pw", "ignore");
    let mut bert = Ua::agent("bert", port, "bert-pw", "answer");
    let mut trunk = trunk();
    let t0 = Instant::now();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    // Tier 1 first: anna rings, does not answer; acd CANCELs after 3 s.
    anna.expect("incoming", Duration::from_secs(5));
    let gone = anna.expect("disconnected", Duration::from_secs(8));
    assert_eq!(gone["code"].as_i64(), Some(487), "{gone}");
    let rang = t0.elapsed();
    assert!(rang >= Duration::from_millis(2500), "cancelled after {rang:?}, before the ring timeout");
    // Rollover to the next tier.
    bert.expect("answered", Duration::from_secs(5));
    bert.send("hangup");
    trunk.expect("disconnected", Duration::from_secs(5));
    assert_drained(&d);
}

#[test]
fn skills_route_a_finnish_line_to_the_finnish_agent_and_busy_is_skipped() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let cfg = config(
        port,
        r#"
[skills]
lang = { fi = "Finnish", en = "English" }

[[agent]]
id = "anna"
password = "anna-pw"
skills = { lang.en = 5 }

[[agent]]
id = "bert"
password = "bert-pw"
skills = { lang.fi = 5, lang.en = 1 }

[[agent]]
id = "cara"
password = "cara-pw"
skills = { lang.fi = 3 }

[[queue]]
name = "q"
strategy = "skills"
tie_break = "best-level"
members = [{ agent = "anna" }, { agent = "bert" }, { agent = "cara" }]

[[number]]
number = "101"
queue = "q"
skills = { lang.fi = 1 }
"#,
    );
    let d = DaemonHandle::spawn(cfg).expect("daemon");
    let mut anna = Ua::agent("anna", port, "anna-pw", "answer");
    let mut bert = Ua::agent("bert", port, "bert-pw", "busy");
    let mut cara = Ua::agent("cara", port, "cara-pw", "answer");
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("101", port)));
    trunk.expect("answered", Duration::from_secs(5));
    // Best Finnish first: bert, who is busy (486) and is skipped at once.
    let busy = bert.expect("disconnected", Duration::from_secs(5));
    assert_eq!(busy["code"].as_i64(), Some(486), "{busy}");
    cara.expect("answered", Duration::from_secs(3));
    anna.quiet("incoming", Duration::from_millis(500));
    trunk.send("hangup");
    cara.expect("disconnected", Duration::from_secs(5));
    assert_drained(&d);
}

#[test]
fn caller_abandoning_while_an_agent_rings_cancels_the_agent() {
    let (_g, port, d) = daemon_q(
        r#"strategy = "linear"
ring_timeout_secs = 20
members = [{ agent = "anna" }]"#,
    );
    let mut anna = Ua::agent("anna", port, "anna-pw", "ignore");
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    anna.expect("incoming", Duration::from_secs(5));
    trunk.send("hangup");
    let gone = anna.expect("disconnected", Duration::from_secs(5));
    assert_eq!(gone["code"].as_i64(), Some(487), "{gone}");
    assert_drained(&d);
}

#[test]
fn unknown_numbers_and_foreign_sources_are_refused() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let mut cfg = config(port, &queue_q(r#"members = [{ agent = "anna" }]"#));
    let d = DaemonHandle::spawn(cfg.clone()).expect("daemon");
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("999", port)));
    let ev = trunk.expect("disconnected", Duration::from_secs(5));
    assert_eq!(ev["code"].as_i64(), Some(404), "{ev}");
    drop(d);

    // The same trunk, but acd only trusts 127.0.0.2: 403, nothing routed.
    let port = free_port();
    cfg.sip.listen_udp = vec![format!("127.0.0.1:{port}").parse().unwrap()];
    cfg.sip.listen_tcp = cfg.sip.listen_udp.clone();
    cfg.trunks[0].sources = vec!["127.0.0.2/32".parse().unwrap()];
    let d = DaemonHandle::spawn(cfg).expect("daemon");
    let mut anna = Ua::agent("anna", port, "anna-pw", "answer");
    trunk.send(&format!("call {}", uri("100", port)));
    let ev = trunk.expect("disconnected", Duration::from_secs(5));
    assert_eq!(ev["code"].as_i64(), Some(403), "{ev}");
    anna.quiet("incoming", Duration::from_millis(500));
    assert_drained(&d);
}

#[test]
fn sipsak_options_and_registration() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        std::path::Path::new("/usr/bin/sipsak").exists(),
        "sipsak not installed: run the README test command, which installs it from Debian"
    );
    let port = free_port();
    let cfg = config(port, &format!("{TWO_AGENTS}\n[[queue]]\nname = \"q\"\nmembers = [{{ agent = \"anna\" }}]\n"));
    let d = DaemonHandle::spawn(cfg).expect("daemon");
    let sipsak = |args: &[&str]| {
        let out = Command::new("/usr/bin/sipsak").args(args).output().expect("run sipsak");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };
    let target = format!("sip:anna@127.0.0.1:{port}");
    let (code, out) = sipsak(&["-vv", "-s", &format!("sip:acd@127.0.0.1:{port}")]);
    assert_eq!(code, Some(0), "OPTIONS: {out}");
    assert!(out.contains("200 OK") && out.contains("Allow: INVITE"), "{out}");
    // Register with MD5 digest (sipsak reads only the first challenge).
    let (code, out) = sipsak(&[
        "-vv",
        "-U",
        "-C",
        "sip:anna@127.0.0.1:9",
        "-E",
        "udp",
        "-x",
        "60",
        "-u",
        "anna",
        "-a",
        "anna-pw",
        "-s",
        &target,
    ]);
    assert_eq!(code, Some(0), "register: {out}");
    assert!(out.contains("completed successful"), "{out}");
    assert_eq!(d.snapshot().registered_contacts, 1, "{out}");
    let (code, out) = sipsak(&["-vv", "-U", "-u", "anna", "-a", "wrong", "-s", &target]);
    assert_ne!(code, Some(0));
    assert!(out.contains("403"), "{out}");
}

/// Sends one raw datagram and returns the first line of the answer, if any.
fn raw_udp(port: u16, msg: &str) -> Option<String> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    s.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string())
}

fn request(method: &str, port: u16, local: u16, extra: &str) -> String {
    format!(
        "{method} sip:acd@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-{method}-{extra_len}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1>;tag=1\r\n\
         To: <sip:acd@127.0.0.1>\r\n\
         Call-ID: probe-{method}-{extra_len}@127.0.0.1\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n",
        extra_len = extra.len()
    )
}

#[test]
fn malformed_and_unsupported_requests_get_clear_answers_and_the_daemon_carries_on() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let cfg = config(port, &format!("{TWO_AGENTS}\n[[queue]]\nname = \"q\"\nmembers = [{{ agent = \"anna\" }}]\n"));
    let d = DaemonHandle::spawn(cfg).expect("daemon");
    // Garbage is dropped (no answer), and the daemon still answers after it.
    assert_eq!(raw_udp(port, "\x01\x02 this is not SIP \r\n\r\n"), None);
    // Parsed, but the CSeq method does not match the request: 400.
    let bad = request("OPTIONS", port, 1, "CSeq: 1 INVITE\r\n");
    assert_eq!(raw_udp(port, &bad).as_deref(), Some("SIP/2.0 400 Bad Request"));
    // A bad Expires on REGISTER: 400.
    let bad = request("REGISTER", port, 1, "CSeq: 1 REGISTER\r\nExpires: soon\r\n");
    assert_eq!(raw_udp(port, &bad).as_deref(), Some("SIP/2.0 400 Bad Request"));
    // A method acd does not serve: 405.
    let sub = request("SUBSCRIBE", port, 1, "CSeq: 1 SUBSCRIBE\r\nEvent: presence\r\n");
    assert_eq!(raw_udp(port, &sub).as_deref(), Some("SIP/2.0 405 Method Not Allowed"));
    // A BYE for no dialog: 481.
    let bye = request("BYE", port, 1, "CSeq: 2 BYE\r\n")
        .replace("To: <sip:acd@127.0.0.1>", "To: <sip:acd@127.0.0.1>;tag=nope");
    assert_eq!(raw_udp(port, &bye).as_deref(), Some("SIP/2.0 481 Call/Transaction Does Not Exist"));
    // Still alive and well.
    let ok = request("OPTIONS", port, 1, "CSeq: 7 OPTIONS\r\n");
    assert_eq!(raw_udp(port, &ok).as_deref(), Some("SIP/2.0 200 OK"));
    assert_drained(&d);
}

#[test]
fn feature_codes_pause_and_ready_the_agent_from_the_phone() {
    let (_g, port, d) = daemon_q(
        r#"strategy = "linear"
members = [{ agent = "anna" }, { agent = "bert" }]"#,
    );
    let mut anna = Ua::agent("anna", port, "anna-pw", "answer");
    let mut bert = Ua::agent("bert", port, "bert-pw", "answer");
    // *43: pause. acd answers and hangs up by itself.
    anna.send(&format!("call {}", uri("*43", port)));
    anna.expect("answered", Duration::from_secs(5));
    anna.expect("disconnected", Duration::from_secs(5));
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    // Linear would ring anna first; paused, she is skipped.
    bert.expect("answered", Duration::from_secs(5));
    anna.quiet("incoming", Duration::from_millis(300));
    trunk.send("hangup");
    bert.expect("disconnected", Duration::from_secs(5));
    // *44: ready again; the next call rings anna first.
    anna.send(&format!("call {}", uri("*44", port)));
    anna.expect("answered", Duration::from_secs(5));
    anna.expect("disconnected", Duration::from_secs(5));
    trunk.send(&format!("call {}", uri("100", port)));
    let ev = anna.expect_any(&["incoming", "answered"], Duration::from_secs(5));
    assert_eq!(ev["event"], "incoming");
    anna.expect("answered", Duration::from_secs(5));
    trunk.send("hangup");
    anna.expect("disconnected", Duration::from_secs(5));
    assert_drained(&d);
}

#[test]
fn a_phone_that_stops_answering_options_is_skipped_without_a_ring_timeout() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let mut cfg = config(
        port,
        &queue_q(
            r#"strategy = "linear"
ring_timeout_secs = 30
members = [{ agent = "anna" }, { agent = "bert" }]"#,
        ),
    );
    cfg.sip.options_interval_secs = 1;
    cfg.sip.options_timeout_secs = 1;
    let d = DaemonHandle::spawn(cfg).expect("daemon");
    let anna = Ua::agent("anna", port, "anna-pw", "answer");
    let mut bert = Ua::agent("bert", port, "bert-pw", "answer");
    assert_eq!(d.snapshot().registered_contacts, 2);
    // anna's phone vanishes without unregistering.
    let mut anna = anna;
    let _ = anna.child.kill();
    let _ = anna.child.wait();
    let deadline = Instant::now() + Duration::from_secs(6);
    while d.snapshot().registered_contacts != 1 {
        assert!(Instant::now() < deadline, "the dead phone is still registered: {:?}", d.snapshot());
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut trunk = trunk();
    let t0 = Instant::now();
    trunk.send(&format!("call {}", uri("100", port)));
    bert.expect("answered", Duration::from_secs(5));
    // Far below anna's 30 s ring timeout.
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    trunk.send("hangup");
    bert.expect("disconnected", Duration::from_secs(5));
    assert_drained(&d);
}

#[test]
fn an_agent_registered_over_tcp_is_rung_over_its_connection() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let cfg = config(port, &queue_q(r#"members = [{ agent = "anna" }]"#));
    let d = DaemonHandle::spawn(cfg).expect("daemon");
    let registrar = format!("127.0.0.1:{port}");
    let mut anna = Ua::spawn(
        "anna",
        &["--transport", "tcp", "--registrar", &registrar, "--user", "anna", "--password", "anna-pw"],
    );
    let ev = anna.expect_any(&["registered", "register_failed"], Duration::from_secs(10));
    assert_eq!(ev["event"], "registered", "{ev}");
    let mut trunk = trunk();
    trunk.send(&format!("call {}", uri("100", port)));
    trunk.expect("answered", Duration::from_secs(5));
    anna.expect("answered", Duration::from_secs(5));
    trunk.send("hangup");
    anna.expect("disconnected", Duration::from_secs(5));
    assert_drained(&d);
}

#[test]
fn sha256_digest_registration_when_it_is_the_only_algorithm_offered() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let mut cfg = config(port, &format!("{TWO_AGENTS}\n[[queue]]\nname = \"q\"\nmembers = [{{ agent = \"anna\" }}]\n"));
    cfg.sip.digest_algorithms = vec![acd::config::DigestAlgorithm::Sha256];
    let d = DaemonHandle::spawn(cfg).expect("daemon");
    let _anna = Ua::agent("anna", port, "anna-pw", "answer");
    assert_eq!(d.snapshot().registered_contacts, 1);
    let mut wrong =
        Ua::spawn("bert", &["--registrar", &format!("127.0.0.1:{port}"), "--user", "bert", "--password", "nope"]);
    let ev = wrong.expect_any(&["registered", "register_failed"], Duration::from_secs(10));
    assert_eq!(ev["code"].as_i64(), Some(403), "{ev}");
}

#[test]
fn a_trunk_with_credentials_must_pass_digest_on_its_invites() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let mut cfg = config(port, &queue_q(r#"members = [{ agent = "anna" }]"#));
    cfg.trunks[0].credentials = Some(("carrier".into(), "trunk-pw".into()));
    let d = DaemonHandle::spawn(cfg).expect("daemon");
    let mut anna = Ua::agent("anna", port, "anna-pw", "answer");
    // Wrong password: challenged, then 403; nothing rings.
    let mut bad = Ua::spawn("trunk", &["--auth-user", "carrier", "--auth-password", "nope"]);
    bad.send(&format!("call {}", uri("100", port)));
    let ev = bad.expect("disconnected", Duration::from_secs(5));
    assert_eq!(ev["code"].as_i64(), Some(403), "{ev}");
    anna.quiet("incoming", Duration::from_millis(300));
    drop(bad);
    // Right password: the call goes through.
    let mut good = Ua::spawn("trunk", &["--auth-user", "carrier", "--auth-password", "trunk-pw"]);
    good.send(&format!("call {}", uri("100", port)));
    good.expect("answered", Duration::from_secs(5));
    anna.expect("answered", Duration::from_secs(5));
    good.send("hangup");
    anna.expect("disconnected", Duration::from_secs(5));
    assert_drained(&d);
}
