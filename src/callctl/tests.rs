//! Scenario tests of call control (tier 2): the whole [`Core`] on a virtual
//! clock, driven by a scripted network of phones, no sockets.
//!
//! [`Net`] plays the SIP side. It keeps the contract of the core (after every
//! input it drains `poll_command` and `poll_event`, and it fires
//! `handle_timeout` at each `poll_timeout` instant), delivers every message
//! after a one-way [`LATENCY_MS`], and answers the core's commands the way
//! phones do: an agent's phone rings (180), picks up (200), refuses (486,
//! 603, ...), or answers a CANCEL with 487 — unless its 200 was already on
//! the wire, which is how the CANCEL/200 races happen here, as on a real
//! network. It also checks the core's commands against SIP as it goes (no
//! BYE on a leg that never answered, nothing sent to a caller who has gone,
//! the call id of each command matches its leg), and [`Net::finish`] checks that
//! every dialog ended on both sides and that the core holds no call or leg.
//!
//! Each test tells one story in the commands a user would notice, written
//! `c1: invite anna` (call 1, an INVITE to anna's phone); `caller` is the
//! caller's leg of that call.

use super::*;
use crate::config::from_toml_str;
use crate::engine::{AgentId, AgentState, CallId, Event, Input, Outcome, OverflowReason, RejectCause, Skip, Time};
use std::collections::BTreeMap;

mod attended;
mod closed;
mod flows;

/// One-way delay between acd and any phone.
const LATENCY_MS: u64 = 20;

const SKILLS: &str = r#"
[skills]
billing = "Invoices"
[skills.lang]
fi = "Finnish"
en = "English"
"#;

/// How a phone (an agent's, or an overflow target) handles an INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phone {
    /// 180, then rings until cancelled (CANCEL → 487).
    Rings,
    /// 180, then picks up this many ms after the INVITE reached it.
    AnswersAfter(u64),
    /// A final status this many ms after the INVITE reached it (180 first
    /// unless at once).
    Refuses(u16, u64),
    /// Never responds: the SIP stack reports `Failed { status: None }` this
    /// many ms after sending the INVITE, whatever happens meanwhile.
    Unreachable(u64),
}

/// An outgoing leg as the phone at its far end sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Far {
    Ringing,
    InCall,
    Ended,
}

#[derive(Debug)]
struct Remote {
    call: CallId,
    /// Agent name or URI.
    name: String,
    script: Phone,
    state: Far,
    /// The phone sent a 200.
    answered: bool,
    cancel_sent: bool,
    bye_sent: bool,
}

#[derive(Debug)]
struct CallerSide {
    leg: LegId,
    number: String,
    answered: bool,
    ended: bool,
    /// acd sent a 183 with SDP: media may flow before the answer.
    early_media: bool,
}

#[derive(Debug)]
enum Msg {
    /// Reaches acd.
    ToAcd(SipEvent),
    /// Reach the phone of a leg.
    Invite(LegId),
    Cancel(LegId),
    Bye(LegId),
    /// The phone acts on its own script.
    PickUp(LegId),
    Refuse(LegId, u16),
}

struct Net {
    core: Core,
    now: Time,
    in_flight: BTreeMap<(Time, u64), Msg>,
    seq: u64,
    phones: BTreeMap<String, Phone>,
    remotes: BTreeMap<LegId, Remote>,
    callers: BTreeMap<CallId, CallerSide>,
    /// Every command, rendered, with the time acd sent it.
    log: Vec<(Time, String)>,
    /// How much of `log` the test has looked at.
    seen: usize,
    commands: Vec<(Time, Command)>,
    events: Vec<Event>,
    /// Things the core did that SIP does not allow.
    violations: Vec<String>,
    /// Outgoing legs whose media the core released early
    /// ([`Command::ReleaseMedia`], kept out of `log`: the story is SIP's).
    released: Vec<(Time, LegId)>,
}

/// Seconds on the virtual clock.
fn t(secs: f64) -> Time {
    Time((secs * 1000.0).round() as u64)
}

impl Net {
    /// The core on `toml` (the skills above prepended), every agent's phone
    /// registered at t=0.
    fn new(toml: &str) -> Net {
        let cfg = from_toml_str("test.toml", &format!("{SKILLS}\n{toml}")).expect("test config is valid");
        let mut net = Net {
            core: Core::new(&cfg, Time::ZERO),
            now: Time::ZERO,
            in_flight: BTreeMap::new(),
            seq: 0,
            phones: BTreeMap::new(),
            remotes: BTreeMap::new(),
            callers: BTreeMap::new(),
            log: Vec::new(),
            seen: 0,
            commands: Vec::new(),
            events: Vec::new(),
            violations: Vec::new(),
            released: Vec::new(),
        };
        let agents: Vec<AgentId> = net.core.engine().agent_ids().collect();
        for agent in agents {
            net.input(Input::AgentRegistered { agent });
        }
        net.events.clear();
        net
    }

    /// How `name`'s phone handles the INVITEs sent from now on (default: it
    /// rings until cancelled).
    fn phone(&mut self, name: &str, script: Phone) {
        self.phones.insert(name.to_string(), script);
    }

    fn agent(&self, name: &str) -> AgentId {
        self.core.engine().agent_id(name).unwrap_or_else(|| panic!("no agent {name}"))
    }

    fn agent_state(&self, name: &str) -> AgentState {
        self.core.engine().agent_state(self.agent(name)).unwrap().clone()
    }

    // ----- inputs at the current time ------------------------------------

    fn input(&mut self, input: Input) {
        self.core.handle_engine(self.now, input).expect("engine input applies");
        self.drain();
    }

    fn try_call(&mut self, inc: IncomingCall) -> Result<CallId, Refusal> {
        let number = inc.caller.clone();
        let r = self.core.incoming_call(self.now, inc);
        if let Ok((call, leg)) = r {
            self.callers.insert(call, CallerSide { leg, number, answered: false, ended: false, early_media: false });
        }
        self.drain();
        r.map(|(call, _)| call)
    }

    /// A caller from `caller` dials `dialled`.
    fn call(&mut self, dialled: &str, caller: &str) -> CallId {
        self.try_call(IncomingCall {
            dialled: dialled.into(),
            caller: caller.into(),
            trunk: "carrier".into(),
            ..Default::default()
        })
        .expect("the call is taken")
    }

    fn caller_leg(&self, call: CallId) -> LegId {
        self.callers[&call].leg
    }

    /// The caller sends BYE.
    fn caller_hangs_up(&mut self, call: CallId) {
        let c = self.callers.get_mut(&call).unwrap();
        assert!(!c.ended, "caller of {call} already gone");
        c.ended = true;
        let leg = c.leg;
        self.core.handle_sip(self.now, SipEvent::CallerHungUp { leg });
        self.drain();
    }

    /// The caller's CANCEL (crossing our 200, or before it).
    fn caller_cancels(&mut self, call: CallId) {
        let c = self.callers.get_mut(&call).unwrap();
        assert!(!c.ended, "caller of {call} already gone");
        c.ended = true;
        let leg = c.leg;
        self.core.handle_sip(self.now, SipEvent::CallerCancelled { leg });
        self.drain();
    }

    /// The agent (or overflow target) in a call with acd hangs up.
    fn far_end_hangs_up(&mut self, name: &str) {
        let leg = *self
            .remotes
            .iter()
            .find(|(_, r)| r.name == name && r.state == Far::InCall)
            .unwrap_or_else(|| panic!("{name} is in no call"))
            .0;
        self.remotes.get_mut(&leg).unwrap().state = Far::Ended;
        self.core.handle_sip(self.now, SipEvent::RemoteBye { leg });
        self.drain();
    }

    /// The agent in a call with acd presses transfer: a REFER to `refer_to`.
    fn refers(&mut self, name: &str, refer_to: &str) {
        let leg = *self
            .remotes
            .iter()
            .find(|(_, r)| r.name == name && r.state == Far::InCall)
            .unwrap_or_else(|| panic!("{name} is in no call"))
            .0;
        self.core.handle_sip(self.now, SipEvent::Refer { leg, refer_to: refer_to.into() });
        self.drain();
    }

    /// `name`'s ringing phone picks up, and its 200 reaches acd now, without
    /// the engine's timers due by now having fired (the shell was late).
    fn picks_up_now(&mut self, name: &str) {
        let leg = *self
            .remotes
            .iter()
            .find(|(_, r)| r.name == name && r.state == Far::Ringing)
            .unwrap_or_else(|| panic!("{name} is not ringing"))
            .0;
        let r = self.remotes.get_mut(&leg).unwrap();
        r.state = Far::InCall;
        r.answered = true;
        self.core.handle_sip(self.now, SipEvent::Answered { leg });
        self.drain();
    }

    /// Moves the clock without delivering anything or firing timers.
    fn skip_to(&mut self, secs: f64) {
        assert!(self.in_flight.is_empty(), "messages in flight would be skipped");
        self.now = t(secs);
    }

    // ----- the clock and the wire -----------------------------------------

    /// Delivers every message and fires every engine timer due up to `secs`,
    /// in time order (a timer before a message due at the same instant).
    fn run_until(&mut self, secs: f64) {
        let end = t(secs);
        assert!(end >= self.now, "the clock only goes forward");
        for _ in 0..100_000 {
            let timer = self.core.poll_timeout().filter(|&at| at <= end);
            let msg = self.in_flight.keys().next().map(|k| k.0).filter(|&at| at <= end);
            match (timer, msg) {
                (None, None) => {
                    self.now = end;
                    return;
                }
                (Some(at), m) if m.is_none_or(|m| at <= m) => {
                    self.now = self.now.max(at);
                    self.core.handle_timeout(self.now);
                    self.drain();
                }
                _ => {
                    let ((at, _), msg) = self.in_flight.pop_first().unwrap();
                    self.now = at;
                    self.deliver(msg);
                }
            }
        }
        panic!("no quiet moment before {secs} s: a timer or message loop");
    }

