//! Callback (virtual hold): a waiting caller presses its queue's callback
//! key, is hung up, and keeps its place; an agent takes it like any call and
//! acd then dials the customer through the queue's `callback_trunk`.
//!
//! ```text
//!   Waiting/Offering ── callback_key ──► Callback pending (rings withdrawn,
//!        ConfirmCallback: the shell plays the prompt over the hold, BYEs)
//!        keeps priority, arrival order (seq) and `entered`; no max wait,
//!        no announcements; a hang-up of the caller changes nothing
//!   pending ── not before now + callback_initial_delay_secs ──► offerable
//!   offerable ── dispatch ──► Offering (Ring, as any call)
//!   Offering ── OfferAnswered ──► Dialling (agent OnCall; with a whisper,
//!        CallbackWhisper, then DialCallback when it is over, else at once)
//!   Dialling ── CallbackAnswered ──► Bridged (Bridge, Answered): from here
//!        an ordinary bridged call (CallEnded, transfer…)
//!   Dialling ── CallbackFailed / CallEnded (the agent left) ──►
//!        agent Available (no wrap-up: nobody talked), attempt counted;
//!        attempts < callback_max_attempts: pending again in its old place,
//!            not offered before now + callback_retry_delay_secs
//!        else: CallbackGivenUp, the call finishes (Outcome::CallbackFailed)
//!   Drain: with a state file the shell first takes the pending ones out
//!        (`save_callbacks`, CallbackStep::Saved; restored at start-up,
//!        `callback/restore.rs`); any left are reported lost
//!        (CallbackStep::Lost) and finished
//! ```
//!
//! What always holds: a call with `callback` set is never on hold and has
//! no max-wait or announcement timers; it is offered only when
//! `not_before <= now`; every step is one [`Event::Callback`].

use super::{AgentState, CallState, Engine, Entry};
use crate::engine::{Action, AgentId, CallId, CallbackStep, EngineError, Event, Outcome, RejectCause, TimerKind};
use tracing::debug;

/// A call waiting to be called back (kept on the engine's `Call`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pending {
    /// Not offered to an agent before this.
    pub(super) not_before: super::Time,
    /// Dials of the customer that failed so far.
    pub(super) failed: u32,
    /// Set from `OfferAnswered` until the customer answers or the dial fails.
    pub(super) dialling: bool,
    /// Made by a closed queue's `when_closed = "callback"`: offered only
    /// while the queue is open (`callback/closed.rs`).
    pub(super) wait_open: bool,
}

impl Engine {
    /// Number of callbacks waiting (not yet connected) in queue `q`.
    pub fn callbacks_pending(&self, q: super::QueueId) -> usize {
        self.calls.values().filter(|c| c.queue == q && c.callback.is_some()).count()
    }

    /// Whether `c` is a callback whose customer is not connected yet.
    pub fn is_callback(&self, c: CallId) -> bool {
        self.calls.get(&c).is_some_and(|x| x.callback.is_some())
    }

    /// The caller pressed `q`'s callback key (checked by the caller).
    pub(super) fn callback_requested(&mut self, c: CallId) {
        let q = self.calls[&c].queue;
        let Some(cfg) = self.queues[q.0 as usize].cfg.keypad.callback.clone() else {
            return;
        };
        if self.calls[&c].callback.is_some() {
            return;
        }
        debug!(call = c.0, "Queued => CallbackPending");
        self.withdraw_all_rings(c);
        let not_before = self.now.plus_secs(cfg.initial_delay_secs);
        let call = self.calls.get_mut(&c).expect("waiting call exists");
        // No StopHold: the confirmation plays over the hold (the media plane
        // plays prompts to held legs) and the caller leg ends after it.
        call.on_hold = false;
        call.callback = Some(Pending { not_before, failed: 0, dialling: false, wait_open: false });
        self.actions.push_back(Action::ConfirmCallback { call: c, closed: false });
        self.events.push_back(Event::Callback { call: c, queue: q, step: CallbackStep::Requested });
        self.arm_call_timers(c, false);
        self.dirty.insert(q);
    }

