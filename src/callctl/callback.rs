//! Callback (virtual hold) legs: the caller who asked for a callback is
//! hung up after a confirmation prompt; when an agent answers the engine's
//! ring, acd dials the customer through the queue's trunk and bridges them.
//!
//! ```text
//!   Queued ── engine ConfirmCallback: Command::ConfirmCallback (prompt,
//!     then BYE; the caller leg is no longer ours) ──► Callback
//!   Callback ── engine Ring: Invite(agent) as for any call; agent 2xx ──►
//!     engine OfferAnswered ── engine DialCallback: ringback to the agent,
//!     Invite(sip:<caller>@<trunk>) ──► CallbackDialling(agent, legs)
//!   CallbackDialling ── customer 2xx ──► engine CallbackAnswered ── engine
//!     Bridge: the customer's leg becomes the call's caller leg ──►
//!     Bridged(agent, leg): an ordinary bridged call from here
//!   CallbackDialling ── customer fails: BYE the agent, engine
//!     CallbackFailed ──► Callback (or dropped once the engine gives up)
//!   CallbackDialling ── agent BYE: CANCEL the customer, engine CallEnded
//!     (a failed attempt) ──► Callback (or dropped)
//! ```
//!
//! What always holds: a call in Callback has no caller leg in the leg map
//! (its hang-up is nobody's business); a call the engine finished while in
//! Callback is dropped at once ([`Core::forget_finished_callbacks`]).

use super::state::{CallState, LegState, Next, OutLeg};
use super::{name_of, set_leg_state, unexpected, CallCtlError, Command, Core, LegId, SipEvent, Target};
use crate::config::RINGBACK;
use crate::engine::{AgentId, CallId, EngineError, Input, RejectCause, Time};
use tracing::debug;

impl Core {
    /// The engine's ConfirmCallback: the caller hears the prompt and is hung
    /// up. A closed queue's callback may come for a caller not answered yet
    /// (or in early media): it is answered first, with the queue's music
    /// under the prompt (media plays prompts to held legs only).
    pub(super) fn confirm_callback(&mut self, call_id: CallId, closed: bool) {
        let call = &self.calls[&call_id];
        let (state, leg) = (call.state, call.caller_leg);
        match state {
            CallState::Queued => {}
            CallState::Arriving | CallState::Early { .. } if closed => {
                let music = self
                    .engine
                    .call(call_id)
                    .and_then(|v| self.config.queues.iter().find(|q| q.name == self.engine.queue_name(v.queue)))
                    .map_or_else(|| "default".to_string(), |q| q.music.clone());
                self.commands.push_back(Command::AnswerCaller { call: call_id, leg });
                self.commands.push_back(Command::Hold { call: call_id, leg, music });
            }
            _ => return self.bug(unexpected(call_id, leg, "ConfirmCallback", state)),
        }
        self.legs.remove(&leg);
        self.commands.push_back(Command::ConfirmCallback { call: call_id, leg, closed });
        self.set_state(call_id, Next::To(CallState::Callback), "callback requested");
    }

    /// The engine's CallbackWhisper: the agent who answered hears ringback
    /// with the whisper in front of it; the engine dials the customer once
    /// it is over (DialCallback).
    pub(super) fn callback_whisper(&mut self, call_id: CallId, agent: AgentId, file: Option<std::path::PathBuf>) {
        let call = &self.calls[&call_id];
        let agent_leg = call.legs.iter().find(|l| l.agent == Some(agent) && l.state == LegState::Answered);
        let (CallState::Callback, Some(leg)) = (call.state, agent_leg.map(|l| l.leg)) else {
            return self.bug(unexpected(call_id, call.caller_leg, "CallbackWhisper", call.state));
        };
        debug!(call = %call_id, %leg, "agent answered a callback: whisper");
        self.commands.push_back(Command::Hold { call: call_id, leg, music: RINGBACK.into() });
        self.commands.push_back(Command::Whisper { call: call_id, leg, file });
    }

