//! Callback legs through [`Core`], on the virtual clock.

use super::super::{Command, Core, IncomingCall, LegId, SipEvent, Target};
use crate::config::{from_toml_str, CallbackConfig, Config, RINGBACK};
use crate::engine::{CallId, Input, Time};

const CONFIG: &str = r#"
[[agent]]
id = "anna"
[[queue]]
name = "sales"
members = [{ agent = "anna" }]
[[number]]
number = "1000"
queue = "sales"
"#;

fn config(max_attempts: u32, retry: u32) -> Config {
    let mut cfg = from_toml_str("t.toml", CONFIG).unwrap();
    cfg.queues[0].keypad.callback = Some(CallbackConfig {
        key: Some('*'),
        offer_after_secs: 0,
        trunk: "127.0.0.1:5099".into(),
        initial_delay_secs: 0,
        max_attempts,
        retry_delay_secs: retry,
        whisper: None,
        whisper_ms: 0,
    });
    cfg
}

fn commands(c: &mut Core) -> Vec<Command> {
    std::iter::from_fn(|| c.poll_command()).collect()
}

fn invite_to(cmds: &[Command], want: &Target) -> Option<LegId> {
    cmds.iter().find_map(|x| match x {
        Command::Invite { leg, target, caller, .. } if target == want && caller == "+35840123" => Some(*leg),
        _ => None,
    })
}

/// A caller waiting in "sales" while anna is paused, who presses '*';
/// then anna comes back and is rung. Returns (core, call, anna's leg).
fn requested(max_attempts: u32, retry: u32) -> (Core, CallId, LegId) {
    let mut c = Core::new(&config(max_attempts, retry), Time::ZERO);
    let anna = c.engine().agent_id("anna").unwrap();
    c.handle_engine(Time::ZERO, Input::AgentRegistered { agent: anna }).unwrap();
    c.handle_engine(Time::ZERO, Input::AgentPause { agent: anna, reason: "x".into() }).unwrap();
    let inc = IncomingCall { dialled: "1000".into(), caller: "+35840123".into(), ..Default::default() };
    let (call, leg) = c.incoming_call(Time::ZERO, inc).unwrap();
    commands(&mut c);
    c.caller_digit(Time::from_secs(5), leg, '*');
    let cmds = commands(&mut c);
    assert_eq!(cmds, vec![Command::ConfirmCallback { call, leg, closed: false }]);
    // The caller leg is not the core's any more: its BYE changes nothing.
    c.handle_sip(Time::from_secs(7), SipEvent::CallerHungUp { leg });
    assert_eq!(commands(&mut c), vec![]);
    assert!(c.engine().is_callback(call));
    c.handle_engine(Time::from_secs(10), Input::AgentReady { agent: anna }).unwrap();
    let agent_leg = invite_to(&commands(&mut c), &Target::Agent(anna)).expect("anna rung for the callback");
    (c, call, agent_leg)
}

#[test]
fn the_agent_answers_hears_ringback_the_customer_is_dialled_and_bridged() {
    let (mut c, call, agent_leg) = requested(3, 60);
    c.handle_sip(Time::from_secs(11), SipEvent::Progress { leg: agent_leg, status: 180 });
    c.handle_sip(Time::from_secs(12), SipEvent::Answered { leg: agent_leg });
    let cmds = commands(&mut c);
    assert!(cmds.contains(&Command::Hold { call, leg: agent_leg, music: RINGBACK.into() }), "{cmds:?}");
    let customer =
        invite_to(&cmds, &Target::Uri("sip:+35840123@127.0.0.1:5099".into())).expect("the customer is dialled");
    c.handle_sip(Time::from_secs(13), SipEvent::Progress { leg: customer, status: 180 });
    assert_eq!(commands(&mut c), vec![]);
    c.handle_sip(Time::from_secs(15), SipEvent::Answered { leg: customer });
    assert_eq!(
        commands(&mut c),
        vec![Command::StopHold { call, leg: agent_leg }, Command::Bridge { call, caller: customer, other: agent_leg }]
    );
    assert!(!c.engine().is_callback(call));
    // An ordinary call now: the customer's BYE ends it and BYEs the agent.
    c.handle_sip(Time::from_secs(60), SipEvent::RemoteBye { leg: customer });
    assert_eq!(commands(&mut c), vec![Command::Bye { call, leg: agent_leg }]);
    assert_eq!(c.call_count(), 0);
    assert_eq!(c.errors().total(), 0, "{:?}", c.errors());
}

