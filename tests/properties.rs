//! Property tests for the routing engine: random configs, random traffic,
//! and an independent model of every agent and call, kept by the test.
//!
//! The model is built only from what the test fed in (the config it wrote,
//! the inputs it sent, its own clock) and what the engine emitted: actions in
//! order (`Ring`, `CancelRing`, `Bridge`, `StartHold`, `Transfer`, `Reject`)
//! and the events that say why a ring ended (`RingNoAnswer` /
//! `RingCancelled`) and how a call finished (`CallFinished`). It never asks
//! the engine about agent or call state. After every input and every timer
//! it checks:
//!
//! 1. a call is offered only to an agent who may take it at that moment:
//!    logged in, not paused, not in wrap-up, not on a call, not ringing,
//!    registered, a member of the call's queue, past any back-off, in an
//!    open tier, and meeting every skill level (queue + the call's own
//!    skills, with the relaxation steps due at that time);
//! 2. an agent rings for at most one call; a call rings several agents only
//!    under `ring-all`, and each of them once;
//! 3. every call that arrived finishes exactly once, with the outcome its
//!    actions announced (Answered ⇔ Bridge, Overflowed ⇔ Transfer,
//!    Rejected ⇔ Reject, Abandoned ⇔ the caller hung up before an answer);
//!    at the end of each case every caller hangs up, time runs out every
//!    timer, and the engine holds no call;
//! 4. within a queue callers are offered in priority-then-arrival order: no
//!    waiting caller ahead of the one rung (effective priority with aging,
//!    then arrival) could have been taken by the agent rung.
//!
//! Agents also transfer bridged calls (blind, `TransferCall`) into random
//! queues: the model accepts one only into a queue that would take a caller
//! now, frees the agent as after a hang-up, and keeps the caller's place
//! (its arrival order and waited time), so invariant 4 checks that an
//! escalated caller is served before everyone who joined after it.
//!
//! Besides: inputs that do not fit the state (an answer from a phone that is
//! not ringing, a pause of a logged-out agent, a hang-up of an unknown call)
//! are refused and change nothing, rings end by their timeout, and a ring is
//! withdrawn only for a reason (answer elsewhere, caller gone or moved, the
//! agent logged out, paused or lost registration).
//!
//! 5. `random` and `weighted-random` spread offers as they promise: plain
//!    chi-square tests at the bottom, with a fixed seed.

use acd::config::{self, Config, QueueConfig};
use acd::engine::{Action, AgentId, CallId, Engine, Event, Input, NewCall, Outcome, QueueId, RejectCause, Time};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

// ----------------------------------------------------------------- generated configs

const SKILLS: [&str; 3] = ["billing", "tech", "french"];
/// A skill no config declares: a call asking for it can never be served.
const UNDECLARED: &str = "klingon";
const AGENTS: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];
const QUEUES: [&str; 3] = ["sales", "support", "vip"];
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// Everything varies.
    General,
    /// Every queue rings all its eligible agents at once.
    RingAll,
    /// Few agents, many callers, priorities and aging: who goes first.
    Ordering,
    /// Small queues, max-wait and overflow chains, agents who log in late.
    Overflow,
}

#[derive(Debug, Clone)]
struct GenAgent {
    /// Level per entry of [`SKILLS`]; 0 = does not have it.
    levels: [u8; 3],
    wrap_up: Option<u32>,
    auto_login: bool,
    registered: bool,
}

#[derive(Debug, Clone)]
struct GenRelax {
    after: u32,
    set: Option<(usize, u8)>,
    drop: Option<usize>,
    add: Option<(usize, u8)>,
}

#[derive(Debug, Clone)]
enum GenOverflow {
    None,
    /// Some later queue (so overflow never loops).
    LaterQueue(u8),
    Uri,
    Reject(u16),
}

#[derive(Debug, Clone)]
struct GenQueue {
    strategy: &'static str,
    tie_break: &'static str,
    ring_timeout: u32,
    wrap_up: u32,
    max_wait: u32,
    max_waiting: u32,
    overflow: GenOverflow,
    when_no_agents: &'static str,
    weight: u32,
    required: Vec<(usize, u8)>,
    aging: u32,
    /// Opening delays of tier 2 and tier 3 (added up, so they never decrease).
    tiers: Option<(u32, u32)>,
    relax: Vec<GenRelax>,
    announce: u32,
    /// (agent, tier, weight); the agent is taken modulo the agent count.
    members: Vec<(u8, u32, u32)>,
}

#[derive(Debug, Clone)]
struct GenConfig {
    seed: u64,
    cross_queue_policy: &'static str,
    auto_pause: u32,
    /// no_answer, busy, unavailable, declined, unreachable.
    backoff: [u32; 5],
    agents: Vec<GenAgent>,
    queues: Vec<GenQueue>,
}

fn gen_agent(f: Family) -> BoxedStrategy<GenAgent> {
    let login = if f == Family::Overflow { 0.5 } else { 0.85 };
    (
        prop::array::uniform3(prop_oneof![1 => Just(0u8), 3 => 2u8..=5]),
        prop::option::of(0u32..=15),
        prop::bool::weighted(login),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(levels, wrap_up, auto_login, registered)| GenAgent { levels, wrap_up, auto_login, registered })
        .boxed()
}

fn gen_relax() -> impl Strategy<Value = Vec<GenRelax>> {
    prop::collection::vec(
        (
            0u32..=30,
            prop::option::of((0usize..3, 1u8..=3)),
            prop::option::of(0usize..3),
            prop::option::of((0usize..3, 1u8..=4)),
        ),
        0..=2,
    )
    .prop_map(|steps| {
        let mut at = 0;
        steps
            .into_iter()
            .map(|(gap, set, drop, add)| {
                at += gap;
                // One skill per step at most once, so the order of set, drop
                // and add inside a step never matters.
                let drop = drop.filter(|d| set.is_none_or(|s| s.0 != *d));
                let add = add.filter(|a| set.is_none_or(|s| s.0 != a.0) && drop != Some(a.0));
                let set = if set.is_none() && drop.is_none() && add.is_none() { Some((0, 1)) } else { set };
                GenRelax { after: at, set, drop, add }
            })
            .collect()
    })
}

fn gen_queue(f: Family) -> BoxedStrategy<GenQueue> {
    let strategy = match f {
        Family::RingAll => Just("ring-all").boxed(),
        _ => prop::sample::select(&STRATEGIES[..]).boxed(),
    };
    let tie_break = prop::sample::select(&["longest-idle", "fewest-skills", "best-level"][..]);
    let (max_wait, max_waiting) = match f {
        Family::Overflow => (prop_oneof![Just(0u32), 1u32..=40].boxed(), (1u32..=3).boxed()),
        _ => (
            prop_oneof![3 => Just(0u32), 1 => 5u32..=90].boxed(),
            prop_oneof![4 => Just(200u32), 1 => 1u32..=4].boxed(),
        ),
    };
    let overflow = prop_oneof![
        2 => Just(GenOverflow::None),
        2 => any::<u8>().prop_map(GenOverflow::LaterQueue),
        1 => Just(GenOverflow::Uri),
        1 => prop::sample::select(&[486u16, 503, 480][..]).prop_map(GenOverflow::Reject),
    ];
    let when_no_agents = prop::sample::select(&["join", "reject", "overflow"][..]);
    let required = match f {
        Family::Ordering => Just(Vec::new()).boxed(),
        _ => prop::collection::vec((0usize..3, 1u8..=3), 0..=2).boxed(),
    };
    let aging = match f {
        Family::Ordering => prop_oneof![2 => Just(0u32), 1 => 2u32..=20].boxed(),
        _ => prop_oneof![4 => Just(0u32), 1 => 5u32..=60].boxed(),
    };
    let tiers = match f {
        Family::Ordering => Just(None).boxed(),
        _ => prop::option::of((0u32..=20, 0u32..=20)).boxed(),
    };
    let relax = match f {
        Family::Ordering => Just(Vec::new()).boxed(),
        _ => gen_relax().boxed(),
    };
    let announce = prop_oneof![3 => Just(0u32), 1 => 10u32..=30];
    let member_tier = match f {
        Family::Ordering => Just(1u32).boxed(),
        _ => prop_oneof![3 => Just(1u32), 1 => 2u32..=3].boxed(),
    };
    let members = prop::collection::vec((any::<u8>(), member_tier, 1u32..=5), 1..=6);
    (
        (strategy, tie_break, 1u32..=30, 0u32..=15, max_wait, max_waiting),
        (overflow, when_no_agents, 1u32..=5, required, aging, tiers),
        (relax, announce, members),
    )
        .prop_map(
            |(
                (strategy, tie_break, ring_timeout, wrap_up, max_wait, max_waiting),
                (overflow, when_no_agents, weight, required, aging, tiers),
                (relax, announce, members),
            )| GenQueue {
                strategy,
                tie_break,
                ring_timeout,
                wrap_up,
                max_wait,
                max_waiting,
                overflow,
                when_no_agents,
                weight,
                required,
                aging,
                tiers,
                relax,
                announce,
                members,
            },
        )
        .boxed()
}

