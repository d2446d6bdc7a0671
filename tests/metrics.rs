//! The Prometheus metrics as a supervisor reads them: a scripted few
//! minutes of a small call center on a virtual clock, fed through the real
//! engine and `acd::ops::metrics::Metrics` into a Prometheus recorder built
//! like the daemon's, then the text exposition parsed and checked number by
//! number.
//!
//! Config: `sales` (anna, ben, eve; linear, ring timeout 15 s, wrap-up 10 s,
//! service level 20 s), `support` (cleo, dan; max wait 60 s, overflow to
//! sales), `vip` (dan; refuses callers when nobody is logged in). Phones of
//! anna, ben and cleo register at t=0; eve is logged in but never
//! registers; dan is logged out.
//!
//! The script (seconds):
//! - 10 call 1 sales rings anna, answered at 14 (waited 4); ends at 74,
//!   anna wraps up until 84.
//! - 20 call 2 sales rings ben, 486 Busy at 21 (ben backs off 30 s); the
//!   caller hangs up at 25.
//! - 30 call 3 sales waits; rings ben at 51 (back-off over), no answer
//!   until the 15 s timeout at 66 (back-off 10 s), rings ben again at 76,
//!   answered at 80 (waited 50); ends at 140, ben wraps up until 150.
//! - 40 call 4 support rings cleo, answered at 42; ends at 100, cleo wraps
//!   up until 110.
//! - 95 call 5 support waits for cleo's wrap-up; rung at 110, answered at
//!   112 (waited 17).
//! - 105: first look at the wallboard.
//! - 115 call 6 support waits (cleo busy); max wait overflows it to sales
//!   at 175, where anna is rung and answers at 178 (waited 63).
//! - 120 call 7 vip: nobody logged in, rejected 480 at the door.
//! - 205: second look, window 120 s: what happened before 85 s is gone.

use acd::engine::{Action, AgentId, CallId, Engine, Event, Input, NewCall, RejectCause, Time};
use acd::ops::metrics::{prometheus_builder, Metrics};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

const CONFIG: &str = r#"
[[queue]]
name = "sales"
strategy = "linear"
ring_timeout_secs = 15
wrap_up_secs = 10
service_level_secs = 20
members = [{ agent = "anna" }, { agent = "ben" }, { agent = "eve" }]

[[queue]]
name = "support"
strategy = "linear"
wrap_up_secs = 10
service_level_secs = 20
max_wait_secs = 60
overflow = "queue:sales"
members = [{ agent = "cleo" }, { agent = "dan" }]

[[queue]]
name = "vip"
when_no_agents = "reject"
members = [{ agent = "dan" }]

[[agent]]
id = "anna"

[[agent]]
id = "ben"

[[agent]]
id = "cleo"

[[agent]]
id = "dan"
auto_login = false

[[agent]]
id = "eve"
"#;

// ----------------------------------------------------------------- the driver

struct Net {
    engine: Engine,
    metrics: Metrics,
    now: Time,
    /// Rings on now.
    rings: Vec<(CallId, AgentId)>,
    events: Vec<(Time, Event)>,
}

impl Net {
    fn new(window: Duration) -> Net {
        let config = acd::config::from_toml_str("metrics.toml", CONFIG).expect("test config is valid");
        let engine = Engine::new(&config, Time::ZERO);
        let metrics = Metrics::new(&config, window);
        let mut net = Net { engine, metrics, now: Time::ZERO, rings: Vec::new(), events: Vec::new() };
        for a in ["anna", "ben", "cleo"] {
            let agent = net.agent(a);
            net.input(0, Input::AgentRegistered { agent });
        }
        net
    }

    fn agent(&self, name: &str) -> AgentId {
        self.engine.agent_id(name).expect("agent in config")
    }

    /// Fires the engine's timers up to `secs`, each at its own time.
    fn advance(&mut self, secs: u64) {
        let to = Time::from_secs(secs);
        assert!(to >= self.now, "the script goes back in time");
        while let Some(at) = self.engine.poll_timeout().filter(|at| *at <= to) {
            self.now = at;
            self.engine.handle_timeout(at).expect("timeout");
            self.drain();
        }
        self.now = to;
    }

