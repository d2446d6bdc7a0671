//! Unit tests of routing rules on a virtual clock: each test is a short
//! script of inputs at given seconds and the rings, cancels and outcomes a
//! user would see.

use super::*;
use crate::config::from_toml_str;
use std::fmt::Write as _;

const SKILLS: &str = r#"
[skills]
billing = "b"
tech = "t"
[skills.lang]
fi = "Finnish"
en = "English"
"#;

struct H {
    e: Engine,
    actions: Vec<Action>,
    events: Vec<Event>,
}

impl H {
    /// An engine on `toml` (skills above prepended) with every agent
    /// registered, at t=0.
    fn new(toml: &str) -> H {
        let cfg = from_toml_str("test.toml", &format!("{SKILLS}\n{toml}")).expect("test config is valid");
        let mut h = H { e: Engine::new(&cfg, Time::ZERO), actions: Vec::new(), events: Vec::new() };
        let agents: Vec<AgentId> = h.e.agent_ids().collect();
        for a in agents {
            h.input(0, Input::AgentRegistered { agent: a }).unwrap();
        }
        h.clear();
        h
    }
    /// Replaces the config at `secs` with `toml` (skills above prepended).
    fn reload(&mut self, secs: u64, toml: &str) {
        let cfg = from_toml_str("new.toml", &format!("{SKILLS}\n{toml}")).expect("new test config is valid");
        self.input(secs, Input::ConfigReplaced(Box::new(cfg))).unwrap();
    }
    fn a(&self, name: &str) -> AgentId {
        self.e.agent_id(name).unwrap()
    }
    fn q(&self, name: &str) -> QueueId {
        self.e.queue_id(name).unwrap()
    }
    fn drain(&mut self) {
        while let Some(a) = self.e.poll_action() {
            self.actions.push(a);
        }
        while let Some(ev) = self.e.poll_event() {
            self.events.push(ev);
        }
    }
    fn clear(&mut self) {
        self.drain();
        self.actions.clear();
        self.events.clear();
    }
    fn input(&mut self, secs: u64, input: Input) -> Result<(), EngineError> {
        let r = self.e.handle(Time::from_secs(secs), input);
        self.drain();
        r
    }
    fn at(&mut self, secs: u64) {
        self.e.handle_timeout(Time::from_secs(secs)).unwrap();
        self.drain();
    }
    fn call(&mut self, secs: u64, id: u64, queue: &str, priority: i32) {
        self.call_with(secs, id, queue, priority, vec![]);
    }
    fn call_with(&mut self, secs: u64, id: u64, queue: &str, priority: i32, skills: Vec<(&str, u8)>) {
        let nc = NewCall {
            id: CallId(id),
            queue: self.q(queue),
            caller: format!("+3584000{id}"),
            priority,
            skills: skills.into_iter().map(|(s, l)| (s.to_string(), l)).collect(),
            attributes: vec![],
        };
        self.input(secs, Input::CallArrived(nc)).unwrap();
    }
    fn answer(&mut self, secs: u64, call: u64, agent: &str) {
        let agent = self.a(agent);
        self.input(secs, Input::OfferAnswered { call: CallId(call), agent }).unwrap();
    }
    fn end(&mut self, secs: u64, call: u64) {
        self.input(secs, Input::CallEnded { call: CallId(call) }).unwrap();
    }
    fn state(&self, agent: &str) -> AgentState {
        self.e.agent_state(self.a(agent)).unwrap().clone()
    }
    /// Ring actions since the last `take`, as (call, agent name).
    fn rings(&mut self) -> Vec<(u64, String)> {
        let out = self
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Ring { call, agent, .. } => Some((call.0, self.e.agent_name(*agent).to_string())),
                _ => None,
            })
            .collect();
        self.actions.retain(|a| !matches!(a, Action::Ring { .. }));
        out
    }
    fn cancels(&mut self) -> Vec<(u64, String)> {
        let out = self
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::CancelRing { call, agent } => Some((call.0, self.e.agent_name(*agent).to_string())),
                _ => None,
            })
            .collect();
        self.actions.retain(|a| !matches!(a, Action::CancelRing { .. }));
        out
    }
    fn outcome(&self, call: u64) -> Option<Outcome> {
        self.events.iter().find_map(|e| match e {
            Event::CallFinished { call: c, outcome, .. } if c.0 == call => Some(outcome.clone()),
            _ => None,
        })
    }
    fn last_decision(&self) -> Decision {
        self.events
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Offered { decision, .. } => Some(decision.clone()),
                _ => None,
            })
            .expect("an offer was made")
    }
    fn skip_of(&self, d: &Decision, agent: &str) -> Option<Skip> {
        let a = self.a(agent);
        d.candidates.iter().find(|c| c.agent == a).unwrap().skipped.clone()
    }
}

fn agents(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("[[agent]]\nid = \"{n}\"\nskills = {{ lang.fi = 5, lang.en = 5, billing = 5, tech = 5 }}\n"))
        .collect()
}

fn queue(name: &str, strategy: &str, members: &[&str], extra: &str) -> String {
    let m: Vec<String> = members.iter().map(|a| format!("{{ agent = \"{a}\" }}")).collect();
    format!("[[queue]]\nname = \"{name}\"\nstrategy = \"{strategy}\"\nmembers = [{}]\n{extra}\n", m.join(", "))
}

#[test]
fn ring_timeout_rolls_over_and_back_off_keeps_the_agent_away() {
    let mut h = H::new(&format!(
        "[engine.backoff_secs]\nno_answer = 10\nbusy = 30\n{}{}",
        queue("q", "linear", &["anna", "ben"], "ring_timeout_secs = 15"),
        agents(&["anna", "ben"])
    ));
    h.call(0, 1, "q", 0);
    assert_eq!(h.rings(), vec![(1, "anna".into())]);
    h.at(14);
    assert!(h.rings().is_empty(), "nothing happens before the ring timeout");
    h.at(15);
    assert_eq!(h.cancels(), vec![(1, "anna".into())], "anna's ring is cancelled at 15 s");
    assert_eq!(h.rings(), vec![(1, "ben".into())], "ben is offered at 15 s");
    let ben = h.a("ben");
    h.input(16, Input::OfferRejected { call: CallId(1), agent: ben, cause: RejectCause::Busy }).unwrap();
    h.at(24);
    assert!(h.rings().is_empty(), "anna is in back-off until 25 s, ben until 46 s");
    h.at(25);
    assert_eq!(h.rings(), vec![(1, "anna".into())], "anna again once her back-off ends");
    assert!(h.outcome(1).is_none());
}

#[test]
fn auto_pause_after_consecutive_misses_shows_the_reason() {
    let mut h = H::new(&format!(
        "[engine]\nauto_pause_after_misses = 2\n[engine.backoff_secs]\nno_answer = 0\n{}{}",
        queue("q", "linear", &["anna"], "ring_timeout_secs = 10"),
        agents(&["anna"])
    ));
    h.call(0, 1, "q", 0);
    h.at(10);
    assert_eq!(h.rings(), vec![(1, "anna".into()), (1, "anna".into())], "no back-off: rung again at once");
    h.at(20);
    match h.state("anna") {
        AgentState::Paused { reason, .. } => {
            assert_eq!(reason, "auto-paused: missed 2 offers in a row")
        }
        s => panic!("anna should be auto-paused, is {s:?}"),
    }
    h.at(100);
    assert!(h.rings().is_empty(), "a paused agent is never rung");
    let anna = h.a("anna");
    h.input(101, Input::AgentReady { agent: anna }).unwrap();
    assert_eq!(h.rings(), vec![(1, "anna".into())], "ready again: the waiting caller is offered");
}

