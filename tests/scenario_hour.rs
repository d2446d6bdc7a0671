//! A scripted hour of the shipped example call center, replayed on a virtual
//! clock against the real routing engine.
//!
//! The test plays the network: a tiny driver (in the spirit of quinn-proto's
//! `tests/util.rs` `Pair::drive`) feeds the engine scripted inputs, reacts to
//! its actions the way phones would (`Ring` -> the agent's scripted phone
//! behaviour, `Bridge` -> hang up after the call's scripted handle time) and
//! advances time to the earlier of the next scripted step and
//! `engine.poll_timeout()`, calling `handle_timeout` there.
//!
//! What the hour contains (config/acd.toml unchanged: 9 queues, 15 agents):
//! - 135 background calls over 60 min on all nine queues from a seeded
//!   generator (no unseeded randomness): priorities 0 / 3 / 10 (VIP), 30 %
//!   of callers with a patience after which they hang up, billing calls with
//!   an IVR language skill (`X-Skills`);
//! - every phone registers at t=0 and hanna (auto_login = false) logs in;
//! - yusuf and dmitri never answer: rollover, 10 s back-off, auto-pause after
//!   3 misses in a row;
//! - olga's phone answers 486 Busy until 25:00 (back-off 30 s, no pause);
//! - liisa pauses for lunch 20:00-40:00;
//! - a VIP billing caller needing Finnish at 21:00, which only liisa (at
//!   lunch) can take in billing: overflows to support-en after 420 s and is
//!   answered there by aino, its own skill carried along;
//! - emma, olga and mikko (all of sales) log out 30:00-36:00 for a meeting;
//!   a sales call at 34:00 finds nobody logged in: when_no_agents = overflow
//!   -> reject:486;
//! - a burst of 50 support-en calls (one every 3 s, 44:00-46:27) that runs into support-en's
//!   max_wait of 600 s -> sip:voicemail@pbx.example.com, with a VIP caller
//!   arriving in the middle of it.
//!
//! 188 calls in all. `scenario_hour` asserts the per-queue counts against a
//! literal table (see [`EXPECTED`] for how it was obtained and checked) and,
//! independently of it, each behaviour above plus "nothing lost";
//! `replay_is_deterministic` runs the hour twice and compares every action
//! and event. Both take a few milliseconds.

use acd::engine::{
    Action, AgentId, AgentState, CallId, Engine, Event, Input, NewCall, Outcome, OverflowReason, RejectCause, Time,
};
use std::collections::{BTreeMap, HashMap};

const MIN: u64 = 60_000;
const SEC: u64 = 1_000;

// ----------------------------------------------------------------- the script

/// One caller of the scripted hour.
#[derive(Debug, Clone)]
struct ScriptCall {
    id: u64,
    at: Time,
    queue: &'static str,
    priority: i32,
    skills: Vec<(String, u8)>,
    /// Talk time once bridged.
    handle_secs: u64,
    /// Hangs up after this long (from arrival) if not yet bridged.
    patience_secs: Option<u64>,
}

/// What an agent's phone does when it rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phone {
    /// Picks up after this many seconds (always less than any ring timeout).
    AnswerAfter(u64),
    /// Rings out every time.
    NeverAnswer,
    /// Answers `486 Busy Here` one second after the ring.
    Busy,
}

fn phone(agent: &str, now: Time) -> Phone {
    match agent {
        "yusuf" | "dmitri" => Phone::NeverAnswer,
        "olga" if now < Time(25 * MIN) => Phone::Busy,
        "olga" => Phone::AnswerAfter(4),
        "eleni" | "emma" | "hanna" => Phone::AnswerAfter(2),
        "aino" | "liisa" | "omar" | "james" => Phone::AnswerAfter(3),
        "eero" | "nikos" => Phone::AnswerAfter(4),
        "mikko" | "layla" => Phone::AnswerAfter(5),
        "sofia" => Phone::AnswerAfter(6),
        other => panic!("no phone scripted for {other}"),
    }
}

