//! Per-call control (the B2BUA half of the core) and [`Core`], which drives it
//! together with the routing [`Engine`].
//!
//! Sans-IO like the engine: the SIP adapter reports what happened on each leg
//! ([`SipEvent`]) with `now`, and pulls out what to do ([`Command`]). The
//! contract, after every `handle_*` or [`Core::incoming_call`]: call
//! [`Core::poll_command`] and [`Core::poll_event`] until each returns `None`,
//! then sleep until [`Core::poll_timeout`].
//!
//! A call's life (one caller leg; `state::CallState`, every change through
//! `Core::set_state`, logged at debug as `"Queued => Bridged(agent 1, leg 2) (agent answered)"`):
//!
//! ```text
//!            INVITE from a trunk
//!                  │ incoming_call → engine CallArrived
//!                  ▼
//!   ┌──────── Arriving ──── engine Reject ──► RejectCaller (4xx/5xx) ──► Ended
//!   │              │ engine StartHold: AnswerCaller (200 OK), Hold
//!   │              ▼
//!   │           Queued ◄─── engine Ring: Invite(agent leg); the legs below
//!   │              │ agent leg 2xx → engine OfferAnswered → engine Bridge
//!   │              ▼
//!   │           Bridged(agent, leg) ── BYE on either side: BYE the other ──► Ended
//!   │
//!   └─ engine Transfer(uri) from Arriving or Queued (AnswerCaller if not yet):
//!        Invite(transfer leg) → Transferring(leg) ── 2xx ──► TransferBridged(leg)
//!                                    └── final failure: BYE the caller ──► Ended
//!
//!   Arriving ── StartHold in an `answer = "on_agent"` queue: EarlyMedia (183 + music,
//!     or 180), no 200 ──► Early; the agent's Bridge brings AnswerCaller (early.rs)
//!   Bridged ── the agent's hold / resume re-INVITE: music / bridge (agent_hold.rs)
//!   Bridged ── agent's REFER to a queue's number (transfer.rs): ReferAccepted
//!     (the agent leg ends) ──► Queued in that queue; refused: stays Bridged
//!   Bridged ── REFER to an agent: ReferTrying, Invite(target) while bridged;
//!     target's 2xx: ReferAccepted ──► Bridged(target); failure: ReferFailed
//!
//!   any state ── caller CANCEL/BYE, media lost, engine Reject, hang_up_all ──► Ended
//! ```
//!
//! The caller is answered in every state but Arriving; the engine holds the
//! call in Arriving, Queued and Bridged (and hears CallAbandoned or
//! CallEnded when it ends there). Ended is not a state that is kept: the
//! call is dropped at once, with its admission slot ([`Core::call_count`]).
//!
//! An outgoing leg's life (`state::LegState`, logged the same way):
//!
//! ```text
//!   Inviting ── 1xx ──► Alerting ── 2xx ──► Answered ── BYE either way ──► Gone
//!      │                   │
//!      ├───────────────────┴── final failure / Timer B ──► Gone
//!      │                        (engine OfferRejected; no response at all = unreachable)
//!      └── the call lets go (CancelRing, the call ended) ──► Cancelled
//!             CANCEL + ReleaseMedia at once; the leg is an orphan of no call
//!             ── 487 / Timer B ──► Gone     ── late 2xx: BYE ──► Gone
//! ```
//!
//! Always true: a live leg has exactly one owner call, an orphan none; a
//! call holds only legs in Inviting, Alerting or Answered; every leg ends
//! with one final report from the adapter (or a BYE we send). Races between
//! acd and a peer (a CANCEL crossing a 200, a BYE for a leg already ended)
//! are counted ([`Core::races`]); events that cannot happen are bugs, logged
//! at error and counted ([`Core::errors`], the last [`RECENT_ERRORS`] kept).

mod agent_hold;
mod attended;
mod callback;
mod counters;
mod early;
mod keypad;
mod restore;
mod state;
#[cfg(test)]
mod tests;
mod transfer;

pub use attended::{names_dialog, parse_replaces, Replaces};
pub use counters::{Errors, Race, RaceCounters, RECENT_ERRORS};
pub use transfer::{parse_refer_to, ReferTo};

