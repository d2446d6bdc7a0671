//! Callback scenarios on the virtual clock.

use crate::config::{from_toml_str, CallbackConfig, Config};
use crate::engine::*;
use std::time::Duration;

const CONFIG: &str = r##"
[[agent]]
id = "anna"
[[agent]]
id = "ben"

[[queue]]
name = "sales"
members = [{ agent = "anna" }, { agent = "ben" }]
wrap_up_secs = 30
overflow = "queue:tech"

[[queue]]
name = "tech"
members = [{ agent = "ben" }]
"##;

/// The config with callback on in "sales" (set on the validated tree: the
/// config reader refuses `callback_key` until the shell dials callbacks).
pub(super) fn config(initial: u32, max_attempts: u32, retry: u32) -> Config {
    let mut cfg = from_toml_str("test.toml", CONFIG).expect("valid");
    let q = cfg.queues.iter_mut().find(|q| q.name == "sales").unwrap();
    q.keypad.callback = Some(CallbackConfig {
        key: Some('*'),
        offer_after_secs: 0,
        trunk: "127.0.0.1:5099".into(),
        initial_delay_secs: initial,
        max_attempts,
        retry_delay_secs: retry,
        whisper: None,
        whisper_ms: 0,
    });
    cfg
}

pub(super) struct H {
    pub(super) e: Engine,
    pub(super) actions: Vec<Action>,
    pub(super) events: Vec<Event>,
}

impl H {
    pub(super) fn new(cfg: &Config) -> H {
        let mut h = H { e: Engine::new(cfg, Time::ZERO), actions: vec![], events: vec![] };
        for a in h.e.agent_ids().collect::<Vec<_>>() {
            h.input(0, Input::AgentRegistered { agent: a }).unwrap();
        }
        h.clear();
        h
    }
    pub(super) fn clear(&mut self) {
        self.actions.clear();
        self.events.clear();
    }
    pub(super) fn input(&mut self, secs: u64, input: Input) -> Result<(), EngineError> {
        let r = self.e.handle(Time::from_secs(secs), input);
        self.drain();
        r
    }
    pub(super) fn tick(&mut self, secs: u64) {
        self.e.handle_timeout(Time::from_secs(secs)).unwrap();
        self.drain();
    }
    pub(super) fn drain(&mut self) {
        while let Some(a) = self.e.poll_action() {
            self.actions.push(a);
        }
        while let Some(ev) = self.e.poll_event() {
            self.events.push(ev);
        }
    }
    pub(super) fn agent(&self, name: &str) -> AgentId {
        self.e.agent_id(name).unwrap()
    }
    pub(super) fn call(&mut self, secs: u64, id: u64, queue: &str) {
        let nc = NewCall {
            id: CallId(id),
            queue: self.e.queue_id(queue).unwrap(),
            caller: format!("+35840{id}"),
            priority: 0,
            skills: vec![],
            attributes: vec![],
        };
        self.input(secs, Input::CallArrived(nc)).unwrap();
    }
    pub(super) fn pause(&mut self, secs: u64, agent: &str) {
        let a = self.agent(agent);
        self.input(secs, Input::AgentPause { agent: a, reason: "lunch".into() }).unwrap();
    }
    pub(super) fn ready(&mut self, secs: u64, agent: &str) {
        let a = self.agent(agent);
        self.input(secs, Input::AgentReady { agent: a }).unwrap();
    }
    pub(super) fn rung(&self, call: u64) -> Option<AgentId> {
        self.actions.iter().find_map(|a| match a {
            Action::Ring { call: c, agent, .. } if c.0 == call => Some(*agent),
            _ => None,
        })
    }
    pub(super) fn steps(&self) -> Vec<CallbackStep> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Callback { step, .. } => Some(*step),
                _ => None,
            })
            .collect()
    }
    pub(super) fn dialled(&self, call: u64) -> Option<(AgentId, String, u32)> {
        self.actions.iter().find_map(|a| match a {
            Action::DialCallback { call: c, agent, trunk, attempt } if c.0 == call => {
                Some((*agent, trunk.clone(), *attempt))
            }
            _ => None,
        })
    }
}

