//! Property tests for configuration reloads (`Input::ConfigReplaced`) in the
//! middle of random traffic.
//!
//! Each case builds a small config (2-3 queues, 3-6 agents, a few skills),
//! drives random traffic through the engine (arrivals with priorities,
//! answers and rejections of rung offers, abandons, call ends, pauses,
//! readies, logins, logouts, time advances that fire timers) and, at 1-3
//! random points, replaces the config with a validated variant of the
//! current one: other strategies, ring timeouts, wrap-up times, agent skill
//! levels and wrap-ups, required skills, memberships and overflow targets; a
//! new queue, a new (or re-added) agent; sometimes a removed queue (with or
//! without an `overflow = "queue:X"` target) or a removed agent.
//!
//! What a user would notice, checked at every reload (immediately before vs
//! immediately after the `ConfigReplaced` input, at the same `now`):
//!
//! 1. no caller is lost: the reload finishes no call, every live call is
//!    still held; at the end of the case (everyone hangs up, every bridged
//!    call ends, timers run out) each arrived call finished exactly once and
//!    the engine holds no call;
//! 2. callers keep their place: in every surviving queue the relative order
//!    of the callers waiting there is unchanged; callers of a removed queue
//!    with a `queue:` overflow target join that target behind its earlier
//!    callers of the same priority (in their old order); without a target
//!    they stay where they were;
//! 3. agents keep their state: on-call, wrap-up (same `until`), paused (same
//!    reason), logged-out and ringing agents are untouched (an available
//!    agent may be rung at once); only a removed agent changes (its ring is
//!    withdrawn, it logs out when free, or finishes its call first), and a
//!    re-added agent starts over as a new one would;
//! 4. a bridged call is never cut by a reload, and ending it later works;
//! 5. the new settings apply at once, also to callers already waiting: every
//!    Ring carries the current ring timeout of the caller's queue, rings go
//!    only to current members meeting the current skill levels (never to a
//!    removed agent), and wrap-up after a call uses the current wrap-up time.

