//! Timers as data: one enum of timer kinds and one table.
//!
//! The shell owns a single sleep until [`Timers::next`]; nothing here spawns.
//! Each kind exists at most once in the table (setting it again moves it), so
//! a stale timer can never fire for a state that has moved on: every state
//! change that ends the reason for a timer cancels it.

use super::time::Time;
use super::{AgentId, CallId, QueueId};
use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKind {
    /// The agent's phone has rung for the queue's ring timeout.
    RingTimeout { call: CallId, agent: AgentId },
    /// Wrap-up is over: the agent becomes available.
    WrapUpEnd(AgentId),
    /// The agent's back-off after a missed offer is over.
    BackoffEnd(AgentId),
    /// The call reaches its next relaxation step or tier opening.
    CallStep(CallId),
    /// The call has waited the queue's maximum: overflow.
    MaxWait(CallId),
    /// Time for the next position announcement.
    Announce(CallId),
    /// Time for the queue's next periodic announcement to this caller.
    PeriodicAnnounce(CallId),
    /// The queue's schedule opens or closes it now.
    ScheduleEdge(QueueId),
    /// A pending callback may be offered from now (initial or retry delay).
    CallbackDue(CallId),
    /// The agent's callback whisper is over: dial the customer.
    CallbackDial(CallId),
    /// Offer a callback to the waiting caller (`callback_offer_after_secs`).
    CallbackOffer(CallId),
    /// The closed queue's prompt is over: carry out its `when_closed`.
    ClosedPrompt(CallId),
}

#[derive(Debug, Default)]
pub struct Timers {
    by_time: BTreeSet<(Time, TimerKind)>,
    when: HashMap<TimerKind, Time>,
}

impl Timers {
    pub fn set(&mut self, kind: TimerKind, at: Time) {
        if let Some(old) = self.when.insert(kind, at) {
            self.by_time.remove(&(old, kind));
        }
        self.by_time.insert((at, kind));
    }

    pub fn cancel(&mut self, kind: TimerKind) {
        if let Some(old) = self.when.remove(&kind) {
            self.by_time.remove(&(old, kind));
        }
    }

    pub fn is_set(&self, kind: TimerKind) -> bool {
        self.when.contains_key(&kind)
    }

    pub fn next(&self) -> Option<Time> {
        self.by_time.first().map(|(t, _)| *t)
    }

    /// Removes and returns the earliest timer due at or before `now`.
    pub fn pop_due(&mut self, now: Time) -> Option<(Time, TimerKind)> {
        let &(at, kind) = self.by_time.first()?;
        if at > now {
            return None;
        }
        self.by_time.remove(&(at, kind));
        self.when.remove(&kind);
        Some((at, kind))
    }

    pub fn len(&self) -> usize {
        self.when.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resetting_a_timer_moves_it_and_cancel_removes_it() {
        let mut t = Timers::default();
        let k = TimerKind::WrapUpEnd(AgentId(1));
        t.set(k, Time(500));
        t.set(TimerKind::MaxWait(CallId(2)), Time(900));
        t.set(k, Time(1000));
        assert_eq!(t.next(), Some(Time(900)));
        assert_eq!(t.pop_due(Time(800)), None);
        assert_eq!(t.pop_due(Time(950)), Some((Time(900), TimerKind::MaxWait(CallId(2)))));
        t.cancel(k);
        assert_eq!(t.next(), None);
        assert_eq!(t.len(), 0);
    }
}
