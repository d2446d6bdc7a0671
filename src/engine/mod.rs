//! The routing engine: queues, agents, waiting callers, offers and rollover.
//!
//! A deterministic, sans-IO state machine. It owns every queue, agent and
//! call that acd knows; nothing else mutates them. It never reads a clock,
//! spawns, touches a socket or draws unseeded randomness: time comes in as
//! `now`, randomness from a ChaCha8 RNG seeded from config.
//!
//! # Driving it
//! ```text
//! engine.handle(now, input)?;      // or engine.handle_timeout(now)
//! while let Some(a) = engine.poll_action() { /* ring, cancel, bridge… */ }
//! while let Some(e) = engine.poll_event()  { /* log, metrics */ }
//! sleep_until(engine.poll_timeout());      // then handle_timeout(now)
//! ```
//! After every `handle*` call the caller drains `poll_action` and
//! `poll_event` until they return `None`, then re-arms its one sleep from
//! `poll_timeout`. `handle` also fires every timer due at or before `now`
//! first, so the order of inputs and timers is decided by time alone. An
//! input that does not fit the current state returns an [`EngineError`] and
//! changes nothing.
//!
//! # A call's life
//! ```text
//!            CallArrived
//!                │  full / no agents ──▶ overflow target or Reject
//!                ▼
//!   ┌──────▶ Waiting ───── max wait ────▶ overflow (queue: Waiting there;
//!   │            │                                   uri: Transfer; reject)
//!   │    dispatch│ Ring(agent…)
//!   │            ▼
//!   └─────── Offering ── OfferAnswered ──▶ Bridged ── CallEnded ──▶ finished
//!    ring timeout /  (ring-all: the other      (agent ▶ wrap-up)
//!    486/480/603/408  rings are cancelled)
//!    (agent backs off)
//!   CallAbandoned from Waiting or Offering ──▶ finished (rings cancelled)
//!   Bridged ── TransferCall(queue) ──▶ Waiting in that queue, same priority
//!              and place (the agent ▶ wrap-up)          (transfer.rs)
//!   Bridged ── TransferToAgent: the target rings, the call stays Bridged;
//!              their OfferAnswered ▶ Bridged to them (first agent ▶ wrap-up)
//! ```
//! # An agent's life
//! ```text
//! LoggedOut ─login─▶ Available ─offer─▶ Ringing ─answer─▶ OnCall ─end─▶ WrapUp ─timer/ready─▶ Available
//!                      ▲  │pause           │ miss: back-off, maybe auto-pause
//!                      │  ▼                ▼
//!                      └─ Paused ◀──── (pause/logout while OnCall wait for the call to end)
//! ```
//! An agent is offered a call only when Available, registered, past any
//! back-off, in an open tier of the call's queue and meeting the call's
//! skill levels at that moment (relaxation applied). An agent rings for at
//! most one call; a call may ring several agents only under `ring-all`.
//!
//! # Routing
//! After each input the engine serves every (waiting call, eligible agent)
//! pair it can: each queue offers its first caller in priority-then-arrival
//! order that some eligible agent can take; between queues the caller with
//! the higher effective priority goes first, then the cross-queue policy
//! (oldest caller, or wait × queue weight). Only queues touched since the
//! last pass ("dirty") are scanned, which keeps a decision independent of the
//! number of idle queues; inside a queue the walk over its index of
//! available members (`index.rs`, `routing.rs`) stops at the first one who
//! may take the call, which keeps it independent of the number of idle agents.

mod announce;
mod attended;
mod callback;
mod closed;
mod empty;
mod hours;
mod index;
mod keypad;
mod order;
mod routing;
pub mod schedule;
mod time;
mod timer;
mod transfer;
mod types;

pub use callback::SavedCallback;
pub use time::Time;
pub use timer::TimerKind;
pub use types::*;

use crate::config::{
    AgentConfig, Config, CrossQueuePolicy, EngineSettings, OverflowTarget, QueueConfig, RemovedQueueCallers, Strategy,
    TieBreak, WhenNoAgents,
};
use index::MemberIndex;
use order::{Entry, WaitingLine};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap as HashMap;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use timer::Timers;
use tracing::debug;

/// Where an agent is. Registration (is the phone reachable) is kept beside
/// it, since a logged-in agent may lose and regain registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentState {
    LoggedOut,
    /// Idle since `since` (longest-idle counts from here; a withdrawn or
    /// missed offer does not reset it).
    Available {
        since: Time,
    },
    Ringing {
        call: CallId,
        since: Time,
    },
    OnCall {
        call: CallId,
        since: Time,
    },
    /// Ends by timer at `until`, or earlier when the agent says ready.
    WrapUp {
        until: Time,
    },
    Paused {
        reason: String,
        since: Time,
    },
}

impl AgentState {
    pub fn name(&self) -> &'static str {
        match self {
            AgentState::LoggedOut => "logged-out",
            AgentState::Available { .. } => "available",
            AgentState::Ringing { .. } => "ringing",
            AgentState::OnCall { .. } => "on-call",
            AgentState::WrapUp { .. } => "wrap-up",
            AgentState::Paused { .. } => "paused",
        }
    }
}

/// A state change requested while the agent is on a call, applied when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AfterCall {
    Pause(String),
    Logout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SkillId(u16);

impl SkillId {
    /// A skill no config declares: no agent has it.
    const UNDECLARED: SkillId = SkillId(u16::MAX);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Req {
    skill: SkillId,
    min: u8,
}

#[derive(Debug, Clone)]
struct RelaxStep {
    after_ms: u64,
    set: Vec<Req>,
    drop: Vec<SkillId>,
    add: Vec<Req>,
}

#[derive(Debug)]
struct Agent {
    name: String,
    state: AgentState,
    registered: bool,
    /// Removed by a reload: never offered again, logged out when free.
    removed: bool,
    /// Level per [`SkillId`]; 0 = does not have it.
    levels: Vec<u8>,
    skill_count: u32,
    wrap_up_secs: Option<u32>,
    /// Queues the agent serves, with the agent's member index in each.
    queues: Vec<(QueueId, u32)>,
    backoff_until: Time,
    misses: u32,
    after_call: Option<AfterCall>,
    idle_since: Time,
    /// While Ringing: the phone said it rings (`Input::OfferRinging`).
    alerting: bool,
}

/// An agent's standing for routing, one byte per agent in a dense array so
/// that scanning hundreds of members touches little memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Gone,
    LoggedOut,
    Paused,
    WrapUp,
    Ringing,
    OnCall,
    Unregistered,
    Available,
}

/// Why a member cannot take a call, without allocating; see `Engine::explain`.
#[derive(Debug, Clone, Copy)]
enum Why {
    Tag(Tag),
    BackOff(u64),
    TierClosed(u32, u64),
    SkillMissing(SkillId),
    SkillTooLow(SkillId, u8, u8),
}