#[test]
fn a_callback_keeps_its_place_rings_an_agent_dials_the_customer_and_bridges() {
    let mut h = H::new(&config(0, 3, 60));
    h.pause(0, "anna");
    h.pause(0, "ben");
    let sales = h.e.queue_id("sales").unwrap();
    h.call(0, 1, "sales");
    h.call(10, 2, "sales");
    h.clear();
    // Another key does nothing; the callback key confirms and keeps the call.
    h.input(20, Input::CallerDigit { call: CallId(1), digit: '5' }).unwrap();
    assert!(h.actions.is_empty() && h.events.is_empty());
    h.input(20, Input::CallerDigit { call: CallId(1), digit: '*' }).unwrap();
    assert_eq!(h.actions, vec![Action::ConfirmCallback { call: CallId(1), closed: false }]);
    assert_eq!(h.steps(), vec![CallbackStep::Requested]);
    assert_eq!(h.e.callbacks_pending(sales), 1);
    assert_eq!(h.e.waiting(sales), vec![CallId(1), CallId(2)], "still first in line");
    // The caller's leg is gone: its hang-up is no abandon.
    h.clear();
    h.input(21, Input::CallAbandoned { call: CallId(1) }).unwrap();
    assert!(h.events.is_empty(), "{:?}", h.events);
    assert!(h.e.is_callback(CallId(1)));
    // No max wait, no announcements: an hour passes without a word to it.
    h.tick(3600);
    assert!(h.actions.is_empty(), "{:?}", h.actions);
    // anna comes back: the callback (first in line) rings her as any call.
    h.ready(3600, "anna");
    let anna = h.agent("anna");
    assert_eq!(h.rung(1), Some(anna));
    assert_eq!(h.rung(2), None);
    h.clear();
    h.input(3605, Input::OfferAnswered { call: CallId(1), agent: anna }).unwrap();
    assert_eq!(h.dialled(1), Some((anna, "127.0.0.1:5099".into(), 1)));
    assert!(!h.actions.iter().any(|a| matches!(a, Action::Bridge { .. })), "not bridged before the customer answers");
    assert!(!h.events.iter().any(|e| matches!(e, Event::Answered { .. })));
    assert_eq!(h.e.agent_state(anna).unwrap().name(), "on-call");
    h.clear();
    h.input(3612, Input::CallbackAnswered { call: CallId(1) }).unwrap();
    assert_eq!(h.actions, vec![Action::Bridge { call: CallId(1), agent: anna }]);
    assert_eq!(h.steps(), vec![CallbackStep::Connected { agent: anna, attempt: 1 }]);
    assert!(h.events.iter().any(|e| matches!(e, Event::Answered { call: CallId(1), waited, .. }
        if *waited == Duration::from_secs(3612))));
    assert_eq!(h.e.callbacks_pending(sales), 0);
    // From here an ordinary call: its end sends anna to wrap-up.
    h.clear();
    h.input(3700, Input::CallEnded { call: CallId(1) }).unwrap();
    assert!(h
        .events
        .iter()
        .any(|e| matches!(e, Event::CallFinished { call: CallId(1), outcome: Outcome::Answered { .. }, .. })));
    assert_eq!(h.e.agent_state(anna).unwrap().name(), "wrap-up");
}

#[test]
fn a_ringing_agent_is_released_when_the_caller_asks_for_a_callback_and_the_initial_delay_holds_it() {
    let mut h = H::new(&config(120, 3, 60));
    h.pause(0, "ben");
    h.call(0, 1, "sales");
    let anna = h.agent("anna");
    assert_eq!(h.rung(1), Some(anna));
    h.clear();
    h.input(5, Input::CallerDigit { call: CallId(1), digit: '*' }).unwrap();
    assert!(h.actions.contains(&Action::CancelRing { call: CallId(1), agent: anna }));
    assert_eq!(h.e.agent_state(anna).unwrap().name(), "available");
    assert_eq!(h.rung(1), None, "not offered before the initial delay");
    // A later caller is served meanwhile.
    h.call(30, 2, "sales");
    assert_eq!(h.rung(2), Some(anna));
    h.input(31, Input::OfferAnswered { call: CallId(2), agent: anna }).unwrap();
    h.ready(40, "ben");
    h.clear();
    h.tick(124);
    assert_eq!(h.rung(1), None);
    h.tick(125);
    assert_eq!(h.rung(1), Some(h.agent("ben")), "offered at 5 + 120 s");
}