#[test]
fn answered_call_wraps_up_then_agent_is_available_again() {
    let mut h = H::new(&format!(
        "{}{}[[agent]]\nid = \"cleo\"\nwrap_up_secs = 2\n",
        queue("q", "linear", &["anna", "cleo"], "wrap_up_secs = 30"),
        agents(&["anna"])
    ));
    h.call(0, 1, "q", 0);
    h.answer(3, 1, "anna");
    assert!(h.actions.contains(&Action::Bridge { call: CallId(1), agent: h.a("anna") }));
    assert!(h.actions.contains(&Action::StopHold { call: CallId(1) }));
    h.end(63, 1);
    assert_eq!(h.state("anna"), AgentState::WrapUp { until: Time::from_secs(93) });
    assert_eq!(h.outcome(1), Some(Outcome::Answered { agent: h.a("anna") }));
    h.rings();
    h.call(64, 2, "q", 0);
    assert_eq!(h.rings(), vec![(2, "cleo".into())], "anna is in wrap-up: cleo gets it");
    h.answer(65, 2, "cleo");
    h.end(70, 2);
    assert_eq!(h.state("cleo"), AgentState::WrapUp { until: Time::from_secs(72) }, "cleo's own wrap-up");
    h.at(93);
    assert_eq!(h.state("anna"), AgentState::Available { since: Time::from_secs(93) });
}

#[test]
fn never_offered_while_paused_logged_out_or_unregistered() {
    let mut h = H::new(&format!(
        "{}{}",
        queue("q", "linear", &["anna", "ben", "cleo", "dora"], ""),
        agents(&["anna", "ben", "cleo", "dora"])
    ));
    let (anna, ben, cleo) = (h.a("anna"), h.a("ben"), h.a("cleo"));
    h.input(0, Input::AgentPause { agent: anna, reason: "lunch".into() }).unwrap();
    h.input(0, Input::AgentLogout { agent: ben }).unwrap();
    h.input(0, Input::AgentUnregistered { agent: cleo }).unwrap();
    h.call(1, 1, "q", 0);
    assert_eq!(h.rings(), vec![(1, "dora".into())]);
    let d = h.last_decision();
    assert_eq!(h.skip_of(&d, "anna"), Some(Skip::Paused("lunch".into())));
    assert_eq!(h.skip_of(&d, "ben"), Some(Skip::LoggedOut));
    assert_eq!(h.skip_of(&d, "cleo"), Some(Skip::Unregistered));
    assert_eq!(h.skip_of(&d, "dora"), None);
    assert_eq!(
        h.input(2, Input::AgentReady { agent: ben }),
        Err(EngineError::AgentLoggedOut(ben)),
        "a logged-out agent must log in first"
    );
}

#[test]
fn strategies_pick_as_admins_expect() {
    // linear: always the first free member.
    let mut h = H::new(&format!(
        "{}{}",
        queue("q", "linear", &["a1", "a2", "a3"], "wrap_up_secs = 0"),
        agents(&["a1", "a2", "a3"])
    ));
    for i in 0..3 {
        h.call(i, i + 1, "q", 0);
        let r = h.rings();
        h.answer(i, i + 1, &r[0].1);
        h.end(i, i + 1);
        assert_eq!(r[0].1, "a1", "linear restarts at the top");
    }
    // round-robin: continues after the last one offered.
    let mut h = H::new(&format!(
        "{}{}",
        queue("q", "round-robin", &["a1", "a2", "a3"], "wrap_up_secs = 0"),
        agents(&["a1", "a2", "a3"])
    ));
    let mut got = vec![];
    for i in 0..4 {
        h.call(i, i + 1, "q", 0);
        let r = h.rings();
        h.answer(i, i + 1, &r[0].1);
        h.end(i, i + 1);
        got.push(r[0].1.clone());
    }
    assert_eq!(got, ["a1", "a2", "a3", "a1"]);
    // longest-idle: whoever finished a call longest ago.
    let mut h = H::new(&format!(
        "{}{}",
        queue("q", "longest-idle", &["a1", "a2", "a3"], "wrap_up_secs = 0"),
        agents(&["a1", "a2", "a3"])
    ));
    h.call(1, 1, "q", 0);
    assert_eq!(h.rings()[0].1, "a1", "all idle since 0: member order breaks the tie");
    h.answer(1, 1, "a1");
    h.end(5, 1);
    h.call(6, 2, "q", 0);
    assert_eq!(h.rings()[0].1, "a2");
    // fewest-calls: a1 answered one, a2 and a3 none.
    let mut h = H::new(&format!(
        "{}{}",
        queue("q", "fewest-calls", &["a1", "a2", "a3"], "wrap_up_secs = 0"),
        agents(&["a1", "a2", "a3"])
    ));
    h.call(1, 1, "q", 0);
    h.rings();
    h.answer(1, 1, "a1");
    h.end(2, 1);
    h.call(3, 2, "q", 0);
    h.rings();
    h.answer(3, 2, "a2");
    h.end(4, 2);
    h.call(5, 3, "q", 0);
    assert_eq!(h.rings()[0].1, "a3");
}

#[test]
fn ring_all_first_answer_wins_and_the_others_are_cancelled() {
    let mut h = H::new(&format!("{}{}", queue("q", "ring-all", &["a1", "a2", "a3"], ""), agents(&["a1", "a2", "a3"])));
    let a3 = h.a("a3");
    h.input(0, Input::AgentPause { agent: a3, reason: "training".into() }).unwrap();
    h.call(1, 1, "q", 0);
    assert_eq!(h.rings(), vec![(1, "a1".into()), (1, "a2".into())], "every eligible agent rings");
    h.answer(2, 1, "a2");
    assert_eq!(h.cancels(), vec![(1, "a1".into())]);
    assert!(matches!(h.state("a1"), AgentState::Available { .. }));
    // A 200 OK from a1 racing the CANCEL is refused so the shell ACKs and BYEs it.
    let a1 = h.a("a1");
    assert_eq!(
        h.input(2, Input::OfferAnswered { call: CallId(1), agent: a1 }),
        Err(EngineError::NoSuchOffer { call: CallId(1), agent: a1 })
    );
    assert!(matches!(h.state("a1"), AgentState::Available { .. }), "the late answer changed nothing");
}