impl Agent {
    fn tag(&self) -> Tag {
        match self.state {
            _ if self.removed => Tag::Gone,
            AgentState::LoggedOut => Tag::LoggedOut,
            AgentState::Paused { .. } => Tag::Paused,
            AgentState::WrapUp { .. } => Tag::WrapUp,
            AgentState::Ringing { .. } => Tag::Ringing,
            AgentState::OnCall { .. } => Tag::OnCall,
            AgentState::Available { .. } if !self.registered => Tag::Unregistered,
            AgentState::Available { .. } => Tag::Available,
        }
    }
    fn level(&self, s: SkillId) -> u8 {
        self.levels.get(s.0 as usize).copied().unwrap_or(0)
    }
    /// May be offered calls (back-off, tiers and skills aside).
    fn dispatchable(&self) -> bool {
        self.tag() == Tag::Available
    }
}

#[derive(Debug, Clone)]
struct Member {
    agent: AgentId,
    tier: u32,
    weight: u32,
    /// Calls this member answered from this queue (fewest-calls).
    answered: u64,
}

#[derive(Debug)]
struct Queue {
    cfg: QueueConfig,
    required: Vec<Req>,
    relax: Vec<RelaxStep>,
    members: Vec<Member>,
    line: WaitingLine,
    /// The members who are available now, in the strategy's order.
    index: MemberIndex,
    /// The highest member weight (`weighted-random` draws against it).
    max_weight: u32,
    /// Round-robin: member index to try first next time.
    rr_next: usize,
    /// Removed by a reload: takes no new calls.
    closed: bool,
    /// Moving average of talk + wrap-up, for the estimated wait.
    avg_handle_ms: u64,
}

impl Queue {
    /// `(relaxation steps applied, tier rules open)` after waiting `waited`
    /// ms. Both lists are sorted by time (validation guarantees it), so two
    /// calls at the same stage have the same requirements and open tiers.
    fn stage(&self, waited: u64) -> (usize, usize) {
        (
            self.relax.partition_point(|s| s.after_ms <= waited),
            self.cfg.tiers.partition_point(|(_, s)| *s as u64 * 1000 <= waited),
        )
    }

    /// Wait after which members of `tier` may be offered a call: the latest
    /// opening among rules for this tier and every lower one.
    fn tier_open_ms(&self, tier: u32) -> u64 {
        self.cfg.tiers.iter().filter(|(t, _)| *t <= tier).map(|(_, s)| *s as u64 * 1000).max().unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    Waiting,
    Offering,
    Bridged { agent: AgentId, since: Time },
}

#[derive(Debug)]
struct Call {
    queue: QueueId,
    priority: i32,
    own: Vec<Req>,
    /// The first undeclared skill the call asked for, for decision records.
    undeclared_skill: Option<Arc<str>>,
    /// When the caller reached acd (cross-queue age, reported wait).
    arrived: Time,
    /// When the caller joined the current queue (tiers, relaxation, aging);
    /// a transfer keeps it, so the caller keeps its place.
    entered: Time,
    /// When the caller joined the current queue, transfers included: max
    /// wait counts from here.
    joined: Time,
    /// Arrival order; renewed on joining another queue.
    seq: u64,
    state: CallState,
    ringing: Vec<AgentId>,
    on_hold: bool,
    /// A callback (virtual hold) not connected yet (`callback.rs`).
    callback: Option<callback::Pending>,
    /// A consultation from this agent's phone, and whether it was handed
    /// its caller by an attended transfer (`attended.rs`).
    consult_by: Option<AgentId>,
    transferred: bool,
    /// The automatic callback offer was made (once per call).
    callback_offered: bool,
    /// Hearing a closed queue's `closed_prompt`: the queue and how many
    /// closed hops were taken (`closed.rs`).
    closed_prompt: Option<(QueueId, u32)>,
    /// Waited before `arrived` could say (a callback restored after a
    /// restart, when the engine clock is younger than its wait).
    waited_before: Duration,
}

/// Read-only view of a call, for the admin API and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallView {
    pub queue: QueueId,
    pub priority: i32,
    pub arrived: Time,
    pub state: &'static str,
    pub ringing: Vec<AgentId>,
    pub agent: Option<AgentId>,
}

/// The engine. See the module docs for how to drive it.
pub struct Engine {
    settings: EngineSettings,
    now: Time,
    rng: ChaCha8Rng,
    skills: Vec<Arc<str>>,
    skill_ids: HashMap<String, SkillId>,
    agents: Vec<Agent>,
    /// `agents[i].tag()`, kept in step by every change of state,
    /// registration or removal.
    tags: Vec<Tag>,
    agent_ids: HashMap<String, AgentId>,
    queues: Vec<Queue>,
    queue_ids: HashMap<String, QueueId>,
    calls: HashMap<CallId, Call>,
    timers: Timers,
    /// Agents that are Available and registered (back-off not considered).
    available: BTreeSet<AgentId>,
    /// Queues that may hold a servable (call, agent) pair.
    dirty: BTreeSet<QueueId>,
    /// The highest level any agent was ever given in each skill (bounds the
    /// `best-level` walk; never lowered, which only makes it walk further).
    skill_max: Vec<u8>,
    /// Reused by `dispatch` and `offer`, so a decision allocates no scratch.
    dirty_buf: Vec<QueueId>,
    chosen_buf: Vec<usize>,
    seq: u64,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    /// Set by [`Engine::expect_ring_progress`]: a ring timeout without
    /// `OfferRinging` is `Unreachable`.
    ring_progress: bool,
    /// Business hours by name, from the config (`hours.rs`).
    schedules: HashMap<String, schedule::Schedule>,
    /// Emergency switches by schedule name; kept across reloads.
    emergency: std::collections::BTreeMap<String, schedule::Emergency>,
    /// Unix time in ms at engine time 0, once the shell said it.
    wall_offset_ms: Option<i64>,
    /// Queues with `leave_when_empty` whose members changed (`empty.rs`).
    maybe_empty: BTreeSet<QueueId>,
}

impl Engine {
    /// Builds the engine from a validated config. Agents with `auto_login`
    /// start Available, the rest LoggedOut; nobody is registered yet.
    pub fn new(config: &Config, now: Time) -> Engine {
        let mut e = Engine {
            settings: config.engine.clone(),
            now,
            rng: ChaCha8Rng::seed_from_u64(config.engine.seed),
            skills: Vec::new(),
            skill_ids: HashMap::default(),
            agents: Vec::new(),
            tags: Vec::new(),
            agent_ids: HashMap::default(),
            queues: Vec::new(),
            queue_ids: HashMap::default(),
            calls: HashMap::default(),
            timers: Timers::default(),
            available: BTreeSet::new(),
            dirty: BTreeSet::new(),
            skill_max: Vec::new(),
            dirty_buf: Vec::new(),
            chosen_buf: Vec::new(),
            seq: 0,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            ring_progress: false,
            schedules: HashMap::default(),
            emergency: std::collections::BTreeMap::new(),
            wall_offset_ms: None,
            maybe_empty: BTreeSet::new(),
        };
        e.apply_config(config);
        e
    }

