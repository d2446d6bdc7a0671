//! A waiting caller's keys ([`crate::engine::Input::CallerDigit`]): the exit key.
//!
//! ```text
//!   Waiting/Offering in q ── q's exit_key ──► Exited(q → target)
//!        target a queue, open with room: re-enters it like a transfer
//!            (keeps priority, arrival order and waited time), StartHold
//!        target a queue that cannot take it now: joins it as a new
//!            arrival, so that queue's own closed/full/empty rules apply
//!        target a SIP URI: Transfer (the caller is sent there), Finished
//!   any other key, or a call not waiting: nothing changes
//! ```
//!
//! What always holds: a key changes nothing unless it is the queue's exit
//! key; every exit is one `Exited` event before the call's next
//! `CallQueued` or `CallFinished`.

use super::Engine;
use crate::config::ExitTarget;
use crate::engine::{Action, CallId, EngineError, Event, Outcome};
use tracing::debug;

impl Engine {
    pub(super) fn caller_digit(&mut self, c: CallId, digit: char) -> Result<(), EngineError> {
        let call = self.waiting_call(c)?;
        let q = call.queue;
        let pad = &self.queues[q.0 as usize].cfg.keypad;
        if pad.exit_key == Some(digit) {
            if let Some(target) = pad.exit_target.clone() {
                self.exit(c, target);
            }
            return Ok(());
        }
        if pad.callback.as_ref().is_some_and(|cb| cb.key == Some(digit)) {
            self.callback_requested(c);
            return Ok(());
        }
        debug!(call = c.0, %digit, "key with no meaning in this queue");
        Ok(())
    }

