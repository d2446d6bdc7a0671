//! What goes in and out of the engine: ids, inputs, actions, events, errors.

use super::time::Time;
use crate::config::{Config, Strategy};
use std::sync::Arc;
use std::time::Duration;

/// A call, numbered by the shell (it knows the call before the engine does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u64);

/// An agent; stable for the life of the engine, across reloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentId(pub u32);

/// A queue; stable for the life of the engine, across reloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(pub u32);

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "call {}", self.0)
    }
}
impl std::fmt::Display for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "agent {}", self.0)
    }
}
impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "queue {}", self.0)
    }
}

/// A caller entering a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    pub id: CallId,
    pub queue: QueueId,
    /// Caller number as presented (From user), for logs and reports.
    pub caller: String,
    /// Higher is served first; 0 is normal.
    pub priority: i32,
    /// Skills this call needs on top of the queue's, with minimum levels
    /// (e.g. from an IVR's `X-Skills` header). An unknown skill name can
    /// never be met, so such a call waits for relaxation or overflow.
    pub skills: Vec<(String, u8)>,
    /// Free-form attributes carried into events (dialled number, headers).
    pub attributes: Vec<(String, String)>,
}

/// Why an offer to an agent ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectCause {
    /// Rang for the whole ring timeout (the phone said it was ringing, or
    /// the engine is not told: see [`Engine::expect_ring_progress`](crate::engine::Engine::expect_ring_progress)).
    NoAnswer,
    /// 486 Busy Here.
    Busy,
    /// 480 Temporarily Unavailable.
    Unavailable,
    /// 603 Decline.
    Declined,
    /// 408 Request Timeout, 5xx, no response at all (transport error, Timer B),
    /// or a ring timeout on a phone that never said it was ringing.
    Unreachable,
}

impl RejectCause {
    /// Maps a SIP final status of a failed INVITE to a cause.
    pub fn from_sip_status(status: u16) -> RejectCause {
        match status {
            486 | 600 => RejectCause::Busy,
            603 => RejectCause::Declined,
            408 => RejectCause::Unreachable,
            480 => RejectCause::Unavailable,
            s if s >= 500 => RejectCause::Unreachable,
            _ => RejectCause::Unavailable,
        }
    }
    /// Whether this counts toward auto-pause: the person or phone was not
    /// there. Busy and declined are deliberate and only back off.
    pub fn is_miss(self) -> bool {
        matches!(self, RejectCause::NoAnswer | RejectCause::Unavailable | RejectCause::Unreachable)
    }
    pub fn name(self) -> &'static str {
        match self {
            RejectCause::NoAnswer => "no-answer",
            RejectCause::Busy => "busy",
            RejectCause::Unavailable => "unavailable",
            RejectCause::Declined => "declined",
            RejectCause::Unreachable => "unreachable",
        }
    }
}