fn gen_config(f: Family) -> BoxedStrategy<GenConfig> {
    let agents = match f {
        Family::Ordering => prop::collection::vec(gen_agent(f), 1..=3).boxed(),
        _ => prop::collection::vec(gen_agent(f), 1..=6).boxed(),
    };
    (
        // TOML integers are i64.
        0..=i64::MAX as u64,
        prop::sample::select(&["oldest-caller", "queue-weight"][..]),
        0u32..=4,
        prop::array::uniform5(prop_oneof![Just(0u32), 1u32..=20]),
        agents,
        prop::collection::vec(gen_queue(f), 1..=3),
    )
        .prop_map(|(seed, cross_queue_policy, auto_pause, backoff, agents, queues)| GenConfig {
            seed,
            cross_queue_policy,
            auto_pause,
            backoff,
            agents,
            queues,
        })
        .boxed()
}

/// The config file for `g`, in the format of `config/acd.toml`.
fn to_toml(g: &GenConfig) -> String {
    let mut t = String::new();
    let b = g.backoff;
    let _ = writeln!(
        t,
        "[engine]\nseed = {}\ncross_queue_policy = \"{}\"\nauto_pause_after_misses = {}\n\
         [engine.backoff_secs]\nno_answer = {}\nbusy = {}\nunavailable = {}\ndeclined = {}\nunreachable = {}\n",
        g.seed, g.cross_queue_policy, g.auto_pause, b[0], b[1], b[2], b[3], b[4]
    );
    t.push_str("[skills]\n");
    for s in SKILLS {
        let _ = writeln!(t, "{s} = \"{s}\"");
    }
    let n = g.agents.len();
    let skill_table = |list: &[(usize, u8)]| -> String {
        let mut seen = Vec::new();
        let parts: Vec<String> = list
            .iter()
            .filter(|(s, _)| {
                let fresh = !seen.contains(s);
                seen.push(*s);
                fresh
            })
            .map(|(s, l)| format!("{} = {l}", SKILLS[*s]))
            .collect();
        format!("{{ {} }}", parts.join(", "))
    };
    for (i, q) in g.queues.iter().enumerate() {
        let _ = writeln!(t, "\n[[queue]]\nname = \"{}\"", QUEUES[i]);
        let _ = writeln!(t, "strategy = \"{}\"\ntie_break = \"{}\"", q.strategy, q.tie_break);
        let _ = writeln!(
            t,
            "ring_timeout_secs = {}\nwrap_up_secs = {}\nmax_waiting = {}\nweight = {}\naging_secs = {}\nannounce_every_secs = {}",
            q.ring_timeout, q.wrap_up, q.max_waiting, q.weight, q.aging, q.announce
        );
        let later = g.queues.len() - i - 1;
        let overflow = match q.overflow {
            GenOverflow::None => None,
            GenOverflow::LaterQueue(k) if later > 0 => Some(format!("queue:{}", QUEUES[i + 1 + k as usize % later])),
            GenOverflow::LaterQueue(_) => None,
            GenOverflow::Uri => Some(format!("sip:overflow-{}@pbx.example.com", QUEUES[i])),
            GenOverflow::Reject(s) => Some(format!("reject:{s}")),
        };
        let when_no_agents =
            if q.when_no_agents == "overflow" && overflow.is_none() { "reject" } else { q.when_no_agents };
        let _ = writeln!(t, "when_no_agents = \"{when_no_agents}\"");
        if let Some(o) = &overflow {
            let _ = writeln!(t, "overflow = \"{o}\"\nmax_wait_secs = {}", q.max_wait);
        }
        if !q.required.is_empty() {
            let _ = writeln!(t, "required_skills = {}", skill_table(&q.required));
        }
        if let Some((two, three)) = q.tiers {
            let _ = writeln!(
                t,
                "tiers = [{{ tier = 2, open_after_secs = {two} }}, {{ tier = 3, open_after_secs = {} }}]",
                two + three
            );
        }
        if !q.relax.is_empty() {
            let steps: Vec<String> = q
                .relax
                .iter()
                .map(|r| {
                    let mut s = format!("{{ after_secs = {}", r.after);
                    if let Some(x) = r.set {
                        s += &format!(", set = {}", skill_table(&[x]));
                    }
                    if let Some(d) = r.drop {
                        s += &format!(", drop = [\"{}\"]", SKILLS[d]);
                    }
                    if let Some(x) = r.add {
                        s += &format!(", add = {}", skill_table(&[x]));
                    }
                    s + " }"
                })
                .collect();
            let _ = writeln!(t, "relax = [{}]", steps.join(", "));
        }
        let mut seen = Vec::new();
        let members: Vec<String> = q
            .members
            .iter()
            .filter_map(|&(a, tier, weight)| {
                let a = a as usize % n;
                if seen.contains(&a) {
                    return None;
                }
                seen.push(a);
                Some(format!("{{ agent = \"{}\", tier = {tier}, weight = {weight} }}", AGENTS[a]))
            })
            .collect();
        let _ = writeln!(t, "members = [{}]", members.join(", "));
    }
    for (i, a) in g.agents.iter().enumerate() {
        let _ = writeln!(t, "\n[[agent]]\nid = \"{}\"", AGENTS[i]);
        let skills: Vec<(usize, u8)> = (0..3).filter(|&s| a.levels[s] > 0).map(|s| (s, a.levels[s])).collect();
        if !skills.is_empty() {
            let _ = writeln!(t, "skills = {}", skill_table(&skills));
        }
        if let Some(w) = a.wrap_up {
            let _ = writeln!(t, "wrap_up_secs = {w}");
        }
        let _ = writeln!(t, "auto_login = {}", a.auto_login);
    }
    t
}

// ----------------------------------------------------------------- generated traffic

#[derive(Debug, Clone, Copy)]
enum AgentOp {
    Login,
    Logout,
    Pause,
    Ready,
    Register,
    Unregister,
}

#[derive(Debug, Clone)]
enum Op {
    /// A caller arrives; skill index 3 is a skill nobody declared.
    Arrive {
        queue: u8,
        priority: i32,
        skills: Vec<(usize, u8)>,
    },
    /// The caller of a live call hangs up (`CallEnded` when `ended`).
    HangUp {
        pick: u16,
        ended: bool,
    },
    /// A bridged call ends.
    End {
        pick: u16,
    },
    /// The agent of a bridged call transfers it (blind) to a queue.
    Transfer {
        pick: u16,
        queue: u8,
    },
    /// A ringing phone answers.
    Answer {
        pick: u16,
    },
    /// A ringing phone says no.
    Reject {
        pick: u16,
        cause: RejectCause,
    },
    /// An answer or rejection for any (call, agent) pair, usually not ringing.
    Stray {
        call: u16,
        agent: u8,
        answer: bool,
        cause: RejectCause,
    },
    /// A hang-up for a call the engine does not know.
    HangUpUnknown {
        pick: u16,
    },
    /// An input the engine must refuse: a live call arriving again, a call
    /// for an unknown queue, an unknown agent, or a time in the past.
    Refused {
        kind: u8,
        pick: u16,
    },
    Agent {
        agent: u8,
        op: AgentOp,
    },
    Advance {
        ms: u64,
    },
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

fn gen_op(f: Family) -> BoxedStrategy<Op> {
    let skills = match f {
        Family::Ordering => Just(Vec::new()).boxed(),
        _ => prop_oneof![
            1 => Just(Vec::new()),
            1 => prop::collection::vec((prop_oneof![9 => 0usize..3, 1 => Just(3usize)], 1u8..=4), 1..=2),
        ]
        .boxed(),
    };
    let arrive_weight = if f == Family::Ordering { 8 } else { 5 };
    let agent_op = prop::sample::select(
        &[
            AgentOp::Login,
            AgentOp::Login,
            AgentOp::Ready,
            AgentOp::Ready,
            AgentOp::Ready,
            AgentOp::Logout,
            AgentOp::Pause,
            AgentOp::Pause,
            AgentOp::Register,
            AgentOp::Unregister,
        ][..],
    );
    prop_oneof![
        arrive_weight => (any::<u8>(), 0i32..=3, skills)
            .prop_map(|(queue, priority, skills)| Op::Arrive { queue, priority, skills }),
        2 => (any::<u16>(), any::<bool>()).prop_map(|(pick, ended)| Op::HangUp { pick, ended }),
        4 => any::<u16>().prop_map(|pick| Op::End { pick }),
        2 => (any::<u16>(), any::<u8>()).prop_map(|(pick, queue)| Op::Transfer { pick, queue }),
        5 => any::<u16>().prop_map(|pick| Op::Answer { pick }),
        3 => (any::<u16>(), gen_cause()).prop_map(|(pick, cause)| Op::Reject { pick, cause }),
        1 => (any::<u16>(), any::<u8>(), any::<bool>(), gen_cause())
            .prop_map(|(call, agent, answer, cause)| Op::Stray { call, agent, answer, cause }),
        1 => any::<u16>().prop_map(|pick| Op::HangUpUnknown { pick }),
        1 => (0u8..4, any::<u16>()).prop_map(|(kind, pick)| Op::Refused { kind, pick }),
        4 => (any::<u8>(), agent_op).prop_map(|(agent, op)| Op::Agent { agent, op }),
        5 => prop_oneof![0u64..=2_000, 0u64..=40_000].prop_map(|ms| Op::Advance { ms }),
    ]
    .boxed()
}

// ----------------------------------------------------------------- the model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AState {
    LoggedOut,
    Available,
    Ringing(CallId),
    OnCall(CallId),
    /// Until this time.
    WrapUp(Time),
    Paused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterCall {
    Pause,
    Logout,
}

#[derive(Debug)]
struct MAgent {
    name: String,
    id: AgentId,
    levels: HashMap<String, u8>,
    wrap_up: Option<u32>,
    state: AState,
    registered: bool,
    backoff_until: Time,
    misses: u32,
    after_call: Option<AfterCall>,
    ring_deadline: Time,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CState {
    /// Arrived; not yet in a queue (this lasts only inside one input).
    Pending,
    Waiting,
    Offering,
    Bridged(AgentId),
    /// Left the engine in the current input; removed when it is checked.
    Gone,
}

/// Where a caller joining a queue, or overflowing from one, ends up.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dest {
    Join(usize),
    Transfer(String),
    Reject(u16),
    Stay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Full,
    NoAgents,
    MaxWait,
}

#[derive(Debug)]
struct MCall {
    id: CallId,
    priority: i32,
    own: Vec<(String, u8)>,
    /// Index into `cfg.queues`; meaningful once queued.
    queue: usize,
    /// Joined the queue (renewed by overflow, kept by a transfer): tiers,
    /// relaxation, aging.
    entered: Time,
    /// Joined the current queue, transfers included: max wait.
    joined: Time,
    /// Order of joining a queue (renewed by overflow into another queue,
    /// kept by a transfer).
    seq: u64,
    state: CState,
    ringing: Vec<AgentId>,
    bridge_seen: bool,
}

/// What one `handle*` call emitted, and what the model expects of it.
struct Batch {
    events: Vec<Event>,
    used: Vec<bool>,
    expect_finish: BTreeMap<CallId, Outcome>,
    /// Rings withdrawn (not the agent's fault): (call, agent, call's seq then).
    withdrawn: Vec<(CallId, AgentId, u64)>,
    /// The agent whose own input (logout, pause, unregister) may withdraw its ring.
    excused: Option<AgentId>,
    /// The previous action was a Ring for this call (one ring-all offer).
    prev_ring: Option<CallId>,
    expect_bridge: Vec<CallId>,
    /// A transfer of this call into this queue was accepted: its StartHold
    /// keeps the call's place.
    transferring: Option<(CallId, usize)>,
}

impl Batch {
    fn new(events: Vec<Event>) -> Batch {
        let used = vec![false; events.len()];
        Batch {
            events,
            used,
            expect_finish: BTreeMap::new(),
            withdrawn: Vec::new(),
            excused: None,
            prev_ring: None,
            expect_bridge: Vec::new(),
            transferring: None,
        }
    }