use crate::config::{parse_skills_header, route_for, Config};
use crate::engine::{Action, AgentId, CallId, Engine, EngineError, Event, Input, NewCall, QueueId, RejectCause, Time};
use rustc_hash::FxHashMap;
use state::{CallState, LegState, Next, OutLeg};
use std::collections::VecDeque;
use tracing::{debug, error};

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
    /// The agent (id) whose registered phone placed the call: a
    /// consultation (attended.rs). `trunk` is empty then.
    pub agent: Option<String>,
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
    /// An in-dialog REFER on a leg (an agent's blind transfer), with its
    /// Refer-To value; answered by [`Command::ReferAccepted`] or
    /// [`Command::ReferRefused`], always.
    Refer { leg: LegId, refer_to: String },
    /// An in-dialog REFER whose Refer-To carries `Replaces` (an attended
    /// transfer); `consult` is the leg whose dialog it names, when acd has
    /// one. Answered by [`Command::ReferAccepted`] or
    /// [`Command::ReferDeclined`] (attended.rs).
    ReferReplaces { leg: LegId, consult: Option<LegId> },
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
            | SipEvent::RemoteBye { leg }
            | SipEvent::Refer { leg, .. }
            | SipEvent::ReferReplaces { leg, .. } => *leg,
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
    /// A provisional response to the caller's INVITE, which stays
    /// unanswered (early.rs): with `music`, 183 Session Progress with acd's
    /// SDP and that music class as early media; without, 180 Ringing.
    EarlyMedia {
        call: CallId,
        leg: LegId,
        music: Option<String>,
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
    /// Tell the caller their place and/or estimated wait (media).
    Announce {
        call: CallId,
        leg: LegId,
        position: Option<u32>,
        estimated_wait_secs: Option<u32>,
    },
    /// Play one of the queue's recorded announcements to the caller (media).
    PlayFile {
        call: CallId,
        leg: LegId,
        file: std::path::PathBuf,
    },
    /// Take the REFER on `leg`: 202 Accepted and NOTIFY `SIP/2.0 100 Trying`
    /// (unless [`Command::ReferTrying`] sent them), NOTIFY `SIP/2.0 200 OK`
    /// (subscription terminated), then BYE the leg, in that order. The leg
    /// is gone, as after [`Command::Bye`].
    ReferAccepted {
        call: CallId,
        leg: LegId,
    },
    /// 202 Accepted to the REFER on `leg` and NOTIFY `SIP/2.0 100 Trying`:
    /// the target (an agent) is being rung; the leg goes on.
    ReferTrying {
        call: CallId,
        leg: LegId,
    },
    /// After [`Command::ReferTrying`]: the final NOTIFY `SIP/2.0 <status>`
    /// (the target did not answer); the leg goes on, still bridged.
    ReferFailed {
        call: CallId,
        leg: LegId,
        status: u16,
    },
    /// Refuse the REFER on `leg` with a final `status`; the leg goes on.
    ReferRefused {
        call: CallId,
        leg: LegId,
        status: u16,
    },
    /// Refuse an attended transfer's REFER on `leg`: `status` with a
    /// Warning saying `why`; the leg goes on.
    ReferDeclined {
        call: CallId,
        leg: LegId,
        status: u16,
        why: &'static str,
    },
    /// The caller asked for a callback: play the confirmation prompt to
    /// `leg`, then BYE it. The leg is no longer the core's. `closed`: the
    /// closed queue's prompt ("we will call you back when we open").
    ConfirmCallback {
        call: CallId,
        leg: LegId,
        closed: bool,
    },
    /// The agent who answered a callback: play the whisper (the prompt
    /// set's "This is a callback", then the queue's `file`) over ringback.
    Whisper {
        call: CallId,
        leg: LegId,
        file: Option<std::path::PathBuf>,
    },
    /// Tell the waiting caller once to press `key` to be called back.
    OfferCallback {
        call: CallId,
        leg: LegId,
        key: char,
    },
    /// Free the media (RTP ports) of an outgoing leg the call let go of
    /// before its final response; its INVITE transaction may live on.
    ReleaseMedia {
        call: CallId,
        leg: LegId,
    },
}

#[derive(Debug)]
struct Call {
    caller_leg: LegId,
    caller: String,
    state: CallState,
    /// Outgoing legs in Inviting, Alerting or Answered.
    legs: Vec<OutLeg>,
    /// The agent leg whose REFER acd refused last, and when: a phone that
    /// hangs up on a failed transfer (baresip does) sends its caller back to
    /// the queue rather than dropping it (`transfer.rs`).
    refused_refer: Option<(LegId, Time)>,
    /// The agent leg whose REFER waits for a transfer to an agent to be
    /// answered (an admin's transfer has none).
    refer_waiting: Option<LegId>,
}

/// A cancelled outgoing leg whose call let go of it: only its INVITE
/// transaction is left, to its final response.
#[derive(Debug)]
struct Orphan {
    /// The call it was for (commands still name it).
    call: CallId,
    leg: OutLeg,
}

/// How the caller's side of an ending call is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallerEnd {
    /// The caller's dialog is already over (CANCEL, BYE).
    Gone,
    /// BYE to the answered caller.
    Bye,
    /// A final error to the unanswered caller.
    Reject { status: u16, retry_after: Option<u32> },
}