/// Agent-side inputs of the hour (besides answering).
#[derive(Debug, Clone)]
enum AgentCmd {
    Register,
    Login,
    Logout,
    Pause(&'static str),
    Ready,
}

/// Every phone registers at t=0 and hanna logs in; liisa's lunch; the sales
/// team's meeting. `agents` (from the config) must be the 15 scripted here.
fn agent_script(agents: &[String]) -> Vec<(Time, &'static str, AgentCmd)> {
    const ALL: [&str; 15] = [
        "aino", "eero", "liisa", "mikko", "eleni", "nikos", "sofia", "omar", "layla", "yusuf", "olga", "dmitri",
        "james", "emma", "hanna",
    ];
    let mut names: Vec<&str> = agents.iter().map(|a| a.as_str()).collect();
    names.sort();
    let mut all = ALL.to_vec();
    all.sort();
    assert_eq!(names, all, "the scenario is written for config/acd.toml's 15 agents");
    let mut s: Vec<(Time, &'static str, AgentCmd)> = ALL.iter().map(|a| (Time::ZERO, *a, AgentCmd::Register)).collect();
    s.push((Time::ZERO, "hanna", AgentCmd::Login));
    s.push((Time(20 * MIN), "liisa", AgentCmd::Pause("lunch")));
    s.push((Time(40 * MIN), "liisa", AgentCmd::Ready));
    for a in ["emma", "olga", "mikko"] {
        s.push((Time(30 * MIN), a, AgentCmd::Logout));
        s.push((Time(36 * MIN), a, AgentCmd::Login));
    }
    s
}

/// SplitMix64: a fixed, portable generator for the background traffic.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// Hand-placed calls checked individually below.
const SALES_NOBODY: u64 = 9001; // sales at 34:00, everyone of sales logged out
const VIP_BILLING_FI: u64 = 9020; // billing VIP needing Finnish during liisa's lunch
const VIP_BURST: u64 = 9010; // support-en VIP in the middle of the burst
const BURST_FIRST: u64 = 500; // burst calls are 500..550
const BURST_LEN: u64 = 50;

/// Background calls per queue over the hour.
const MIX: [(&str, u32); 9] = [
    ("support-fi", 20),
    ("support-el", 12),
    ("support-ar", 10),
    ("support-ru", 10),
    ("support-en", 30),
    ("billing", 20),
    ("tech", 15),
    ("sales", 10),
    ("complaints", 8),
];

fn call_script() -> Vec<ScriptCall> {
    let mut rng = SplitMix(0xACD_2024);
    let mut calls = Vec::new();
    for (queue, n) in MIX {
        for _ in 0..n {
            let at = loop {
                let t = rng.below(60 * MIN);
                // No background sales calls around the sales meeting, so the
                // one at 34:00 is the only one meeting an empty sales team.
                if queue == "sales" && (29 * MIN..37 * MIN).contains(&t) {
                    continue;
                }
                break t;
            };
            let p = rng.below(100);
            let priority = if p < 6 {
                10
            } else if p < 16 {
                3
            } else {
                0
            };
            let skills = if queue == "billing" {
                match rng.below(100) {
                    0..=54 => vec![],
                    55..=74 => vec![("lang.fi".to_string(), 3)],
                    75..=89 => vec![("lang.el".to_string(), 3)],
                    _ => vec![("lang.ar".to_string(), 3)],
                }
            } else {
                vec![]
            };
            let handle_secs = rng.range(45, 210);
            let patience_secs = if rng.below(100) < 30 { Some(rng.range(20, 400)) } else { None };
            calls.push(ScriptCall { id: 0, at: Time(at), queue, priority, skills, handle_secs, patience_secs });
        }
    }
    calls.sort_by_key(|c| c.at);
    for (i, c) in calls.iter_mut().enumerate() {
        c.id = i as u64 + 1;
    }
    // The support-en burst: 50 callers, one every 3 s from 44:00.
    for i in 0..BURST_LEN {
        calls.push(ScriptCall {
            id: BURST_FIRST + i,
            at: Time(44 * MIN + i * 3 * SEC),
            queue: "support-en",
            priority: 0,
            skills: vec![],
            handle_secs: 120 + (i * 37) % 91,
            patience_secs: if i % 4 == 1 { Some(200 + i * 5) } else { None },
        });
    }
    calls.push(ScriptCall {
        id: VIP_BURST,
        at: Time(45 * MIN + 30 * SEC),
        queue: "support-en",
        priority: 10,
        skills: vec![],
        handle_secs: 90,
        patience_secs: None,
    });
    calls.push(ScriptCall {
        id: VIP_BILLING_FI,
        at: Time(21 * MIN),
        queue: "billing",
        priority: 10,
        skills: vec![("lang.fi".to_string(), 3)],
        handle_secs: 150,
        patience_secs: None,
    });
    calls.push(ScriptCall {
        id: SALES_NOBODY,
        at: Time(34 * MIN),
        queue: "sales",
        priority: 0,
        skills: vec![],
        handle_secs: 60,
        patience_secs: None,
    });
    calls
}

// ----------------------------------------------------------------- the driver

/// A scripted step, applied in (time, insertion) order.
#[derive(Debug, Clone)]
enum Step {
    Arrive(usize),
    Agent(&'static str, AgentCmd),
    /// The agent picks up, if this ring (`token`) is still on.
    Answer {
        call: CallId,
        agent: AgentId,
        token: u64,
    },
    /// The agent's phone answers 486, if this ring is still on.
    Busy {
        call: CallId,
        agent: AgentId,
        token: u64,
    },
    /// The caller's patience ran out: hangs up unless already bridged.
    Abandon(CallId),
    /// A bridged call's handle time is over.
    HangUp(CallId),
}

struct Net {
    engine: Engine,
    now: Time,
    calls: Vec<ScriptCall>,
    by_id: HashMap<CallId, usize>,
    steps: BTreeMap<(Time, u64), Step>,
    step_seq: u64,
    /// Rings currently on, with the token of the ring.
    rings: HashMap<(CallId, AgentId), u64>,
    ring_seq: u64,
    /// Everything the engine said, stamped with the virtual time.
    actions: Vec<(Time, Action)>,
    events: Vec<(Time, Event)>,
    /// Debug strings of the above, interleaved in order, for determinism.
    log: Vec<String>,
}

impl Net {
    fn new() -> Net {
        let config = acd::config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/acd.toml")))
            .expect("shipped config is valid");
        let agents: Vec<String> = config.agents.iter().map(|a| a.id.clone()).collect();
        let engine = Engine::new(&config, Time::ZERO);
        let calls = call_script();
        let mut net = Net {
            engine,
            now: Time::ZERO,
            by_id: HashMap::new(),
            calls: Vec::new(),
            steps: BTreeMap::new(),
            step_seq: 0,
            rings: HashMap::new(),
            ring_seq: 0,
            actions: Vec::new(),
            events: Vec::new(),
            log: Vec::new(),
        };
        // Agent steps first, so at t=0 phones register before calls arrive.
        for (at, agent, cmd) in agent_script(&agents) {
            net.schedule(at, Step::Agent(agent, cmd));
        }
        for (i, c) in calls.iter().enumerate() {
            assert!(net.by_id.insert(CallId(c.id), i).is_none(), "duplicate id {}", c.id);
            net.schedule(c.at, Step::Arrive(i));
            if let Some(p) = c.patience_secs {
                net.schedule(c.at + std::time::Duration::from_secs(p), Step::Abandon(CallId(c.id)));
            }
        }
        net.calls = calls;
        net.drain();
        net
    }

    fn schedule(&mut self, at: Time, step: Step) {
        self.step_seq += 1;
        self.steps.insert((at, self.step_seq), step);
    }

    fn agent(&self, name: &str) -> AgentId {
        self.engine.agent_id(name).expect("agent in config")
    }

    fn input(&mut self, input: Input) {
        let text = format!("{input:?}");
        self.engine.handle(self.now, input).unwrap_or_else(|e| panic!("{}: engine refused {text}: {e}", self.now));
        self.drain();
    }

    /// Runs the whole script, then lets the engine settle (no timer left).
    fn run(&mut self) {
        let mut iterations = 0u32;
        loop {
            iterations += 1;
            assert!(iterations < 100_000, "the replay does not converge");
            let next_step = self.steps.keys().next().map(|k| k.0);
            let next_timer = self.engine.poll_timeout();
            // Engine timers go first on a tie, so a step meeting a ring that
            // just timed out sees the CancelRing and is dropped.
            let timer_first = match (next_timer, next_step) {
                (None, None) => break,
                (Some(t), Some(s)) => t <= s,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            if timer_first {
                let t = next_timer.expect("checked");
                assert!(t >= self.now, "timer in the past");
                self.now = t;
                self.engine.handle_timeout(t).expect("timeout");
                self.drain();
                continue;
            }
            let (&key, _) = self.steps.iter().next().expect("checked");
            let step = self.steps.remove(&key).expect("present");
            self.now = key.0;
            self.apply(step);
        }
        assert!(self.now < Time(3 * 60 * MIN), "ran far past the hour");
    }

    fn apply(&mut self, step: Step) {
        match step {
            Step::Arrive(i) => {
                let c = &self.calls[i];
                let nc = NewCall {
                    id: CallId(c.id),
                    queue: self.engine.queue_id(c.queue).expect("queue in config"),
                    caller: format!("+358401{:05}", c.id),
                    priority: c.priority,
                    skills: c.skills.clone(),
                    attributes: vec![],
                };
                self.input(Input::CallArrived(nc));
            }
            Step::Agent(name, cmd) => {
                let agent = self.agent(name);
                let input = match cmd {
                    AgentCmd::Register => Input::AgentRegistered { agent },
                    AgentCmd::Login => Input::AgentLogin { agent },
                    AgentCmd::Logout => Input::AgentLogout { agent },
                    AgentCmd::Pause(r) => Input::AgentPause { agent, reason: r.to_string() },
                    AgentCmd::Ready => Input::AgentReady { agent },
                };
                self.input(input);
            }
            Step::Answer { call, agent, token } => {
                if self.rings.get(&(call, agent)) == Some(&token) {
                    self.input(Input::OfferAnswered { call, agent });
                }
            }
            Step::Busy { call, agent, token } => {
                if self.rings.remove(&(call, agent)) == Some(token) {
                    self.input(Input::OfferRejected { call, agent, cause: RejectCause::from_sip_status(486) });
                }
            }
            Step::Abandon(call) => {
                let waiting = self.engine.call(call).is_some_and(|v| v.state == "waiting" || v.state == "offering");
                if waiting {
                    self.input(Input::CallAbandoned { call });
                }
            }
            Step::HangUp(call) => self.input(Input::CallEnded { call }),
        }
    }

    /// Drains actions and events after every handle*, reacting like phones.
    fn drain(&mut self) {
        let now = self.now;
        while let Some(a) = self.engine.poll_action() {
            self.log.push(format!("{now} A {a:?}"));
            match &a {
                Action::Ring { call, agent, timeout } => {
                    self.ring_seq += 1;
                    let token = self.ring_seq;
                    let prev = self.rings.insert((*call, *agent), token);
                    assert!(prev.is_none(), "{now}: {call} rings {agent} twice");
                    let name = self.engine.agent_name(*agent).to_string();
                    match phone(&name, now) {
                        Phone::AnswerAfter(s) => {
                            assert!(s < timeout.as_secs(), "answer must beat the ring timeout");
                            self.schedule(now.plus_secs(s as u32), Step::Answer { call: *call, agent: *agent, token });
                        }
                        Phone::Busy => {
                            self.schedule(now.plus_secs(1), Step::Busy { call: *call, agent: *agent, token })
                        }
                        Phone::NeverAnswer => {}
                    }
                }
                Action::CancelRing { call, agent } => {
                    assert!(
                        self.rings.remove(&(*call, *agent)).is_some(),
                        "{now}: CancelRing for {call} / {agent}, which is not ringing"
                    );
                }
                Action::Bridge { call, agent } => {
                    assert!(self.rings.remove(&(*call, *agent)).is_some());
                    let handle = self.calls[self.by_id[call]].handle_secs;
                    self.schedule(now.plus_secs(handle as u32), Step::HangUp(*call));
                }
                Action::StartHold { .. }
                | Action::StopHold { .. }
                | Action::Announce { .. }
                | Action::PlayFile { .. }
                | Action::ConfirmCallback { .. }
                | Action::ClosedPrompt { .. }
                | Action::CallbackWhisper { .. }
                | Action::OfferCallback { .. }
                | Action::DialCallback { .. }
                | Action::Transfer { .. }
                | Action::Reject { .. } => {}
            }
            self.actions.push((now, a));
        }
        while let Some(e) = self.engine.poll_event() {
            self.log.push(format!("{now} E {e:?}"));
            self.events.push((now, e));
        }
    }
}

// ----------------------------------------------------------------- the counts

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    offered: u32,
    answered: u32,
    abandoned: u32,
    overflowed: u32,
    rejected: u32,
}

fn per_queue(net: &Net) -> BTreeMap<String, Counts> {
    let mut m: BTreeMap<String, Counts> =
        net.engine.queue_ids().map(|q| (net.engine.queue_name(q).to_string(), Counts::default())).collect();
    for (_, e) in &net.events {
        match e {
            Event::CallQueued { queue, .. } => m.get_mut(net.engine.queue_name(*queue)).unwrap().offered += 1,
            Event::Overflowed { from, .. } => m.get_mut(net.engine.queue_name(*from)).unwrap().overflowed += 1,
            Event::CallFinished { queue, outcome, .. } => {
                let c = m.get_mut(net.engine.queue_name(*queue)).unwrap();
                match outcome {
                    Outcome::Answered { .. } => c.answered += 1,
                    Outcome::Abandoned => c.abandoned += 1,
                    Outcome::Rejected { .. } => c.rejected += 1,
                    // Counted above from Event::Overflowed; no callbacks or
                    // consultations in this hour.
                    Outcome::Overflowed { .. } | Outcome::CallbackFailed { .. } | Outcome::Consultation { .. } => {}
                }
            }
            _ => {}
        }
    }
    m
}

/// Expected per-queue counts of the hour (188 calls placed: 135 background,
/// 50 burst, 3 hand-placed):
/// (queue, offered = CallQueued in it, answered, abandoned, overflowed =
/// Event::Overflowed from it, rejected).
///
/// How it was obtained: read off the first run of this replay (the test
/// prints the table), then checked by hand against the event log; it is a
/// snapshot, not derived from the engine's code, so any routing change that
/// moves a single call shows up here. What the hand check found:
/// - Consistency: per queue, offered = answered + abandoned + overflowed
///   after queueing; support-en's 85 = 30 background, 50 burst, VIP 9010,
///   2 overflowed in from billing (9020, 98) and 2 from support-ru (111,
///   112). Sales: 10 queued, 7 answered, 3 rejected 486 after max_wait 120 s, and
///   9001 overflowed and rejected without queueing (4 overflowed, 4
///   rejected). Totals: 164 answered + 14 abandoned + 6 voicemail + 4
///   rejected = 188.
/// - support-en overflowed 6: burst calls 542-544 and 546-548 reached
///   600 s (the others of 540-549 were answered or had abandoned).
/// - support-ru overflowed 2 (111, 112 near 55 min): olga serves the older
///   burst callers first (oldest-caller), dmitri is auto-paused, sofia
///   alone does not keep up; they move on to support-en.
/// - billing overflowed 2: VIP 9020 (Finnish, during liisa's lunch) and
///   98 (Greek, 46:08; only nikos has el 3 in billing and he is taken by
///   the burst). Abandoned 2: 65 (Finnish, 26:30, lunch; patience 225 s)
///   and 129.
/// - sales' three max-wait rejects: 44 at 18:07 (olga still answers 486,
///   emma and mikko on calls) and 100, 118 during the burst, when all of
///   sales serve longer-waiting burst callers.
/// - support-ar 10/10: omar and layla suffice once yusuf is auto-paused
///   (at 2:45, on tech call 7).
///
/// Behaviours asserted independently of this table are in `scenario_hour`.
const EXPECTED: [(&str, u32, u32, u32, u32, u32); 9] = [
    //  queue        offered answered abandoned overflowed rejected
    ("support-fi", 20, 19, 1, 0, 0),
    ("support-el", 12, 12, 0, 0, 0),
    ("support-ar", 10, 10, 0, 0, 0),
    ("support-ru", 10, 8, 0, 2, 0),
    ("support-en", 85, 68, 11, 6, 0),
    ("billing", 21, 17, 2, 2, 0),
    ("tech", 15, 15, 0, 0, 0),
    ("sales", 10, 7, 0, 4, 4),
    ("complaints", 8, 8, 0, 0, 0),
];

// ----------------------------------------------------------------- helpers

fn finished(net: &Net, c: u64) -> (Time, Outcome, std::time::Duration, String) {
    net.events
        .iter()
        .find_map(|(t, e)| match e {
            Event::CallFinished { call, outcome, waited, queue } if call.0 == c => {
                Some((*t, outcome.clone(), *waited, net.engine.queue_name(*queue).to_string()))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("call {c} never finished"))
}

fn answered_at(net: &Net, c: u64) -> Option<(Time, AgentId)> {
    net.events.iter().find_map(|(t, e)| match e {
        Event::Answered { call, agent, .. } if call.0 == c => Some((*t, *agent)),
        _ => None,
    })
}

fn rings_to(net: &Net, a: AgentId) -> Vec<(Time, CallId)> {
    net.actions
        .iter()
        .filter_map(|(t, x)| match x {
            Action::Ring { call, agent, .. } if *agent == a => Some((*t, *call)),
            _ => None,
        })
        .collect()
}

fn misses_of(net: &Net, a: AgentId) -> Vec<(Time, CallId, RejectCause)> {
    net.events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::RingNoAnswer { call, agent, cause } if *agent == a => Some((*t, *call, *cause)),
            _ => None,
        })
        .collect()
}

fn state_changes(net: &Net, a: AgentId) -> Vec<(Time, &'static str, &'static str, String)> {
    net.events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::AgentStateChanged { agent, from, to, reason } if *agent == a => {
                Some((*t, *from, *to, reason.clone()))
            }
            _ => None,
        })
        .collect()
}

fn backoff_secs(cause: RejectCause) -> u64 {
    let b = acd::config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/acd.toml")))
        .expect("shipped config is valid")
        .engine
        .backoff;
    (match cause {
        RejectCause::NoAnswer => b.no_answer,
        RejectCause::Busy => b.busy,
        RejectCause::Unavailable => b.unavailable,
        RejectCause::Declined => b.declined,
        RejectCause::Unreachable => b.unreachable,
    }) as u64
}

fn replay() -> Net {
    let mut net = Net::new();
    net.run();
    net
}

// ----------------------------------------------------------------- the tests

#[test]
fn scenario_hour() {
    let net = replay();
    let placed = net.calls.len();
    assert!((150..=250).contains(&placed), "{placed} calls placed");

    // ---- nothing lost -----------------------------------------------------
    let finishes: Vec<(CallId, Outcome)> = net
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::CallFinished { call, outcome, .. } => Some((*call, outcome.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(finishes.len(), placed, "one CallFinished per call placed");
    let mut uniq: Vec<CallId> = finishes.iter().map(|f| f.0).collect();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), placed, "no call finished twice");
    assert_eq!(net.engine.call_count(), 0, "every call has left the engine");
    assert_eq!(net.engine.timer_count(), 0, "the engine has settled");
    assert!(net.rings.is_empty(), "no ring left on: {:?}", net.rings);

    // ---- every outcome matches what the engine asked the network to do -----
    for (call, outcome) in &finishes {
        let acts: Vec<&Action> = net
            .actions
            .iter()
            .map(|(_, a)| a)
            .filter(|a| match a {
                Action::Bridge { call: c, .. } | Action::Transfer { call: c, .. } | Action::Reject { call: c, .. } => {
                    c == call
                }
                _ => false,
            })
            .collect();
        let want = match outcome {
            Outcome::Answered { agent } => Action::Bridge { call: *call, agent: *agent },
            Outcome::Overflowed { uri } => Action::Transfer { call: *call, uri: uri.clone() },
            Outcome::Rejected { status } => Action::Reject { call: *call, status: *status },
            Outcome::Abandoned => {
                assert!(acts.is_empty(), "abandoned {call} was also {acts:?}");
                continue;
            }
            Outcome::CallbackFailed { .. } => panic!("{call}: no caller of this hour asks for a callback"),
            Outcome::Consultation { .. } => panic!("{call}: no agent of this hour consults"),
        };
        assert_eq!(acts, vec![&want], "{call} finished {outcome:?}");
    }
    // Music on hold: whoever was put on hold is taken off it exactly once.
    for c in &net.calls {
        let id = CallId(c.id);
        let starts =
            net.actions.iter().filter(|(_, a)| matches!(a, Action::StartHold { call, .. } if *call == id)).count();
        let stops = net.actions.iter().filter(|(_, a)| matches!(a, Action::StopHold { call } if *call == id)).count();
        assert_eq!(stops, usize::from(starts > 0), "{id}: {starts} StartHold, {stops} StopHold");
    }

    // ---- the table --------------------------------------------------------
    let counts = per_queue(&net);
    let mut table = String::from("queue        offered answered abandoned overflowed rejected\n");
    for (q, ..) in EXPECTED {
        let c = counts[q];
        table += &format!(
            "{q:<12} {:>7} {:>8} {:>9} {:>10} {:>8}\n",
            c.offered, c.answered, c.abandoned, c.overflowed, c.rejected
        );
    }
    eprintln!("{placed} calls placed\n{table}");
    assert_eq!(counts.len(), EXPECTED.len());
    for (q, offered, answered, abandoned, overflowed, rejected) in EXPECTED {
        assert_eq!(
            counts[q],
            Counts { offered, answered, abandoned, overflowed, rejected },
            "counts of {q} changed; the whole table:\n{table}"
        );
    }
    // Whatever joins a queue leaves it exactly one way.
    for (q, c) in &counts {
        let left_by_overflow = net
            .events
            .iter()
            .filter(|(_, e)| {
                matches!(e, Event::Overflowed { from, reason: OverflowReason::MaxWait | OverflowReason::QueueRemoved, .. }
                    if net.engine.queue_name(*from) == q)
            })
            .count() as u32;
        assert_eq!(c.offered, c.answered + c.abandoned + left_by_overflow, "{q}");
    }

    never_answering_agents_roll_over_back_off_and_pause(&net);
    back_off_is_respected(&net);
    busy_agent_backs_off_but_is_not_paused(&net);
    nobody_rings_liisa_at_lunch(&net);
    finnish_vip_overflows_from_billing_to_aino(&net);
    sales_without_agents_rejects_486(&net);
    burst_overflows_to_voicemail_and_vip_jumps_it(&net);
    sales_rings_all_and_cancels_the_others(&net);
    hanna_logs_in_and_takes_complaints(&net);
}

/// yusuf and dmitri never pick up: each rings out the ring timeout exactly
/// three times, the call rolls over to someone else at once, and the third
/// miss pauses them with a visible reason; they are never rung again.
fn never_answering_agents_roll_over_back_off_and_pause(net: &Net) {
    for name in ["yusuf", "dmitri"] {
        let a = net.agent(name);
        let rings: Vec<(Time, CallId, std::time::Duration)> = net
            .actions
            .iter()
            .filter_map(|(t, x)| match x {
                Action::Ring { call, agent, timeout } if *agent == a => Some((*t, *call, *timeout)),
                _ => None,
            })
            .collect();
        let misses = misses_of(net, a);
        assert_eq!(rings.len(), 3, "{name} is rung exactly 3 times: {rings:?}");
        assert_eq!(misses.len(), 3, "{name}: {misses:?}");
        for ((rt, rc, timeout), (mt, mc, cause)) in rings.iter().zip(&misses) {
            assert_eq!((rc, cause), (mc, &RejectCause::NoAnswer));
            assert_eq!(*mt, *rt + *timeout, "{name} rang the full ring timeout");
        }
        // Rollover: the first missed call is offered to another agent at
        // the very moment of the miss, and someone else answers it.
        let (t1, c1, _) = misses[0];
        let rerung = net
            .actions
            .iter()
            .any(|(t, x)| *t == t1 && matches!(x, Action::Ring { call, agent, .. } if *call == c1 && *agent != a));
        assert!(rerung, "{c1} rolls over from {name} at {t1}");
        let (_, outcome, _, _) = finished(net, c1.0);
        assert!(matches!(outcome, Outcome::Answered { agent } if agent != a), "{c1}: {outcome:?}");
        // Auto-pause at the third miss, with its reason, and for good.
        let paused: Vec<_> = state_changes(net, a).into_iter().filter(|s| s.2 == "paused").collect();
        assert_eq!(paused.len(), 1, "{name}: {paused:?}");
        assert_eq!(paused[0].0, misses[2].0);
        assert_eq!(paused[0].3, "auto-paused: missed 3 offers in a row");
        match net.engine.agent_state(a) {
            Some(AgentState::Paused { reason, since }) => {
                assert!(reason.starts_with("auto-paused"), "{name}: {reason}");
                assert_eq!(*since, misses[2].0);
            }
            other => panic!("{name} should still be auto-paused: {other:?}"),
        }
    }
}

/// After any missed offer the agent is not rung again for the back-off of
/// that cause, and back-off visibly decided at least one offer.
fn back_off_is_respected(net: &Net) {
    for (t, e) in &net.events {
        if let Event::RingNoAnswer { agent, cause, .. } = e {
            let until = Time(t.0 + backoff_secs(*cause) * SEC);
            for (rt, call) in rings_to(net, *agent) {
                assert!(
                    !(rt >= *t && rt < until),
                    "{} rung for {call} at {rt}, in back-off after a {} miss at {t}",
                    net.engine.agent_name(*agent),
                    cause.name()
                );
            }
        }
    }
    let decided = net.events.iter().any(|(_, e)| match e {
        Event::Offered { decision, .. } => {
            decision.candidates.iter().any(|c| matches!(c.skipped, Some(acd::engine::Skip::BackOff { .. })))
        }
        _ => false,
    });
    assert!(decided, "no offer was ever decided by a back-off");
}

/// olga's phone answers 486 until 25:00: those are busy rejects one second
/// after the ring, never counted as misses, so she is never paused, and she
/// takes calls after 25:00.
fn busy_agent_backs_off_but_is_not_paused(net: &Net) {
    let a = net.agent("olga");
    let misses = misses_of(net, a);
    assert!(misses.len() >= 5, "olga: {misses:?}");
    let rings = rings_to(net, a);
    for (t, call, cause) in &misses {
        assert_eq!(*cause, RejectCause::Busy);
        assert!(*t <= Time(25 * MIN + SEC), "busy reject at {t}");
        assert!(rings.contains(&(Time(t.0 - SEC), *call)), "486 one second after the ring");
    }
    assert!(state_changes(net, a).iter().all(|s| s.2 != "paused"), "486 is not a miss: olga is never paused");
    let answered: Vec<Time> = net
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Answered { agent, .. } if *agent == a => Some(*t),
            _ => None,
        })
        .collect();
    assert!(!answered.is_empty());
    assert!(answered.iter().all(|t| *t > Time(25 * MIN)), "{answered:?}");
}

