//! Blind transfer of a bridged call into another queue ([`Input::TransferCall`])
//! or to an agent ([`Input::TransferToAgent`]).
//!
//! A transfer to an agent rings that agent as an offer of the call while the
//! call stays Bridged to its first agent: the target is in the call's
//! `ringing` list, so every way a ring ends (timeout, refusal, logout,
//! unregistration, the call ending) is the ordinary one, with the ordinary
//! back-off. Only an answer differs: the call moves to the new agent.
//!
//! What always holds: a transfer either happens whole or not at all (every
//! check comes before the first change), and a transferred caller keeps its
//! base priority, its arrival order (`seq`) and its `entered` time, so in
//! the new queue it is served before every caller who joined that queue
//! after it joined its last one. The waiting line's buckets stay ordered
//! because `seq` and `entered` were assigned together at that join.

use super::{AgentState, CallState, Engine, Entry, Tag};
use crate::config::WhenNoAgents;
use crate::engine::Time;
use crate::engine::{Action, AgentId, CallId, EngineError, Event, QueueId, TimerKind, TransferKind, TransferTarget};
use tracing::debug;

impl Engine {
    /// Whether queue `to` takes a caller moved into it now (a transfer or an
    /// exit key): open, not full, and staffed by its own `empty_when` rules
    /// unless it takes callers regardless.
    pub(super) fn takes_transfer(&self, to: QueueId) -> Result<(), EngineError> {
        let target = self.queues.get(to.0 as usize).ok_or(EngineError::UnknownQueue(to))?;
        let name = || target.cfg.name.clone();
        // Removed by a reload, or outside its business hours.
        if target.closed || !self.queue_open(to) {
            return Err(EngineError::QueueClosed(name()));
        }
        if target.line.len() >= target.cfg.max_waiting as usize {
            return Err(EngineError::QueueFull(name()));
        }
        if target.cfg.when_no_agents != WhenNoAgents::Join && self.queue_empty(to) {
            return Err(EngineError::NoAgents(name()));
        }
        Ok(())
    }

    /// Puts call `c` (out of any line) into queue `to` keeping its place:
    /// its priority, arrival order and `entered` time; only max wait
    /// restarts. Its music starts and its timers are armed afresh.
    pub(super) fn requeue_keeping_place(&mut self, c: CallId, to: QueueId) {
        let now = self.now;
        let call = self.calls.get_mut(&c).expect("requeued call exists");
        call.queue = to;
        call.state = CallState::Waiting;
        call.joined = now;
        call.on_hold = true;
        let (priority, seq, entered) = (call.priority, call.seq, call.entered);
        let queue = &mut self.queues[to.0 as usize];
        queue.line.insert(priority, seq, Entry { call: c, entered });
        let aging = queue.cfg.aging_secs;
        let position = queue.line.iter(now, aging).position(|e| e.call == c).map_or(0, |p| p as u32 + 1);
        self.actions.push_back(Action::StartHold { call: c, queue: to, music: queue.cfg.music.clone() });
        self.events.push_back(Event::CallQueued { call: c, queue: to, priority, position });
        self.timers.cancel(TimerKind::Announce(c));
        self.timers.cancel(TimerKind::PeriodicAnnounce(c));
        self.arm_call_timers(c, true);
        self.dirty.insert(to);
    }

    pub(super) fn transfer_call(&mut self, c: CallId, to: QueueId) -> Result<(), EngineError> {
        let call = self.calls.get(&c).ok_or(EngineError::UnknownCall(c))?;
        let CallState::Bridged { agent, since } = call.state else {
            return Err(EngineError::NotBridged(c));
        };
        if !call.ringing.is_empty() {
            return Err(EngineError::TransferPending(c));
        }
        self.takes_transfer(to)?;

        let from = call.queue;
        debug!(call = c.0, agent = agent.0, from = from.0, to = to.0, "Bridged => Waiting (transferred)");
        self.count_handle_time(from, since);
        self.events.push_back(Event::Transferred {
            call: c,
            from,
            agent,
            to: TransferTarget::Queue(to),
            kind: TransferKind::Blind,
        });

        self.requeue_keeping_place(c, to);
        // The agent's call is over, as after a hang-up (wrap-up, or a pause
        // or logout asked for during the call). After the caller is queued,
        // so an agent who is in the target queue and free at once is not
        // offered its own caller back before the wrap-up starts.
        self.agent_call_over(agent, from);
        Ok(())
    }

    pub(super) fn transfer_to_agent(&mut self, c: CallId, to: AgentId) -> Result<(), EngineError> {
        let call = self.calls.get(&c).ok_or(EngineError::UnknownCall(c))?;
        let CallState::Bridged { agent, .. } = call.state else {
            return Err(EngineError::NotBridged(c));
        };
        if !call.ringing.is_empty() {
            return Err(EngineError::TransferPending(c));
        }
        let target = self.agent(to)?;
        if to == agent || !target.dispatchable() {
            let why = match target.tag() {
                _ if to == agent => "on this call",
                Tag::Gone => "removed",
                Tag::LoggedOut => "logged out",
                Tag::Paused => "paused",
                Tag::WrapUp => "in wrap-up",
                Tag::Ringing => "ringing",
                Tag::OnCall => "on a call",
                Tag::Unregistered => "not registered",
                Tag::Available => "available",
            };
            return Err(EngineError::AgentNotFree(to, why));
        }
        let now = self.now;
        let timeout = self.queues[call.queue.0 as usize].cfg.ring_timeout_secs;
        debug!(call = c.0, from = agent.0, to = to.0, "Bridged => Bridged, ringing a transfer");
        self.calls.get_mut(&c).expect("checked").ringing.push(to);
        self.agents[to.0 as usize].alerting = false;
        self.set_state(to, AgentState::Ringing { call: c, since: now }, "transfer offered");
        self.timers.set(TimerKind::RingTimeout { call: c, agent: to }, now.plus_secs(timeout));
        self.actions.push_back(Action::Ring {
            call: c,
            agent: to,
            timeout: std::time::Duration::from_secs(timeout as u64),
        });
        Ok(())
    }

    /// `to` answered the transfer of bridged call `c` (from `from`, talking since `since`).
    pub(super) fn transfer_answered(&mut self, c: CallId, from: AgentId, since: Time, to: AgentId) {
        let now = self.now;
        self.timers.cancel(TimerKind::RingTimeout { call: c, agent: to });
        let call = self.calls.get_mut(&c).expect("checked by the caller");
        call.ringing.retain(|a| *a != to);
        call.state = CallState::Bridged { agent: to, since: now };
        let q = call.queue;
        self.count_handle_time(q, since);
        debug!(call = c.0, from = from.0, to = to.0, "Bridged => Bridged (transferred)");
        self.events.push_back(Event::Transferred {
            call: c,
            from: q,
            agent: from,
            to: TransferTarget::Agent(to),
            kind: TransferKind::Blind,
        });
        self.agents[to.0 as usize].misses = 0;
        self.set_state(to, AgentState::OnCall { call: c, since: now }, "answered a transfer");
        self.actions.push_back(Action::Bridge { call: c, agent: to });
        self.agent_call_over(from, q);
    }
}
