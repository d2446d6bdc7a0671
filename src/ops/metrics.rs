//! Prometheus metrics: what a supervisor's wallboard shows, per queue.
//!
//! [`Metrics`] turns the engine's [`Event`]s into counters and histograms as
//! they happen ([`Metrics::observe`]) and, on a timer, reads the engine's
//! queues and agents into gauges ([`Metrics::refresh`]), together with the
//! sliding-window figures: service level, average speed of answer, abandon
//! ratio and average handle time. Like the engine it is sans-IO: it never
//! reads a clock (`now` comes in) and only talks to whatever `metrics`
//! recorder is installed: the Prometheus exporter of [`install_exporter`] in
//! the daemon, a local recorder in tests.
//!
//! # Driving it
//! ```text
//! install_exporter(addr)?;                         // once, inside the tokio runtime
//! let mut m = Metrics::new(&config, window);
//! while let Some(e) = engine.poll_event() { m.observe(now, &engine, &e) }   // every event
//! m.refresh(now, &engine);                         // every second or so
//! m.reload(&new_config);                           // after a reload was applied
//! ```
//!
//! # What always holds
//! - Label values come from small fixed sets: `queue` (the config's queues),
//!   `state` ([`AGENT_STATES`]), `cause` ([`RejectCause::name`]), `reason`
//!   ([`overflow_reason_name`]), `outcome` ([`OUTCOMES`]) and `status` (the
//!   SIP status of a rejection: 480, 503 and the config's `reject:` targets).
//!   No caller numbers, call ids or agent names in labels.
//! - Memory is bounded by what the engine holds, not by traffic: one record
//!   per call in the engine (dropped at its `CallFinished`, which the engine
//!   emits exactly once per call), at most one pending handle time per agent,
//!   and at most `window / slot + 1` window slots per queue (about 300)
//!   whatever the call rate.
//! - Every gauge series of a configured queue is set on every refresh (zero
//!   when nothing is there) and every counter series with a fixed label set
//!   exists from the first refresh, so series do not appear and vanish.
//!
//! # Definitions (the same as `acd report`'s, [`super::report::QueueKpis`])
//! - A call is *offered* to a queue when it joins it (`CallQueued`). A call
//!   refused at the door (queue full, nobody logged in) is rejected or
//!   overflowed but not offered. A call that overflows from A into B is
//!   offered in both.
//! - *Wait* counts from the call's arrival in acd: a caller overflowed or
//!   moved into a queue brings the earlier wait along.
//! - The window holds, per queue, the calls that left it in the last
//!   `window`: answered, abandoned, overflowed out (to any target, a
//!   `reject:` target included) or rejected (an admin withdrawing it), plus
//!   the handle times that ended in it. Window offered = the sum of those
//!   four outcomes; a call moved elsewhere by an admin has no outcome here.
//! - Service level = answered with wait ≤ the queue's `service_level_secs`
//!   ÷ window offered. Average speed of answer = mean wait of the answered
//!   calls. Abandon ratio = abandoned ÷ window offered. Average handle time
//!   = mean of talk time + the wrap-up after it (talk alone when the agent
//!   went straight to another state), counted when the wrap-up ends.
//!   With nothing to divide by the gauge is NaN ("no calls"), as the report
//!   shows `-`.

use crate::config::Config;
use crate::engine::{AgentId, AgentState, CallId, Engine, Event, Outcome, OverflowReason, QueueId, RejectCause, Time};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use rustc_hash::FxHashMap as HashMap;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

// ----- metric names ------------------------------------------------------------

