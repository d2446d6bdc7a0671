//! Consultation calls and attended transfer ([`Input::ConsultArrived`],
//! [`Input::AttendedTransfer`]).
//!
//! ```text
//!   call X: Bridged(A)          A holds its caller and dials a queue from its phone
//!   call K: ConsultArrived(by A) ── routed as any call ──► Bridged(B)
//!   AttendedTransfer { call: X, consult: K }:
//!       X: Bridged(A) ──► Bridged(B)      (B stays on-call, now on X)
//!       A: on-call ──► wrap-up (or the pause/logout asked for during the call)
//!       K: finished, Outcome::Consultation { by: A, answered_by: B, transferred }
//! ```
//!
//! What always holds: an attended transfer happens whole or not at all
//! (every check before the first change); the consulted agent is never
//! left on-call on a call that is gone (its state names the caller's call
//! the moment K finishes); a consultation finishes as a consultation
//! whatever ends it (never as answered or abandoned), so reports and the
//! service level count customers only.

use super::{AgentState, CallState, Engine};
use crate::engine::{CallId, EngineError, Event, NewCall, Outcome, TransferKind, TransferTarget};
use tracing::debug;

impl Engine {
    pub(super) fn consult_arrived(&mut self, nc: NewCall, by: crate::engine::AgentId) -> Result<(), EngineError> {
        self.agent(by)?;
        let id = nc.id;
        self.call_arrived(nc)?;
        // Refused at once (a closed or full queue) leaves nothing to mark:
        // the call finished as rejected, as any other caller would.
        if let Some(call) = self.calls.get_mut(&id) {
            call.consult_by = Some(by);
        }
        Ok(())
    }

    /// Who placed call `c` as a consultation, if it is one.
    pub fn consult_by(&self, c: CallId) -> Option<crate::engine::AgentId> {
        self.calls.get(&c).and_then(|x| x.consult_by)
    }

    pub(super) fn attended_transfer(&mut self, c: CallId, k: CallId) -> Result<(), EngineError> {
        let call = self.calls.get(&c).ok_or(EngineError::UnknownCall(c))?;
        let CallState::Bridged { agent: a, since } = call.state else {
            return Err(EngineError::NotBridged(c));
        };
        if !call.ringing.is_empty() {
            return Err(EngineError::TransferPending(c));
        }
        if call.callback.is_some() {
            return Err(EngineError::IsCallback(c));
        }
        let from = call.queue;
        let consult = self.calls.get(&k).ok_or(EngineError::UnknownCall(k))?;
        if k == c || consult.consult_by != Some(a) {
            return Err(EngineError::NotConsultation(k, a));
        }
        let CallState::Bridged { agent: b, .. } = consult.state else {
            return Err(EngineError::ConsultNotAnswered(k));
        };
        if !consult.ringing.is_empty() {
            return Err(EngineError::TransferPending(k));
        }

        let now = self.now;
        debug!(call = c.0, consult = k.0, from = a.0, to = b.0, "Bridged => Bridged (attended transfer)");
        self.count_handle_time(from, since);
        self.events.push_back(Event::Transferred {
            call: c,
            from,
            agent: a,
            to: TransferTarget::Agent(b),
            kind: TransferKind::Attended,
        });
        self.calls.get_mut(&c).expect("checked").state = CallState::Bridged { agent: b, since: now };
        // B's talk with the caller starts now; its state names the caller's
        // call before the consultation goes.
        self.set_state(b, AgentState::OnCall { call: c, since: now }, "took an attended transfer");
        self.calls.get_mut(&k).expect("checked").transferred = true;
        self.finish(k, Outcome::Answered { agent: b });
        self.agent_call_over(a, from);
        Ok(())
    }

    /// The outcome a call finishing with `outcome` is recorded with: a
    /// consultation's is always [`Outcome::Consultation`].
    pub(super) fn recorded_outcome(&self, c: CallId, outcome: Outcome) -> Outcome {
        let Some(call) = self.calls.get(&c) else { return outcome };
        let Some(by) = call.consult_by else { return outcome };
        let answered_by = match (&outcome, call.state) {
            (Outcome::Answered { agent }, _) => Some(*agent),
            (_, CallState::Bridged { agent, .. }) => Some(agent),
            _ => None,
        };
        Outcome::Consultation { by, answered_by, transferred: call.transferred }
    }
}