/// Everything that can happen to the engine, besides time passing.
#[derive(Debug, Clone)]
pub enum Input {
    CallArrived(NewCall),
    /// The admin's emergency switch for a schedule: closed, open, or back
    /// to its hours (`None`). Kept across reloads.
    SetEmergency {
        schedule: String,
        state: Option<super::schedule::Emergency>,
    },
    /// The caller hung up before being bridged (or, leniently, after: then
    /// it is handled as [`Input::CallEnded`]).
    CallAbandoned {
        call: CallId,
    },
    OfferAnswered {
        call: CallId,
        agent: AgentId,
    },
    OfferRejected {
        call: CallId,
        agent: AgentId,
        cause: RejectCause,
    },
    /// The agent's phone answered the offer's INVITE with a provisional
    /// response (180/183): it is ringing. Only counted after
    /// [`Engine::expect_ring_progress`](crate::engine::Engine::expect_ring_progress).
    OfferRinging {
        call: CallId,
        agent: AgentId,
    },
    /// A bridged call ended (either side hung up). On a call not yet bridged
    /// it is an abandon.
    CallEnded {
        call: CallId,
    },
    AgentLogin {
        agent: AgentId,
    },
    AgentLogout {
        agent: AgentId,
    },
    AgentPause {
        agent: AgentId,
        reason: String,
    },
    AgentReady {
        agent: AgentId,
    },
    AgentRegistered {
        agent: AgentId,
    },
    AgentUnregistered {
        agent: AgentId,
    },
    /// A validated new configuration, applied whole.
    ConfigReplaced(Box<Config>),
    /// Admin: move a waiting call to another queue (it keeps its priority
    /// and goes behind that queue's callers of the same priority).
    MoveCall {
        call: CallId,
        queue: QueueId,
    },
    /// A blind transfer of a bridged call (the agent's REFER, or the admin
    /// API) into `queue`: the agent's call is over (wrap-up as after any
    /// call) and the caller joins `queue` keeping its priority and its place
    /// by original arrival in its last queue (ahead of callers who joined
    /// `queue` later); its max wait there counts from now. Refused, with
    /// nothing changed, when `queue` is closed, full, or (unless it lets
    /// callers join an empty queue) has nobody logged in.
    TransferCall {
        call: CallId,
        queue: QueueId,
    },
    /// A blind transfer of a bridged call to agent `agent`, who must be
    /// available and registered: it is rung (as an offer of the call's
    /// queue, with its ring timeout) while the caller stays bridged to its
    /// agent. An answer completes the transfer (the first agent wraps up);
    /// a miss or withdrawal leaves the call as it was.
    TransferToAgent {
        call: CallId,
        agent: AgentId,
    },
    /// A waiting caller pressed a key (RFC 4733, from the media plane):
    /// its queue's exit key sends it to the exit target; any other key, or
    /// a call that is not waiting, changes nothing (`NotWaiting` for the
    /// latter).
    CallerDigit {
        call: CallId,
        digit: char,
    },
    /// The customer answered a callback's dial ([`Action::DialCallback`]).
    CallbackAnswered {
        call: CallId,
    },
    /// A callback's dial of the customer failed (busy, declined, no answer,
    /// unreachable); the agent's leg is to be released by the shell.
    CallbackFailed {
        call: CallId,
        cause: RejectCause,
    },
    /// Admin: take a waiting call out of its queue and end it with `status`.
    WithdrawCall {
        call: CallId,
        status: u16,
    },
    /// A call from agent `by`'s own registered phone (a consultation, e.g.
    /// to another team's queue while its customer holds): routed like any
    /// call, but recorded as a consultation, and the call an attended
    /// transfer ([`Input::AttendedTransfer`]) can hand the customer to.
    ConsultArrived {
        call: NewCall,
        by: AgentId,
    },
    /// An attended transfer (REFER with Replaces): bridged call `call`'s
    /// agent consulted with `consult` (its own consultation call, answered
    /// by another agent) and hands its caller over. `call` is then bridged
    /// to the consulted agent, who stays on-call; the first agent's call is
    /// over (wrap-up); `consult` finishes as a transferred consultation.
    /// Refused, with nothing changed, when `call` is not bridged (or rings a
    /// transfer), `consult` is not that agent's consultation, or it is not
    /// answered yet.
    AttendedTransfer {
        call: CallId,
        consult: CallId,
    },
    /// At start-up: a callback saved at the last shutdown
    /// ([`Engine::save_callbacks`](crate::engine::Engine::save_callbacks))
    /// is pending again in its queue (by name), as call `call`, keeping its
    /// waited time, attempts and delay left, behind callbacks restored
    /// before it. `CallbackQueueGone` when that queue (or its callback) no
    /// longer exists.
    RestoreCallback {
        call: CallId,
        saved: super::SavedCallback,
    },
    /// Shutting down: every waiting caller goes to its queue's overflow
    /// target now (callers of queues without one stay until served or the
    /// shell ends them). Bridged calls are untouched.
    Drain,
}