#[test]
fn weighted_random_and_random_only_pick_eligible_agents() {
    let mut h = H::new(&format!(
        "{}{}",
        queue("q", "random", &["a1", "a2", "a3"], "wrap_up_secs = 0"),
        agents(&["a1", "a2", "a3"])
    ));
    let a2 = h.a("a2");
    h.input(0, Input::AgentPause { agent: a2, reason: "x".into() }).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..60 {
        h.call(i, i + 1, "q", 0);
        let r = h.rings();
        assert_ne!(r[0].1, "a2");
        seen.insert(r[0].1.clone());
        h.answer(i, i + 1, &r[0].1.clone());
        h.end(i, i + 1);
    }
    assert_eq!(seen.len(), 2, "both eligible agents get calls");
}

#[test]
fn caller_abandons_while_ringing_and_the_agent_is_freed_without_penalty() {
    let mut h = H::new(&format!("{}{}", queue("q", "linear", &["anna"], ""), agents(&["anna"])));
    h.call(0, 1, "q", 0);
    h.rings();
    h.input(4, Input::CallAbandoned { call: CallId(1) }).unwrap();
    assert_eq!(h.cancels(), vec![(1, "anna".into())]);
    assert_eq!(h.outcome(1), Some(Outcome::Abandoned));
    h.call(5, 2, "q", 0);
    assert_eq!(h.rings(), vec![(2, "anna".into())], "no back-off after a caller abandons");
    assert_eq!(h.e.call_count(), 1);
    assert_eq!(h.input(6, Input::CallAbandoned { call: CallId(1) }), Err(EngineError::UnknownCall(CallId(1))));
}

#[test]
fn pause_or_logout_on_a_call_waits_for_the_call_to_end() {
    let mut h = H::new(&format!("{}{}", queue("q", "linear", &["anna", "ben"], ""), agents(&["anna", "ben"])));
    h.call(0, 1, "q", 0);
    h.answer(1, 1, "anna");
    h.call(1, 2, "q", 0);
    h.answer(1, 2, "ben");
    let (anna, ben) = (h.a("anna"), h.a("ben"));
    h.input(2, Input::AgentPause { agent: anna, reason: "coffee".into() }).unwrap();
    h.input(2, Input::AgentLogout { agent: ben }).unwrap();
    assert!(matches!(h.state("anna"), AgentState::OnCall { .. }), "the call goes on");
    h.end(9, 1);
    h.end(9, 2);
    assert!(matches!(h.state("anna"), AgentState::Paused { ref reason, .. } if reason == "coffee"));
    assert_eq!(h.state("ben"), AgentState::LoggedOut);
    // Logging in again during the call takes the logout back.
    h.input(10, Input::AgentLogin { agent: ben }).unwrap();
    h.call(11, 3, "q", 0);
    h.answer(12, 3, "ben");
    h.input(13, Input::AgentLogout { agent: ben }).unwrap();
    h.input(14, Input::AgentLogin { agent: ben }).unwrap();
    h.end(20, 3);
    assert_eq!(h.state("ben"), AgentState::WrapUp { until: Time::from_secs(30) });
}

#[test]
fn logout_while_ringing_rolls_the_call_over() {
    let mut h = H::new(&format!("{}{}", queue("q", "linear", &["anna", "ben"], ""), agents(&["anna", "ben"])));
    h.call(0, 1, "q", 0);
    assert_eq!(h.rings(), vec![(1, "anna".into())]);
    let anna = h.a("anna");
    h.input(3, Input::AgentLogout { agent: anna }).unwrap();
    assert_eq!(h.cancels(), vec![(1, "anna".into())]);
    assert_eq!(h.rings(), vec![(1, "ben".into())]);
}

#[test]
fn vip_first_then_arrival_order_and_aging_prevents_starvation() {
    let mut h = H::new(&format!("{}{}", queue("q", "linear", &["anna"], "aging_secs = 60"), agents(&["anna"])));
    let anna = h.a("anna");
    h.input(0, Input::AgentPause { agent: anna, reason: "x".into() }).unwrap();
    h.call(0, 1, "q", 0);
    h.call(10, 2, "q", 0);
    h.call(20, 3, "q", 5);
    assert_eq!(h.e.waiting(h.q("q")), vec![CallId(3), CallId(1), CallId(2)], "VIP first, then arrival");
    let positions: Vec<u32> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::CallQueued { position, .. } => Some(*position),
            _ => None,
        })
        .collect();
    assert_eq!(positions, vec![1, 2, 1], "the VIP is told position 1");
    // At 400 s caller 1 has aged +6 (priority 6) and caller 3 +6 (11): VIP still first.
    h.at(400);
    assert_eq!(h.e.waiting(h.q("q"))[0], CallId(3));
    // A new VIP at 400 s (priority 5) is behind caller 1, who has waited 400 s (0+6).
    h.call(400, 4, "q", 5);
    assert_eq!(h.e.waiting(h.q("q")), vec![CallId(3), CallId(1), CallId(2), CallId(4)]);
    h.input(401, Input::AgentReady { agent: anna }).unwrap();
    assert_eq!(h.rings(), vec![(3, "anna".into())]);
}

#[test]
fn tiers_open_after_their_wait() {
    let mut h = H::new(&format!(
        "{}{}",
        "[[queue]]\nname = \"q\"\nstrategy = \"priority\"\nmembers = [{ agent = \"senior\" }, { agent = \"backup\", tier = 2 }]\ntiers = [{ tier = 2, open_after_secs = 20 }]\n",
        agents(&["senior", "backup"])
    ));
    let senior = h.a("senior");
    h.input(0, Input::AgentPause { agent: senior, reason: "meeting".into() }).unwrap();
    h.call(0, 1, "q", 0);
    assert!(h.rings().is_empty(), "tier 2 is closed for the first 20 s");
    h.at(19);
    assert!(h.rings().is_empty());
    h.at(20);
    assert_eq!(h.rings(), vec![(1, "backup".into())]);
    // With both free, tier 1 goes first even after tier 2 opened.
    h.answer(21, 1, "backup");
    h.input(21, Input::AgentReady { agent: senior }).unwrap();
    h.end(22, 1);
    h.at(100);
    h.rings();
    h.call(100, 2, "q", 0);
    h.at(130);
    assert_eq!(
        h.rings(),
        vec![(2, "senior".into()), (2, "backup".into())],
        "senior first; backup only after senior's ring timed out at 115 s and tier 2 opened at 120 s"
    );
}

#[test]
fn relaxation_lowers_the_level_for_callers_already_waiting() {
    let mut h = H::new(
        r#"
[[queue]]
name = "fi"
strategy = "skills"
required_skills = { lang.fi = 4 }
relax = [{ after_secs = 30, set = { lang.fi = 2 } }, { after_secs = 60, drop = ["lang.fi"], add = { lang.en = 1 } }]
members = [{ agent = "junior" }, { agent = "english" }]
[[agent]]
id = "junior"
skills = { lang.fi = 2 }
[[agent]]
id = "english"
skills = { lang.en = 3 }
"#,
    );
    let eng = h.a("english");
    h.input(0, Input::AgentPause { agent: eng, reason: "x".into() }).unwrap();
    h.call(0, 1, "fi", 0);
    assert!(h.rings().is_empty());
    h.at(29);
    assert!(h.rings().is_empty());
    h.at(30);
    assert_eq!(h.rings(), vec![(1, "junior".into())], "after 30 s level 2 is enough");
    let d = h.last_decision();
    assert_eq!(h.skip_of(&d, "english"), Some(Skip::Paused("x".into())));
    // Junior does not answer; after 60 s an English speaker qualifies.
    let junior = h.a("junior");
    h.input(31, Input::AgentLogout { agent: junior }).unwrap();
    h.input(31, Input::AgentReady { agent: eng }).unwrap();
    let d = h.last_decision_opt();
    assert!(d.is_none() || h.rings().is_empty(), "english lacks lang.fi until 60 s");
    h.at(60);
    assert_eq!(h.rings(), vec![(1, "english".into())]);
}

