//! Per-call control (the B2BUA half of the core) and [`Core`], which drives it
//! together with the routing [`Engine`].
//!
//! Sans-IO like the engine: the SIP adapter reports what happened on each leg
//! ([`SipEvent`]) with `now`, and pulls out what to do ([`Command`]). The
//! contract, after every `handle_*` or [`Core::incoming_call`]: call
//! [`Core::poll_command`] and [`Core::poll_event`] until each returns `None`,
//! then sleep until [`Core::poll_timeout`].
//!
//! A call's life (one caller leg, any number of outgoing legs):
//!
//! ```text
//!            INVITE from a trunk
//!                  │ incoming_call → engine CallArrived
//!                  ▼
//!   ┌──────── Arriving ──── engine Reject ──► RejectCaller (4xx/5xx) ──► gone
//!   │              │ engine StartHold: AnswerCaller (200 OK), hold music
//!   │              ▼
//!   │           Queued ◄──────────────┐  engine Ring: Invite(agent leg)
//!   │              │                  │  engine CancelRing / 4xx / timeout:
//!   │              │ agent 200 →      │     Cancel(leg) → leg ends on its final
//!   │              │ OfferAnswered    │     response (a 200 after CANCEL is BYEd)
//!   │              ▼                  │
//!   │           Bridged(agent leg) ───┴── BYE on either side → BYE the other
//!   │
//!   └─ engine Transfer(uri): Invite(transfer leg) → Transferring → (200) TransferBridged
//!        (the engine forgot the call; a failure BYEs the caller)
//! ```
//!
//! Always true: a leg has exactly one owner call; every leg ends with one
//! final report from the adapter (or a BYE we send); a call is dropped when
//! its caller leg has ended and it has no legs left, so nothing outlives its
//! call ([`Core::call_count`], [`Core::leg_count`]).

#[cfg(test)]
mod tests;

use crate::config::{parse_skills_header, route_for, Config};
use crate::engine::{Action, AgentId, CallId, Engine, EngineError, Event, Input, NewCall, QueueId, RejectCause, Time};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use tracing::debug;

/// One SIP leg: the caller's dialog, or one outgoing INVITE dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u64);

impl std::fmt::Display for LegId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "leg {}", self.0)
    }
}

/// An INVITE from an allowed trunk, as the adapter read it.
#[derive(Debug, Clone, Default)]
pub struct IncomingCall {
    /// Request-URI user: the number dialled.
    pub dialled: String,
    /// From user: the caller's number.
    pub caller: String,
    /// The priority header's value, when the trunk is trusted with headers.
    pub priority_header: Option<String>,
    /// The skills header's value, when the trunk is trusted with headers.
    pub skills_header: Option<String>,
    /// Trunk name, for the record.
    pub trunk: String,
}

/// Why a new call is not taken: the adapter answers with this status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no queue for number \"{0}\"")]
    UnknownNumber(String),
    #[error("{calls} calls in progress, the limit")]
    Overloaded { calls: usize, retry_after: u32 },
    #[error("queue closed: {0}")]
    QueueClosed(String),
    #[error("shutting down")]
    ShuttingDown { retry_after: u32 },
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::UnknownNumber(_) => 404,
            Refusal::Overloaded { .. } => 503,
            Refusal::QueueClosed(_) => 480,
            Refusal::ShuttingDown { .. } => 503,
        }
    }
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Refusal::Overloaded { retry_after, .. } | Refusal::ShuttingDown { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

/// What happened on a leg, reported by the SIP adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipEvent {
    /// The caller sent CANCEL before we answered (the stack answered 487).
    CallerCancelled { leg: LegId },
    /// The caller sent BYE, or its dialog ended otherwise (no ACK, transport).
    CallerHungUp { leg: LegId },
    /// A provisional response (180/183) on an outgoing leg.
    Progress { leg: LegId, status: u16 },
    /// A 2xx on an outgoing leg (the stack ACKs it).
    Answered { leg: LegId },
    /// A final non-2xx on an outgoing leg, or `None`: no answer at all
    /// (timeout, transport error, no registered contact).
    Failed { leg: LegId, status: Option<u16> },
    /// The far end of an answered outgoing leg sent BYE.
    RemoteBye { leg: LegId },
}