/// liisa pauses for lunch at 20:00 and is ready at 40:00: not a single ring
/// in between, calls before and after.
fn nobody_rings_liisa_at_lunch(net: &Net) {
    let a = net.agent("liisa");
    let changes = state_changes(net, a);
    let lunch = changes.iter().position(|s| s.2 == "paused").expect("liisa pauses");
    let (start, _, _, ref why) = changes[lunch];
    // Available at 20:00, so the pause applies at once with its reason.
    assert_eq!((start, why.as_str()), (Time(20 * MIN), "lunch"));
    let (end, from, to, ref why) = changes[lunch + 1];
    assert_eq!((end, from, to, why.as_str()), (Time(40 * MIN), "paused", "available", "ready"));
    let rings = rings_to(net, a);
    let during: Vec<_> = rings.iter().filter(|(t, _)| *t >= start && *t <= end).collect();
    assert!(during.is_empty(), "liisa rung at lunch: {during:?}");
    assert!(rings.iter().any(|(t, _)| *t < start));
    assert!(rings.iter().any(|(t, _)| *t > end));
}

/// VIP 9020 needs Finnish level 3 in billing, where only liisa has it, and
/// liisa is at lunch: nobody is rung in billing, the call overflows after
/// billing's 420 s to support-en keeping its priority and its own skill,
/// and there aino (the only support-en member with Finnish 3) answers it.
fn finnish_vip_overflows_from_billing_to_aino(net: &Net) {
    let c = CallId(VIP_BILLING_FI);
    let billing = net.engine.queue_id("billing").unwrap();
    let en = net.engine.queue_id("support-en").unwrap();
    let mine: Vec<&(Time, Event)> = net
        .events
        .iter()
        .filter(|(_, e)| match e {
            Event::CallQueued { call, .. }
            | Event::Offered { call, .. }
            | Event::Overflowed { call, .. }
            | Event::Answered { call, .. } => *call == c,
            _ => false,
        })
        .collect();
    assert!(matches!(mine[0], (t, Event::CallQueued { queue, priority: 10, .. })
        if *t == Time(21 * MIN) && *queue == billing));
    assert!(matches!(mine[1], (t, Event::Overflowed { from, to, reason: OverflowReason::MaxWait, .. })
        if *t == Time(28 * MIN) && *from == billing && to == "queue:support-en"));
    assert!(matches!(mine[2], (t, Event::CallQueued { queue, priority: 10, .. })
        if *t == Time(28 * MIN) && *queue == en));
    let Some((_, Event::Offered { queue, decision, .. })) = mine.get(3) else {
        panic!("{c} is offered in support-en: {mine:?}");
    };
    assert_eq!(*queue, en);
    let aino = net.agent("aino");
    assert_eq!(decision.chosen().collect::<Vec<_>>(), vec![aino]);
    for cand in &decision.candidates {
        assert!(
            !matches!(cand.skipped, Some(acd::engine::Skip::NotChosen)),
            "nobody but aino could take {c}: {decision:?}"
        );
    }
    assert!(matches!(mine[4], (_, Event::Answered { agent, queue, .. }) if *agent == aino && *queue == en));
    assert_eq!(mine.len(), 5);
}

