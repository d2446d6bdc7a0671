//! The automatic callback offer (`callback_offer_after_secs`, Cisco's
//! courtesy callback): a waiting caller is told once "to keep your place
//! and be called back, press <key>", then the key works as always.
//!
//! ```text
//!   joins a queue with an offer (callback key, offer_after_secs > 0):
//!     estimated wait (the announcements' EWT) > offer_after_secs ──► offered now
//!     else a CallbackOffer timer at entered + offer_after_secs ──► offered then
//!   offered: Action::OfferCallback + Event::Callback(Offered); never again
//!     for this call (not after a transfer or a reload either)
//! ```
//!
//! What always holds: an offer is made only to a call waiting in the line
//! (waiting or being rung), not a callback already, at most once per call.

use super::super::{CallState, Engine};
use crate::engine::{Action, CallId, CallbackStep, Event, TimerKind};
use tracing::debug;

impl Engine {
    /// From `arm_call_timers` of a waiting call (not a callback): arms or
    /// cancels its offer timer from the queue's settings; `joined`: it just
    /// joined, so its estimated wait decides whether to offer at once.
    pub(in crate::engine) fn arm_callback_offer(&mut self, c: CallId, joined: bool) {
        let call = &self.calls[&c];
        let cb = self.queues[call.queue.0 as usize].cfg.keypad.callback.as_ref();
        let after = cb.filter(|cb| cb.key.is_some() && cb.offer_after_secs > 0).map(|cb| cb.offer_after_secs);
        let Some(after) = after.filter(|_| !call.callback_offered && call.callback.is_none()) else {
            self.timers.cancel(TimerKind::CallbackOffer(c));
            return;
        };
        let at = call.entered.plus_secs(after).max(self.now);
        if joined {
            let (_, ewt) = self.estimated_wait(c, self.now);
            if ewt > after {
                debug!(call = c.0, ewt, after, "estimated wait past the callback offer");
                self.offer_callback_now(c);
                return;
            }
            self.timers.set(TimerKind::CallbackOffer(c), at);
        } else if !self.timers.is_set(TimerKind::CallbackOffer(c)) {
            self.timers.set(TimerKind::CallbackOffer(c), at);
        }
    }

    /// The offer timer: the caller has waited `offer_after_secs`.
    pub(in crate::engine) fn fire_callback_offer(&mut self, c: CallId) {
        let Some(call) = self.calls.get(&c) else { return };
        if matches!(call.state, CallState::Waiting | CallState::Offering)
            && call.callback.is_none()
            && !call.callback_offered
        {
            self.offer_callback_now(c);
        }
    }

    fn offer_callback_now(&mut self, c: CallId) {
        let call = self.calls.get_mut(&c).expect("offered call exists");
        let q = call.queue;
        let Some(key) = self.queues[q.0 as usize].cfg.keypad.callback.as_ref().and_then(|cb| cb.key) else { return };
        call.callback_offered = true;
        self.timers.cancel(TimerKind::CallbackOffer(c));
        debug!(call = c.0, %key, "callback offered");
        self.actions.push_back(Action::OfferCallback { call: c, key });
        self.events.push_back(Event::Callback { call: c, queue: q, step: CallbackStep::Offered });
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, H};
    use crate::engine::*;

    /// `sales` offers callback past `after` seconds; `tech` does not.
    fn h(after: u32) -> H {
        let mut cfg = config(0, 3, 60);
        let q = cfg.queues.iter_mut().find(|q| q.name == "sales").unwrap();
        q.keypad.callback.as_mut().unwrap().offer_after_secs = after;
        H::new(&cfg)
    }

    fn offers(h: &H) -> Vec<CallId> {
        h.actions
            .iter()
            .filter_map(|a| match a {
                Action::OfferCallback { call, key: '*' } => Some(*call),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_caller_who_waited_that_long_is_offered_once_and_the_key_then_works() {
        let mut h = h(60);
        h.pause(0, "anna");
        h.pause(0, "ben");
        h.call(0, 1, "sales");
        h.call(0, 2, "tech");
        h.call(30, 3, "sales");
        // No handled call yet: no estimate, so nobody is offered on joining.
        assert!(offers(&h).is_empty(), "{:?}", h.actions);
        h.clear();
        h.tick(59);
        assert!(offers(&h).is_empty());
        h.tick(60);
        assert_eq!(offers(&h), vec![CallId(1)]);
        assert_eq!(h.steps(), vec![CallbackStep::Offered]);
        h.clear();
        h.tick(90);
        assert_eq!(offers(&h), vec![CallId(3)], "each caller at its own 60 s; tech never");
        h.clear();
        h.tick(3600);
        assert!(offers(&h).is_empty(), "once per caller");
        h.input(3601, Input::CallerDigit { call: CallId(1), digit: '*' }).unwrap();
        assert!(h.e.is_callback(CallId(1)));
        assert!(h.actions.contains(&Action::ConfirmCallback { call: CallId(1), closed: false }));
    }

    #[test]
    fn a_long_estimated_wait_offers_on_joining_and_an_answered_caller_is_not_offered() {
        let mut h = h(120);
        let anna = h.agent("anna");
        h.pause(0, "ben");
        // One handled call teaches the queue its handle time: 600 s of talk
        // plus 30 s of wrap-up.
        h.call(0, 1, "sales");
        h.input(1, Input::OfferAnswered { call: CallId(1), agent: anna }).unwrap();
        h.input(601, Input::CallEnded { call: CallId(1) }).unwrap();
        h.pause(602, "anna");
        h.clear();
        // Place 1 × 630 s over 2 logged-in members = 315 s > 120 s: offered at once.
        h.call(610, 2, "sales");
        assert_eq!(offers(&h), vec![CallId(2)]);
        h.clear();
        h.tick(610 + 120);
        assert!(offers(&h).is_empty(), "not twice");
    }

    #[test]
    fn a_caller_answered_before_its_time_is_never_offered() {
        let mut h = h(60);
        h.pause(0, "ben");
        let anna = h.agent("anna");
        h.call(0, 1, "sales");
        assert_eq!(h.rung(1), Some(anna));
        h.input(50, Input::OfferAnswered { call: CallId(1), agent: anna }).unwrap();
        h.clear();
        h.tick(3600);
        assert!(offers(&h).is_empty(), "{:?}", h.actions);
    }
}