#[test]
fn a_busy_customer_releases_the_agent_and_the_retry_rings_again_then_it_is_given_up() {
    let (mut c, call, agent_leg) = requested(2, 30);
    let anna = c.engine().agent_id("anna").unwrap();
    c.handle_sip(Time::from_secs(12), SipEvent::Answered { leg: agent_leg });
    let cmds = commands(&mut c);
    let customer = invite_to(&cmds, &Target::Uri("sip:+35840123@127.0.0.1:5099".into())).unwrap();
    c.handle_sip(Time::from_secs(14), SipEvent::Failed { leg: customer, status: Some(486) });
    assert_eq!(commands(&mut c), vec![Command::Bye { call, leg: agent_leg }]);
    assert_eq!(c.engine().agent_state(anna).unwrap().name(), "available");
    assert_eq!(c.call_count(), 1, "the callback is kept");
    // Not rung again before the retry delay.
    c.handle_timeout(Time::from_secs(43));
    assert_eq!(commands(&mut c), vec![]);
    c.handle_timeout(Time::from_secs(44));
    let agent_leg = invite_to(&commands(&mut c), &Target::Agent(anna)).expect("rung again at 14 + 30 s");
    c.handle_sip(Time::from_secs(45), SipEvent::Answered { leg: agent_leg });
    let customer = invite_to(&commands(&mut c), &Target::Uri("sip:+35840123@127.0.0.1:5099".into())).unwrap();
    c.handle_sip(Time::from_secs(75), SipEvent::Failed { leg: customer, status: Some(480) });
    assert_eq!(commands(&mut c), vec![Command::Bye { call, leg: agent_leg }]);
    assert_eq!(c.call_count(), 0, "given up after 2 attempts");
    assert_eq!(c.engine().call(call), None);
    assert_eq!(c.errors().total(), 0, "{:?}", c.errors());
}

#[test]
fn the_agent_hanging_up_while_the_customer_rings_cancels_the_customer() {
    let (mut c, call, agent_leg) = requested(3, 30);
    c.handle_sip(Time::from_secs(12), SipEvent::Answered { leg: agent_leg });
    let customer = invite_to(&commands(&mut c), &Target::Uri("sip:+35840123@127.0.0.1:5099".into())).unwrap();
    c.handle_sip(Time::from_secs(13), SipEvent::RemoteBye { leg: agent_leg });
    let cmds = commands(&mut c);
    assert!(cmds.contains(&Command::Cancel { call, leg: customer }), "{cmds:?}");
    assert!(c.engine().is_callback(call), "kept for a retry");
    // The customer's 487 ends the orphan quietly.
    c.handle_sip(Time::from_secs(13), SipEvent::Failed { leg: customer, status: Some(487) });
    assert_eq!(c.errors().total(), 0, "{:?}", c.errors());
}

#[test]
fn shutdown_while_the_customer_rings_cancels_it_and_byes_only_the_agent() {
    let (mut c, call, agent_leg) = requested(3, 30);
    c.handle_sip(Time::from_secs(12), SipEvent::Answered { leg: agent_leg });
    let customer = invite_to(&commands(&mut c), &Target::Uri("sip:+35840123@127.0.0.1:5099".into())).unwrap();
    c.drain(Time::from_secs(13));
    assert_eq!(commands(&mut c), vec![], "a callback being dialled carries on through the drain");
    c.hang_up_all(Time::from_secs(20));
    let cmds = commands(&mut c);
    assert!(cmds.contains(&Command::Cancel { call, leg: customer }), "{cmds:?}");
    assert!(cmds.contains(&Command::Bye { call, leg: agent_leg }), "{cmds:?}");
    assert_eq!(
        cmds.iter().filter(|x| matches!(x, Command::Bye { .. })).count(),
        1,
        "no BYE to the gone caller: {cmds:?}"
    );
    assert_eq!(c.call_count(), 0);
}

#[test]
fn drain_forgets_a_pending_callback() {
    let (mut c, _call, agent_leg) = requested(3, 30);
    // anna is ringing for the callback; the drain drops it (lost), so her
    // ring is cancelled.
    c.drain(Time::from_secs(11));
    let cmds = commands(&mut c);
    assert!(cmds.iter().any(|x| matches!(x, Command::Cancel { leg, .. } if *leg == agent_leg)), "{cmds:?}");
    assert_eq!(c.call_count(), 0, "lost at shutdown");
    assert_eq!(c.errors().total(), 0, "{:?}", c.errors());
}

