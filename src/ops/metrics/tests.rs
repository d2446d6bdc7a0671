use super::*;
use crate::config::from_toml_str;
use crate::engine::{Candidate, Decision, Input, NewCall};

const TOML: &str = r#"
[[queue]]
name = "sales"
strategy = "linear"
service_level_secs = 20
wrap_up_secs = 10
members = [{ agent = "anna" }, { agent = "ben" }]

[[queue]]
name = "support"
members = [{ agent = "ben" }]

[[agent]]
id = "anna"

[[agent]]
id = "ben"
"#;

fn setup(window_secs: u64) -> (Config, Engine, Metrics) {
    let cfg = from_toml_str("test.toml", TOML).expect("test config is valid");
    let engine = Engine::new(&cfg, Time::ZERO);
    let m = Metrics::new(&cfg, Duration::from_secs(window_secs));
    (cfg, engine, m)
}

fn t(s: u64) -> Time {
    Time::from_secs(s)
}

#[test]
fn window_slides_and_forgets() {
    let mut q = QueueMetrics::new("q", Duration::from_secs(20), vec![], Duration::from_secs(60));
    assert_eq!(q.slot(), Duration::from_secs(1));
    q.answered(t(10), Duration::from_secs(5));
    q.answered(t(20), Duration::from_secs(30));
    q.tally(t(30), |f| f.abandoned += 1);
    q.handled(t(40), Duration::from_secs(100));
    let f = q.figures(t(45));
    assert_eq!(f.offered(), 3);
    assert_eq!(f.service_level(), Some(1.0 / 3.0));
    assert_eq!(f.average_speed_of_answer_secs(), Some(17.5));
    assert_eq!(f.abandon_ratio(), Some(1.0 / 3.0));
    assert_eq!(f.average_handle_secs(), Some(100.0));
    // At 70.5 the window starts at 10.5: the 10 s slot [10, 11) is still
    // partly inside; at 71 it is out.
    assert_eq!(q.figures(Time(70_500)).answered, 2);
    let f = q.figures(t(71));
    assert_eq!((f.answered, f.answered_within_sl, f.abandoned), (1, 0, 1));
    assert_eq!(f.service_level(), Some(0.0));
    q.prune(t(100));
    assert_eq!(q.slots.len(), 1, "only the handle time at 40 is left");
    let f = q.figures(t(100));
    assert_eq!(f.offered(), 0);
    assert_eq!(f.service_level(), None);
    assert_eq!(f.average_speed_of_answer_secs(), None);
    assert_eq!(f.abandon_ratio(), None);
    assert_eq!(f.average_handle_secs(), Some(100.0));
    assert_eq!(q.figures(t(101)), WindowFigures::default());
}

#[test]
fn window_memory_does_not_grow_with_traffic() {
    let mut q = QueueMetrics::new("q", Duration::from_secs(20), vec![], Duration::from_secs(900));
    assert_eq!(q.slot(), Duration::from_secs(3));
    // 100 answers a second for an hour.
    for ms in (0..3_600_000u64).step_by(10) {
        q.answered(Time(ms), Duration::from_millis(ms % 40_000));
    }
    assert!(q.slots.len() <= 301, "{} slots", q.slots.len());
    let f = q.figures(Time(3_600_000));
    // The window is 900 s to within a slot: slots from 2700 s on.
    assert_eq!(f.answered, 90_000);
    let within = (2_700_000..3_600_000u64).step_by(10).filter(|ms| ms % 40_000 <= 20_000).count();
    assert_eq!(f.answered_within_sl as usize, within);
    assert_eq!(f.service_level(), Some(within as f64 / 90_000.0));
}

