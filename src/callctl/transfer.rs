//! Blind transfer from an agent's phone: an in-dialog REFER (RFC 3515) on the
//! agent's leg of a bridged call.
//!
//! ```text
//!   Bridged(agent, leg) ── REFER on leg, Refer-To = a queue's number
//!        │  engine TransferCall accepted:
//!        │    ReferAccepted (202, NOTIFY 100 Trying, NOTIFY 200 OK, BYE the agent leg)
//!        ▼    the engine's StartHold: the caller hears the new queue's music
//!     Queued (in the target queue, with its priority and its place)
//!
//!   Bridged(agent, leg) ── REFER, Refer-To = an agent (id or SIP user):
//!        engine TransferToAgent: ReferTrying (202, NOTIFY 100); the target rings,
//!        the caller still talks to the agent
//!        ├─ target answers: ReferAccepted (NOTIFY 200, BYE) ──► Bridged(target, its leg)
//!        └─ busy / no answer / withdrawn: ReferFailed (NOTIFY 4xx); stays Bridged
//!
//!   refused (unknown target, not a queue, queue closed/full/unstaffed,
//!   REFER with Replaces, REFER from the caller's side):
//!        ReferRefused (4xx/5xx to the REFER); the call stays as it was
//! ```
//!
//! A phone that hangs up by itself when its transfer fails (baresip 1.0
//! does, on a 4xx to its REFER as on a failed NOTIFY) would drop the
//! caller: an agent BYE within [`REFUSED_GRACE_MS`] of a refused REFER puts
//! the caller back into its queue instead, keeping its place (a transfer to
//! the same queue, recorded as such).
//!
//! What always holds: a REFER is answered exactly once, with 202 only when
//! the engine took the transfer; a refused transfer changes nothing, so the
//! caller stays bridged to the agent. Targets are only numbers of
//! `[[number]]` that route to a queue, and agents: acd never relays a call
//! to a URI a phone names.

use super::{unexpected, CallCtlError, CallState, Command, Core, LegId, Next};
use crate::config::route_for;
use crate::engine::{AgentId, CallId, EngineError, Input, RejectCause, Time, TransferTarget};
use tracing::debug;

/// What a Refer-To header value names, as acd reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferTo {
    /// The URI's user part, percent-decoded, without user parameters.
    pub user: String,
    /// The URI carries a `Replaces` header (an attended transfer).
    pub replaces: bool,
}