use acd::config;
use acd::engine::{
    Action, AgentId, AgentState, CallId, CallView, Engine, Event, Input, NewCall, Outcome, OverflowReason, QueueId,
    RejectCause, Time,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

// ----------------------------------------------------------------- config model

const SKILLS: [&str; 3] = ["billing", "tech", "french"];
const AGENT_POOL: [&str; 8] = ["alice", "bob", "carol", "dave", "erin", "frank", "gina", "hugo"];
const QUEUE_POOL: [&str; 5] = ["sales", "support", "billing", "vip", "returns"];
const STRATEGIES: [&str; 9] = [
    "random",
    "weighted-random",
    "priority",
    "skills",
    "longest-idle",
    "round-robin",
    "fewest-calls",
    "linear",
    "ring-all",
];

#[derive(Debug, Clone, PartialEq)]
struct QSpec {
    name: String,
    strategy: &'static str,
    ring_timeout: u32,
    wrap_up: u32,
    /// Name of the overflow target queue.
    overflow: Option<String>,
    /// (skill index, min level).
    required: Option<(usize, u8)>,
    members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct ASpec {
    name: String,
    /// 0 = does not have the skill.
    levels: [u8; 3],
    wrap_up: Option<u32>,
    auto_login: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Cfg {
    seed: u64,
    queues: Vec<QSpec>,
    agents: Vec<ASpec>,
}

impl Cfg {
    fn queue(&self, name: &str) -> Option<&QSpec> {
        self.queues.iter().find(|q| q.name == name)
    }
    fn agent(&self, name: &str) -> Option<&ASpec> {
        self.agents.iter().find(|a| a.name == name)
    }

    /// Whether following `overflow` from some queue comes back to a queue
    /// already visited (validation refuses such configs).
    fn overflow_loops(&self) -> bool {
        for q in &self.queues {
            let mut seen = vec![q.name.clone()];
            let mut at = q;
            while let Some(t) = &at.overflow {
                if seen.contains(t) {
                    return true;
                }
                seen.push(t.clone());
                match self.queue(t) {
                    Some(next) => at = next,
                    None => break,
                }
            }
        }
        false
    }

    fn to_toml(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "[engine]\nseed = {}\n\n[skills]", self.seed);
        for s in SKILLS {
            let _ = writeln!(t, "{s} = \"{s}\"");
        }
        for q in &self.queues {
            let _ = writeln!(t, "\n[[queue]]\nname = \"{}\"\nstrategy = \"{}\"", q.name, q.strategy);
            let _ = writeln!(t, "ring_timeout_secs = {}\nwrap_up_secs = {}", q.ring_timeout, q.wrap_up);
            if let Some(o) = &q.overflow {
                let _ = writeln!(t, "overflow = \"queue:{o}\"");
            }
            if let Some((s, l)) = q.required {
                let _ = writeln!(t, "required_skills = {{ {} = {l} }}", SKILLS[s]);
            }
            let members: Vec<String> = q.members.iter().map(|m| format!("{{ agent = \"{m}\" }}")).collect();
            let _ = writeln!(t, "members = [{}]", members.join(", "));
        }
        for a in &self.agents {
            let _ = writeln!(t, "\n[[agent]]\nid = \"{}\"\nauto_login = {}", a.name, a.auto_login);
            let skills: Vec<String> =
                (0..3).filter(|&s| a.levels[s] > 0).map(|s| format!("{} = {}", SKILLS[s], a.levels[s])).collect();
            if !skills.is_empty() {
                let _ = writeln!(t, "skills = {{ {} }}", skills.join(", "));
            }
            if let Some(w) = a.wrap_up {
                let _ = writeln!(t, "wrap_up_secs = {w}");
            }
        }
        t
    }

    /// The variant of this config that reload `m` describes.
    fn mutate(&self, m: &Mut) -> Cfg {
        let mut c = self.clone();
        if let Some(p) = m.remove_queue {
            if c.queues.len() >= 2 {
                let name = c.queues.remove(p as usize % c.queues.len()).name;
                for q in &mut c.queues {
                    if q.overflow.as_deref() == Some(name.as_str()) {
                        q.overflow = None;
                    }
                }
            }
        }
        if let Some(p) = m.remove_agent {
            if c.agents.len() >= 3 {
                let name = c.agents.remove(p as usize % c.agents.len()).name;
                for q in &mut c.queues {
                    q.members.retain(|x| *x != name);
                }
            }
        }
        if let Some((strategy, ring_timeout, wrap_up, mask)) = m.add_queue {
            if let Some(name) = QUEUE_POOL.iter().find(|n| c.queue(n).is_none()) {
                let members = c
                    .agents
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, a)| a.name.clone())
                    .collect();
                c.queues.push(QSpec {
                    name: name.to_string(),
                    strategy: STRATEGIES[strategy as usize % STRATEGIES.len()],
                    ring_timeout,
                    wrap_up,
                    overflow: None,
                    required: None,
                    members,
                });
            }
        }
        if let Some((levels, auto_login, mask, pick)) = m.add_agent {
            let free: Vec<&str> = AGENT_POOL.iter().copied().filter(|n| c.agent(n).is_none()).collect();
            if !free.is_empty() {
                let name = free[pick as usize % free.len()].to_string();
                for (i, q) in c.queues.iter_mut().enumerate() {
                    if mask & (1 << i) != 0 {
                        q.members.push(name.clone());
                    }
                }
                c.agents.push(ASpec { name, levels, wrap_up: None, auto_login });
            }
        }
        let nq = c.queues.len();
        let na = c.agents.len();
        for &(q, s) in &m.strategies {
            c.queues[q as usize % nq].strategy = STRATEGIES[s as usize % STRATEGIES.len()];
        }
        for &(q, secs) in &m.ring_timeouts {
            c.queues[q as usize % nq].ring_timeout = secs;
        }
        for &(q, secs) in &m.wrap_ups {
            c.queues[q as usize % nq].wrap_up = secs;
        }
        for &(q, req) in &m.required {
            c.queues[q as usize % nq].required = req.map(|(s, l)| (s as usize % 3, l));
        }
        for &(a, w) in &m.agent_wraps {
            c.agents[a as usize % na].wrap_up = w;
        }
        for &(a, s, l) in &m.levels {
            c.agents[a as usize % na].levels[s as usize % 3] = l;
        }
        for &(q, a) in &m.toggles {
            let name = c.agents[a as usize % na].name.clone();
            let q = &mut c.queues[q as usize % nq];
            match q.members.iter().position(|x| *x == name) {
                Some(i) => {
                    q.members.remove(i);
                }
                None => q.members.push(name),
            }
        }
        for &(q, t) in &m.overflows {
            let qi = q as usize % nq;
            let target = t.map(|t| c.queues[t as usize % nq].name.clone());
            let before = c.queues[qi].overflow.clone();
            c.queues[qi].overflow = target;
            if c.overflow_loops() {
                c.queues[qi].overflow = before;
            }
        }
        c
    }
}

// ----------------------------------------------------------------- generators

/// One reload, as random numbers interpreted against the config current at
/// the time it is applied.
#[derive(Debug, Clone)]
struct Mut {
    remove_queue: Option<u8>,
    remove_agent: Option<u8>,
    /// (strategy, ring timeout, wrap-up, member mask).
    add_queue: Option<(u8, u32, u32, u8)>,
    /// (levels, auto_login, queue mask, name pick).
    add_agent: Option<([u8; 3], bool, u8, u8)>,
    strategies: Vec<(u8, u8)>,
    ring_timeouts: Vec<(u8, u32)>,
    wrap_ups: Vec<(u8, u32)>,
    required: Vec<(u8, Option<(u8, u8)>)>,
    agent_wraps: Vec<(u8, Option<u32>)>,
    levels: Vec<(u8, u8, u8)>,
    toggles: Vec<(u8, u8)>,
    overflows: Vec<(u8, Option<u8>)>,
}