#[test]
fn a_failed_dial_releases_the_agent_and_retries_after_the_delay_then_gives_up() {
    let mut h = H::new(&config(0, 2, 60));
    h.pause(0, "ben");
    let (anna, sales) = (h.agent("anna"), h.e.queue_id("sales").unwrap());
    h.pause(0, "anna");
    h.call(0, 1, "sales");
    h.input(1, Input::CallerDigit { call: CallId(1), digit: '*' }).unwrap();
    h.call(2, 2, "sales");
    h.ready(10, "anna");
    assert_eq!(h.rung(1), Some(anna), "the callback is ahead of caller 2");
    h.input(11, Input::OfferAnswered { call: CallId(1), agent: anna }).unwrap();
    h.clear();
    h.input(20, Input::CallbackFailed { call: CallId(1), cause: RejectCause::Busy }).unwrap();
    assert_eq!(h.steps(), vec![CallbackStep::Failed { attempt: 1, reason: "busy" }]);
    assert_eq!(h.e.agent_state(anna).unwrap().name(), "ringing", "anna is free and rung for caller 2 at once");
    assert_eq!(h.rung(2), Some(anna), "caller 2 next, the callback waits its retry delay");
    assert_eq!(h.e.waiting(sales), vec![CallId(1), CallId(2)], "back in its old place");
    h.input(21, Input::OfferAnswered { call: CallId(2), agent: anna }).unwrap();
    h.input(25, Input::CallEnded { call: CallId(2) }).unwrap(); // anna: wrap-up 30 s
    h.ready(26, "ben");
    h.clear();
    h.tick(79);
    assert_eq!(h.rung(1), None);
    h.tick(80);
    let ben = h.agent("ben");
    assert_eq!(h.rung(1), Some(ben), "offered again at 20 + 60 s");
    h.input(81, Input::OfferAnswered { call: CallId(1), agent: ben }).unwrap();
    assert_eq!(h.dialled(1).map(|d| d.2), Some(2));
    h.clear();
    h.input(90, Input::CallbackFailed { call: CallId(1), cause: RejectCause::NoAnswer }).unwrap();
    assert_eq!(
        h.steps(),
        vec![CallbackStep::Failed { attempt: 2, reason: "no-answer" }, CallbackStep::GivenUp { attempts: 2 }]
    );
    assert!(h.events.iter().any(|e| matches!(e, Event::CallFinished { call: CallId(1),
        outcome: Outcome::CallbackFailed { attempts: 2 }, waited, .. } if *waited == Duration::from_secs(90))));
    assert_eq!(h.e.agent_state(ben).unwrap().name(), "available", "no wrap-up after a dial nobody answered");
    assert_eq!(h.e.callbacks_pending(sales), 0);
    assert_eq!(h.e.waiting(sales), vec![]);
    assert_eq!(h.e.timer_count(), 0, "{:?}", h.e.poll_timeout());
}

#[test]
fn the_agent_hanging_up_before_the_customer_answers_is_a_failed_attempt() {
    let mut h = H::new(&config(0, 3, 30));
    h.pause(0, "ben");
    let anna = h.agent("anna");
    h.pause(0, "anna");
    h.call(0, 1, "sales");
    h.input(1, Input::CallerDigit { call: CallId(1), digit: '*' }).unwrap();
    h.ready(2, "anna");
    h.input(3, Input::OfferAnswered { call: CallId(1), agent: anna }).unwrap();
    h.clear();
    h.input(4, Input::CallEnded { call: CallId(1) }).unwrap();
    assert_eq!(h.steps(), vec![CallbackStep::Failed { attempt: 1, reason: "agent-left" }]);
    assert!(h.e.is_callback(CallId(1)));
    assert_eq!(h.e.agent_state(anna).unwrap().name(), "available");
    // Answers for a callback not being dialled are refused.
    assert_eq!(h.input(5, Input::CallbackAnswered { call: CallId(1) }), Err(EngineError::NotDialling(CallId(1))));
    h.tick(34);
    assert_eq!(h.rung(1), Some(anna));
}