/// Gauge `{queue}`: callers in the queue now (waiting or being rung for).
pub const CALLERS_WAITING: &str = "acd_queue_callers_waiting";
/// Gauge `{queue}`: how long the longest-waiting caller has been in the queue.
pub const LONGEST_WAIT: &str = "acd_queue_longest_wait_seconds";
/// Gauge `{queue, state}`: the queue's member agents by state.
pub const QUEUE_AGENTS: &str = "acd_queue_agents";
/// Gauge `{state}`: all agents by state (each agent once).
pub const AGENTS: &str = "acd_agents";
/// Counter `{queue}`: calls that joined the queue.
pub const OFFERED: &str = "acd_calls_offered_total";
/// Counter `{queue}`: calls answered by an agent of the queue.
pub const ANSWERED: &str = "acd_calls_answered_total";
/// Counter `{queue}`: callers who hung up before being answered.
pub const ABANDONED: &str = "acd_calls_abandoned_total";
/// Counter `{queue, reason}`: calls sent to the queue's overflow target.
pub const OVERFLOWED: &str = "acd_calls_overflowed_total";
/// Counter `{queue}`: bridged calls transferred out of the queue (blind).
pub const TRANSFERRED: &str = "acd_calls_transferred_total";
/// Counter `{queue}`: waiting callers who left by the queue's exit key.
pub const EXITED: &str = "acd_calls_exited_total";
/// Counter `{queue, status}`: calls answered with a SIP error status.
pub const REJECTED: &str = "acd_calls_rejected_total";
/// Counter `{queue, cause}`: offers that ended without an answer.
pub const RING_NO_ANSWER: &str = "acd_ring_no_answer_total";
/// Histogram `{queue, outcome}`: callers' waits.
pub const WAIT: &str = "acd_wait_seconds";
/// Histogram `{queue}`: how long agents' phones rang.
pub const RING: &str = "acd_ring_seconds";
/// Histogram `{queue}`: talk time of answered calls.
pub const TALK: &str = "acd_talk_seconds";
/// Histogram `{queue}`: wrap-up after a call.
pub const WRAP_UP: &str = "acd_wrap_up_seconds";
/// Gauge `{queue}`: service level over the window.
pub const SERVICE_LEVEL: &str = "acd_queue_service_level_ratio";
pub const QUEUE_OPEN: &str = "acd_queue_open";
/// Gauge `{queue}`: average speed of answer over the window.
pub const ASA: &str = "acd_queue_average_speed_of_answer_seconds";
/// Gauge `{queue}`: abandon ratio over the window.
pub const ABANDON_RATIO: &str = "acd_queue_abandon_ratio";
/// Gauge `{queue}`: average handle time over the window.
pub const AHT: &str = "acd_queue_average_handle_seconds";
/// Gauge `{queue, outcome}`: calls in the window, by outcome.
pub const WINDOW_CALLS: &str = "acd_queue_window_calls";
/// Gauge: the window's length.
pub const WINDOW_SECONDS: &str = "acd_queue_window_seconds";

/// Histogram buckets of every `*_seconds` histogram: ring times (a few
/// seconds), waits (the usual service-level thresholds 10, 15, 20, 30 and 60
/// s are all bounds, so a threshold can be read off the buckets), talk and
/// wrap-up times up to an hour.
pub const SECONDS_BUCKETS: &[f64] =
    &[0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0];

/// Values of the `state` label: [`AgentState::name`], plus `unregistered`
/// for an agent who is available but whose phone is not registered (acd
/// cannot ring it).
pub const AGENT_STATES: [&str; 7] =
    ["available", "ringing", "on-call", "wrap-up", "paused", "logged-out", "unregistered"];

/// Values of the `outcome` label.
pub const OUTCOMES: [&str; 4] = ["answered", "abandoned", "overflowed", "rejected"];

const CAUSES: [RejectCause; 5] = [
    RejectCause::NoAnswer,
    RejectCause::Busy,
    RejectCause::Unavailable,
    RejectCause::Declined,
    RejectCause::Unreachable,
];

const OVERFLOW_REASONS: [OverflowReason; 6] = [
    OverflowReason::MaxWait,
    OverflowReason::QueueFull,
    OverflowReason::NoAgents,
    OverflowReason::QueueRemoved,
    OverflowReason::Shutdown,
    OverflowReason::Closed,
];

/// The window is kept in about this many time slots, so its memory does not
/// grow with the call rate.
const SLOTS: u64 = 300;

/// The `reason` label of an overflow; the same names as the event log's.
pub fn overflow_reason_name(r: OverflowReason) -> &'static str {
    crate::ops::eventlog::overflow_reason_name(r)
}

/// The `state` label of an agent: see [`AGENT_STATES`].
pub fn agent_state_label(engine: &Engine, a: AgentId) -> &'static str {
    match engine.agent_state(a) {
        Some(AgentState::Available { .. }) if !engine.agent_registered(a) => "unregistered",
        Some(s) => s.name(),
        None => "logged-out",
    }
}

// ----- the exporter ------------------------------------------------------------

/// Why the Prometheus exporter did not start. acd runs on without metrics.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error("cannot listen on {listen}: {reason}")]
    Listen { listen: SocketAddr, reason: String },
    #[error("a metrics recorder is already installed in this process")]
    AlreadyInstalled,
    #[error("cannot start the exporter: {0}")]
    Build(BuildError),
}

