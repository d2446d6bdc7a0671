//! Routing benchmarks (criterion, `harness = false`).
//!
//! ```text
//! cargo bench --bench routing            # full run (release), well under a minute
//! cargo bench --bench routing -- --test  # smoke test: every benchmark once, small scale
//! ```
//!
//! 1. `decision/{random,priority,skills}`: ONE routing decision at scale —
//!    10,000 agents (50 skills `s0`..`s49`, levels 1..10), 100 queues of the
//!    given strategy with ~300 members each (every agent in 3 queues), every
//!    agent on a call and 10,000 callers waiting (100 per queue, mixed
//!    priorities, 20% with an extra skill of their own). A decision is one
//!    `CallEnded` (wrap-up 0): the agent becomes available, the engine picks a
//!    waiting caller for it and emits `Ring`. Only that `handle` plus draining
//!    `poll_action`/`poll_event` is timed; answering the ring, topping the
//!    queue back up to 100 callers and firing due timers happen outside the
//!    timed region, so every decision starts from the same steady state.
//!    Criterion reports mean/median; a plain loop afterwards prints
//!    p50/p99/max over 20,000 decisions per strategy.
//! 2. `mixed/inputs`: engine inputs per second on a realistic stream
//!    (arrivals, answers, rejections, abandons, call ends, pauses/readies and
//!    timer ticks) over the same 10,000 agents / 100 queues (strategies
//!    random, priority, skills in turn). The stream is recorded once from a
//!    seeded simulation that reacts to the engine's actions, then replayed:
//!    the engine is deterministic, so the replay meets the same states and
//!    every input stays valid. A plain loop prints inputs/s for the whole
//!    recorded stream.
//! 3. `idle/<strategy>` for every strategy: ONE decision with thousands of
//!    idle agents — 10,000 agents in 10 queues of that strategy (~3,000
//!    members each, every agent in 3 queues), 5,000 on a call and 5,000 idle,
//!    nobody waiting. A decision is one `CallArrived` (mixed priorities, 20%
//!    with a skill of their own) up to its `Ring`; answering it and ending
//!    some other agent's call (so 5,000 stay idle, different ones each time)
//!    are untimed. A plain loop prints p50/p99/max over 5,000 decisions per
//!    strategy. `ring-all` rings every eligible idle member of the lowest
//!    tier, so its figure grows with them by design.
//!
//! With `--test` (or when run by `cargo test --benches`, which passes no
//! `--bench`), everything runs at a small scale and the plain loops are tiny.
//! A name filter (`-- decision/skills`) also skips the other setups and plain
//! loops; `--profile-time N` runs only the criterion routine, for profilers:
//!
//! ```text
//! CARGO_PROFILE_BENCH_DEBUG=true cargo bench --bench routing --no-run
//! perf record --call-graph dwarf <bench binary> --bench --profile-time 5 decision/random
//! valgrind --tool=callgrind --toggle-collect='routing::Decider::decide' <bench binary> \
//!     --bench --profile-time 1 decision/random
//! ```