/// What the engine asks the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Play the queue's music class to the caller (sent on joining a queue,
    /// and again when overflow moves the caller to another queue).
    StartHold {
        call: CallId,
        queue: QueueId,
        music: String,
    },
    StopHold {
        call: CallId,
    },
    /// Ring this agent for this call; the engine times the ring itself.
    Ring {
        call: CallId,
        agent: AgentId,
        timeout: Duration,
    },
    /// Stop ringing (CANCEL the agent's INVITE).
    CancelRing {
        call: CallId,
        agent: AgentId,
    },
    /// Connect the caller to the agent who answered.
    Bridge {
        call: CallId,
        agent: AgentId,
    },
    /// Tell the caller their place and/or expected wait (each `None` when
    /// the queue does not announce it).
    Announce {
        call: CallId,
        position: Option<u32>,
        estimated_wait_secs: Option<u32>,
    },
    /// Play one of the queue's recorded announcements (`periodic_announce`).
    PlayFile {
        call: CallId,
        file: std::path::PathBuf,
    },
    /// Send the call out of acd to a SIP URI (overflow); the engine forgets it.
    Transfer {
        call: CallId,
        uri: String,
    },
    /// The caller asked for a callback: play the confirmation prompt, then
    /// hang the caller up. The engine keeps the call in its queue. `closed`:
    /// the queue's `when_closed = "callback"` (a caller maybe not answered
    /// yet; the prompt says "we will call you back when we open").
    ConfirmCallback {
        call: CallId,
        closed: bool,
    },
    /// The caller of a closed queue hears its `closed_prompt` before the
    /// queue's `when_closed` is carried out (a caller not answered yet hears
    /// it as early media, 183 + SDP, so a reject after it is never billed).
    /// The engine times it from the clip's length; the target's action
    /// (Reject, Transfer, StartHold/Ring) follows when it is over.
    ClosedPrompt {
        call: CallId,
        file: std::path::PathBuf,
    },
    /// The agent answered a callback: play them the whisper (the generic
    /// prompt, then the queue's `file`) over ringback; the engine's
    /// [`Action::DialCallback`] follows once it is over.
    CallbackWhisper {
        call: CallId,
        agent: AgentId,
        file: Option<std::path::PathBuf>,
    },
    /// Tell the waiting caller once "to keep your place and be called back,
    /// press `key`" (the queue's `callback_offer_after_secs`).
    OfferCallback {
        call: CallId,
        key: char,
    },
    /// The agent answered a callback: dial the customer (the caller's number
    /// at `trunk`, `host:port`); the agent hears ringback meanwhile. Answer
    /// with [`Input::CallbackAnswered`] or [`Input::CallbackFailed`].
    DialCallback {
        call: CallId,
        agent: AgentId,
        trunk: String,
        attempt: u32,
    },
    /// Answer the caller with a final status; the engine forgets the call.
    Reject {
        call: CallId,
        status: u16,
    },
}

/// Where a transfer sent a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferTarget {
    Queue(QueueId),
    Agent(AgentId),
}

/// How a transfer was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKind {
    /// The agent (or an admin) named the target; acd reached it.
    Blind,
    /// The agent consulted the target first and handed the caller over
    /// (REFER with Replaces).
    Attended,
}

impl TransferKind {
    pub fn name(self) -> &'static str {
        match self {
            TransferKind::Blind => "blind",
            TransferKind::Attended => "attended",
        }
    }
}

/// Why a call left a queue for its overflow target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowReason {
    MaxWait,
    QueueFull,
    NoAgents,
    QueueRemoved,
    Shutdown,
    /// The queue's schedule has it closed (its `when_closed` target).
    Closed,
}