#[test]
fn a_reload_keeps_pending_callbacks_and_a_removed_queue_keeps_serving_them() {
    let cfg = config(0, 3, 60);
    let mut h = H::new(&cfg);
    h.pause(0, "anna");
    h.pause(0, "ben");
    let sales = h.e.queue_id("sales").unwrap();
    h.call(0, 1, "sales");
    h.input(1, Input::CallerDigit { call: CallId(1), digit: '*' }).unwrap();
    h.call(2, 2, "sales");
    // Same config again: still pending, still first.
    h.clear();
    h.input(10, Input::ConfigReplaced(Box::new(cfg.clone()))).unwrap();
    assert!(!h
        .actions
        .iter()
        .any(|a| matches!(a, Action::StartHold { call: CallId(1), .. } | Action::Announce { .. })));
    assert_eq!(h.e.callbacks_pending(sales), 1);
    assert_eq!(h.e.waiting(sales), vec![CallId(1), CallId(2)]);
    // "sales" removed: its callers overflow to "tech" (the default
    // `removed_queue_callers`), but the callback has no caller leg to send
    // anywhere; it stays in the closed queue, served by its last members.
    let mut smaller = cfg.clone();
    smaller.queues.retain(|q| q.name != "sales");
    smaller.numbers.retain(|n| n.queue != "sales");
    h.clear();
    h.input(20, Input::ConfigReplaced(Box::new(smaller))).unwrap();
    assert!(h.e.is_callback(CallId(1)));
    assert_eq!(h.e.call(CallId(1)).map(|v| v.queue), Some(sales));
    assert_eq!(h.e.call(CallId(2)).map(|v| v.queue), h.e.queue_id("tech"), "the ordinary caller overflowed");
    assert!(!h
        .actions
        .iter()
        .any(|a| matches!(a, Action::Transfer { call: CallId(1), .. } | Action::Reject { call: CallId(1), .. })));
    h.ready(30, "anna");
    assert_eq!(h.rung(1), Some(h.agent("anna")));
}

#[test]
fn drain_reports_pending_callbacks_as_lost() {
    let mut h = H::new(&config(0, 3, 60));
    h.pause(0, "anna");
    h.pause(0, "ben");
    let sales = h.e.queue_id("sales").unwrap();
    h.call(0, 1, "sales");
    h.input(1, Input::CallerDigit { call: CallId(1), digit: '*' }).unwrap();
    h.clear();
    h.input(5, Input::Drain).unwrap();
    assert_eq!(h.steps(), vec![CallbackStep::Lost]);
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::CallFinished { call: CallId(1), outcome: Outcome::CallbackFailed { attempts: 0 }, .. }
    )));
    assert!(h.actions.is_empty(), "nothing to send to a caller who is gone: {:?}", h.actions);
    assert_eq!(h.e.callbacks_pending(sales), 0);
}

#[test]
fn a_closing_queue_keeps_its_callbacks_and_a_callback_cannot_be_moved() {
    let mut cfg = config(0, 3, 60);
    // Every caller left in "sales" goes to "tech" when nobody is logged in.
    let sales_cfg = cfg.queues.iter_mut().find(|q| q.name == "sales").unwrap();
    sales_cfg.leave_when_empty = true;
    sales_cfg.when_no_agents = crate::config::WhenNoAgents::Overflow;
    let mut h = H::new(&cfg);
    let sales = h.e.queue_id("sales").unwrap();
    let tech = h.e.queue_id("tech").unwrap();
    h.pause(0, "anna");
    h.pause(0, "ben");
    h.call(0, 1, "sales");
    h.input(1, Input::CallerDigit { call: CallId(1), digit: '*' }).unwrap();
    h.call(2, 2, "sales");
    assert_eq!(h.input(3, Input::MoveCall { call: CallId(1), queue: tech }), Err(EngineError::IsCallback(CallId(1))));
    h.clear();
    for a in ["anna", "ben"] {
        let a = h.agent(a);
        h.input(4, Input::AgentLogout { agent: a }).unwrap();
    }
    assert_eq!(h.e.call(CallId(2)).map(|v| v.queue), Some(tech), "the ordinary caller left the empty queue");
    assert_eq!(h.e.call(CallId(1)).map(|v| v.queue), Some(sales), "the callback stays");
    assert!(!h.actions.iter().any(|a| matches!(a, Action::StartHold { call: CallId(1), .. })));
}