impl H {
    fn last_decision_opt(&self) -> Option<Decision> {
        self.events.iter().rev().find_map(|e| match e {
            Event::Offered { decision, .. } => Some(decision.clone()),
            _ => None,
        })
    }
}

#[test]
fn decision_record_names_skill_and_back_off_reasons() {
    let mut h = H::new(
        r#"
[[queue]]
name = "b"
strategy = "skills"
required_skills = { billing = 3 }
members = [{ agent = "low" }, { agent = "none" }, { agent = "ok" }, { agent = "ok2" }]
[[agent]]
id = "low"
skills = { billing = 2 }
[[agent]]
id = "none"
skills = { tech = 2 }
[[agent]]
id = "ok"
skills = { billing = 3 }
[[agent]]
id = "ok2"
skills = { billing = 3 }
"#,
    );
    h.call(0, 1, "b", 0);
    let d = h.last_decision();
    assert_eq!(h.skip_of(&d, "low"), Some(Skip::SkillTooLow { skill: "billing".into(), has: 2, needs: 3 }));
    assert_eq!(h.skip_of(&d, "none"), Some(Skip::SkillMissing { skill: "billing".into() }));
    assert_eq!(h.skip_of(&d, "ok"), None);
    assert_eq!(h.skip_of(&d, "ok2"), Some(Skip::NotChosen));
    let ok = h.a("ok");
    h.input(1, Input::OfferRejected { call: CallId(1), agent: ok, cause: RejectCause::Declined }).unwrap();
    let d = h.last_decision();
    assert_eq!(h.skip_of(&d, "ok"), Some(Skip::BackOff { remaining_ms: 5000 }));
    assert_eq!(h.skip_of(&d, "ok2"), None);
}

#[test]
fn a_call_needing_an_undeclared_skill_waits_and_says_why() {
    let mut h = H::new(&format!("{}{}", queue("q", "skills", &["anna"], ""), agents(&["anna"])));
    h.call_with(0, 1, "q", 0, vec![("lang.xx", 1)]);
    assert!(h.rings().is_empty());
    h.call(1, 2, "q", 0);
    assert_eq!(h.rings(), vec![(2, "anna".into())], "the next caller is not blocked behind it");
}

#[test]
fn max_wait_overflows_to_another_queue_then_to_a_uri() {
    let mut h = H::new(&format!(
        "{}{}{}",
        queue("first", "linear", &["anna"], "max_wait_secs = 30\noverflow = \"queue:second\""),
        queue("second", "linear", &["anna"], "max_wait_secs = 60\noverflow = \"sip:voicemail@pbx.example.com\""),
        agents(&["anna"])
    ));
    let anna = h.a("anna");
    h.input(0, Input::AgentPause { agent: anna, reason: "x".into() }).unwrap();
    h.call(0, 1, "first", 0);
    h.at(30);
    assert!(h
        .events
        .iter()
        .any(|e| matches!(e, Event::Overflowed { reason: OverflowReason::MaxWait, to, .. } if to == "queue:second")));
    assert_eq!(h.e.waiting(h.q("second")), vec![CallId(1)]);
    assert!(h.e.waiting(h.q("first")).is_empty());
    h.at(89);
    assert_eq!(h.outcome(1), None);
    h.actions.clear();
    h.at(90);
    assert_eq!(
        h.actions,
        vec![
            Action::StopHold { call: CallId(1) },
            Action::Transfer { call: CallId(1), uri: "sip:voicemail@pbx.example.com".into() }
        ],
        "music stops before the call is handed off"
    );
    assert_eq!(h.outcome(1), Some(Outcome::Overflowed { uri: "sip:voicemail@pbx.example.com".into() }));
    assert_eq!(h.e.call_count(), 0);
    assert_eq!(h.e.timer_count(), 0, "no timer outlives its call");
}

#[test]
fn max_wait_overflow_while_ringing_cancels_the_ring() {
    let mut h = H::new(&format!(
        "{}{}",
        queue("q", "linear", &["anna"], "max_wait_secs = 10\nring_timeout_secs = 30\noverflow = \"reject:486\""),
        agents(&["anna"])
    ));
    h.call(0, 1, "q", 0);
    h.rings();
    h.at(10);
    assert_eq!(h.cancels(), vec![(1, "anna".into())]);
    let stop = h.actions.iter().position(|a| *a == Action::StopHold { call: CallId(1) });
    let reject = h.actions.iter().position(|a| *a == Action::Reject { call: CallId(1), status: 486 });
    assert!(stop.is_some() && stop < reject, "StopHold then Reject: {:?}", h.actions);
    assert_eq!(h.outcome(1), Some(Outcome::Rejected { status: 486 }));
    assert!(matches!(h.state("anna"), AgentState::Available { .. }));
}

#[test]
fn a_full_queue_answers_503_and_an_empty_one_480() {
    let mut h = H::new(&format!(
        "{}{}{}",
        queue("small", "linear", &["anna"], "max_waiting = 1"),
        queue("empty", "linear", &["ben"], "when_no_agents = \"reject\""),
        agents(&["anna", "ben"])
    ));
    let (anna, ben) = (h.a("anna"), h.a("ben"));
    h.input(0, Input::AgentPause { agent: anna, reason: "x".into() }).unwrap();
    h.input(0, Input::AgentLogout { agent: ben }).unwrap();
    h.call(1, 1, "small", 0);
    h.call(2, 2, "small", 0);
    assert_eq!(h.outcome(2), Some(Outcome::Rejected { status: 503 }));
    assert_eq!(h.outcome(1), None, "the first caller keeps waiting");
    h.call(3, 3, "empty", 0);
    assert_eq!(h.outcome(3), Some(Outcome::Rejected { status: 480 }));
}

#[test]
fn cross_queue_oldest_caller_first_and_queue_weight() {
    let cfg = |policy: &str| {
        format!(
            "[engine]\ncross_queue_policy = \"{policy}\"\n{}{}{}",
            queue("light", "linear", &["anna"], "weight = 1"),
            queue("heavy", "linear", &["anna"], "weight = 10"),
            agents(&["anna"])
        )
    };
    for (policy, expect) in [("oldest-caller", 1), ("queue-weight", 2)] {
        let mut h = H::new(&cfg(policy));
        let anna = h.a("anna");
        h.input(0, Input::AgentPause { agent: anna, reason: "x".into() }).unwrap();
        h.call(0, 1, "light", 0);
        h.call(10, 2, "heavy", 0);
        h.input(20, Input::AgentReady { agent: anna }).unwrap();
        assert_eq!(h.rings()[0].0, expect, "{policy}");
    }
    // Queue weight never starves: light's caller waited 200 s, heavy's 10 s (x10 = 100).
    let mut h = H::new(&cfg("queue-weight"));
    let anna = h.a("anna");
    h.input(0, Input::AgentPause { agent: anna, reason: "x".into() }).unwrap();
    h.call(0, 1, "light", 0);
    h.call(190, 2, "heavy", 0);
    h.input(200, Input::AgentReady { agent: anna }).unwrap();
    assert_eq!(h.rings()[0].0, 1);
}