/// emma, olga and mikko (all of sales) are logged out from 30:00 to 36:00;
/// the sales call at 34:00 is not queued but sent to reject:486.
fn sales_without_agents_rejects_486(net: &Net) {
    for name in ["emma", "olga", "mikko"] {
        let last = state_changes(net, net.agent(name)).into_iter().rfind(|s| s.0 <= Time(34 * MIN)).unwrap();
        assert_eq!(last.2, "logged-out", "{name} at 34:00: {last:?}");
    }
    let c = CallId(SALES_NOBODY);
    let sales = net.engine.queue_id("sales").unwrap();
    assert!(!net.events.iter().any(|(_, e)| matches!(e, Event::CallQueued { call, .. } if *call == c)));
    assert!(net.events.iter().any(|(t, e)| *t == Time(34 * MIN)
        && matches!(e, Event::Overflowed { call, from, to, reason: OverflowReason::NoAgents }
            if *call == c && *from == sales && to == "reject:486")));
    let (t, outcome, waited, queue) = finished(net, c.0);
    assert_eq!(
        (t, outcome, waited, queue.as_str()),
        (Time(34 * MIN), Outcome::Rejected { status: 486 }, std::time::Duration::ZERO, "sales")
    );
}

/// The support-en burst: whoever reaches support-en's max wait goes to
/// voicemail after exactly 600 s; the VIP arriving mid-burst is offered
/// the next free agent and answered before every burst caller who was
/// still waiting (not ringing) when it arrived.
fn burst_overflows_to_voicemail_and_vip_jumps_it(net: &Net) {
    let en = net.engine.queue_id("support-en").unwrap();
    let burst = BURST_FIRST..BURST_FIRST + BURST_LEN;
    let mut voicemail = 0;
    for (_, e) in &net.events {
        if let Event::Overflowed { call, from, to, reason } = e {
            if to.starts_with("sip:voicemail") {
                voicemail += 1;
                assert_eq!((*from, *reason), (en, OverflowReason::MaxWait));
                assert!(burst.contains(&call.0), "{call} is a burst call");
                let (t, outcome, waited, _) = finished(net, call.0);
                assert_eq!(outcome, Outcome::Overflowed { uri: "sip:voicemail@pbx.example.com".into() });
                assert_eq!(waited, std::time::Duration::from_secs(600));
                assert_eq!(t, net.calls[net.by_id[call]].at.plus_secs(600));
            }
        }
    }
    assert!(voicemail > 0, "the burst reaches voicemail");

    let vip_at = net.calls[net.by_id[&CallId(VIP_BURST)]].at;
    let (vip_answered, _) = answered_at(net, VIP_BURST).expect("VIP answered");
    assert!(vip_answered.since(vip_at) < std::time::Duration::from_secs(10));
    let first_offer_after = net.events.iter().find_map(|(t, e)| match e {
        Event::Offered { call, queue, .. } if *t >= vip_at && *queue == en => Some(*call),
        _ => None,
    });
    assert_eq!(first_offer_after, Some(CallId(VIP_BURST)));
    let first_offered = |c: u64| {
        net.events.iter().find_map(|(t, e)| match e {
            Event::Offered { call, .. } if call.0 == c => Some(*t),
            _ => None,
        })
    };
    let mut overtaken = Vec::new();
    for c in burst {
        let arrived = net.calls[net.by_id[&CallId(c)]].at;
        let waiting_then = arrived < vip_at && first_offered(c).is_none_or(|t| t > vip_at);
        if !waiting_then {
            continue;
        }
        if let Some((t, _)) = answered_at(net, c) {
            assert!(t > vip_answered, "burst call {c} answered at {t} before the VIP");
            overtaken.push(c);
        }
    }
    // e.g. call 506 arrived at 44:18 and was answered 3.5 s after the VIP.
    assert!(overtaken.len() >= 10, "{overtaken:?}");
    assert!(overtaken.contains(&506), "{overtaken:?}");
}