    /// The first unclaimed event saying why the ring of `call` at `agent` ended.
    fn take_ring_end(&mut self, call: CallId, agent: AgentId) -> Option<Event> {
        for (i, e) in self.events.iter().enumerate() {
            if self.used[i] {
                continue;
            }
            match e {
                Event::RingNoAnswer { call: c, agent: a, .. } | Event::RingCancelled { call: c, agent: a }
                    if *c == call && *a == agent =>
                {
                    self.used[i] = true;
                    return Some(e.clone());
                }
                _ => {}
            }
        }
        None
    }
}

fn is_miss(cause: RejectCause) -> bool {
    // The agent or phone was not there; busy and decline are deliberate.
    matches!(cause, RejectCause::NoAnswer | RejectCause::Unavailable | RejectCause::Unreachable)
}

/// The skill levels a call in `q` needs after waiting `waited_ms`: the
/// queue's and the call's own (the higher level wins), then every
/// relaxation step due, in order.
fn requirements(q: &QueueConfig, own: &[(String, u8)], waited_ms: u64) -> Vec<(String, u8)> {
    let mut out: Vec<(String, u8)> = q.required_skills.iter().map(|r| (r.skill.clone(), r.min_level)).collect();
    for (s, l) in own {
        match out.iter_mut().find(|x| x.0 == *s) {
            Some(x) => x.1 = x.1.max(*l),
            None => out.push((s.clone(), *l)),
        }
    }
    for step in &q.relax {
        if step.after_secs as u64 * 1000 > waited_ms {
            break;
        }
        for r in &step.set {
            if let Some(x) = out.iter_mut().find(|x| x.0 == r.skill) {
                x.1 = r.min_level;
            }
        }
        out.retain(|x| !step.drop.contains(&x.0));
        for r in &step.add {
            match out.iter_mut().find(|x| x.0 == r.skill) {
                Some(x) => x.1 = r.min_level,
                None => out.push((r.skill.clone(), r.min_level)),
            }
        }
    }
    out
}

/// Wait after which members of `tier` may be offered a call: tier 1 at
/// once, others after their own rule and every lower tier's.
fn tier_open_ms(q: &QueueConfig, tier: u32) -> u64 {
    q.tiers.iter().filter(|(t, _)| *t <= tier).map(|(_, s)| *s as u64 * 1000).max().unwrap_or(0)
}

fn effective_priority(q: &QueueConfig, c: &MCall, now: Time) -> i64 {
    let mut p = c.priority as i64;
    if q.aging_secs > 0 {
        p += (now.0.saturating_sub(c.entered.0) / (q.aging_secs as u64 * 1000)) as i64;
    }
    p
}

struct Sim {
    cfg: Config,
    toml: String,
    engine: Engine,
    now: Time,
    /// The latest time given to the engine (it cannot go back before it).
    told: Time,
    agents: Vec<MAgent>,
    agent_ix: HashMap<AgentId, usize>,
    queue_ids: Vec<QueueId>,
    queue_ix: HashMap<QueueId, usize>,
    calls: BTreeMap<CallId, MCall>,
    /// CallFinished events seen per call.
    finished: BTreeMap<CallId, u32>,
    arrived: Vec<CallId>,
    next_call: u64,
    next_seq: u64,
    trace: Vec<String>,
}

impl Sim {
    fn new(g: &GenConfig) -> Result<Sim, String> {
        let toml = to_toml(g);
        let cfg = config::from_toml_str("generated.toml", &toml)
            .map_err(|e| format!("generated config is invalid: {e}\n{toml}"))?;
        let engine = Engine::new(&cfg, Time::ZERO);
        let mut agents = Vec::new();
        let mut agent_ix = HashMap::new();
        for (i, ac) in cfg.agents.iter().enumerate() {
            let id = engine.agent_id(&ac.id).expect("configured agent has an id");
            agent_ix.insert(id, i);
            agents.push(MAgent {
                name: ac.id.clone(),
                id,
                levels: ac.skills.iter().cloned().collect(),
                wrap_up: ac.wrap_up_secs,
                state: if ac.auto_login { AState::Available } else { AState::LoggedOut },
                registered: false,
                backoff_until: Time::ZERO,
                misses: 0,
                after_call: None,
                ring_deadline: Time::ZERO,
            });
        }
        let queue_ids: Vec<QueueId> =
            cfg.queues.iter().map(|q| engine.queue_id(&q.name).expect("configured queue has an id")).collect();
        let queue_ix = queue_ids.iter().enumerate().map(|(i, q)| (*q, i)).collect();
        let mut sim = Sim {
            cfg,
            toml,
            engine,
            now: Time::ZERO,
            told: Time::ZERO,
            agents,
            agent_ix,
            queue_ids,
            queue_ix,
            calls: BTreeMap::new(),
            finished: BTreeMap::new(),
            arrived: Vec::new(),
            next_call: 1,
            next_seq: 0,
            trace: Vec::new(),
        };
        // Building the engine emits only bookkeeping events.
        while sim.engine.poll_action().is_some() {}
        while sim.engine.poll_event().is_some() {}
        for (i, a) in g.agents.iter().enumerate() {
            if a.registered {
                let id = sim.agents[i].id;
                sim.feed(Input::AgentRegistered { agent: id })?;
            }
        }
        Ok(sim)
    }

    fn fail(&self, msg: impl std::fmt::Display) -> String {
        let mut s = format!("{msg}\n  (at {})\n--- config ---\n{}\n--- inputs ---\n", self.now, self.toml);
        for line in &self.trace {
            s.push_str(line);
            s.push('\n');
        }
        s
    }

    fn agent_name(&self, a: AgentId) -> String {
        self.agent_ix.get(&a).map_or_else(|| format!("{a}"), |&i| self.agents[i].name.clone())
    }

    fn ai(&self, a: AgentId) -> Result<usize, String> {
        self.agent_ix
            .get(&a)
            .copied()
            .ok_or_else(|| self.fail(format!("the engine named {a}, which is not configured")))
    }