    /// The engine's OfferCallback: the waiting caller hears the offer (over
    /// its music, or its early media); a caller without media is not told.
    pub(super) fn offer_callback(&mut self, call_id: CallId, key: char) {
        let call = &self.calls[&call_id];
        if matches!(call.state, CallState::Queued | CallState::Early { music: true }) {
            self.commands.push_back(Command::OfferCallback { call: call_id, leg: call.caller_leg, key });
        }
    }

    /// The engine's DialCallback: the agent (answered leg) hears ringback
    /// while the customer is invited through `trunk`.
    pub(super) fn dial_callback(&mut self, call_id: CallId, agent: AgentId, trunk: String) {
        let call = &self.calls[&call_id];
        let state = call.state;
        let agent_leg = call.legs.iter().find(|l| l.agent == Some(agent) && l.state == LegState::Answered);
        let (CallState::Callback, Some(agent_leg)) = (state, agent_leg.map(|l| l.leg)) else {
            return self.bug(unexpected(call_id, call.caller_leg, "DialCallback", state));
        };
        let number = call.caller.clone();
        let customer = self.new_leg(call_id);
        let call = self.calls.get_mut(&call_id).expect("call exists");
        call.legs.push(OutLeg { leg: customer, agent: None, state: LegState::Inviting });
        self.set_state(
            call_id,
            Next::To(CallState::CallbackDialling { agent, agent_leg, customer }),
            "agent answered a callback",
        );
        self.commands.push_back(Command::Hold { call: call_id, leg: agent_leg, music: RINGBACK.into() });
        self.commands.push_back(Command::Invite {
            call: call_id,
            leg: customer,
            target: Target::Uri(format!("sip:{number}@{trunk}")),
            caller: number,
        });
    }

    /// The engine's Bridge once the customer answered: the customer's leg
    /// takes the caller's place.
    pub(super) fn callback_bridge(&mut self, call_id: CallId) {
        let Some(call) = self.calls.get_mut(&call_id) else { return };
        let CallState::CallbackDialling { agent, agent_leg, customer } = call.state else {
            let (leg, state) = (call.caller_leg, call.state);
            return self.bug(unexpected(call_id, leg, "Bridge", state));
        };
        call.legs.retain(|l| l.leg != customer);
        call.caller_leg = customer;
        self.set_state(call_id, Next::To(CallState::Bridged { agent, leg: agent_leg }), "customer answered");
        self.commands.push_back(Command::StopHold { call: call_id, leg: agent_leg });
        self.commands.push_back(Command::Bridge { call: call_id, caller: customer, other: agent_leg });
    }