    fn at(&mut self, after_ms: u64, msg: Msg) {
        self.seq += 1;
        self.in_flight.insert((Time(self.now.0 + after_ms), self.seq), msg);
    }

    /// A phone's response, reaching acd after the latency.
    fn reply(&mut self, ev: SipEvent) {
        self.at(LATENCY_MS, Msg::ToAcd(ev));
    }

    fn drain(&mut self) {
        while let Some(cmd) = self.core.poll_command() {
            self.send(cmd);
        }
        while let Some(ev) = self.core.poll_event() {
            self.events.push(ev);
        }
    }

    fn violation(&mut self, what: String) {
        self.violations.push(format!("at {}: {what}", self.now));
    }

    /// Puts a command on the wire (or to media) and checks it fits SIP.
    fn send(&mut self, cmd: Command) {
        let line = self.render(&cmd);
        self.commands.push((self.now, cmd.clone()));
        if let Command::ReleaseMedia { call, leg } = &cmd {
            match self.remotes.get(leg) {
                Some(r) if r.call == *call && !self.released.iter().any(|(_, l)| l == leg) => {
                    self.released.push((self.now, *leg))
                }
                _ => self.violation(format!("{line}: no outgoing leg of this call with media")),
            }
            return;
        }
        self.log.push((self.now, line.clone()));
        match &cmd {
            Command::AnswerCaller { call, leg }
            | Command::EarlyMedia { call, leg, .. }
            | Command::RejectCaller { call, leg, .. }
            | Command::Hold { call, leg, .. }
            | Command::StopHold { call, leg }
            | Command::Announce { call, leg, .. }
            | Command::OfferCallback { call, leg, .. }
            | Command::PlayFile { call, leg, .. } => {
                let Some(c) = self.callers.get_mut(call) else {
                    return self.violation(format!("{line}: unknown call"));
                };
                let bad = if c.leg != *leg {
                    Some("not the caller's leg")
                } else if c.ended {
                    Some("the caller has gone")
                } else {
                    match &cmd {
                        Command::AnswerCaller { .. } if c.answered => Some("answered twice"),
                        Command::AnswerCaller { .. } => {
                            c.answered = true;
                            None
                        }
                        Command::EarlyMedia { .. } if c.answered => Some("a provisional after the answer"),
                        Command::EarlyMedia { music, .. } => {
                            c.early_media |= music.is_some();
                            None
                        }
                        Command::RejectCaller { .. } if c.answered => Some("rejecting an answered caller"),
                        Command::RejectCaller { .. } => {
                            c.ended = true;
                            None
                        }
                        _ if !c.answered && !c.early_media => Some("media before the caller was answered"),
                        _ => None,
                    }
                };
                if let Some(bad) = bad {
                    self.violation(format!("{line}: {bad}"));
                }
            }
            Command::Invite { call, leg, target, caller } => {
                let name = match target {
                    Target::Agent(a) => self.core.engine().agent_name(*a).to_string(),
                    Target::Uri(u) => u.clone(),
                };
                match self.callers.get(call) {
                    None => self.violation(format!("{line}: unknown call")),
                    Some(c) if c.number != *caller => {
                        self.violation(format!("{line}: shows caller {caller}, not {}", c.number))
                    }
                    Some(c) if c.ended => self.violation(format!("{line}: the caller has gone")),
                    Some(_) => {}
                }
                if self.remotes.contains_key(leg) || self.callers.values().any(|c| c.leg == *leg) {
                    self.violation(format!("{line}: {leg} reused"));
                }
                let script = self.phones.get(&name).copied().unwrap_or(Phone::Rings);
                let mut state = Far::Ringing;
                if let Phone::Unreachable(ms) = script {
                    state = Far::Ended;
                    self.at(ms, Msg::ToAcd(SipEvent::Failed { leg: *leg, status: None }));
                } else {
                    self.at(LATENCY_MS, Msg::Invite(*leg));
                }
                let remote =
                    Remote { call: *call, name, script, state, answered: false, cancel_sent: false, bye_sent: false };
                self.remotes.insert(*leg, remote);
            }
            Command::Cancel { call, leg } => match self.remotes.get_mut(leg) {
                Some(r) if r.call == *call && !r.cancel_sent && !r.bye_sent => {
                    r.cancel_sent = true;
                    self.at(LATENCY_MS, Msg::Cancel(*leg));
                }
                _ => self.violation(format!("{line}: no INVITE of this call to cancel")),
            },
            // The prompt, then a BYE to the caller.
            Command::ConfirmCallback { call, leg, .. } => match self.callers.get_mut(call) {
                Some(c) if c.leg == *leg && c.answered && !c.ended => c.ended = true,
                _ => self.violation(format!("{line}: caller not in a call")),
            },
            Command::Bye { call, leg } => {
                if let Some(c) = self.callers.get_mut(call).filter(|c| c.leg == *leg) {
                    let was_in_call = c.answered && !c.ended;
                    c.ended = true;
                    if !was_in_call {
                        self.violation(format!("{line}: caller not in a call"));
                    }
                    return;
                }
                match self.remotes.get_mut(leg) {
                    Some(r) if r.call == *call && r.answered && !r.bye_sent => {
                        r.bye_sent = true;
                        let leg = *leg;
                        self.at(LATENCY_MS, Msg::Bye(leg));
                    }
                    _ => self.violation(format!("{line}: no answered leg of this call to end")),
                }
            }
            Command::Bridge { call, caller, other } => {
                let caller_ok = self.callers.get(call).is_some_and(|c| c.leg == *caller && c.answered && !c.ended);
                let other_ok = self.remotes.get(other).is_some_and(|r| r.call == *call && r.answered && !r.bye_sent);
                if !caller_ok || !other_ok {
                    self.violation(format!("{line}: not two live legs of the call"));
                }
            }
            // 202, NOTIFYs, then BYE: for the phone, the call ends.
            Command::ReferAccepted { call, leg } => match self.remotes.get_mut(leg) {
                Some(r) if r.call == *call && r.answered && !r.bye_sent && r.state == Far::InCall => {
                    r.bye_sent = true;
                    let leg = *leg;
                    self.at(LATENCY_MS, Msg::Bye(leg));
                }
                _ => self.violation(format!("{line}: no REFER from an answered leg of this call")),
            },
            Command::ReferRefused { call, leg, .. }
            | Command::ReferDeclined { call, leg, .. }
            | Command::ReferTrying { call, leg }
            | Command::ReferFailed { call, leg, .. } => {
                let ok = self.remotes.get(leg).is_some_and(|r| r.call == *call && r.state == Far::InCall)
                    || self.callers.get(call).is_some_and(|c| c.leg == *leg);
                if !ok {
                    self.violation(format!("{line}: no REFER from a live leg of this call"));
                }
            }
            Command::Whisper { call, leg, .. } => {
                if !self.remotes.get(leg).is_some_and(|r| r.call == *call && r.answered && !r.bye_sent) {
                    self.violation(format!("{line}: no answered agent leg of this call"));
                }
            }
            Command::ReleaseMedia { .. } => unreachable!("handled above"),
        }
    }

    /// A message reaches its destination.
    fn deliver(&mut self, msg: Msg) {
        match msg {
            Msg::ToAcd(ev) => {
                self.core.handle_sip(self.now, ev);
                self.drain();
            }
            Msg::Invite(leg) => match self.remotes[&leg].script {
                Phone::Rings => self.reply(SipEvent::Progress { leg, status: 180 }),
                Phone::AnswersAfter(ms) => {
                    self.reply(SipEvent::Progress { leg, status: 180 });
                    self.at(ms, Msg::PickUp(leg));
                }
                Phone::Refuses(status, ms) => {
                    if ms > 0 {
                        self.reply(SipEvent::Progress { leg, status: 180 });
                    }
                    self.at(ms, Msg::Refuse(leg, status));
                }
                Phone::Unreachable(_) => unreachable!("never delivered"),
            },
            Msg::PickUp(leg) => {
                let r = self.remotes.get_mut(&leg).unwrap();
                if r.state == Far::Ringing {
                    r.state = Far::InCall;
                    r.answered = true;
                    self.reply(SipEvent::Answered { leg });
                }
            }
            Msg::Refuse(leg, status) => {
                let r = self.remotes.get_mut(&leg).unwrap();
                if r.state == Far::Ringing {
                    r.state = Far::Ended;
                    self.reply(SipEvent::Failed { leg, status: Some(status) });
                }
            }
            Msg::Cancel(leg) => {
                let r = self.remotes.get_mut(&leg).unwrap();
                // After a final response the CANCEL changes nothing (our 200
                // or 486 crossed it).
                if r.state == Far::Ringing {
                    r.state = Far::Ended;
                    self.reply(SipEvent::Failed { leg, status: Some(487) });
                }
            }
            Msg::Bye(leg) => {
                let r = self.remotes.get_mut(&leg).unwrap();
                r.state = Far::Ended;
            }
        }
    }

    // ----- what the test looks at -------------------------------------------

    fn leg_name(&self, call: CallId, leg: LegId) -> String {
        if self.callers.get(&call).is_some_and(|c| c.leg == leg) {
            return "caller".into();
        }
        match self.remotes.get(&leg) {
            Some(r) => r.name.clone(),
            None => format!("unknown {leg}"),
        }
    }