    fn describe(&self, input: &Input) -> String {
        match input {
            Input::CallArrived(nc) => format!(
                "{} arrives in '{}' (priority {}, own skills {:?})",
                nc.id,
                self.queue_ix.get(&nc.queue).map_or("?", |&q| self.cfg.queues[q].name.as_str()),
                nc.priority,
                nc.skills
            ),
            Input::CallAbandoned { call } => format!("caller of {call} hangs up (CallAbandoned)"),
            Input::CallEnded { call } => format!("{call} ends (CallEnded)"),
            Input::OfferAnswered { call, agent } => {
                format!("{} answers {call}", self.agent_name(*agent))
            }
            Input::OfferRejected { call, agent, cause } => {
                format!("{} rejects {call} ({})", self.agent_name(*agent), cause.name())
            }
            Input::AgentLogin { agent } => format!("{} logs in", self.agent_name(*agent)),
            Input::AgentLogout { agent } => format!("{} logs out", self.agent_name(*agent)),
            Input::AgentPause { agent, .. } => format!("{} pauses", self.agent_name(*agent)),
            Input::AgentReady { agent } => format!("{} says ready", self.agent_name(*agent)),
            Input::AgentRegistered { agent } => {
                format!("{}'s phone registers", self.agent_name(*agent))
            }
            Input::AgentUnregistered { agent } => {
                format!("{}'s phone unregisters", self.agent_name(*agent))
            }
            Input::ConfigReplaced(_) => "config replaced".to_string(),
            Input::MoveCall { call, queue } => format!("admin moves {call} to {queue}"),
            Input::WithdrawCall { call, status } => format!("admin withdraws {call} ({status})"),
            Input::TransferCall { call, queue } => format!("{call} is transferred to {queue}"),
            Input::TransferToAgent { call, agent } => format!("{call} is transferred to {}", self.agent_name(*agent)),
            Input::Drain => "drain".to_string(),
            Input::SetEmergency { schedule, state } => format!("admin sets {schedule}'s emergency switch to {state:?}"),
            Input::OfferRinging { call, agent } => format!("{}'s phone rings for {call}", self.agent_name(*agent)),
            Input::CallerDigit { call, digit } => format!("caller of {call} presses {digit}"),
            Input::CallbackAnswered { call } => format!("the customer of callback {call} answers"),
            Input::CallbackFailed { call, cause } => format!("the customer of callback {call} fails ({cause:?})"),
            Input::ConsultArrived { call, by } => format!("{} consults with {}", self.agent_name(*by), call.id),
            Input::AttendedTransfer { call, consult } => format!("attended transfer of {call} to {consult}"),
            Input::RestoreCallback { call, saved } => format!("callback {call} restored into {}", saved.queue),
        }
    }

    fn drain(&mut self) -> (Vec<Action>, Vec<Event>) {
        let mut actions = Vec::new();
        while let Some(a) = self.engine.poll_action() {
            actions.push(a);
        }
        let mut events = Vec::new();
        while let Some(e) = self.engine.poll_event() {
            events.push(e);
        }
        (actions, events)
    }

    /// Wrap-ups that ended by `now` (their timer has fired).
    fn end_wrap_ups(&mut self) {
        let now = self.now;
        for a in &mut self.agents {
            if let AState::WrapUp(until) = a.state {
                if until <= now {
                    a.state = AState::Available;
                }
            }
        }
    }

    // ----- inputs ---------------------------------------------------------------

    /// Whether the engine must accept `input` in the state the model knows.
    fn acceptable(&self, input: &Input) -> bool {
        match input {
            Input::CallArrived(nc) => !self.calls.contains_key(&nc.id) && self.queue_ix.contains_key(&nc.queue),
            Input::CallAbandoned { call } | Input::CallEnded { call } => self.calls.contains_key(call),
            Input::OfferAnswered { call, agent } | Input::OfferRejected { call, agent, .. } => {
                self.calls.get(call).is_some_and(|c| c.state == CState::Offering && c.ringing.contains(agent))
            }
            Input::AgentPause { agent, .. } | Input::AgentReady { agent } => {
                self.agent_ix.get(agent).is_some_and(|&i| self.agents[i].state != AState::LoggedOut)
            }
            Input::AgentLogin { agent }
            | Input::AgentLogout { agent }
            | Input::AgentRegistered { agent }
            | Input::AgentUnregistered { agent } => self.agent_ix.contains_key(agent),
            Input::ConfigReplaced(_) => true,
            // A bridged call, into a queue that takes it now: not full, and
            // staffed unless it takes callers regardless (no overflow).
            Input::TransferCall { call, queue } => {
                self.calls.get(call).is_some_and(|c| matches!(c.state, CState::Bridged(_)) && c.ringing.is_empty())
                    && self.queue_ix.get(queue).is_some_and(|&q| self.route_join(q) == Dest::Join(q))
            }
            Input::MoveCall { .. }
            | Input::CallerDigit { .. }
            | Input::CallbackAnswered { .. }
            | Input::CallbackFailed { .. }
            // Attended transfers are not generated (the model has no
            // consultation calls); tests/attended.rs and the engine's own
            // scenario tests cover them.
            | Input::ConsultArrived { .. }
            | Input::AttendedTransfer { .. }
            // Restored callbacks come only at start-up, from the state file;
            // the engine's callback/restore tests and tests/callback.rs cover them.
            | Input::RestoreCallback { .. }
            | Input::WithdrawCall { .. }
            | Input::TransferToAgent { .. }
            | Input::Drain
            | Input::OfferRinging { .. }
            | Input::SetEmergency { .. } => {
                unreachable!("not generated")
            }
        }
    }

    /// Sends one input at the current time and checks everything it caused.
    fn feed(&mut self, input: Input) -> Result<(), String> {
        self.feed_at(self.now, input)
    }

    /// Sends one input at `at` (the current time, or a time in the past that
    /// the engine must refuse).
    fn feed_at(&mut self, at: Time, input: Input) -> Result<(), String> {
        self.end_wrap_ups();
        let line = format!("{at}  {}", self.describe(&input));
        self.trace.push(line.clone());
        let acceptable = at >= self.told && self.acceptable(&input);
        let result = self.engine.handle(at, input.clone());
        self.told = self.told.max(at);
        let (actions, events) = self.drain();
        match (acceptable, result) {
            (false, Err(_)) => {
                if !actions.is_empty() || !events.is_empty() {
                    return Err(self.fail(format!(
                        "a refused input still had effects: {line}\n  actions {actions:?}\n  events {events:?}"
                    )));
                }
                return Ok(());
            }
            (false, Ok(())) => {
                return Err(self.fail(format!("the engine accepted an input that does not fit the state: {line}")))
            }
            (true, Err(e)) => return Err(self.fail(format!("the engine refused a valid input: {line}: {e}"))),
            (true, Ok(())) => {}
        }
        let mut b = Batch::new(events);
        self.apply_input(&input, &mut b)?;
        self.process(actions, &mut b)?;
        self.close(b)
    }

    /// What an accepted input does, before anything the engine emitted.
    fn apply_input(&mut self, input: &Input, b: &mut Batch) -> Result<(), String> {
        let now = self.now;
        match input {
            Input::CallArrived(nc) => {
                self.arrived.push(nc.id);
                self.calls.insert(
                    nc.id,
                    MCall {
                        id: nc.id,
                        priority: nc.priority,
                        own: nc.skills.clone(),
                        queue: self.queue_ix[&nc.queue],
                        entered: now,
                        joined: now,
                        seq: 0,
                        state: CState::Pending,
                        ringing: Vec::new(),
                        bridge_seen: false,
                    },
                );
            }
            Input::CallAbandoned { call } | Input::CallEnded { call } => {
                let c = self.calls.get_mut(call).expect("acceptable");
                match c.state {
                    CState::Bridged(agent) => {
                        b.expect_finish.insert(*call, Outcome::Answered { agent });
                        c.state = CState::Gone;
                        let q = c.queue;
                        self.call_over(agent, q);
                    }
                    CState::Waiting | CState::Offering => {
                        b.expect_finish.insert(*call, Outcome::Abandoned);
                        c.state = CState::Gone;
                    }
                    CState::Pending | CState::Gone => unreachable!("not kept between inputs"),
                }
            }
            Input::OfferAnswered { call, agent } => {
                let c = self.calls.get_mut(call).expect("acceptable");
                c.ringing.retain(|a| a != agent);
                c.state = CState::Bridged(*agent);
                b.expect_bridge.push(*call);
                let i = self.agent_ix[agent];
                self.agents[i].state = AState::OnCall(*call);
                self.agents[i].misses = 0;
            }
            Input::OfferRejected { call, agent, cause } => {
                match b.take_ring_end(*call, *agent) {
                    Some(Event::RingNoAnswer { cause: c, .. }) if c == *cause => {}
                    other => {
                        return Err(self.fail(format!(
                            "{} rejected {call} ({}) but the engine reported {other:?}",
                            self.agent_name(*agent),
                            cause.name()
                        )))
                    }
                }
                let i = self.agent_ix[agent];
                self.ring_missed(i, *cause);
                self.ring_ended(*call, *agent);
            }
            Input::AgentLogin { agent } => {
                // Login acts on a logged-out agent, and during a call it
                // takes back a logout asked for earlier in that call (a
                // pending pause stays: the agent is logged in either way).
                let a = &mut self.agents[self.agent_ix[agent]];
                if a.state == AState::LoggedOut {
                    a.state = AState::Available;
                    a.misses = 0;
                } else if a.after_call == Some(AfterCall::Logout) {
                    a.after_call = None;
                }
            }
            Input::AgentLogout { agent } => {
                b.excused = Some(*agent);
                let a = &mut self.agents[self.agent_ix[agent]];
                match a.state {
                    AState::LoggedOut => {}
                    AState::OnCall(_) => a.after_call = Some(AfterCall::Logout),
                    _ => a.state = AState::LoggedOut,
                }
            }
            Input::AgentPause { agent, .. } => {
                b.excused = Some(*agent);
                let a = &mut self.agents[self.agent_ix[agent]];
                match a.state {
                    AState::OnCall(_) => a.after_call = Some(AfterCall::Pause),
                    _ => a.state = AState::Paused,
                }
            }
            Input::AgentReady { agent } => {
                let a = &mut self.agents[self.agent_ix[agent]];
                match a.state {
                    AState::OnCall(_) => a.after_call = None,
                    AState::Paused | AState::WrapUp(_) => {
                        a.state = AState::Available;
                        a.misses = 0;
                    }
                    _ => {}
                }
            }
            Input::AgentRegistered { agent } => {
                self.agents[self.agent_ix[agent]].registered = true;
            }
            Input::AgentUnregistered { agent } => {
                b.excused = Some(*agent);
                let a = &mut self.agents[self.agent_ix[agent]];
                a.registered = false;
                if let AState::Ringing(_) = a.state {
                    a.state = AState::Available;
                }
            }
            Input::TransferCall { call, queue } => {
                let qi = self.queue_ix[queue];
                let c = self.calls.get_mut(call).expect("acceptable");
                let CState::Bridged(agent) = c.state else { unreachable!("acceptable") };
                let from = c.queue;
                c.state = CState::Waiting;
                c.bridge_seen = false; // it will be connected again
                b.transferring = Some((*call, qi));
                // The agent's call is over, as after a hang-up.
                self.call_over(agent, from);
            }
            Input::ConfigReplaced(_)
            | Input::MoveCall { .. }
            | Input::CallerDigit { .. }
            | Input::CallbackAnswered { .. }
            | Input::CallbackFailed { .. }
            // Attended transfers are not generated (the model has no
            // consultation calls); tests/attended.rs and the engine's own
            // scenario tests cover them.
            | Input::ConsultArrived { .. }
            | Input::AttendedTransfer { .. }
            // Restored callbacks come only at start-up, from the state file;
            // the engine's callback/restore tests and tests/callback.rs cover them.
            | Input::RestoreCallback { .. }
            | Input::SetEmergency { .. }
            | Input::WithdrawCall { .. }
            | Input::TransferToAgent { .. }
            | Input::Drain
            | Input::OfferRinging { .. } => {
                unreachable!("not generated")
            }
        }
        Ok(())
    }