/// The exporter's builder with acd's histogram buckets: every histogram
/// whose name ends in `_seconds` is exported as a real Prometheus histogram
/// (`_bucket{le=…}`, `_sum`, `_count`) on [`SECONDS_BUCKETS`], not as a
/// summary, so it can be aggregated across queues and instances. Tests build
/// their recorder from it (`.build_recorder()`).
pub fn prometheus_builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), SECONDS_BUCKETS)
        .and_then(|b| {
            // Full matchers win over suffixes: socket waits are milliseconds.
            let socket = crate::sip::socket::SOCKET_WAIT.to_string();
            b.set_buckets_for_metric(Matcher::Full(socket), crate::sip::socket::SOCKET_WAIT_BUCKETS)
        })
        .expect("bucket lists are not empty")
}

/// Installs the Prometheus exporter as the process's `metrics` recorder,
/// serving the text exposition on `http://{listen}/` (any path), and
/// registers the help texts ([`describe`]).
///
/// Call it inside the tokio runtime, before [`Metrics::new`]: the HTTP
/// listener and the exporter's upkeep task (which drains histogram samples
/// every 5 s) are spawned onto the current runtime. Outside a runtime the
/// exporter would start one of its own on a new thread instead. The port is
/// bound before this returns, so a port in use is reported here. It can be
/// installed once per process.
pub fn install_exporter(listen: SocketAddr) -> Result<(), ExporterError> {
    prometheus_builder().with_http_listener(listen).install().map_err(|e| match e {
        BuildError::FailedToCreateHTTPListener(reason) => ExporterError::Listen { listen, reason },
        BuildError::FailedToSetGlobalRecorder(_) => ExporterError::AlreadyInstalled,
        other => ExporterError::Build(other),
    })?;
    describe();
    Ok(())
}

/// Registers the help text and unit of every metric with the installed
/// recorder. Idempotent; [`install_exporter`] and [`Metrics::new`] call it.
pub fn describe() {
    crate::ops::callback_log::describe();
    describe_gauge!(CALLERS_WAITING, Unit::Count, "Callers in the queue now, waiting or being rung for.");
    describe_gauge!(LONGEST_WAIT, Unit::Seconds, "How long the longest-waiting caller has been in the queue.");
    describe_gauge!(
        QUEUE_AGENTS,
        Unit::Count,
        "Member agents of the queue by state (an agent in several queues counts in each)."
    );
    describe_gauge!(AGENTS, Unit::Count, "All agents by state, each agent once.");
    describe_gauge!(
        QUEUE_OPEN,
        Unit::Count,
        "1 while the queue's business hours (or emergency switch) have it open, else 0."
    );
    describe_counter!(OFFERED, Unit::Count, "Calls that joined the queue (refusals at the door are not offered).");
    describe_counter!(ANSWERED, Unit::Count, "Calls answered by an agent of the queue.");
    describe_counter!(ABANDONED, Unit::Count, "Callers who hung up while waiting or ringing.");
    describe_counter!(OVERFLOWED, Unit::Count, "Calls sent to the queue's overflow target, by reason.");
    describe_counter!(TRANSFERRED, Unit::Count, "Bridged calls transferred out of the queue by its agent or an admin.");
    describe_counter!(EXITED, Unit::Count, "Waiting callers who left the queue by its exit key.");
    describe_counter!(REJECTED, Unit::Count, "Calls of the queue answered with a SIP error status.");
    describe_counter!(RING_NO_ANSWER, Unit::Count, "Offers to agents that ended without an answer, by cause.");
    describe_histogram!(
        WAIT,
        Unit::Seconds,
        "Callers' waits from arrival in acd until they left the queue, by outcome."
    );
    describe_histogram!(RING, Unit::Seconds, "How long agents' phones rang, however the ring ended.");
    describe_histogram!(TALK, Unit::Seconds, "Talk time of answered calls, from answer to hang-up.");
    describe_histogram!(WRAP_UP, Unit::Seconds, "Agents' wrap-up after a call of the queue.");
    describe_gauge!(
        SERVICE_LEVEL,
        Unit::Count,
        "Calls answered within the queue's service_level_secs / calls offered, over the window; NaN without calls."
    );
    describe_gauge!(
        ASA,
        Unit::Seconds,
        "Average speed of answer of the calls answered in the window; NaN without any."
    );
    describe_gauge!(ABANDON_RATIO, Unit::Count, "Abandoned / offered calls over the window; NaN without calls.");
    describe_gauge!(
        AHT,
        Unit::Seconds,
        "Average handle time (talk + wrap-up) of the calls whose wrap-up ended in the window; NaN without any."
    );
    describe_gauge!(WINDOW_CALLS, Unit::Count, "Calls that left the queue within the window, by outcome.");
    describe_gauge!(WINDOW_SECONDS, Unit::Seconds, "Length of the sliding window of the queue ratios and averages.");
}

// ----- the sliding window ----------------------------------------------------------