/// A bug in the adapter or core: an event that cannot happen in this state.
/// Logged at error and counted; the call goes on. Races between peers are
/// not errors ([`Race`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallCtlError {
    #[error("{event} on {leg} of {call} in state {state}")]
    Unexpected { call: CallId, leg: LegId, event: &'static str, state: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl CallCtlError {
    /// Every [`CallCtlError::kind`].
    pub const KINDS: [&'static str; 2] = ["unexpected-event", "engine"];

    /// The kind, for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            CallCtlError::Unexpected { .. } => "unexpected-event",
            CallCtlError::Engine(_) => "engine",
        }
    }
}

/// The whole deterministic core: call control plus the routing engine.
pub struct Core {
    engine: Engine,
    config: Config,
    calls: FxHashMap<CallId, Call>,
    /// Live leg (caller or outgoing) → owning call. Orphans are not here.
    legs: FxHashMap<LegId, CallId>,
    orphans: FxHashMap<LegId, Orphan>,
    next_call: u64,
    next_leg: u64,
    commands: VecDeque<Command>,
    races: RaceCounters,
    errors: Errors,
    /// The call being ended, while the engine hears of it: its last actions
    /// for that call (CancelRing, StopHold) are already taken care of.
    ending: Option<CallId>,
    /// Shutting down: new calls get 503.
    draining: bool,
    /// Media shards (`media.threads` at start; the plane keeps its count
    /// until a restart): a consultation's id shares its customer's shard.
    media_shards: u64,
}

impl Core {
    pub fn new(config: &Config, now: Time) -> Core {
        let mut engine = Engine::new(config, now);
        // Call control reports every provisional (OfferRinging), so a ring
        // timeout on a phone that never answered at all is `Unreachable`.
        engine.expect_ring_progress();
        Core {
            engine,
            config: config.clone(),
            calls: FxHashMap::default(),
            legs: FxHashMap::default(),
            orphans: FxHashMap::default(),
            next_call: 1,
            next_leg: 1,
            commands: VecDeque::new(),
            races: RaceCounters::default(),
            errors: Errors::default(),
            ending: None,
            draining: false,
            media_shards: config.media.threads as u64,
        }
    }

    /// Applies a validated new config: the engine's `ConfigReplaced` (callers
    /// keep their place, agents their state) plus the numbers, trunks and
    /// limits call control reads. Listener addresses are the shell's.
    pub fn reload(&mut self, now: Time, config: Config) {
        let r = self.engine.handle(now, Input::ConfigReplaced(Box::new(config.clone())));
        if let Err(e) = r {
            self.bug(e.into());
        }
        self.config = config;
        self.pump();
    }