#[test]
fn a_late_entry_lands_in_its_own_slot() {
    let mut q = QueueMetrics::new("q", Duration::from_secs(20), vec![], Duration::from_secs(60));
    q.answered(t(30), Duration::from_secs(1));
    q.answered(t(10), Duration::from_secs(1));
    q.answered(t(20), Duration::from_secs(1));
    let idx: Vec<u64> = q.slots.iter().map(|(i, _)| *i).collect();
    assert_eq!(idx, vec![10, 20, 30]);
    assert_eq!(q.figures(t(75)).answered, 2);
    assert_eq!(q.figures(t(85)).answered, 1);
    // Older than the window when it comes: kept no longer than that.
    q.answered(t(100), Duration::from_secs(1));
    q.answered(t(5), Duration::from_secs(1));
    let idx: Vec<u64> = q.slots.iter().map(|(i, _)| *i).collect();
    assert_eq!(idx, vec![100]);
}

fn offered(engine: &Engine, call: u64, queue: &str, agent: &str) -> Event {
    Event::Offered {
        call: CallId(call),
        queue: engine.queue_id(queue).unwrap(),
        decision: Decision {
            strategy: crate::config::Strategy::Linear,
            candidates: vec![Candidate { agent: engine.agent_id(agent).unwrap(), skipped: None }],
            omitted: 0,
        },
    }
}

/// Hand-made events on a virtual clock: per-call records come and go
/// with the call, the handle time closes with the wrap-up.
#[test]
fn bookkeeping_follows_a_call_and_forgets_it() {
    let (_, engine, mut m) = setup(300);
    let sales = engine.queue_id("sales").unwrap();
    let anna = engine.agent_id("anna").unwrap();
    let c = CallId(1);
    let ev = |m: &mut Metrics, s: u64, e: Event| m.observe(t(s), &engine, &e);
    ev(&mut m, 0, Event::CallArrived { call: c, queue: sales, caller: "+1".into(), priority: 0, attributes: vec![] });
    ev(&mut m, 0, Event::CallQueued { call: c, queue: sales, priority: 0, position: 1 });
    assert_eq!(m.tracked_calls(), 1);
    ev(&mut m, 1, offered(&engine, 1, "sales", "anna"));
    assert_eq!(m.calls[&c].rings.len(), 1);
    ev(&mut m, 25, Event::Answered { call: c, queue: sales, agent: anna, waited: Duration::from_secs(25) });
    assert!(m.calls[&c].rings.is_empty(), "the ring ended with the answer");
    assert_eq!(m.calls[&c].joined, None, "the outcome is counted once");
    let f = m.figures(t(25), "sales").unwrap();
    assert_eq!((f.answered, f.answered_within_sl, f.answered_wait_ms), (1, 0, 25_000));
    ev(
        &mut m,
        85,
        Event::CallFinished {
            call: c,
            queue: sales,
            outcome: Outcome::Answered { agent: anna },
            waited: Duration::from_secs(25),
        },
    );
    assert_eq!(m.tracked_calls(), 0, "forgotten when the call finishes");
    assert_eq!(m.open_handle_times(), 1);
    ev(&mut m, 85, Event::AgentStateChanged { agent: anna, from: "on-call", to: "wrap-up", reason: String::new() });
    assert_eq!(m.figures(t(90), "sales").unwrap().handled, 0, "not handled until the wrap-up ends");
    ev(&mut m, 97, Event::AgentStateChanged { agent: anna, from: "wrap-up", to: "available", reason: String::new() });
    assert_eq!(m.open_handle_times(), 0);
    let f = m.figures(t(100), "sales").unwrap();
    assert_eq!((f.handled, f.handle_ms), (1, 72_000), "60 s talk + 12 s wrap-up");
    assert_eq!(f.offered(), 1);
}