/// Reads a Refer-To value: `<sip:2000@acd;transport=udp?Replaces=...>`,
/// `sip:2000@acd`, `tel:+3582000`. `None` when it names no user.
pub fn parse_refer_to(value: &str) -> Option<ReferTo> {
    let v = value.trim();
    let uri = match (v.find('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.split(';').next().unwrap_or(v),
    };
    let (uri, headers) = uri.split_once('?').unwrap_or((uri, ""));
    let replaces = headers.split('&').any(|h| h.trim().to_ascii_lowercase().starts_with("replaces="));
    let (scheme, rest) = uri.split_once(':')?;
    let user = match scheme.to_ascii_lowercase().as_str() {
        "sip" | "sips" => rest.split_once('@')?.0,
        "tel" => rest,
        _ => return None,
    };
    let user = user.split(';').next().unwrap_or(user);
    let user = percent_decode(user)?;
    (!user.is_empty()).then_some(ReferTo { user, replaces })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// How long after a refused REFER the agent's hang-up counts as the phone
/// giving up on the transfer rather than the agent ending the call.
pub const REFUSED_GRACE_MS: u64 = 3000;

/// The status a refused transfer's REFER gets.
fn refusal_status(e: &EngineError) -> u16 {
    match e {
        EngineError::QueueClosed(_) | EngineError::NoAgents(_) => 480,
        EngineError::QueueFull(_) => 486,
        EngineError::NotBridged(_) | EngineError::UnknownCall(_) => 481,
        EngineError::TransferPending(_) => 491,
        EngineError::AgentNotFree(_, "ringing" | "on a call" | "in wrap-up" | "on this call") => 486,
        EngineError::AgentNotFree(..) | EngineError::UnknownAgent(_) => 480,
        _ => 500,
    }
}

impl Core {
    /// A REFER on `leg` of a live call.
    pub(super) fn refer(&mut self, now: Time, call_id: CallId, leg: LegId, refer_to: &str) -> Result<(), CallCtlError> {
        let call = &self.calls[&call_id];
        let refuse = |core: &mut Core, status: u16, why: &str| {
            debug!(call = %call_id, %leg, status, "REFER refused: {why}");
            core.commands.push_back(Command::ReferRefused { call: call_id, leg, status });
            if let Some(c) = core.calls.get_mut(&call_id) {
                c.refused_refer = Some((leg, now));
            }
            Ok(())
        };
        let agent_leg = matches!(call.state, CallState::Bridged { leg: l, .. } if l == leg);
        if !agent_leg {
            // The caller's side, or an agent leg not bridged (yet).
            return refuse(self, 403, &format!("not the agent's leg of a bridged call ({})", call.state));
        }
        let Some(target) = parse_refer_to(refer_to) else {
            return refuse(self, 400, &format!("Refer-To {refer_to:?} names no user"));
        };
        if target.replaces {
            return refuse(self, 501, "attended transfer (Replaces) is not supported");
        }
        let Some(route) = route_for(&self.config.numbers, &target.user) else {
            let Some(to) = self.agent_named(&target.user) else {
                return refuse(self, 404, &format!("{:?} is neither a number nor an agent acd knows", target.user));
            };
            return match self.engine.handle(now, Input::TransferToAgent { call: call_id, agent: to }) {
                Ok(()) => {
                    // The engine's Ring follows; the caller stays bridged.
                    self.commands.push_back(Command::ReferTrying { call: call_id, leg });
                    self.calls.get_mut(&call_id).expect("live call").refer_waiting = Some(leg);
                    Ok(())
                }
                Err(e) => refuse(self, refusal_status(&e), &e.to_string()),
            };
        };
        let Some(queue) = self.engine.queue_id(&route.queue) else {
            return refuse(self, 480, &format!("queue {} is gone", route.queue));
        };
        let qname = route.queue.clone();
        match self.engine.handle(now, Input::TransferCall { call: call_id, queue }) {
            Ok(()) => {
                self.take_leg(call_id, leg, "transferred by the agent");
                self.commands.push_back(Command::ReferAccepted { call: call_id, leg });
                self.set_state(call_id, Next::To(CallState::Queued), &format!("blind transfer to {qname}"));
                Ok(())
            }
            Err(e) => {
                let status = refusal_status(&e);
                if status == 500 {
                    self.bug(e.clone().into());
                }
                refuse(self, status, &e.to_string())
            }
        }
    }

    /// The agent's `leg` (already taken out of the call) hung up: if that
    /// follows a refused REFER on it closely, the caller goes back into its
    /// queue, and this returns true; otherwise the call ends as usual.
    pub(super) fn back_to_queue_after_refused_transfer(
        &mut self,
        now: Time,
        call_id: CallId,
        leg: LegId,
        state: CallState,
    ) -> bool {
        let Some(call) = self.calls.get(&call_id) else { return false };
        let recent =
            matches!(call.refused_refer, Some((l, at)) if l == leg && now.0.saturating_sub(at.0) <= REFUSED_GRACE_MS);
        let bridged_here = matches!(state, CallState::Bridged { leg: l, .. } if l == leg);
        let Some(queue) = self.engine.call(call_id).map(|v| v.queue).filter(|_| recent && bridged_here) else {
            return false;
        };
        match self.engine.handle(now, Input::TransferCall { call: call_id, queue }) {
            Ok(()) => {
                self.set_state(call_id, Next::To(CallState::Queued), "the agent's phone hung up on a refused transfer");
                true
            }
            Err(e) => {
                debug!(call = %call_id, "cannot requeue after a refused transfer: {e}");
                false
            }
        }
    }

    /// An agent by id, or by the SIP user its phone registers as.
    fn agent_named(&self, user: &str) -> Option<AgentId> {
        self.engine.agent_id(user).or_else(|| {
            let a = self.config.agents.iter().find(|a| a.sip_user == user)?;
            self.engine.agent_id(&a.id)
        })
    }

    /// The agent rung for a transfer answered (the engine's Bridge): the
    /// first agent's REFER is done (NOTIFY 200, BYE; a plain BYE for an
    /// admin's transfer) and the caller is bridged to the new agent's `leg`.
    pub(super) fn transfer_answered(&mut self, call_id: CallId, state: CallState, agent: AgentId, leg: LegId) {
        let CallState::Bridged { leg: old, .. } = state else { return };
        let call = self.calls.get_mut(&call_id).expect("live call");
        let (caller, referred) = (call.caller_leg, call.refer_waiting.take() == Some(old));
        self.take_leg(call_id, old, "transferred");
        self.commands.push_back(if referred {
            Command::ReferAccepted { call: call_id, leg: old }
        } else {
            Command::Bye { call: call_id, leg: old }
        });
        self.set_state(call_id, Next::To(CallState::Bridged { agent, leg }), "transfer target answered");
        self.commands.push_back(Command::Bridge { call: call_id, caller, other: leg });
    }

    /// The agent rung for a transfer refused or could not be reached: the
    /// engine hears it as a missed offer, and the caller stays with its agent.
    pub(super) fn transfer_ring_failed(
        &mut self,
        now: Time,
        call_id: CallId,
        agent_leg: LegId,
        agent: AgentId,
        status: Option<u16>,
    ) -> Result<(), CallCtlError> {
        let cause = status.map(RejectCause::from_sip_status).unwrap_or(RejectCause::Unreachable);
        self.transfer_ring_ended(now, call_id, status.filter(|s| *s >= 400).unwrap_or(480));
        self.offer_input(now, agent_leg, Input::OfferRejected { call: call_id, agent, cause })
    }

    /// A transfer's ring ended without an answer: the REFER waiting for it
    /// fails with a final NOTIFY of `status`.
    pub(super) fn transfer_ring_ended(&mut self, now: Time, call_id: CallId, status: u16) {
        let Some(c) = self.calls.get_mut(&call_id) else { return };
        if let Some(leg) = c.refer_waiting.take() {
            c.refused_refer = Some((leg, now));
            self.commands.push_back(Command::ReferFailed { call: call_id, leg, status });
        }
    }

    /// An admin's transfer of bridged call `call_id` to a queue or an agent,
    /// with the semantics of the agent's REFER: to a queue at once (the
    /// agent leg gets BYE), to an agent once it answers (the caller stays
    /// bridged meanwhile). Nothing changes on an error.
    pub fn transfer(&mut self, now: Time, call_id: CallId, to: TransferTarget) -> Result<(), EngineError> {
        let state = self.calls.get(&call_id).map(|c| c.state).ok_or(EngineError::UnknownCall(call_id))?;
        let CallState::Bridged { leg, .. } = state else { return Err(EngineError::NotBridged(call_id)) };
        let r = match to {
            TransferTarget::Queue(queue) => {
                self.engine.handle(now, Input::TransferCall { call: call_id, queue }).map(|()| {
                    self.bye_out_leg(call_id, leg, "transferred by an admin");
                    self.set_state(call_id, Next::To(CallState::Queued), "admin transfer to a queue");
                })
            }
            TransferTarget::Agent(agent) => self.engine.handle(now, Input::TransferToAgent { call: call_id, agent }),
        };
        self.pump();
        r
    }

    /// A REFER on a leg that cannot take one in this state.
    pub(super) fn refer_elsewhere(
        &mut self,
        call_id: CallId,
        leg: LegId,
        state: CallState,
    ) -> Result<(), CallCtlError> {
        self.commands.push_back(Command::ReferRefused { call: call_id, leg, status: 403 });
        debug!("{}", unexpected(call_id, leg, "Refer", state));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refer_to_forms() {
        let p = |s| parse_refer_to(s).map(|r| (r.user, r.replaces));
        assert_eq!(p("<sip:2000@127.0.0.1:5060>"), Some(("2000".into(), false)));
        assert_eq!(p("sip:2000@acd"), Some(("2000".into(), false)));
        assert_eq!(p("\"Tech\" <sip:%2B3582000@acd;transport=udp>;x=1"), Some(("+3582000".into(), false)));
        assert_eq!(p("<sip:2000;phone-context=acd@acd>"), Some(("2000".into(), false)));
        assert_eq!(p("<tel:+3582000>"), Some(("+3582000".into(), false)));
        assert_eq!(p("<sip:ben@acd?Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2>"), Some(("ben".into(), true)));
        assert_eq!(p("<sip:acd.example>"), None, "no user");
        assert_eq!(p("<http://x@y>"), None);
        assert_eq!(p("<sip:%zz@acd>"), None);
        assert_eq!(p(""), None);
    }
}