#[cfg(test)]
mod tests {
    use super::super::AgentId;
    use super::*;
    use crate::config::from_toml_str;
    use crate::engine::{Action, Input, QueueId, Time};

    /// Two queues: front (anna) and tech (ben, cai), wrap-up 30 s.
    fn engine() -> Engine {
        let toml = r#"
[defaults]
wrap_up_secs = 30
[[agent]]
id = "anna"
[[agent]]
id = "ben"
[[agent]]
id = "cai"
[[queue]]
name = "front"
members = [{ agent = "anna" }]
[[queue]]
name = "tech"
strategy = "linear"
members = [{ agent = "ben" }, { agent = "cai" }]
"#;
        let cfg = from_toml_str("t.toml", toml).unwrap();
        let mut e = Engine::new(&cfg, Time::ZERO);
        for a in ["anna", "ben", "cai"] {
            let agent = e.agent_id(a).unwrap();
            e.handle(Time::ZERO, Input::AgentLogin { agent }).unwrap();
            e.handle(Time::ZERO, Input::AgentRegistered { agent }).unwrap();
        }
        drain(&mut e);
        e
    }

    fn drain(e: &mut Engine) -> (Vec<Action>, Vec<Event>) {
        let (mut a, mut v) = (Vec::new(), Vec::new());
        while let Some(x) = e.poll_action() {
            a.push(x);
        }
        while let Some(x) = e.poll_event() {
            v.push(x);
        }
        (a, v)
    }

    fn new_call(id: u64, queue: QueueId) -> NewCall {
        NewCall { id: CallId(id), queue, caller: format!("c{id}"), priority: 0, skills: vec![], attributes: vec![] }
    }

