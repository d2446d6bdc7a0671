//! The states of a call and of its outgoing legs, as call control keeps them.
//!
//! [`CallState`] is the whole truth about a live call: whether the caller is
//! answered and whether the engine still holds the call follow from it
//! ([`CallState::answered`], [`CallState::in_engine`]); an ended call is not
//! kept at all ([`Next::Ended`]). An outgoing leg ([`OutLeg`]) belongs to its
//! call while it is [`LegState::Inviting`], [`LegState::Alerting`] or
//! [`LegState::Answered`]; a [`LegState::Cancelled`] leg belongs to no call
//! (it is an orphan in [`super::Core`], waiting for its INVITE transaction
//! to end).

use crate::engine::AgentId;

use super::LegId;

/// Where a live call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallState {
    /// Handed to the engine, the caller not answered yet.
    Arriving,
    /// Answered, with hold music, in a queue of the engine (agents may ring).
    Queued,
    /// Not answered: in a queue of the engine that answers only when an agent
    /// does (183 with early-media music, or 180 when not `music`); agents
    /// may ring (early.rs).
    Early { music: bool },
    /// Answered and bridged to `agent`'s answered `leg`; the engine holds the
    /// call (the agent is on it).
    Bridged { agent: AgentId, leg: LegId },
    /// Answered; the engine let go and sent the call to a URI, whose INVITE
    /// (`leg`) has no final response yet. The caller still hears music.
    Transferring { leg: LegId },
    /// Answered and bridged to the transfer target's answered `leg`; the
    /// engine let go.
    TransferBridged { leg: LegId },
    /// A callback: the caller was hung up after the confirmation; the engine
    /// keeps its place (agents may ring). callback.rs
    Callback,
    /// A callback's agent answered (`agent_leg`, hearing ringback) and the
    /// customer is being dialled (`customer`).
    CallbackDialling { agent: AgentId, agent_leg: LegId, customer: LegId },
}

impl CallState {
    /// The caller's INVITE was answered with our 200 OK.
    pub(super) fn answered(self) -> bool {
        !matches!(self, CallState::Arriving | CallState::Early { .. })
    }
    /// The engine still holds the call: it must hear how the call ends.
    pub(super) fn in_engine(self) -> bool {
        matches!(
            self,
            CallState::Arriving
                | CallState::Queued
                | CallState::Early { .. }
                | CallState::Bridged { .. }
                | CallState::Callback
                | CallState::CallbackDialling { .. }
        )
    }
    /// Waiting in a queue for an agent, answered or in early media.
    pub(super) fn waiting(self) -> bool {
        matches!(self, CallState::Queued | CallState::Early { .. })
    }
}

impl std::fmt::Display for CallState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallState::Arriving => write!(f, "Arriving"),
            CallState::Queued => write!(f, "Queued"),
            CallState::Early { music: true } => write!(f, "Early(183, music)"),
            CallState::Early { music: false } => write!(f, "Early(180)"),
            CallState::Bridged { agent, leg } => write!(f, "Bridged({agent}, {leg})"),
            CallState::Transferring { leg } => write!(f, "Transferring({leg})"),
            CallState::TransferBridged { leg } => write!(f, "TransferBridged({leg})"),
            CallState::Callback => write!(f, "Callback"),
            CallState::CallbackDialling { agent, agent_leg, customer } => {
                write!(f, "CallbackDialling({agent}, {agent_leg}, customer {customer})")
            }
        }
    }
}

/// Where a call goes next: a state, or the end (the call is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    To(CallState),
    Ended,
}

impl std::fmt::Display for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Next::To(s) => s.fmt(f),
            Next::Ended => write!(f, "Ended"),
        }
    }
}

/// An outgoing leg: acd's INVITE to an agent's phone (`agent`) or to an
/// overflow target (`agent: None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OutLeg {
    pub(super) leg: LegId,
    pub(super) agent: Option<AgentId>,
    pub(super) state: LegState,
}

/// Where an outgoing leg is, from acd's INVITE to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LegState {
    /// INVITE sent; no response heard yet.
    Inviting,
    /// The phone answered with a provisional response (180/183): it rings.
    Alerting,
    /// A 2xx arrived. For a ring: only until the engine's Bridge, within
    /// the same input.
    Answered,
    /// The call let go of the leg before a final response: CANCEL sent and
    /// media released; an orphan of the core whose INVITE transaction lives
    /// on to its final response (487, Timer B, or a late 2xx that is BYEd).
    Cancelled,
    /// Forgotten: a final failure, a BYE either way, or the orphan's end.
    Gone,
}

impl std::fmt::Display for LegState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}