    fn render(&self, cmd: &Command) -> String {
        match cmd {
            Command::AnswerCaller { call, .. } => format!("c{}: answer", call.0),
            Command::RejectCaller { call, status, retry_after: None, .. } => format!("c{}: reject {status}", call.0),
            Command::RejectCaller { call, status, retry_after: Some(r), .. } => {
                format!("c{}: reject {status} retry-after {r}", call.0)
            }
            Command::Invite { call, target: Target::Agent(a), .. } => {
                format!("c{}: invite {}", call.0, self.core.engine().agent_name(*a))
            }
            Command::Invite { call, target: Target::Uri(u), .. } => format!("c{}: invite {u}", call.0),
            Command::Cancel { call, leg } => format!("c{}: cancel {}", call.0, self.leg_name(*call, *leg)),
            Command::Bye { call, leg } => format!("c{}: bye {}", call.0, self.leg_name(*call, *leg)),
            Command::Bridge { call, other, .. } => format!("c{}: bridge {}", call.0, self.leg_name(*call, *other)),
            Command::Hold { call, music, .. } => format!("c{}: hold {music}", call.0),
            Command::EarlyMedia { call, music: Some(m), .. } => format!("c{}: 183 early media {m}", call.0),
            Command::EarlyMedia { call, music: None, .. } => format!("c{}: 180", call.0),
            Command::StopHold { call, .. } => format!("c{}: stop hold", call.0),
            Command::Announce { call, position, estimated_wait_secs, .. } => {
                let say = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
                format!("c{}: announce {} ({} s)", call.0, say(*position), say(*estimated_wait_secs))
            }
            Command::PlayFile { call, file, .. } => format!("c{}: play {}", call.0, file.display()),
            Command::ConfirmCallback { call, .. } => format!("c{}: callback confirmed, bye caller", call.0),
            Command::Whisper { call, .. } => format!("c{}: whisper to the agent", call.0),
            Command::OfferCallback { call, key, .. } => format!("c{}: offer callback on {key}", call.0),
            Command::ReleaseMedia { call, leg } => {
                format!("c{}: release media of {}", call.0, self.leg_name(*call, *leg))
            }
            Command::ReferAccepted { call, leg } => {
                format!("c{}: transfer accepted, bye {}", call.0, self.leg_name(*call, *leg))
            }
            Command::ReferRefused { call, leg, status } => {
                format!("c{}: refer from {} refused {status}", call.0, self.leg_name(*call, *leg))
            }
            Command::ReferDeclined { call, leg, status, why } => {
                format!("c{}: refer from {} declined {status} ({why})", call.0, self.leg_name(*call, *leg))
            }
            Command::ReferTrying { call, leg } => {
                format!("c{}: transfer trying, to {}", call.0, self.leg_name(*call, *leg))
            }
            Command::ReferFailed { call, leg, status } => {
                format!("c{}: transfer failed {status}, to {}", call.0, self.leg_name(*call, *leg))
            }
        }
    }

    /// Commands sent since the test last asked.
    fn said(&mut self) -> Vec<String> {
        let new = self.log[self.seen..].iter().map(|(_, l)| l.clone()).collect();
        self.seen = self.log.len();
        new
    }

    /// When a command was first sent, in seconds.
    fn when(&self, line: &str) -> Option<f64> {
        self.log.iter().find(|(_, l)| l == line).map(|(at, _)| at.0 as f64 / 1000.0)
    }

    fn outcome(&self, call: CallId) -> Option<Outcome> {
        self.events.iter().find_map(|e| match e {
            Event::CallFinished { call: c, outcome, .. } if *c == call => Some(outcome.clone()),
            _ => None,
        })
    }

    /// Offers that ended without an answer, as the engine recorded them.
    fn misses(&self) -> Vec<(String, RejectCause)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::RingNoAnswer { agent, cause, .. } => {
                    Some((self.core.engine().agent_name(*agent).into(), *cause))
                }
                _ => None,
            })
            .collect()
    }

    /// Rings withdrawn through no fault of the agent.
    fn withdrawn(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::RingCancelled { agent, .. } => Some(self.core.engine().agent_name(*agent).to_string()),
                _ => None,
            })
            .collect()
    }

    fn queued_priority(&self, call: CallId) -> Option<i32> {
        self.events.iter().find_map(|e| match e {
            Event::CallQueued { call: c, priority, .. } if *c == call => Some(*priority),
            _ => None,
        })
    }

    /// Lets every message in flight land (two minutes of quiet), then checks
    /// that every dialog ended on both sides and the core holds nothing, and
    /// returns the errors the core recorded.
    fn finish(&mut self) -> Vec<CallCtlError> {
        let end = self.now.0 as f64 / 1000.0 + 120.0;
        self.run_until(end);
        assert!(self.violations.is_empty(), "SIP violations: {:#?}", self.violations);
        for (leg, r) in &self.remotes {
            assert_eq!(r.state, Far::Ended, "{}'s phone ({leg}) of {} is still {:?}", r.name, r.call, r.state);
        }
        for (call, c) in &self.callers {
            assert!(c.ended, "the caller of {call} is still connected");
        }
        assert_eq!(self.core.engine().call_count(), 0, "calls left in the engine");
        assert_eq!(
            (self.core.call_count(), self.core.leg_count()),
            (0, 0),
            "calls and legs left in call control; commands were:\n{}",
            self.transcript()
        );
        self.core.errors().recent().cloned().collect()
    }

    /// [`Net::finish`], with no error recorded.
    fn finish_clean(&mut self) {
        let errors = self.finish();
        assert!(errors.is_empty(), "call control recorded errors: {errors:?}");
    }

    fn transcript(&self) -> String {
        self.log.iter().map(|(at, l)| format!("  {at} {l}\n")).collect()
    }
}

// ----- config pieces -----------------------------------------------------------

/// Agents who speak both languages and do billing.
fn agents(names: &[&str]) -> String {
    names.iter().map(|n| agent(n, "{ lang.fi = 5, lang.en = 5, billing = 5 }")).collect()
}

fn agent(name: &str, skills: &str) -> String {
    format!("[[agent]]\nid = \"{name}\"\nskills = {skills}\n")
}

fn queue(name: &str, strategy: &str, members: &[&str], extra: &str) -> String {
    let m: Vec<String> = members.iter().map(|a| format!("{{ agent = \"{a}\" }}")).collect();
    format!("[[queue]]\nname = \"{name}\"\nstrategy = \"{strategy}\"\nmembers = [{}]\n{extra}\n", m.join(", "))
}

fn number(number: &str, queue: &str, extra: &str) -> String {
    format!("[[number]]\nnumber = \"{number}\"\nqueue = \"{queue}\"\n{extra}\n")
}

/// Support line 100 → queue "support" (linear: anna, then ben).
fn two_agents(extra: &str) -> Net {
    Net::new(&format!(
        "{}{}{}",
        queue("support", "linear", &["anna", "ben"], extra),
        agents(&["anna", "ben"]),
        number("100", "support", "")
    ))
}

const CALLER: &str = "+358401111111";

// ----- 1, 2: the normal call --------------------------------------------------

#[test]
fn caller_is_answered_held_and_bridged_to_the_agent_who_picks_up_then_caller_bye_ends_the_agent_leg() {
    let mut net = two_agents("");
    net.phone("anna", Phone::AnswersAfter(3000));
    let c1 = net.call("100", CALLER);
    assert_eq!(
        net.said(),
        ["c1: answer", "c1: hold default", "c1: invite anna"],
        "answered, music, anna's phone rings"
    );
    let invite = net.commands.iter().find_map(|(_, c)| match c {
        Command::Invite { caller, .. } => Some(caller.clone()),
        _ => None,
    });
    assert_eq!(invite.as_deref(), Some(CALLER), "anna's phone shows the caller's number");

    net.run_until(3.0);
    assert!(net.said().is_empty(), "anna's 180 changes nothing for the caller");
    net.run_until(10.0);
    assert_eq!(net.said(), ["c1: stop hold", "c1: bridge anna"], "anna picked up: music stops, media joined");
    assert_eq!(net.when("c1: bridge anna"), Some(3.04), "at once when her 200 arrives");
    let caller_leg = net.caller_leg(c1);
    let bridge = net.commands.iter().find_map(|(_, c)| match c {
        Command::Bridge { caller, other, .. } => Some((*caller, net.remotes[other].name.clone())),
        _ => None,
    });
    assert_eq!(bridge, Some((caller_leg, "anna".into())), "the caller's own leg is bridged to anna's");
    assert!(matches!(net.agent_state("anna"), AgentState::OnCall { call, .. } if call == c1));

    net.run_until(60.0);
    net.caller_hangs_up(c1);
    assert_eq!(net.said(), ["c1: bye anna"]);
    assert_eq!(net.outcome(c1), Some(Outcome::Answered { agent: net.agent("anna") }));
    assert!(matches!(net.agent_state("anna"), AgentState::WrapUp { .. }));
    assert!(net.misses().is_empty());
    net.finish_clean();
}

#[test]
fn agent_hanging_up_first_byes_the_caller() {
    let mut net = two_agents("");
    net.phone("anna", Phone::AnswersAfter(1000));
    let c1 = net.call("100", CALLER);
    net.run_until(30.0);
    net.said();
    net.far_end_hangs_up("anna");
    assert_eq!(net.said(), ["c1: bye caller"]);
    assert_eq!(net.outcome(c1), Some(Outcome::Answered { agent: net.agent("anna") }));
    assert!(matches!(net.agent_state("anna"), AgentState::WrapUp { .. }));
    net.finish_clean();
}

#[test]
fn next_caller_waits_for_the_agents_wrap_up() {
    let mut net = Net::new(&format!(
        "{}{}{}",
        queue("support", "linear", &["anna"], "wrap_up_secs = 10"),
        agents(&["anna"]),
        number("100", "support", "")
    ));
    net.phone("anna", Phone::AnswersAfter(1000));
    let c1 = net.call("100", CALLER);
    net.run_until(5.0);
    let c2 = net.call("100", "+358402222222");
    assert_eq!(net.said().last().map(String::as_str), Some("c2: hold default"), "anna is busy: c2 waits");
    net.run_until(30.0);
    net.far_end_hangs_up("anna");
    net.run_until(39.9);
    assert_eq!(net.said(), ["c1: bye caller"], "nobody rings anna during her wrap-up");
    net.run_until(60.0);
    assert_eq!(net.said(), ["c2: invite anna", "c2: stop hold", "c2: bridge anna"]);
    assert_eq!(net.when("c2: invite anna"), Some(40.0), "rung when her 10 s of wrap-up end");
    net.caller_hangs_up(c2);
    assert_eq!(net.outcome(c1), Some(Outcome::Answered { agent: net.agent("anna") }));
    assert_eq!(net.outcome(c2), Some(Outcome::Answered { agent: net.agent("anna") }));
    net.finish_clean();
}