    fn input(&mut self, secs: u64, input: Input) {
        self.advance(secs);
        let text = format!("{input:?}");
        self.engine.handle(self.now, input).unwrap_or_else(|e| panic!("{}: engine refused {text}: {e}", self.now));
        self.drain();
    }

    /// Takes the engine's actions and feeds every event to the metrics, as
    /// the daemon does.
    fn drain(&mut self) {
        while let Some(a) = self.engine.poll_action() {
            match a {
                Action::Ring { call, agent, .. } => self.rings.push((call, agent)),
                Action::CancelRing { call, agent } => self.rings.retain(|r| *r != (call, agent)),
                Action::Bridge { call, agent } => self.rings.retain(|r| *r != (call, agent)),
                _ => {}
            }
        }
        while let Some(e) = self.engine.poll_event() {
            if let Event::RingNoAnswer { call, agent, .. } = &e {
                self.rings.retain(|r| *r != (*call, *agent));
            }
            self.metrics.observe(self.now, &self.engine, &e);
            self.events.push((self.now, e));
        }
    }

    fn arrive(&mut self, secs: u64, id: u64, queue: &str) {
        let queue = self.engine.queue_id(queue).expect("queue in config");
        let nc = NewCall {
            id: CallId(id),
            queue,
            caller: format!("+3584000{id}"),
            priority: 0,
            skills: vec![],
            attributes: vec![],
        };
        self.input(secs, Input::CallArrived(nc));
    }

    fn ringing(&mut self, secs: u64, id: u64, agent: &str) {
        self.advance(secs);
        let a = self.agent(agent);
        assert!(
            self.rings.contains(&(CallId(id), a)),
            "{}: call {id} does not ring {agent}: {:?}",
            self.now,
            self.rings
        );
    }

    fn answer(&mut self, secs: u64, id: u64, agent: &str) {
        self.ringing(secs, id, agent);
        let agent = self.agent(agent);
        self.input(secs, Input::OfferAnswered { call: CallId(id), agent });
    }

    fn busy(&mut self, secs: u64, id: u64, agent: &str) {
        self.ringing(secs, id, agent);
        let agent = self.agent(agent);
        self.input(secs, Input::OfferRejected { call: CallId(id), agent, cause: RejectCause::from_sip_status(486) });
    }

    fn refresh(&mut self, secs: u64) {
        self.advance(secs);
        self.metrics.refresh(self.now, &self.engine);
    }
}

// ---------------------------------------------------------- the text exposition

/// One sample line: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The scrape, parsed, with the `# TYPE` of each family.
struct Scrape {
    types: HashMap<String, String>,
    samples: Vec<Sample>,
}

fn parse_value(v: &str) -> f64 {
    match v {
        "+Inf" | "inf" => f64::INFINITY,
        "-Inf" | "-inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().unwrap_or_else(|_| panic!("not a sample value: {v:?}")),
    }
}

/// A small parser for the Prometheus text format (what this exporter writes:
/// no timestamps, no escapes in our label values).
fn parse(text: &str) -> Scrape {
    let mut types = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("# TYPE name type");
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty), "bad type in {line:?}");
            assert!(types.insert(name.to_string(), ty.to_string()).is_none(), "family typed twice: {line}");
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let mut labels = BTreeMap::new();
                for pair in body.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).expect("quoted label value");
                    labels.insert(k.to_string(), v.to_string());
                }
                (name.to_string(), labels)
            }
        };
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "bad metric name {name:?}");
        samples.push(Sample { name, labels, value: parse_value(value) });
    }
    Scrape { types, samples }
}

