//! The event log end to end: a short scripted scenario on the example config,
//! every engine event written through `EventLog`, the file read back, and
//! `acd report` on it (the library call, and the binary on the checked-in
//! sample `tests/data/events-sample.jsonl`).
//!
//! The script (config/acd.toml; t in seconds from 2026-11-23T21:00:00Z;
//! only aino, eero and james have phones registered, so everyone else is
//! skipped as unregistered; support-fi prefers eero, who has fewer skills):
//!
//! | call | t | queue | caller | what happens |
//! |---|---|---|---|---|
//! | 1 | 10 | support-fi | +358401111111 | eero rings out (15 s, no-answer), aino answers at 28 (waited 18), talks 60 s, wrap-up 10 s |
//! | 2 | 40 | support-en | +358402222222 | james answers at 45 (5), talks 100 s, wrap-up 10 s |
//! | 3 | 50 | support-fi | +358401111111 | repeat of call 1; eero answers at 54 (4), talks 30 s, wrap-up 10 s |
//! | 4 | 60 | support-en | +358403333333 | nobody free; hangs up at 90 (abandoned) |
//! | 5 | 100 | support-fi | +358404444444 | eero answers at 104 (4), talks 20 s, wrap-up 10 s |
//! | 6 | 200 | support-fi | +358405555555 | needs lang.en 5: nobody in support-fi; max wait 240 s → overflows to support-en at 440, james answers at 445 (waited 245), talks 50 s, wrap-up 10 s |
//! | 7 | 310 | sales | +358406666666 | emma, olga, mikko logged out at 300: when_no_agents → reject:486 |
//! | 8 | 600 | support-en | +358403333333 | repeat of call 4; aino (longest idle) answers at 603 (3), talks 40 s; pauses for lunch at 650, 7 s into wrap-up |
//! | 9 | 700 | support-fi | +358407777777 | eero rings (aino skipped: "paused: lunch"); caller hangs up at 702, ring cancelled |
//!
//! At 800 the same config is applied again. KPIs by hand, service level 20 s:
//! - support-fi: offered 5 (1, 3, 5, 6, 9), answered 3, all within 20 s
//!   → SL 3/5 = 60 %; ASA (18+4+4)/3 = 8.667 s; AHT (70+40+30)/3 = 46.667 s;
//!   abandoned 1 (20 %); overflowed 1; repeat callers 1 (call 3).
//! - support-en: offered 4 (2, 4, 6, 8), answered 3, 2 within 20 s → SL 50 %;
//!   ASA (5+245+3)/3 = 84.333 s; AHT (110+60+47)/3 = 72.333 s; abandoned 1
//!   (25 %); repeat callers 1 (call 8).
//! - sales: offered 0, overflowed 1, rejected 1.
//! - total: 9 calls, offered 8, answered 6, 5 within 20 s → SL 62.5 %;
//!   ASA 279/6 = 46.5 s; AHT 357/6 = 59.5 s; abandoned 2 (25 %); rejected 1;
//!   repeat callers 2.

use acd::engine::{Action, AgentId, CallId, Engine, Event, Input, NewCall, Time};
use acd::ops::eventlog::{event_json, EventLog};
use acd::ops::report::report;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

/// 2026-11-23T21:00:00Z: the wall clock at engine time 0.
const BASE_UNIX_MS: u64 = 1_795_467_600_000;
const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/events-sample.jsonl");

struct ScriptCall {
    id: u64,
    at: u32,
    queue: &'static str,
    caller: &'static str,
    priority: i32,
    skills: Vec<(String, u8)>,
    talk_secs: u32,
    patience_secs: Option<u32>,
}