/// What one queue's window holds: calls that left the queue, by outcome,
/// and handle times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowFigures {
    pub answered: u32,
    /// Answered with wait ≤ the queue's service-level threshold.
    pub answered_within_sl: u32,
    pub abandoned: u32,
    pub overflowed: u32,
    pub rejected: u32,
    /// Sum of the answered calls' waits.
    pub answered_wait_ms: u64,
    /// Calls whose handle time (talk + wrap-up) ended in the window.
    pub handled: u32,
    pub handle_ms: u64,
}

impl WindowFigures {
    /// Calls that left the queue with an outcome.
    pub fn offered(&self) -> u32 {
        self.answered + self.abandoned + self.overflowed + self.rejected
    }
    /// Answered within the threshold ÷ offered; `None` without calls.
    pub fn service_level(&self) -> Option<f64> {
        ratio(self.answered_within_sl as u64, self.offered() as u64)
    }
    /// Mean wait of the answered calls, in seconds.
    pub fn average_speed_of_answer_secs(&self) -> Option<f64> {
        ratio(self.answered_wait_ms, self.answered as u64).map(|ms| ms / 1000.0)
    }
    /// Abandoned ÷ offered.
    pub fn abandon_ratio(&self) -> Option<f64> {
        ratio(self.abandoned as u64, self.offered() as u64)
    }
    /// Mean talk + wrap-up, in seconds.
    pub fn average_handle_secs(&self) -> Option<f64> {
        ratio(self.handle_ms, self.handled as u64).map(|ms| ms / 1000.0)
    }
    /// `(outcome label, count)` for [`OUTCOMES`].
    pub fn by_outcome(&self) -> [(&'static str, u32); 4] {
        [
            (OUTCOMES[0], self.answered),
            (OUTCOMES[1], self.abandoned),
            (OUTCOMES[2], self.overflowed),
            (OUTCOMES[3], self.rejected),
        ]
    }
    fn add(&mut self, o: &WindowFigures) {
        self.answered += o.answered;
        self.answered_within_sl += o.answered_within_sl;
        self.abandoned += o.abandoned;
        self.overflowed += o.overflowed;
        self.rejected += o.rejected;
        self.answered_wait_ms += o.answered_wait_ms;
        self.handled += o.handled;
        self.handle_ms += o.handle_ms;
    }
}

/// A queue's window figures with the ratios worked out, for the admin API
/// (`null` where there is nothing to divide by).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LiveFigures {
    pub window_secs: f64,
    pub offered: u32,
    pub answered: u32,
    pub answered_within_sl: u32,
    pub abandoned: u32,
    pub overflowed: u32,
    pub rejected: u32,
    pub handled: u32,
    pub service_level: Option<f64>,
    pub average_speed_of_answer_secs: Option<f64>,
    pub abandon_ratio: Option<f64>,
    pub average_handle_secs: Option<f64>,
}

