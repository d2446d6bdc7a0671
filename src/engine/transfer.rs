//! Blind transfer of a bridged call into another queue ([`Input::TransferCall`]).
//!
//! What always holds: a transfer either happens whole or not at all (every
//! check comes before the first change), and a transferred caller keeps its
//! base priority, its arrival order (`seq`) and its `entered` time, so in
//! the new queue it is served before every caller who joined that queue
//! after it joined its last one. The waiting line's buckets stay ordered
//! because `seq` and `entered` were assigned together at that join.

use super::{AgentState, CallState, Engine, Entry};
use crate::config::WhenNoAgents;
use crate::engine::{Action, CallId, EngineError, Event, QueueId, TimerKind};
use tracing::debug;

impl Engine {
    pub(super) fn transfer_call(&mut self, c: CallId, to: QueueId) -> Result<(), EngineError> {
        let call = self.calls.get(&c).ok_or(EngineError::UnknownCall(c))?;
        let CallState::Bridged { agent, since } = call.state else {
            return Err(EngineError::NotBridged(c));
        };
        let target = self.queues.get(to.0 as usize).ok_or(EngineError::UnknownQueue(to))?;
        let name = || target.cfg.name.clone();
        if target.closed {
            return Err(EngineError::QueueClosed(name()));
        }
        if target.line.len() >= target.cfg.max_waiting as usize {
            return Err(EngineError::QueueFull(name()));
        }
        let staffed = target.members.iter().any(|m| {
            let a = &self.agents[m.agent.0 as usize];
            a.state != AgentState::LoggedOut && !a.removed
        });
        if target.cfg.when_no_agents != WhenNoAgents::Join && !staffed {
            return Err(EngineError::NoAgents(name()));
        }

        let from = call.queue;
        debug!(call = c.0, agent = agent.0, from = from.0, to = to.0, "Bridged => Waiting (transferred)");
        self.count_handle_time(from, since);
        self.events.push_back(Event::Transferred { call: c, from, agent, to });

        let now = self.now;
        let call = self.calls.get_mut(&c).expect("checked above");
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
        self.arm_call_timers(c, true);
        self.dirty.insert(to);
        // The agent's call is over, as after a hang-up (wrap-up, or a pause
        // or logout asked for during the call). After the caller is queued,
        // so an agent who is in the target queue and free at once is not
        // offered its own caller back before the wrap-up starts.
        self.agent_call_over(agent, from);
        Ok(())
    }
}