fn calls() -> Vec<ScriptCall> {
    let c = |id, at, queue, caller, talk_secs, patience_secs| ScriptCall {
        id,
        at,
        queue,
        caller,
        priority: 0,
        skills: vec![],
        talk_secs,
        patience_secs,
    };
    vec![
        ScriptCall { priority: 5, ..c(1, 10, "support-fi", "+358401111111", 60, None) },
        c(2, 40, "support-en", "+358402222222", 100, None),
        c(3, 50, "support-fi", "+358401111111", 30, None),
        c(4, 60, "support-en", "+358403333333", 0, Some(30)),
        c(5, 100, "support-fi", "+358404444444", 20, None),
        ScriptCall { skills: vec![("lang.en".into(), 5)], ..c(6, 200, "support-fi", "+358405555555", 50, None) },
        c(7, 310, "sales", "+358406666666", 0, None),
        c(8, 600, "support-en", "+358403333333", 40, None),
        c(9, 700, "support-fi", "+358407777777", 0, Some(2)),
    ]
}

fn dialled(queue: &str) -> &'static str {
    match queue {
        "support-en" => "100",
        "support-fi" => "101",
        "sales" => "400",
        other => panic!("no number for {other}"),
    }
}

#[derive(Debug)]
enum Step {
    Arrive(usize),
    Register(&'static str),
    Logout(&'static str),
    Pause(&'static str, &'static str),
    Reload,
    Answer { call: CallId, agent: AgentId, token: u64 },
    Abandon(CallId),
    HangUp(CallId),
}

/// The engine on a virtual clock, with scripted phones and callers; every
/// event goes to the event log as it is drained.
struct Net {
    engine: Engine,
    config: acd::config::Config,
    now: Time,
    script: Vec<ScriptCall>,
    steps: BTreeMap<(Time, u64), Step>,
    seq: u64,
    rings: HashMap<(CallId, AgentId), u64>,
    rings_per_agent: HashMap<String, u32>,
    log: EventLog,
    events: Vec<Event>,
}

impl Net {
    fn new(log_path: &Path) -> Net {
        let config = acd::config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/acd.toml"))
            .expect("example config is valid");
        let engine = Engine::new(&config, Time::ZERO);
        let log = EventLog::open(log_path, 0, 0).expect("temp file");
        let mut net = Net {
            engine,
            config,
            now: Time::ZERO,
            script: calls(),
            steps: BTreeMap::new(),
            seq: 0,
            rings: HashMap::new(),
            rings_per_agent: HashMap::new(),
            log,
            events: Vec::new(),
        };
        for a in ["aino", "eero", "james"] {
            net.schedule(0, Step::Register(a));
        }
        for a in ["emma", "olga", "mikko"] {
            net.schedule(300, Step::Logout(a));
        }
        net.schedule(650, Step::Pause("aino", "lunch"));
        net.schedule(800, Step::Reload);
        for i in 0..net.script.len() {
            let (at, id, patience) = (net.script[i].at, net.script[i].id, net.script[i].patience_secs);
            net.schedule(at, Step::Arrive(i));
            if let Some(p) = patience {
                net.schedule(at + p, Step::Abandon(CallId(id)));
            }
        }
        net.drain(); // the engine's start-up events (auto-login, config)
        net
    }

    fn schedule(&mut self, at_secs: u32, step: Step) {
        self.schedule_at(Time::from_secs(at_secs as u64), step);
    }

    fn schedule_at(&mut self, at: Time, step: Step) {
        self.seq += 1;
        self.steps.insert((at, self.seq), step);
    }

    fn input(&mut self, input: Input) {
        let text = format!("{input:?}");
        self.engine.handle(self.now, input).unwrap_or_else(|e| panic!("{}: engine refused {text}: {e}", self.now));
        self.drain();
    }

    fn run(&mut self) {
        loop {
            let next_step = self.steps.keys().next().map(|k| k.0);
            let next_timer = self.engine.poll_timeout();
            match (next_timer, next_step) {
                (None, None) => break,
                // Timers first on a tie, as in tests/scenario_hour.rs.
                (Some(t), s) if s.is_none_or(|s| t <= s) => {
                    self.now = t;
                    self.engine.handle_timeout(t).expect("timeout");
                    self.drain();
                }
                _ => {
                    let (&key, _) = self.steps.iter().next().expect("checked");
                    let step = self.steps.remove(&key).expect("present");
                    self.now = key.0;
                    self.apply(step);
                }
            }
            assert!(self.now < Time::from_secs(3600), "the scenario does not settle");
        }
    }

    fn agent(&self, name: &str) -> AgentId {
        self.engine.agent_id(name).expect("agent in config")
    }

    fn apply(&mut self, step: Step) {
        match step {
            Step::Arrive(i) => {
                let c = &self.script[i];
                let nc = NewCall {
                    id: CallId(c.id),
                    queue: self.engine.queue_id(c.queue).expect("queue"),
                    caller: c.caller.to_string(),
                    priority: c.priority,
                    skills: c.skills.clone(),
                    attributes: vec![("dialled".into(), dialled(c.queue).into()), ("trunk".into(), "local-pbx".into())],
                };
                self.input(Input::CallArrived(nc));
            }
            Step::Register(a) => {
                let agent = self.agent(a);
                self.input(Input::AgentRegistered { agent });
            }
            Step::Logout(a) => {
                let agent = self.agent(a);
                self.input(Input::AgentLogout { agent });
            }
            Step::Pause(a, reason) => {
                let agent = self.agent(a);
                self.input(Input::AgentPause { agent, reason: reason.into() });
            }
            Step::Reload => {
                let cfg = Box::new(self.config.clone());
                self.input(Input::ConfigReplaced(cfg));
            }
            Step::Answer { call, agent, token } => {
                if self.rings.get(&(call, agent)) == Some(&token) {
                    self.input(Input::OfferAnswered { call, agent });
                }
            }
            Step::Abandon(call) => {
                if self.engine.call(call).is_some_and(|v| v.state != "bridged") {
                    self.input(Input::CallAbandoned { call });
                }
            }
            Step::HangUp(call) => self.input(Input::CallEnded { call }),
        }
    }

    fn drain(&mut self) {
        let now = self.now;
        while let Some(a) = self.engine.poll_action() {
            match a {
                Action::Ring { call, agent, .. } => {
                    self.seq += 1;
                    let token = self.seq;
                    self.rings.insert((call, agent), token);
                    let name = self.engine.agent_name(agent).to_string();
                    let n = self.rings_per_agent.entry(name.clone()).or_default();
                    *n += 1;
                    // eero misses his first ring; everyone else answers.
                    let answer_after = match (name.as_str(), *n) {
                        ("eero", 1) => None,
                        ("eero", _) => Some(4),
                        ("aino", _) => Some(3),
                        ("james", _) => Some(5),
                        (other, _) => panic!("{other} has no phone"),
                    };
                    if let Some(s) = answer_after {
                        self.schedule_at(now.plus_secs(s), Step::Answer { call, agent, token });
                    }
                }
                Action::CancelRing { call, agent } => {
                    self.rings.remove(&(call, agent));
                }
                Action::Bridge { call, agent } => {
                    self.rings.remove(&(call, agent));
                    let talk = self.script.iter().find(|c| CallId(c.id) == call).expect("scripted").talk_secs;
                    self.schedule_at(now.plus_secs(talk), Step::HangUp(call));
                }
                _ => {}
            }
        }
        while let Some(e) = self.engine.poll_event() {
            let line = event_json(&self.engine, BASE_UNIX_MS + now.as_millis(), &e);
            self.log.write(&line).expect("event log write");
            self.events.push(e);
        }
    }
}

fn temp_path(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("acd-eventlog-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("events.jsonl")
}

/// Runs the scenario and returns the log's text.
fn scenario_log(tag: &str) -> (String, Vec<Event>) {
    let path = temp_path(tag);
    let mut net = Net::new(&path);
    net.run();
    net.log.flush().expect("flush");
    assert_eq!(net.engine.call_count(), 0, "every call finished");
    let text = std::fs::read_to_string(&path).expect("log written");
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    (text, net.events)
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn every_event_is_logged_and_reported() {
    let (text, events) = scenario_log("scenario");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    assert_eq!(lines.len(), events.len(), "one line per engine event");

    // Lines are in time order, with both time forms agreeing.
    let mut last = 0;
    for l in &lines {
        let ms = l["ts_ms"].as_u64().expect("ts_ms");
        assert!(ms >= last);
        last = ms;
        assert_eq!(acd::ops::report::parse_timestamp(l["ts"].as_str().expect("ts")), Some(ms));
    }

    let mut per_type: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_queue: BTreeMap<(String, String), usize> = BTreeMap::new();
    for l in &lines {
        let ev = l["event"].as_str().expect("event");
        *per_type.entry(ev).or_default() += 1;
        if let Some(q) = l.get("queue").and_then(Value::as_str) {
            *per_queue.entry((ev.to_string(), q.to_string())).or_default() += 1;
        }
    }
    let want: BTreeMap<&str, usize> = [
        ("config_applied", 2), // start-up and the reload at 800 s
        // 14 auto-logins, then: call 1 → 6, calls 2, 3, 5, 6 → 4 each,
        // 3 logouts, call 8 → 4 (ringing, on-call, wrap-up, paused), call 9 → 2.
        ("agent_state", 45),
        ("call_arrived", 9),
        ("call_queued", 9),
        ("offered", 8),
        ("ring_no_answer", 1),
        ("ring_cancelled", 1),
        ("answered", 6),
        ("overflowed", 2),
        ("call_finished", 9),
    ]
    .into_iter()
    .collect();
    assert_eq!(per_type, want);
    let q = |ev: &str, q: &str| per_queue.get(&(ev.to_string(), q.to_string())).copied().unwrap_or(0);
    assert_eq!((q("call_queued", "support-fi"), q("call_queued", "support-en"), q("call_queued", "sales")), (5, 4, 0));
    assert_eq!((q("offered", "support-fi"), q("offered", "support-en")), (5, 3));
    assert_eq!((q("answered", "support-fi"), q("answered", "support-en")), (3, 3));
    assert_eq!((q("overflowed", "support-fi"), q("overflowed", "sales")), (1, 1));
    assert_eq!(
        (q("call_finished", "support-fi"), q("call_finished", "support-en"), q("call_finished", "sales")),
        (4, 4, 1)
    );

    // A few lines in full: the decision record, the miss, the outcomes.
    let find = |ev: &str, call: u64| -> Vec<&Value> {
        lines.iter().filter(|l| l["event"] == ev && l["call"] == call).collect()
    };
    let arrived = find("call_arrived", 1)[0];
    assert_eq!(arrived["ts"], "2026-11-23T21:00:10.000Z");
    assert_eq!(arrived["caller"], "+358401111111");
    assert_eq!(arrived["priority"], 5);
    assert_eq!(arrived["attributes"], serde_json::json!({"dialled": "101", "trunk": "local-pbx"}));
    let offers = find("offered", 1);
    assert_eq!(offers.len(), 2);
    assert_eq!(offers[0]["strategy"], "skills");
    assert_eq!(offers[0]["chosen"], serde_json::json!(["eero"]));
    assert_eq!(offers[0]["skipped"]["aino"], "not chosen");
    assert_eq!(offers[0]["skipped"]["liisa"], "unregistered");
    assert_eq!(offers[1]["chosen"], serde_json::json!(["aino"]));
    assert!(offers[1]["skipped"]["eero"].as_str().expect("eero skipped").starts_with("back-off: "));
    let miss = find("ring_no_answer", 1)[0];
    assert_eq!((miss["agent"].as_str(), miss["cause"].as_str()), (Some("eero"), Some("no-answer")));
    assert_eq!(miss["ts"], "2026-11-23T21:00:25.000Z");
    assert_eq!(find("answered", 1)[0]["waited_ms"], 18_000);
    assert_eq!(find("offered", 9)[0]["skipped"]["aino"], "paused: lunch");
    assert_eq!(find("offered", 9)[0]["skipped"]["mikko"], "logged out");
    assert_eq!(find("ring_cancelled", 9)[0]["agent"], "eero");
    let over = find("overflowed", 6)[0];
    assert_eq!(
        (over["queue"].as_str(), over["to"].as_str(), over["reason"].as_str()),
        (Some("support-fi"), Some("queue:support-en"), Some("max-wait"))
    );
    let fin = find("call_finished", 6)[0];
    assert_eq!(
        (fin["queue"].as_str(), fin["outcome"].as_str(), fin["agent"].as_str()),
        (Some("support-en"), Some("answered"), Some("james"))
    );
    assert_eq!(fin["waited_ms"], 245_000);
    let rejected = find("call_finished", 7)[0];
    assert_eq!((rejected["outcome"].as_str(), rejected["status"].as_u64()), (Some("rejected"), Some(486)));
    assert_eq!(find("call_finished", 4)[0]["outcome"], "abandoned");
    let paused = lines.iter().find(|l| l["event"] == "agent_state" && l["to"] == "paused").expect("aino's lunch");
    assert_eq!(
        (paused["agent"].as_str(), paused["from"].as_str(), paused["reason"].as_str()),
        (Some("aino"), Some("wrap-up"), Some("lunch"))
    );

    // The report, against the figures worked out by hand in the module docs.
    let r = report(text.as_bytes(), None, None, 20).expect("report");
    assert_eq!(r.calls, 9);
    assert_eq!(r.queues.keys().map(String::as_str).collect::<Vec<_>>(), ["sales", "support-en", "support-fi"]);
    let fi = &r.queues["support-fi"];
    assert_eq!((fi.offered, fi.answered, fi.abandoned, fi.overflowed, fi.rejected), (5, 3, 1, 1, 0));
    assert_eq!((fi.answered_within_sl, fi.handled, fi.repeat_callers_24h), (3, 3, 1));
    assert!(close(fi.service_level, 0.6), "{fi:?}");
    assert!(close(fi.asa_secs, 26.0 / 3.0), "{fi:?}");
    assert!(close(fi.aht_secs, 140.0 / 3.0), "{fi:?}");
    assert!(close(fi.abandon_rate, 0.2), "{fi:?}");
    let en = &r.queues["support-en"];
    assert_eq!((en.offered, en.answered, en.abandoned, en.overflowed, en.rejected), (4, 3, 1, 0, 0));
    assert_eq!((en.answered_within_sl, en.handled, en.repeat_callers_24h), (2, 3, 1));
    assert!(close(en.service_level, 0.5), "{en:?}");
    assert!(close(en.asa_secs, 253.0 / 3.0), "{en:?}");
    assert!(close(en.aht_secs, 217.0 / 3.0), "{en:?}");
    assert!(close(en.abandon_rate, 0.25), "{en:?}");
    let sales = &r.queues["sales"];
    assert_eq!((sales.offered, sales.answered, sales.overflowed, sales.rejected), (0, 0, 1, 1));
    assert_eq!((sales.service_level, sales.asa_secs), (None, None));
    let t = &r.total;
    assert_eq!((t.offered, t.answered, t.abandoned, t.overflowed, t.rejected), (8, 6, 2, 0, 1));
    assert_eq!((t.answered_within_sl, t.handled, t.repeat_callers_24h), (5, 6, 2));
    assert!(close(t.service_level, 0.625), "{t:?}");
    assert!(close(t.asa_secs, 46.5), "{t:?}");
    assert!(close(t.aht_secs, 59.5), "{t:?}");
    assert!(close(t.abandon_rate, 0.25), "{t:?}");

    // A stricter threshold moves only the service level.
    let strict = report(text.as_bytes(), None, None, 4).expect("report");
    assert_eq!(strict.total.answered_within_sl, 3); // waits 4, 4, 3
    assert_eq!(strict.total.asa_secs, r.total.asa_secs);
}

/// The checked-in sample is this scenario's log. It was written by this
/// helper: `ACD_WRITE_SAMPLE=1 cargo test --test eventlog` writes it again.
#[test]
fn sample_can_be_regenerated() {
    if std::env::var_os("ACD_WRITE_SAMPLE").is_some() {
        let (text, _) = scenario_log("sample");
        // Write and rename, so the tests reading the sample meanwhile
        // never see half a file.
        let tmp = format!("{SAMPLE}.tmp");
        std::fs::write(&tmp, text).expect("write the sample");
        std::fs::rename(&tmp, SAMPLE).expect("replace the sample");
    }
    let sample = std::fs::read_to_string(SAMPLE).expect("tests/data/events-sample.jsonl is checked in");
    assert!(report(sample.as_bytes(), None, None, 20).is_ok());
}

fn acd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_acd")).args(args).output().expect("run acd");
    (
        out.status.code().expect("exit status"),
        String::from_utf8(out.stdout).expect("utf-8"),
        String::from_utf8(out.stderr).expect("utf-8"),
    )
}

#[test]
fn acd_report_on_the_sample() {
    let (code, out, err) = acd(&["report", SAMPLE]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "\
calls arriving start of log .. end of log: 9; service level = answered within 20 s / offered
queue       offered  answered  abandoned  overflowed  rejected  transferred  SL 20s  ASA s  AHT s  abandon  repeat 24h     FCR
sales             0         0          0           1         1            0       -      -      -        -           0       -
support-en        4         3          1           0         0            0   50.0%   84.3   72.3    25.0%           1  100.0%
support-fi        5         3          1           1         0            0   60.0%    8.7   46.7    20.0%           1   75.0%
total             8         6          2           0         1            0   62.5%   46.5   59.5    25.0%           2   83.3%
"
    );

    // Calls arriving 21:01:00 up to (not including) 21:10:00 = 600 s: calls 4-7.
    let (code, out, err) = acd(&[
        "report",
        SAMPLE,
        "--from",
        "2026-11-23T21:01:00Z",
        "--to",
        "1795468200000",
        "--service-level-secs",
        "30",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "\
calls arriving 2026-11-23T21:01:00.000Z .. 2026-11-23T21:10:00.000Z: 4; service level = answered within 30 s / offered
queue       offered  answered  abandoned  overflowed  rejected  transferred  SL 30s  ASA s  AHT s  abandon  repeat 24h     FCR
sales             0         0          0           1         1            0       -      -      -        -           0       -
support-en        2         1          1           0         0            0    0.0%  245.0   60.0    50.0%           0       -
support-fi        2         1          0           1         0            0   50.0%    4.0   30.0     0.0%           0  100.0%
total             3         2          1           0         1            0   33.3%  124.5   45.0    33.3%           0  100.0%
"
    );
}

#[test]
fn acd_report_refuses_bad_input_with_64() {
    let path = temp_path("bad");
    let good = std::fs::read_to_string(SAMPLE).expect("sample");
    let first_two: String = good.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, format!("{first_two}{{\"ts_ms\": 1, \"event\": \"answered\"\n")).expect("write");
    let p = path.to_str().expect("utf-8 path");
    let (code, out, err) = acd(&["report", p]);
    assert_eq!(code, 64, "{out}");
    assert!(err.contains("line 3: not an event log line"), "{err}");
    assert!(out.is_empty());

    let (code, _, err) = acd(&["report", "/nonexistent/events.jsonl"]);
    assert_eq!(code, 64);
    assert!(err.contains("cannot open /nonexistent/events.jsonl"), "{err}");

    let (code, _, err) = acd(&["report", SAMPLE, "--from", "2026-11-23T22:00:00Z", "--to", "2026-11-23T21:00:00Z"]);
    assert_eq!(code, 64);
    assert!(err.contains("--from must be before --to"), "{err}");

    let (code, _, err) = acd(&["report", SAMPLE, "--from", "yesterday"]);
    assert_ne!(code, 0);
    assert!(err.contains("RFC 3339"), "{err}");
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}