    /// For `arm_call_timers`: a pending callback has only its due timer.
    /// Returns whether `c` is one (then nothing else is armed).
    pub(super) fn arm_callback_timers(&mut self, c: CallId) -> bool {
        let Some(p) = self.calls[&c].callback else {
            return false;
        };
        for kind in [
            TimerKind::MaxWait(c),
            TimerKind::CallStep(c),
            TimerKind::Announce(c),
            TimerKind::PeriodicAnnounce(c),
            TimerKind::CallbackOffer(c),
        ] {
            self.timers.cancel(kind);
        }
        if p.not_before > self.now && !p.dialling {
            self.timers.set(TimerKind::CallbackDue(c), p.not_before);
        }
        true
    }

    /// May `c` be offered now (not a callback, or one past its delay and,
    /// if a closed queue took it, with the queue open)?
    pub(super) fn callback_offerable(&self, c: CallId) -> bool {
        let call = &self.calls[&c];
        call.callback.is_none_or(|p| p.not_before <= self.now && (!p.wait_open || self.queue_open(call.queue)))
    }

    /// From `offer_answered`: the agent took a callback. With a whisper the
    /// agent hears it first and the customer is dialled when it is over
    /// ([`TimerKind::CallbackDial`]); without, at once.
    /// Returns false when `c` is not a callback (answer it as usual).
    pub(super) fn callback_agent_answered(&mut self, c: CallId, a: AgentId) -> bool {
        let call = self.calls.get_mut(&c).expect("checked");
        let q = call.queue;
        let Some(p) = call.callback.as_mut() else {
            return false;
        };
        p.dialling = true;
        let attempt = p.failed + 1;
        self.events.push_back(Event::Callback { call: c, queue: q, step: CallbackStep::Attempt { agent: a, attempt } });
        let cfg = self.queues[q.0 as usize].cfg.keypad.callback.as_ref();
        let (whisper_ms, file) = cfg.map_or((0, None), |cb| (cb.whisper_ms, cb.whisper.clone()));
        if whisper_ms == 0 {
            self.callback_dial(c);
            return true;
        }
        debug!(call = c.0, agent = a.0, attempt, "Offering => CallbackWhisper");
        self.actions.push_back(Action::CallbackWhisper { call: c, agent: a, file });
        self.timers.set(TimerKind::CallbackDial(c), self.now + std::time::Duration::from_millis(whisper_ms as u64));
        true
    }

    /// The agent has taken the callback (and heard its whisper): dial the
    /// customer. Nothing if the attempt ended meanwhile.
    pub(super) fn callback_dial(&mut self, c: CallId) {
        let Ok((a, q, _, attempt)) = self.dialling(c) else { return };
        let trunk =
            self.queues[q.0 as usize].cfg.keypad.callback.as_ref().map(|cb| cb.trunk.clone()).unwrap_or_default();
        debug!(call = c.0, agent = a.0, attempt, "=> CallbackDialling");
        self.actions.push_back(Action::DialCallback { call: c, agent: a, trunk, attempt });
    }

    /// The customer answered the dial: bridge them to the agent.
    pub(super) fn callback_answered(&mut self, c: CallId) -> Result<(), EngineError> {
        let (a, q, arrived, attempt) = self.dialling(c)?;
        let call = self.calls.get_mut(&c).expect("checked");
        call.callback = None;
        let waited = self.now.since(arrived) + call.waited_before;
        debug!(call = c.0, agent = a.0, "CallbackDialling => Bridged");
        self.events.push_back(Event::Callback {
            call: c,
            queue: q,
            step: CallbackStep::Connected { agent: a, attempt },
        });
        self.actions.push_back(Action::Bridge { call: c, agent: a });
        self.events.push_back(Event::Answered { call: c, queue: q, agent: a, waited });
        Ok(())
    }