impl SipEvent {
    /// The leg it happened on.
    pub fn leg(&self) -> LegId {
        match self {
            SipEvent::CallerCancelled { leg }
            | SipEvent::CallerHungUp { leg }
            | SipEvent::Progress { leg, .. }
            | SipEvent::Answered { leg }
            | SipEvent::Failed { leg, .. }
            | SipEvent::RemoteBye { leg } => *leg,
        }
    }
}

/// Who an outgoing leg calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Agent(AgentId),
    /// An overflow target from config.
    Uri(String),
}

/// What the SIP adapter (and media) must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// 200 OK with our SDP to the caller's INVITE.
    AnswerCaller {
        call: CallId,
        leg: LegId,
    },
    /// A final error response to the caller's INVITE (not answered yet).
    RejectCaller {
        call: CallId,
        leg: LegId,
        status: u16,
        retry_after: Option<u32>,
    },
    /// A new INVITE.
    Invite {
        call: CallId,
        leg: LegId,
        target: Target,
        caller: String,
    },
    /// CANCEL an outgoing INVITE that has no final response yet.
    Cancel {
        call: CallId,
        leg: LegId,
    },
    /// End an answered leg (caller or outgoing) with BYE; the leg is gone.
    Bye {
        call: CallId,
        leg: LegId,
    },
    /// Connect the media of the caller and the answered leg.
    Bridge {
        call: CallId,
        caller: LegId,
        other: LegId,
    },
    /// Play music to the caller (media).
    Hold {
        call: CallId,
        leg: LegId,
        music: String,
    },
    StopHold {
        call: CallId,
        leg: LegId,
    },
    /// Tell the caller their place (media).
    Announce {
        call: CallId,
        leg: LegId,
        position: u32,
        estimated_wait_secs: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// Handed to the engine, not answered yet.
    Arriving,
    /// Answered and in a queue (agents may be ringing).
    Queued,
    Bridged {
        agent: AgentId,
        leg: LegId,
    },
    /// The engine sent the call to a URI; the transfer leg is ringing.
    Transferring {
        leg: LegId,
    },
    TransferBridged {
        leg: LegId,
    },
    /// The caller leg has ended; waiting for outgoing legs to end.
    Ending,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegState {
    /// INVITE sent, no provisional yet.
    Inviting,
    Ringing,
    /// CANCEL sent; waiting for the final response.
    Cancelling,
    Answered,
}

#[derive(Debug, Clone)]
struct OutLeg {
    leg: LegId,
    /// `None` for a transfer leg.
    agent: Option<AgentId>,
    state: LegState,
}

#[derive(Debug)]
struct Call {
    caller_leg: LegId,
    caller: String,
    state: CallState,
    answered: bool,
    /// The engine still holds the call (not yet finished there).
    in_engine: bool,
    legs: Vec<OutLeg>,
}

/// A bug in the adapter or core: an event that cannot happen in this state.
/// Logged and counted; the call goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallCtlError {
    #[error("{0} is not known")]
    UnknownLeg(LegId),
    #[error("{event} on {leg} of {call} in state {state}")]
    Unexpected { call: CallId, leg: LegId, event: &'static str, state: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The whole deterministic core: call control plus the routing engine.
pub struct Core {
    engine: Engine,
    config: Config,
    calls: FxHashMap<CallId, Call>,
    /// Leg → owning call.
    legs: FxHashMap<LegId, CallId>,
    next_call: u64,
    next_leg: u64,
    commands: VecDeque<Command>,
    /// Errors seen (bugs or races), for metrics and tests.
    errors: Vec<CallCtlError>,
    /// Shutting down: new calls get 503.
    draining: bool,
}

impl Core {
    pub fn new(config: &Config, now: Time) -> Core {
        Core {
            engine: Engine::new(config, now),
            config: config.clone(),
            calls: FxHashMap::default(),
            legs: FxHashMap::default(),
            next_call: 1,
            next_leg: 1,
            commands: VecDeque::new(),
            errors: Vec::new(),
            draining: false,
        }
    }

    /// Applies a validated new config: the engine's `ConfigReplaced` (callers
    /// keep their place, agents their state) plus the numbers, trunks and
    /// limits call control reads. Listener addresses are the shell's.
    pub fn reload(&mut self, now: Time, config: Config) {
        let r = self.engine.handle(now, Input::ConfigReplaced(Box::new(config.clone())));
        if let Err(e) = r {
            self.errors.push(e.into());
        }
        self.config = config;
        self.pump();
    }

    /// Stops taking calls (503 + Retry-After) and sends every waiting
    /// caller to its queue's overflow target. Bridged calls go on.
    pub fn drain(&mut self, now: Time) {
        self.draining = true;
        if let Err(e) = self.engine.handle(now, Input::Drain) {
            self.errors.push(e.into());
        }
        self.pump();
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Ends every call now (end of the shutdown grace period): callers get
    /// BYE (or a final 503 if not answered), ringing legs CANCEL, bridged
    /// agents BYE.
    pub fn hang_up_all(&mut self, now: Time) {
        let mut ids: Vec<CallId> = self.calls.keys().copied().collect();
        ids.sort();
        for call_id in ids {
            let Some(call) = self.calls.get(&call_id) else { continue };
            if matches!(call.state, CallState::Ending) {
                continue;
            }
            let caller = call.caller_leg;
            if call.answered {
                self.commands.push_back(Command::Bye { call: call_id, leg: caller });
            } else {
                let retry_after = Some(self.config.sip.retry_after_secs);
                self.commands.push_back(Command::RejectCaller { call: call_id, leg: caller, status: 503, retry_after });
            }
            if let Err(e) = self.caller_gone(now, call_id) {
                self.errors.push(e);
            }
        }
        self.pump();
    }

    /// The caller's leg of a call.
    pub fn caller_leg(&self, call: CallId) -> Option<LegId> {
        self.calls.get(&call).map(|c| c.caller_leg)
    }

    /// The media plane heard nothing from `leg` for the media timeout: the
    /// phone or trunk behind it is gone. A bridged call ends on both sides
    /// (BYE to each) and the agent is free; a caller waiting in a queue (or
    /// for a transfer) is BYEd and abandons, as if it had hung up. Any other
    /// leg (a ringing agent's early media) is left alone.
    pub fn media_lost(&mut self, now: Time, leg: LegId) {
        let Some(&call_id) = self.legs.get(&leg) else { return };
        let Some(call) = self.calls.get(&call_id) else { return };
        let r = match call.state {
            CallState::Bridged { leg: out, .. } | CallState::TransferBridged { leg: out } if out == leg => {
                debug!(%call_id, %leg, "no media from the far end: ending the call");
                self.commands.push_back(Command::Bye { call: call_id, leg });
                self.remote_bye(now, call_id, leg)
            }
            // Waiting on music too: a trunk that died without BYE (issue 12).
            CallState::Queued
            | CallState::Bridged { .. }
            | CallState::Transferring { .. }
            | CallState::TransferBridged { .. }
                if call.caller_leg == leg =>
            {
                debug!(%call_id, %leg, "no media from the caller: ending the call");
                self.commands.push_back(Command::Bye { call: call_id, leg });
                self.caller_gone(now, call_id)
            }
            _ => Ok(()),
        };
        if let Err(e) = r {
            self.errors.push(e);
        }
        self.pump();
    }

    /// The caller's number, for the admin API.
    pub fn caller_of(&self, call: CallId) -> Option<&str> {
        self.calls.get(&call).map(|c| c.caller.as_str())
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// Calls known to call control (including ones whose legs are ending).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }
    /// Live legs, caller legs included.
    pub fn leg_count(&self) -> usize {
        self.legs.len()
    }
    /// The call a leg belongs to.
    pub fn leg_call(&self, leg: LegId) -> Option<CallId> {
        self.legs.get(&leg).copied()
    }
    /// Errors recorded since start (races the core absorbed, or bugs).
    pub fn errors(&self) -> &[CallCtlError] {
        &self.errors
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }
    pub fn poll_event(&mut self) -> Option<Event> {
        self.engine.poll_event()
    }
    pub fn poll_timeout(&self) -> Option<Time> {
        self.engine.poll_timeout()
    }

    /// A new INVITE from a trunk. On `Ok` the adapter ties its dialog to the
    /// returned caller leg; on `Err` it answers `refusal.status()`.
    pub fn incoming_call(&mut self, now: Time, inc: IncomingCall) -> Result<(CallId, LegId), Refusal> {
        if self.draining {
            return Err(Refusal::ShuttingDown { retry_after: self.config.sip.retry_after_secs });
        }
        if self.calls.len() >= self.config.sip.max_calls as usize {
            return Err(Refusal::Overloaded { calls: self.calls.len(), retry_after: self.config.sip.retry_after_secs });
        }
        let route = route_for(&self.config.numbers, &inc.dialled)
            .ok_or_else(|| Refusal::UnknownNumber(inc.dialled.clone()))?
            .clone();
        let queue: QueueId =
            self.engine.queue_id(&route.queue).ok_or_else(|| Refusal::QueueClosed(route.queue.clone()))?;
        let mut priority = self.config.caller_priority(&inc.caller) + route.priority;
        if let Some(p) = inc.priority_header.as_deref().and_then(|v| v.trim().parse::<i32>().ok()) {
            priority += p;
        }
        let priority = priority.clamp(-100, 100);
        let mut skills = route.skills.clone();
        if let Some(h) = &inc.skills_header {
            for (name, level) in parse_skills_header(h) {
                match skills.iter_mut().find(|(n, _)| *n == name) {
                    Some(s) => s.1 = s.1.max(level),
                    None => skills.push((name, level)),
                }
            }
        }
        let call = CallId(self.next_call);
        self.next_call += 1;
        let leg = self.new_leg(call);
        self.calls.insert(
            call,
            Call {
                caller_leg: leg,
                caller: inc.caller.clone(),
                state: CallState::Arriving,
                answered: false,
                in_engine: true,
                legs: Vec::new(),
            },
        );
        let mut attributes = vec![("dialled".to_string(), inc.dialled.clone())];
        if !inc.trunk.is_empty() {
            attributes.push(("trunk".to_string(), inc.trunk.clone()));
        }
        let new = NewCall { id: call, queue, caller: inc.caller, priority, skills, attributes };
        if let Err(e) = self.engine.handle(now, Input::CallArrived(new)) {
            self.drop_call(call);
            return Err(match e {
                EngineError::QueueClosed(q) => Refusal::QueueClosed(q),
                other => {
                    self.errors.push(other.into());
                    Refusal::QueueClosed(route.queue.clone())
                }
            });
        }
        self.pump();
        Ok((call, leg))
    }

    /// Agent presence and other engine inputs from the edges (feature codes,
    /// registrar, admin).
    pub fn handle_engine(&mut self, now: Time, input: Input) -> Result<(), EngineError> {
        let r = self.engine.handle(now, input);
        self.pump();
        r
    }

    pub fn handle_timeout(&mut self, now: Time) {
        if let Err(e) = self.engine.handle_timeout(now) {
            self.errors.push(e.into());
        }
        self.pump();
    }

    /// What happened on a leg.
    pub fn handle_sip(&mut self, now: Time, ev: SipEvent) {
        if let Err(e) = self.sip_event(now, ev) {
            debug!(error = %e, "call control");
            self.errors.push(e);
        }
        self.pump();
    }

    fn sip_event(&mut self, now: Time, ev: SipEvent) -> Result<(), CallCtlError> {
        let leg = ev.leg();
        let call_id = *self.legs.get(&leg).ok_or(CallCtlError::UnknownLeg(leg))?;
        let call = self.calls.get_mut(&call_id).expect("leg owner exists");

        if leg == call.caller_leg {
            return match ev {
                SipEvent::CallerCancelled { .. } | SipEvent::CallerHungUp { .. } => self.caller_gone(now, call_id),
                other => Err(unexpected(call_id, leg, name_of(&other), call.state)),
            };
        }
        let idx = call.legs.iter().position(|l| l.leg == leg).expect("leg listed in its call");
        let out = call.legs[idx].clone();
        match (ev, out.state) {
            (SipEvent::Progress { .. }, LegState::Inviting) => {
                call.legs[idx].state = LegState::Ringing;
                Ok(())
            }
            (SipEvent::Progress { .. }, _) => Ok(()),

            // An agent answered.
            (SipEvent::Answered { .. }, LegState::Inviting | LegState::Ringing) => {
                call.legs[idx].state = LegState::Answered;
                match (out.agent, call.state) {
                    (Some(agent), CallState::Queued | CallState::Arriving) => {
                        if let Err(e) = self.engine.handle(now, Input::OfferAnswered { call: call_id, agent }) {
                            // The engine no longer offers this call to this
                            // agent: end the leg the agent just answered.
                            self.bye_leg(call_id, leg);
                            return Err(e.into());
                        }
                        Ok(())
                    }
                    (None, CallState::Transferring { leg: t }) if t == leg => {
                        call.state = CallState::TransferBridged { leg };
                        let caller = call.caller_leg;
                        debug!(%call_id, "Transferring => TransferBridged");
                        self.commands.push_back(Command::StopHold { call: call_id, leg: caller });
                        self.commands.push_back(Command::Bridge { call: call_id, caller, other: leg });
                        Ok(())
                    }
                    _ => {
                        self.bye_leg(call_id, leg);
                        self.maybe_drop(call_id);
                        Ok(())
                    }
                }
            }
            // 200 OK raced our CANCEL: ACK (the stack did) and BYE it.
            (SipEvent::Answered { .. }, LegState::Cancelling) => {
                debug!(%call_id, %leg, "200 after CANCEL: BYE");
                self.bye_leg(call_id, leg);
                // It may have been the call's last leg (the caller left).
                self.maybe_drop(call_id);
                Ok(())
            }
            (SipEvent::Answered { .. }, LegState::Answered) => Ok(()), // retransmission

            (SipEvent::Failed { status, .. }, LegState::Inviting | LegState::Ringing) => {
                self.remove_leg(call_id, leg);
                let call = self.calls.get_mut(&call_id).expect("call exists");
                match out.agent {
                    Some(agent) => {
                        if call.in_engine && !matches!(call.state, CallState::Ending) {
                            let cause = status.map(RejectCause::from_sip_status).unwrap_or(RejectCause::Unreachable);
                            self.engine.handle(now, Input::OfferRejected { call: call_id, agent, cause })?;
                        }
                    }
                    None => {
                        // The overflow target failed: nothing else to try.
                        debug!(%call_id, ?status, "transfer failed, ending the call");
                        if !matches!(call.state, CallState::Ending) {
                            let caller = call.caller_leg;
                            call.state = CallState::Ending;
                            self.bye_leg(call_id, caller);
                        }
                    }
                }
                self.maybe_drop(call_id);
                Ok(())
            }
            (SipEvent::Failed { .. }, LegState::Cancelling) => {
                self.remove_leg(call_id, leg);
                self.maybe_drop(call_id);
                Ok(())
            }
            (SipEvent::Failed { .. }, LegState::Answered) => {
                // A confirmed dialog that then failed (e.g. no ACK path): as a BYE.
                self.remote_bye(now, call_id, leg)
            }
            (SipEvent::RemoteBye { .. }, LegState::Answered) => self.remote_bye(now, call_id, leg),
            (other, state) => Err(CallCtlError::Unexpected {
                call: call_id,
                leg,
                event: name_of(&other),
                state: format!("{:?}/{state:?}", call.state),
            }),
        }
    }

    /// The far end of an answered outgoing leg hung up.
    fn remote_bye(&mut self, now: Time, call_id: CallId, leg: LegId) -> Result<(), CallCtlError> {
        self.remove_leg(call_id, leg);
        let call = self.calls.get_mut(&call_id).expect("call exists");
        match call.state {
            CallState::Bridged { leg: l, .. } | CallState::TransferBridged { leg: l } if l == leg => {
                debug!(%call_id, "{:?} => Ending (far end hung up)", call.state);
                let was_bridged = matches!(call.state, CallState::Bridged { .. });
                call.state = CallState::Ending;
                let caller = call.caller_leg;
                if was_bridged && call.in_engine {
                    call.in_engine = false;
                    self.engine.handle(now, Input::CallEnded { call: call_id })?;
                }
                self.bye_leg(call_id, caller);
            }
            _ => {}
        }
        self.maybe_drop(call_id);
        Ok(())
    }

    fn caller_gone(&mut self, now: Time, call_id: CallId) -> Result<(), CallCtlError> {
        let call = self.calls.get_mut(&call_id).expect("call exists");
        let caller = call.caller_leg;
        let state = call.state;
        debug!(%call_id, "{state:?} => Ending (caller hung up)");
        call.state = CallState::Ending;
        self.legs.remove(&caller);
        match state {
            CallState::Arriving | CallState::Queued => {
                if call.in_engine {
                    call.in_engine = false;
                    // The engine answers with CancelRing for ringing agents
                    // and StopHold: apply them now, while the call exists
                    // (it is dropped below when no leg is left).
                    let r = self.engine.handle(now, Input::CallAbandoned { call: call_id });
                    self.pump();
                    r?;
                }
            }
            CallState::Bridged { leg, .. } => {
                if call.in_engine {
                    call.in_engine = false;
                    self.engine.handle(now, Input::CallEnded { call: call_id })?;
                }
                self.bye_leg(call_id, leg);
            }
            CallState::Transferring { leg } => self.cancel_leg(call_id, leg),
            CallState::TransferBridged { leg } => self.bye_leg(call_id, leg),
            CallState::Ending => {}
        }
        // Any outgoing leg still ringing is cancelled (the engine normally
        // asked already; this covers calls the engine had forgotten).
        let ringing: Vec<LegId> = self
            .calls
            .get(&call_id)
            .map(|c| &c.legs[..])
            .unwrap_or_default()
            .iter()
            .filter(|l| matches!(l.state, LegState::Inviting | LegState::Ringing))
            .map(|l| l.leg)
            .collect();
        for leg in ringing {
            self.cancel_leg(call_id, leg);
        }
        self.maybe_drop(call_id);
        Ok(())
    }

    fn new_leg(&mut self, call: CallId) -> LegId {
        let leg = LegId(self.next_leg);
        self.next_leg += 1;
        self.legs.insert(leg, call);
        leg
    }

    fn remove_leg(&mut self, call_id: CallId, leg: LegId) {
        self.legs.remove(&leg);
        if let Some(call) = self.calls.get_mut(&call_id) {
            call.legs.retain(|l| l.leg != leg);
        }
    }

    fn cancel_leg(&mut self, call_id: CallId, leg: LegId) {
        if let Some(l) = self.calls.get_mut(&call_id).and_then(|c| c.legs.iter_mut().find(|l| l.leg == leg)) {
            if matches!(l.state, LegState::Inviting | LegState::Ringing) {
                l.state = LegState::Cancelling;
                self.commands.push_back(Command::Cancel { call: call_id, leg });
            }
        }
    }

    /// BYE a leg; it is gone from our side at once (the adapter finishes the
    /// BYE transaction on its own).
    fn bye_leg(&mut self, call_id: CallId, leg: LegId) {
        self.commands.push_back(Command::Bye { call: call_id, leg });
        if let Some(call) = self.calls.get(&call_id) {
            if call.caller_leg == leg {
                self.legs.remove(&leg);
                return;
            }
        }
        self.remove_leg(call_id, leg);
    }

    fn maybe_drop(&mut self, call_id: CallId) {
        if let Some(call) = self.calls.get(&call_id) {
            if matches!(call.state, CallState::Ending) && call.legs.is_empty() && !call.in_engine {
                self.drop_call(call_id);
            }
        }
    }

    fn drop_call(&mut self, call_id: CallId) {
        if let Some(call) = self.calls.remove(&call_id) {
            self.legs.remove(&call.caller_leg);
            for l in call.legs {
                self.legs.remove(&l.leg);
            }
            debug!(%call_id, "call control done");
        }
    }

    /// Turns the engine's actions into commands.
    fn pump(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            self.apply(action);
        }
    }

    fn apply(&mut self, action: Action) {
        let call_id = match &action {
            Action::StartHold { call, .. }
            | Action::StopHold { call }
            | Action::Ring { call, .. }
            | Action::CancelRing { call, .. }
            | Action::Bridge { call, .. }
            | Action::Announce { call, .. }
            | Action::Transfer { call, .. }
            | Action::Reject { call, .. } => *call,
        };
        let Some(call) = self.calls.get_mut(&call_id) else {
            self.errors.push(CallCtlError::Engine(EngineError::UnknownCall(call_id)));
            return;
        };
        let caller = call.caller_leg;
        match action {
            Action::StartHold { music, .. } => {
                if matches!(call.state, CallState::Ending) {
                    return;
                }
                if !call.answered {
                    call.answered = true;
                    self.commands.push_back(Command::AnswerCaller { call: call_id, leg: caller });
                }
                if matches!(call.state, CallState::Arriving) {
                    debug!(%call_id, "Arriving => Queued");
                    call.state = CallState::Queued;
                }
                self.commands.push_back(Command::Hold { call: call_id, leg: caller, music });
            }
            Action::StopHold { .. } => {
                if call.answered && !matches!(call.state, CallState::Ending) {
                    self.commands.push_back(Command::StopHold { call: call_id, leg: caller });
                }
            }
            Action::Ring { agent, .. } => {
                let caller_number = call.caller.clone();
                let leg = self.new_leg(call_id);
                let call = self.calls.get_mut(&call_id).expect("call exists");
                call.legs.push(OutLeg { leg, agent: Some(agent), state: LegState::Inviting });
                self.commands.push_back(Command::Invite {
                    call: call_id,
                    leg,
                    target: Target::Agent(agent),
                    caller: caller_number,
                });
            }
            Action::CancelRing { agent, .. } => {
                let leg = call
                    .legs
                    .iter()
                    .find(|l| l.agent == Some(agent) && matches!(l.state, LegState::Inviting | LegState::Ringing))
                    .map(|l| l.leg);
                match leg {
                    Some(leg) => self.cancel_leg(call_id, leg),
                    // Already failed or answered at the same instant: the
                    // answered case is settled by the engine's Bridge.
                    None => debug!(%call_id, %agent, "CancelRing for a leg already ended"),
                }
            }
            Action::Bridge { agent, .. } => {
                let leg =
                    call.legs.iter().find(|l| l.agent == Some(agent) && l.state == LegState::Answered).map(|l| l.leg);
                match leg {
                    Some(leg) => {
                        debug!(%call_id, "{:?} => Bridged({agent})", call.state);
                        call.state = CallState::Bridged { agent, leg };
                        self.commands.push_back(Command::Bridge { call: call_id, caller, other: leg });
                    }
                    None => self.errors.push(CallCtlError::Unexpected {
                        call: call_id,
                        leg: caller,
                        event: "Bridge",
                        state: format!("{:?}", call.state),
                    }),
                }
            }
            Action::Announce { position, estimated_wait_secs, .. } => {
                self.commands.push_back(Command::Announce {
                    call: call_id,
                    leg: caller,
                    position,
                    estimated_wait_secs,
                });
            }
            Action::Transfer { uri, .. } => {
                call.in_engine = false;
                if matches!(call.state, CallState::Ending) {
                    self.maybe_drop(call_id);
                    return;
                }
                if !call.answered {
                    call.answered = true;
                    self.commands.push_back(Command::AnswerCaller { call: call_id, leg: caller });
                }
                // The engine stopped the music as it let go of the call; the
                // caller keeps hearing it until the target answers (then
                // StopHold + Bridge), not dead air while it rings.
                self.commands.retain(|c| !matches!(c, Command::StopHold { call, .. } if *call == call_id));
                let caller_number = call.caller.clone();
                let leg = self.new_leg(call_id);
                let call = self.calls.get_mut(&call_id).expect("call exists");
                debug!(%call_id, "{:?} => Transferring({uri})", call.state);
                call.state = CallState::Transferring { leg };
                call.legs.push(OutLeg { leg, agent: None, state: LegState::Inviting });
                self.commands.push_back(Command::Invite {
                    call: call_id,
                    leg,
                    target: Target::Uri(uri),
                    caller: caller_number,
                });
            }
            Action::Reject { status, .. } => {
                call.in_engine = false;
                if !matches!(call.state, CallState::Ending) {
                    let answered = call.answered;
                    call.state = CallState::Ending;
                    if answered {
                        self.bye_leg(call_id, caller);
                    } else {
                        let retry_after = (status == 503).then_some(self.config.sip.retry_after_secs);
                        self.commands.push_back(Command::RejectCaller {
                            call: call_id,
                            leg: caller,
                            status,
                            retry_after,
                        });
                        self.legs.remove(&caller);
                    }
                }
                self.maybe_drop(call_id);
            }
        }
        // Calls whose engine part ended while legs were already gone.
        if let Some(c) = self.calls.get(&call_id) {
            if !c.in_engine && matches!(c.state, CallState::Ending) {
                self.maybe_drop(call_id);
            }
        }
    }
}

fn name_of(ev: &SipEvent) -> &'static str {
    match ev {
        SipEvent::CallerCancelled { .. } => "CallerCancelled",
        SipEvent::CallerHungUp { .. } => "CallerHungUp",
        SipEvent::Progress { .. } => "Progress",
        SipEvent::Answered { .. } => "Answered",
        SipEvent::Failed { .. } => "Failed",
        SipEvent::RemoteBye { .. } => "RemoteBye",
    }
}

fn unexpected(call: CallId, leg: LegId, event: &'static str, state: CallState) -> CallCtlError {
    CallCtlError::Unexpected { call, leg, event, state: format!("{state:?}") }
}