    /// Drops calls the engine finished while they waited as callbacks
    /// (given up, lost at shutdown, withdrawn by an admin).
    pub(super) fn forget_finished_callbacks(&mut self) {
        let gone: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(id, c)| c.state == CallState::Callback && self.engine.call(**id).is_none())
            .map(|(id, _)| *id)
            .collect();
        for call_id in gone {
            if let Some(call) = self.set_state(call_id, Next::Ended, "callback over") {
                for l in call.legs {
                    self.orphan(call_id, l, "callback over");
                }
            }
        }
    }

    /// A SIP event on a leg of a call in Callback or CallbackDialling.
    pub(super) fn callback_sip_event(
        &mut self,
        now: Time,
        call_id: CallId,
        ev: SipEvent,
        state: CallState,
    ) -> Result<(), CallCtlError> {
        let leg = ev.leg();
        if let SipEvent::Refer { .. } | SipEvent::ReferReplaces { .. } = ev {
            // Nobody is bridged yet: nothing to transfer.
            self.commands.push_back(Command::ReferRefused { call: call_id, leg, status: 403 });
            return Ok(());
        }
        let call = &self.calls[&call_id];
        let Some(idx) = call.legs.iter().position(|l| l.leg == leg) else {
            return Err(unexpected(call_id, leg, name_of(&ev), state));
        };
        let out = call.legs[idx];
        let r = match (out.agent, ev, out.state) {
            (_, SipEvent::Progress { status, .. }, LegState::Inviting) => {
                let l = &mut self.calls.get_mut(&call_id).expect("call exists").legs[idx];
                set_leg_state(call_id, l, LegState::Alerting, &status.to_string());
                match out.agent {
                    Some(agent) => self.offer_input(now, leg, Input::OfferRinging { call: call_id, agent }),
                    None => Ok(()),
                }
            }
            (_, SipEvent::Progress { .. }, _) | (_, SipEvent::Answered { .. }, LegState::Answered) => Ok(()),
            (Some(agent), SipEvent::Answered { .. }, LegState::Inviting | LegState::Alerting) => {
                let l = &mut self.calls.get_mut(&call_id).expect("call exists").legs[idx];
                set_leg_state(call_id, l, LegState::Answered, "2xx");
                match self.engine.handle(now, Input::OfferAnswered { call: call_id, agent }) {
                    Ok(()) => Ok(()), // the engine's DialCallback follows
                    Err(e) => {
                        self.bye_out_leg(call_id, leg, "answered a callback offer already withdrawn");
                        match e {
                            EngineError::NoSuchOffer { .. } => {
                                self.race(super::Race::OfferWithdrawn, leg, "2xx for an offer already withdrawn");
                                Ok(())
                            }
                            e => Err(e.into()),
                        }
                    }
                }
            }
            (Some(agent), SipEvent::Failed { status, .. }, LegState::Inviting | LegState::Alerting) => {
                self.take_leg(call_id, leg, &status.map_or("no response".into(), |s| s.to_string()));
                let cause = status.map(RejectCause::from_sip_status).unwrap_or(RejectCause::Unreachable);
                self.offer_input(now, leg, Input::OfferRejected { call: call_id, agent, cause })
            }
            // The customer answered: the engine bridges.
            (None, SipEvent::Answered { .. }, LegState::Inviting | LegState::Alerting) => {
                let l = &mut self.calls.get_mut(&call_id).expect("call exists").legs[idx];
                set_leg_state(call_id, l, LegState::Answered, "2xx");
                self.engine.handle(now, Input::CallbackAnswered { call: call_id }).map_err(CallCtlError::from)
            }
            // The customer did not answer: the agent's leg ends too.
            (None, SipEvent::Failed { status, .. }, LegState::Inviting | LegState::Alerting) => {
                self.take_leg(call_id, leg, &status.map_or("no response".into(), |s| s.to_string()));
                if let CallState::CallbackDialling { agent_leg, .. } = state {
                    self.bye_out_leg(call_id, agent_leg, "customer did not answer the callback");
                }
                self.set_state(call_id, Next::To(CallState::Callback), "customer did not answer");
                let cause = status.map(RejectCause::from_sip_status).unwrap_or(RejectCause::Unreachable);
                self.engine.handle(now, Input::CallbackFailed { call: call_id, cause }).map_err(CallCtlError::from)
            }
            // The agent hung up while the customer was dialled.
            (Some(_), SipEvent::RemoteBye { .. } | SipEvent::Failed { .. }, LegState::Answered) => {
                self.take_leg(call_id, leg, "agent hung up");
                if let CallState::CallbackDialling { customer, .. } = state {
                    if let Some(l) = self.take_live(call_id, customer) {
                        self.orphan(call_id, l, "the agent hung up");
                    }
                }
                self.set_state(call_id, Next::To(CallState::Callback), "agent hung up before the customer answered");
                self.engine.handle(now, Input::CallEnded { call: call_id }).map_err(CallCtlError::from)
            }
            (_, other, leg_state) => Err(CallCtlError::Unexpected {
                call: call_id,
                leg,
                event: name_of(&other),
                state: format!("{state}/{leg_state}"),
            }),
        };
        self.pump();
        self.forget_finished_callbacks();
        debug!(call = %call_id, "callback leg event handled");
        r
    }

    /// Takes a still-unanswered leg out of its call, as it is.
    fn take_live(&mut self, call_id: CallId, leg: LegId) -> Option<OutLeg> {
        let call = self.calls.get_mut(&call_id)?;
        let i = call.legs.iter().position(|l| l.leg == leg)?;
        Some(call.legs.remove(i))
    }
}

#[cfg(test)]
mod tests;