#[derive(Debug, Clone, Copy)]
enum AgentOp {
    Login,
    Logout,
    Pause,
    Ready,
}

#[derive(Debug, Clone)]
enum Op {
    Arrive { queue: u8, priority: i32 },
    Answer { pick: u16 },
    Reject { pick: u16, cause: RejectCause },
    Abandon { pick: u16 },
    End { pick: u16 },
    Agent { pick: u8, op: AgentOp },
    Advance { ms: u64 },
    Reload(Box<Mut>),
}

fn level() -> impl Strategy<Value = u8> {
    prop_oneof![1 => Just(0u8), 3 => 1u8..=5]
}

fn gen_base() -> impl Strategy<Value = Cfg> {
    let agent = (prop::array::uniform3(level()), prop::option::of(0u32..=15), prop::bool::weighted(0.85));
    let queue = (
        0u8..9,
        1u32..=30,
        0u32..=15,
        any::<u8>(),
        prop::option::weighted(0.3, (0usize..3, 1u8..=3)),
        prop::option::weighted(0.7, any::<u8>()),
    );
    (0u64..1000, prop::collection::vec(agent, 3..=6), prop::collection::vec(queue, 2..=3)).prop_map(
        |(seed, agents, queues)| {
            let agents: Vec<ASpec> = agents
                .into_iter()
                .enumerate()
                .map(|(i, (levels, wrap_up, auto_login))| ASpec {
                    name: AGENT_POOL[i].to_string(),
                    levels,
                    wrap_up,
                    auto_login,
                })
                .collect();
            let nq = queues.len();
            let queues = queues
                .into_iter()
                .enumerate()
                .map(|(i, (s, ring_timeout, wrap_up, mask, required, overflow))| {
                    let mut members: Vec<String> = agents
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| mask & (1 << j) != 0)
                        .map(|(_, a)| a.name.clone())
                        .collect();
                    if members.is_empty() {
                        members.push(agents[i % agents.len()].name.clone());
                    }
                    let later = nq - i - 1;
                    let overflow =
                        overflow.filter(|_| later > 0).map(|k| QUEUE_POOL[i + 1 + k as usize % later].to_string());
                    QSpec {
                        name: QUEUE_POOL[i].to_string(),
                        strategy: STRATEGIES[s as usize],
                        ring_timeout,
                        wrap_up,
                        overflow,
                        required,
                        members,
                    }
                })
                .collect();
            Cfg { seed, queues, agents }
        },
    )
}

fn gen_mut() -> impl Strategy<Value = Mut> {
    let few = |n: usize| 0..=n;
    (
        (
            prop::option::weighted(0.45, any::<u8>()),
            prop::option::weighted(0.4, any::<u8>()),
            prop::option::weighted(0.3, (0u8..9, 1u32..=30, 0u32..=15, any::<u8>())),
            prop::option::weighted(
                0.45,
                (prop::array::uniform3(level()), prop::bool::weighted(0.8), any::<u8>(), any::<u8>()),
            ),
        ),
        (
            prop::collection::vec((any::<u8>(), 0u8..9), few(2)),
            prop::collection::vec((any::<u8>(), 1u32..=30), few(3)),
            prop::collection::vec((any::<u8>(), 0u32..=15), few(2)),
            prop::collection::vec((any::<u8>(), prop::option::of((0u8..3, 1u8..=3))), few(1)),
        ),
        (
            prop::collection::vec((any::<u8>(), prop::option::of(0u32..=15)), few(2)),
            prop::collection::vec((any::<u8>(), 0u8..3, 0u8..=5), few(3)),
            prop::collection::vec((any::<u8>(), any::<u8>()), few(2)),
            prop::collection::vec((any::<u8>(), prop::option::weighted(0.7, any::<u8>())), few(2)),
        ),
    )
        .prop_map(
            |(
                (remove_queue, remove_agent, add_queue, add_agent),
                (strategies, ring_timeouts, wrap_ups, required),
                (agent_wraps, levels, toggles, overflows),
            )| Mut {
                remove_queue,
                remove_agent,
                add_queue,
                add_agent,
                strategies,
                ring_timeouts,
                wrap_ups,
                required,
                agent_wraps,
                levels,
                toggles,
                overflows,
            },
        )
}

fn gen_cause() -> impl Strategy<Value = RejectCause> {
    prop::sample::select(
        &[
            RejectCause::NoAnswer,
            RejectCause::Busy,
            RejectCause::Unavailable,
            RejectCause::Declined,
            RejectCause::Unreachable,
        ][..],
    )
}