impl Scrape {
    /// The one sample of `name` with exactly these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let found: Vec<&Sample> = self.samples.iter().filter(|s| s.name == name && s.labels == want).collect();
        assert_eq!(found.len(), 1, "{name}{want:?}: {} samples", found.len());
        found[0].value
    }
    fn queue(&self, name: &str, queue: &str) -> f64 {
        self.get(name, &[("queue", queue)])
    }
    /// `(count, sum, cumulative buckets)` of a histogram series.
    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> (f64, f64, Vec<(f64, f64)>) {
        let count = self.get(&format!("{name}_count"), labels);
        let sum = self.get(&format!("{name}_sum"), labels);
        let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter(|s| s.name == format!("{name}_bucket"))
            .filter(|s| {
                let mut l = s.labels.clone();
                l.remove("le");
                l == want
            })
            .map(|s| (parse_value(&s.labels["le"]), s.value))
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        (count, sum, buckets)
    }
    /// The count of the histogram's bucket `le`.
    fn bucket(&self, name: &str, labels: &[(&str, &str)], le: f64) -> f64 {
        let (_, _, buckets) = self.histogram(name, labels);
        buckets.iter().find(|(b, _)| *b == le).unwrap_or_else(|| panic!("no bucket le={le} in {name}")).1
    }

    /// Every sample belongs to a `# TYPE`d family; histograms are real
    /// Prometheus histograms: `_bucket{le}` rising to `+Inf` = `_count`, `_sum`.
    fn check_well_formed(&self) {
        for s in &self.samples {
            let family = match self.types.get(&s.name) {
                Some(_) => s.name.clone(),
                None => {
                    let base = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|suf| s.name.strip_suffix(suf))
                        .unwrap_or_else(|| panic!("{} has no # TYPE", s.name));
                    assert_eq!(self.types.get(base).map(String::as_str), Some("histogram"), "{} has no # TYPE", s.name);
                    base.to_string()
                }
            };
            if self.types[&family] == "counter" {
                assert!(family.ends_with("_total"), "counter {family} does not end in _total");
            }
            assert!(family.starts_with("acd_"), "{family} lacks the acd_ prefix");
        }
        for (family, ty) in &self.types {
            assert_ne!(ty, "summary", "{family} is a summary; histograms must have buckets");
            if ty != "histogram" {
                continue;
            }
            let series: Vec<&Sample> = self.samples.iter().filter(|s| s.name == format!("{family}_count")).collect();
            assert!(!series.is_empty(), "{family} has no _count");
            for c in series {
                let labels: Vec<(&str, &str)> = c.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let (count, sum, buckets) = self.histogram(family, &labels);
                assert!(sum.is_finite() && sum >= 0.0, "{family}_sum {sum}");
                assert!(buckets.len() > 10, "{family}{labels:?} has {} buckets", buckets.len());
                assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{family}{labels:?} buckets not cumulative");
                let last = buckets.last().expect("buckets");
                assert_eq!(*last, (f64::INFINITY, count), "{family}{labels:?}: +Inf bucket is not the count");
            }
        }
    }
}

// ------------------------------------------------------------------- the test

const STATES: [&str; 7] = ["available", "ringing", "on-call", "wrap-up", "paused", "logged-out", "unregistered"];

fn assert_agents(s: &Scrape, queue: &str, want: &[(&str, f64)]) {
    for state in STATES {
        let n = want.iter().find(|(st, _)| *st == state).map_or(0.0, |(_, n)| *n);
        assert_eq!(s.get("acd_queue_agents", &[("queue", queue), ("state", state)]), n, "{queue} agents {state}");
    }
}