/// Sales rings every free member at once; the first answer cancels the
/// others' rings (not counted as misses).
fn sales_rings_all_and_cancels_the_others(net: &Net) {
    let sales = net.engine.queue_id("sales").unwrap();
    let mut multi = 0;
    for (t, e) in &net.events {
        let Event::Offered { call, queue, decision } = e else {
            continue;
        };
        if *queue != sales || decision.chosen().count() < 2 {
            continue;
        }
        multi += 1;
        if let Some((at, winner)) = answered_at(net, call.0) {
            let answered_this_offer = at.since(*t) < std::time::Duration::from_secs(20);
            if !answered_this_offer {
                continue;
            }
            for other in decision.chosen().filter(|a| *a != winner) {
                let ended = net.events.iter().any(|(te, x)| match x {
                    Event::RingCancelled { call: c, agent } => *c == *call && *agent == other && *te == at,
                    Event::RingNoAnswer { call: c, agent, .. } => *c == *call && *agent == other && *te <= at,
                    _ => false,
                });
                assert!(ended, "{call}: ring to {other} ended when {winner} answered");
            }
        }
    }
    assert!(multi > 0, "sales rang several agents at once at least once");
}

/// hanna (auto_login = false) is logged in at t=0 and serves complaints.
fn hanna_logs_in_and_takes_complaints(net: &Net) {
    let a = net.agent("hanna");
    let first = &state_changes(net, a)[0];
    assert_eq!((first.0, first.1, first.2, first.3.as_str()), (Time::ZERO, "logged-out", "available", "login"));
    let complaints = net.engine.queue_id("complaints").unwrap();
    let answered: Vec<_> = net
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Answered { agent, queue, .. } if *agent == a => Some(*queue),
            _ => None,
        })
        .collect();
    assert!(!answered.is_empty());
    assert!(answered.iter().all(|q| *q == complaints));
}

/// The whole replay is a function of the script and the config: two runs
/// give the same actions and events, in the same order, at the same times.
#[test]
fn replay_is_deterministic() {
    let a = replay();
    let b = replay();
    assert!(a.log.len() > 2000);
    for (i, (x, y)) in a.log.iter().zip(&b.log).enumerate() {
        assert_eq!(x, y, "runs diverge at line {i}");
    }
    assert_eq!(a.log.len(), b.log.len());
}