fn gen_op() -> impl Strategy<Value = Op> {
    let agent_op =
        prop::sample::select(&[AgentOp::Login, AgentOp::Logout, AgentOp::Pause, AgentOp::Ready, AgentOp::Ready][..]);
    prop_oneof![
        8 => (any::<u8>(), 0i32..=2).prop_map(|(queue, priority)| Op::Arrive { queue, priority }),
        4 => any::<u16>().prop_map(|pick| Op::Answer { pick }),
        2 => (any::<u16>(), gen_cause()).prop_map(|(pick, cause)| Op::Reject { pick, cause }),
        2 => any::<u16>().prop_map(|pick| Op::Abandon { pick }),
        3 => any::<u16>().prop_map(|pick| Op::End { pick }),
        3 => (any::<u8>(), agent_op).prop_map(|(pick, op)| Op::Agent { pick, op }),
        4 => prop_oneof![3 => 0u64..=3_000, 1 => 0u64..=30_000].prop_map(|ms| Op::Advance { ms }),
    ]
}

/// Random traffic with 1-3 reloads at random points.
fn gen_ops() -> impl Strategy<Value = Vec<Op>> {
    (prop::collection::vec(gen_op(), 5..=60), prop::collection::vec((any::<prop::sample::Index>(), gen_mut()), 1..=3))
        .prop_map(|(mut ops, reloads)| {
            for (at, m) in reloads {
                let i = at.index(ops.len() + 1);
                ops.insert(i, Op::Reload(Box::new(m)));
            }
            ops
        })
}

// ----------------------------------------------------------------- the driver

struct Sim {
    cfg: Cfg,
    /// The last config every queue ever had (a removed queue keeps the
    /// settings it had when it was removed, for the callers it still holds).
    last_q: BTreeMap<String, QSpec>,
    engine: Engine,
    now: Time,
    arrived: Vec<CallId>,
    finished: BTreeMap<CallId, (u32, Outcome)>,
    /// Every agent name ever configured.
    known_agents: BTreeSet<String>,
    next_call: u64,
    reloads: u32,
    trace: Vec<String>,
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_millis() as f64 / 1000.0)
}

impl Sim {
    fn new(cfg: Cfg) -> Result<Sim, String> {
        let toml = cfg.to_toml();
        let config = config::from_toml_str("base.toml", &toml)
            .map_err(|e| format!("test bug: generated base config is invalid: {e}\n{toml}"))?;
        let engine = Engine::new(&config, Time::ZERO);
        let mut sim = Sim {
            last_q: cfg.queues.iter().map(|q| (q.name.clone(), q.clone())).collect(),
            known_agents: cfg.agents.iter().map(|a| a.name.clone()).collect(),
            cfg,
            engine,
            now: Time::ZERO,
            arrived: Vec::new(),
            finished: BTreeMap::new(),
            next_call: 1,
            reloads: 0,
            trace: vec![format!("--- base config ---\n{toml}--- inputs ---")],
        };
        sim.drain()?;
        for name in sim.cfg.agents.iter().map(|a| a.name.clone()).collect::<Vec<_>>() {
            let agent = sim.engine.agent_id(&name).ok_or_else(|| sim.fail(format!("agent '{name}' has no id")))?;
            sim.input(Input::AgentRegistered { agent }, true)?;
        }
        Ok(sim)
    }

    fn fail(&self, msg: impl std::fmt::Display) -> String {
        let mut s = format!("{msg}\n  (at {}, after {} reload(s))\n", self.now, self.reloads);
        for line in &self.trace {
            s.push_str(line);
            s.push('\n');
        }
        s
    }

    fn aname(&self, a: AgentId) -> String {
        self.engine.agent_name(a).to_string()
    }
    fn qname(&self, q: QueueId) -> String {
        self.engine.queue_name(q).to_string()
    }

    /// Calls that arrived and have not finished.
    fn live(&self) -> Vec<CallId> {
        self.arrived.iter().copied().filter(|c| !self.finished.contains_key(c)).collect()
    }

    /// Drains the engine's output; counts finished calls and checks every
    /// ring against the config in force now.
    fn drain(&mut self) -> Result<(Vec<Action>, Vec<Event>), String> {
        let mut actions = Vec::new();
        while let Some(a) = self.engine.poll_action() {
            actions.push(a);
        }
        let mut events = Vec::new();
        while let Some(e) = self.engine.poll_event() {
            events.push(e);
        }
        for e in &events {
            if let Event::CallFinished { call, outcome, .. } = e {
                if !self.arrived.contains(call) {
                    return Err(self.fail(format!("caller {} finished without having arrived", call.0)));
                }
                if let Some((_, first)) = self.finished.get(call) {
                    return Err(self
                        .fail(format!("caller {} was reported finished twice ({first:?}, then {outcome:?})", call.0)));
                }
                self.finished.insert(*call, (1, outcome.clone()));
            }
        }
        for a in &actions {
            if let Action::Ring { call, agent, timeout } = a {
                self.check_ring(*call, *agent, *timeout)?;
            }
        }
        Ok((actions, events))
    }

