//! A closed queue's `closed_prompt` through [`Core`], on the virtual clock:
//! early media, the prompt, then the final status (callctl/early.rs).

use super::super::{Command, Core, IncomingCall, SipEvent};
use crate::config::{from_toml_str, Config};
use crate::engine::{Input, Time};

/// Fri 2026-10-23 07:00 in Helsinki: the office opens at 08:00.
const T0_UNIX_MS: i64 = 1_792_728_000_000;

fn config(prompt_ms: Option<u32>) -> Config {
    let text = r#"
[schedule.office]
time_zone = "Europe/Helsinki"
hours = ["mon-fri 08:00-18:00"]
[[agent]]
id = "anna"
[[queue]]
name = "sales"
members = [{ agent = "anna" }]
schedule = "office"
when_closed = "reject:486"
[[number]]
number = "1000"
queue = "sales"
"#;
    let mut cfg = from_toml_str("t.toml", text).unwrap();
    if let Some(ms) = prompt_ms {
        cfg.queues[0].closed_prompt = Some("/s/closed.wav".into());
        cfg.queues[0].closed_prompt_ms = ms;
    }
    cfg
}

fn commands(c: &mut Core) -> Vec<Command> {
    std::iter::from_fn(|| c.poll_command()).collect()
}

fn core(cfg: &Config) -> Core {
    let mut c = Core::new(cfg, Time::ZERO);
    c.set_wall_clock(T0_UNIX_MS);
    let anna = c.engine().agent_id("anna").unwrap();
    c.handle_engine(Time::ZERO, Input::AgentRegistered { agent: anna }).unwrap();
    commands(&mut c);
    c
}

fn incoming() -> IncomingCall {
    IncomingCall { dialled: "1000".into(), caller: "+35840123".into(), ..Default::default() }
}

#[test]
fn a_caller_of_a_closed_queue_hears_the_prompt_as_early_media_then_gets_the_final_status() {
    let mut c = core(&config(Some(3000)));
    let (call, leg) = c.incoming_call(Time::from_secs(60), incoming()).unwrap();
    assert_eq!(
        commands(&mut c),
        vec![
            Command::EarlyMedia { call, leg, music: Some("default".into()) },
            Command::PlayFile { call, leg, file: "/s/closed.wav".into() },
        ],
        "a 183 with the prompt, no 200"
    );
    c.handle_timeout(Time::from_millis(62_999));
    assert_eq!(commands(&mut c), vec![]);
    c.handle_timeout(Time::from_secs(63));
    assert_eq!(
        commands(&mut c),
        vec![Command::StopHold { call, leg }, Command::RejectCaller { call, leg, status: 486, retry_after: None },]
    );
    assert!(c.engine().call(call).is_none());
    assert_eq!(c.errors().total(), 0, "{:?}", c.errors());
}

#[test]
fn a_caller_cancelling_during_the_prompt_ends_it_and_nothing_is_sent_after() {
    let mut c = core(&config(Some(3000)));
    let (call, leg) = c.incoming_call(Time::from_secs(60), incoming()).unwrap();
    commands(&mut c);
    c.handle_sip(Time::from_secs(61), SipEvent::CallerCancelled { leg });
    let cmds = commands(&mut c);
    assert!(!cmds.iter().any(|x| matches!(x, Command::RejectCaller { .. } | Command::AnswerCaller { .. })), "{cmds:?}");
    assert!(c.engine().call(call).is_none());
    c.handle_timeout(Time::from_secs(63));
    assert_eq!(commands(&mut c), vec![]);
    assert_eq!(c.errors().total(), 0, "{:?}", c.errors());
}

#[test]
fn without_a_prompt_the_closed_caller_is_rejected_at_once() {
    let mut c = core(&config(None));
    let (call, leg) = c.incoming_call(Time::from_secs(60), incoming()).unwrap();
    assert_eq!(commands(&mut c), vec![Command::RejectCaller { call, leg, status: 486, retry_after: None }]);
}

#[test]
fn an_answered_caller_sent_on_at_closing_hears_the_prompt_over_its_music_and_is_hung_up() {
    let mut cfg = config(Some(2000));
    cfg.queues[0].at_close = crate::config::AtClose::Send;
    let mut c = core(&cfg);
    let anna = c.engine().agent_id("anna").unwrap();
    c.handle_engine(Time::from_secs(3600), Input::AgentPause { agent: anna, reason: "lunch".into() }).unwrap();
    let (call, leg) = c.incoming_call(Time::from_secs(3700), incoming()).unwrap();
    assert_eq!(
        commands(&mut c),
        vec![Command::AnswerCaller { call, leg }, Command::Hold { call, leg, music: "default".into() }]
    );
    // 18:00 closes: the prompt over the music, no second answer, no 183.
    let close = 3600 + 10 * 3600;
    c.handle_timeout(Time::from_secs(close));
    assert_eq!(commands(&mut c), vec![Command::PlayFile { call, leg, file: "/s/closed.wav".into() }]);
    c.handle_timeout(Time::from_secs(close + 2));
    let cmds = commands(&mut c);
    assert!(cmds.contains(&Command::StopHold { call, leg }), "{cmds:?}");
    assert!(cmds.iter().any(|x| matches!(x, Command::Bye { leg: l, .. } if *l == leg)), "{cmds:?}");
    assert!(c.engine().call(call).is_none());
    assert_eq!(c.errors().total(), 0, "{:?}", c.errors());
}