    /// A bridged call ended: wrap-up, or the pause/logout asked for during it.
    fn call_over(&mut self, agent: AgentId, queue: usize) {
        let now = self.now;
        let qwrap = self.cfg.queues[queue].wrap_up_secs;
        let a = &mut self.agents[self.agent_ix[&agent]];
        a.state = match a.after_call.take() {
            Some(AfterCall::Logout) => AState::LoggedOut,
            Some(AfterCall::Pause) => AState::Paused,
            None => match a.wrap_up.unwrap_or(qwrap) {
                0 => AState::Available,
                w => AState::WrapUp(now.plus_secs(w)),
            },
        };
    }

    /// The agent did not take an offer: back-off, and maybe auto-pause.
    fn ring_missed(&mut self, i: usize, cause: RejectCause) {
        let now = self.now;
        let b = self.cfg.engine.backoff;
        let secs = match cause {
            RejectCause::NoAnswer => b.no_answer,
            RejectCause::Busy => b.busy,
            RejectCause::Unavailable => b.unavailable,
            RejectCause::Declined => b.declined,
            RejectCause::Unreachable => b.unreachable,
        };
        let limit = self.cfg.engine.auto_pause_after_misses;
        let a = &mut self.agents[i];
        if secs > 0 {
            a.backoff_until = now.plus_secs(secs);
        }
        if is_miss(cause) {
            a.misses += 1;
        }
        a.state = if limit > 0 && a.misses >= limit { AState::Paused } else { AState::Available };
    }

    /// The call no longer rings `agent`; a call ringing nobody waits again.
    fn ring_ended(&mut self, call: CallId, agent: AgentId) {
        if let Some(c) = self.calls.get_mut(&call) {
            c.ringing.retain(|a| *a != agent);
            if c.ringing.is_empty() && c.state == CState::Offering {
                c.state = CState::Waiting;
            }
        }
    }

    // ----- what the engine emitted -------------------------------------------------

    fn process(&mut self, actions: Vec<Action>, b: &mut Batch) -> Result<(), String> {
        for action in actions {
            self.trace_action(&action);
            let prev_ring = b.prev_ring.take();
            match action {
                Action::Ring { call, agent, timeout } => {
                    self.check_ring(call, agent, timeout, prev_ring)?;
                    let now = self.now;
                    let i = self.ai(agent)?;
                    self.agents[i].state = AState::Ringing(call);
                    self.agents[i].ring_deadline = now + timeout;
                    let c = self.calls.get_mut(&call).expect("checked");
                    c.state = CState::Offering;
                    c.ringing.push(agent);
                    b.prev_ring = Some(call);
                }
                Action::CancelRing { call, agent } => self.cancel_ring(call, agent, b)?,
                Action::Bridge { call, agent } => {
                    let ok = self.calls.get(&call).is_some_and(|c| {
                        c.state == CState::Bridged(agent) && !c.bridge_seen && b.expect_bridge.contains(&call)
                    });
                    if !ok {
                        return Err(self.fail(format!(
                            "{call} was connected to {}, who had not just answered it",
                            self.agent_name(agent)
                        )));
                    }
                    self.calls.get_mut(&call).expect("checked").bridge_seen = true;
                }
                Action::StartHold { call, queue, .. } => {
                    let Some(&qi) = self.queue_ix.get(&queue) else {
                        return Err(self.fail(format!("{call} was queued in unknown {queue}")));
                    };
                    if let Some((t, tq)) = b.transferring.take_if(|(t, _)| *t == call) {
                        if tq != qi {
                            return Err(self.fail(format!(
                                "{t} was transferred to '{}' but queued in '{}'",
                                self.cfg.queues[tq].name, self.cfg.queues[qi].name
                            )));
                        }
                        // Keeps its place (entered, seq): only max wait restarts.
                        let (now, c) = (self.now, self.calls.get_mut(&call).expect("transferring"));
                        c.queue = qi;
                        c.joined = now;
                        continue;
                    }
                    self.check_route(call, Dest::Join(qi))?;
                    let seq = self.next_seq + 1;
                    let now = self.now;
                    let msg = match self.calls.get_mut(&call) {
                        Some(c) if matches!(c.state, CState::Pending | CState::Waiting) && c.ringing.is_empty() => {
                            c.queue = qi;
                            c.entered = now;
                            c.joined = now;
                            c.seq = seq;
                            c.state = CState::Waiting;
                            None
                        }
                        Some(c) => Some(format!(
                            "{call} was put in queue '{}' while {:?} (ringing {:?})",
                            self.cfg.queues[qi].name, c.state, c.ringing
                        )),
                        None => Some(format!("{call}, which has finished, was put on hold")),
                    };
                    if let Some(m) = msg {
                        return Err(self.fail(m));
                    }
                    self.next_seq = seq;
                }
                Action::StopHold { call } => {
                    if !self.calls.contains_key(&call) {
                        return Err(self.fail(format!("hold music stopped for finished {call}")));
                    }
                }
                Action::Announce { call, .. } | Action::PlayFile { call, .. } => {
                    let ok =
                        self.calls.get(&call).is_some_and(|c| matches!(c.state, CState::Waiting | CState::Offering));
                    if !ok {
                        return Err(self.fail(format!("an announcement was played to {call}, who is not waiting")));
                    }
                }
                Action::Transfer { call, uri } => {
                    self.check_route(call, Dest::Transfer(uri.clone()))?;
                    self.call_leaves(call, Outcome::Overflowed { uri }, b)?
                }
                Action::Reject { call, status } => {
                    self.check_route(call, Dest::Reject(status))?;
                    self.call_leaves(call, Outcome::Rejected { status }, b)?
                }
                // The model has no callback keys (CallerDigit is not generated).
                Action::ConfirmCallback { call, .. }
                | Action::DialCallback { call, .. }
                | Action::CallbackWhisper { call, .. }
                | Action::OfferCallback { call, .. } => {
                    return Err(self.fail(format!("a callback action for {call}, but no caller asked for one")));
                }
                // The model's queues have no closed_prompt.
                Action::ClosedPrompt { call, .. } => {
                    return Err(self.fail(format!("a closed prompt for {call}, but no queue has one")));
                }
            }
        }
        Ok(())
    }

    fn trace_action(&mut self, action: &Action) {
        let line = match action {
            Action::Ring { call, agent, .. } => format!("ring {} for {call}", self.agent_name(*agent)),
            Action::CancelRing { call, agent } => {
                format!("cancel {}'s ring for {call}", self.agent_name(*agent))
            }
            Action::Bridge { call, agent } => format!("bridge {call} to {}", self.agent_name(*agent)),
            Action::StartHold { call, queue, .. } => {
                format!("{call} waits in '{}'", self.cfg.queues[self.queue_ix[queue]].name)
            }
            Action::Transfer { call, uri } => format!("transfer {call} to {uri}"),
            Action::Reject { call, status } => format!("reject {call} with {status}"),
            Action::ConfirmCallback { call, .. } => format!("confirm callback of {call}"),
            Action::ClosedPrompt { call, .. } => format!("closed prompt to {call}"),
            Action::CallbackWhisper { call, .. } => format!("whisper to the agent of {call}"),
            Action::OfferCallback { call, .. } => format!("offer a callback to {call}"),
            Action::DialCallback { call, .. } => format!("dial the customer of {call}"),
            Action::StopHold { .. } | Action::Announce { .. } | Action::PlayFile { .. } => return,
        };
        self.trace.push(format!("{:>12}  -> {line}", ""));
    }