    /// Property 5 (and "removed agents are never offered again").
    fn check_ring(&self, call: CallId, agent: AgentId, timeout: Duration) -> Result<(), String> {
        let who = self.aname(agent);
        let Some(view) = self.engine.call(call) else {
            return Err(
                self.fail(format!("agent '{who}' was rung for caller {}, whom the engine no longer holds", call.0))
            );
        };
        let q = self.qname(view.queue);
        let qs = self
            .last_q
            .get(&q)
            .ok_or_else(|| self.fail(format!("caller {} sits in queue '{q}', which no config had", call.0)))?;
        let want = Duration::from_secs(qs.ring_timeout as u64);
        if timeout != want {
            return Err(self.fail(format!(
                "caller {} of queue '{q}' rang agent '{who}' for {}, but the queue's ring timeout is now {}",
                call.0,
                secs(timeout),
                secs(want)
            )));
        }
        let Some(spec) = self.cfg.agent(&who) else {
            return Err(self.fail(format!(
                "agent '{who}', removed from the config, was offered caller {} of queue '{q}'",
                call.0
            )));
        };
        if !qs.members.contains(&who) {
            return Err(self.fail(format!(
                "agent '{who}' was offered caller {} of queue '{q}' without being a member of it (members now: {:?})",
                call.0, qs.members
            )));
        }
        if let Some((s, l)) = qs.required {
            if spec.levels[s] < l {
                return Err(self.fail(format!(
                    "agent '{who}' (now {} level {}) was offered caller {} of queue '{q}', which needs {} level {l}",
                    SKILLS[s], spec.levels[s], call.0, SKILLS[s]
                )));
            }
        }
        Ok(())
    }

    fn input(&mut self, input: Input, must_work: bool) -> Result<(Vec<Action>, Vec<Event>), String> {
        let text = match &input {
            Input::ConfigReplaced(_) => "ConfigReplaced".to_string(),
            Input::CallArrived(nc) => {
                format!("CallArrived {} queue '{}' priority {}", nc.id.0, self.qname(nc.queue), nc.priority)
            }
            other => format!("{other:?}"),
        };
        let r = self.engine.handle(self.now, input);
        self.trace.push(format!("{}: {text} -> {}", self.now, if r.is_ok() { "ok".into() } else { format!("{r:?}") }));
        if let (true, Err(e)) = (must_work, &r) {
            return Err(self.fail(format!("the engine refused `{text}`: {e}")));
        }
        self.drain()
    }

    /// (call, agent) pairs ringing now.
    fn rings(&self) -> Vec<(CallId, AgentId)> {
        let mut v = Vec::new();
        for c in self.live() {
            if let Some(view) = self.engine.call(c) {
                for a in view.ringing {
                    v.push((c, a));
                }
            }
        }
        v
    }

    fn calls_in(&self, bridged: bool) -> Vec<(CallId, CallView)> {
        self.live()
            .into_iter()
            .filter_map(|c| self.engine.call(c).map(|v| (c, v)))
            .filter(|(_, v)| (v.state == "bridged") == bridged)
            .collect()
    }