    /// Stops taking calls (503 + Retry-After) and sends every waiting
    /// caller to its queue's overflow target. Bridged calls go on.
    pub fn drain(&mut self, now: Time) {
        self.draining = true;
        if let Err(e) = self.engine.handle(now, Input::Drain) {
            self.bug(e.into());
        }
        self.pump();
        self.forget_finished_callbacks();
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
            // A callback's caller was hung up after the confirmation.
            let end = if matches!(call.state, CallState::Callback | CallState::CallbackDialling { .. }) {
                CallerEnd::Gone
            } else if call.state.answered() {
                CallerEnd::Bye
            } else {
                CallerEnd::Reject { status: 503, retry_after: Some(self.config.sip.retry_after_secs) }
            };
            if let Err(e) = self.end_call(Some(now), call_id, end, "shutting down") {
                self.bug(e);
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
                self.bye_out_leg(call_id, leg, "no media from the far end");
                self.end_call(Some(now), call_id, CallerEnd::Bye, "no media from the far end")
            }
            // Waiting on music too: a trunk that died without BYE (issue 12).
            state if state.answered() && call.caller_leg == leg => {
                self.end_call(Some(now), call_id, CallerEnd::Bye, "no media from the caller")
            }
            _ => Ok(()),
        };
        if let Err(e) = r {
            self.bug(e);
        }
        self.pump();
    }

    /// The caller's number, for the admin API.
    pub fn caller_of(&self, call: CallId) -> Option<&str> {
        self.calls.get(&call).map(|c| c.caller.as_str())
    }

    /// Engine time 0 is `unix_ms` on the wall clock (business hours).
    pub fn set_wall_clock(&mut self, unix_ms: i64) {
        self.engine.set_wall_clock(unix_ms);
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// Live calls: what admission counts against `sip.max_calls`. An ended
    /// call is not here, even while an orphan leg of it lingers.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }
    /// Legs with a SIP transaction or dialog acd still tracks: live legs
    /// (caller legs included) and orphans.
    pub fn leg_count(&self) -> usize {
        self.legs.len() + self.orphans.len()
    }
    /// Cancelled INVITEs of ended or rolled-over offers still waiting for
    /// their final response (they hold no call slot and no media).
    pub fn orphan_count(&self) -> usize {
        self.orphans.len()
    }
    /// The live call a leg belongs to (`None` for an orphan or an ended leg:
    /// its media is no longer needed).
    pub fn leg_call(&self, leg: LegId) -> Option<CallId> {
        self.legs.get(&leg).copied()
    }
    /// Bugs recorded since start (counts per kind, and the latest).
    pub fn errors(&self) -> &Errors {
        &self.errors
    }
    /// Races with peers the core absorbed since start, per kind.
    pub fn races(&self) -> &RaceCounters {
        &self.races
    }

    #[must_use]
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.engine.poll_event()
    }
    #[must_use]
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
        let call = self.new_call_id(inc.agent.as_deref());
        let leg = self.new_leg(call);
        self.calls.insert(
            call,
            Call {
                caller_leg: leg,
                caller: inc.caller.clone(),
                state: CallState::Arriving,
                legs: Vec::new(),
                refused_refer: None,
                refer_waiting: None,
            },
        );
        let mut attributes = vec![("dialled".to_string(), inc.dialled.clone())];
        if !inc.trunk.is_empty() {
            attributes.push(("trunk".to_string(), inc.trunk.clone()));
        }
        let new = NewCall { id: call, queue, caller: inc.caller, priority, skills, attributes };
        let arrival = self.arrival(new, inc.agent.as_deref());
        if let Err(e) = self.engine.handle(now, arrival) {
            self.set_state(call, Next::Ended, "the engine refused it");
            self.legs.remove(&leg);
            return Err(match e {
                EngineError::QueueClosed(q) => Refusal::QueueClosed(q),
                other => {
                    self.bug(other.into());
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
            self.bug(e.into());
        }
        self.pump();
    }

    /// What happened on a leg.
    pub fn handle_sip(&mut self, now: Time, ev: SipEvent) {
        if let Err(e) = self.sip_event(now, ev) {
            self.bug(e);
        }
        self.pump();
    }

    // ----- races and bugs --------------------------------------------------

    fn race(&mut self, race: Race, leg: LegId, what: &str) {
        debug!(%leg, race = race.name(), "race: {what}");
        self.races.count(race);
    }

    fn bug(&mut self, e: CallCtlError) {
        error!(error = %e, "call control bug");
        self.errors.push(e);
    }

    /// An engine input about an offer: the engine withdrawing that offer at
    /// the same instant (its ring timeout fired first) is a race.
    fn offer_input(&mut self, now: Time, leg: LegId, input: Input) -> Result<(), CallCtlError> {
        match self.engine.handle(now, input) {
            Err(EngineError::NoSuchOffer { .. }) => {
                self.race(Race::OfferWithdrawn, leg, "the engine withdrew the offer at this instant");
                Ok(())
            }
            r => r.map_err(CallCtlError::from),
        }
    }

    // ----- state changes ---------------------------------------------------

    /// Every change of a call's state. [`Next::Ended`] drops the call (and
    /// returns it); its legs are the caller's to settle ([`Core::end_call`]).
    fn set_state(&mut self, call_id: CallId, next: Next, reason: &str) -> Option<Call> {
        let call = self.calls.get_mut(&call_id)?;
        debug!(call = %call_id, "{} => {next} ({reason})", call.state);
        match next {
            Next::To(state) => {
                call.state = state;
                None
            }
            Next::Ended => self.calls.remove(&call_id),
        }
    }

    /// Ends a live call at once: the caller's side as `caller` says, its
    /// answered legs BYEd, its unanswered legs cancelled (orphans). With
    /// `now`, the engine hears of it if it holds the call (CallAbandoned, or
    /// CallEnded when bridged); without, the engine is the one ending it.
    fn end_call(
        &mut self,
        now: Option<Time>,
        call_id: CallId,
        caller: CallerEnd,
        reason: &str,
    ) -> Result<(), CallCtlError> {
        let Some(call) = self.set_state(call_id, Next::Ended, reason) else { return Ok(()) };
        let caller_leg = call.caller_leg;
        self.legs.remove(&caller_leg);
        match caller {
            CallerEnd::Gone => {}
            CallerEnd::Bye => self.commands.push_back(Command::Bye { call: call_id, leg: caller_leg }),
            CallerEnd::Reject { status, retry_after } => {
                self.commands.push_back(Command::RejectCaller { call: call_id, leg: caller_leg, status, retry_after })
            }
        }
        for mut l in call.legs {
            match l.state {
                LegState::Inviting | LegState::Alerting => self.orphan(call_id, l, reason),
                LegState::Answered => {
                    self.legs.remove(&l.leg);
                    set_leg_state(call_id, &mut l, LegState::Gone, reason);
                    self.commands.push_back(Command::Bye { call: call_id, leg: l.leg });
                }
                LegState::Cancelled | LegState::Gone => {
                    self.legs.remove(&l.leg);
                    self.bug(CallCtlError::Unexpected {
                        call: call_id,
                        leg: l.leg,
                        event: "end of the call",
                        state: format!("a {} leg kept in the call", l.state),
                    });
                }
            }
        }
        if let Some(now) = now.filter(|_| call.state.in_engine()) {
            let input = match call.state {
                CallState::Bridged { .. } => Input::CallEnded { call: call_id },
                _ => Input::CallAbandoned { call: call_id },
            };
            self.ending = Some(call_id);
            let r = self.engine.handle(now, input);
            self.pump();
            self.ending = None;
            r?;
        }
        Ok(())
    }

    /// The call lets go of an unanswered leg: CANCEL it, free its media, and
    /// keep it as an orphan until its INVITE transaction ends.
    fn orphan(&mut self, call_id: CallId, mut l: OutLeg, reason: &str) {
        self.legs.remove(&l.leg);
        set_leg_state(call_id, &mut l, LegState::Cancelled, reason);
        self.commands.push_back(Command::Cancel { call: call_id, leg: l.leg });
        self.commands.push_back(Command::ReleaseMedia { call: call_id, leg: l.leg });
        self.orphans.insert(l.leg, Orphan { call: call_id, leg: l });
    }

    /// Takes an outgoing leg out of its live call (it has ended).
    fn take_leg(&mut self, call_id: CallId, leg: LegId, reason: &str) -> Option<OutLeg> {
        self.legs.remove(&leg);
        let call = self.calls.get_mut(&call_id)?;
        let i = call.legs.iter().position(|l| l.leg == leg)?;
        let mut l = call.legs.remove(i);
        set_leg_state(call_id, &mut l, LegState::Gone, reason);
        Some(l)
    }

    /// BYE an answered outgoing leg; it is gone from our side at once (the
    /// adapter finishes the BYE transaction on its own).
    fn bye_out_leg(&mut self, call_id: CallId, leg: LegId, reason: &str) {
        self.take_leg(call_id, leg, reason);
        self.commands.push_back(Command::Bye { call: call_id, leg });
    }

    fn new_leg(&mut self, call: CallId) -> LegId {
        let leg = LegId(self.next_leg);
        self.next_leg += 1;
        self.legs.insert(leg, call);
        leg
    }

    // ----- SIP events ------------------------------------------------------

    fn sip_event(&mut self, now: Time, ev: SipEvent) -> Result<(), CallCtlError> {
        let leg = ev.leg();
        if self.orphans.contains_key(&leg) {
            return self.orphan_event(ev);
        }
        let Some(&call_id) = self.legs.get(&leg) else {
            self.race(Race::LegAlreadyEnded, leg, name_of(&ev));
            return Ok(());
        };
        let call = self.calls.get(&call_id).expect("leg owner exists");
        let state = call.state;
        if matches!(state, CallState::Callback | CallState::CallbackDialling { .. }) {
            return self.callback_sip_event(now, call_id, ev, state);
        }

        if leg == call.caller_leg {
            return match ev {
                SipEvent::CallerCancelled { .. } => {
                    if state.answered() {
                        self.race(Race::CancelAfterAnswer, leg, "the caller's CANCEL crossed our 200");
                    }
                    self.end_call(Some(now), call_id, CallerEnd::Gone, "caller cancelled")
                }
                // RemoteBye: a caller leg acd dialled (a callback's customer).
                SipEvent::CallerHungUp { .. } | SipEvent::RemoteBye { .. } => {
                    self.end_call(Some(now), call_id, CallerEnd::Gone, "caller hung up")
                }
                SipEvent::Refer { .. } | SipEvent::ReferReplaces { .. } => self.refer_elsewhere(call_id, leg, state),
                other => Err(unexpected(call_id, leg, name_of(&other), state)),
            };
        }
        if let SipEvent::Refer { refer_to, .. } = &ev {
            return self.refer(now, call_id, leg, refer_to);
        }
        if let SipEvent::ReferReplaces { consult, .. } = ev {
            return self.refer_replaces(now, call_id, leg, consult);
        }
        let idx = call.legs.iter().position(|l| l.leg == leg).expect("leg listed in its call");
        let out = call.legs[idx];
        match (ev, out.state) {
            (SipEvent::Progress { status, .. }, LegState::Inviting) => {
                let l = &mut self.calls.get_mut(&call_id).expect("call exists").legs[idx];
                set_leg_state(call_id, l, LegState::Alerting, &status.to_string());
                match (out.agent, state) {
                    (Some(agent), CallState::Queued | CallState::Early { .. } | CallState::Bridged { .. }) => {
                        self.offer_input(now, leg, Input::OfferRinging { call: call_id, agent })
                    }
                    _ => Ok(()),
                }
            }
            // More provisionals, or one overtaken by the 2xx.
            (SipEvent::Progress { .. }, _) => Ok(()),

            (SipEvent::Answered { .. }, LegState::Inviting | LegState::Alerting) => {
                let l = &mut self.calls.get_mut(&call_id).expect("call exists").legs[idx];
                set_leg_state(call_id, l, LegState::Answered, "2xx");
                match (out.agent, state) {
                    // A ring, or a transfer ringing another agent.
                    (Some(agent), CallState::Queued | CallState::Early { .. } | CallState::Bridged { .. }) => {
                        match self.engine.handle(now, Input::OfferAnswered { call: call_id, agent }) {
                            Ok(()) => Ok(()), // the engine's Bridge follows
                            Err(e) => {
                                // The engine no longer offers this call to
                                // this agent: end the leg just answered.
                                self.bye_out_leg(call_id, leg, "answered an offer already withdrawn");
                                match e {
                                    EngineError::NoSuchOffer { .. } => {
                                        self.race(Race::OfferWithdrawn, leg, "2xx for an offer already withdrawn");
                                        Ok(())
                                    }
                                    e => Err(e.into()),
                                }
                            }
                        }
                    }
                    (None, CallState::Transferring { leg: t }) if t == leg => {
                        let caller = self.calls[&call_id].caller_leg;
                        self.set_state(call_id, Next::To(CallState::TransferBridged { leg }), "target answered");
                        self.commands.push_back(Command::StopHold { call: call_id, leg: caller });
                        self.commands.push_back(Command::Bridge { call: call_id, caller, other: leg });
                        Ok(())
                    }
                    _ => {
                        self.bye_out_leg(call_id, leg, "answered, but the call has no use for it");
                        Err(unexpected(call_id, leg, "Answered", state))
                    }
                }
            }
            (SipEvent::Answered { .. }, LegState::Answered) => Ok(()), // retransmission

            (SipEvent::Failed { status, .. }, LegState::Inviting | LegState::Alerting) => {
                let why = status.map_or("no response".to_string(), |s| s.to_string());
                self.take_leg(call_id, leg, &why);
                match (out.agent, state) {
                    (Some(agent), CallState::Queued | CallState::Early { .. }) => {
                        let cause = status.map(RejectCause::from_sip_status).unwrap_or(RejectCause::Unreachable);
                        self.offer_input(now, leg, Input::OfferRejected { call: call_id, agent, cause })
                    }
                    (Some(agent), CallState::Bridged { leg: agent_leg, .. }) => {
                        self.transfer_ring_failed(now, call_id, agent_leg, agent, status)
                    }
                    // The overflow target failed: nothing else to try.
                    (None, CallState::Transferring { leg: t }) if t == leg => {
                        self.end_call(Some(now), call_id, CallerEnd::Bye, "transfer failed")
                    }
                    _ => Err(unexpected(call_id, leg, "Failed", state)),
                }
            }
            // A confirmed dialog that then failed (e.g. no ACK path): as a BYE.
            (SipEvent::Failed { .. } | SipEvent::RemoteBye { .. }, LegState::Answered) => {
                self.remote_bye(now, call_id, leg, state)
            }
            (other, leg_state) => Err(CallCtlError::Unexpected {
                call: call_id,
                leg,
                event: name_of(&other),
                state: format!("{state}/{leg_state}"),
            }),
        }
    }

    /// An event on a cancelled leg: its INVITE transaction ends.
    fn orphan_event(&mut self, ev: SipEvent) -> Result<(), CallCtlError> {
        let leg = ev.leg();
        let (race, reason) = match &ev {
            SipEvent::Progress { .. } => return Ok(()), // the CANCEL will end it
            SipEvent::Answered { .. } => (Some(Race::AnswerAfterCancel), "2xx crossed the CANCEL: BYE"),
            SipEvent::Failed { status: Some(487) | None, .. } => (None, "INVITE transaction over"),
            SipEvent::Failed { .. } => (Some(Race::FinalAfterCancel), "a final crossed the CANCEL"),
            // Its dialog is over for acd: the adapter answers an unanswered REFER.
            SipEvent::Refer { .. } | SipEvent::ReferReplaces { .. } => return Ok(()),
            SipEvent::RemoteBye { .. } | SipEvent::CallerCancelled { .. } | SipEvent::CallerHungUp { .. } => {
                let o = &self.orphans[&leg];
                return Err(CallCtlError::Unexpected {
                    call: o.call,
                    leg,
                    event: name_of(&ev),
                    state: "orphan/Cancelled".to_string(),
                });
            }
        };
        let mut o = self.orphans.remove(&leg).expect("orphan exists");
        set_leg_state(o.call, &mut o.leg, LegState::Gone, reason);
        if let Some(race) = race {
            self.race(race, leg, reason);
        }
        if matches!(ev, SipEvent::Answered { .. }) {
            self.commands.push_back(Command::Bye { call: o.call, leg });
        }
        Ok(())
    }

    /// The far end of an answered outgoing leg hung up.
    fn remote_bye(&mut self, now: Time, call_id: CallId, leg: LegId, state: CallState) -> Result<(), CallCtlError> {
        self.take_leg(call_id, leg, "BYE from the far end");
        if self.back_to_queue_after_refused_transfer(now, call_id, leg, state) {
            return Ok(());
        }
        match state {
            CallState::Bridged { leg: l, .. } | CallState::TransferBridged { leg: l } if l == leg => {
                self.end_call(Some(now), call_id, CallerEnd::Bye, "far end hung up")
            }
            _ => Err(unexpected(call_id, leg, "RemoteBye", state)),
        }
    }

    // ----- engine actions --------------------------------------------------

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
            | Action::PlayFile { call, .. }
            | Action::Transfer { call, .. }
            | Action::ConfirmCallback { call, .. }
            | Action::ClosedPrompt { call, .. }
            | Action::CallbackWhisper { call, .. }
            | Action::OfferCallback { call, .. }
            | Action::DialCallback { call, .. }
            | Action::Reject { call, .. } => *call,
        };
        if self.ending == Some(call_id) {
            // CancelRing, StopHold: settled as the call ended.
            debug!(call = %call_id, ?action, "for the call just ended: nothing to do");
            return;
        }
        let Some(call) = self.calls.get(&call_id) else {
            self.bug(CallCtlError::Engine(EngineError::UnknownCall(call_id)));
            return;
        };
        let (state, caller) = (call.state, call.caller_leg);
        let wrong = |action: &'static str| unexpected(call_id, caller, action, state);
        match action {
            Action::StartHold { music, queue, .. } => match state {
                CallState::Arriving => self.start_waiting(call_id, caller, queue, music),
                // Moved to another queue: its music.
                CallState::Queued | CallState::Early { music: true } => {
                    self.commands.push_back(Command::Hold { call: call_id, leg: caller, music })
                }
                CallState::Early { music: false } => {} // 180: no media to play on
                _ => self.bug(wrong("StartHold")),
            },
            Action::StopHold { .. } => {
                if state.answered() || state == (CallState::Early { music: true }) {
                    self.commands.push_back(Command::StopHold { call: call_id, leg: caller });
                }
            }
            Action::Ring { agent, .. } => {
                // Bridged: a transfer to an agent (transfer.rs).
                if !matches!(
                    state,
                    CallState::Queued | CallState::Early { .. } | CallState::Bridged { .. } | CallState::Callback
                ) {
                    return self.bug(wrong("Ring"));
                }
                let caller_number = call.caller.clone();
                let leg = self.new_leg(call_id);
                let call = self.calls.get_mut(&call_id).expect("call exists");
                call.legs.push(OutLeg { leg, agent: Some(agent), state: LegState::Inviting });
                debug!(call = %call_id, %leg, %agent, "=> Inviting (ring)");
                self.commands.push_back(Command::Invite {
                    call: call_id,
                    leg,
                    target: Target::Agent(agent),
                    caller: caller_number,
                });
            }
            Action::CancelRing { agent, .. } => {
                let i = call
                    .legs
                    .iter()
                    .position(|l| l.agent == Some(agent) && matches!(l.state, LegState::Inviting | LegState::Alerting));
                match i {
                    Some(i) => {
                        let l = self.calls.get_mut(&call_id).expect("call exists").legs.remove(i);
                        self.orphan(call_id, l, "ring withdrawn");
                        if let CallState::Bridged { .. } = state {
                            // A transfer's ring timed out or was withdrawn.
                            let now = self.engine.now();
                            self.transfer_ring_ended(now, call_id, 480);
                        }
                    }
                    // Already failed or answered at the same instant: the
                    // answered case is settled by the engine's Bridge (or
                    // counted as a withdrawn offer).
                    None => debug!(call = %call_id, %agent, "CancelRing for a leg already ended"),
                }
            }
            Action::Bridge { .. } if matches!(state, CallState::CallbackDialling { .. }) => {
                self.callback_bridge(call_id)
            }
            Action::Bridge { agent, .. } => {
                let leg =
                    call.legs.iter().find(|l| l.agent == Some(agent) && l.state == LegState::Answered).map(|l| l.leg);
                match leg {
                    Some(leg) if state.waiting() => {
                        if !state.answered() {
                            self.commands.push_back(Command::AnswerCaller { call: call_id, leg: caller });
                        }
                        self.set_state(call_id, Next::To(CallState::Bridged { agent, leg }), "agent answered");
                        self.commands.push_back(Command::Bridge { call: call_id, caller, other: leg });
                    }
                    Some(leg) if matches!(state, CallState::Bridged { .. }) => {
                        self.transfer_answered(call_id, state, agent, leg)
                    }
                    _ => self.bug(wrong("Bridge")),
                }
            }
            Action::ConfirmCallback { closed, .. } => self.confirm_callback(call_id, closed),
            Action::ClosedPrompt { file, .. } => self.closed_prompt(call_id, file),
            Action::DialCallback { agent, trunk, .. } => self.dial_callback(call_id, agent, trunk),
            Action::CallbackWhisper { agent, file, .. } => self.callback_whisper(call_id, agent, file),
            Action::OfferCallback { key, .. } => self.offer_callback(call_id, key),
            Action::Announce { position, estimated_wait_secs, .. } => {
                self.commands.push_back(Command::Announce {
                    call: call_id,
                    leg: caller,
                    position,
                    estimated_wait_secs,
                });
            }
            Action::PlayFile { file, .. } => {
                self.commands.push_back(Command::PlayFile { call: call_id, leg: caller, file });
            }
            Action::Transfer { uri, .. } => {
                if !matches!(state, CallState::Arriving | CallState::Queued | CallState::Early { .. }) {
                    return self.bug(wrong("Transfer"));
                }
                if !state.answered() {
                    self.commands.push_back(Command::AnswerCaller { call: call_id, leg: caller });
                }
                // The engine stopped the music as it let go of the call; the
                // caller keeps hearing it until the target answers (then
                // StopHold + Bridge), not dead air while it rings.
                self.commands.retain(|c| !matches!(c, Command::StopHold { call, .. } if *call == call_id));
                let caller_number = call.caller.clone();
                // Any ring still live (the engine withdraws them first).
                let live: Vec<OutLeg> = std::mem::take(&mut self.calls.get_mut(&call_id).expect("call").legs);
                for mut l in live {
                    self.legs.remove(&l.leg);
                    match l.state {
                        LegState::Answered => {
                            set_leg_state(call_id, &mut l, LegState::Gone, "call transferred");
                            self.commands.push_back(Command::Bye { call: call_id, leg: l.leg });
                        }
                        _ => self.orphan(call_id, l, "call transferred"),
                    }
                }
                let leg = self.new_leg(call_id);
                self.set_state(call_id, Next::To(CallState::Transferring { leg }), &format!("overflow to {uri}"));
                let call = self.calls.get_mut(&call_id).expect("call exists");
                call.legs.push(OutLeg { leg, agent: None, state: LegState::Inviting });
                self.commands.push_back(Command::Invite {
                    call: call_id,
                    leg,
                    target: Target::Uri(uri),
                    caller: caller_number,
                });
            }
            Action::Reject { status, .. } => {
                let end = if state == CallState::Callback {
                    CallerEnd::Gone // hung up after the callback confirmation
                } else if state.answered() {
                    CallerEnd::Bye
                } else {
                    let retry_after = (status == 503).then_some(self.config.sip.retry_after_secs);
                    CallerEnd::Reject { status, retry_after }
                };
                if let Err(e) = self.end_call(None, call_id, end, &format!("rejected ({status})")) {
                    self.bug(e);
                }
            }
        }
    }
}

/// Every change of an outgoing leg's state.
fn set_leg_state(call: CallId, l: &mut OutLeg, next: LegState, reason: &str) {
    debug!(%call, leg = %l.leg, "{} => {next} ({reason})", l.state);
    l.state = next;
}

fn name_of(ev: &SipEvent) -> &'static str {
    match ev {
        SipEvent::CallerCancelled { .. } => "CallerCancelled",
        SipEvent::CallerHungUp { .. } => "CallerHungUp",
        SipEvent::Progress { .. } => "Progress",
        SipEvent::Answered { .. } => "Answered",
        SipEvent::Failed { .. } => "Failed",
        SipEvent::RemoteBye { .. } => "RemoteBye",
        SipEvent::Refer { .. } => "Refer",
        SipEvent::ReferReplaces { .. } => "ReferReplaces",
    }
}

fn unexpected(call: CallId, leg: LegId, event: &'static str, state: CallState) -> CallCtlError {
    CallCtlError::Unexpected { call, leg, event, state: state.to_string() }
}
