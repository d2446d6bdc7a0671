//! The closed action "offer callback" (`when_closed = "callback"`): a caller
//! reaching a closed queue (or sent on at closing with `at_close = "send"`)
//! is answered, told "We are closed. We will call you back when we open",
//! hung up, and waits in the queue as a callback that is offered to an
//! agent only while the queue is open.
//!
//! ```text
//!   send_closed(q) with target Callback ──► joins q's line as a new
//!     arrival (priority kept), Callback pending with `wait_open`;
//!     ConfirmCallback { closed: true } (call control answers the caller if
//!     it was not, plays the closed prompt, BYEs)
//!   q opens (its ScheduleEdge timer, or the emergency switch) ──► dirty:
//!     offered as any callback (initial delay, retries, give-up)
//! ```
//!
//! What always holds: a `wait_open` callback is never offered while its
//! queue is closed ([`Engine::callback_offerable`]), so no agent of the
//! closed queue is rung for it then.

use super::super::{CallState, Engine, Entry};
use super::Pending;
use crate::engine::{Action, CallId, CallbackStep, Event, QueueId};
use tracing::debug;

impl Engine {
    /// From `send_closed`: `c` (in no line) becomes a callback of closed
    /// queue `q`.
    pub(in crate::engine) fn closed_callback(&mut self, c: CallId, q: QueueId) {
        let Some(cfg) = self.queues[q.0 as usize].cfg.keypad.callback.clone() else {
            // Validation requires `callback_trunk` for this target.
            self.reject(c, 480);
            return;
        };
        self.withdraw_all_rings(c);
        self.seq += 1;
        let (now, seq) = (self.now, self.seq);
        let not_before = now.plus_secs(cfg.initial_delay_secs);
        let call = self.calls.get_mut(&c).expect("closed-queue call exists");
        debug!(call = c.0, "Closed => CallbackPending (when the queue opens)");
        call.queue = q;
        call.entered = now;
        call.joined = now;
        call.seq = seq;
        call.state = CallState::Waiting;
        // No StopHold: a caller who waited hears the prompt over its music.
        call.on_hold = false;
        call.callback = Some(Pending { not_before, failed: 0, dialling: false, wait_open: true });
        let priority = call.priority;
        self.queues[q.0 as usize].line.insert(priority, seq, Entry { call: c, entered: now });
        self.actions.push_back(Action::ConfirmCallback { call: c, closed: true });
        self.events.push_back(Event::Callback { call: c, queue: q, step: CallbackStep::Requested });
        self.arm_call_timers(c, false);
        self.dirty.insert(q);
    }
}

#[cfg(test)]
mod tests {
    //! Engine time 0 is Fri 2026-10-23 07:00 in Helsinki (04:00Z); the
    //! office opens at 08:00 local, i.e. at t = 3600 s.
    use crate::config::from_toml_str;
    use crate::engine::*;

    const T0_UNIX_MS: i64 = 1_792_728_000_000;
    const CONFIG: &str = r#"
[schedule.office]
time_zone = "Europe/Helsinki"
hours = ["mon-fri 08:00-18:00"]

[[agent]]
id = "anna"

[[queue]]
name = "front"
members = [{ agent = "anna" }]
schedule = "office"
when_closed = "callback"
callback_trunk = "127.0.0.1:5099"
"#;

    struct W {
        e: Engine,
        actions: Vec<Action>,
        events: Vec<Event>,
    }

    impl W {
        fn input(&mut self, secs: u64, i: Input) {
            self.e.handle(Time::from_secs(secs), i).unwrap();
            self.pump();
        }
        fn at(&mut self, secs: u64) {
            self.e.handle_timeout(Time::from_secs(secs)).unwrap();
            self.pump();
        }
        fn pump(&mut self) {
            self.actions.extend(std::iter::from_fn(|| self.e.poll_action()));
            self.events.extend(std::iter::from_fn(|| self.e.poll_event()));
        }
        fn call(&mut self, secs: u64, id: u64) {
            let queue = self.e.queue_id("front").unwrap();
            let nc = NewCall {
                id: CallId(id),
                queue,
                caller: format!("+35840{id}"),
                priority: 0,
                skills: vec![],
                attributes: vec![],
            };
            self.input(secs, Input::CallArrived(nc));
        }
        fn rings(&self) -> Vec<CallId> {
            self.actions
                .iter()
                .filter_map(|a| match a {
                    Action::Ring { call, .. } => Some(*call),
                    _ => None,
                })
                .collect()
        }
    }