    fn run(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Arrive { queue, priority } => {
                let qs: Vec<QueueId> = self.engine.queue_ids().collect();
                if qs.is_empty() {
                    return Ok(());
                }
                let q = qs[*queue as usize % qs.len()];
                let id = CallId(self.next_call);
                self.next_call += 1;
                self.arrived.push(id);
                let nc = NewCall {
                    id,
                    queue: q,
                    caller: format!("+3584000{}", id.0),
                    priority: *priority,
                    skills: vec![],
                    attributes: vec![],
                };
                self.input(Input::CallArrived(nc), true)?;
            }
            Op::Answer { pick } => {
                let rings = self.rings();
                if let Some(&(call, agent)) = rings.get(*pick as usize % rings.len().max(1)) {
                    self.input(Input::OfferAnswered { call, agent }, true)?;
                }
            }
            Op::Reject { pick, cause } => {
                let rings = self.rings();
                if let Some(&(call, agent)) = rings.get(*pick as usize % rings.len().max(1)) {
                    self.input(Input::OfferRejected { call, agent, cause: *cause }, true)?;
                }
            }
            Op::Abandon { pick } => {
                let calls = self.calls_in(false);
                if let Some((call, _)) = calls.get(*pick as usize % calls.len().max(1)) {
                    self.input(Input::CallAbandoned { call: *call }, true)?;
                }
            }
            Op::End { pick } => {
                let calls = self.calls_in(true);
                if let Some((call, view)) = calls.get(*pick as usize % calls.len().max(1)).cloned() {
                    self.end_call(call, &view)?;
                }
            }
            Op::Agent { pick, op } => {
                let agents: Vec<AgentId> = self.engine.agent_ids().collect();
                if let Some(&agent) = agents.get(*pick as usize % agents.len().max(1)) {
                    let input = match op {
                        AgentOp::Login => Input::AgentLogin { agent },
                        AgentOp::Logout => Input::AgentLogout { agent },
                        AgentOp::Pause => Input::AgentPause { agent, reason: format!("coffee {}", self.now.0) },
                        AgentOp::Ready => Input::AgentReady { agent },
                    };
                    // Pausing a logged-out agent is refused; that is fine here.
                    self.input(input, false)?;
                }
            }
            Op::Advance { ms } => {
                self.now = Time(self.now.0 + ms);
                self.engine.handle_timeout(self.now).map_err(|e| self.fail(format!("handle_timeout failed: {e}")))?;
                self.trace.push(format!("{}: (time advanced)", self.now));
                self.drain()?;
            }
            Op::Reload(m) => self.reload(m)?,
        }
        Ok(())
    }

    /// Ends a bridged call (property 4: works after a reload) and checks the
    /// agent's next state against the config in force now.
    fn end_call(&mut self, call: CallId, view: &CallView) -> Result<(), String> {
        let agent = view.agent.expect("bridged call has an agent");
        let who = self.aname(agent);
        let q = self.qname(view.queue);
        self.input(Input::CallEnded { call }, true)?;
        match self.finished.get(&call) {
            Some((_, Outcome::Answered { agent: a })) if *a == agent => {}
            other => {
                return Err(self.fail(format!(
                    "the call of caller {} with agent '{who}' ended, but it finished as {other:?}",
                    call.0
                )))
            }
        }
        let state = self.engine.agent_state(agent).cloned();
        match self.cfg.agent(&who) {
            None => {
                if state != Some(AgentState::LoggedOut) {
                    return Err(self.fail(format!(
                        "agent '{who}' was removed from the config while on a call, yet is {state:?} after the call ended \
                         (expected logged out)"
                    )));
                }
            }
            Some(spec) => {
                let wrap = spec.wrap_up.unwrap_or(self.last_q[&q].wrap_up);
                if let Some(AgentState::WrapUp { until }) = state {
                    if until != self.now.plus_secs(wrap) {
                        return Err(self.fail(format!(
                            "agent '{who}' ended a call of queue '{q}' at {} and wraps up until {until}, but the \
                             config now gives {wrap} s of wrap-up",
                            self.now
                        )));
                    }
                } else if wrap > 0 && matches!(state, Some(AgentState::Available { .. } | AgentState::Ringing { .. })) {
                    return Err(self.fail(format!(
                        "agent '{who}' ended a call of queue '{q}' and skipped the {wrap} s wrap-up the config now gives \
                         (state {state:?})"
                    )));
                }
            }
        }
        Ok(())
    }

    fn reload(&mut self, m: &Mut) -> Result<(), String> {
        let new = self.cfg.mutate(m);
        let toml = new.to_toml();
        let config = config::from_toml_str("reload.toml", &toml)
            .map_err(|e| self.fail(format!("test bug: generated reload config is invalid: {e}\n{toml}")))?;
        // Settle every timer due now, so that the reload input itself is the
        // only thing that happens between the two snapshots.
        self.engine.handle_timeout(self.now).map_err(|e| self.fail(format!("handle_timeout failed: {e}")))?;
        self.drain()?;

        // ---- snapshot before
        let old = self.cfg.clone();
        let live_before: Vec<QueueId> = self.engine.queue_ids().collect();
        let waiting_before: BTreeMap<QueueId, Vec<CallId>> =
            live_before.iter().map(|&q| (q, self.engine.waiting(q))).collect();
        let calls_before: BTreeMap<CallId, CallView> =
            self.live().into_iter().filter_map(|c| self.engine.call(c).map(|v| (c, v))).collect();
        let agents_before: BTreeMap<String, (AgentId, AgentState)> = self
            .known_agents
            .iter()
            .filter_map(|n| {
                let id = self.engine.agent_id(n)?;
                Some((n.clone(), (id, self.engine.agent_state(id)?.clone())))
            })
            .collect();

        // ---- the reload
        self.reloads += 1;
        self.trace.push(format!("--- reload {} ---\n{toml}---", self.reloads));
        self.cfg = new;
        for q in &self.cfg.queues {
            self.last_q.insert(q.name.clone(), q.clone());
        }
        self.known_agents.extend(self.cfg.agents.iter().map(|a| a.name.clone()));
        let (actions, events) = self.input(Input::ConfigReplaced(Box::new(config)), true)?;

        // ---- property 1 and 4: nobody dropped, no bridged call cut
        for e in &events {
            if let Event::CallFinished { call, outcome, .. } = e {
                let was = calls_before.get(call).map_or("unknown", |v| v.state);
                return Err(self.fail(format!(
                    "caller {} ({was} before the reload) was dropped by the reload: finished as {outcome:?}",
                    call.0
                )));
            }
        }
        let removed_queues: BTreeMap<String, Option<String>> = old
            .queues
            .iter()
            .filter(|q| self.cfg.queue(&q.name).is_none())
            .map(|q| (q.name.clone(), q.overflow.clone()))
            .collect();
        for (&c, before) in &calls_before {
            let Some(after) = self.engine.call(c) else {
                return Err(self.fail(format!(
                    "caller {} ({} in queue '{}') vanished on reload",
                    c.0,
                    before.state,
                    self.qname(before.queue)
                )));
            };
            if before.state == "bridged" {
                if after.state != "bridged" || after.agent != before.agent {
                    return Err(self.fail(format!(
                        "the call of caller {} with agent '{}' was cut by the reload (now {} with {:?})",
                        c.0,
                        self.aname(before.agent.unwrap()),
                        after.state,
                        after.agent.map(|a| self.aname(a))
                    )));
                }
                continue;
            }
            let qb = self.qname(before.queue);
            let expected = match removed_queues.get(&qb) {
                Some(Some(target)) => target.clone(),
                _ => qb.clone(),
            };
            let qa = self.qname(after.queue);
            if qa != expected {
                return Err(self.fail(format!(
                    "caller {} waiting in queue '{qb}' ended up in queue '{qa}' after the reload (expected '{expected}'{})",
                    c.0,
                    if removed_queues.contains_key(&qb) { ", the removed queue's overflow target" } else { "" }
                )));
            }
            if qa != qb {
                let moved = events.iter().any(
                    |e| matches!(e, Event::Overflowed { call, reason: OverflowReason::QueueRemoved, .. } if *call == c),
                );
                if !moved {
                    return Err(self.fail(format!(
                        "caller {} moved from removed queue '{qb}' to '{qa}' without an Overflowed(QueueRemoved) event",
                        c.0
                    )));
                }
            }
        }

        // ---- property 2: callers keep their place
        for (&q, before) in &waiting_before {
            let name = self.qname(q);
            if removed_queues.contains_key(&name) {
                continue;
            }
            let after = self.engine.waiting(q);
            for c in before {
                if !after.contains(c) {
                    return Err(self.fail(format!(
                        "caller {} was taken out of queue '{name}' by the reload (before {before:?}, after {after:?})",
                        c.0
                    )));
                }
            }
            // Callers moved in from a removed queue, in their old order.
            let mut moved: Vec<CallId> = Vec::new();
            for (from, target) in &removed_queues {
                if target.as_deref() == Some(name.as_str()) {
                    let fq = self.engine.queue_id(from).expect("removed queue keeps its id");
                    moved.extend(waiting_before.get(&fq).into_iter().flatten().copied());
                }
            }
            let prio = |c: &CallId| self.engine.call(*c).map_or(0, |v| v.priority);
            let rank = |c: &CallId| -> (i32, u8, usize) {
                match before.iter().position(|x| x == c) {
                    Some(i) => (-prio(c), 0, i),
                    None => (-prio(c), 1, moved.iter().position(|x| x == c).unwrap_or(usize::MAX)),
                }
            };
            let got: Vec<CallId> = after.iter().copied().filter(|c| before.contains(c) || moved.contains(c)).collect();
            let mut want = got.clone();
            want.sort_by_key(rank);
            if got != want {
                let i = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
                let who = want[i];
                let why = if moved.contains(&who) || moved.contains(&got[i]) {
                    format!(
                        " (callers {:?} moved in from a removed queue must queue behind earlier callers of the same priority)",
                        moved.iter().map(|c| c.0).collect::<Vec<_>>()
                    )
                } else {
                    String::new()
                };
                return Err(self.fail(format!(
                    "caller {} lost its place in queue '{name}' on reload{why}: order before {:?}, after {:?}, expected {:?}",
                    who.0,
                    before.iter().map(|c| c.0).collect::<Vec<_>>(),
                    got.iter().map(|c| c.0).collect::<Vec<_>>(),
                    want.iter().map(|c| c.0).collect::<Vec<_>>()
                )));
            }
        }

        // ---- property 3: agents keep their state
        let overflowed: BTreeSet<CallId> = calls_before
            .iter()
            .filter(|(_, v)| v.state != "bridged" && matches!(removed_queues.get(&self.qname(v.queue)), Some(Some(_))))
            .map(|(c, _)| *c)
            .collect();
        let live_after: BTreeSet<AgentId> = self.engine.agent_ids().collect();
        for (name, (id, before)) in &agents_before {
            let after = self.engine.agent_state(*id).cloned().expect("agent ids are stable");
            let in_old = old.agent(name).is_some();
            let new_spec = self.cfg.agent(name).cloned();
            let bad = |what: &str| self.fail(format!("agent '{name}' {what} on reload: was {before:?}, now {after:?}"));
            match (in_old, &new_spec) {
                // Kept.
                (true, Some(_)) => {
                    if !live_after.contains(id) {
                        return Err(bad("disappeared from the agent list although still configured"));
                    }
                    let ok = match before {
                        AgentState::Available { .. } => {
                            after == *before || matches!(after, AgentState::Ringing { since, .. } if since == self.now)
                        }
                        AgentState::Ringing { call, .. } if overflowed.contains(call) => {
                            matches!(after, AgentState::Available { .. } | AgentState::Ringing { .. })
                        }
                        _ => after == *before,
                    };
                    if !ok {
                        let what = match before {
                            AgentState::OnCall { .. } => "lost the call it was on",
                            AgentState::WrapUp { .. } => "had its wrap-up changed",
                            AgentState::Paused { .. } => "lost its pause",
                            AgentState::LoggedOut => "was logged in",
                            AgentState::Ringing { .. } => "stopped ringing",
                            AgentState::Available { .. } => "changed state",
                        };
                        return Err(bad(what));
                    }
                }
                // Removed now.
                (true, None) => {
                    if live_after.contains(id) {
                        return Err(bad("is still listed after being removed from the config"));
                    }
                    match before {
                        AgentState::OnCall { .. } => {
                            if after != *before {
                                return Err(bad("was cut off its call when removed from the config"));
                            }
                        }
                        AgentState::Ringing { call, .. } => {
                            let cancelled = actions.iter().any(
                                |a| matches!(a, Action::CancelRing { call: c, agent } if c == call && agent == id),
                            );
                            if after != AgentState::LoggedOut || !cancelled {
                                return Err(bad(&format!(
                                    "was removed while ringing for caller {} but the ring was not withdrawn (cancel sent: {cancelled}) \
                                     or it did not log out",
                                    call.0
                                )));
                            }
                        }
                        _ => {
                            if after != AgentState::LoggedOut {
                                return Err(bad("was removed from the config but not logged out"));
                            }
                        }
                    }
                }
                // Re-added after an earlier removal.
                (false, Some(spec)) => {
                    if !live_after.contains(id) {
                        return Err(bad("is missing from the agent list after being added back"));
                    }
                    let ok = match before {
                        AgentState::OnCall { .. } => after == *before,
                        AgentState::LoggedOut if spec.auto_login => {
                            matches!(after, AgentState::Available { since } if since == self.now)
                                || matches!(after, AgentState::Ringing { since, .. } if since == self.now)
                        }
                        AgentState::LoggedOut => after == AgentState::LoggedOut,
                        _ => false,
                    };
                    if !ok {
                        return Err(bad(&format!(
                            "did not start over as a new agent would (auto_login = {}) when added back",
                            spec.auto_login
                        )));
                    }
                }
                // Removed earlier and still absent.
                (false, None) => {
                    if live_after.contains(id) || !matches!(after, AgentState::LoggedOut | AgentState::OnCall { .. }) {
                        return Err(bad("came back although still absent from the config"));
                    }
                    if matches!(before, AgentState::OnCall { .. }) && after != *before {
                        return Err(bad("was cut off its call"));
                    }
                }
            }
        }
        // Brand-new agents exist; their phones register.
        for a in self.cfg.agents.clone() {
            if agents_before.contains_key(&a.name) {
                continue;
            }
            let Some(id) = self.engine.agent_id(&a.name) else {
                return Err(self.fail(format!("agent '{}' added by the reload is unknown to the engine", a.name)));
            };
            let state = self.engine.agent_state(id).cloned();
            let want = if a.auto_login { AgentState::Available { since: self.now } } else { AgentState::LoggedOut };
            if state.as_ref() != Some(&want) {
                return Err(self.fail(format!(
                    "agent '{}' added by the reload (auto_login = {}) is {state:?}, expected {want:?}",
                    a.name, a.auto_login
                )));
            }
            self.input(Input::AgentRegistered { agent: id }, true)?;
        }
        Ok(())
    }

    /// Property 1: every caller hangs up or finishes the call, timers run
    /// out; then every call that arrived finished exactly once.
    fn wind_down(&mut self) -> Result<(), String> {
        self.trace.push("--- wind-down ---".to_string());
        for call in self.live() {
            let Some(view) = self.engine.call(call) else {
                return Err(self.fail(format!("caller {} is no longer held by the engine but never finished", call.0)));
            };
            if view.state == "bridged" {
                self.end_call(call, &view)?;
            } else {
                self.input(Input::CallAbandoned { call }, true)?;
            }
        }
        let mut rounds = 0;
        while let Some(t) = self.engine.poll_timeout() {
            rounds += 1;
            if rounds > 10_000 {
                return Err(self.fail(format!("with no calls left the engine still wants to wake up (next at {t})")));
            }
            self.now = self.now.max(t);
            self.engine.handle_timeout(self.now).map_err(|e| self.fail(format!("handle_timeout failed: {e}")))?;
            self.drain()?;
        }
        for &call in &self.arrived {
            let n = self.finished.get(&call).map_or(0, |f| f.0);
            if n != 1 {
                return Err(
                    self.fail(format!("caller {} was lost: finished {n} times by the end (expected once)", call.0))
                );
            }
        }
        let held = self.engine.call_count();
        if held != 0 {
            return Err(self.fail(format!("{held} call(s) are still held by the engine after every caller left")));
        }
        Ok(())
    }
}

fn run_case(base: Cfg, ops: &[Op]) -> Result<(), TestCaseError> {
    let go = || -> Result<(), String> {
        let mut sim = Sim::new(base)?;
        for op in ops {
            sim.run(op)?;
        }
        sim.wind_down()
    };
    go().map_err(TestCaseError::fail)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    /// Properties 1-5 with 1-3 reloads in the middle of random traffic.
    #[test]
    fn reloads_in_the_middle_of_traffic_lose_nobody_and_keep_places_and_states(
        base in gen_base(),
        ops in gen_ops(),
    ) {
        run_case(base, &ops)?;
    }
}
