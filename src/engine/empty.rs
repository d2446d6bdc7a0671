//! Empty queues, with Asterisk's distinctions (queues.conf `joinempty` /
//! `leavewhenempty`): a queue is empty when no member is there, and what
//! "there" means is the queue's `empty_when` (logged out always counts as
//! gone; by default an unregistered phone does too). A new caller for an
//! empty queue gets `when_no_agents`; with `leave_when_empty`, callers
//! already waiting leave the same way once the queue becomes empty.

use super::*;

impl Engine {
    /// Whether member agent `a` counts as there for queue `q`'s rules.
    fn present(&self, q: &Queue, a: AgentId) -> bool {
        let agent = &self.agents[a.0 as usize];
        let e = &q.cfg.empty_when;
        if agent.removed || agent.state == AgentState::LoggedOut {
            return false;
        }
        if e.unregistered && !agent.registered {
            return false;
        }
        match agent.state {
            AgentState::Paused { .. } => !e.paused,
            AgentState::WrapUp { .. } => !e.wrap_up,
            AgentState::OnCall { .. } | AgentState::Ringing { .. } => !e.in_use,
            AgentState::Available { .. } | AgentState::LoggedOut => true,
        }
    }

    /// No member of `q` is there (see the module doc).
    pub(super) fn queue_empty(&self, q: QueueId) -> bool {
        let queue = &self.queues[q.0 as usize];
        !queue.members.iter().any(|m| self.present(queue, m.agent))
    }

    /// A member of these queues changed: those with `leave_when_empty` and
    /// callers waiting are looked at in the next [`Engine::leave_empty_queues`].
    pub(super) fn note_member_change(&mut self, a: AgentId) {
        for &(q, _) in &self.agents[a.0 as usize].queues {
            let cfg = &self.queues[q.0 as usize].cfg;
            if cfg.leave_when_empty {
                self.maybe_empty.insert(q);
            }
        }
    }

    /// The callers waiting in `q` (not those being rung), in arrival order.
    /// Callbacks are left out: they have no caller leg to send anywhere, so
    /// a closing or emptied queue keeps them.
    pub(super) fn waiting_in(&self, q: QueueId) -> Vec<CallId> {
        let mut waiting: Vec<(u64, CallId)> = self
            .calls
            .iter()
            .filter(|(_, c)| c.queue == q && c.state == CallState::Waiting && c.callback.is_none())
            .map(|(id, c)| (c.seq, *id))
            .collect();
        waiting.sort();
        waiting.into_iter().map(|(_, c)| c).collect()
    }