    /// Callers in `q`'s waiting line (waiting or ringing).
    fn line_len(&self, q: usize) -> usize {
        self.calls.values().filter(|c| c.queue == q && matches!(c.state, CState::Waiting | CState::Offering)).count()
    }

    /// Where a caller joining `q` now goes: the queue itself, or on when it
    /// is full or (unless it takes callers regardless) nobody is there.
    fn route_join(&self, q: usize) -> Dest {
        let qc = &self.cfg.queues[q];
        if self.line_len(q) >= qc.max_waiting as usize {
            return self.route_overflow(q, Why::Full);
        }
        // A member is there when logged in with its phone registered (the
        // default `empty_when = ["unregistered"]`).
        let staffed = qc
            .members
            .iter()
            .any(|m| self.agents.iter().any(|a| a.name == m.agent && a.state != AState::LoggedOut && a.registered));
        match qc.when_no_agents {
            config::WhenNoAgents::Join => Dest::Join(q),
            _ if staffed => Dest::Join(q),
            config::WhenNoAgents::Overflow => self.route_overflow(q, Why::NoAgents),
            config::WhenNoAgents::Reject => Dest::Reject(480),
        }
    }

    fn route_overflow(&self, q: usize, why: Why) -> Dest {
        match &self.cfg.queues[q].overflow {
            Some(config::OverflowTarget::Queue(name)) => {
                let t = self.cfg.queues.iter().position(|x| x.name == *name).expect("validated target");
                self.route_join(t)
            }
            Some(config::OverflowTarget::Uri(u)) => Dest::Transfer(u.clone()),
            Some(config::OverflowTarget::Reject(s)) => Dest::Reject(*s),
            // Only `when_closed` may say "callback"; the engine answers 480.
            Some(config::OverflowTarget::Callback) => Dest::Reject(480),
            None => match why {
                Why::Full => Dest::Reject(503),
                Why::NoAgents => Dest::Reject(480),
                Why::MaxWait => Dest::Stay,
            },
        }
    }

    /// When a waiting caller of `c`'s queue must overflow, if ever.
    fn max_wait_due(&self, c: &MCall) -> Option<Time> {
        let qc = &self.cfg.queues[c.queue];
        (qc.max_wait_secs > 0 && qc.overflow.is_some()).then(|| c.joined.plus_secs(qc.max_wait_secs))
    }

    /// Invariant 3, where a caller goes: an arriving caller joins its queue
    /// or is sent on for a reason; a waiting caller leaves only at its max wait.
    fn check_route(&self, call: CallId, actual: Dest) -> Result<(), String> {
        let Some(c) = self.calls.get(&call) else {
            return Err(self.fail(format!("{call} was routed ({actual:?}) after it had finished")));
        };
        let qc = &self.cfg.queues[c.queue];
        let expected = match c.state {
            CState::Pending => self.route_join(c.queue),
            CState::Waiting => match self.max_wait_due(c) {
                Some(due) if due == self.now => self.route_overflow(c.queue, Why::MaxWait),
                _ => {
                    return Err(self.fail(format!(
                        "{call} left queue '{}' ({actual:?}) after waiting {} ms, not at its max wait of {} s",
                        qc.name,
                        self.now.0 - c.joined.0,
                        qc.max_wait_secs
                    )))
                }
            },
            _ => return Ok(()), // reported by the caller
        };
        if expected != actual {
            let staffed: Vec<&str> = qc
                .members
                .iter()
                .filter(|m| self.agents.iter().any(|a| a.name == m.agent && a.state != AState::LoggedOut))
                .map(|m| m.agent.as_str())
                .collect();
            return Err(self.fail(format!(
                "{call} in queue '{}' went to {actual:?} but should have gone to {expected:?} \
                 ({} of max {} callers waiting there, members logged in: {staffed:?})",
                qc.name,
                self.line_len(c.queue),
                qc.max_waiting
            )));
        }
        Ok(())
    }

    /// A waiting (or just arrived) caller is sent away by the engine.
    fn call_leaves(&mut self, call: CallId, outcome: Outcome, b: &mut Batch) -> Result<(), String> {
        let msg = match self.calls.get_mut(&call) {
            Some(c) if matches!(c.state, CState::Pending | CState::Waiting) && c.ringing.is_empty() => {
                c.state = CState::Gone;
                b.expect_finish.insert(call, outcome);
                return Ok(());
            }
            Some(c) => format!("{call} was sent away ({outcome:?}) while {:?}, ringing {:?}", c.state, c.ringing),
            None => format!("{call} was sent away ({outcome:?}) after it had finished"),
        };
        Err(self.fail(msg))
    }

    fn cancel_ring(&mut self, call: CallId, agent: AgentId, b: &mut Batch) -> Result<(), String> {
        let i = self.ai(agent)?;
        let name = self.agents[i].name.clone();
        let seq = match self.calls.get(&call) {
            Some(c) if c.ringing.contains(&agent) => c.seq,
            _ => {
                return Err(
                    self.fail(format!("the engine cancelled {name}'s ring for {call}, which was not ringing there"))
                )
            }
        };
        match b.take_ring_end(call, agent) {
            Some(Event::RingNoAnswer { cause, .. }) => {
                let a = &self.agents[i];
                if cause != RejectCause::NoAnswer || a.state != AState::Ringing(call) || self.now < a.ring_deadline {
                    return Err(self.fail(format!(
                        "{name}'s ring for {call} was given up as '{}' before its ring timeout ({})",
                        cause.name(),
                        a.ring_deadline
                    )));
                }
                self.ring_missed(i, cause);
            }
            Some(Event::RingCancelled { .. }) => {
                if self.agents[i].state == AState::Ringing(call) {
                    self.agents[i].state = AState::Available;
                }
                b.withdrawn.push((call, agent, seq));
            }
            _ => {
                return Err(self.fail(format!(
                    "{name}'s ring for {call} was cancelled without a RingNoAnswer or RingCancelled event"
                )))
            }
        }
        self.ring_ended(call, agent);
        Ok(())
    }

    /// Why `agent` may not be offered `c` now, if it may not.
    fn ineligible(&self, i: usize, c: &MCall) -> Option<String> {
        let now = self.now;
        let a = &self.agents[i];
        match a.state {
            AState::LoggedOut => return Some("logged out".into()),
            AState::Paused => return Some("paused".into()),
            AState::WrapUp(until) if now < until => return Some(format!("in wrap-up until {until}")),
            AState::WrapUp(_) | AState::Available => {}
            AState::OnCall(x) => return Some(format!("on {x}")),
            AState::Ringing(x) if x == c.id => return Some("already ringing for it".into()),
            AState::Ringing(x) => return Some(format!("still ringing for {x}")),
        }
        if !a.registered {
            return Some("its phone was not registered".into());
        }
        let q = &self.cfg.queues[c.queue];
        let Some(member) = q.members.iter().find(|m| m.agent == a.name) else {
            return Some(format!("not a member of queue '{}'", q.name));
        };
        if now < a.backoff_until {
            return Some(format!("backing off after a missed offer until {}", a.backoff_until));
        }
        let waited = now.0 - c.entered.0;
        let open = tier_open_ms(q, member.tier);
        if waited < open {
            return Some(format!(
                "tier {} of '{}' opens after {} ms of waiting and the caller had waited {waited} ms",
                member.tier, q.name, open
            ));
        }
        for (skill, min) in requirements(q, &c.own, waited) {
            match a.levels.get(&skill).copied().unwrap_or(0) {
                0 => return Some(format!("lacking skill {skill} (needs {min})")),
                l if l < min => return Some(format!("at {skill} level {l}, below the {min} required")),
                _ => {}
            }
        }
        None
    }

    /// Invariants 1, 2 and 4 for one Ring action.
    fn check_ring(
        &self,
        call: CallId,
        agent: AgentId,
        timeout: std::time::Duration,
        prev_ring: Option<CallId>,
    ) -> Result<(), String> {
        let i = self.ai(agent)?;
        let name = &self.agents[i].name;
        let Some(c) = self.calls.get(&call) else {
            return Err(self.fail(format!("{name} rang for {call}, which had already finished")));
        };
        let q = &self.cfg.queues[c.queue];
        match c.state {
            CState::Waiting => {}
            CState::Offering if q.strategy == config::Strategy::RingAll && prev_ring == Some(call) => {}
            CState::Offering => {
                let others: Vec<String> = c.ringing.iter().map(|a| self.agent_name(*a)).collect();
                return Err(self.fail(format!(
                    "{call} in queue '{}' ({}) rang {name} while already ringing {others:?}",
                    q.name,
                    q.strategy.name()
                )));
            }
            CState::Bridged(x) => {
                return Err(self.fail(format!("{name} rang for {call}, already answered by {}", self.agent_name(x))))
            }
            CState::Pending | CState::Gone => {
                return Err(self.fail(format!("{name} rang for {call}, which is not in a queue")))
            }
        }
        // 1 and 2: the agent may take this call now.
        if let Some(why) = self.ineligible(i, c) {
            return Err(self.fail(format!("agent {name} rang for {call} (queue '{}') while {why}", q.name)));
        }
        if timeout.as_secs() != q.ring_timeout_secs as u64 || timeout.subsec_nanos() != 0 {
            return Err(self.fail(format!(
                "{name} rang for {call} with a {timeout:?} timeout; queue '{}' says {} s",
                q.name, q.ring_timeout_secs
            )));
        }
        // 4: nobody ahead of the caller in the same queue could have had this agent.
        let key = |d: &MCall| (-effective_priority(q, d, self.now), d.seq);
        for d in self.calls.values() {
            if d.id == call || d.queue != c.queue || d.state != CState::Waiting || key(d) >= key(c) {
                continue;
            }
            if self.ineligible(i, d).is_none() {
                return Err(self.fail(format!(
                    "{call} (priority {}, effective {}) was offered to {name} while {} \
                     (priority {}, effective {}), ahead of it in queue '{}', waited and {name} could take it",
                    c.priority,
                    effective_priority(q, c, self.now),
                    d.id,
                    d.priority,
                    effective_priority(q, d, self.now),
                    q.name
                )));
            }
        }
        Ok(())
    }