/// How a call's time in acd ended; exactly one per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Answered {
        agent: AgentId,
    },
    Abandoned,
    /// Sent to a SIP URI.
    Overflowed {
        uri: String,
    },
    Rejected {
        status: u16,
    },
    /// A callback that was never connected: given up after `attempts`
    /// failed dials, or lost at shutdown.
    CallbackFailed {
        attempts: u32,
    },
    /// A consultation call from agent `by`'s phone ([`Input::ConsultArrived`]):
    /// `answered_by` the agent who took it (if anyone did), `transferred`
    /// when `by` handed its caller over to them (an attended transfer).
    /// Neither an answered customer call nor an abandon.
    Consultation {
        by: AgentId,
        answered_by: Option<AgentId>,
        transferred: bool,
    },
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Answered { .. } => "answered",
            Outcome::Abandoned => "abandoned",
            Outcome::Overflowed { .. } => "overflowed",
            Outcome::Rejected { .. } => "rejected",
            Outcome::CallbackFailed { .. } => "callback-failed",
            Outcome::Consultation { .. } => "consultation",
        }
    }
}

/// Why a member was not chosen for an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    LoggedOut,
    Paused(String),
    WrapUp,
    Ringing,
    OnCall,
    Unregistered,
    BackOff {
        remaining_ms: u64,
    },
    SkillMissing {
        skill: Arc<str>,
    },
    SkillTooLow {
        skill: Arc<str>,
        has: u8,
        needs: u8,
    },
    TierClosed {
        tier: u32,
        opens_in_ms: u64,
    },
    /// Eligible, but an agent of a lower tier was eligible too.
    LowerTierFirst {
        tier: u32,
    },
    /// Eligible, and the strategy chose someone else.
    NotChosen,
}

/// One member's line in a decision record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub agent: AgentId,
    /// `None`: chosen.
    pub skipped: Option<Skip>,
}

/// Why an offer went where it went: the chosen members and, in member
/// order, up to [`DECISION_DETAIL`] others with the reason each was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub strategy: Strategy,
    pub candidates: Vec<Candidate>,
    /// Members of a larger queue left out of `candidates`.
    pub omitted: usize,
}

/// How many members besides the chosen ones a decision record explains.
pub const DECISION_DETAIL: usize = 64;

impl Decision {
    pub fn chosen(&self) -> impl Iterator<Item = AgentId> + '_ {
        self.candidates.iter().filter(|c| c.skipped.is_none()).map(|c| c.agent)
    }
}

/// What happened, for logs, metrics and the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A caller reached acd (before joining, or being refused by, a queue).
    CallArrived {
        call: CallId,
        queue: QueueId,
        caller: String,
        priority: i32,
        attributes: Vec<(String, String)>,
    },
    /// An admin moved a waiting call to another queue.
    CallMoved {
        call: CallId,
        from: QueueId,
        to: QueueId,
    },
    /// A bridged call was transferred by its agent (or an admin) to
    /// another queue; `CallQueued` in `to` follows, then the agent's
    /// `AgentStateChanged` into wrap-up.
    Transferred {
        call: CallId,
        from: QueueId,
        agent: AgentId,
        to: TransferTarget,
        kind: TransferKind,
    },
    /// A waiting caller pressed its queue's exit key; `to` is the target
    /// (`queue:NAME` or a SIP URI). `CallQueued` in that queue (or the
    /// call's end) follows.
    Exited {
        call: CallId,
        from: QueueId,
        to: String,
    },
    CallQueued {
        call: CallId,
        queue: QueueId,
        priority: i32,
        position: u32,
    },
    Offered {
        call: CallId,
        queue: QueueId,
        decision: Decision,
    },
    RingNoAnswer {
        call: CallId,
        agent: AgentId,
        cause: RejectCause,
    },
    /// A ring was withdrawn without fault of the agent (another agent
    /// answered, the caller left, the agent logged out or unregistered).
    RingCancelled {
        call: CallId,
        agent: AgentId,
    },
    Answered {
        call: CallId,
        queue: QueueId,
        agent: AgentId,
        waited: Duration,
    },
    Overflowed {
        call: CallId,
        from: QueueId,
        to: String,
        reason: OverflowReason,
    },
    /// The call left the engine. Exactly once per call.
    CallFinished {
        call: CallId,
        queue: QueueId,
        outcome: Outcome,
        waited: Duration,
    },
    AgentStateChanged {
        agent: AgentId,
        from: &'static str,
        to: &'static str,
        reason: String,
    },
    ConfigApplied {
        queues: usize,
        agents: usize,
    },
    /// A step of a callback (virtual hold), see [`CallbackStep`].
    Callback {
        call: CallId,
        queue: QueueId,
        step: CallbackStep,
    },
}