    #[test]
    fn a_caller_of_a_closed_queue_is_called_back_once_it_opens_and_not_before() {
        let cfg = from_toml_str("t.toml", CONFIG).unwrap();
        let mut w = W { e: Engine::new(&cfg, Time::ZERO), actions: vec![], events: vec![] };
        w.e.set_wall_clock(T0_UNIX_MS);
        let anna = w.e.agent_id("anna").unwrap();
        w.input(0, Input::AgentRegistered { agent: anna });
        let front = w.e.queue_id("front").unwrap();
        assert!(!w.e.queue_open(front));
        w.actions.clear();
        w.events.clear();
        // 07:10: answered, told, hung up; kept as a callback.
        w.call(600, 1);
        assert_eq!(w.actions, vec![Action::ConfirmCallback { call: CallId(1), closed: true }]);
        assert!(w.events.iter().any(|e| matches!(e, Event::Overflowed { call: CallId(1), to, reason: OverflowReason::Closed, .. } if to == "callback")));
        assert!(w
            .events
            .iter()
            .any(|e| matches!(e, Event::Callback { call: CallId(1), step: CallbackStep::Requested, .. })));
        assert_eq!(w.e.callbacks_pending(front), 1);
        // anna is available and registered the whole time: never rung while closed.
        w.call(1200, 2);
        w.at(3599);
        assert!(w.rings().is_empty(), "{:?}", w.actions);
        assert_eq!(w.e.agent_state(anna).unwrap().name(), "available");
        assert_eq!(w.e.waiting(front), vec![CallId(1), CallId(2)], "in arrival order");
        // 08:00: open; the first callback rings anna, then the customer is dialled.
        w.actions.clear();
        w.at(3600);
        assert!(w.e.queue_open(front));
        assert_eq!(w.rings(), vec![CallId(1)]);
        w.actions.clear();
        w.input(3605, Input::OfferAnswered { call: CallId(1), agent: anna });
        assert!(w.actions.iter().any(|a| matches!(a, Action::DialCallback { call: CallId(1), attempt: 1, .. })));
        w.input(3610, Input::CallbackAnswered { call: CallId(1) });
        assert!(w.actions.contains(&Action::Bridge { call: CallId(1), agent: anna }));
        assert_eq!(w.e.callbacks_pending(front), 1, "the second waits its turn");
    }

    #[test]
    fn a_failed_dial_after_closing_waits_for_the_next_opening() {
        let cfg = from_toml_str("t.toml", CONFIG).unwrap();
        let mut w = W { e: Engine::new(&cfg, Time::ZERO), actions: vec![], events: vec![] };
        w.e.set_wall_clock(T0_UNIX_MS);
        let anna = w.e.agent_id("anna").unwrap();
        w.input(0, Input::AgentRegistered { agent: anna });
        w.call(600, 1);
        // Open 08:00-18:00: dialled at 17:59:30, busy; the retry (60 s) falls after closing.
        w.at(3600);
        w.input(3601, Input::OfferAnswered { call: CallId(1), agent: anna });
        let close = 3600 + 10 * 3600;
        w.input(3602, Input::CallbackFailed { call: CallId(1), cause: RejectCause::Busy });
        w.actions.clear();
        w.at(3602 + 60);
        assert_eq!(w.rings(), vec![CallId(1)], "open: retried after its delay");
        w.input(3663, Input::OfferAnswered { call: CallId(1), agent: anna });
        w.input(close - 10, Input::CallbackFailed { call: CallId(1), cause: RejectCause::Busy });
        w.actions.clear();
        w.at(close + 600);
        assert!(w.rings().is_empty(), "closed: the retry waits for Monday");
        // Monday 08:00 local (EET after the DST change) = 06:00Z.
        let monday = (1_792_735_200_000i64 + 3 * 86_400_000 - T0_UNIX_MS) as u64 / 1000;
        w.at(monday - 1);
        assert!(w.rings().is_empty());
        w.at(monday);
        assert_eq!(w.rings(), vec![CallId(1)]);
    }
}