// ----- 3-6: rollover -----------------------------------------------------------

#[test]
fn ring_timeout_cancels_the_first_agent_at_the_timeout_and_rolls_over_to_the_next() {
    let mut net = two_agents("ring_timeout_secs = 15");
    net.phone("ben", Phone::AnswersAfter(2000));
    let c1 = net.call("100", CALLER);
    assert_eq!(net.said(), ["c1: answer", "c1: hold default", "c1: invite anna"]);
    net.run_until(14.999);
    assert!(net.said().is_empty(), "anna rings for the whole ring timeout");
    net.run_until(15.0);
    assert_eq!(net.said(), ["c1: cancel anna", "c1: invite ben"]);
    assert_eq!(net.when("c1: cancel anna"), Some(15.0), "exactly at the ring timeout");
    assert_eq!(net.misses(), [("anna".to_string(), RejectCause::NoAnswer)]);
    net.run_until(17.0);
    assert!(net.said().is_empty(), "anna's 487 (at 15.04 s) changes nothing");
    net.run_until(20.0);
    assert_eq!(net.said(), ["c1: stop hold", "c1: bridge ben"]);
    assert!(matches!(net.agent_state("anna"), AgentState::Available { .. }));
    net.caller_hangs_up(c1);
    assert_eq!(net.said(), ["c1: bye ben"]);
    assert_eq!(net.outcome(c1), Some(Outcome::Answered { agent: net.agent("ben") }));
    net.finish_clean();
}

#[test]
fn busy_agent_rolls_the_call_over_at_once_without_a_cancel() {
    let mut net = two_agents("");
    net.phone("anna", Phone::Refuses(486, 0));
    net.phone("ben", Phone::AnswersAfter(1000));
    let c1 = net.call("100", CALLER);
    net.said();
    net.run_until(0.04);
    assert_eq!(net.said(), ["c1: invite ben"], "ben rings as soon as anna's 486 arrives; no CANCEL for anna");
    assert_eq!(net.when("c1: invite ben"), Some(0.04));
    assert_eq!(net.misses(), [("anna".to_string(), RejectCause::Busy)]);
    net.run_until(10.0);
    assert_eq!(net.said(), ["c1: stop hold", "c1: bridge ben"]);
    net.caller_hangs_up(c1);
    net.finish_clean();
}

#[test]
fn refusals_reach_the_engine_as_reject_causes_and_roll_the_call_over() {
    for (script, cause) in [
        (Phone::Refuses(603, 2000), RejectCause::Declined),
        (Phone::Refuses(480, 0), RejectCause::Unavailable),
        (Phone::Refuses(486, 500), RejectCause::Busy),
        (Phone::Refuses(408, 0), RejectCause::Unreachable),
        (Phone::Unreachable(4000), RejectCause::Unreachable),
    ] {
        let mut net = two_agents("");
        net.phone("anna", script);
        net.phone("ben", Phone::AnswersAfter(1000));
        let c1 = net.call("100", CALLER);
        net.run_until(10.0);
        assert_eq!(net.misses(), [("anna".to_string(), cause)], "{script:?}");
        let said = net.said();
        assert_eq!(
            said,
            ["c1: answer", "c1: hold default", "c1: invite anna", "c1: invite ben", "c1: stop hold", "c1: bridge ben"],
            "{script:?}: no CANCEL to a phone that already refused"
        );
        net.caller_hangs_up(c1);
        net.finish_clean();
    }
}

#[test]
fn answer_racing_the_ring_timeout_cancel_is_byed_and_the_call_goes_to_the_next_agent() {
    let mut net = two_agents("ring_timeout_secs = 15");
    // anna picks up at 15.01 s: her 200 and our CANCEL (sent at 15 s) cross.
    net.phone("anna", Phone::AnswersAfter(14_990));
    net.phone("ben", Phone::AnswersAfter(1000));
    let c1 = net.call("100", CALLER);
    net.said();
    net.run_until(15.0);
    assert_eq!(net.said(), ["c1: cancel anna", "c1: invite ben"]);
    net.run_until(15.03);
    assert_eq!(net.said(), ["c1: bye anna"], "anna's late 200 is ACKed and BYEd");
    net.run_until(20.0);
    assert_eq!(net.said(), ["c1: stop hold", "c1: bridge ben"]);
    assert!(net.when("c1: bridge anna").is_none(), "anna is never bridged");
    assert!(matches!(net.agent_state("anna"), AgentState::Available { .. }), "anna is not on the call");
    assert!(matches!(net.agent_state("ben"), AgentState::OnCall { .. }));
    net.caller_hangs_up(c1);
    assert_eq!(net.outcome(c1), Some(Outcome::Answered { agent: net.agent("ben") }));
    net.finish_clean();
}

#[test]
fn answer_at_the_very_instant_of_the_ring_timeout_loses_to_the_timeout_and_is_byed() {
    let mut net = two_agents("ring_timeout_secs = 15");
    net.phone("ben", Phone::AnswersAfter(1000));
    let c1 = net.call("100", CALLER);
    net.run_until(14.0);
    net.said();
    // anna's 200 reaches acd at 15 s, before the shell got round to the timer.
    net.skip_to(15.0);
    net.picks_up_now("anna");
    assert_eq!(net.said(), ["c1: bye anna", "c1: invite ben"], "time decides: the ring had timed out");
    assert_eq!(net.misses(), [("anna".to_string(), RejectCause::NoAnswer)]);
    net.run_until(20.0);
    assert_eq!(net.said(), ["c1: stop hold", "c1: bridge ben"]);
    net.caller_hangs_up(c1);
    net.finish_clean();
    assert_eq!(net.core.races().get(Race::OfferWithdrawn), 1, "the race is counted, once");
    assert_eq!(net.core.races().total(), 1, "and nothing else");
}

#[test]
fn only_agent_rung_again_for_the_same_call_is_bridged_on_the_new_leg_not_the_cancelled_one() {
    let mut net = Net::new(&format!(
        "[engine.backoff_secs]\nno_answer = 0\n{}{}{}",
        queue("support", "linear", &["anna"], "ring_timeout_secs = 15"),
        agents(&["anna"]),
        number("100", "support", "")
    ));
    // The first INVITE: anna picks up at 15.01 s, crossing our CANCEL.
    net.phone("anna", Phone::AnswersAfter(14_990));
    let c1 = net.call("100", CALLER);
    // The second INVITE: she picks up after a second.
    net.phone("anna", Phone::AnswersAfter(1000));
    net.said();
    net.run_until(15.0);
    assert_eq!(net.said(), ["c1: cancel anna", "c1: invite anna"], "no back-off: rung again at once");
    let legs: Vec<LegId> = net.remotes.keys().copied().collect();
    assert_eq!(legs.len(), 2);
    net.run_until(15.03);
    assert_eq!(net.said(), ["c1: bye anna"], "the 200 on the cancelled INVITE is BYEd, not taken as the answer");
    assert_eq!(net.commands.last().unwrap().1, Command::Bye { call: c1, leg: legs[0] });
    net.run_until(20.0);
    assert_eq!(net.said(), ["c1: stop hold", "c1: bridge anna"]);
    assert_eq!(
        net.commands.last().unwrap().1,
        Command::Bridge { call: c1, caller: net.caller_leg(c1), other: legs[1] },
        "bridged on the INVITE she answered"
    );
    net.caller_hangs_up(c1);
    assert_eq!(net.said(), ["c1: bye anna"]);
    net.finish_clean();
}

#[test]
fn unreachable_phone_is_cancelled_at_the_ring_timeout_and_its_late_failure_changes_nothing() {
    let mut net = two_agents("ring_timeout_secs = 15");
    net.phone("anna", Phone::Unreachable(32_000)); // the INVITE transaction's Timer B
    net.phone("ben", Phone::AnswersAfter(1000));
    let c1 = net.call("100", CALLER);
    net.said();
    net.run_until(15.0);
    assert_eq!(net.said(), ["c1: cancel anna", "c1: invite ben"]);
    net.run_until(40.0);
    assert_eq!(net.said(), ["c1: stop hold", "c1: bridge ben"], "the failure at 32 s does nothing");
    assert_eq!(
        net.misses(),
        [("anna".to_string(), RejectCause::Unreachable)],
        "counted once, as unreachable: the phone never answered at all"
    );
    net.caller_hangs_up(c1);
    net.finish_clean();
}

// ----- 7, 8: the caller leaves -----------------------------------------------------

#[test]
fn answer_arriving_after_the_caller_abandoned_is_byed_and_nothing_is_left() {
    let mut net = two_agents("");
    // anna picks up at 10.02 s; the caller hangs up at 10.01 s.
    net.phone("anna", Phone::AnswersAfter(10_000));
    let c1 = net.call("100", CALLER);
    net.said();
    net.run_until(10.01);
    net.caller_hangs_up(c1);
    assert_eq!(net.said(), ["c1: cancel anna"]);
    assert_eq!(net.outcome(c1), Some(Outcome::Abandoned));
    assert_eq!(net.withdrawn(), ["anna"], "not anna's fault: no back-off");
    net.run_until(10.04);
    assert_eq!(net.said(), ["c1: bye anna"], "her 200 crossed the CANCEL: BYE");
    assert_eq!((net.core.call_count(), net.core.leg_count()), (0, 0), "nothing outlives the call");
    assert!(net.when("c1: bridge anna").is_none());
    net.finish_clean();
}

#[test]
fn caller_cancel_crossing_our_answer_is_an_abandon() {
    let mut net = two_agents("");
    let c1 = net.call("100", CALLER);
    net.said();
    net.run_until(2.0);
    net.caller_cancels(c1);
    assert_eq!(net.said(), ["c1: cancel anna"]);
    assert_eq!(net.outcome(c1), Some(Outcome::Abandoned));
    net.finish_clean();
}