#[test]
fn outcomes_are_counted_once_per_queue_visit() {
    let (_, engine, mut m) = setup(300);
    let sales = engine.queue_id("sales").unwrap();
    let support = engine.queue_id("support").unwrap();
    let ev = |m: &mut Metrics, s: u64, e: Event| m.observe(t(s), &engine, &e);
    // Call 1: sales, overflows to a reject target at 30 (one window
    // entry: overflowed), then is rejected (a counter only).
    let c = CallId(1);
    ev(&mut m, 0, Event::CallArrived { call: c, queue: sales, caller: "+1".into(), priority: 0, attributes: vec![] });
    ev(&mut m, 0, Event::CallQueued { call: c, queue: sales, priority: 0, position: 1 });
    ev(
        &mut m,
        30,
        Event::Overflowed { call: c, from: sales, to: "reject:486".into(), reason: OverflowReason::MaxWait },
    );
    ev(
        &mut m,
        30,
        Event::CallFinished {
            call: c,
            queue: sales,
            outcome: Outcome::Rejected { status: 486 },
            waited: Duration::from_secs(30),
        },
    );
    // Call 2: refused at support's door (never joined): no window entry.
    let c = CallId(2);
    ev(
        &mut m,
        40,
        Event::CallArrived { call: c, queue: support, caller: "+2".into(), priority: 0, attributes: vec![] },
    );
    ev(
        &mut m,
        40,
        Event::CallFinished {
            call: c,
            queue: support,
            outcome: Outcome::Rejected { status: 480 },
            waited: Duration::ZERO,
        },
    );
    // Call 3: support, moved to sales by an admin, abandons there.
    let c = CallId(3);
    ev(
        &mut m,
        50,
        Event::CallArrived { call: c, queue: support, caller: "+3".into(), priority: 0, attributes: vec![] },
    );
    ev(&mut m, 50, Event::CallQueued { call: c, queue: support, priority: 0, position: 1 });
    ev(&mut m, 55, Event::CallMoved { call: c, from: support, to: sales });
    ev(&mut m, 55, Event::CallQueued { call: c, queue: sales, priority: 0, position: 1 });
    ev(
        &mut m,
        70,
        Event::CallFinished { call: c, queue: sales, outcome: Outcome::Abandoned, waited: Duration::from_secs(20) },
    );
    let s = m.figures(t(80), "sales").unwrap();
    assert_eq!((s.overflowed, s.rejected, s.abandoned, s.offered()), (1, 0, 1, 2));
    assert_eq!(s.abandon_ratio(), Some(0.5));
    assert_eq!(s.service_level(), Some(0.0));
    assert_eq!(m.figures(t(80), "support").unwrap(), WindowFigures::default());
    assert_eq!(m.tracked_calls(), 0);
}

#[test]
fn reload_adds_and_drops_queues() {
    let (_, _, mut m) = setup(300);
    let new = from_toml_str(
        "new.toml",
        r#"
[[queue]]
name = "sales"
service_level_secs = 30
members = [{ agent = "anna" }]

[[queue]]
name = "billing"
members = [{ agent = "anna" }]

[[agent]]
id = "anna"
"#,
    )
    .unwrap();
    m.reload(&new);
    let names: Vec<&str> = m.queues.values().map(|q| q.name()).collect();
    assert_eq!(names, vec!["billing", "sales"]);
    assert_eq!(m.queue("sales").unwrap().service_level_threshold(), Duration::from_secs(30));
    assert_eq!(m.queue("sales").unwrap().members(), ["anna".to_string()]);
}

/// Agents by state: every state is present, an available agent whose
/// phone is not registered is `unregistered`.
#[test]
fn agent_state_labels() {
    let (_, mut engine, _) = setup(300);
    let anna = engine.agent_id("anna").unwrap();
    let ben = engine.agent_id("ben").unwrap();
    assert_eq!(agent_state_label(&engine, anna), "unregistered");
    engine.handle(t(0), Input::AgentRegistered { agent: anna }).unwrap();
    assert_eq!(agent_state_label(&engine, anna), "available");
    engine.handle(t(0), Input::AgentLogout { agent: ben }).unwrap();
    assert_eq!(agent_state_label(&engine, ben), "logged-out");
    let sales = engine.queue_id("sales").unwrap();
    let nc =
        NewCall { id: CallId(1), queue: sales, caller: "+1".into(), priority: 0, skills: vec![], attributes: vec![] };
    engine.handle(t(1), Input::CallArrived(nc)).unwrap();
    assert_eq!(agent_state_label(&engine, anna), "ringing");
    for s in ["available", "ringing", "on-call", "wrap-up", "paused", "logged-out"] {
        assert!(AGENT_STATES.contains(&s));
    }
}