    /// Sends the waiting callers (not those being rung) of every queue that
    /// became empty on by `when_no_agents` (its overflow target, else 480).
    /// Runs before each dispatch, outside any state change.
    pub(super) fn leave_empty_queues(&mut self) {
        while let Some(q) = self.maybe_empty.pop_first() {
            if self.queues[q.0 as usize].line.is_empty() || !self.queue_empty(q) {
                continue;
            }
            let waiting = self.waiting_in(q);
            debug!(queue = %self.queues[q.0 as usize].cfg.name, callers = waiting.len(), "queue empty: callers leave");
            for c in waiting {
                let has_target = self.queues[q.0 as usize].cfg.overflow.is_some();
                if has_target {
                    self.overflow(c, OverflowReason::NoAgents);
                } else {
                    self.leave_line(c);
                    self.reject(c, 480);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_toml_str;

    fn engine(queue_extra: &str) -> Engine {
        let toml = format!(
            r#"
[[queue]]
name = "q"
members = [{{ agent = "anna" }}, {{ agent = "ben" }}]
{queue_extra}

[[queue]]
name = "spill"
members = [{{ agent = "cleo" }}]

[[agent]]
id = "anna"
[[agent]]
id = "ben"
[[agent]]
id = "cleo"
"#
        );
        let cfg = from_toml_str("empty.toml", &toml).unwrap_or_else(|e| panic!("{e}"));
        Engine::new(&cfg, Time::ZERO)
    }

    fn register(e: &mut Engine, t: u64, names: &[&str]) {
        for n in names {
            let agent = e.agent_id(n).unwrap();
            e.handle(Time::from_secs(t), Input::AgentRegistered { agent }).unwrap();
        }
    }

    fn arrive(e: &mut Engine, t: u64, id: u64) {
        let nc = NewCall {
            id: CallId(id),
            queue: e.queue_id("q").unwrap(),
            caller: format!("+358{id}"),
            priority: 0,
            skills: vec![],
            attributes: vec![],
        };
        e.handle(Time::from_secs(t), Input::CallArrived(nc)).unwrap();
    }

    fn outcomes(e: &mut Engine) -> Vec<(u64, Outcome)> {
        let mut out = vec![];
        while let Some(ev) = e.poll_event() {
            if let Event::CallFinished { call, outcome, .. } = ev {
                out.push((call.0, outcome));
            }
        }
        while e.poll_action().is_some() {}
        out
    }

    #[test]
    fn logged_in_agents_whose_phones_are_not_registered_do_not_count_by_default() {
        // Both agents auto-login (logged in), nobody registered: empty.
        let mut e = engine("when_no_agents = \"reject\"");
        arrive(&mut e, 0, 1);
        assert_eq!(outcomes(&mut e), vec![(1, Outcome::Rejected { status: 480 })]);
        // With empty_when = [] an unregistered but logged-in member counts:
        // the caller joins (and waits).
        let mut e = engine("when_no_agents = \"reject\"\nempty_when = []");
        arrive(&mut e, 0, 1);
        assert_eq!(outcomes(&mut e), vec![]);
        assert_eq!(e.waiting_count(e.queue_id("q").unwrap()), 1);
    }

    #[test]
    fn paused_and_wrap_up_count_as_absent_only_when_listed() {
        let mut e = engine(
            "when_no_agents = \"overflow\"\noverflow = \"queue:spill\"\nempty_when = [\"unregistered\", \"paused\"]",
        );
        register(&mut e, 0, &["anna", "ben", "cleo"]);
        for n in ["anna", "ben"] {
            let agent = e.agent_id(n).unwrap();
            e.handle(Time::from_secs(1), Input::AgentPause { agent, reason: "lunch".into() }).unwrap();
        }
        outcomes(&mut e);
        arrive(&mut e, 2, 1);
        // Overflowed to spill: cleo rings.
        let mut rang = vec![];
        while let Some(a) = e.poll_action() {
            if let Action::Ring { agent, .. } = a {
                rang.push(e.agent_name(agent).to_string());
            }
        }
        assert_eq!(rang, vec!["cleo".to_string()]);
    }

    #[test]
    fn with_leave_when_empty_waiting_callers_leave_when_the_last_agent_goes() {
        let mut e = engine("when_no_agents = \"join\"\nleave_when_empty = true\nempty_when = [\"unregistered\", \"paused\", \"in-use\"]");
        register(&mut e, 0, &["anna", "ben"]);
        outcomes(&mut e);
        // Both agents on calls; a third caller waits.
        for id in 1..=2 {
            arrive(&mut e, 1, id);
        }
        let mut offers = vec![];
        while let Some(a) = e.poll_action() {
            if let Action::Ring { call, agent, .. } = a {
                offers.push((call, agent));
            }
        }
        for (call, agent) in offers {
            e.handle(Time::from_secs(2), Input::OfferAnswered { call, agent }).unwrap();
        }
        // Both busy: with "in-use" listed the queue is empty, but a caller
        // may still join with when_no_agents = "join"; leave-when-empty acts
        // on a member change.
        arrive(&mut e, 3, 3);
        outcomes(&mut e);
        assert_eq!(e.waiting_count(e.queue_id("q").unwrap()), 1);
        // anna's phone unregisters: a member change, the queue is empty, the
        // waiting caller leaves (no overflow target: 480).
        let anna = e.agent_id("anna").unwrap();
        e.handle(Time::from_secs(4), Input::AgentUnregistered { agent: anna }).unwrap();
        assert_eq!(outcomes(&mut e), vec![(3, Outcome::Rejected { status: 480 })]);
        // Without leave_when_empty nobody leaves.
        let mut e = engine("when_no_agents = \"join\"\nempty_when = [\"unregistered\"]");
        register(&mut e, 0, &["anna"]);
        let anna = e.agent_id("anna").unwrap();
        e.handle(Time::from_secs(1), Input::AgentPause { agent: anna, reason: "x".into() }).unwrap();
        arrive(&mut e, 2, 1);
        e.handle(Time::from_secs(3), Input::AgentUnregistered { agent: anna }).unwrap();
        assert_eq!(outcomes(&mut e), vec![]);
        assert_eq!(e.waiting_count(e.queue_id("q").unwrap()), 1);
    }
}