#[test]
fn caller_hanging_up_while_waiting_with_nobody_ringing_is_an_abandon() {
    let mut net = two_agents("");
    for name in ["anna", "ben"] {
        let agent = net.agent(name);
        net.input(Input::AgentPause { agent, reason: "meeting".into() });
    }
    let c1 = net.call("100", CALLER);
    assert_eq!(net.said(), ["c1: answer", "c1: hold default"]);
    net.run_until(30.0);
    net.caller_hangs_up(c1);
    assert!(net.said().is_empty(), "nothing to cancel, and the caller's leg is already gone");
    let waited = net.events.iter().find_map(|e| match e {
        Event::CallFinished { call, outcome: Outcome::Abandoned, waited, .. } if *call == c1 => Some(*waited),
        _ => None,
    });
    assert_eq!(waited, Some(std::time::Duration::from_secs(30)));
    net.finish_clean();
}

#[test]
fn caller_hanging_up_while_agents_ring_cancels_every_ring() {
    let mut net = Net::new(&format!(
        "{}{}{}",
        queue("sales", "ring-all", &["anna", "ben"], ""),
        agents(&["anna", "ben"]),
        number("200", "sales", "")
    ));
    let c1 = net.call("200", CALLER);
    assert_eq!(net.said(), ["c1: answer", "c1: hold default", "c1: invite anna", "c1: invite ben"]);
    net.run_until(5.0);
    net.caller_hangs_up(c1);
    let mut said = net.said();
    said.sort();
    assert_eq!(said, ["c1: cancel anna", "c1: cancel ben"]);
    assert_eq!(net.outcome(c1), Some(Outcome::Abandoned));
    net.run_until(10.0);
    assert!(net.said().is_empty(), "the 487s change nothing");
    assert!(net.misses().is_empty(), "neither agent missed anything");
    for name in ["anna", "ben"] {
        assert!(matches!(net.agent_state(name), AgentState::Available { .. }), "{name} is free again");
    }
    net.finish_clean();
}

#[test]
fn agent_logging_out_while_ringing_cancels_the_ring_and_the_call_rolls_over() {
    let mut net = two_agents("");
    net.phone("ben", Phone::AnswersAfter(1000));
    let c1 = net.call("100", CALLER);
    net.said();
    net.run_until(3.0);
    let anna = net.agent("anna");
    net.input(Input::AgentLogout { agent: anna });
    assert_eq!(net.said(), ["c1: cancel anna", "c1: invite ben"]);
    net.run_until(10.0);
    assert_eq!(net.said(), ["c1: stop hold", "c1: bridge ben"]);
    net.caller_hangs_up(c1);
    net.finish_clean();
}

// ----- 9: ring-all ------------------------------------------------------------------

fn ring_all() -> Net {
    Net::new(&format!(
        "{}{}{}",
        queue("sales", "ring-all", &["anna", "ben", "cleo"], ""),
        agents(&["anna", "ben", "cleo"]),
        number("200", "sales", "")
    ))
}

#[test]
fn ring_all_rings_everyone_and_the_first_answer_cancels_every_other_phone() {
    let mut net = ring_all();
    net.phone("anna", Phone::AnswersAfter(5000));
    let c1 = net.call("200", CALLER);
    assert_eq!(net.said(), ["c1: answer", "c1: hold default", "c1: invite anna", "c1: invite ben", "c1: invite cleo"]);
    net.run_until(5.04);
    assert_eq!(net.said(), ["c1: cancel ben", "c1: cancel cleo", "c1: stop hold", "c1: bridge anna"]);
    net.run_until(30.0);
    assert!(net.said().is_empty(), "ben's and cleo's 487s change nothing");
    assert!(net.misses().is_empty());
    let mut withdrawn = net.withdrawn();
    withdrawn.sort();
    assert_eq!(withdrawn, ["ben", "cleo"]);
    net.caller_hangs_up(c1);
    assert_eq!(net.said(), ["c1: bye anna"]);
    assert_eq!(net.outcome(c1), Some(Outcome::Answered { agent: net.agent("anna") }));
    net.finish_clean();
}

#[test]
fn ring_all_a_second_answer_crossing_its_cancel_is_byed() {
    let mut net = ring_all();
    net.phone("anna", Phone::AnswersAfter(5000)); // 200 reaches acd at 5.04 s
    net.phone("ben", Phone::AnswersAfter(5010)); // picks up at 5.03 s, before the CANCEL reaches him at 5.06 s
    let c1 = net.call("200", CALLER);
    net.said();
    net.run_until(5.04);
    assert_eq!(net.said(), ["c1: cancel ben", "c1: cancel cleo", "c1: stop hold", "c1: bridge anna"]);
    net.run_until(5.05);
    assert_eq!(net.said(), ["c1: bye ben"], "ben's 200 arrived after his CANCEL went out");
    net.run_until(30.0);
    assert!(net.said().is_empty());
    assert!(matches!(net.agent_state("anna"), AgentState::OnCall { .. }));
    assert!(matches!(net.agent_state("ben"), AgentState::Available { .. }), "ben is not on the call");
    net.caller_hangs_up(c1);
    assert_eq!(net.said(), ["c1: bye anna"]);
    net.finish_clean();
}

#[test]
fn ring_all_caller_hanging_up_before_the_late_answer_arrives_leaves_nothing() {
    let mut net = ring_all();
    let cleo = net.agent("cleo");
    net.input(Input::AgentPause { agent: cleo, reason: "training".into() });
    net.phone("anna", Phone::AnswersAfter(5000)); // 200 reaches acd at 5.04 s
    net.phone("ben", Phone::AnswersAfter(5010)); // 200 reaches acd at 5.05 s, after its CANCEL
    let c1 = net.call("200", CALLER);
    assert_eq!(net.said(), ["c1: answer", "c1: hold default", "c1: invite anna", "c1: invite ben"]);
    net.run_until(5.045);
    net.caller_hangs_up(c1);
    net.said();
    net.run_until(5.05);
    assert_eq!(net.said(), ["c1: bye ben"]);
    net.finish_clean();
}

// ----- 10: refusals, rejects and overflow ----------------------------------------------

#[test]
fn unknown_number_is_refused_with_404() {
    let mut net = two_agents("");
    let r = net.try_call(IncomingCall { dialled: "999".into(), caller: CALLER.into(), ..Default::default() });
    assert_eq!(r, Err(Refusal::UnknownNumber("999".into())));
    assert_eq!(r.unwrap_err().status(), 404);
    assert!(net.said().is_empty());
    assert!(net.events.is_empty(), "the engine never heard of it");
    net.finish_clean();
}

#[test]
fn calls_beyond_max_calls_get_503_with_retry_after_until_a_call_ends() {
    let mut net = Net::new(&format!(
        "[sip]\nmax_calls = 2\nretry_after_secs = 20\n{}{}{}",
        queue("support", "linear", &["anna"], ""),
        agents(&["anna"]),
        number("100", "support", "")
    ));
    let c1 = net.call("100", "+358401");
    let c2 = net.call("100", "+358402");
    let refused = net.try_call(IncomingCall { dialled: "100".into(), caller: "+358403".into(), ..Default::default() });
    let refusal = refused.unwrap_err();
    assert_eq!(refusal, Refusal::Overloaded { calls: 2, retry_after: 20 });
    assert_eq!((refusal.status(), refusal.retry_after()), (503, Some(20)));
    net.run_until(5.0);
    net.caller_hangs_up(c1);
    net.run_until(6.0);
    let c4 = net.call("100", "+358404");
    net.run_until(7.0);
    net.caller_hangs_up(c2);
    net.caller_hangs_up(c4);
    net.finish_clean();
}

#[test]
fn calls_beyond_max_calls_are_counted_right_after_a_late_answer_was_byed() {
    // The slot of an abandoned call whose agent answered after our CANCEL
    // must be free again once that leg is BYEd.
    let mut net = Net::new(&format!(
        "[sip]\nmax_calls = 1\n{}{}{}",
        queue("support", "linear", &["anna"], ""),
        agents(&["anna"]),
        number("100", "support", "")
    ));
    net.phone("anna", Phone::AnswersAfter(10_000));
    let c1 = net.call("100", CALLER);
    net.run_until(10.01);
    net.caller_hangs_up(c1);
    net.run_until(11.0);
    net.phone("anna", Phone::AnswersAfter(1000));
    let c2 = net.try_call(IncomingCall { dialled: "100".into(), caller: "+358402".into(), ..Default::default() });
    assert!(c2.is_ok(), "the first call is over, yet: {c2:?}");
    net.run_until(20.0);
    net.caller_hangs_up(c2.unwrap());
    net.finish_clean();
}

#[test]
fn queue_rejecting_when_nobody_is_logged_in_answers_480_without_answering_the_call() {
    let mut net = Net::new(&format!(
        "{}[[agent]]\nid = \"anna\"\nauto_login = false\n{}",
        queue("night", "linear", &["anna"], "when_no_agents = \"reject\""),
        number("300", "night", "")
    ));
    let c1 = net.call("300", CALLER);
    assert_eq!(net.said(), ["c1: reject 480"], "no 200, no music: straight 480");
    assert_eq!(net.outcome(c1), Some(Outcome::Rejected { status: 480 }));
    net.finish_clean();
}

#[test]
fn full_queue_without_overflow_rejects_with_503_and_retry_after() {
    let mut net = Net::new(&format!(
        "[sip]\nretry_after_secs = 45\n{}{}{}",
        queue("support", "linear", &["anna"], "max_waiting = 1"),
        agents(&["anna"]),
        number("100", "support", "")
    ));
    let anna = net.agent("anna");
    net.input(Input::AgentPause { agent: anna, reason: "lunch".into() });
    let c1 = net.call("100", "+358401");
    let c2 = net.call("100", "+358402");
    assert_eq!(net.said(), ["c1: answer", "c1: hold default", "c2: reject 503 retry-after 45"]);
    assert_eq!(net.outcome(c2), Some(Outcome::Rejected { status: 503 }));
    net.caller_hangs_up(c1);
    net.finish_clean();
}

const VOICEMAIL: &str = "sip:vm@192.0.2.1";