/// Metric names in the PromQL of `grafana/acd-dashboard.json`.
fn dashboard_metrics() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/acd-dashboard.json");
    let text = std::fs::read_to_string(path).expect("dashboard is shipped");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut names = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(i) = rest.find("acd_") {
                let tail = &rest[i..];
                let end = tail.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(tail.len());
                names.push(tail[..end].to_string());
                rest = &tail[end..];
            }
        }
    }
    names.sort();
    names.dedup();
    assert!(names.len() > 10, "the dashboard queries {names:?}");
    names
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn a_supervisor_reads_the_wallboard() {
    let recorder = prometheus_builder().build_recorder();
    let handle = recorder.handle();
    let (first, second, net) = metrics::with_local_recorder(&recorder, || {
        let mut net = Net::new(Duration::from_secs(120));
        net.arrive(10, 1, "sales");
        net.answer(14, 1, "anna");
        net.arrive(20, 2, "sales");
        net.busy(21, 2, "ben");
        net.input(25, Input::CallAbandoned { call: CallId(2) });
        net.arrive(30, 3, "sales");
        net.arrive(40, 4, "support");
        net.answer(42, 4, "cleo");
        net.ringing(51, 3, "ben");
        net.advance(66); // ben's ring times out
        net.input(74, Input::CallEnded { call: CallId(1) });
        net.answer(80, 3, "ben");
        net.arrive(95, 5, "support");
        net.input(100, Input::CallEnded { call: CallId(4) });
        net.refresh(105);
        let first = parse(&handle.render());

        net.answer(112, 5, "cleo");
        net.arrive(115, 6, "support");
        net.arrive(120, 7, "vip");
        net.input(140, Input::CallEnded { call: CallId(3) });
        net.answer(178, 6, "anna");
        net.refresh(205);
        let second = parse(&handle.render());
        (first, second, net)
    });

    // ----- at 1:45 -------------------------------------------------------------
    let s = &first;
    s.check_well_formed();
    assert_eq!(s.queue("acd_queue_callers_waiting", "sales"), 0.0);
    assert_eq!(s.queue("acd_queue_callers_waiting", "support"), 1.0, "call 5");
    assert_eq!(s.queue("acd_queue_longest_wait_seconds", "support"), 10.0);
    assert_eq!(s.queue("acd_queue_longest_wait_seconds", "sales"), 0.0);
    assert_agents(s, "sales", &[("available", 1.0), ("on-call", 1.0), ("unregistered", 1.0)]);
    assert_agents(s, "support", &[("wrap-up", 1.0), ("logged-out", 1.0)]);
    assert_agents(s, "vip", &[("logged-out", 1.0)]);
    for (state, n) in
        [("available", 1.0), ("on-call", 1.0), ("wrap-up", 1.0), ("logged-out", 1.0), ("unregistered", 1.0)]
    {
        assert_eq!(s.get("acd_agents", &[("state", state)]), n, "all agents {state}");
    }
    assert_eq!(s.get("acd_agents", &[("state", "ringing")]), 0.0);
    assert_eq!(s.queue("acd_calls_offered_total", "sales"), 3.0);
    assert_eq!(s.queue("acd_calls_answered_total", "sales"), 2.0);
    assert_eq!(s.queue("acd_calls_abandoned_total", "sales"), 1.0);
    assert_eq!(s.queue("acd_calls_offered_total", "support"), 2.0);
    assert_eq!(s.queue("acd_calls_answered_total", "support"), 1.0);
    assert_eq!(s.queue("acd_calls_abandoned_total", "support"), 0.0, "present before the first abandon");
    let rna = |s: &Scrape, q: &str, cause: &str| s.get("acd_ring_no_answer_total", &[("queue", q), ("cause", cause)]);
    assert_eq!(rna(s, "sales", "busy"), 1.0);
    assert_eq!(rna(s, "sales", "no-answer"), 1.0);
    assert_eq!(rna(s, "sales", "declined"), 0.0);
    assert_eq!(rna(s, "support", "no-answer"), 0.0);
    // Window: call 1 answered in 4 s, call 2 abandoned, call 3 answered in 50 s.
    assert!(close(s.queue("acd_queue_service_level_ratio", "sales"), 1.0 / 3.0));
    assert_eq!(s.queue("acd_queue_average_speed_of_answer_seconds", "sales"), 27.0);
    assert!(close(s.queue("acd_queue_abandon_ratio", "sales"), 1.0 / 3.0));
    assert_eq!(s.queue("acd_queue_average_handle_seconds", "sales"), 70.0, "call 1: 60 s talk + 10 s wrap-up");
    assert_eq!(s.queue("acd_queue_service_level_ratio", "support"), 1.0);
    assert_eq!(s.queue("acd_queue_average_speed_of_answer_seconds", "support"), 2.0);
    assert_eq!(s.queue("acd_queue_abandon_ratio", "support"), 0.0);
    assert!(s.queue("acd_queue_average_handle_seconds", "support").is_nan(), "cleo still wraps up call 4");
    assert!(s.queue("acd_queue_service_level_ratio", "vip").is_nan(), "no calls: no service level");
    assert_eq!(s.get("acd_queue_window_calls", &[("queue", "sales"), ("outcome", "answered")]), 2.0);
    assert_eq!(s.get("acd_queue_window_calls", &[("queue", "sales"), ("outcome", "abandoned")]), 1.0);
    assert_eq!(s.get("acd_queue_window_seconds", &[]), 120.0);
    // Histograms: sales waits 4 and 50 s (answered), rings 4, 1, 15 and 4 s.
    let (count, sum, _) = s.histogram("acd_wait_seconds", &[("queue", "sales"), ("outcome", "answered")]);
    assert_eq!((count, sum), (2.0, 54.0));
    assert_eq!(s.bucket("acd_wait_seconds", &[("queue", "sales"), ("outcome", "answered")], 20.0), 1.0);
    let (count, sum, _) = s.histogram("acd_wait_seconds", &[("queue", "sales"), ("outcome", "abandoned")]);
    assert_eq!((count, sum), (1.0, 5.0));
    let (count, sum, _) = s.histogram("acd_ring_seconds", &[("queue", "sales")]);
    assert_eq!((count, sum), (4.0, 24.0));
    assert_eq!(s.bucket("acd_ring_seconds", &[("queue", "sales")], 1.0), 1.0);
    assert_eq!(s.bucket("acd_ring_seconds", &[("queue", "sales")], 5.0), 3.0);
    assert_eq!(s.histogram("acd_talk_seconds", &[("queue", "sales")]).0, 1.0);
    assert_eq!(s.histogram("acd_talk_seconds", &[("queue", "support")]).1, 58.0);
    assert_eq!(s.histogram("acd_wrap_up_seconds", &[("queue", "sales")]).1, 10.0);
    assert!(!s.samples.iter().any(|x| x.name == "acd_wrap_up_seconds_count" && x.labels["queue"] == "support"));

    // ----- at 3:25 -------------------------------------------------------------
    let s = &second;
    s.check_well_formed();
    assert_eq!(s.queue("acd_queue_callers_waiting", "support"), 0.0);
    assert_eq!(s.queue("acd_queue_longest_wait_seconds", "support"), 0.0);
    assert_agents(s, "sales", &[("available", 1.0), ("on-call", 1.0), ("unregistered", 1.0)]);
    assert_agents(s, "support", &[("on-call", 1.0), ("logged-out", 1.0)]);
    assert_eq!(s.queue("acd_calls_offered_total", "sales"), 4.0, "call 6 overflowed in");
    assert_eq!(s.queue("acd_calls_answered_total", "sales"), 3.0);
    assert_eq!(s.queue("acd_calls_offered_total", "support"), 3.0);
    assert_eq!(s.queue("acd_calls_answered_total", "support"), 2.0);
    assert_eq!(s.get("acd_calls_overflowed_total", &[("queue", "support"), ("reason", "max-wait")]), 1.0);
    assert_eq!(s.get("acd_calls_overflowed_total", &[("queue", "sales"), ("reason", "max-wait")]), 0.0);
    assert_eq!(s.get("acd_calls_rejected_total", &[("queue", "vip"), ("status", "480")]), 1.0);
    assert_eq!(s.queue("acd_calls_offered_total", "vip"), 0.0, "refused at the door: not offered");
    // Window (85 s, 205 s]: sales has call 6 answered in 63 s and call 3's
    // handle (60 + 10 s); support call 5 answered in 17 s, call 6
    // overflowed, call 4's handle (58 + 10 s).
    assert_eq!(s.queue("acd_queue_service_level_ratio", "sales"), 0.0);
    assert_eq!(s.queue("acd_queue_average_speed_of_answer_seconds", "sales"), 63.0);
    assert_eq!(s.queue("acd_queue_abandon_ratio", "sales"), 0.0);
    assert_eq!(s.queue("acd_queue_average_handle_seconds", "sales"), 70.0);
    assert_eq!(s.queue("acd_queue_service_level_ratio", "support"), 0.5);
    assert_eq!(s.queue("acd_queue_average_speed_of_answer_seconds", "support"), 17.0);
    assert_eq!(s.queue("acd_queue_abandon_ratio", "support"), 0.0);
    assert_eq!(s.queue("acd_queue_average_handle_seconds", "support"), 68.0);
    assert_eq!(s.get("acd_queue_window_calls", &[("queue", "support"), ("outcome", "overflowed")]), 1.0);
    assert!(s.queue("acd_queue_service_level_ratio", "vip").is_nan(), "a door refusal is not offered");
    let (count, sum, _) = s.histogram("acd_wait_seconds", &[("queue", "sales"), ("outcome", "answered")]);
    assert_eq!((count, sum), (3.0, 117.0), "histograms are cumulative, not windowed");
    assert_eq!(s.histogram("acd_wait_seconds", &[("queue", "support"), ("outcome", "overflowed")]).1, 60.0);
    assert_eq!(
        s.histogram("acd_wrap_up_seconds", &[("queue", "support")]),
        (1.0, 10.0, s.histogram("acd_wrap_up_seconds", &[("queue", "support")]).2)
    );

    // The bookkeeping holds only the calls still in the engine (5 and 6),
    // and the handle times of agents still on a call are not open yet.
    assert_eq!(net.metrics.tracked_calls(), net.engine.call_count());
    assert_eq!(net.metrics.tracked_calls(), 2);
    assert_eq!(net.metrics.open_handle_times(), 0);
    let live = net.metrics.queue_figures("support").expect("support is known");
    assert_eq!((live.offered, live.answered, live.overflowed, live.service_level), (2, 1, 1, Some(0.5)));

    // Every metric the shipped Grafana dashboard queries is exported.
    for name in dashboard_metrics() {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suf| name.strip_suffix(suf).filter(|base| s.types.get(*base).is_some_and(|t| t == "histogram")))
            .unwrap_or(&name);
        assert!(s.types.contains_key(family), "the dashboard queries {name}, which acd does not export");
    }

    // Help texts are there for every family.
    let text = handle.render();
    for family in ["acd_queue_callers_waiting", "acd_wait_seconds", "acd_calls_answered_total"] {
        assert!(text.contains(&format!("# HELP {family} ")), "no help for {family}");
    }
}