#[test]
fn the_agent_hears_the_whisper_over_ringback_and_the_customer_is_dialled_after_it() {
    let mut cfg = config(3, 60);
    let cb = cfg.queues[0].keypad.callback.as_mut().unwrap();
    cb.whisper = Some("front.wav".into());
    cb.whisper_ms = 2000;
    let mut c = Core::new(&cfg, Time::ZERO);
    let anna = c.engine().agent_id("anna").unwrap();
    c.handle_engine(Time::ZERO, Input::AgentRegistered { agent: anna }).unwrap();
    c.handle_engine(Time::ZERO, Input::AgentPause { agent: anna, reason: "x".into() }).unwrap();
    let inc = IncomingCall { dialled: "1000".into(), caller: "+35840123".into(), ..Default::default() };
    let (call, leg) = c.incoming_call(Time::ZERO, inc).unwrap();
    c.caller_digit(Time::from_secs(5), leg, '*');
    c.handle_engine(Time::from_secs(10), Input::AgentReady { agent: anna }).unwrap();
    let agent_leg = invite_to(&commands(&mut c), &Target::Agent(anna)).unwrap();
    c.handle_sip(Time::from_secs(12), SipEvent::Answered { leg: agent_leg });
    assert_eq!(
        commands(&mut c),
        vec![
            Command::Hold { call, leg: agent_leg, music: RINGBACK.into() },
            Command::Whisper { call, leg: agent_leg, file: Some("front.wav".into()) },
        ]
    );
    c.handle_timeout(Time::from_millis(13_999));
    assert_eq!(commands(&mut c), vec![]);
    c.handle_timeout(Time::from_secs(14));
    let cmds = commands(&mut c);
    assert!(invite_to(&cmds, &Target::Uri("sip:+35840123@127.0.0.1:5099".into())).is_some(), "{cmds:?}");
    assert_eq!(c.errors().total(), 0, "{:?}", c.errors());
}

#[test]
fn a_caller_of_a_closed_queue_is_answered_told_and_hung_up_and_rung_back_at_opening() {
    let text = format!(
        "[schedule.office]\ntime_zone = \"Europe/Helsinki\"\nhours = [\"mon-fri 08:00-18:00\"]\n{}\
         schedule = \"office\"\nwhen_closed = \"callback\"\ncallback_trunk = \"127.0.0.1:5099\"\n",
        CONFIG.replace("[[number]]\nnumber = \"1000\"\nqueue = \"sales\"\n", "")
    ) + "[[number]]\nnumber = \"1000\"\nqueue = \"sales\"\n";
    let cfg = from_toml_str("t.toml", &text).unwrap();
    let mut c = Core::new(&cfg, Time::ZERO);
    c.set_wall_clock(1_792_728_000_000); // Fri 07:00 in Helsinki
    let anna = c.engine().agent_id("anna").unwrap();
    c.handle_engine(Time::ZERO, Input::AgentRegistered { agent: anna }).unwrap();
    let inc = IncomingCall { dialled: "1000".into(), caller: "+35840123".into(), ..Default::default() };
    let (call, leg) = c.incoming_call(Time::from_secs(60), inc).unwrap();
    assert_eq!(
        commands(&mut c),
        vec![
            Command::AnswerCaller { call, leg },
            Command::Hold { call, leg, music: "default".into() },
            Command::ConfirmCallback { call, leg, closed: true },
        ]
    );
    c.handle_sip(Time::from_secs(66), SipEvent::CallerHungUp { leg });
    c.handle_timeout(Time::from_secs(3599));
    assert_eq!(commands(&mut c), vec![], "anna is not rung while closed");
    c.handle_timeout(Time::from_secs(3600));
    let agent_leg = invite_to(&commands(&mut c), &Target::Agent(anna)).expect("rung at 08:00");
    c.handle_sip(Time::from_secs(3602), SipEvent::Answered { leg: agent_leg });
    let cmds = commands(&mut c);
    assert!(invite_to(&cmds, &Target::Uri("sip:+35840123@127.0.0.1:5099".into())).is_some(), "{cmds:?}");
    assert_eq!(c.errors().total(), 0, "{:?}", c.errors());
}