    /// End-of-input checks: outcomes reported, nothing left half done.
    fn close(&mut self, mut b: Batch) -> Result<(), String> {
        for i in 0..b.events.len() {
            if b.used[i] {
                continue;
            }
            match b.events[i].clone() {
                Event::CallFinished { call, outcome, .. } => {
                    let n = self.finished.entry(call).or_insert(0);
                    *n += 1;
                    if *n > 1 {
                        return Err(self.fail(format!("{call} finished a second time ({outcome:?})")));
                    }
                    match b.expect_finish.remove(&call) {
                        Some(expected) if expected == outcome => {}
                        Some(expected) => {
                            return Err(
                                self.fail(format!("{call} finished as {outcome:?}, but its actions say {expected:?}"))
                            )
                        }
                        None => {
                            return Err(self.fail(format!(
                                "{call} finished as {outcome:?} with no hang-up, transfer or reject to show for it"
                            )))
                        }
                    }
                }
                Event::RingNoAnswer { call, agent, .. } | Event::RingCancelled { call, agent } => {
                    return Err(self.fail(format!(
                        "the engine reported the end of {}'s ring for {call}, but no ring ended",
                        self.agent_name(agent)
                    )));
                }
                _ => {}
            }
        }
        if let Some((call, outcome)) = b.expect_finish.iter().next() {
            return Err(self.fail(format!("{call} left ({outcome:?}) but no CallFinished was reported")));
        }
        for call in &b.expect_bridge {
            if !self.calls.get(call).is_some_and(|c| c.bridge_seen) {
                return Err(self.fail(format!("{call} was answered but never bridged")));
            }
        }
        for &(call, agent, seq) in &b.withdrawn {
            let reason = b.excused == Some(agent)
                || self
                    .calls
                    .get(&call)
                    .is_none_or(|c| c.seq != seq || matches!(c.state, CState::Gone | CState::Bridged(_)));
            if !reason {
                return Err(
                    self.fail(format!("{}'s ring for {call} was withdrawn for no reason", self.agent_name(agent)))
                );
            }
        }
        let gone: Vec<CallId> = self.calls.values().filter(|c| c.state == CState::Gone).map(|c| c.id).collect();
        for call in gone {
            let c = self.calls.remove(&call).expect("listed");
            if !c.ringing.is_empty() {
                return Err(self.fail(format!("{call} left while still ringing {:?}", c.ringing)));
            }
        }
        for c in self.calls.values() {
            if c.state == CState::Pending {
                return Err(self.fail(format!("{} arrived but was neither queued, rejected nor transferred", c.id)));
            }
            for a in &c.ringing {
                if self.agents[self.agent_ix[a]].state != AState::Ringing(c.id) {
                    return Err(self.fail(format!(
                        "{}'s phone keeps ringing for {} although the agent is {:?}",
                        self.agent_name(*a),
                        c.id,
                        self.agents[self.agent_ix[a]].state
                    )));
                }
            }
        }
        for c in self.calls.values() {
            if let Some(due) = self.max_wait_due(c) {
                if due <= self.now && matches!(c.state, CState::Waiting | CState::Offering) {
                    return Err(self.fail(format!(
                        "{} still waits in queue '{}' past its max wait ({due})",
                        c.id, self.cfg.queues[c.queue].name
                    )));
                }
            }
        }
        // Work conservation: once the engine has settled, no waiting caller
        // has an agent who could take them.
        for c in self.calls.values().filter(|c| c.state == CState::Waiting) {
            if let Some(a) = (0..self.agents.len()).find(|&i| self.ineligible(i, c).is_none()) {
                return Err(self.fail(format!(
                    "agent {} sat idle while {} waited in queue '{}', a call they could take",
                    self.agents[a].name, c.id, self.cfg.queues[c.queue].name
                )));
            }
        }
        for a in &self.agents {
            if let AState::Ringing(call) = a.state {
                if a.ring_deadline <= self.now {
                    return Err(self.fail(format!(
                        "{} kept ringing for {call} past the ring timeout ({})",
                        a.name, a.ring_deadline
                    )));
                }
            }
        }
        Ok(())
    }

    // ----- time ---------------------------------------------------------------------

    /// Moves the clock to `target`, firing every timer at its own time.
    fn advance_to(&mut self, target: Time) -> Result<(), String> {
        let mut fired = 0u32;
        while let Some(t) = self.engine.poll_timeout() {
            if t > target {
                break;
            }
            if t < self.now {
                return Err(self.fail(format!("a timer was due at {t}, in the past")));
            }
            fired += 1;
            if fired > 100_000 {
                return Err(self.fail(format!("timers keep firing at {t}")));
            }
            self.now = t;
            self.told = t;
            self.end_wrap_ups();
            if let Err(e) = self.engine.handle_timeout(t) {
                return Err(self.fail(format!("handle_timeout({t}) failed: {e}")));
            }
            let (actions, events) = self.drain();
            let mut b = Batch::new(events);
            self.process(actions, &mut b)?;
            self.close(b)?;
        }
        self.now = target;
        self.end_wrap_ups();
        Ok(())
    }

    // ----- one generated step ---------------------------------------------------------

    fn run(&mut self, op: &Op) -> Result<(), String> {
        let n_agents = self.agents.len();
        match op {
            Op::Arrive { queue, priority, skills } => {
                let qi = *queue as usize % self.cfg.queues.len();
                let id = CallId(self.next_call);
                self.next_call += 1;
                let mut own: Vec<(String, u8)> = Vec::new();
                for &(s, l) in skills {
                    let name = SKILLS.get(s).copied().unwrap_or(UNDECLARED).to_string();
                    if !own.iter().any(|x| x.0 == name) {
                        own.push((name, l));
                    }
                }
                self.feed(Input::CallArrived(NewCall {
                    id,
                    queue: self.queue_ids[qi],
                    caller: format!("+35840{:04}", id.0),
                    priority: *priority,
                    skills: own,
                    attributes: Vec::new(),
                }))
            }
            Op::HangUp { pick, ended } => {
                let live: Vec<CallId> = self.calls.keys().copied().collect();
                if live.is_empty() {
                    return Ok(());
                }
                let call = live[*pick as usize % live.len()];
                self.feed(if *ended { Input::CallEnded { call } } else { Input::CallAbandoned { call } })
            }
            Op::End { pick } => {
                let bridged: Vec<CallId> =
                    self.calls.values().filter(|c| matches!(c.state, CState::Bridged(_))).map(|c| c.id).collect();
                if bridged.is_empty() {
                    return Ok(());
                }
                let call = bridged[*pick as usize % bridged.len()];
                self.feed(Input::CallEnded { call })
            }
            Op::Transfer { pick, queue } => {
                let mut bridged: Vec<CallId> =
                    self.calls.values().filter(|c| matches!(c.state, CState::Bridged(_))).map(|c| c.id).collect();
                if bridged.is_empty() {
                    return Ok(());
                }
                bridged.sort();
                let call = bridged[*pick as usize % bridged.len()];
                let queue = self.queue_ids[*queue as usize % self.queue_ids.len()];
                self.feed(Input::TransferCall { call, queue })
            }
            Op::Answer { pick } | Op::Reject { pick, .. } => {
                let ringing: Vec<(CallId, AgentId)> =
                    self.calls.values().flat_map(|c| c.ringing.iter().map(move |a| (c.id, *a))).collect();
                if ringing.is_empty() {
                    return Ok(());
                }
                let (call, agent) = ringing[*pick as usize % ringing.len()];
                self.feed(match op {
                    Op::Reject { cause, .. } => Input::OfferRejected { call, agent, cause: *cause },
                    _ => Input::OfferAnswered { call, agent },
                })
            }
            Op::Stray { call, agent, answer, cause } => {
                // Any call that ever arrived, or one that never did.
                let call = if self.arrived.is_empty() || (*call as usize).is_multiple_of(5) {
                    CallId(90_000 + *call as u64)
                } else {
                    self.arrived[*call as usize % self.arrived.len()]
                };
                let agent = self.agents[*agent as usize % n_agents].id;
                self.feed(if *answer {
                    Input::OfferAnswered { call, agent }
                } else {
                    Input::OfferRejected { call, agent, cause: *cause }
                })
            }
            Op::HangUpUnknown { pick } => {
                let finished: Vec<CallId> =
                    self.arrived.iter().copied().filter(|c| !self.calls.contains_key(c)).collect();
                let call = if finished.is_empty() || *pick % 3 == 0 {
                    CallId(80_000 + *pick as u64)
                } else {
                    finished[*pick as usize % finished.len()]
                };
                self.feed(Input::CallAbandoned { call })
            }
            Op::Refused { kind, pick } => {
                let live: Vec<CallId> = self.calls.keys().copied().collect();
                let arrival = |id: CallId, queue: QueueId| {
                    Input::CallArrived(NewCall {
                        id,
                        queue,
                        caller: "+35840999".into(),
                        priority: 0,
                        skills: Vec::new(),
                        attributes: Vec::new(),
                    })
                };
                match kind {
                    0 if !live.is_empty() => {
                        let id = live[*pick as usize % live.len()];
                        self.feed(arrival(id, self.queue_ids[0]))
                    }
                    0 | 1 => {
                        let id = CallId(self.next_call);
                        self.next_call += 1;
                        self.feed(arrival(id, QueueId(77)))
                    }
                    2 => self.feed(Input::AgentLogin { agent: AgentId(66) }),
                    _ if self.told.0 > 0 => {
                        let at = Time(self.told.0 - 1 - *pick as u64 % self.told.0);
                        let agent = self.agents[*pick as usize % n_agents].id;
                        self.feed_at(at, Input::AgentReady { agent })
                    }
                    _ => Ok(()),
                }
            }
            Op::Agent { agent, op } => {
                let agent = self.agents[*agent as usize % n_agents].id;
                self.feed(match op {
                    AgentOp::Login => Input::AgentLogin { agent },
                    AgentOp::Logout => Input::AgentLogout { agent },
                    AgentOp::Pause => Input::AgentPause { agent, reason: "coffee".to_string() },
                    AgentOp::Ready => Input::AgentReady { agent },
                    AgentOp::Register => Input::AgentRegistered { agent },
                    AgentOp::Unregister => Input::AgentUnregistered { agent },
                })
            }
            Op::Advance { ms } => {
                let target = Time(self.now.0 + ms);
                self.trace.push(format!("{}  (time passes to {target})", self.now));
                self.advance_to(target)
            }
        }
    }