use acd::config::{self, Config};
use acd::engine::{Action, AgentId, CallId, Engine, Event, Input, NewCall, QueueId, RejectCause, Time};
use criterion::{Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

// ----------------------------------------------------------------- scale

#[derive(Clone, Copy)]
struct Scale {
    agents: usize,
    queues: usize,
    skills: usize,
    /// Queues each agent is a member of.
    queues_per_agent: usize,
    /// Callers kept waiting in every queue during the decision benchmark.
    waiting_per_queue: usize,
    /// Decisions in the plain p50/p99 loop, per strategy.
    plain_decisions: usize,
    /// Simulated seconds of traffic before the recorded mixed stream.
    mix_warmup_secs: u64,
    /// Inputs in the recorded (measured) part of the mixed stream.
    mix_inputs: usize,
}

const FULL: Scale = Scale {
    agents: 10_000,
    queues: 100,
    skills: 50,
    queues_per_agent: 3,
    waiting_per_queue: 100,
    plain_decisions: 20_000,
    mix_warmup_secs: 240,
    mix_inputs: 400_000,
};

/// `--test` / `cargo test --benches`: compiles and exercises every path in
/// well under a second, even in a debug build.
const QUICK: Scale = Scale {
    agents: 300,
    queues: 10,
    skills: 20,
    queues_per_agent: 3,
    waiting_per_queue: 10,
    plain_decisions: 200,
    mix_warmup_secs: 30,
    mix_inputs: 3_000,
};

/// Simulated time between two decisions: lets callers age, tiers open and
/// per-call timers fire (outside the timed region) as in a live system.
const DECISION_STEP_MS: u64 = 10;
/// Inputs per criterion iteration of the mixed benchmark.
const MIX_CHUNK: usize = 1_000;

// ---------------------------------------------------------------- config

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// All queues one strategy, wrap-up 0, no max wait, no announcements.
    Decision(&'static str),
    /// Strategies random/priority/skills in turn, wrap-up, announcements,
    /// max wait with overflow to voicemail: a live-site config.
    Mixed,
}

struct Layout {
    config: Config,
    /// Required skills `(skill index, min level)` of each queue.
    queue_reqs: Vec<Vec<(usize, u8)>>,
    /// Queue every agent fully qualifies for and is tier 1 in.
    home: Vec<usize>,
}

/// Generates the config as TOML (the same path an operator's file takes)
/// and parses + validates it with `acd::config::from_toml_str`.
fn build_config(scale: Scale, workload: Workload) -> Layout {
    let mut rng = ChaCha8Rng::seed_from_u64(0xACD);
    let (nq, na, ns) = (scale.queues, scale.agents, scale.skills);

    // Queues require 1-2 skills at a low minimum (1..=3).
    let queue_reqs: Vec<Vec<(usize, u8)>> = (0..nq)
        .map(|q| {
            let a = q % ns;
            let mut reqs = vec![(a, rng.random_range(1..=3u8))];
            if rng.random_bool(0.5) {
                let mut b = rng.random_range(0..ns);
                if b == a {
                    b = (b + 1) % ns;
                }
                reqs.push((b, rng.random_range(1..=3u8)));
            }
            reqs
        })
        .collect();

    // Each agent: a home queue (tier 1, meets its requirements) and further
    // random queues (tier 1 or 2 for `priority`), skills from its queues'
    // requirements (85% each outside home) plus one extra, levels 1..10.
    let tiered = |q: usize| match workload {
        Workload::Decision(s) => s == "priority",
        Workload::Mixed => q % 3 == 1,
    };
    let mut members: Vec<Vec<(usize, u32)>> = vec![Vec::new(); nq];
    let mut agent_skills: Vec<BTreeMap<usize, u8>> = Vec::with_capacity(na);
    let mut home = Vec::with_capacity(na);
    for i in 0..na {
        let h = i % nq;
        home.push(h);
        let mut qs = vec![h];
        while qs.len() < scale.queues_per_agent.min(nq) {
            let q = rng.random_range(0..nq);
            if !qs.contains(&q) {
                qs.push(q);
            }
        }
        let mut skills = BTreeMap::new();
        for &(s, _) in &queue_reqs[h] {
            skills.insert(s, rng.random_range(3..=10u8));
        }
        for &q in &qs[1..] {
            for &(s, _) in &queue_reqs[q] {
                if rng.random_bool(0.85) {
                    let l = rng.random_range(1..=10u8);
                    let e = skills.entry(s).or_insert(l);
                    *e = (*e).max(l);
                }
            }
        }
        skills.entry(rng.random_range(0..ns)).or_insert(rng.random_range(1..=10u8));
        agent_skills.push(skills);
        for (k, &q) in qs.iter().enumerate() {
            let tier = if k > 0 && tiered(q) && rng.random_bool(0.5) { 2 } else { 1 };
            members[q].push((i, tier));
        }
    }
    for m in &mut members {
        m.sort();
    }

    let mut t = String::with_capacity(na * 120 + nq * scale.queues_per_agent * na / nq * 30);
    t.push_str("[engine]\nseed = 7\ncross_queue_policy = \"oldest-caller\"\n\n[skills]\n");
    for s in 0..ns {
        writeln!(t, "s{s} = \"skill {s}\"").unwrap();
    }
    t.push_str("\n[defaults]\nring_timeout_secs = 15\naging_secs = 120\n");
    match workload {
        Workload::Decision(_) => {
            t.push_str("wrap_up_secs = 0\nmax_waiting = 1000\nannounce_every_secs = 0\nmax_wait_secs = 0\n")
        }
        Workload::Mixed => t.push_str(
            "wrap_up_secs = 5\nmax_waiting = 200\nannounce_every_secs = 30\nmax_wait_secs = 300\n\
             overflow = \"sip:voicemail@pbx.example.com\"\n",
        ),
    }
    const MIX: [&str; 3] = ["random", "priority", "skills"];
    for q in 0..nq {
        let strategy = match workload {
            Workload::Decision(s) => s,
            Workload::Mixed => MIX[q % 3],
        };
        writeln!(t, "\n[[queue]]\nname = \"q{q}\"\nstrategy = \"{strategy}\"").unwrap();
        if strategy == "skills" {
            t.push_str("tie_break = \"best-level\"\n");
        }
        if tiered(q) {
            t.push_str("tiers = [{ tier = 2, open_after_secs = 10 }]\n");
        }
        t.push_str("required_skills = { ");
        for (k, (s, min)) in queue_reqs[q].iter().enumerate() {
            let sep = if k > 0 { ", " } else { "" };
            write!(t, "{sep}s{s} = {min}").unwrap();
        }
        t.push_str(" }\nmembers = [\n");
        for &(a, tier) in &members[q] {
            if tier == 1 {
                writeln!(t, "  {{ agent = \"a{a}\" }},").unwrap();
            } else {
                writeln!(t, "  {{ agent = \"a{a}\", tier = {tier} }},").unwrap();
            }
        }
        t.push_str("]\n");
    }
    for (i, skills) in agent_skills.iter().enumerate() {
        write!(t, "\n[[agent]]\nid = \"a{i}\"\nskills = {{ ").unwrap();
        for (k, (s, l)) in skills.iter().enumerate() {
            let sep = if k > 0 { ", " } else { "" };
            write!(t, "{sep}s{s} = {l}").unwrap();
        }
        t.push_str(" }\n");
    }
    let config = config::from_toml_str("bench.toml", &t).expect("generated config is valid");
    Layout { config, queue_reqs, home }
}

/// Engine ids in config order, checked against the names.
fn ids(engine: &Engine, scale: Scale) {
    for i in [0, scale.agents - 1] {
        assert_eq!(engine.agent_id(&format!("a{i}")), Some(AgentId(i as u32)));
    }
    for q in [0, scale.queues - 1] {
        assert_eq!(engine.queue_id(&format!("q{q}")), Some(QueueId(q as u32)));
    }
}

/// Drains actions (keeping the rings) and events, as the driving contract asks.
#[inline]
fn drain(engine: &mut Engine, rings: &mut Vec<(CallId, AgentId)>) {
    while let Some(a) = engine.poll_action() {
        if let Action::Ring { call, agent, .. } = a {
            rings.push((call, agent));
        }
    }
    while let Some(e) = engine.poll_event() {
        black_box(&e);
    }
}

// ------------------------------------------------------------ decisions

struct Decider {
    engine: Engine,
    scale: Scale,
    queue_reqs: Vec<Vec<(usize, u8)>>,
    now: u64,
    next_call: u64,
    rng: ChaCha8Rng,
    /// Bridged call of each agent.
    on_call: Vec<Option<CallId>>,
    rings: Vec<(CallId, AgentId)>,
    decisions: u64,
    /// Decisions after which the freed agent was not offered any call.
    no_offer: u64,
}

impl Decider {
    fn new(scale: Scale, strategy: &'static str) -> Decider {
        let t0 = Instant::now();
        let layout = build_config(scale, Workload::Decision(strategy));
        let parsed = t0.elapsed();
        let engine = Engine::new(&layout.config, Time::ZERO);
        ids(&engine, scale);
        let mut d = Decider {
            engine,
            scale,
            queue_reqs: layout.queue_reqs,
            now: 0,
            next_call: 1,
            rng: ChaCha8Rng::seed_from_u64(42),
            on_call: vec![None; scale.agents],
            rings: Vec::new(),
            decisions: 0,
            no_offer: 0,
        };
        drain(&mut d.engine, &mut d.rings);
        // Register everyone (auto-login: all become available).
        for a in 0..scale.agents {
            d.input(Input::AgentRegistered { agent: AgentId(a as u32) });
        }
        assert!(d.rings.is_empty());
        // Make everybody busy: a caller into each idle agent's home queue
        // bridges some idle agent every time.
        for a in 0..scale.agents {
            while d.on_call[a].is_none() {
                d.now += 1;
                d.arrive(layout.home[a], false);
                assert!(!d.rings.is_empty(), "a caller for an idle agent was not offered");
                d.answer_rings(false);
            }
        }
        // Then the waiting callers, interleaved over the queues, 5 ms apart.
        for _ in 0..scale.waiting_per_queue {
            for q in 0..scale.queues {
                d.now += 5;
                d.arrive(q, true);
            }
        }
        assert!(d.rings.is_empty(), "nobody should be free");
        // Let tiers open and per-call timers fire before measuring.
        d.now += 20_000;
        d.engine.handle_timeout(Time(d.now)).unwrap();
        drain(&mut d.engine, &mut d.rings);
        assert_eq!(d.engine.call_count(), scale.agents + scale.queues * scale.waiting_per_queue);
        eprintln!(
            "  setup {strategy}: config built+parsed in {:.2?}, engine filled in {:.2?} \
             ({} agents busy, {} callers waiting in {} queues)",
            parsed,
            t0.elapsed() - parsed,
            scale.agents,
            scale.queues * scale.waiting_per_queue,
            scale.queues
        );
        d
    }

    fn input(&mut self, input: Input) {
        self.engine.handle(Time(self.now), input).expect("valid input");
        drain(&mut self.engine, &mut self.rings);
    }

    /// A new caller in queue `q`; `varied`: mixed priorities and 20% with an
    /// extra skill requirement of their own (one of the queue's skills at 4..=6).
    fn arrive(&mut self, q: usize, varied: bool) {
        let id = CallId(self.next_call);
        self.next_call += 1;
        let (priority, skills) = if varied {
            let p = match self.rng.random_range(0..100) {
                0..80 => 0,
                80..95 => self.rng.random_range(1..=3),
                _ => 5,
            };
            let mut skills = Vec::new();
            if self.rng.random_bool(0.2) {
                let reqs = &self.queue_reqs[q];
                let (s, _) = reqs[self.rng.random_range(0..reqs.len())];
                skills.push((format!("s{s}"), self.rng.random_range(4..=6u8)));
            }
            (p, skills)
        } else {
            (0, Vec::new())
        };
        self.input(Input::CallArrived(NewCall {
            id,
            queue: QueueId(q as u32),
            caller: format!("+3584{:08}", id.0),
            priority,
            skills,
            attributes: Vec::new(),
        }));
    }

    /// Answers every outstanding ring; with `refill`, tops each queue that
    /// lost a caller back up to `waiting_per_queue`.
    fn answer_rings(&mut self, refill: bool) {
        while let Some((call, agent)) = self.rings.pop() {
            let q = self.engine.call(call).expect("ringing call").queue;
            self.input(Input::OfferAnswered { call, agent });
            self.on_call[agent.0 as usize] = Some(call);
            while refill && self.engine.waiting_count(q) < self.scale.waiting_per_queue {
                self.arrive(q.0 as usize, true);
            }
        }
    }

    /// One decision; returns the time of the `CallEnded` handle + drain only.
    fn decide(&mut self) -> Duration {
        // Untimed: time passes, due timers fire, stray rings are answered.
        self.now += DECISION_STEP_MS;
        self.engine.handle_timeout(Time(self.now)).unwrap();
        drain(&mut self.engine, &mut self.rings);
        self.answer_rings(true);
        let (a, call) = loop {
            let a = self.rng.random_range(0..self.scale.agents);
            if let Some(c) = self.on_call[a] {
                break (a, c);
            }
        };
        let now = Time(self.now);
        // Timed: the agent's call ends; the engine picks its next caller.
        let t0 = Instant::now();
        let r = self.engine.handle(now, Input::CallEnded { call });
        drain(&mut self.engine, &mut self.rings);
        let dt = t0.elapsed();
        r.expect("call ends");
        // Untimed: back to steady state.
        self.on_call[a] = None;
        self.decisions += 1;
        if self.rings.is_empty() {
            self.no_offer += 1;
        }
        self.answer_rings(true);
        dt
    }
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn us(ns: u64) -> String {
    let us = ns as f64 / 1000.0;
    if us < 10.0 {
        format!("{us:.2} us")
    } else if us < 100.0 {
        format!("{us:.1} us")
    } else {
        format!("{us:.0} us")
    }
}

fn bench_decisions(
    c: &mut Criterion,
    scale: Scale,
    quick: bool,
    profiling: bool,
    selected: &dyn Fn(&str) -> bool,
    summary: &mut Vec<String>,
) {
    for strategy in ["random", "priority", "skills"] {
        if !selected(&format!("decision/{strategy}")) {
            continue;
        }
        let mut d = Decider::new(scale, strategy);
        {
            let mut g = c.benchmark_group("decision");
            g.sample_size(50).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
            g.bench_function(strategy, |b| b.iter_custom(|iters| (0..iters).map(|_| d.decide()).sum()));
            g.finish();
        }
        if profiling {
            continue;
        }
        // Plain loop for the tail: criterion reports mean/median only.
        let n = if quick { 50 } else { scale.plain_decisions };
        let no_offer_before = d.no_offer;
        let mut ns: Vec<u64> = (0..n).map(|_| d.decide().as_nanos() as u64).collect();
        ns.sort_unstable();
        let mean = ns.iter().sum::<u64>() / n as u64;
        let line = format!(
            "decision {strategy}: p50 {} p99 {} max {} mean {} (n={n}, {} agents, {} queues, {} waiting; \
             freed agent got no call in {} of them)",
            us(pct(&ns, 0.50)),
            us(pct(&ns, 0.99)),
            us(*ns.last().unwrap()),
            us(mean),
            scale.agents,
            scale.queues,
            scale.queues * scale.waiting_per_queue,
            d.no_offer - no_offer_before,
        );
        let line = if quick { format!("{line} [quick mode: smoke test, not a measurement]") } else { line };
        println!("{line}");
        summary.push(line);
        // Memory stays bounded: same number of calls as after setup.
        assert_eq!(d.engine.call_count(), scale.agents - idle_agents(&d) + scale.queues * scale.waiting_per_queue);
    }
}

// ------------------------------------------------------- many idle agents

/// The idle-agents fixture: 10,000 agents in 10 queues of one strategy
/// (~3,000 members each, every agent in 3 queues), half of them on a call
/// and half idle, nobody waiting.
const IDLE_FULL: Scale = Scale { queues: 10, plain_decisions: 5_000, ..FULL };
const IDLE_QUICK: Scale = Scale { queues: 5, queues_per_agent: 2, plain_decisions: 50, ..QUICK };

/// Every strategy acd knows, for the idle-agents cases.
const ALL_STRATEGIES: [&str; 9] = [
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

/// One decision with thousands of idle agents: a caller arrives (mixed
/// priorities, 20% with a skill of their own) and the engine picks an idle
/// agent for it. Untimed afterwards: the agent answers and some other
/// agent's call ends, so the number of idle agents stays at half and the
/// idle ones keep changing.
struct IdleDecider {
    engine: Engine,
    queue_reqs: Vec<Vec<(usize, u8)>>,
    queues: usize,
    now: u64,
    next_call: u64,
    rng: ChaCha8Rng,
    /// Bridged calls, to end one per decision.
    bridged: Vec<CallId>,
    rings: Vec<(CallId, AgentId)>,
    /// Callers that found no agent (abandoned at once, untimed).
    no_offer: u64,
}

impl IdleDecider {
    fn new(scale: Scale, strategy: &'static str) -> IdleDecider {
        let t0 = Instant::now();
        let layout = build_config(scale, Workload::Decision(strategy));
        let engine = Engine::new(&layout.config, Time::ZERO);
        ids(&engine, scale);
        let mut d = IdleDecider {
            engine,
            queue_reqs: layout.queue_reqs,
            queues: scale.queues,
            now: 0,
            next_call: 1,
            rng: ChaCha8Rng::seed_from_u64(43),
            bridged: Vec::new(),
            rings: Vec::new(),
            no_offer: 0,
        };
        drain(&mut d.engine, &mut d.rings);
        for a in 0..scale.agents {
            d.input(Input::AgentRegistered { agent: AgentId(a as u32) });
        }
        // Half the agents on a call, the callers spread over the queues.
        let mut q = 0;
        while d.bridged.len() < scale.agents / 2 {
            d.now += 1;
            q = (q + 1) % scale.queues;
            let call = d.arrive(q, false);
            d.settle(call);
        }
        d.now += 20_000;
        d.engine.handle_timeout(Time(d.now)).unwrap();
        drain(&mut d.engine, &mut d.rings);
        assert!(d.rings.is_empty());
        assert_eq!(d.engine.call_count(), scale.agents / 2);
        eprintln!(
            "  setup idle {strategy}: {:.2?} ({} agents, {} on a call, {} queues)",
            t0.elapsed(),
            scale.agents,
            d.bridged.len(),
            scale.queues
        );
        d
    }

    fn input(&mut self, input: Input) {
        self.engine.handle(Time(self.now), input).expect("valid input");
        drain(&mut self.engine, &mut self.rings);
    }

    fn new_call(&mut self, q: usize, varied: bool) -> NewCall {
        let id = CallId(self.next_call);
        self.next_call += 1;
        let mut priority = 0;
        let mut skills = Vec::new();
        if varied {
            priority = if self.rng.random_bool(0.2) { self.rng.random_range(1..=5) } else { 0 };
            if self.rng.random_bool(0.2) {
                let reqs = &self.queue_reqs[q];
                let (s, _) = reqs[self.rng.random_range(0..reqs.len())];
                skills.push((format!("s{s}"), self.rng.random_range(4..=6u8)));
            }
        }
        NewCall {
            id,
            queue: QueueId(q as u32),
            caller: format!("+3585{:08}", id.0),
            priority,
            skills,
            attributes: Vec::new(),
        }
    }

    fn arrive(&mut self, q: usize, varied: bool) -> CallId {
        let nc = self.new_call(q, varied);
        let id = nc.id;
        self.input(Input::CallArrived(nc));
        id
    }

    /// The first agent rung answers (ring-all: the others are cancelled);
    /// a caller nobody was rung for hangs up. Returns whether it was offered.
    fn settle(&mut self, call: CallId) -> bool {
        let ring = self.rings.iter().find(|(c, _)| *c == call).copied();
        self.rings.clear();
        match ring {
            Some((call, agent)) => {
                self.input(Input::OfferAnswered { call, agent });
                self.rings.clear();
                self.bridged.push(call);
                true
            }
            None => {
                self.input(Input::CallAbandoned { call });
                false
            }
        }
    }

    fn decide(&mut self) -> Duration {
        self.now += DECISION_STEP_MS;
        self.engine.handle_timeout(Time(self.now)).unwrap();
        drain(&mut self.engine, &mut self.rings);
        let q = self.rng.random_range(0..self.queues);
        let nc = self.new_call(q, true);
        let call = nc.id;
        let now = Time(self.now);
        // Timed: the caller arrives; the engine rings an idle agent.
        let t0 = Instant::now();
        let r = self.engine.handle(now, Input::CallArrived(nc));
        drain(&mut self.engine, &mut self.rings);
        let dt = t0.elapsed();
        r.expect("call arrives");
        // Untimed: it is answered and another call ends (wrap-up 0).
        if self.settle(call) {
            let i = self.rng.random_range(0..self.bridged.len());
            let ended = self.bridged.swap_remove(i);
            self.input(Input::CallEnded { call: ended });
            assert!(self.rings.is_empty(), "nobody is waiting");
        } else {
            self.no_offer += 1;
        }
        dt
    }
}

fn bench_idle(
    c: &mut Criterion,
    scale: Scale,
    quick: bool,
    profiling: bool,
    selected: &dyn Fn(&str) -> bool,
    summary: &mut Vec<String>,
) {
    for strategy in ALL_STRATEGIES {
        if !selected(&format!("idle/{strategy}")) {
            continue;
        }
        let mut d = IdleDecider::new(scale, strategy);
        {
            let mut g = c.benchmark_group("idle");
            g.sample_size(50).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
            g.bench_function(strategy, |b| b.iter_custom(|iters| (0..iters).map(|_| d.decide()).sum()));
            g.finish();
        }
        if profiling {
            continue;
        }
        let n = scale.plain_decisions;
        let no_offer_before = d.no_offer;
        let mut ns: Vec<u64> = (0..n).map(|_| d.decide().as_nanos() as u64).collect();
        ns.sort_unstable();
        let mean = ns.iter().sum::<u64>() / n as u64;
        let line = format!(
            "idle {strategy}: p50 {} p99 {} max {} mean {} (n={n}, {} agents, {} idle, {} queues; \
             caller found nobody in {} of them)",
            us(pct(&ns, 0.50)),
            us(pct(&ns, 0.99)),
            us(*ns.last().unwrap()),
            us(mean),
            scale.agents,
            scale.agents - d.bridged.len(),
            scale.queues,
            d.no_offer - no_offer_before,
        );
        let line = if quick { format!("{line} [quick mode: smoke test, not a measurement]") } else { line };
        println!("{line}");
        summary.push(line);
        assert_eq!(d.engine.call_count(), d.bridged.len());
    }
}

/// Agents left without a call because no waiting caller suited them (each
/// such agent means one more bridged call is missing from the total).
fn idle_agents(d: &Decider) -> usize {
    d.on_call.iter().filter(|c| c.is_none()).count()
}

// ---------------------------------------------------------- mixed stream

#[derive(Clone)]
enum Step {
    Input(Time, Input),
    /// Time advances: `handle_timeout(t)` at the engine's next timer.
    Tick(Time),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrival,
    Answer(CallId, AgentId),
    Reject(CallId, AgentId, u8),
    End(CallId),
    Abandon(CallId),
    Pause,
    Ready(AgentId),
}

const CAUSES: [RejectCause; 3] = [RejectCause::Busy, RejectCause::Declined, RejectCause::Unavailable];

#[derive(Default, Debug)]
struct MixCounts {
    arrivals: u64,
    answers: u64,
    rejections: u64,
    abandons: u64,
    ends: u64,
    pauses: u64,
    readies: u64,
    registrations: u64,
    ticks: u64,
}

struct Stream {
    config: Config,
    steps: Vec<Step>,
    /// Steps before this index are setup + warm-up, replayed untimed.
    prefix: usize,
    counts: MixCounts,
}

/// Records the mixed stream by simulating callers and agents (seeded) that
/// react to what the engine asks for.
fn record_stream(scale: Scale) -> Stream {
    let t0 = Instant::now();
    let layout = build_config(scale, Workload::Mixed);
    let nq = scale.queues;
    let mut engine = Engine::new(&layout.config, Time::ZERO);
    ids(&engine, scale);
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let exp = |rng: &mut ChaCha8Rng, mean_ms: f64| -> u64 { (-mean_ms * (1.0 - rng.random::<f64>()).ln()) as u64 };
    // ~140 calls/s for 10,000 agents: talk ~60 s + answer ~4 s + wrap-up 5 s
    // puts the floor at ~97% occupancy, so queues form and drain.
    let arrival_mean_ms = 1000.0 / (scale.agents as f64 * 0.014);
    let pause_mean_ms = 1000.0 / (scale.agents as f64 * 0.0002);

    let mut steps: Vec<Step> = Vec::with_capacity(scale.mix_inputs + scale.agents * 30);
    let mut counts = MixCounts::default();
    let mut heap: BinaryHeap<Reverse<(u64, u64, Ev)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |heap: &mut BinaryHeap<_>, at: u64, ev: Ev| {
        seq += 1;
        heap.push(Reverse((at, seq, ev)));
    };
    let mut live_rings: HashSet<(CallId, AgentId)> = HashSet::new();
    let mut alive: HashSet<CallId> = HashSet::new();
    let mut bridged: HashSet<CallId> = HashSet::new();
    let mut next_call = 1u64;
    let mut errors = 0u64;

    for a in 0..scale.agents {
        let input = Input::AgentRegistered { agent: AgentId(a as u32) };
        steps.push(Step::Input(Time::ZERO, input.clone()));
        engine.handle(Time::ZERO, input).unwrap();
        counts.registrations += 1;
    }
    while engine.poll_action().is_some() {}
    while engine.poll_event().is_some() {}
    push(&mut heap, 0, Ev::Arrival);
    push(&mut heap, 0, Ev::Pause);

    let warmup_ms = scale.mix_warmup_secs * 1000;
    let mut prefix = None;
    let mut now = 0u64;
    loop {
        if prefix.is_none() && heap.peek().is_some_and(|r| r.0 .0 >= warmup_ms) {
            prefix = Some(steps.len());
            counts = MixCounts::default();
        }
        if let Some(p) = prefix {
            if steps.len() - p >= scale.mix_inputs {
                break;
            }
        }
        let next_ev = heap.peek().map(|r| r.0 .0).unwrap_or(u64::MAX);
        let next_timer = engine.poll_timeout().map_or(u64::MAX, |t| t.0);
        let input = if next_timer <= next_ev {
            now = next_timer;
            steps.push(Step::Tick(Time(now)));
            counts.ticks += 1;
            engine.handle_timeout(Time(now)).unwrap();
            None
        } else {
            let Reverse((at, _, ev)) = heap.pop().unwrap();
            now = at;
            match ev {
                Ev::Arrival => {
                    push(&mut heap, now + exp(&mut rng, arrival_mean_ms).max(1), Ev::Arrival);
                    let id = CallId(next_call);
                    next_call += 1;
                    let q = rng.random_range(0..nq);
                    let priority = match rng.random_range(0..100) {
                        0..85 => 0,
                        85..97 => rng.random_range(1..=3),
                        _ => 5,
                    };
                    let mut skills = Vec::new();
                    if rng.random_bool(0.15) {
                        let reqs = &layout.queue_reqs[q];
                        let (s, _) = reqs[rng.random_range(0..reqs.len())];
                        skills.push((format!("s{s}"), rng.random_range(3..=6u8)));
                    }
                    alive.insert(id);
                    // Patience: mean 60 s; most are served before it runs out.
                    push(&mut heap, now + 5_000 + exp(&mut rng, 60_000.0), Ev::Abandon(id));
                    counts.arrivals += 1;
                    Some(Input::CallArrived(NewCall {
                        id,
                        queue: QueueId(q as u32),
                        caller: format!("+3584{:08}", id.0),
                        priority,
                        skills,
                        attributes: Vec::new(),
                    }))
                }
                Ev::Answer(call, agent) => live_rings.remove(&(call, agent)).then(|| {
                    counts.answers += 1;
                    Input::OfferAnswered { call, agent }
                }),
                Ev::Reject(call, agent, cause) => live_rings.remove(&(call, agent)).then(|| {
                    counts.rejections += 1;
                    Input::OfferRejected { call, agent, cause: CAUSES[cause as usize] }
                }),
                Ev::End(call) => bridged.contains(&call).then(|| {
                    counts.ends += 1;
                    Input::CallEnded { call }
                }),
                Ev::Abandon(call) => (alive.contains(&call) && !bridged.contains(&call)).then(|| {
                    counts.abandons += 1;
                    Input::CallAbandoned { call }
                }),
                Ev::Pause => {
                    push(&mut heap, now + exp(&mut rng, pause_mean_ms).max(1), Ev::Pause);
                    let agent = AgentId(rng.random_range(0..scale.agents) as u32);
                    push(&mut heap, now + rng.random_range(30_000..180_000), Ev::Ready(agent));
                    counts.pauses += 1;
                    Some(Input::AgentPause { agent, reason: "break".to_string() })
                }
                Ev::Ready(agent) => {
                    counts.readies += 1;
                    Some(Input::AgentReady { agent })
                }
            }
        };
        if let Some(input) = input {
            match engine.handle(Time(now), input.clone()) {
                Ok(()) => steps.push(Step::Input(Time(now), input)),
                Err(_) => errors += 1,
            }
        }
        while let Some(a) = engine.poll_action() {
            match a {
                Action::Ring { call, agent, .. } => {
                    live_rings.insert((call, agent));
                    match rng.random_range(0..100) {
                        // Answered after 2-6 s.
                        0..80 => push(&mut heap, now + rng.random_range(2_000..6_000), Ev::Answer(call, agent)),
                        // Busy / declined / DND after 0.5-3 s.
                        80..88 => {
                            let cause = rng.random_range(0..3u8);
                            push(&mut heap, now + rng.random_range(500..3_000), Ev::Reject(call, agent, cause))
                        }
                        // Nobody picks up: the engine's ring timeout fires.
                        _ => {}
                    }
                }
                Action::CancelRing { call, agent } => {
                    live_rings.remove(&(call, agent));
                }
                Action::Bridge { call, .. } => {
                    bridged.insert(call);
                    push(&mut heap, now + 5_000 + exp(&mut rng, 55_000.0), Ev::End(call));
                }
                _ => {}
            }
        }
        while let Some(e) = engine.poll_event() {
            match e {
                Event::RingNoAnswer { call, agent, .. } => {
                    live_rings.remove(&(call, agent));
                }
                Event::CallFinished { call, .. } => {
                    alive.remove(&call);
                    bridged.remove(&call);
                }
                Event::AgentStateChanged { agent, to: "paused", reason, .. } if reason.starts_with("auto-paused") => {
                    // The agent notices the auto-pause and comes back.
                    push(&mut heap, now + rng.random_range(20_000..90_000), Ev::Ready(agent));
                }
                _ => {}
            }
        }
    }
    assert_eq!(errors, 0, "the generator fed inputs the engine refused");
    let prefix = prefix.unwrap();
    eprintln!(
        "  mixed stream: recorded {} setup/warm-up + {} measured inputs ({:.0} s simulated) in {:.2?}; \
         at the end {} calls in the engine",
        prefix,
        steps.len() - prefix,
        (now as f64 - warmup_ms as f64) / 1000.0,
        t0.elapsed(),
        engine.call_count()
    );
    Stream { config: layout.config, steps, prefix, counts }
}

fn apply(engine: &mut Engine, step: Step) -> bool {
    let ok = match step {
        Step::Input(t, input) => engine.handle(t, input).is_ok(),
        Step::Tick(t) => engine.handle_timeout(t).is_ok(),
    };
    while let Some(a) = engine.poll_action() {
        black_box(&a);
    }
    while let Some(e) = engine.poll_event() {
        black_box(&e);
    }
    ok
}

/// Replays the measured part of a stream chunk by chunk, rebuilding the
/// engine (untimed) when it runs out.
struct Replayer<'a> {
    stream: &'a Stream,
    engine: Engine,
    pos: usize,
    buf: Vec<Step>,
    errors: u64,
}

impl<'a> Replayer<'a> {
    fn new(stream: &'a Stream) -> Replayer<'a> {
        let mut r = Replayer {
            stream,
            engine: Engine::new(&stream.config, Time::ZERO),
            pos: 0,
            buf: Vec::with_capacity(MIX_CHUNK),
            errors: 0,
        };
        r.reset();
        r
    }

    fn reset(&mut self) {
        self.engine = Engine::new(&self.stream.config, Time::ZERO);
        for step in &self.stream.steps[..self.stream.prefix] {
            if !apply(&mut self.engine, step.clone()) {
                self.errors += 1;
            }
        }
        self.pos = self.stream.prefix;
    }

    /// Feeds the next `n` inputs; returns the time spent in the engine.
    fn chunk(&mut self, n: usize) -> Duration {
        if self.pos + n > self.stream.steps.len() {
            self.reset();
        }
        self.buf.clear();
        self.buf.extend_from_slice(&self.stream.steps[self.pos..self.pos + n]);
        self.pos += n;
        let engine = &mut self.engine;
        let mut errors = 0;
        let t0 = Instant::now();
        for step in self.buf.drain(..) {
            if !apply(engine, step) {
                errors += 1;
            }
        }
        let dt = t0.elapsed();
        self.errors += errors;
        dt
    }
}

fn bench_mixed(c: &mut Criterion, scale: Scale, quick: bool, profiling: bool, summary: &mut Vec<String>) {
    let stream = record_stream(scale);
    let chunk = MIX_CHUNK.min(scale.mix_inputs);
    {
        let mut r = Replayer::new(&stream);
        let mut g = c.benchmark_group("mixed");
        g.sample_size(30)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(6))
            .throughput(Throughput::Elements(chunk as u64));
        g.bench_function("inputs", |b| b.iter_custom(|iters| (0..iters).map(|_| r.chunk(chunk)).sum()));
        g.finish();
        assert_eq!(r.errors, 0, "replay diverged from the recording");
    }
    if profiling {
        return;
    }
    // Plain loop: the whole measured stream once, from a fresh engine.
    let mut r = Replayer::new(&stream);
    let n = stream.steps.len() - stream.prefix;
    let mut total = Duration::ZERO;
    let mut fed = 0;
    while fed < n {
        let k = chunk.min(n - fed);
        total += r.chunk(k);
        fed += k;
    }
    assert_eq!(r.errors, 0, "replay diverged from the recording");
    let m = &stream.counts;
    let line = format!(
        "mixed: {:.0} inputs/s ({:.2} us/input; n={n} in {:.3} s; {} agents, {} queues; mix: \
         {} arrivals, {} answers, {} rejections, {} abandons, {} call ends, {} pauses, {} readies, {} timer ticks)",
        n as f64 / total.as_secs_f64(),
        total.as_secs_f64() * 1e6 / n as f64,
        total.as_secs_f64(),
        scale.agents,
        scale.queues,
        m.arrivals,
        m.answers,
        m.rejections,
        m.abandons,
        m.ends,
        m.pauses,
        m.readies,
        m.ticks,
    );
    let line = if quick { format!("{line} [quick mode: smoke test, not a measurement]") } else { line };
    println!("{line}");
    summary.push(line);
}

/// Criterion options that take a value (so the value is not a filter).
const VALUE_OPTS: [&str; 16] = [
    "--save-baseline",
    "-s",
    "--baseline",
    "-b",
    "--baseline-lenient",
    "--load-baseline",
    "--sample-size",
    "--warm-up-time",
    "--measurement-time",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--profile-time",
    "--output-format",
    "--format",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |f: &str| args.iter().any(|a| a == f);
    // criterion's own rule: `--test`, or no `--bench` (cargo test --benches).
    let quick = has("--test") || !has("--bench");
    // `--profile-time N`: only the criterion routine runs (for perf/callgrind).
    let profiling = has("--profile-time");
    // A name filter (substring; criterion treats it as a regex, which agrees
    // for plain names) also selects the setups and plain loops to run.
    let filter: Option<String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !a.starts_with('-')
                && !(*i > 0
                    && (VALUE_OPTS.contains(&args[i - 1].as_str())
                        || args[i - 1] == "--color"
                        || args[i - 1] == "--plotting-backend"))
        })
        .map(|(_, a)| a.clone())
        .next();
    let selected = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    if has("--list") {
        for name in ["decision/random", "decision/priority", "decision/skills", "mixed/inputs"] {
            println!("{name}: benchmark");
        }
        for strategy in ALL_STRATEGIES {
            println!("idle/{strategy}: benchmark");
        }
        return;
    }
    let scale = if quick { QUICK } else { FULL };
    let mut c = Criterion::default().configure_from_args();
    let mut summary = Vec::new();
    bench_decisions(&mut c, scale, quick, profiling, &selected, &mut summary);
    let idle_scale = if quick { IDLE_QUICK } else { IDLE_FULL };
    bench_idle(&mut c, idle_scale, quick, profiling, &selected, &mut summary);
    if selected("mixed/inputs") {
        bench_mixed(&mut c, scale, quick, profiling, &mut summary);
    }
    c.final_summary();
    println!("\n---- summary ----");
    for line in &summary {
        println!("{line}");
    }
}