#[test]
fn a_queue_without_callback_ignores_the_key() {
    let mut h = H::new(&config(0, 3, 60));
    h.pause(0, "ben");
    h.call(0, 1, "tech");
    h.clear();
    h.input(1, Input::CallerDigit { call: CallId(1), digit: '*' }).unwrap();
    assert!(h.actions.is_empty() && h.events.is_empty());
    assert!(!h.e.is_callback(CallId(1)));
}

/// `sales` with a whisper of `ms` (the queue's own file `w.wav`).
fn with_whisper(ms: u32) -> Config {
    let mut cfg = config(0, 3, 30);
    let q = cfg.queues.iter_mut().find(|q| q.name == "sales").unwrap();
    let cb = q.keypad.callback.as_mut().unwrap();
    cb.whisper = Some("w.wav".into());
    cb.whisper_ms = ms;
    cfg
}

#[test]
fn the_agent_hears_the_whisper_before_the_customer_is_dialled() {
    let mut h = H::new(&with_whisper(2500));
    h.pause(0, "ben");
    h.pause(0, "anna");
    h.call(0, 1, "sales");
    h.input(5, Input::CallerDigit { call: CallId(1), digit: '*' }).unwrap();
    h.ready(10, "anna");
    let anna = h.agent("anna");
    assert_eq!(h.rung(1), Some(anna));
    h.clear();
    h.input(12, Input::OfferAnswered { call: CallId(1), agent: anna }).unwrap();
    assert_eq!(h.actions, vec![Action::CallbackWhisper { call: CallId(1), agent: anna, file: Some("w.wav".into()) }]);
    assert_eq!(h.steps(), vec![CallbackStep::Attempt { agent: anna, attempt: 1 }]);
    h.clear();
    h.e.handle_timeout(Time::from_millis(14_499)).unwrap();
    h.drain();
    assert_eq!(h.dialled(1), None, "not while the whisper plays");
    h.e.handle_timeout(Time::from_millis(14_500)).unwrap();
    h.drain();
    assert_eq!(h.dialled(1), Some((anna, "127.0.0.1:5099".into(), 1)), "dialled as the whisper ends");
    assert!(h.steps().is_empty(), "one attempt event, at the answer");
    h.clear();
    h.input(20, Input::CallbackAnswered { call: CallId(1) }).unwrap();
    assert_eq!(h.actions, vec![Action::Bridge { call: CallId(1), agent: anna }]);
}

#[test]
fn an_agent_hanging_up_during_the_whisper_is_a_failed_attempt_and_nobody_is_dialled() {
    let mut h = H::new(&with_whisper(3000));
    h.pause(0, "ben");
    h.call(0, 1, "sales");
    let anna = h.agent("anna");
    assert_eq!(h.rung(1), Some(anna));
    h.input(1, Input::CallerDigit { call: CallId(1), digit: '*' }).unwrap();
    h.tick(2); // rung again once the key withdrew the first ring
    h.input(3, Input::OfferAnswered { call: CallId(1), agent: anna }).unwrap();
    assert!(h.actions.iter().any(|a| matches!(a, Action::CallbackWhisper { .. })));
    h.clear();
    h.input(4, Input::CallEnded { call: CallId(1) }).unwrap();
    assert_eq!(h.steps(), vec![CallbackStep::Failed { attempt: 1, reason: "agent-left" }]);
    assert_eq!(h.e.agent_state(anna).unwrap().name(), "available");
    h.tick(10);
    assert_eq!(h.dialled(1), None, "the whisper's dial timer went with the attempt");
    assert!(h.e.is_callback(CallId(1)), "kept for its retry");
}