#[test]
fn unregistering_while_ringing_rolls_over_and_registration_brings_the_agent_back() {
    let mut h = H::new(&format!("{}{}", queue("q", "linear", &["anna", "ben"], ""), agents(&["anna", "ben"])));
    let ben = h.a("ben");
    h.input(0, Input::AgentUnregistered { agent: ben }).unwrap();
    h.call(0, 1, "q", 0);
    assert_eq!(h.rings(), vec![(1, "anna".into())]);
    let anna = h.a("anna");
    h.input(1, Input::AgentUnregistered { agent: anna }).unwrap();
    assert_eq!(h.cancels(), vec![(1, "anna".into())]);
    assert!(h.rings().is_empty(), "nobody registered");
    h.input(2, Input::AgentRegistered { agent: ben }).unwrap();
    assert_eq!(h.rings(), vec![(1, "ben".into())]);
}

#[test]
fn reload_keeps_callers_in_place_and_agents_in_their_state() {
    let base = |strategy: &str, extra_queue: &str| {
        format!(
            "{}{}{}",
            queue("q", strategy, &["anna", "ben"], "wrap_up_secs = 60"),
            extra_queue,
            agents(&["anna", "ben"])
        )
    };
    let mut h = H::new(&base("linear", &queue("old", "linear", &["ben"], "overflow = \"queue:q\"")));
    let (anna, ben) = (h.a("anna"), h.a("ben"));
    h.call(0, 1, "q", 0);
    h.answer(1, 1, "anna");
    h.end(10, 1);
    h.input(10, Input::AgentPause { agent: ben, reason: "x".into() }).unwrap();
    h.call(11, 2, "q", 0);
    h.call(12, 3, "old", 0);
    h.call(13, 4, "q", 3);
    h.reload(20, &base("round-robin", ""));
    assert_eq!(h.state("anna"), AgentState::WrapUp { until: Time::from_secs(70) }, "wrap-up survives");
    assert!(matches!(h.state("ben"), AgentState::Paused { .. }));
    assert_eq!(
        h.e.waiting(h.q("q")),
        vec![CallId(4), CallId(2), CallId(3)],
        "callers keep their place; the removed queue's caller joins behind"
    );
    assert!(h.e.queue_ids().all(|q| h.e.queue_name(q) != "old"));
    assert_eq!(h.e.call_count(), 3, "nobody lost");
    h.rings();
    h.input(21, Input::AgentReady { agent: ben }).unwrap();
    assert_eq!(h.rings(), vec![(4, "ben".into())], "the VIP first, under the new strategy");
    let _ = anna;
}

#[test]
fn time_going_backwards_is_refused() {
    let mut h = H::new(&format!("{}{}", queue("q", "linear", &["anna"], ""), agents(&["anna"])));
    h.at(10);
    assert_eq!(
        h.e.handle_timeout(Time::from_secs(5)),
        Err(EngineError::TimeWentBackwards { now: Time::from_secs(5), last: Time::from_secs(10) })
    );
}

#[test]
fn duplicate_call_and_unknown_queue_are_refused_without_side_effects() {
    let mut h = H::new(&format!("{}{}", queue("q", "linear", &["anna"], ""), agents(&["anna"])));
    h.call(0, 1, "q", 0);
    h.clear();
    let dup =
        NewCall { id: CallId(1), queue: h.q("q"), caller: "x".into(), priority: 0, skills: vec![], attributes: vec![] };
    assert_eq!(h.input(1, Input::CallArrived(dup.clone())), Err(EngineError::DuplicateCall(CallId(1))));
    let bad = NewCall { id: CallId(2), queue: QueueId(99), ..dup };
    assert_eq!(h.input(1, Input::CallArrived(bad)), Err(EngineError::UnknownQueue(QueueId(99))));
    assert!(h.actions.is_empty() && h.events.is_empty());
}

#[test]
fn a_removed_queue_without_overflow_keeps_its_callers_until_served() {
    let two = format!(
        "{}{}{}",
        queue("stay", "linear", &["anna"], ""),
        queue("other", "linear", &["anna"], ""),
        agents(&["anna"])
    );
    let mut h = H::new(&two);
    let anna = h.a("anna");
    h.input(0, Input::AgentPause { agent: anna, reason: "x".into() }).unwrap();
    h.call(1, 1, "stay", 0);
    let one = format!("{}{}", queue("other", "linear", &["anna"], ""), agents(&["anna"]));
    h.reload(2, &one);
    assert_eq!(h.outcome(1), None, "the caller is not dropped");
    let nc = NewCall {
        id: CallId(2),
        queue: h.q("stay"),
        caller: "x".into(),
        priority: 0,
        skills: vec![],
        attributes: vec![],
    };
    assert_eq!(h.input(3, Input::CallArrived(nc)), Err(EngineError::QueueClosed("stay".into())));
    h.input(4, Input::AgentReady { agent: anna }).unwrap();
    assert_eq!(h.rings(), vec![(1, "anna".into())], "served by the queue's last members");
}

#[test]
fn removed_agent_finishes_the_call_then_is_gone() {
    let mut h = H::new(&format!("{}{}", queue("q", "linear", &["anna", "ben"], ""), agents(&["anna", "ben"])));
    h.call(0, 1, "q", 0);
    h.answer(1, 1, "anna");
    let only_ben = format!("{}{}", queue("q", "linear", &["ben"], ""), agents(&["ben"]));
    h.reload(2, &only_ben);
    assert!(matches!(h.state("anna"), AgentState::OnCall { .. }), "a reload does not cut a call");
    h.end(30, 1);
    assert_eq!(h.state("anna"), AgentState::LoggedOut);
    assert_eq!(h.outcome(1), Some(Outcome::Answered { agent: h.a("anna") }));
    h.rings();
    h.call(31, 2, "q", 0);
    assert_eq!(h.rings(), vec![(2, "ben".into())]);
    let anna = h.a("anna");
    assert_eq!(h.input(32, Input::AgentLogin { agent: anna }), Err(EngineError::UnknownAgent(anna)));
}

