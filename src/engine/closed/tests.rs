//! The closed queue's prompt on the virtual clock. Engine time 0 is Fri
//! 2026-10-23 07:00 in Helsinki (04:00Z): the office is closed until 08:00.
use crate::config::{from_toml_str, Config, OverflowTarget};
use crate::engine::*;

const T0_UNIX_MS: i64 = 1_792_728_000_000;

fn config(when_closed: &str, prompt_ms: Option<u32>) -> Config {
    let toml = format!(
        r#"
[schedule.office]
time_zone = "Europe/Helsinki"
hours = ["mon-fri 08:00-17:00"]

[[agent]]
id = "anna"

[[agent]]
id = "nick"

[[queue]]
name = "front"
members = [{{ agent = "anna" }}]
schedule = "office"
when_closed = "{when_closed}"

[[queue]]
name = "night"
members = [{{ agent = "nick" }}]
"#
    );
    let mut cfg = from_toml_str("t.toml", &toml).unwrap_or_else(|e| panic!("{e}"));
    if let Some(ms) = prompt_ms {
        // As the config load leaves it once the file is read and measured.
        let q = cfg.queues.iter_mut().find(|q| q.name == "front").unwrap();
        q.closed_prompt = Some("/sounds/closed.wav".into());
        q.closed_prompt_ms = ms;
    }
    cfg
}

struct W {
    e: Engine,
    actions: Vec<Action>,
    events: Vec<Event>,
}

impl W {
    fn new(cfg: &Config) -> W {
        let mut w = W { e: Engine::new(cfg, Time::ZERO), actions: vec![], events: vec![] };
        w.e.set_wall_clock(T0_UNIX_MS);
        for a in ["anna", "nick"] {
            let agent = w.e.agent_id(a).unwrap();
            w.input_ms(0, Input::AgentRegistered { agent });
        }
        w.actions.clear();
        w.events.clear();
        w
    }
    fn input_ms(&mut self, ms: u64, i: Input) {
        self.e.handle(Time(ms), i).unwrap();
        self.pump();
    }
    fn at_ms(&mut self, ms: u64) {
        self.e.handle_timeout(Time(ms)).unwrap();
        self.pump();
    }
    fn pump(&mut self) {
        self.actions.extend(std::iter::from_fn(|| self.e.poll_action()));
        self.events.extend(std::iter::from_fn(|| self.e.poll_event()));
    }
    fn call(&mut self, ms: u64, id: u64) {
        let queue = self.e.queue_id("front").unwrap();
        let nc = NewCall {
            id: CallId(id),
            queue,
            caller: format!("+35840{id}"),
            priority: 0,
            skills: vec![],
            attributes: vec![],
        };
        self.input_ms(ms, Input::CallArrived(nc));
    }
    fn finished(&self, id: u64) -> Option<Outcome> {
        self.events.iter().find_map(|e| match e {
            Event::CallFinished { call, outcome, .. } if call.0 == id => Some(outcome.clone()),
            _ => None,
        })
    }
    fn overflowed_closed(&self, id: u64) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, Event::Overflowed { call, reason: OverflowReason::Closed, .. } if call.0 == id))
    }
}

fn prompt(id: u64) -> Action {
    Action::ClosedPrompt { call: CallId(id), file: "/sounds/closed.wav".into() }
}

#[test]
fn the_prompt_plays_for_its_length_then_the_final_status_is_sent() {
    let mut w = W::new(&config("reject:486", Some(2500)));
    w.call(600_000, 1);
    assert_eq!(w.actions, vec![prompt(1)], "only the prompt at first");
    assert!(w.overflowed_closed(1), "{:?}", w.events);
    assert_eq!(w.finished(1), None);
    w.at_ms(600_000 + 2499);
    assert_eq!(w.actions, vec![prompt(1)], "not before the prompt is over");
    assert_eq!(w.e.poll_timeout(), Some(Time(602_500)));
    w.at_ms(602_500);
    assert_eq!(
        w.actions,
        vec![prompt(1), Action::StopHold { call: CallId(1) }, Action::Reject { call: CallId(1), status: 486 }]
    );
    assert_eq!(w.finished(1), Some(Outcome::Rejected { status: 486 }));
    assert!(w.e.call(CallId(1)).is_none());
}