    /// The user reports [`Input::OfferRinging`] for every offer whose phone
    /// sent a provisional response (call control does). From then on a ring
    /// timeout on an offer that never got one is [`RejectCause::Unreachable`]
    /// (the phone is not there), not [`RejectCause::NoAnswer`]. Without this,
    /// every ring timeout is `NoAnswer`.
    pub fn expect_ring_progress(&mut self) {
        self.ring_progress = true;
    }

    // ----- the driving contract -------------------------------------------

    /// Applies one input at `now`, after firing every timer due by then.
    pub fn handle(&mut self, now: Time, input: Input) -> Result<(), EngineError> {
        self.advance(now)?;
        let result = self.apply(input);
        self.leave_empty_queues();
        self.dispatch();
        result
    }

    /// Fires every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Time) -> Result<(), EngineError> {
        self.advance(now)?;
        self.leave_empty_queues();
        self.dispatch();
        Ok(())
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the engine next needs [`Engine::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.next()
    }

    // ----- lookups for the shell, the admin API and tests ------------------

    pub fn now(&self) -> Time {
        self.now
    }
    pub fn queue_id(&self, name: &str) -> Option<QueueId> {
        self.queue_ids.get(name).copied()
    }
    pub fn agent_id(&self, name: &str) -> Option<AgentId> {
        self.agent_ids.get(name).copied()
    }
    pub fn queue_name(&self, q: QueueId) -> &str {
        &self.queues[q.0 as usize].cfg.name
    }
    pub fn agent_name(&self, a: AgentId) -> &str {
        &self.agents[a.0 as usize].name
    }
    pub fn queue_ids(&self) -> impl Iterator<Item = QueueId> + '_ {
        (0..self.queues.len() as u32).map(QueueId).filter(|q| !self.queues[q.0 as usize].closed)
    }
    /// Every queue ever configured, including ones a reload removed (they
    /// may still hold callers waiting to be served).
    pub fn all_queue_ids(&self) -> impl Iterator<Item = QueueId> + '_ {
        (0..self.queues.len() as u32).map(QueueId)
    }
    /// Removed by a reload (or closed for shutdown): takes no new callers.
    pub fn queue_closed(&self, q: QueueId) -> bool {
        self.queues.get(q.0 as usize).is_some_and(|x| x.closed)
    }
    pub fn agent_ids(&self) -> impl Iterator<Item = AgentId> + '_ {
        (0..self.agents.len() as u32).map(AgentId).filter(|a| !self.agents[a.0 as usize].removed)
    }
    pub fn agent_state(&self, a: AgentId) -> Option<&AgentState> {
        self.agents.get(a.0 as usize).map(|x| &x.state)
    }
    pub fn agent_registered(&self, a: AgentId) -> bool {
        self.agents.get(a.0 as usize).is_some_and(|x| x.registered)
    }
    /// Waiting callers of `q` in service order now (including those ringing).
    pub fn waiting(&self, q: QueueId) -> Vec<CallId> {
        let queue = &self.queues[q.0 as usize];
        queue.line.iter(self.now, queue.cfg.aging_secs).map(|e| e.call).collect()
    }
    /// How long the longest-waiting caller of `q` has been in it.
    pub fn longest_wait(&self, q: QueueId) -> Duration {
        self.queues[q.0 as usize].line.oldest_entered().map_or(Duration::ZERO, |t| self.now.since(t))
    }
    /// Number of callers in `q` (waiting or ringing).
    pub fn waiting_count(&self, q: QueueId) -> usize {
        self.queues[q.0 as usize].line.len()
    }
    /// Number of calls the engine holds (waiting, ringing or bridged).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }
    pub fn call(&self, c: CallId) -> Option<CallView> {
        let call = self.calls.get(&c)?;
        let (state, agent) = match call.state {
            CallState::Waiting => ("waiting", None),
            CallState::Offering => ("offering", None),
            CallState::Bridged { agent, .. } => ("bridged", Some(agent)),
        };
        Some(CallView {
            queue: call.queue,
            priority: call.priority,
            arrived: call.arrived,
            state,
            ringing: call.ringing.clone(),
            agent,
        })
    }

    // ----- inputs ------------------------------------------------------------

    fn advance(&mut self, now: Time) -> Result<(), EngineError> {
        if now < self.now {
            return Err(EngineError::TimeWentBackwards { now, last: self.now });
        }
        while let Some((at, kind)) = self.timers.pop_due(now) {
            // Each timer acts at its own time, so a wrap-up that ended at
            // t=10 shows idle since 10 even when the shell is late.
            self.now = at;
            self.fire(kind);
            self.dispatch();
        }
        self.now = now;
        Ok(())
    }

    fn apply(&mut self, input: Input) -> Result<(), EngineError> {
        match input {
            Input::CallArrived(nc) => self.call_arrived(nc),
            Input::CallAbandoned { call } | Input::CallEnded { call } => self.call_gone(call),
            Input::OfferAnswered { call, agent } => self.offer_answered(call, agent),
            Input::OfferRejected { call, agent, cause } => {
                self.check_offer(call, agent)?;
                self.ring_missed(call, agent, cause, false);
                Ok(())
            }
            Input::OfferRinging { call, agent } => {
                self.check_offer(call, agent)?;
                self.agents[agent.0 as usize].alerting = true;
                Ok(())
            }
            Input::AgentLogin { agent } => self.agent_login(agent),
            Input::AgentLogout { agent } => self.agent_logout(agent),
            Input::AgentPause { agent, reason } => self.agent_pause(agent, reason),
            Input::AgentReady { agent } => self.agent_ready(agent),
            Input::AgentRegistered { agent } => self.agent_registration(agent, true),
            Input::AgentUnregistered { agent } => self.agent_registration(agent, false),
            Input::ConfigReplaced(config) => {
                self.apply_config(&config);
                Ok(())
            }
            Input::MoveCall { call, .. } | Input::TransferCall { call, .. } | Input::TransferToAgent { call, .. }
                if self.is_callback(call) =>
            {
                Err(EngineError::IsCallback(call))
            }
            Input::MoveCall { call, queue } => self.move_call(call, queue),
            Input::SetEmergency { schedule, state } => self.set_emergency(&schedule, state),
            Input::TransferCall { call, queue } => self.transfer_call(call, queue),
            Input::TransferToAgent { call, agent } => self.transfer_to_agent(call, agent),
            Input::ConsultArrived { call, by } => self.consult_arrived(call, by),
            Input::AttendedTransfer { call, consult } => self.attended_transfer(call, consult),
            Input::CallerDigit { call, digit } => self.caller_digit(call, digit),
            Input::CallbackAnswered { call } => self.callback_answered(call),
            Input::CallbackFailed { call, cause } => self.callback_failed(call, Some(cause)),
            Input::RestoreCallback { call, saved } => self.restore_callback(call, saved),
            Input::WithdrawCall { call, status } => {
                self.waiting_call(call)?;
                debug!(call = call.0, status, "Queued => Withdrawn");
                self.reject(call, status);
                Ok(())
            }
            Input::Drain => {
                let mut waiting: Vec<(u64, CallId)> = self
                    .calls
                    .iter()
                    .filter(|(_, c)| matches!(c.state, CallState::Waiting | CallState::Offering))
                    .filter(|(_, c)| c.callback.is_none())
                    .map(|(id, c)| (c.seq, *id))
                    .collect();
                waiting.sort();
                self.drain_callbacks();
                // Nothing may join a queue while draining: close them all
                // first, so an overflow to another queue goes on to that
                // queue's own target (or stays).
                for q in &mut self.queues {
                    q.closed = true;
                }
                for (_, c) in waiting {
                    if self.calls.contains_key(&c) {
                        self.overflow(c, OverflowReason::Shutdown);
                    }
                }
                Ok(())
            }
        }
    }

    /// The call, if it is waiting (or being offered) in a queue.
    fn waiting_call(&self, c: CallId) -> Result<&Call, EngineError> {
        let call = self.calls.get(&c).ok_or(EngineError::UnknownCall(c))?;
        match call.state {
            CallState::Waiting | CallState::Offering => Ok(call),
            _ => Err(EngineError::NotWaiting(c)),
        }
    }

    fn move_call(&mut self, c: CallId, to: QueueId) -> Result<(), EngineError> {
        let from = self.waiting_call(c)?.queue;
        let target = self.queues.get(to.0 as usize).ok_or(EngineError::UnknownQueue(to))?;
        if target.closed {
            return Err(EngineError::QueueClosed(target.cfg.name.clone()));
        }
        if from == to {
            return Ok(());
        }
        debug!(call = c.0, "Queued => Moved");
        self.withdraw_all_rings(c);
        self.leave_line(c);
        self.events.push_back(Event::CallMoved { call: c, from, to });
        self.dirty.insert(from);
        self.join_queue(c, to);
        Ok(())
    }

    fn call_arrived(&mut self, nc: NewCall) -> Result<(), EngineError> {
        if self.calls.contains_key(&nc.id) {
            return Err(EngineError::DuplicateCall(nc.id));
        }
        let queue = self.queues.get(nc.queue.0 as usize).ok_or(EngineError::UnknownQueue(nc.queue))?;
        if queue.closed {
            return Err(EngineError::QueueClosed(queue.cfg.name.clone()));
        }
        let mut own: Vec<Req> = Vec::new();
        let mut undeclared_skill = None;
        for (name, level) in &nc.skills {
            let skill = match self.skill_ids.get(name) {
                Some(id) => *id,
                None => {
                    undeclared_skill.get_or_insert_with(|| Arc::from(name.as_str()));
                    SkillId::UNDECLARED
                }
            };
            upsert(&mut own, Req { skill, min: *level });
        }
        debug!(call = nc.id.0, caller = %nc.caller, queue = %queue.cfg.name, "New => Queued");
        self.events.push_back(Event::CallArrived {
            call: nc.id,
            queue: nc.queue,
            caller: nc.caller.clone(),
            priority: nc.priority,
            attributes: nc.attributes.clone(),
        });
        self.calls.insert(
            nc.id,
            Call {
                queue: nc.queue,
                priority: nc.priority,
                own,
                undeclared_skill,
                arrived: self.now,
                entered: self.now,
                joined: self.now,
                seq: 0,
                state: CallState::Waiting,
                ringing: Vec::new(),
                on_hold: false,
                callback: None,
                consult_by: None,
                transferred: false,
                callback_offered: false,
                closed_prompt: None,
                waited_before: Duration::ZERO,
            },
        );
        self.join_queue(nc.id, nc.queue);
        Ok(())
    }

    /// Puts a call (already in `self.calls`, in no line) into queue `q`, or
    /// sends it on when `q` is full or has nobody logged in.
    fn join_queue(&mut self, c: CallId, q: QueueId) {
        if !self.queue_open(q) {
            self.send_closed(c, q, 0);
            return;
        }
        let now = self.now;
        let queue = &self.queues[q.0 as usize];
        if queue.line.len() >= queue.cfg.max_waiting as usize {
            self.calls.get_mut(&c).expect("joining call exists").queue = q;
            self.overflow(c, OverflowReason::QueueFull);
            return;
        }
        if queue.cfg.when_no_agents != WhenNoAgents::Join && self.queue_empty(q) {
            self.calls.get_mut(&c).expect("joining call exists").queue = q;
            match queue.cfg.when_no_agents {
                WhenNoAgents::Overflow => self.overflow(c, OverflowReason::NoAgents),
                _ => self.reject(c, 480),
            }
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        let call = self.calls.get_mut(&c).expect("joining call exists");
        call.queue = q;
        call.entered = now;
        call.joined = now;
        call.seq = seq;
        call.state = CallState::Waiting;
        call.on_hold = true;
        let priority = call.priority;
        let queue = &mut self.queues[q.0 as usize];
        queue.line.insert(priority, seq, Entry { call: c, entered: now });
        // The newest caller is last among its priority; aging not counted.
        let position = queue.line.count_at_or_above(priority) as u32;
        self.actions.push_back(Action::StartHold { call: c, queue: q, music: queue.cfg.music.clone() });
        self.events.push_back(Event::CallQueued { call: c, queue: q, priority, position });
        self.arm_call_timers(c, true);
        self.dirty.insert(q);
    }

    /// Sets or clears the max-wait, step and announcement timers of a
    /// waiting call from its queue's current settings.
    fn arm_call_timers(&mut self, c: CallId, joined: bool) {
        if self.arm_callback_timers(c) {
            return;
        }
        let call = &self.calls[&c];
        let queue = &self.queues[call.queue.0 as usize];
        let cfg = &queue.cfg;
        if cfg.max_wait_secs > 0 && cfg.overflow.is_some() {
            self.timers.set(TimerKind::MaxWait(c), call.joined.plus_secs(cfg.max_wait_secs));
        } else {
            self.timers.cancel(TimerKind::MaxWait(c));
        }
        let waited = self.now.since(call.entered).as_millis() as u64;
        let next_step = queue
            .relax
            .iter()
            .map(|s| s.after_ms)
            .chain(cfg.tiers.iter().map(|(_, s)| *s as u64 * 1000))
            .filter(|&ms| ms > waited)
            .min();
        match next_step {
            Some(ms) => self.timers.set(TimerKind::CallStep(c), Time(call.entered.0 + ms)),
            None => self.timers.cancel(TimerKind::CallStep(c)),
        }
        self.arm_announcements(c, joined);
        self.arm_callback_offer(c, joined);
    }

    /// Sends a call to its queue's overflow target. Without one: a full queue
    /// answers 503, a queue without agents 480; a call past max wait (which
    /// validation only allows with a target) or in a removed queue stays.
    fn overflow(&mut self, c: CallId, reason: OverflowReason) {
        let from = self.calls[&c].queue;
        let target = self.queues[from.0 as usize].cfg.overflow.clone();
        let target = match target {
            Some(OverflowTarget::Queue(name)) => match self.queue_ids.get(&name) {
                Some(&tq) if !self.queues[tq.0 as usize].closed => Some((OverflowTarget::Queue(name), Some(tq))),
                _ => None,
            },
            Some(other) => Some((other, None)),
            None => None,
        };
        let Some((target, target_queue)) = target else {
            match reason {
                OverflowReason::QueueFull => self.reject(c, 503),
                OverflowReason::NoAgents => self.reject(c, 480),
                OverflowReason::MaxWait | OverflowReason::QueueRemoved | OverflowReason::Shutdown => {}
                OverflowReason::Closed => self.reject(c, 480),
            }
            return;
        };
        debug!(call = c.0, %target, ?reason, "Queued => Overflowed");
        self.withdraw_all_rings(c);
        self.leave_line(c);
        self.events.push_back(Event::Overflowed { call: c, from, to: target.to_string(), reason });
        match (target, target_queue) {
            (_, Some(tq)) => self.join_queue(c, tq),
            (OverflowTarget::Uri(uri), _) => {
                self.stop_hold(c);
                self.actions.push_back(Action::Transfer { call: c, uri: uri.clone() });
                self.finish(c, Outcome::Overflowed { uri });
            }
            (OverflowTarget::Reject(status), _) => self.reject(c, status),
            // Validation allows "callback" for `when_closed` only.
            (OverflowTarget::Callback, _) => self.reject(c, 480),
            (OverflowTarget::Queue(_), None) => unreachable!("queue target resolved above"),
        }
    }

    pub(super) fn reject(&mut self, c: CallId, status: u16) {
        self.withdraw_all_rings(c);
        self.stop_hold(c);
        self.actions.push_back(Action::Reject { call: c, status });
        self.finish(c, Outcome::Rejected { status });
    }

    /// Takes a call out of its queue's waiting line, if it is in it.
    fn leave_line(&mut self, c: CallId) {
        let call = &self.calls[&c];
        if matches!(call.state, CallState::Waiting | CallState::Offering) {
            self.queues[call.queue.0 as usize].line.remove(call.priority, call.seq);
        }
        for kind in [
            TimerKind::MaxWait(c),
            TimerKind::CallStep(c),
            TimerKind::Announce(c),
            TimerKind::PeriodicAnnounce(c),
            TimerKind::CallbackDue(c),
            TimerKind::CallbackOffer(c),
        ] {
            self.timers.cancel(kind);
        }
    }

    /// Stops the caller's hold music if it plays; always before the action
    /// that sends the call away, so the shell never touches a call it has
    /// already handed off.
    fn stop_hold(&mut self, c: CallId) {
        if let Some(call) = self.calls.get_mut(&c) {
            if call.on_hold {
                call.on_hold = false;
                self.actions.push_back(Action::StopHold { call: c });
            }
        }
    }

    /// The call leaves the engine. Rings must already be withdrawn.
    fn finish(&mut self, c: CallId, outcome: Outcome) {
        let outcome = self.recorded_outcome(c, outcome);
        self.leave_line(c);
        self.stop_hold(c);
        let call = self.calls.remove(&c).expect("finishing call exists");
        debug_assert!(call.ringing.is_empty(), "finish with rings outstanding");
        let waited = match call.state {
            CallState::Bridged { since, .. } => since.since(call.arrived),
            _ => self.now.since(call.arrived),
        } + call.waited_before;
        debug!(call = c.0, outcome = outcome.name(), "=> Finished");
        self.events.push_back(Event::CallFinished { call: c, queue: call.queue, outcome, waited });
    }

    /// Caller hung up (abandon) or a bridged call ended.
    fn call_gone(&mut self, c: CallId) -> Result<(), EngineError> {
        let call = self.calls.get(&c).ok_or(EngineError::UnknownCall(c))?;
        if call.callback.is_some() && self.callback_gone(c) {
            return Ok(());
        }
        if self.closed_prompt_gone(c) {
            return Ok(());
        }
        let call = &self.calls[&c];
        match call.state {
            CallState::Bridged { agent, since } => {
                let q = call.queue;
                // A transfer still ringing another agent.
                self.withdraw_all_rings(c);
                self.count_handle_time(q, since);
                self.finish(c, Outcome::Answered { agent });
                self.agent_call_over(agent, q);
            }
            CallState::Waiting | CallState::Offering => {
                self.withdraw_all_rings(c);
                self.finish(c, Outcome::Abandoned);
            }
        }
        Ok(())
    }

    /// Folds a finished talk (from `since`) plus the queue's wrap-up into
    /// its moving average handle time (the estimated wait).
    fn count_handle_time(&mut self, q: QueueId, since: Time) {
        let queue = &mut self.queues[q.0 as usize];
        let handle = self.now.since(since).as_millis() as u64 + queue.cfg.wrap_up_secs as u64 * 1000;
        queue.avg_handle_ms = if queue.avg_handle_ms == 0 { handle } else { (queue.avg_handle_ms * 7 + handle) / 8 };
    }

    fn agent_call_over(&mut self, a: AgentId, q: QueueId) {
        let now = self.now;
        let agent = &mut self.agents[a.0 as usize];
        let next = match agent.after_call.take() {
            _ if agent.removed => AgentState::LoggedOut,
            Some(AfterCall::Logout) => AgentState::LoggedOut,
            Some(AfterCall::Pause(reason)) => AgentState::Paused { reason, since: now },
            None => {
                let wrap = agent.wrap_up_secs.unwrap_or(self.queues[q.0 as usize].cfg.wrap_up_secs);
                if wrap > 0 {
                    let until = now.plus_secs(wrap);
                    self.timers.set(TimerKind::WrapUpEnd(a), until);
                    AgentState::WrapUp { until }
                } else {
                    agent.idle_since = now;
                    AgentState::Available { since: now }
                }
            }
        };
        self.set_state(a, next, "call ended");
    }

    fn check_offer(&self, c: CallId, a: AgentId) -> Result<(), EngineError> {
        self.agent(a)?;
        let call = self.calls.get(&c).ok_or(EngineError::UnknownCall(c))?;
        let offering = matches!(call.state, CallState::Offering | CallState::Bridged { .. });
        if offering && call.ringing.contains(&a) {
            Ok(())
        } else {
            Err(EngineError::NoSuchOffer { call: c, agent: a })
        }
    }

    fn offer_answered(&mut self, c: CallId, a: AgentId) -> Result<(), EngineError> {
        self.check_offer(c, a)?;
        if let CallState::Bridged { agent, since } = self.calls[&c].state {
            self.transfer_answered(c, agent, since, a);
            return Ok(());
        }
        let now = self.now;
        self.timers.cancel(TimerKind::RingTimeout { call: c, agent: a });
        self.detach(c, a);
        self.withdraw_all_rings(c);
        self.leave_line(c);
        let call = self.calls.get_mut(&c).expect("checked");
        call.state = CallState::Bridged { agent: a, since: now };
        let (q, waited) = (call.queue, now.since(call.arrived));
        let queue = &mut self.queues[q.0 as usize];
        if let Some(m) = queue.members.iter_mut().find(|m| m.agent == a) {
            m.answered += 1;
        }
        self.agents[a.0 as usize].misses = 0;
        self.set_state(a, AgentState::OnCall { call: c, since: now }, "answered");
        self.stop_hold(c);
        if self.callback_agent_answered(c, a) {
            return Ok(());
        }
        self.actions.push_back(Action::Bridge { call: c, agent: a });
        debug!(call = c.0, agent = a.0, "Offering => Bridged");
        self.events.push_back(Event::Answered { call: c, queue: q, agent: a, waited });
        Ok(())
    }

    /// Removes `a` from the call's ringing set; a call left ringing nobody
    /// goes back to waiting, in its old place.
    fn detach(&mut self, c: CallId, a: AgentId) {
        let Some(call) = self.calls.get_mut(&c) else {
            return;
        };
        call.ringing.retain(|x| *x != a);
        if call.ringing.is_empty() && call.state == CallState::Offering {
            debug!(call = c.0, "Offering => Waiting");
            call.state = CallState::Waiting;
            self.dirty.insert(call.queue);
        }
    }

    /// Stops a ring for which the agent is not at fault: the agent goes back
    /// to Available with its idle time intact, without back-off.
    fn withdraw_ring(&mut self, c: CallId, a: AgentId) {
        self.timers.cancel(TimerKind::RingTimeout { call: c, agent: a });
        self.actions.push_back(Action::CancelRing { call: c, agent: a });
        self.events.push_back(Event::RingCancelled { call: c, agent: a });
        let since = self.agents[a.0 as usize].idle_since;
        self.set_state(a, AgentState::Available { since }, "ring withdrawn");
        self.detach(c, a);
    }

    fn withdraw_all_rings(&mut self, c: CallId) {
        let ringing = self.calls.get(&c).map(|x| x.ringing.clone()).unwrap_or_default();
        for a in ringing {
            self.withdraw_ring(c, a);
        }
    }

    /// The agent did not take the offer: back-off, maybe auto-pause, and the
    /// call rolls over.
    fn ring_missed(&mut self, c: CallId, a: AgentId, cause: RejectCause, send_cancel: bool) {
        let now = self.now;
        self.timers.cancel(TimerKind::RingTimeout { call: c, agent: a });
        if send_cancel {
            self.actions.push_back(Action::CancelRing { call: c, agent: a });
        }
        self.events.push_back(Event::RingNoAnswer { call: c, agent: a, cause });
        let b = self.settings.backoff;
        let secs = match cause {
            RejectCause::NoAnswer => b.no_answer,
            RejectCause::Busy => b.busy,
            RejectCause::Unavailable => b.unavailable,
            RejectCause::Declined => b.declined,
            RejectCause::Unreachable => b.unreachable,
        };
        let limit = self.settings.auto_pause_after_misses;
        let agent = &mut self.agents[a.0 as usize];
        if secs > 0 {
            agent.backoff_until = now.plus_secs(secs);
            self.timers.set(TimerKind::BackoffEnd(a), agent.backoff_until);
        }
        if cause.is_miss() {
            agent.misses += 1;
        }
        let (next, why) = if limit > 0 && agent.misses >= limit {
            let reason = format!("auto-paused: missed {} offers in a row", agent.misses);
            (AgentState::Paused { reason: reason.clone(), since: now }, reason)
        } else {
            (AgentState::Available { since: agent.idle_since }, format!("offer missed: {}", cause.name()))
        };
        self.set_state(a, next, &why);
        self.detach(c, a);
    }

    // ----- agents ------------------------------------------------------------

    fn agent(&self, a: AgentId) -> Result<&Agent, EngineError> {
        match self.agents.get(a.0 as usize) {
            Some(x) if !x.removed => Ok(x),
            _ => Err(EngineError::UnknownAgent(a)),
        }
    }

    /// The one place agent state changes: keeps `available` and `dirty`
    /// true, logs the transition and emits the event.
    fn set_state(&mut self, a: AgentId, next: AgentState, reason: &str) {
        let agent = &mut self.agents[a.0 as usize];
        let was = agent.dispatchable();
        let from = agent.state.name();
        if !matches!(next, AgentState::WrapUp { .. }) {
            self.timers.cancel(TimerKind::WrapUpEnd(a));
        }
        agent.state = next;
        let to = agent.state.name();
        debug!(agent = %agent.name, "{from} => {to} ({reason})");
        self.sync_routing(a, was);
        self.events.push_back(Event::AgentStateChanged { agent: a, from, to, reason: reason.to_string() });
    }

    /// Brings `tags`, `available`, the queues' indexes and `dirty` in line
    /// with agent `a` after a change of state or registration; `was` is
    /// whether it was dispatchable before. A newly dispatchable agent makes
    /// its queues worth a look.
    fn sync_routing(&mut self, a: AgentId, was: bool) {
        self.note_member_change(a);
        self.reindex(a);
        let agent = &self.agents[a.0 as usize];
        self.tags[a.0 as usize] = agent.tag();
        if agent.dispatchable() {
            self.available.insert(a);
            if !was {
                self.dirty.extend(agent.queues.iter().map(|(q, _)| *q));
            }
        } else {
            self.available.remove(&a);
        }
    }

    fn agent_login(&mut self, a: AgentId) -> Result<(), EngineError> {
        if self.agent(a)?.state == AgentState::LoggedOut {
            let now = self.now;
            let agent = &mut self.agents[a.0 as usize];
            agent.idle_since = now;
            agent.misses = 0;
            self.set_state(a, AgentState::Available { since: now }, "login");
        } else {
            // Logging in again during a call takes back a logout asked for
            // earlier in that call.
            let agent = &mut self.agents[a.0 as usize];
            if agent.after_call == Some(AfterCall::Logout) {
                agent.after_call = None;
            }
        }
        Ok(())
    }

    fn agent_logout(&mut self, a: AgentId) -> Result<(), EngineError> {
        match self.agent(a)?.state.clone() {
            AgentState::LoggedOut => {}
            AgentState::OnCall { .. } => self.agents[a.0 as usize].after_call = Some(AfterCall::Logout),
            AgentState::Ringing { call, .. } => {
                self.withdraw_ring(call, a);
                self.set_state(a, AgentState::LoggedOut, "logout");
            }
            _ => self.set_state(a, AgentState::LoggedOut, "logout"),
        }
        Ok(())
    }

    fn agent_pause(&mut self, a: AgentId, reason: String) -> Result<(), EngineError> {
        let now = self.now;
        match self.agent(a)?.state.clone() {
            AgentState::LoggedOut => return Err(EngineError::AgentLoggedOut(a)),
            AgentState::OnCall { .. } => self.agents[a.0 as usize].after_call = Some(AfterCall::Pause(reason)),
            AgentState::Ringing { call, .. } => {
                self.withdraw_ring(call, a);
                self.set_state(a, AgentState::Paused { reason: reason.clone(), since: now }, &reason);
            }
            _ => self.set_state(a, AgentState::Paused { reason: reason.clone(), since: now }, &reason),
        }
        Ok(())
    }

    fn agent_ready(&mut self, a: AgentId) -> Result<(), EngineError> {
        let now = self.now;
        match self.agent(a)?.state.clone() {
            AgentState::LoggedOut => return Err(EngineError::AgentLoggedOut(a)),
            AgentState::OnCall { .. } => self.agents[a.0 as usize].after_call = None,
            AgentState::Paused { .. } | AgentState::WrapUp { .. } => {
                let agent = &mut self.agents[a.0 as usize];
                agent.idle_since = now;
                agent.misses = 0;
                self.set_state(a, AgentState::Available { since: now }, "ready");
            }
            AgentState::Available { .. } | AgentState::Ringing { .. } => {}
        }
        Ok(())
    }

    fn agent_registration(&mut self, a: AgentId, registered: bool) -> Result<(), EngineError> {
        self.agent(a)?;
        let agent = &mut self.agents[a.0 as usize];
        if agent.registered == registered {
            return Ok(());
        }
        let was = agent.dispatchable();
        agent.registered = registered;
        debug!(agent = %agent.name, registered, "registration changed");
        self.sync_routing(a, was);
        if let (false, AgentState::Ringing { call, .. }) = (registered, self.agents[a.0 as usize].state.clone()) {
            self.withdraw_ring(call, a);
        }
        Ok(())
    }

    // ----- timers --------------------------------------------------------------

    fn fire(&mut self, kind: TimerKind) {
        let now = self.now;
        match kind {
            TimerKind::RingTimeout { call, agent } => {
                if self.check_offer(call, agent).is_ok() {
                    // A phone that never said it rings did not ring out:
                    // it is not there (dead phone, stale registration).
                    let cause = if self.ring_progress && !self.agents[agent.0 as usize].alerting {
                        RejectCause::Unreachable
                    } else {
                        RejectCause::NoAnswer
                    };
                    self.ring_missed(call, agent, cause, true);
                }
            }
            TimerKind::WrapUpEnd(a) => {
                if matches!(self.agents[a.0 as usize].state, AgentState::WrapUp { .. }) {
                    self.agents[a.0 as usize].idle_since = now;
                    self.set_state(a, AgentState::Available { since: now }, "wrap-up over");
                }
            }
            TimerKind::BackoffEnd(a) => {
                let agent = &mut self.agents[a.0 as usize];
                agent.backoff_until = Time::ZERO;
                if agent.dispatchable() {
                    self.dirty.extend(agent.queues.iter().map(|(q, _)| *q));
                }
            }
            TimerKind::CallStep(c) => {
                if self.calls.contains_key(&c) {
                    self.dirty.insert(self.calls[&c].queue);
                    self.arm_call_timers(c, false);
                }
            }
            TimerKind::MaxWait(c) => {
                if self.calls.contains_key(&c) {
                    self.overflow(c, OverflowReason::MaxWait);
                }
            }
            TimerKind::ScheduleEdge(q) => self.fire_schedule_edge(q),
            TimerKind::Announce(c) => self.fire_announce(c, now),
            TimerKind::PeriodicAnnounce(c) => self.fire_periodic(c, now),
            TimerKind::CallbackDue(c) => {
                if let Some(call) = self.calls.get(&c) {
                    self.dirty.insert(call.queue);
                }
            }
            TimerKind::CallbackDial(c) => self.callback_dial(c),
            TimerKind::CallbackOffer(c) => self.fire_callback_offer(c),
            TimerKind::ClosedPrompt(c) => self.closed_prompt_over(c),
        }
    }

    // ----- configuration ---------------------------------------------------------

    fn skill_id(&mut self, name: &str) -> SkillId {
        if let Some(id) = self.skill_ids.get(name) {
            return *id;
        }
        let id = SkillId(self.skills.len() as u16);
        self.skills.push(Arc::from(name));
        self.skill_ids.insert(name.to_string(), id);
        id
    }

    fn reqs(&mut self, list: &[crate::config::SkillReq]) -> Vec<Req> {
        list.iter().map(|r| Req { skill: self.skill_id(&r.skill), min: r.min_level }).collect()
    }

    /// Applies a validated config whole. Existing agents keep their state,
    /// wrap-up timers and statistics; waiting callers keep their place and
    /// get the new queue settings at once. New queues and agents appear;
    /// removed agents are never offered again and log out when free; a
    /// removed queue takes no new calls and its callers overflow if it has a
    /// target, else stay until served.
    fn apply_config(&mut self, config: &Config) {
        // The RNG is not reseeded: a reload must not replay earlier choices.
        self.settings = config.engine.clone();
        self.schedules = config.schedules.iter().map(|s| (s.name.clone(), s.clone())).collect();
        // A switch for a schedule the new file no longer has goes with it.
        let schedules = &self.schedules;
        self.emergency.retain(|name, _| schedules.contains_key(name));
        for (name, _) in &config.skills {
            self.skill_id(name);
        }
        // Agents.
        let mut seen = BTreeSet::new();
        for ac in &config.agents {
            let a = self.upsert_agent(ac);
            seen.insert(a);
        }
        for i in 0..self.agents.len() {
            let a = AgentId(i as u32);
            if seen.contains(&a) || self.agents[i].removed {
                continue;
            }
            match self.agents[i].state.clone() {
                AgentState::OnCall { .. } => {}
                AgentState::Ringing { call, .. } => {
                    self.withdraw_ring(call, a);
                    self.set_state(a, AgentState::LoggedOut, "removed from config");
                }
                AgentState::LoggedOut => {}
                _ => self.set_state(a, AgentState::LoggedOut, "removed from config"),
            }
            self.agents[i].removed = true;
            self.sync_routing(a, false);
        }
        // Queues.
        let mut live = BTreeSet::new();
        for qc in &config.queues {
            let q = match self.queue_ids.get(&qc.name) {
                Some(&q) => q,
                None => {
                    let q = QueueId(self.queues.len() as u32);
                    self.queues.push(Queue {
                        cfg: qc.clone(),
                        required: Vec::new(),
                        relax: Vec::new(),
                        members: Vec::new(),
                        line: WaitingLine::default(),
                        index: MemberIndex::default(),
                        max_weight: 1,
                        rr_next: 0,
                        closed: false,
                        avg_handle_ms: 0,
                    });
                    self.queue_ids.insert(qc.name.clone(), q);
                    q
                }
            };
            live.insert(q);
            let required = self.reqs(&qc.required_skills);
            let relax: Vec<RelaxStep> = qc
                .relax
                .iter()
                .map(|s| RelaxStep {
                    after_ms: s.after_secs as u64 * 1000,
                    set: self.reqs(&s.set),
                    drop: s.drop.iter().map(|n| self.skill_id(n)).collect(),
                    add: self.reqs(&s.add),
                })
                .collect();
            let old_members = std::mem::take(&mut self.queues[q.0 as usize].members);
            let members: Vec<Member> = qc
                .members
                .iter()
                .map(|mc| {
                    let agent = self.agent_ids[&mc.agent];
                    let answered = old_members.iter().find(|m| m.agent == agent).map_or(0, |m| m.answered);
                    Member { agent, tier: mc.tier, weight: mc.weight, answered }
                })
                .collect();
            let queue = &mut self.queues[q.0 as usize];
            queue.cfg = qc.clone();
            queue.required = required;
            queue.relax = relax;
            queue.max_weight = members.iter().map(|m: &Member| m.weight).max().unwrap_or(1);
            queue.members = members;
            queue.closed = false;
        }
        // Settings apply to callers already waiting.
        let mut waiting: Vec<(u64, CallId)> = self
            .calls
            .iter()
            .filter(|(_, c)| !matches!(c.state, CallState::Bridged { .. }))
            .map(|(id, c)| (c.seq, *id))
            .collect();
        waiting.sort();
        for &(_, c) in &waiting {
            self.arm_call_timers(c, false);
        }
        // Removed queues close, all of them first, so that a caller never
        // overflows into a queue this same reload removes (whatever the
        // order of the queues); their callers overflow where they can.
        let closing: Vec<QueueId> = (0..self.queues.len() as u32)
            .map(QueueId)
            .filter(|q| !live.contains(q) && !self.queues[q.0 as usize].closed)
            .collect();
        for q in &closing {
            self.queues[q.0 as usize].closed = true;
        }
        if config.engine.removed_queue_callers == RemovedQueueCallers::Overflow {
            for &(_, c) in &waiting {
                // A pending callback stays in its removed queue (served by
                // its last members): it has no caller leg to send on.
                if self.calls.get(&c).is_some_and(|x| closing.contains(&x.queue) && x.callback.is_none()) {
                    self.overflow(c, OverflowReason::QueueRemoved);
                }
            }
        }
        // Memberships: live queues, plus removed queues still holding callers
        // (no overflow target), which keep their last members until the
        // callers are served.
        for agent in &mut self.agents {
            agent.queues.clear();
        }
        for (i, queue) in self.queues.iter().enumerate() {
            let q = QueueId(i as u32);
            if !live.contains(&q) && queue.line.is_empty() {
                continue;
            }
            self.dirty.insert(q);
            for (i, m) in queue.members.iter().enumerate() {
                self.agents[m.agent.0 as usize].queues.push((q, i as u32));
            }
        }
        self.rebuild_indexes();
        self.arm_schedule_edges();

        self.events.push_back(Event::ConfigApplied { queues: config.queues.len(), agents: config.agents.len() });
    }

    fn upsert_agent(&mut self, ac: &AgentConfig) -> AgentId {
        let mut levels = vec![0u8; self.skills.len()];
        for (name, level) in &ac.skills {
            let id = self.skill_id(name);
            if levels.len() <= id.0 as usize {
                levels.resize(id.0 as usize + 1, 0);
            }
            levels[id.0 as usize] = *level;
            if self.skill_max.len() <= id.0 as usize {
                self.skill_max.resize(id.0 as usize + 1, 0);
            }
            self.skill_max[id.0 as usize] = self.skill_max[id.0 as usize].max(*level);
        }
        let now = self.now;
        match self.agent_ids.get(&ac.id) {
            Some(&a) => {
                let agent = &mut self.agents[a.0 as usize];
                agent.levels = levels;
                agent.skill_count = ac.skills.len() as u32;
                agent.wrap_up_secs = ac.wrap_up_secs;
                if agent.removed {
                    // Back in the config: starts over as a new agent would.
                    agent.removed = false;
                    agent.after_call = None;
                    self.sync_routing(a, false);
                    let agent = &mut self.agents[a.0 as usize];
                    if ac.auto_login && agent.state == AgentState::LoggedOut {
                        agent.idle_since = now;
                        self.set_state(a, AgentState::Available { since: now }, "re-added by reload");
                    }
                }
                a
            }
            None => {
                let a = AgentId(self.agents.len() as u32);
                self.agents.push(Agent {
                    name: ac.id.clone(),
                    state: AgentState::LoggedOut,
                    registered: false,
                    removed: false,
                    levels,
                    skill_count: ac.skills.len() as u32,
                    wrap_up_secs: ac.wrap_up_secs,
                    queues: Vec::new(),
                    backoff_until: Time::ZERO,
                    misses: 0,
                    after_call: None,
                    idle_since: now,
                    alerting: false,
                });
                self.tags.push(Tag::LoggedOut);
                self.agent_ids.insert(ac.id.clone(), a);
                if ac.auto_login {
                    self.set_state(a, AgentState::Available { since: now }, "auto-login");
                }
                a
            }
        }
    }
}

/// Sets the level of `r.skill` in `list`, adding it if absent.
fn upsert(list: &mut Vec<Req>, r: Req) {
    match list.iter_mut().find(|x| x.skill == r.skill) {
        Some(x) => x.min = r.min,
        None => list.push(r),
    }
}

#[cfg(test)]
mod tests;