/// The real exporter: a port in use is reported, and once installed it
/// serves the exposition over HTTP with the histograms as real histograms.
/// (It installs the process-wide recorder; the other test uses a local one.)
#[test]
fn exporter_serves_the_scrape_over_http() {
    use acd::ops::metrics::{install_exporter, ExporterError};
    use std::io::{Read, Write};

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let busy = taken.local_addr().expect("bound");
    let free = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("bound")
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let first = install_exporter(busy);
            let second = install_exporter(free);
            tx.send((first, second)).expect("test waits");
            std::future::pending::<()>().await
        })
    });
    let (first, second) = rx.recv().expect("exporter thread answers");
    assert!(matches!(first, Err(ExporterError::Listen { listen, .. }) if listen == busy), "{first:?}");
    second.expect("exporter starts on a free port");
    drop(taken);

    // A call answered after 4 s, on the process-wide recorder.
    let mut net = Net::new(Duration::from_secs(900));
    net.arrive(10, 1, "sales");
    net.answer(14, 1, "anna");
    net.refresh(15);

    let mut conn = std::net::TcpStream::connect(free).expect("exporter listens");
    conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: acd\r\nConnection: close\r\n\r\n").expect("request");
    let mut reply = String::new();
    conn.read_to_string(&mut reply).expect("reply");
    let (head, body) = reply.split_once("\r\n\r\n").expect("HTTP reply");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let s = parse(body);
    s.check_well_formed();
    assert_eq!(s.types.get("acd_wait_seconds").map(String::as_str), Some("histogram"));
    assert_eq!(s.bucket("acd_wait_seconds", &[("queue", "sales"), ("outcome", "answered")], 5.0), 1.0);
    assert_eq!(s.queue("acd_calls_answered_total", "sales"), 1.0);
    assert_eq!(s.queue("acd_queue_average_speed_of_answer_seconds", "sales"), 4.0);
    assert!(body.contains("# HELP acd_queue_service_level_ratio "), "help texts registered by install_exporter");
}