    /// Invariant 3: every caller hangs up, every bridged call ends, time runs
    /// out every timer; then the engine holds nothing and every call that
    /// arrived finished exactly once.
    fn wind_down(&mut self) -> Result<(), String> {
        self.trace.push("--- wind-down ---".to_string());
        let waiting: Vec<CallId> =
            self.calls.values().filter(|c| !matches!(c.state, CState::Bridged(_))).map(|c| c.id).collect();
        for call in waiting {
            self.feed(Input::CallAbandoned { call })?;
        }
        let bridged: Vec<CallId> = self.calls.keys().copied().collect();
        for call in bridged {
            self.feed(Input::CallEnded { call })?;
        }
        let mut rounds = 0;
        while let Some(t) = self.engine.poll_timeout() {
            rounds += 1;
            if rounds > 10_000 {
                return Err(self.fail(format!("with no calls left the engine still wants to wake up (next at {t})")));
            }
            self.advance_to(t)?;
        }
        if !self.calls.is_empty() {
            return Err(self.fail(format!(
                "calls {:?} are still open in the model after wind-down",
                self.calls.keys().collect::<Vec<_>>()
            )));
        }
        let held = self.engine.call_count();
        if held != 0 {
            return Err(self.fail(format!("{held} call(s) are still held by the engine after every caller hung up")));
        }
        for call in &self.arrived {
            let n = self.finished.get(call).copied().unwrap_or(0);
            if n != 1 {
                return Err(self.fail(format!("{call} arrived and was reported finished {n} times (expected once)")));
            }
        }
        Ok(())
    }
}

fn run_case(g: &GenConfig, ops: &[Op]) -> Result<(), TestCaseError> {
    let go = || -> Result<(), String> {
        let mut sim = Sim::new(g)?;
        for op in ops {
            sim.run(op)?;
        }
        sim.wind_down()
    };
    go().map_err(TestCaseError::fail)
}

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(proptest_config(256))]

    /// Invariants 1-4 under every strategy, skills with relaxation, tiers,
    /// aging, back-off, auto-pause and overflow.
    #[test]
    fn random_traffic_keeps_every_routing_invariant(
        g in gen_config(Family::General),
        ops in prop::collection::vec(gen_op(Family::General), 1..150),
    ) {
        run_case(&g, &ops)?;
    }


    /// Invariant 2 under ring-all: several phones ring for one call, each at
    /// most once and never for two calls; the first answer wins and the
    /// other rings are withdrawn.
    #[test]
    fn ring_all_rings_each_agent_once_and_for_one_call(
        g in gen_config(Family::RingAll),
        ops in prop::collection::vec(gen_op(Family::RingAll), 1..150),
    ) {
        run_case(&g, &ops)?;
    }

    /// Invariant 4 under contention: few agents, many callers of mixed
    /// priority, sometimes aging; the caller rung is always the first one
    /// waiting in priority-then-arrival order.
    #[test]
    fn callers_are_offered_in_priority_then_arrival_order(
        g in gen_config(Family::Ordering),
        ops in prop::collection::vec(gen_op(Family::Ordering), 1..150),
    ) {
        run_case(&g, &ops)?;
    }

    /// Invariant 3 where calls leave in every way: full queues, max wait,
    /// overflow chains to queues, URIs and rejects, queues with nobody
    /// logged in.
    #[test]
    fn every_call_ends_in_exactly_one_outcome(
        g in gen_config(Family::Overflow),
        ops in prop::collection::vec(gen_op(Family::Overflow), 1..150),
    ) {
        run_case(&g, &ops)?;
    }
}

// ----------------------------------------------------------------- 5: distribution

/// Offers `offers` calls one at a time to a queue whose members are all
/// available, and counts which agent each went to. Every caller hangs up
/// while ringing, so nobody backs off or gets busy.
fn offers_per_agent(strategy: &str, weights: &[u32], offers: usize) -> Vec<u64> {
    let mut toml =
        format!("[engine]\nseed = 20240501\n\n[[queue]]\nname = \"q\"\nstrategy = \"{strategy}\"\nmembers = [");
    let members: Vec<String> =
        weights.iter().enumerate().map(|(i, w)| format!("{{ agent = \"a{i}\", weight = {w} }}")).collect();
    toml += &members.join(", ");
    toml += "]\n";
    for i in 0..weights.len() {
        let _ = writeln!(toml, "\n[[agent]]\nid = \"a{i}\"");
    }
    let cfg = config::from_toml_str("chi.toml", &toml).expect("distribution config is valid");
    let mut engine = Engine::new(&cfg, Time::ZERO);
    let q = engine.queue_id("q").unwrap();
    let ids: Vec<AgentId> = (0..weights.len()).map(|i| engine.agent_id(&format!("a{i}")).unwrap()).collect();
    let now = Time::ZERO;
    for &a in &ids {
        engine.handle(now, Input::AgentRegistered { agent: a }).unwrap();
    }
    let drain = |e: &mut Engine| {
        let mut rung = Vec::new();
        while let Some(a) = e.poll_action() {
            if let Action::Ring { agent, .. } = a {
                rung.push(agent);
            }
        }
        while e.poll_event().is_some() {}
        rung
    };
    drain(&mut engine);
    let mut counts = vec![0u64; weights.len()];
    for n in 0..offers {
        let call = CallId(n as u64 + 1);
        engine
            .handle(
                now,
                Input::CallArrived(NewCall {
                    id: call,
                    queue: q,
                    caller: "+358401234".into(),
                    priority: 0,
                    skills: Vec::new(),
                    attributes: Vec::new(),
                }),
            )
            .unwrap();
        let rung = drain(&mut engine);
        assert_eq!(
            rung.len(),
            1,
            "caller {n} of a '{strategy}' queue with every agent free rang {} phones",
            rung.len()
        );
        let i = ids.iter().position(|a| *a == rung[0]).unwrap();
        counts[i] += 1;
        engine.handle(now, Input::CallAbandoned { call }).unwrap();
        drain(&mut engine);
    }
    counts
}

fn chi_square(observed: &[u64], shares: &[f64]) -> f64 {
    let total: u64 = observed.iter().sum();
    let sum: f64 = shares.iter().sum();
    observed
        .iter()
        .zip(shares)
        .map(|(&o, &s)| {
            let e = total as f64 * s / sum;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

#[test]
fn random_strategy_spreads_offers_evenly() {
    let counts = offers_per_agent("random", &[1; 10], 5000);
    let chi2 = chi_square(&counts, &[1.0; 10]);
    // 0.999 quantile of chi-square with 9 degrees of freedom.
    assert!(chi2 < 27.88, "'random' favours some agents: offers per agent {counts:?}, chi-square {chi2:.2} >= 27.88");
}

#[test]
fn weighted_random_strategy_spreads_offers_by_weight() {
    let weights = [1, 2, 3, 4];
    let counts = offers_per_agent("weighted-random", &weights, 5000);
    let shares: Vec<f64> = weights.iter().map(|&w| w as f64).collect();
    let chi2 = chi_square(&counts, &shares);
    // 0.999 quantile of chi-square with 3 degrees of freedom.
    assert!(
        chi2 < 16.27,
        "'weighted-random' with weights {weights:?} does not follow them: offers per agent \
         {counts:?}, chi-square {chi2:.2} >= 16.27"
    );
}