impl LiveFigures {
    fn new(window: Duration, f: &WindowFigures) -> LiveFigures {
        LiveFigures {
            window_secs: secs(window),
            offered: f.offered(),
            answered: f.answered,
            answered_within_sl: f.answered_within_sl,
            abandoned: f.abandoned,
            overflowed: f.overflowed,
            rejected: f.rejected,
            handled: f.handled,
            service_level: f.service_level(),
            average_speed_of_answer_secs: f.average_speed_of_answer_secs(),
            abandon_ratio: f.abandon_ratio(),
            average_handle_secs: f.average_handle_secs(),
        }
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// One queue: its settings as metrics needs them, and its sliding window.
///
/// The window is a ring of time slots of `max(1 s, window / 300)`, each the
/// sum of what happened in it; a slot stays while any part of it is inside
/// `(now - window, now]`, so the window is `window` long to within one slot.
#[derive(Debug)]
pub struct QueueMetrics {
    name: Arc<str>,
    sl_threshold: Duration,
    /// Agent ids (config names) of the members.
    members: Vec<String>,
    window_ms: u64,
    slot_ms: u64,
    /// `(slot index = time / slot_ms, sums)`, oldest first.
    slots: VecDeque<(u64, WindowFigures)>,
}

impl QueueMetrics {
    fn new(name: &str, sl_threshold: Duration, members: Vec<String>, window: Duration) -> QueueMetrics {
        let window_ms = (window.as_millis() as u64).max(1000);
        QueueMetrics {
            name: Arc::from(name),
            sl_threshold,
            members,
            window_ms,
            slot_ms: (window_ms / SLOTS).max(1000),
            slots: VecDeque::new(),
        }
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The queue's `service_level_secs`.
    pub fn service_level_threshold(&self) -> Duration {
        self.sl_threshold
    }
    /// Member agent ids, as in the config.
    pub fn members(&self) -> &[String] {
        &self.members
    }
    /// Width of one window slot: the step in which the window slides.
    pub fn slot(&self) -> Duration {
        Duration::from_millis(self.slot_ms)
    }
    /// The window's sums at `now`.
    pub fn figures(&self, now: Time) -> WindowFigures {
        let first = self.first_slot(now);
        let mut f = WindowFigures::default();
        for (_, s) in self.slots.iter().filter(|(i, _)| *i >= first) {
            f.add(s);
        }
        f
    }
    /// The oldest slot still (partly) inside the window at `now`.
    fn first_slot(&self, now: Time) -> u64 {
        now.0.saturating_sub(self.window_ms) / self.slot_ms
    }
    fn prune(&mut self, now: Time) {
        let first = self.first_slot(now);
        while self.slots.front().is_some_and(|(i, _)| *i < first) {
            self.slots.pop_front();
        }
    }
    /// Adds to the slot of `at`. Times only go forward in practice; an
    /// earlier one still lands in its own slot.
    fn tally(&mut self, at: Time, f: impl FnOnce(&mut WindowFigures)) {
        let i = at.0 / self.slot_ms;
        match self.slots.iter().rposition(|(j, _)| *j <= i) {
            Some(p) if self.slots[p].0 == i => f(&mut self.slots[p].1),
            p => {
                let mut s = WindowFigures::default();
                f(&mut s);
                self.slots.insert(p.map_or(0, |p| p + 1), (i, s));
            }
        }
        self.prune(at.max(Time(self.slots.back().map_or(0, |(j, _)| j * self.slot_ms))));
    }
    fn answered(&mut self, at: Time, waited: Duration) {
        let within = waited <= self.sl_threshold;
        self.tally(at, |f| {
            f.answered += 1;
            f.answered_within_sl += within as u32;
            f.answered_wait_ms += waited.as_millis() as u64;
        });
    }
    fn handled(&mut self, at: Time, handle: Duration) {
        self.tally(at, |f| {
            f.handled += 1;
            f.handle_ms += handle.as_millis() as u64;
        });
    }
}

// ----- the bookkeeping -------------------------------------------------------------

/// A ring in progress, for the ring time.
#[derive(Debug, Clone, Copy)]
struct Ring {
    agent: AgentId,
    queue: QueueId,
    since: Time,
}

/// What metrics remembers of a call the engine holds.
#[derive(Debug)]
struct CallRecord {
    arrived: Time,
    /// The queue the call joined and has not yet left with an outcome
    /// (answered, abandoned, overflowed or rejected in it).
    joined: Option<QueueId>,
    rings: Vec<Ring>,
    /// When it was bridged, for the talk time.
    answered_at: Option<Time>,
}

/// An agent's last call, until its wrap-up ends: the handle time.
#[derive(Debug, Clone, Copy)]
struct AfterCall {
    queue: QueueId,
    talk: Duration,
    wrap_since: Option<Time>,
}

/// The metrics bookkeeping. See the module docs for how to drive it.
#[derive(Debug)]
pub struct Metrics {
    window: Duration,
    /// By queue name: the config's queues, plus any an event names that the
    /// config given to [`Metrics::new`] / [`Metrics::reload`] did not have.
    queues: BTreeMap<Arc<str>, QueueMetrics>,
    calls: HashMap<CallId, CallRecord>,
    after_call: HashMap<AgentId, AfterCall>,
    /// The latest `now` given to `observe` or `refresh`.
    latest: Time,
}

/// Default service-level threshold for a queue metrics learns of from an
/// event before its config (the config's own default).
const DEFAULT_SL_SECS: u64 = 20;

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The queue's metrics, made on first sight if the config did not list it.
fn queue_of<'a>(
    queues: &'a mut BTreeMap<Arc<str>, QueueMetrics>,
    window: Duration,
    engine: &Engine,
    q: QueueId,
) -> &'a mut QueueMetrics {
    let name = engine.queue_name(q);
    if !queues.contains_key(name) {
        let qm = QueueMetrics::new(name, Duration::from_secs(DEFAULT_SL_SECS), Vec::new(), window);
        queues.insert(Arc::clone(&qm.name), qm);
    }
    queues.get_mut(name).expect("inserted above")
}

impl Metrics {
    /// Metrics for `config`'s queues, with ratios and averages over the last
    /// `window` (the config's `metrics.window_secs`).
    pub fn new(config: &Config, window: Duration) -> Metrics {
        describe();
        let mut m = Metrics {
            window,
            queues: BTreeMap::new(),
            calls: HashMap::default(),
            after_call: HashMap::default(),
            latest: Time::ZERO,
        };
        m.reload(config);
        m
    }