    fn state(e: &Engine, a: &str) -> &'static str {
        e.agent_state(e.agent_id(a).unwrap()).unwrap().name()
    }

    /// Customer call 1 bridged to anna; anna's consultation 2 to tech,
    /// answered by ben (when `answer`).
    fn consulting(answer: bool) -> (Engine, AgentId, AgentId) {
        let mut e = engine();
        let (anna, ben) = (e.agent_id("anna").unwrap(), e.agent_id("ben").unwrap());
        let (front, tech) = (e.queue_id("front").unwrap(), e.queue_id("tech").unwrap());
        e.handle(Time::from_secs(1), Input::CallArrived(new_call(1, front))).unwrap();
        e.handle(Time::from_secs(2), Input::OfferAnswered { call: CallId(1), agent: anna }).unwrap();
        e.handle(Time::from_secs(10), Input::ConsultArrived { call: new_call(2, tech), by: anna }).unwrap();
        let (actions, _) = drain(&mut e);
        assert!(actions.iter().any(|a| matches!(a, Action::Ring { call: CallId(2), agent, .. } if *agent == ben)));
        if answer {
            e.handle(Time::from_secs(12), Input::OfferAnswered { call: CallId(2), agent: ben }).unwrap();
            drain(&mut e);
        }
        (e, anna, ben)
    }

    #[test]
    fn the_customer_goes_to_the_consulted_agent_and_the_first_agent_wraps_up() {
        let (mut e, anna, ben) = consulting(true);
        e.handle(Time::from_secs(20), Input::AttendedTransfer { call: CallId(1), consult: CallId(2) }).unwrap();
        let (actions, events) = drain(&mut e);
        assert!(actions.is_empty(), "call control does the SIP and media side itself: {actions:?}");
        assert!(events.contains(&Event::Transferred {
            call: CallId(1),
            from: e.queue_id("front").unwrap(),
            agent: anna,
            to: TransferTarget::Agent(ben),
            kind: TransferKind::Attended,
        }));
        let finished: Vec<_> = events
            .iter()
            .filter_map(|ev| match ev {
                Event::CallFinished { call, outcome, .. } => Some((*call, outcome.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            finished,
            vec![(CallId(2), Outcome::Consultation { by: anna, answered_by: Some(ben), transferred: true })]
        );
        assert_eq!(state(&e, "anna"), "wrap-up");
        assert_eq!(e.agent_state(ben), Some(&AgentState::OnCall { call: CallId(1), since: Time::from_secs(20) }));
        assert_eq!(e.call(CallId(1)).unwrap().agent, Some(ben));
        assert_eq!(e.call_count(), 1);
        // The customer hangs up: ben wraps up, the call is answered (by ben).
        e.handle(Time::from_secs(80), Input::CallEnded { call: CallId(1) }).unwrap();
        let (_, events) = drain(&mut e);
        assert!(events.iter().any(|ev| matches!(ev,
            Event::CallFinished { call: CallId(1), outcome: Outcome::Answered { agent }, .. } if *agent == ben)));
        assert_eq!(state(&e, "ben"), "wrap-up");
        assert_eq!(e.call_count(), 0);
    }

    #[test]
    fn refusals_change_nothing() {
        let (mut e, anna, _) = consulting(false);
        let xfer = |e: &mut Engine, call, consult| {
            e.handle(Time::from_secs(20), Input::AttendedTransfer { call: CallId(call), consult: CallId(consult) })
        };
        assert_eq!(xfer(&mut e, 1, 2), Err(EngineError::ConsultNotAnswered(CallId(2))), "ben still rings");
        assert_eq!(xfer(&mut e, 1, 9), Err(EngineError::UnknownCall(CallId(9))));
        assert_eq!(xfer(&mut e, 1, 1), Err(EngineError::NotConsultation(CallId(1), anna)));
        assert_eq!(xfer(&mut e, 2, 1), Err(EngineError::NotBridged(CallId(2))));
        // A customer call that is not anna's consultation.
        let front = e.queue_id("front").unwrap();
        e.handle(Time::from_secs(20), Input::CallArrived(new_call(3, front))).unwrap();
        assert_eq!(xfer(&mut e, 1, 3), Err(EngineError::NotConsultation(CallId(3), anna)));
        let (actions, events) = drain(&mut e);
        assert!(!events.iter().any(|ev| matches!(ev, Event::Transferred { .. } | Event::CallFinished { .. })));
        assert!(!actions.iter().any(|a| matches!(a, Action::Bridge { .. })));
        assert_eq!(state(&e, "anna"), "on-call");
        assert_eq!(state(&e, "ben"), "ringing");
        assert_eq!(e.call(CallId(1)).unwrap().agent, Some(anna));
    }

    #[test]
    fn a_consultation_that_ends_untransferred_is_a_consultation_not_an_answer_or_abandon() {
        let (mut e, anna, ben) = consulting(true);
        e.handle(Time::from_secs(30), Input::CallEnded { call: CallId(2) }).unwrap();
        let (_, events) = drain(&mut e);
        assert!(events.contains(&Event::CallFinished {
            call: CallId(2),
            queue: e.queue_id("tech").unwrap(),
            outcome: Outcome::Consultation { by: anna, answered_by: Some(ben), transferred: false },
            waited: std::time::Duration::from_secs(2),
        }));
        assert_eq!(state(&e, "ben"), "wrap-up");
        assert_eq!(state(&e, "anna"), "on-call", "anna is still with her customer");
        // A consultation hung up while it rings: no abandon either.
        let tech = e.queue_id("tech").unwrap();
        e.handle(Time::from_secs(31), Input::ConsultArrived { call: new_call(4, tech), by: anna }).unwrap();
        e.handle(Time::from_secs(32), Input::CallAbandoned { call: CallId(4) }).unwrap();
        let (_, events) = drain(&mut e);
        assert!(events.iter().any(|ev| matches!(
            ev,
            Event::CallFinished {
                call: CallId(4),
                outcome: Outcome::Consultation { answered_by: None, transferred: false, .. },
                ..
            }
        )));
        assert_eq!(state(&e, "cai"), "available", "cai's ring was withdrawn");
    }
}