fn with_voicemail_overflow() -> Net {
    Net::new(&format!(
        "{}{}{}",
        queue(
            "support",
            "linear",
            &["anna"],
            &format!("ring_timeout_secs = 30\nmax_wait_secs = 20\noverflow = \"{VOICEMAIL}\"")
        ),
        agents(&["anna"]),
        number("100", "support", "")
    ))
}

#[test]
fn max_wait_overflow_to_a_sip_uri_invites_it_and_bridges_when_it_answers() {
    let mut net = with_voicemail_overflow();
    net.phone(VOICEMAIL, Phone::AnswersAfter(2000));
    let c1 = net.call("100", CALLER);
    assert_eq!(net.said(), ["c1: answer", "c1: hold default", "c1: invite anna"]);
    net.run_until(19.999);
    assert!(net.said().is_empty());
    net.run_until(20.0);
    assert_eq!(
        net.said(),
        ["c1: cancel anna", format!("c1: invite {VOICEMAIL}").as_str()],
        "at the maximum wait anna's ring is withdrawn and the caller, still hearing music, goes to voicemail"
    );
    assert_eq!(net.outcome(c1), Some(Outcome::Overflowed { uri: VOICEMAIL.into() }));
    assert!(net.events.iter().any(|e| matches!(
        e,
        Event::Overflowed { call, reason: OverflowReason::MaxWait, to, .. } if *call == c1 && to == VOICEMAIL
    )));
    net.run_until(30.0);
    assert_eq!(
        net.said(),
        ["c1: stop hold", format!("c1: bridge {VOICEMAIL}").as_str()],
        "the music stops when voicemail answers, not before"
    );
    net.caller_hangs_up(c1);
    assert_eq!(net.said(), [format!("c1: bye {VOICEMAIL}")]);
    net.finish_clean();
}

#[test]
fn overflow_target_failing_byes_the_caller() {
    let mut net = with_voicemail_overflow();
    net.phone(VOICEMAIL, Phone::Refuses(503, 0));
    let c1 = net.call("100", CALLER);
    net.run_until(20.0);
    net.said();
    net.run_until(20.04);
    assert_eq!(net.said(), ["c1: bye caller"], "nothing else to try");
    assert_eq!(net.outcome(c1), Some(Outcome::Overflowed { uri: VOICEMAIL.into() }));
    net.finish_clean();
}

#[test]
fn overflow_target_hanging_up_byes_the_caller() {
    let mut net = with_voicemail_overflow();
    net.phone(VOICEMAIL, Phone::AnswersAfter(100));
    net.call("100", CALLER);
    net.run_until(60.0);
    net.said();
    net.far_end_hangs_up(VOICEMAIL);
    assert_eq!(net.said(), ["c1: bye caller"]);
    net.finish_clean();
}

#[test]
fn caller_hanging_up_while_the_overflow_target_rings_cancels_it() {
    let mut net = with_voicemail_overflow();
    net.phone(VOICEMAIL, Phone::Rings);
    let c1 = net.call("100", CALLER);
    net.run_until(25.0);
    net.said();
    net.caller_hangs_up(c1);
    assert_eq!(net.said(), [format!("c1: cancel {VOICEMAIL}")]);
    net.finish_clean();
}

// ----- 11: priority and skills from the number and the headers -----------------------

/// anna alone on "support"; her phone is unregistered until the test says.
fn one_agent_away(numbers: &str) -> Net {
    let mut net = Net::new(&format!("{}{}{numbers}", queue("support", "linear", &["anna"], ""), agents(&["anna"])));
    let anna = net.agent("anna");
    net.input(Input::AgentUnregistered { agent: anna });
    net
}

#[test]
fn priority_of_the_number_dialled_serves_a_later_caller_first() {
    let mut net =
        one_agent_away(&format!("{}{}", number("100", "support", ""), number("200", "support", "priority = 5")));
    let c1 = net.call("100", "+358401");
    net.run_until(1.0);
    let c2 = net.call("200", "+358402");
    assert_eq!((net.queued_priority(c1), net.queued_priority(c2)), (Some(0), Some(5)));
    net.run_until(2.0);
    net.said();
    let anna = net.agent("anna");
    net.input(Input::AgentRegistered { agent: anna });
    assert_eq!(net.said(), ["c2: invite anna"], "the VIP line goes first");
    net.caller_hangs_up(c1);
    net.caller_hangs_up(c2);
    net.finish_clean();
}