    /// Takes a new config's queues: thresholds and members change for what
    /// comes next (a call already answered keeps the threshold it was
    /// counted with), new queues start empty, and removed queues are
    /// dropped after their gauges are set to zero (NaN for the ratios), so
    /// a stale value does not stay on the wallboard.
    pub fn reload(&mut self, config: &Config) {
        let removed: Vec<Arc<str>> =
            self.queues.keys().filter(|n| !config.queues.iter().any(|q| q.name == ***n)).cloned().collect();
        for name in removed {
            if let Some(qm) = self.queues.remove(&name) {
                let empty = WindowFigures::default();
                set_queue_gauges(&qm.name, 0, Duration::ZERO, &[0; AGENT_STATES.len()], &empty);
            }
        }
        for qc in &config.queues {
            let threshold = Duration::from_secs(qc.service_level_secs as u64);
            let members: Vec<String> = qc.members.iter().map(|m| m.agent.clone()).collect();
            match self.queues.get_mut(qc.name.as_str()) {
                Some(qm) => {
                    qm.sl_threshold = threshold;
                    qm.members = members;
                }
                None => {
                    let qm = QueueMetrics::new(&qc.name, threshold, members, self.window);
                    self.queues.insert(Arc::clone(&qm.name), qm);
                }
            }
        }
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// One queue's metrics, by name.
    pub fn queue(&self, name: &str) -> Option<&QueueMetrics> {
        self.queues.get(name)
    }

    /// Calls metrics is keeping a record of (those the engine holds).
    pub fn tracked_calls(&self) -> usize {
        self.calls.len()
    }

    /// Agents whose last call's handle time is still open (in wrap-up).
    pub fn open_handle_times(&self) -> usize {
        self.after_call.len()
    }

    /// Records one engine event at `now` (when the engine emitted it). Feed
    /// it every event, in order; `engine` is only read for names.
    pub fn observe(&mut self, now: Time, engine: &Engine, event: &Event) {
        self.latest = self.latest.max(now);
        let window = self.window;
        match event {
            Event::CallArrived { call, .. } => {
                self.calls
                    .insert(*call, CallRecord { arrived: now, joined: None, rings: Vec::new(), answered_at: None });
            }
            Event::Exited { call, from, .. } => {
                let qm = queue_of(&mut self.queues, window, engine, *from);
                counter!(EXITED, "queue" => Arc::clone(&qm.name)).increment(1);
                if let Some(r) = self.calls.get_mut(call) {
                    r.joined = None;
                }
            }
            Event::CallMoved { call, .. } => {
                if let Some(r) = self.calls.get_mut(call) {
                    r.joined = None;
                }
            }
            Event::Transferred { call, from, agent, to, .. } => {
                // The agent's talk ends here, as at a hang-up: its talk and
                // then wrap-up count for the queue it answered from.
                let qm = queue_of(&mut self.queues, window, engine, *from);
                counter!(TRANSFERRED, "queue" => Arc::clone(&qm.name)).increment(1);
                if let Some(at) = self.calls.get_mut(call).and_then(|r| r.answered_at.take()) {
                    let talk = now.since(at);
                    histogram!(TALK, "queue" => Arc::clone(&qm.name)).record(secs(talk));
                    self.after_call.insert(*agent, AfterCall { queue: *from, talk, wrap_since: None });
                }
                // To an agent: the new agent's talk starts now.
                if let (crate::engine::TransferTarget::Agent(_), Some(r)) = (to, self.calls.get_mut(call)) {
                    r.answered_at = Some(now);
                }
            }
            Event::CallQueued { call, queue, .. } => {
                let qm = queue_of(&mut self.queues, window, engine, *queue);
                counter!(OFFERED, "queue" => Arc::clone(&qm.name)).increment(1);
                if let Some(r) = self.calls.get_mut(call) {
                    r.joined = Some(*queue);
                }
            }
            Event::Offered { call, queue, decision } => {
                if let Some(r) = self.calls.get_mut(call) {
                    r.rings.extend(decision.chosen().map(|agent| Ring { agent, queue: *queue, since: now }));
                }
            }
            Event::RingNoAnswer { call, agent, cause } => {
                let q = self.ring_ended(now, engine, *call, *agent).or_else(|| engine.call(*call).map(|v| v.queue));
                if let Some(q) = q {
                    let qm = queue_of(&mut self.queues, window, engine, q);
                    counter!(RING_NO_ANSWER, "queue" => Arc::clone(&qm.name), "cause" => cause.name()).increment(1);
                }
            }
            Event::RingCancelled { call, agent } => {
                self.ring_ended(now, engine, *call, *agent);
            }
            Event::Answered { call, queue, agent, waited } => {
                self.ring_ended(now, engine, *call, *agent);
                let qm = queue_of(&mut self.queues, window, engine, *queue);
                counter!(ANSWERED, "queue" => Arc::clone(&qm.name)).increment(1);
                histogram!(WAIT, "queue" => Arc::clone(&qm.name), "outcome" => "answered").record(secs(*waited));
                if let Some(r) = self.calls.get_mut(call) {
                    r.answered_at = Some(now);
                    if r.joined.take() == Some(*queue) {
                        qm.answered(now, *waited);
                    }
                }
            }
            Event::Overflowed { call, from, reason, .. } => {
                let qm = queue_of(&mut self.queues, window, engine, *from);
                counter!(OVERFLOWED, "queue" => Arc::clone(&qm.name), "reason" => overflow_reason_name(*reason))
                    .increment(1);
                if let Some(r) = self.calls.get_mut(call) {
                    if r.joined == Some(*from) {
                        r.joined = None;
                        let waited = now.since(r.arrived);
                        histogram!(WAIT, "queue" => Arc::clone(&qm.name), "outcome" => "overflowed")
                            .record(secs(waited));
                        qm.tally(now, |f| f.overflowed += 1);
                    }
                }
            }
            Event::CallFinished { call, queue, outcome, waited } => {
                let record = self.calls.remove(call);
                let joined = record.as_ref().is_some_and(|r| r.joined == Some(*queue));
                let qm = queue_of(&mut self.queues, window, engine, *queue);
                match outcome {
                    Outcome::Answered { agent } => {
                        if let Some(at) = record.as_ref().and_then(|r| r.answered_at) {
                            let talk = now.since(at);
                            histogram!(TALK, "queue" => Arc::clone(&qm.name)).record(secs(talk));
                            self.after_call.insert(*agent, AfterCall { queue: *queue, talk, wrap_since: None });
                        }
                    }
                    Outcome::Abandoned => {
                        counter!(ABANDONED, "queue" => Arc::clone(&qm.name)).increment(1);
                        if joined {
                            histogram!(WAIT, "queue" => Arc::clone(&qm.name), "outcome" => "abandoned")
                                .record(secs(*waited));
                            qm.tally(now, |f| f.abandoned += 1);
                        }
                    }
                    // Counted at its `Overflowed` event.
                    Outcome::Overflowed { .. } | Outcome::CallbackFailed { .. } => {}
                    // Not a customer's call (engine/attended.rs).
                    Outcome::Consultation { .. } => {}
                    Outcome::Rejected { status } => {
                        counter!(REJECTED, "queue" => Arc::clone(&qm.name), "status" => status.to_string())
                            .increment(1);
                        if joined {
                            histogram!(WAIT, "queue" => Arc::clone(&qm.name), "outcome" => "rejected")
                                .record(secs(*waited));
                            qm.tally(now, |f| f.rejected += 1);
                        }
                    }
                }
            }
            Event::AgentStateChanged { agent, from, to, .. } => {
                // The engine emits CallFinished before the agent leaves
                // on-call, so the talk time is known by now.
                if *to == "wrap-up" {
                    if let Some(p) = self.after_call.get_mut(agent) {
                        p.wrap_since = Some(now);
                    }
                } else if *from == "wrap-up" || *from == "on-call" {
                    if let Some(p) = self.after_call.remove(agent) {
                        let qm = queue_of(&mut self.queues, window, engine, p.queue);
                        let wrap = p.wrap_since.map(|s| now.since(s)).unwrap_or_default();
                        if p.wrap_since.is_some() {
                            histogram!(WRAP_UP, "queue" => Arc::clone(&qm.name)).record(secs(wrap));
                        }
                        qm.handled(now, p.talk + wrap);
                    }
                }
            }
            Event::ConfigApplied { .. } => {}
            Event::Callback { queue, step, .. } => crate::ops::callback_log::count(engine, *queue, step),
        }
    }

    /// Ends a ring of `call` to `agent`: records its ring time; the queue
    /// it rang for.
    fn ring_ended(&mut self, now: Time, engine: &Engine, call: CallId, agent: AgentId) -> Option<QueueId> {
        let r = self.calls.get_mut(&call)?;
        let i = r.rings.iter().position(|x| x.agent == agent)?;
        let ring = r.rings.swap_remove(i);
        let qm = queue_of(&mut self.queues, self.window, engine, ring.queue);
        histogram!(RING, "queue" => Arc::clone(&qm.name)).record(secs(now.since(ring.since)));
        Some(ring.queue)
    }

    /// Sets every gauge from the engine's state at `now`: callers waiting,
    /// longest wait, agents by state (per queue and overall) and the window
    /// figures. Call it every second or so; it also drops window slots that
    /// fell out of the window.
    pub fn refresh(&mut self, now: Time, engine: &Engine) {
        self.latest = self.latest.max(now);
        let mut state_of: HashMap<&str, &'static str> = HashMap::default();
        let mut totals: BTreeMap<&'static str, u32> = AGENT_STATES.iter().map(|s| (*s, 0)).collect();
        for a in engine.agent_ids() {
            let s = agent_state_label(engine, a);
            state_of.insert(engine.agent_name(a), s);
            *totals.entry(s).or_default() += 1;
        }
        for (s, n) in totals {
            gauge!(AGENTS, "state" => s).set(n as f64);
        }
        gauge!(WINDOW_SECONDS).set(secs(self.window));
        for qm in self.queues.values_mut() {
            let (waiting, longest) = match engine.queue_id(&qm.name) {
                // The engine counts to its own `now` (its last input);
                // the wallboard counts to this one.
                Some(q) if engine.waiting_count(q) > 0 => {
                    (engine.waiting_count(q), engine.longest_wait(q) + now.since(engine.now()))
                }
                Some(_) => (0, Duration::ZERO),
                None => (0, Duration::ZERO),
            };
            let mut by_state = [0u32; AGENT_STATES.len()];
            for m in &qm.members {
                if let Some(i) = state_of.get(m.as_str()).and_then(|s| AGENT_STATES.iter().position(|x| x == s)) {
                    by_state[i] += 1;
                }
            }
            qm.prune(now);
            set_queue_gauges(&qm.name, waiting, longest, &by_state, &qm.figures(now));
            crate::ops::callback_log::set_pending(engine, &qm.name);
            // Business hours: 1 open, 0 closed (always 1 without a schedule).
            let open = engine.queue_id(&qm.name).is_none_or(|q| engine.queue_open(q));
            gauge!(QUEUE_OPEN, "queue" => Arc::clone(&qm.name)).set(if open { 1.0 } else { 0.0 });
            // Counters exist from the start, so rate() sees their first call.
            let name = &qm.name;
            for c in [OFFERED, ANSWERED, ABANDONED, TRANSFERRED, EXITED] {
                counter!(c, "queue" => Arc::clone(name)).increment(0);
            }
            for cause in CAUSES {
                counter!(RING_NO_ANSWER, "queue" => Arc::clone(name), "cause" => cause.name()).increment(0);
            }
            for reason in OVERFLOW_REASONS {
                counter!(OVERFLOWED, "queue" => Arc::clone(name), "reason" => overflow_reason_name(reason))
                    .increment(0);
            }
        }
    }

    /// One queue's window figures at `now` (for the admin API and tests).
    pub fn figures(&self, now: Time, queue: &str) -> Option<WindowFigures> {
        self.queues.get(queue).map(|qm| qm.figures(now))
    }

    /// One queue's window figures and ratios at the latest time metrics was
    /// given (by `observe` or `refresh`), for the admin API.
    pub fn queue_figures(&self, queue: &str) -> Option<LiveFigures> {
        self.figures(self.latest, queue).map(|f| LiveFigures::new(self.window, &f))
    }
}

fn set_queue_gauges(
    name: &Arc<str>,
    waiting: usize,
    longest: Duration,
    by_state: &[u32; AGENT_STATES.len()],
    f: &WindowFigures,
) {
    let nan = f64::NAN;
    gauge!(CALLERS_WAITING, "queue" => Arc::clone(name)).set(waiting as f64);
    gauge!(LONGEST_WAIT, "queue" => Arc::clone(name)).set(secs(longest));
    for (s, n) in AGENT_STATES.iter().zip(by_state) {
        gauge!(QUEUE_AGENTS, "queue" => Arc::clone(name), "state" => *s).set(*n as f64);
    }
    gauge!(SERVICE_LEVEL, "queue" => Arc::clone(name)).set(f.service_level().unwrap_or(nan));
    gauge!(ASA, "queue" => Arc::clone(name)).set(f.average_speed_of_answer_secs().unwrap_or(nan));
    gauge!(ABANDON_RATIO, "queue" => Arc::clone(name)).set(f.abandon_ratio().unwrap_or(nan));
    gauge!(AHT, "queue" => Arc::clone(name)).set(f.average_handle_secs().unwrap_or(nan));
    for (o, n) in f.by_outcome() {
        gauge!(WINDOW_CALLS, "queue" => Arc::clone(name), "outcome" => o).set(n as f64);
    }
}

#[cfg(test)]
mod tests;