#[test]
fn a_caller_further_along_the_relaxation_is_served_when_the_head_cannot_be() {
    let mut h = H::new(
        r#"
[[queue]]
name = "fi"
strategy = "skills"
required_skills = { lang.fi = 4 }
relax = [{ after_secs = 30, set = { lang.fi = 2 } }]
members = [{ agent = "junior" }]
[[agent]]
id = "junior"
skills = { lang.fi = 2 }
"#,
    );
    let junior = h.a("junior");
    h.input(0, Input::AgentPause { agent: junior, reason: "x".into() }).unwrap();
    h.call(0, 1, "fi", 0);
    h.call(25, 2, "fi", 5);
    h.call(26, 3, "fi", 0);
    h.input(31, Input::AgentReady { agent: junior }).unwrap();
    assert_eq!(h.e.waiting(h.q("fi"))[0], CallId(2), "the VIP heads the line");
    assert_eq!(
        h.rings(),
        vec![(1, "junior".into())],
        "the VIP (6 s, needs level 4) cannot be served; caller 1 (31 s, level 2 enough) can"
    );
}

#[test]
fn removing_a_queue_and_its_overflow_target_together_keeps_the_callers() {
    let three = format!(
        "{}{}{}{}",
        queue("a", "linear", &["anna"], "overflow = \"queue:b\""),
        queue("b", "linear", &["anna"], "overflow = \"queue:c\""),
        queue("c", "linear", &["anna"], ""),
        agents(&["anna"])
    );
    let mut h = H::new(&three);
    let anna = h.a("anna");
    h.input(0, Input::AgentPause { agent: anna, reason: "x".into() }).unwrap();
    h.call(1, 1, "a", 0);
    h.call(2, 2, "b", 0);
    let only_c = format!("{}{}", queue("c", "linear", &["anna"], ""), agents(&["anna"]));
    h.reload(3, &only_c);
    assert_eq!(h.e.waiting(h.q("a")), vec![CallId(1)], "a's target b is gone too: the caller stays in a");
    assert_eq!(h.e.waiting(h.q("c")), vec![CallId(2)], "b's caller moves on to c");
    assert_eq!(h.e.call_count(), 2);
}

#[test]
fn admin_moves_a_waiting_call_behind_the_target_queues_callers_and_cancels_its_ring() {
    let mut h = H::new(&format!(
        "{}{}{}",
        queue("q", "linear", &["anna"], ""),
        queue("other", "linear", &["ben"], ""),
        agents(&["anna", "ben"])
    ));
    let ben = h.a("ben");
    h.input(0, Input::AgentPause { agent: ben, reason: "x".into() }).unwrap();
    h.call(1, 1, "other", 0);
    h.call(2, 2, "q", 0); // rings anna
    assert_eq!(h.rings(), vec![(2, "anna".into())]);
    h.clear();
    h.input(3, Input::MoveCall { call: CallId(2), queue: h.q("other") }).unwrap();
    assert_eq!(h.cancels(), vec![(2, "anna".into())], "anna's ring is withdrawn");
    assert_eq!(h.e.waiting(h.q("other")), vec![CallId(1), CallId(2)], "behind the caller already there");
    assert!(h.events.iter().any(|e| matches!(e, Event::CallMoved { call: CallId(2), .. })));
    assert_eq!(h.state("anna").name(), "available");
    // Refusals change nothing.
    h.clear();
    assert_eq!(
        h.input(4, Input::MoveCall { call: CallId(9), queue: h.q("q") }),
        Err(EngineError::UnknownCall(CallId(9)))
    );
    assert_eq!(
        h.input(4, Input::MoveCall { call: CallId(2), queue: QueueId(99) }),
        Err(EngineError::UnknownQueue(QueueId(99)))
    );
    h.input(5, Input::AgentReady { agent: ben }).unwrap();
    h.answer(6, 1, "ben");
    h.clear();
    assert_eq!(
        h.input(7, Input::MoveCall { call: CallId(1), queue: h.q("q") }),
        Err(EngineError::NotWaiting(CallId(1))),
        "a bridged call cannot move"
    );
    assert!(h.actions.is_empty() && h.events.is_empty());
}

#[test]
fn admin_withdraws_a_waiting_call_with_a_status() {
    let mut h = H::new(&format!("{}{}", queue("q", "linear", &["anna"], ""), agents(&["anna"])));
    h.call(0, 1, "q", 0);
    h.clear();
    h.input(1, Input::WithdrawCall { call: CallId(1), status: 480 }).unwrap();
    assert_eq!(h.cancels(), vec![(1, "anna".into())]);
    assert!(h.actions.contains(&Action::Reject { call: CallId(1), status: 480 }));
    assert_eq!(h.outcome(1), Some(Outcome::Rejected { status: 480 }));
    assert_eq!(h.e.call_count(), 0);
}

#[test]
fn drain_sends_waiting_callers_to_overflow_and_leaves_bridged_calls_alone() {
    let mut h = H::new(&format!(
        "{}{}{}",
        queue("q", "linear", &["anna"], "overflow = \"sip:vm@192.0.2.1\"\nmax_wait_secs = 600"),
        queue("plain", "linear", &["anna"], ""),
        agents(&["anna"])
    ));
    h.call(0, 1, "q", 0);
    h.answer(1, 1, "anna");
    h.call(2, 2, "q", 0);
    h.call(3, 3, "plain", 0);
    h.clear();
    h.input(4, Input::Drain).unwrap();
    assert!(h.actions.contains(&Action::Transfer { call: CallId(2), uri: "sip:vm@192.0.2.1".into() }));
    assert_eq!(h.e.waiting(h.q("q")), vec![], "q's caller went to voicemail");
    assert_eq!(h.e.call_count(), 2, "the bridged call and the caller with no overflow target stay");
    assert!(h.e.queue_ids().next().is_none(), "every queue is closed");
    let nc = NewCall {
        id: CallId(4),
        queue: QueueId(0),
        caller: "x".into(),
        priority: 0,
        skills: vec![],
        attributes: vec![],
    };
    assert!(matches!(h.input(5, Input::CallArrived(nc)), Err(EngineError::QueueClosed(_))));
    // Anna still serves the caller left waiting once her call ends.
    h.end(6, 1);
    h.at(16);
    assert_eq!(h.rings(), vec![(3, "anna".into())]);
}

#[test]
fn a_removed_queue_keeps_its_callers_when_configured_to() {
    let cfg = |extra: &str| {
        format!(
            "[engine]\nremoved_queue_callers = \"stay\"\n{}{}{}",
            queue("q", "linear", &[], ""),
            extra,
            agents(&["anna"])
        )
    };
    let mut h = H::new(&cfg(&queue("old", "linear", &[], "overflow = \"queue:q\"")));
    h.call(0, 1, "old", 0);
    h.reload(1, &cfg(""));
    assert_eq!(h.e.waiting(h.e.all_queue_ids().find(|q| h.e.queue_name(*q) == "old").unwrap()), vec![CallId(1)]);
    assert!(h.outcome(1).is_none(), "not overflowed, not dropped");
}

// ----- the index of available members ------------------------------------------