#[test]
fn a_caller_hanging_up_during_the_prompt_is_counted_as_the_reject_and_nothing_follows() {
    let mut w = W::new(&config("reject:480", Some(4000)));
    w.call(1000, 1);
    w.input_ms(2000, Input::CallAbandoned { call: CallId(1) });
    assert_eq!(w.finished(1), Some(Outcome::Rejected { status: 480 }));
    assert!(w.e.call(CallId(1)).is_none());
    w.actions.clear();
    w.at_ms(5000);
    w.at_ms(60_000);
    assert!(w.actions.iter().all(|a| !matches!(a, Action::Reject { .. })), "{:?}", w.actions);
    assert_eq!(w.events.iter().filter(|e| matches!(e, Event::CallFinished { .. })).count(), 1);
}

#[test]
fn without_a_prompt_the_reject_is_immediate_as_before() {
    let mut w = W::new(&config("reject:486", None));
    w.call(600_000, 1);
    assert_eq!(w.actions, vec![Action::Reject { call: CallId(1), status: 486 }]);
    assert_eq!(w.finished(1), Some(Outcome::Rejected { status: 486 }));
    assert_eq!(w.e.poll_timeout().filter(|t| *t < Time::from_secs(3600)), None, "no prompt timer");
}

#[test]
fn after_the_prompt_the_caller_goes_to_the_target_queue_and_rings_its_agent() {
    let mut w = W::new(&config("queue:night", Some(1500)));
    w.call(0, 1);
    assert_eq!(w.actions, vec![prompt(1)]);
    assert!(!w.actions.iter().any(|a| matches!(a, Action::Ring { .. })));
    w.at_ms(1500);
    let nick = w.e.agent_id("nick").unwrap();
    assert!(w.actions.iter().any(|a| matches!(a, Action::Ring { call: CallId(1), agent, .. } if *agent == nick)));
    assert_eq!(w.e.call(CallId(1)).map(|c| c.queue), w.e.queue_id("night"));
    // Hanging up once in the night queue is an ordinary abandon.
    w.input_ms(3000, Input::CallAbandoned { call: CallId(1) });
    assert_eq!(w.finished(1), Some(Outcome::Abandoned));
}

#[test]
fn after_the_prompt_a_uri_target_is_transferred_and_a_hang_up_before_it_is_an_abandon() {
    let mut cfg = config("reject:480", Some(1000));
    cfg.queues.iter_mut().find(|q| q.name == "front").unwrap().when_closed =
        OverflowTarget::Uri("sip:night@example.com".into());
    let mut w = W::new(&cfg);
    w.call(0, 1);
    w.at_ms(1000);
    assert!(w.actions.contains(&Action::Transfer { call: CallId(1), uri: "sip:night@example.com".into() }));
    assert_eq!(w.finished(1), Some(Outcome::Overflowed { uri: "sip:night@example.com".into() }));
    w.call(5000, 2);
    w.input_ms(5500, Input::CallAbandoned { call: CallId(2) });
    assert_eq!(w.finished(2), Some(Outcome::Abandoned));
}

#[test]
fn a_caller_sent_on_at_closing_hears_the_prompt_over_its_music_then_the_reject() {
    let mut cfg = config("reject:480", Some(2000));
    let front = cfg.queues.iter_mut().find(|q| q.name == "front").unwrap();
    front.at_close = crate::config::AtClose::Send;
    let mut w = W::new(&cfg);
    let anna = w.e.agent_id("anna").unwrap();
    // 08:00 open; anna takes caller 1, caller 2 waits; 17:00 closes.
    let (open, close) = (3_600_000, 10 * 3_600_000);
    w.at_ms(open);
    w.call(open, 1);
    w.input_ms(open + 1000, Input::OfferAnswered { call: CallId(1), agent: anna });
    w.call(close - 60_000, 2);
    assert!(w.actions.contains(&Action::StartHold {
        call: CallId(2),
        queue: w.e.queue_id("front").unwrap(),
        music: "default".into()
    }));
    w.actions.clear();
    w.at_ms(close);
    assert_eq!(w.actions, vec![prompt(2)], "no StopHold: the prompt plays over the music");
    assert!(w.overflowed_closed(2));
    assert!(w.e.waiting(w.e.queue_id("front").unwrap()).is_empty(), "out of the line while it plays");
    w.at_ms(close + 2000);
    assert_eq!(w.actions[1..], [Action::StopHold { call: CallId(2) }, Action::Reject { call: CallId(2), status: 480 }]);
    assert_eq!(w.finished(2), Some(Outcome::Rejected { status: 480 }));
    assert_eq!(w.finished(1), None, "the bridged call is not touched");
}