#[test]
fn priority_header_serves_a_later_caller_first_and_a_bad_one_is_ignored() {
    let mut net = one_agent_away(&number("100", "support", ""));
    let c1 = net.call("100", "+358401");
    net.run_until(1.0);
    let c2 = net
        .try_call(IncomingCall {
            dialled: "100".into(),
            caller: "+358402".into(),
            priority_header: Some(" 7 ".into()),
            ..Default::default()
        })
        .unwrap();
    let c3 = net
        .try_call(IncomingCall {
            dialled: "100".into(),
            caller: "+358403".into(),
            priority_header: Some("urgent".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        [c1, c2, c3].map(|c| net.queued_priority(c)),
        [Some(0), Some(7), Some(0)],
        "X-Priority: 7 counts, a non-number does not"
    );
    net.run_until(2.0);
    net.said();
    let anna = net.agent("anna");
    net.input(Input::AgentRegistered { agent: anna });
    assert_eq!(net.said(), ["c2: invite anna"]);
    for c in [c1, c2, c3] {
        net.caller_hangs_up(c);
    }
    net.finish_clean();
}

/// "support" rings ben before anna (linear); only anna speaks Finnish.
fn finnish_and_english() -> Net {
    Net::new(&format!(
        "{}{}{}{}{}",
        queue("support", "linear", &["ben", "anna"], ""),
        agent("anna", "{ lang.fi = 5, lang.en = 5 }"),
        agent("ben", "{ lang.en = 5 }"),
        number("100", "support", ""),
        number("101", "support", "skills = { lang.fi = 3 }"),
    ))
}

#[test]
fn skills_header_rings_only_an_agent_with_the_skill() {
    let mut net = finnish_and_english();
    let c1 = net
        .try_call(IncomingCall {
            dialled: "100".into(),
            caller: "+358401".into(),
            skills_header: Some("lang.fi:3".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        net.said(),
        ["c1: answer", "c1: hold default", "c1: invite anna"],
        "ben is first in line but has no Finnish"
    );
    let decision = net
        .events
        .iter()
        .find_map(|e| match e {
            Event::Offered { call, decision, .. } if *call == c1 => Some(decision.clone()),
            _ => None,
        })
        .unwrap();
    let ben = decision.candidates.iter().find(|c| c.agent == net.agent("ben")).unwrap();
    assert!(matches!(&ben.skipped, Some(Skip::SkillMissing { skill }) if &**skill == "lang.fi"), "{ben:?}");
    let c2 = net.call("100", "+358402");
    assert_eq!(net.said(), ["c2: answer", "c2: hold default", "c2: invite ben"], "no header: ben, first in line");
    net.caller_hangs_up(c1);
    net.caller_hangs_up(c2);
    net.finish_clean();
}

#[test]
fn skills_of_the_number_dialled_ring_only_an_agent_with_the_skill() {
    let mut net = finnish_and_english();
    let c1 = net.call("101", "+358401");
    assert_eq!(net.said(), ["c1: answer", "c1: hold default", "c1: invite anna"]);
    net.caller_hangs_up(c1);
    net.finish_clean();
}

#[test]
fn finnish_caller_waits_for_the_finnish_agent_while_the_other_is_free() {
    let mut net = finnish_and_english();
    net.phone("anna", Phone::AnswersAfter(1000));
    let anna = net.agent("anna");
    net.input(Input::AgentPause { agent: anna, reason: "lunch".into() });
    let c1 = net.call("101", "+358401");
    net.run_until(60.0);
    assert_eq!(net.said(), ["c1: answer", "c1: hold default"], "ben is free but has no Finnish: nobody rings");
    net.input(Input::AgentReady { agent: anna });
    assert_eq!(net.said(), ["c1: invite anna"], "anna is back from lunch");
    net.run_until(70.0);
    assert_eq!(net.said(), ["c1: stop hold", "c1: bridge anna"]);
    net.caller_hangs_up(c1);
    net.finish_clean();
}

// ----- 12: determinism -----------------------------------------------------------------

/// A busy minute on a random-strategy queue with every kind of phone.
fn busy_minute() -> (Vec<(Time, String)>, Vec<Event>) {
    let mut net = Net::new(&format!(
        "{}{}{}",
        queue("support", "random", &["anna", "ben", "cleo", "dan"], "ring_timeout_secs = 8\nwrap_up_secs = 3"),
        agents(&["anna", "ben", "cleo", "dan"]),
        number("100", "support", "")
    ));
    net.phone("anna", Phone::AnswersAfter(4000));
    net.phone("ben", Phone::Refuses(486, 300));
    net.phone("cleo", Phone::Rings);
    net.phone("dan", Phone::AnswersAfter(7990));
    let mut calls = Vec::new();
    for i in 0..8u64 {
        net.run_until(i as f64 * 2.5);
        calls.push(net.call("100", &format!("+35840{i}")));
    }
    for (i, c) in calls.iter().enumerate() {
        net.run_until(30.0 + i as f64 * 4.0);
        net.caller_hangs_up(*c);
    }
    // Dan's late 200s may be BYEd as races; any error must be the same twice.
    let errors = net.finish();
    net.log.push((net.now, format!("errors: {errors:?}")));
    (net.log, net.events)
}

#[test]
fn same_script_gives_the_same_commands_and_events() {
    let (log1, events1) = busy_minute();
    let (log2, events2) = busy_minute();
    let invites = log1.iter().filter(|(_, l)| l.contains(": invite ")).count();
    assert!(invites >= 8, "a non-trivial script: {invites} invites");
    assert_eq!(log1, log2);
    assert_eq!(events1, events2);
}

#[test]
fn a_waiting_caller_whose_media_stopped_is_byed_and_counted_as_abandoned() {
    let mut net = Net::new(&format!(
        "{}{}{}",
        queue("sales", "ring-all", &["anna", "ben"], ""),
        agents(&["anna", "ben"]),
        number("200", "sales", "")
    ));
    let c1 = net.call("200", CALLER);
    assert_eq!(net.said(), ["c1: answer", "c1: hold default", "c1: invite anna", "c1: invite ben"]);
    net.run_until(5.0);
    // The media plane: no RTP from the waiting caller for the media timeout.
    let leg = net.caller_leg(c1);
    net.core.media_lost(net.now, leg);
    net.drain();
    let mut said = net.said();
    said.sort();
    assert_eq!(said, ["c1: bye caller", "c1: cancel anna", "c1: cancel ben"]);
    assert_eq!(net.outcome(c1), Some(Outcome::Abandoned));
    // Not offered again: nobody rings for it.
    net.run_until(60.0);
    assert!(net.said().is_empty(), "{:?}", net.said());
    net.finish_clean();
}

#[test]
fn media_lost_on_a_ringing_agent_leg_changes_nothing() {
    let mut net = two_agents("");
    let c1 = net.call("100", CALLER);
    net.said();
    let ringing = *net.remotes.iter().find(|(_, r)| r.state == Far::Ringing).expect("an agent rings").0;
    // Early media that stopped: the ring timeout, not the media timeout, ends a ring.
    net.core.media_lost(net.now, ringing);
    net.drain();
    assert!(net.said().is_empty());
    net.caller_hangs_up(c1);
    net.finish_clean();
}

// ----- 13: issue 12: ghost calls, races and bugs, the state log ---------------------

/// Everything `f` logs at debug and above, as text.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }
    let buf = Buf::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(buf.clone())
        .finish();
    let r = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (r, text)
}

#[test]
fn ghost_call_whose_agent_invite_got_no_response_frees_its_slot_and_media_at_once() {
    let mut net = Net::new(&format!(
        "[sip]\nmax_calls = 1\n{}{}{}",
        queue("support", "linear", &["anna"], ""),
        agents(&["anna"]),
        number("100", "support", "")
    ));
    net.phone("anna", Phone::Unreachable(32_000)); // no response until Timer B
    let c1 = net.call("100", CALLER);
    assert_eq!(net.said(), ["c1: answer", "c1: hold default", "c1: invite anna"]);
    let anna_leg = *net.remotes.keys().next().unwrap();
    net.run_until(5.0);
    net.caller_hangs_up(c1);
    assert_eq!(net.said(), ["c1: cancel anna"]);
    assert_eq!(net.core.call_count(), 0, "the call is gone at once, not at Timer B");
    assert_eq!(net.core.orphan_count(), 1, "only anna's INVITE transaction lingers");
    assert_eq!(net.core.leg_call(anna_leg), None, "its media is no call's");
    assert_eq!(net.released, [(t(5.0), anna_leg)], "its media is released at once");
    assert_eq!(net.outcome(c1), Some(Outcome::Abandoned));
    // The one slot is free: a new caller is taken right away.
    let c2 = net.try_call(IncomingCall { dialled: "100".into(), caller: "+358402".into(), ..Default::default() });
    assert!(c2.is_ok(), "admission counts no ghost: {c2:?}");
    net.caller_hangs_up(c2.unwrap());
    net.run_until(37.1);
    assert_eq!(net.core.orphan_count(), 0, "Timer B (32 s) ended the orphan");
    assert!(net.said().iter().all(|l| !l.starts_with("c1:")), "nothing more for c1");
    net.finish_clean();
    assert_eq!(net.core.races().total(), 0, "Timer B on a cancelled INVITE is its normal end");
}

#[test]
fn late_200_to_an_orphaned_invite_is_acked_and_byed() {
    let mut net = two_agents("");
    // anna picks up at 0.025 s, before acd's CANCEL (sent at 0.01 s) reaches
    // her at 0.03 s; her 180 and 200 reach acd at 0.04 and 0.045 s.
    net.phone("anna", Phone::AnswersAfter(5));
    let c1 = net.call("100", CALLER);
    net.said();
    net.run_until(0.01);
    net.caller_hangs_up(c1);
    assert_eq!(net.said(), ["c1: cancel anna"], "no response yet: the leg is orphaned");
    assert_eq!(net.core.call_count(), 0);
    net.run_until(0.044);
    assert!(net.said().is_empty(), "her 180 changes nothing");
    net.run_until(0.045);
    assert_eq!(net.said(), ["c1: bye anna"], "the stack ACKed her 200; acd BYEs it");
    assert_eq!((net.core.call_count(), net.core.leg_count()), (0, 0));
    assert!(matches!(net.agent_state("anna"), AgentState::Available { .. }), "anna is not on the call");
    net.finish_clean();
    assert_eq!(net.core.races().get(Race::AnswerAfterCancel), 1);
}

#[test]
fn ring_timeout_with_no_response_at_all_is_unreachable_but_a_ringing_phone_is_no_answer() {
    for (script, cause) in
        [(Phone::Unreachable(60_000), RejectCause::Unreachable), (Phone::Rings, RejectCause::NoAnswer)]
    {
        let mut net = two_agents("ring_timeout_secs = 15");
        net.phone("anna", script);
        net.phone("ben", Phone::AnswersAfter(1000));
        let c1 = net.call("100", CALLER);
        net.run_until(15.0);
        assert_eq!(net.misses(), [("anna".to_string(), cause)], "{script:?}");
        net.run_until(20.0);
        net.caller_hangs_up(c1);
        net.finish_clean();
    }
}

#[test]
fn cancel_crossing_a_200_is_a_counted_race_not_an_error() {
    let (net, log) = logged(|| {
        let mut net = two_agents("ring_timeout_secs = 15");
        net.phone("anna", Phone::AnswersAfter(14_990)); // her 200 crosses our CANCEL
        net.phone("ben", Phone::AnswersAfter(1000));
        let c1 = net.call("100", CALLER);
        net.run_until(20.0);
        net.caller_hangs_up(c1);
        net.finish_clean();
        net
    });
    assert_eq!(net.core.races().get(Race::AnswerAfterCancel), 1);
    assert_eq!(net.core.races().total(), 1);
    assert!(net.core.errors().is_empty());
    assert!(log.contains("race: 2xx crossed the CANCEL"), "logged at debug:\n{log}");
    assert!(!log.contains("ERROR"), "not logged as an error:\n{log}");
}

#[test]
fn bye_for_a_leg_already_ended_is_a_race() {
    let mut net = two_agents("");
    net.phone("anna", Phone::AnswersAfter(1000));
    let c1 = net.call("100", CALLER);
    net.run_until(10.0);
    net.caller_hangs_up(c1);
    // anna hung up too; her BYE crossed ours.
    let anna_leg = *net.remotes.keys().next().unwrap();
    net.core.handle_sip(net.now, SipEvent::RemoteBye { leg: anna_leg });
    net.drain();
    assert_eq!(net.core.races().get(Race::LegAlreadyEnded), 1);
    net.finish_clean();
}

#[test]
fn bugs_are_logged_at_error_and_kept_bounded() {
    let mut net = two_agents("");
    let c1 = net.call("100", CALLER);
    let caller = net.caller_leg(c1);
    let (_, log) = logged(|| net.core.handle_sip(net.now, SipEvent::Answered { leg: caller }));
    assert!(log.contains("ERROR") && log.contains("call control bug"), "{log}");
    for _ in 1..10_000 {
        // A caller leg cannot have a provisional response: a bug each time.
        net.core.handle_sip(net.now, SipEvent::Progress { leg: caller, status: 180 });
    }
    net.drain();
    let errors = net.core.errors();
    assert_eq!(errors.total(), 10_000);
    assert_eq!(errors.of_kind("unexpected-event"), 10_000);
    assert_eq!(errors.recent().len(), RECENT_ERRORS, "only the last {RECENT_ERRORS} are kept");
    assert!(errors.recent().all(|e| matches!(e, CallCtlError::Unexpected { event: "Progress", .. })));
    assert_eq!(net.core.races().total(), 0, "bugs are not races");
    net.caller_hangs_up(c1);
    assert_eq!(net.finish().len(), RECENT_ERRORS);
}

#[test]
fn every_call_and_leg_transition_is_logged() {
    let (_, log) = logged(|| {
        let mut net = two_agents("");
        net.phone("anna", Phone::AnswersAfter(1000));
        let c1 = net.call("100", CALLER);
        net.run_until(10.0);
        net.caller_hangs_up(c1);
        net.finish_clean();
    });
    for line in [
        "Arriving => Queued (answered, waiting)",
        "=> Inviting (ring)",
        "Inviting => Alerting (180)",
        "Alerting => Answered (2xx)",
        "Queued => Bridged(agent 0, leg 2) (agent answered)",
        "Bridged(agent 0, leg 2) => Ended (caller hung up)",
        "Answered => Gone (caller hung up)",
    ] {
        assert!(log.contains(line), "no \"{line}\" in:\n{log}");
    }
    assert!(log.contains("DEBUG"), "at debug, like the engine's agent transitions");
}

// ----- blind transfer (REFER) --------------------------------------------------

/// Front line 100 → "front" (anna, 30 s wrap-up); tech line 200 → "tech" (ben).
fn front_and_tech() -> Net {
    Net::new(&format!(
        "{}{}{}{}{}",
        queue("front", "linear", &["anna"], "wrap_up_secs = 30"),
        queue("tech", "linear", &["ben"], "music = \"ringback\""),
        agents(&["anna", "ben"]),
        number("100", "front", ""),
        number("200", "tech", "")
    ))
}

#[test]
fn agent_transfers_to_a_queue_number_and_the_caller_is_served_there_before_a_later_caller() {
    let mut net = front_and_tech();
    let ben = net.agent("ben");
    net.input(Input::AgentPause { agent: ben, reason: "busy".into() });
    net.phone("anna", Phone::AnswersAfter(1000));
    net.phone("ben", Phone::AnswersAfter(1000));
    let c1 = net.call("100", CALLER);
    net.run_until(5.0);
    let c2 = net.call("200", "+358402222222"); // joins tech after c1 arrived
    net.run_until(20.0);
    net.said();
    net.refers("anna", "<sip:200@acd.example;user=phone>");
    assert_eq!(
        net.said(),
        ["c1: transfer accepted, bye anna", "c1: hold ringback"],
        "202 + NOTIFYs + BYE to anna; the caller hears tech's music, no re-INVITE"
    );
    assert!(matches!(net.agent_state("anna"), AgentState::WrapUp { .. }), "anna wraps up as after a call");
    let tech = net.core.engine().queue_id("tech").unwrap();
    assert_eq!(net.core.engine().waiting(tech), vec![c1, c2], "c1 keeps its place: it arrived before c2");
    assert!(net.events.iter().any(|e| matches!(e, Event::Transferred { call, .. } if *call == c1)));
    net.run_until(30.0);
    net.input(Input::AgentReady { agent: ben });
    net.run_until(40.0);
    assert_eq!(net.said(), ["c1: invite ben", "c1: stop hold", "c1: bridge ben"]);
    net.caller_hangs_up(c1);
    net.caller_hangs_up(c2);
    assert_eq!(net.outcome(c1), Some(Outcome::Answered { agent: ben }));
    net.finish_clean();
}

#[test]
fn refused_transfers_get_a_final_answer_and_the_caller_stays_with_the_agent() {
    let mut net = Net::new(&format!(
        "{}{}{}{}{}{}",
        queue("front", "linear", &["anna"], ""),
        queue("full", "linear", &["ben"], "max_waiting = 1"),
        agents(&["anna", "ben"]),
        number("100", "front", ""),
        number("300", "full", ""),
        agent("cai", "{}")
    ));
    let cai = net.agent("cai");
    net.input(Input::AgentUnregistered { agent: cai });
    let ben = net.agent("ben");
    net.input(Input::AgentPause { agent: ben, reason: "busy".into() });
    net.phone("anna", Phone::AnswersAfter(1000));
    let c1 = net.call("100", CALLER);
    let c2 = net.call("300", "+358402222222"); // fills "full"
    net.run_until(10.0);
    net.said();
    for (to, status) in [
        ("<sip:999@acd>", 404),                // not a number acd knows
        ("<sip:cai@acd>", 480),                // an agent, but not registered
        ("<https://evil.example/>", 400),      // no SIP user at all
        ("<sip:300@acd>", 486),                // the queue is full
        ("<sip:100@acd?Replaces=x%40y>", 501), // attended transfer
    ] {
        net.refers("anna", to);
        assert_eq!(net.said(), [format!("c1: refer from anna refused {status}")], "Refer-To {to}");
    }
    // A REFER from the caller's side (a trunk) is not the agent's to make.
    let leg = net.caller_leg(c1);
    net.core.handle_sip(net.now, SipEvent::Refer { leg, refer_to: "<sip:300@acd>".into() });
    net.drain();
    assert_eq!(net.said(), ["c1: refer from caller refused 403"]);
    assert!(matches!(net.agent_state("anna"), AgentState::OnCall { call, .. } if call == c1), "still bridged");
    assert_eq!(net.core.engine().call(c1).unwrap().state, "bridged");
    net.run_until(20.0);
    net.far_end_hangs_up("anna");
    net.caller_hangs_up(c2);
    assert_eq!(net.outcome(c1), Some(Outcome::Answered { agent: net.agent("anna") }));
    net.finish_clean();
}

#[test]
fn a_phone_hanging_up_on_its_refused_transfer_sends_the_caller_back_to_the_queue_not_away() {
    let mut net = Net::new(&format!(
        "{}{}{}",
        queue("front", "linear", &["anna", "ben"], "wrap_up_secs = 30"),
        agents(&["anna", "ben"]),
        number("100", "front", "")
    ));
    net.phone("anna", Phone::AnswersAfter(1000));
    net.phone("ben", Phone::AnswersAfter(1000));
    let c1 = net.call("100", CALLER);
    net.run_until(10.0);
    net.said();
    net.refers("anna", "<sip:999@acd>");
    net.run_until(11.0);
    net.far_end_hangs_up("anna"); // baresip does this on a failed transfer
    assert_eq!(net.said(), ["c1: refer from anna refused 404", "c1: hold default", "c1: invite ben"]);
    assert!(matches!(net.agent_state("anna"), AgentState::WrapUp { .. }));
    net.run_until(20.0);
    assert_eq!(net.said(), ["c1: stop hold", "c1: bridge ben"], "the caller is served again, not dropped");
    // Later, an agent's hang-up is the end of the call as always.
    net.refers("ben", "<sip:999@acd>");
    net.run_until(30.0);
    net.far_end_hangs_up("ben");
    assert_eq!(net.said(), ["c1: refer from ben refused 404", "c1: bye caller"]);
    assert_eq!(net.outcome(c1), Some(Outcome::Answered { agent: net.agent("ben") }));
    net.finish_clean();
}

/// Front line 100 → "front" (anna); ben and cai are in no queue.
fn front_and_two_more(ben: Phone) -> (Net, CallId) {
    let mut net = Net::new(&format!(
        "{}{}{}",
        queue("front", "linear", &["anna"], "ring_timeout_secs = 10\nwrap_up_secs = 30"),
        agents(&["anna", "ben", "cai"]),
        number("100", "front", "")
    ));
    net.phone("anna", Phone::AnswersAfter(1000));
    net.phone("ben", ben);
    let c1 = net.call("100", CALLER);
    net.run_until(10.0);
    net.said();
    (net, c1)
}

#[test]
fn transfer_to_an_agent_rings_them_while_the_caller_talks_on_and_their_answer_takes_the_call() {
    let (mut net, c1) = front_and_two_more(Phone::AnswersAfter(2000));
    net.refers("anna", "<sip:ben@acd>");
    assert_eq!(net.said(), ["c1: transfer trying, to anna", "c1: invite ben"]);
    assert!(matches!(net.agent_state("anna"), AgentState::OnCall { .. }), "anna still talks to the caller");
    net.run_until(20.0);
    assert_eq!(net.said(), ["c1: transfer accepted, bye anna", "c1: bridge ben"]);
    assert!(matches!(net.agent_state("anna"), AgentState::WrapUp { .. }));
    assert!(matches!(net.agent_state("ben"), AgentState::OnCall { call, .. } if call == c1));
    net.caller_hangs_up(c1);
    assert_eq!(net.said(), ["c1: bye ben"]);
    assert_eq!(net.outcome(c1), Some(Outcome::Answered { agent: net.agent("ben") }));
    net.finish_clean();
}

#[test]
fn transfer_to_a_busy_or_silent_agent_fails_with_a_final_notify_and_the_caller_stays() {
    let (mut net, c1) = front_and_two_more(Phone::Refuses(486, 500));
    net.refers("anna", "<sip:ben@acd>");
    net.run_until(15.0);
    assert_eq!(net.said(), ["c1: transfer trying, to anna", "c1: invite ben", "c1: transfer failed 486, to anna"]);
    assert!(matches!(net.agent_state("anna"), AgentState::OnCall { call, .. } if call == c1));
    // cai rings out: at the ring timeout his INVITE is cancelled.
    net.refers("anna", "<sip:cai@acd>");
    net.run_until(40.0);
    assert_eq!(
        net.said(),
        ["c1: transfer trying, to anna", "c1: invite cai", "c1: cancel cai", "c1: transfer failed 480, to anna"]
    );
    assert_eq!(net.when("c1: cancel cai"), Some(25.0));
    assert!(matches!(net.agent_state("anna"), AgentState::OnCall { call, .. } if call == c1));
    net.run_until(60.0);
    net.far_end_hangs_up("anna");
    assert_eq!(net.said(), ["c1: bye caller"]);
    net.finish_clean();
}

#[test]
fn caller_hanging_up_while_a_transfer_rings_cancels_it() {
    let (mut net, c1) = front_and_two_more(Phone::Rings);
    net.refers("anna", "<sip:ben@acd>");
    net.run_until(12.0);
    net.said();
    net.caller_hangs_up(c1);
    assert_eq!(net.said(), ["c1: bye anna", "c1: cancel ben"]);
    assert!(matches!(net.agent_state("ben"), AgentState::Available { .. }));
    net.finish_clean();
}

#[test]
fn admin_transfers_a_bridged_call_to_a_queue_or_an_agent_with_byes_instead_of_notifies() {
    use crate::engine::{EngineError, TransferTarget};
    let mut net = front_and_tech();
    net.phone("anna", Phone::AnswersAfter(1000));
    net.phone("ben", Phone::AnswersAfter(1000));
    let ben = net.agent("ben");
    net.input(Input::AgentPause { agent: ben, reason: "busy".into() });
    let c1 = net.call("100", CALLER);
    assert_eq!(
        net.core.transfer(net.now, c1, TransferTarget::Agent(ben)),
        Err(EngineError::NotBridged(c1)),
        "not bridged yet"
    );
    net.run_until(10.0);
    net.said();
    let tech = net.core.engine().queue_id("tech").unwrap();
    net.core.transfer(net.now, c1, TransferTarget::Queue(tech)).unwrap();
    net.drain();
    assert_eq!(net.said(), ["c1: bye anna", "c1: hold ringback"]);
    net.input(Input::AgentReady { agent: ben });
    net.run_until(20.0);
    assert_eq!(net.said(), ["c1: invite ben", "c1: stop hold", "c1: bridge ben"]);
    // And on to anna, once she is out of her wrap-up.
    let anna = net.agent("anna");
    assert!(matches!(
        net.core.transfer(net.now, c1, TransferTarget::Agent(anna)),
        Err(EngineError::AgentNotFree(_, "in wrap-up"))
    ));
    net.input(Input::AgentReady { agent: anna });
    net.core.transfer(net.now, c1, TransferTarget::Agent(anna)).unwrap();
    net.drain();
    net.run_until(30.0);
    assert_eq!(net.said(), ["c1: invite anna", "c1: bye ben", "c1: bridge anna"]);
    net.caller_hangs_up(c1);
    net.finish_clean();
}