/// A random config over `agents` (a0, a1, ...): three queues of random
/// strategies, tiers, weights, skill rules and members.
fn random_config(rng: &mut ChaCha8Rng, agents: usize) -> String {
    const SKILL_NAMES: [&str; 4] = ["billing", "tech", "lang.fi", "lang.en"];
    let strategies: Vec<&str> = Strategy::ALL.iter().map(|(n, _)| *n).collect();
    let mut t = String::new();
    for q in 0..3 {
        let strategy = strategies[rng.random_range(0..strategies.len())];
        let _ = writeln!(t, "[[queue]]\nname = \"q{q}\"\nstrategy = \"{strategy}\"");
        let _ =
            writeln!(t, "wrap_up_secs = {}\nring_timeout_secs = {}", rng.random_range(0..3), rng.random_range(1..4));
        if matches!(strategy, "priority" | "skills") {
            let tb = ["longest-idle", "fewest-skills", "best-level"][rng.random_range(0..3)];
            let _ = writeln!(t, "tie_break = \"{tb}\"");
        }
        if rng.random_bool(0.5) {
            let _ = writeln!(t, "tiers = [{{ tier = 2, open_after_secs = {} }}]", rng.random_range(0..6));
        }
        if rng.random_bool(0.5) {
            let s = SKILL_NAMES[rng.random_range(0..4)];
            let _ = writeln!(t, "required_skills = {{ {s} = {} }}", rng.random_range(1..5));
            if rng.random_bool(0.5) {
                let add = SKILL_NAMES[rng.random_range(0..4)];
                let _ = writeln!(
                    t,
                    "relax = [{{ after_secs = {}, drop = [\"{s}\"], add = {{ {add} = 1 }} }}]",
                    rng.random_range(1..8)
                );
            }
        }
        let mut members: Vec<String> = Vec::new();
        for a in 0..agents {
            if rng.random_bool(0.7) {
                let (tier, weight) = (rng.random_range(1..4), rng.random_range(1..6));
                members.push(format!("{{ agent = \"a{a}\", tier = {tier}, weight = {weight} }}"));
            }
        }
        let _ = writeln!(t, "members = [{}]\n", members.join(", "));
    }
    for a in 0..agents {
        let mut skills: Vec<String> = Vec::new();
        for s in SKILL_NAMES {
            if rng.random_bool(0.7) {
                skills.push(format!("{s} = {}", rng.random_range(1..10)));
            }
        }
        let _ = writeln!(t, "[[agent]]\nid = \"a{a}\"\nskills = {{ {} }}\n", skills.join(", "));
    }
    t
}

/// Random traffic, agent changes and reloads: after every step each queue's
/// index holds exactly its available members under the keys a scan gives
/// (and, in this debug build, every offer is checked against a full scan).
#[test]
fn member_index_stays_in_step_with_a_scan_of_the_members() {
    let causes = [RejectCause::NoAnswer, RejectCause::Busy, RejectCause::Declined, RejectCause::Unreachable];
    let (mut offers, mut reloads) = (0, 0);
    for seed in 0..40 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut h = H::new(&random_config(&mut rng, 8));
        let mut now = 0;
        let mut calls: Vec<CallId> = Vec::new();
        for step in 0..300 {
            now += rng.random_range(0..3);
            let agent = AgentId(rng.random_range(0..8));
            let call = calls.get(rng.random_range(0..calls.len().max(1))).copied();
            let input = match rng.random_range(0..14) {
                0..=2 => {
                    let id = CallId(1000 * seed + step);
                    calls.push(id);
                    let skills =
                        if rng.random_bool(0.2) { vec![("tech".to_string(), rng.random_range(1..8))] } else { vec![] };
                    Input::CallArrived(NewCall {
                        id,
                        queue: QueueId(rng.random_range(0..3)),
                        caller: "x".into(),
                        priority: rng.random_range(0..3),
                        skills,
                        attributes: vec![],
                    })
                }
                3 | 4 => match call.and_then(|c| h.e.call(c).map(|v| (c, v))) {
                    Some((c, v)) if !v.ringing.is_empty() => {
                        let a = v.ringing[rng.random_range(0..v.ringing.len())];
                        if rng.random_bool(0.5) {
                            Input::OfferAnswered { call: c, agent: a }
                        } else {
                            Input::OfferRejected { call: c, agent: a, cause: causes[rng.random_range(0..4)] }
                        }
                    }
                    _ => Input::AgentReady { agent },
                },
                5 => Input::CallEnded { call: call.unwrap_or(CallId(0)) },
                6 => Input::CallAbandoned { call: call.unwrap_or(CallId(0)) },
                7 => Input::AgentLogin { agent },
                8 => Input::AgentLogout { agent },
                9 => Input::AgentPause { agent, reason: "lunch".into() },
                10 => Input::AgentReady { agent },
                11 => Input::AgentRegistered { agent },
                12 => Input::AgentUnregistered { agent },
                _ => {
                    // Reloads change strategies, tiers and members, and
                    // sometimes remove or bring back agents a6, a7.
                    let n = rng.random_range(6..=8);
                    let toml = random_config(&mut rng, n);
                    let cfg = from_toml_str("new.toml", &format!("{SKILLS}\n{toml}")).expect("valid");
                    Input::ConfigReplaced(Box::new(cfg))
                }
            };
            // Inputs that do not fit the state are refused; that is fine here.
            let _ = h.input(now, input);
            if let Err(e) = h.e.verify_indexes() {
                panic!("seed {seed} step {step}: {e}");
            }
            offers += h.events.iter().filter(|e| matches!(e, Event::Offered { .. })).count();
            reloads += h.events.iter().filter(|e| matches!(e, Event::ConfigApplied { .. })).count();
            h.clear();
        }
    }
    assert!(offers > 1000 && reloads > 100, "too little exercised: {offers} offers, {reloads} reloads");
}

#[test]
fn a_member_missing_from_the_index_is_noticed() {
    let mut h = H::new(&format!("{}{}", queue("q", "linear", &["a", "b"], ""), agents(&["a", "b"])));
    h.e.verify_indexes().unwrap();
    h.e.queues[0].index.remove(1);
    assert!(h.e.verify_indexes().unwrap_err().contains("member 1"));
}

/// A stale key (here: b filed as idle since later than a) makes the walk
/// pick the wrong agent; the debug scan catches it at the offer.
#[test]
#[should_panic(expected = "a full scan picks")]
fn an_index_out_of_step_is_caught_at_the_offer() {
    let mut h = H::new(&format!("{}{}", queue("q", "longest-idle", &["a", "b"], ""), agents(&["a", "b"])));
    let a = h.a("a");
    h.input(10, Input::AgentLogout { agent: a }).unwrap();
    h.input(10, Input::AgentLogin { agent: a }).unwrap();
    let stale = index::Key { tier: 1, first: 0, idle: Time::from_secs(20), member: 1 };
    h.e.queues[0].index.insert(stale);
    h.call(11, 1, "q", 0);
}