    fn exit(&mut self, c: CallId, target: ExitTarget) {
        let from = self.calls[&c].queue;
        debug!(call = c.0, %target, "Queued => Exited");
        self.withdraw_all_rings(c);
        self.leave_line(c);
        self.dirty.insert(from);
        self.events.push_back(Event::Exited { call: c, from, to: target.to_string() });
        match target {
            ExitTarget::Uri(uri) => {
                self.stop_hold(c);
                self.actions.push_back(Action::Transfer { call: c, uri: uri.clone() });
                self.finish(c, Outcome::Overflowed { uri });
            }
            ExitTarget::Queue(name) => {
                let Some(&to) = self.queue_ids.get(&name) else {
                    // Removed by a reload since: the caller stays where it was.
                    self.join_queue(c, from);
                    return;
                };
                if self.takes_transfer(to).is_err() {
                    self.join_queue(c, to);
                    return;
                }
                self.requeue_keeping_place(c, to);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::from_toml_str;
    use crate::engine::*;

    const CONFIG: &str = r##"
[[agent]]
id = "anna"
[[agent]]
id = "ben"

[[queue]]
name = "sales"
members = [{ agent = "anna" }]
exit_key = "0"
exit_target = "2000"

[[queue]]
name = "tech"
members = [{ agent = "ben" }]
exit_key = "#"
exit_target = "sip:operator@pbx.example.com"

[[number]]
number = "1000"
queue = "sales"
[[number]]
number = "2000"
queue = "tech"
"##;

    struct H {
        e: Engine,
        actions: Vec<Action>,
        events: Vec<Event>,
    }

    impl H {
        fn new() -> H {
            let cfg = from_toml_str("test.toml", CONFIG).expect("valid");
            let mut h = H { e: Engine::new(&cfg, Time::ZERO), actions: vec![], events: vec![] };
            for a in h.e.agent_ids().collect::<Vec<_>>() {
                h.input(0, Input::AgentRegistered { agent: a }).unwrap();
            }
            h.actions.clear();
            h.events.clear();
            h
        }
        fn input(&mut self, secs: u64, input: Input) -> Result<(), EngineError> {
            let r = self.e.handle(Time::from_secs(secs), input);
            while let Some(a) = self.e.poll_action() {
                self.actions.push(a);
            }
            while let Some(ev) = self.e.poll_event() {
                self.events.push(ev);
            }
            r
        }
        fn call(&mut self, secs: u64, id: u64, queue: &str, priority: i32) {
            let nc = NewCall {
                id: CallId(id),
                queue: self.e.queue_id(queue).unwrap(),
                caller: format!("+35840{id}"),
                priority,
                skills: vec![],
                attributes: vec![],
            };
            self.input(secs, Input::CallArrived(nc)).unwrap();
        }
        fn key(&mut self, secs: u64, id: u64, digit: char) -> Result<(), EngineError> {
            self.input(secs, Input::CallerDigit { call: CallId(id), digit })
        }
        fn pause(&mut self, agent: &str) {
            let a = self.e.agent_id(agent).unwrap();
            self.input(0, Input::AgentPause { agent: a, reason: "lunch".into() }).unwrap();
        }
    }

    #[test]
    fn the_exit_key_takes_a_caller_to_the_target_queue_ahead_of_later_callers() {
        let mut h = H::new();
        h.pause("anna");
        h.pause("ben");
        let (sales, tech) = (h.e.queue_id("sales").unwrap(), h.e.queue_id("tech").unwrap());
        h.call(0, 1, "sales", 0);
        h.call(10, 2, "tech", 0); // joins tech after caller 1 joined sales
        h.actions.clear();
        h.events.clear();
        // Keys that are not the exit key change nothing.
        h.key(20, 1, '5').unwrap();
        h.key(20, 1, '#').unwrap(); // tech's exit key, not sales'
        assert!(h.actions.is_empty() && h.events.is_empty(), "{:?} {:?}", h.actions, h.events);
        h.key(30, 1, '0').unwrap();
        assert!(
            matches!(&h.events[0], Event::Exited { call: CallId(1), from, to } if *from == sales && to == "queue:tech"),
            "{:?}",
            h.events
        );
        assert!(matches!(h.events[1], Event::CallQueued { call: CallId(1), queue, position: 1, .. } if queue == tech));
        assert!(h
            .actions
            .iter()
            .any(|a| matches!(a, Action::StartHold { call: CallId(1), queue, .. } if *queue == tech)));
        assert_eq!(h.e.waiting(sales), vec![]);
        assert_eq!(h.e.waiting(tech), vec![CallId(1), CallId(2)], "keeps its place by arrival");
        // ben comes back: caller 1 is offered first and its wait counts from 0 s.
        h.actions.clear();
        h.events.clear();
        let ben = h.e.agent_id("ben").unwrap();
        h.input(40, Input::AgentReady { agent: ben }).unwrap();
        assert!(h.actions.iter().any(|a| matches!(a, Action::Ring { call: CallId(1), agent, .. } if *agent == ben)));
        h.input(41, Input::OfferAnswered { call: CallId(1), agent: ben }).unwrap();
        let waited = h.events.iter().find_map(|e| match e {
            Event::Answered { call: CallId(1), waited, .. } => Some(*waited),
            _ => None,
        });
        assert_eq!(waited, Some(std::time::Duration::from_secs(41)));
    }

    #[test]
    fn the_exit_key_to_a_uri_sends_the_caller_there_and_a_ringing_agent_is_released() {
        let mut h = H::new();
        h.call(0, 1, "tech", 0); // rings ben
        let ben = h.e.agent_id("ben").unwrap();
        assert!(h.actions.iter().any(|a| matches!(a, Action::Ring { agent, .. } if *agent == ben)));
        h.actions.clear();
        h.events.clear();
        h.key(5, 1, '#').unwrap();
        assert!(h.actions.iter().any(|a| matches!(a, Action::CancelRing { call: CallId(1), .. })));
        assert!(h
            .actions
            .iter()
            .any(|a| matches!(a, Action::Transfer { call: CallId(1), uri } if uri == "sip:operator@pbx.example.com")));
        assert!(h.events.iter().any(|e| matches!(e, Event::Exited { call: CallId(1), .. })));
        assert!(h.events.iter().any(|e| matches!(e, Event::CallFinished { call: CallId(1), .. })));
        assert_eq!(h.e.agent_state(ben).unwrap().name(), "available");
        // The call is gone: a late key is refused, nothing happens.
        h.actions.clear();
        assert_eq!(h.key(6, 1, '#'), Err(EngineError::UnknownCall(CallId(1))));
        assert!(h.actions.is_empty());
    }

    #[test]
    fn a_bridged_caller_pressing_the_exit_key_stays_with_its_agent() {
        let mut h = H::new();
        h.call(0, 1, "sales", 0);
        let anna = h.e.agent_id("anna").unwrap();
        h.input(1, Input::OfferAnswered { call: CallId(1), agent: anna }).unwrap();
        h.actions.clear();
        h.events.clear();
        assert_eq!(h.key(2, 1, '0'), Err(EngineError::NotWaiting(CallId(1))));
        assert!(h.actions.is_empty() && h.events.is_empty());
        assert_eq!(h.e.agent_state(anna).unwrap().name(), "on-call");
    }
}