/// The steps of a callback's life, each one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackStep {
    /// The caller pressed the callback key; it keeps its place.
    Requested,
    /// The caller was told it may press the key (`callback_offer_after_secs`).
    Offered,
    /// `agent` answered; the customer is dialled (attempt 1, 2, …).
    Attempt { agent: AgentId, attempt: u32 },
    /// The customer answered and is bridged to `agent`.
    Connected { agent: AgentId, attempt: u32 },
    /// The dial failed (`reason`: a [`RejectCause`] name, or `agent-left`).
    Failed { attempt: u32, reason: &'static str },
    /// No attempts left: the callback is dropped.
    GivenUp { attempts: u32 },
    /// Still pending at shutdown (no state file keeps it).
    Lost,
    /// Still pending at shutdown, written to the state file.
    Saved,
    /// Pending again after a restart, from the state file.
    Restored,
}

impl CallbackStep {
    pub fn name(&self) -> &'static str {
        match self {
            CallbackStep::Requested => "callback_requested",
            CallbackStep::Offered => "callback_offered",
            CallbackStep::Attempt { .. } => "callback_attempt",
            CallbackStep::Connected { .. } => "callback_connected",
            CallbackStep::Failed { .. } => "callback_failed",
            CallbackStep::GivenUp { .. } => "callback_given_up",
            CallbackStep::Lost => "callback_lost",
            CallbackStep::Saved => "callback_saved",
            CallbackStep::Restored => "callback_restored",
        }
    }
}

/// An input the engine cannot apply in its current state. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("{0} is not known (already finished, or never arrived)")]
    UnknownCall(CallId),
    #[error("{0} arrived twice")]
    DuplicateCall(CallId),
    #[error("{0} is not known")]
    UnknownAgent(AgentId),
    #[error("{0} is not known")]
    UnknownQueue(QueueId),
    #[error("queue \"{0}\" is closed (outside its hours, or removed by a reload)")]
    QueueClosed(String),
    /// E.g. a 200 OK that raced a CANCEL: the shell must ACK and BYE it.
    #[error("{call} is not ringing {agent}")]
    NoSuchOffer { call: CallId, agent: AgentId },
    #[error("{0} is logged out; log in first")]
    AgentLoggedOut(AgentId),
    #[error("{0} is not waiting in a queue (ringing agents are fine; bridged calls cannot move)")]
    NotWaiting(CallId),
    #[error("no schedule \"{0}\" in the config")]
    UnknownSchedule(String),
    #[error("{0} is a callback not connected yet: it cannot be moved or transferred")]
    IsCallback(CallId),
    #[error("queue \"{0}\" no longer exists or takes no callbacks: the saved callback is lost")]
    CallbackQueueGone(String),
    #[error("{0} is not a callback being dialled")]
    NotDialling(CallId),
    #[error("{0} is not bridged to an agent")]
    NotBridged(CallId),
    #[error("{0} is not free to take a transfer ({1})")]
    AgentNotFree(AgentId, &'static str),
    #[error("{0} already has a transfer ringing")]
    TransferPending(CallId),
    #[error("{0} is not a consultation call of {1}")]
    NotConsultation(CallId, AgentId),
    #[error("the consultation {0} is not answered yet")]
    ConsultNotAnswered(CallId),
    #[error("queue \"{0}\" is full")]
    QueueFull(String),
    #[error("queue \"{0}\" has nobody logged in")]
    NoAgents(String),
    #[error("time went backwards: {now} is before {last}")]
    TimeWentBackwards { now: Time, last: Time },
}