#[test]
fn transfer_keeps_priority_and_place_ahead_of_later_callers_and_wraps_the_agent_up() {
    let mut h = H::new(&format!(
        "{}{}{}",
        queue("front", "linear", &["anna"], "wrap_up_secs = 30"),
        queue("tech", "linear", &["ben"], ""),
        agents(&["anna", "ben"])
    ));
    let ben = h.a("ben");
    h.input(0, Input::AgentPause { agent: ben, reason: "busy".into() }).unwrap();
    h.call(0, 10, "tech", 5); // joined tech before call 1 arrived anywhere
    h.call(1, 1, "front", 5);
    h.answer(2, 1, "anna");
    h.call(3, 2, "tech", 5); // same priority, later
    h.call(4, 3, "tech", 9); // a VIP still goes first
    h.clear();
    h.input(10, Input::TransferCall { call: CallId(1), queue: h.q("tech") }).unwrap();
    assert_eq!(
        h.e.waiting(h.q("tech")),
        vec![CallId(3), CallId(10), CallId(1), CallId(2)],
        "the transferred caller keeps priority 5 and its arrival, ahead of call 2"
    );
    assert_eq!(h.state("anna").name(), "wrap-up");
    assert!(h.events.contains(&Event::Transferred {
        call: CallId(1),
        from: h.q("front"),
        agent: h.a("anna"),
        to: TransferTarget::Queue(h.q("tech")),
        kind: TransferKind::Blind
    }));
    assert!(h.events.contains(&Event::CallQueued { call: CallId(1), queue: h.q("tech"), priority: 5, position: 3 }));
    assert!(h.actions.iter().any(|a| matches!(a, Action::StartHold { call: CallId(1), .. })));
    assert_eq!(h.e.call(CallId(1)).unwrap().state, "waiting");
    // Served in that order as ben frees up.
    h.clear();
    h.input(11, Input::AgentReady { agent: ben }).unwrap();
    assert_eq!(h.rings(), vec![(3, "ben".into())]);
    h.answer(12, 3, "ben");
    h.end(13, 3);
    h.input(14, Input::AgentReady { agent: ben }).unwrap();
    assert_eq!(h.rings(), vec![(10, "ben".into())]);
    h.answer(15, 10, "ben");
    h.end(16, 10);
    h.input(17, Input::AgentReady { agent: ben }).unwrap();
    assert_eq!(h.rings(), vec![(1, "ben".into())], "the transferred caller before call 2");
    h.answer(18, 1, "ben");
    h.end(19, 1);
    assert_eq!(h.outcome(1), Some(Outcome::Answered { agent: ben }));
}

#[test]
fn a_refused_transfer_changes_nothing() {
    let mut h = H::new(&format!(
        "{}{}{}{}",
        queue("front", "linear", &["anna"], ""),
        queue("full", "linear", &["ben"], "max_waiting = 1"),
        queue("empty", "linear", &["cai"], "when_no_agents = \"reject\""),
        agents(&["anna", "ben", "cai"])
    ));
    let (ben, cai) = (h.a("ben"), h.a("cai"));
    h.input(0, Input::AgentPause { agent: ben, reason: "x".into() }).unwrap();
    h.input(0, Input::AgentLogout { agent: cai }).unwrap();
    h.call(0, 2, "full", 0);
    h.call(1, 1, "front", 0);
    h.answer(2, 1, "anna");
    h.clear();
    let t = |h: &mut H, q: QueueId| h.input(3, Input::TransferCall { call: CallId(1), queue: q });
    let (full, empty) = (h.q("full"), h.q("empty"));
    assert_eq!(t(&mut h, full), Err(EngineError::QueueFull("full".into())));
    assert_eq!(t(&mut h, empty), Err(EngineError::NoAgents("empty".into())));
    assert_eq!(t(&mut h, QueueId(99)), Err(EngineError::UnknownQueue(QueueId(99))));
    assert_eq!(
        h.input(3, Input::TransferCall { call: CallId(2), queue: h.q("front") }),
        Err(EngineError::NotBridged(CallId(2))),
        "a waiting call is moved, not transferred"
    );
    assert!(h.actions.is_empty() && h.events.is_empty());
    assert_eq!(h.e.call(CallId(1)).unwrap().state, "bridged");
    assert_eq!(h.state("anna").name(), "on-call");
}

#[test]
fn transfer_to_an_agent_rings_them_while_the_call_stays_bridged_and_a_miss_changes_nothing() {
    let mut h = H::new(&format!(
        "{}{}",
        queue("front", "linear", &["anna"], "wrap_up_secs = 30\nring_timeout_secs = 10"),
        agents(&["anna", "ben", "cai"])
    ));
    let (anna, ben, cai) = (h.a("anna"), h.a("ben"), h.a("cai"));
    h.input(0, Input::AgentPause { agent: cai, reason: "x".into() }).unwrap();
    h.call(0, 1, "front", 0);
    h.answer(1, 1, "anna");
    h.clear();
    let xfer = |h: &mut H, secs, agent| h.input(secs, Input::TransferToAgent { call: CallId(1), agent });
    assert_eq!(xfer(&mut h, 2, cai), Err(EngineError::AgentNotFree(cai, "paused")));
    assert_eq!(xfer(&mut h, 2, anna), Err(EngineError::AgentNotFree(anna, "on this call")));
    // Ben does not answer: his ring times out, the call stays with anna.
    xfer(&mut h, 2, ben).unwrap();
    assert_eq!(h.rings(), vec![(1, "ben".into())]);
    assert_eq!(h.state("ben").name(), "ringing");
    assert_eq!(h.e.call(CallId(1)).unwrap().state, "bridged");
    assert_eq!(xfer(&mut h, 3, ben), Err(EngineError::TransferPending(CallId(1))));
    h.at(12);
    assert_eq!(h.cancels(), vec![(1, "ben".into())]);
    assert!(h.events.iter().any(|e| matches!(e, Event::RingNoAnswer { agent, .. } if *agent == ben)));
    assert_eq!(h.state("anna").name(), "on-call");
    assert_eq!(h.e.call(CallId(1)).unwrap().agent, Some(anna));
    // Later ben is free again and answers: the call is his, anna wraps up.
    h.input(100, Input::AgentReady { agent: ben }).unwrap();
    xfer(&mut h, 100, ben).unwrap();
    h.clear();
    h.answer(101, 1, "ben");
    assert!(h.actions.contains(&Action::Bridge { call: CallId(1), agent: ben }));
    assert!(h.events.contains(&Event::Transferred {
        call: CallId(1),
        from: h.q("front"),
        agent: anna,
        to: TransferTarget::Agent(ben),
        kind: TransferKind::Blind
    }));
    assert_eq!(h.state("anna").name(), "wrap-up");
    assert_eq!(h.state("ben").name(), "on-call");
    h.end(130, 1);
    assert_eq!(h.outcome(1), Some(Outcome::Answered { agent: ben }));
    assert_eq!(h.state("ben").name(), "wrap-up");
}

#[test]
fn a_call_ending_while_its_transfer_rings_withdraws_the_ring() {
    let mut h = H::new(&format!("{}{}", queue("front", "linear", &["anna"], ""), agents(&["anna", "ben"])));
    h.call(0, 1, "front", 0);
    h.answer(1, 1, "anna");
    let ben = h.a("ben");
    h.input(2, Input::TransferToAgent { call: CallId(1), agent: ben }).unwrap();
    h.clear();
    h.end(3, 1);
    assert_eq!(h.cancels(), vec![(1, "ben".into())]);
    assert_eq!(h.state("ben").name(), "available");
    assert_eq!(h.e.call_count(), 0);
    assert!(!h.e.timers.is_set(TimerKind::RingTimeout { call: CallId(1), agent: ben }));
}

mod announce;