    /// The dial failed (`cause`), or the agent left before the customer
    /// answered (`None`).
    pub(super) fn callback_failed(&mut self, c: CallId, cause: Option<RejectCause>) -> Result<(), EngineError> {
        let (a, q, _, attempt) = self.dialling(c)?;
        self.timers.cancel(TimerKind::CallbackDial(c));
        let cfg = self.queues[q.0 as usize].cfg.keypad.callback.clone();
        let (max, retry) = cfg.map_or((1, 0), |cb| (cb.max_attempts, cb.retry_delay_secs));
        let reason = cause.map_or("agent-left", |x| x.name());
        self.events.push_back(Event::Callback { call: c, queue: q, step: CallbackStep::Failed { attempt, reason } });
        // The agent's leg is over; nobody talked, so no wrap-up (a pause or
        // logout asked for meanwhile still applies).
        let agent = &self.agents[a.0 as usize];
        if agent.removed || agent.after_call.is_some() {
            self.agent_call_over(a, q);
        } else {
            let now = self.now;
            self.agents[a.0 as usize].idle_since = now;
            self.set_state(a, AgentState::Available { since: now }, "callback not connected");
        }
        if attempt >= max {
            debug!(call = c.0, attempt, "CallbackDialling => GivenUp");
            self.events.push_back(Event::Callback {
                call: c,
                queue: q,
                step: CallbackStep::GivenUp { attempts: attempt },
            });
            // Finish as a waiting call, so `waited` counts to now.
            self.calls.get_mut(&c).expect("checked").state = CallState::Offering;
            self.finish(c, Outcome::CallbackFailed { attempts: attempt });
            return Ok(());
        }
        debug!(call = c.0, attempt, "CallbackDialling => CallbackPending");
        let not_before = self.now.plus_secs(retry);
        let call = self.calls.get_mut(&c).expect("checked");
        call.state = CallState::Waiting;
        let wait_open = call.callback.is_some_and(|p| p.wait_open);
        call.callback = Some(Pending { not_before, failed: attempt, dialling: false, wait_open });
        let (priority, seq, entered) = (call.priority, call.seq, call.entered);
        self.queues[q.0 as usize].line.insert(priority, seq, Entry { call: c, entered });
        self.arm_call_timers(c, false);
        self.dirty.insert(q);
        Ok(())
    }

    /// `(agent, queue, arrived, attempt)` of a callback being dialled.
    fn dialling(&self, c: CallId) -> Result<(AgentId, super::QueueId, super::Time, u32), EngineError> {
        let call = self.calls.get(&c).ok_or(EngineError::UnknownCall(c))?;
        match (call.state, call.callback) {
            (CallState::Bridged { agent, .. }, Some(p)) if p.dialling => {
                Ok((agent, call.queue, call.arrived, p.failed + 1))
            }
            _ => Err(EngineError::NotDialling(c)),
        }
    }

    /// From `call_gone`: a hang-up that concerns a callback. A waiting one
    /// has no caller leg any more, so nothing changes; one being dialled
    /// lost its agent: a failed attempt. Returns whether it was handled.
    pub(super) fn callback_gone(&mut self, c: CallId) -> bool {
        match self.calls.get(&c).and_then(|x| x.callback) {
            None => false,
            Some(p) if p.dialling => {
                let _ = self.callback_failed(c, None);
                true
            }
            Some(_) => {
                debug!(call = c.0, "hang-up of a pending callback's caller leg: nothing changes");
                true
            }
        }
    }

    /// On drain: pending callbacks are lost (there is no state file); each
    /// is reported and finished. Callbacks being dialled carry on.
    pub(super) fn drain_callbacks(&mut self) {
        let mut lost: Vec<(u64, CallId)> = self
            .calls
            .iter()
            .filter(|(_, x)| x.callback.is_some_and(|p| !p.dialling))
            .map(|(id, x)| (x.seq, *id))
            .collect();
        lost.sort();
        for (_, c) in lost {
            let q = self.calls[&c].queue;
            self.withdraw_all_rings(c);
            self.events.push_back(Event::Callback { call: c, queue: q, step: CallbackStep::Lost });
            self.finish(c, Outcome::CallbackFailed { attempts: self.calls[&c].callback.map_or(0, |p| p.failed) });
        }
    }
}

mod closed;
mod offer;
mod restore;

pub use restore::SavedCallback;

#[cfg(test)]
mod tests;
