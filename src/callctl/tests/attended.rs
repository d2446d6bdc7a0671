//! Scenario tests of attended transfer (attended.rs) on [`Net`]: a customer
//! with anna in "front", anna's consultation call from her own phone to
//! "tech" (ben), and the REFER with Replaces that hands the customer over.

use super::*;

/// front (anna, number 100, wrap-up 30 s) and tech (ben, then cai; number
/// 200, wrap-up 20 s).
fn floor() -> Net {
    Net::new(&format!(
        "{}{}{}{}{}",
        queue("front", "linear", &["anna"], "wrap_up_secs = 30"),
        queue("tech", "linear", &["ben", "cai"], "wrap_up_secs = 20"),
        agents(&["anna", "ben", "cai"]),
        number("100", "front", ""),
        number("200", "tech", "")
    ))
}

fn in_call_leg(net: &Net, name: &str) -> LegId {
    *net.remotes
        .iter()
        .find(|(_, r)| r.name == name && r.state == Far::InCall)
        .unwrap_or_else(|| panic!("{name} is in no call"))
        .0
}

/// `agent`'s own phone dials `number` through acd.
fn consults(net: &mut Net, agent: &str, number: &str) -> CallId {
    net.try_call(IncomingCall {
        dialled: number.into(),
        caller: agent.into(),
        agent: Some(agent.into()),
        ..Default::default()
    })
    .expect("the consultation is taken")
}

/// The customer c1 talks to anna, who holds it and consults tech; ben
/// answers when `ben_answers`. Returns (c1, the consultation).
fn consulting(ben_answers: bool) -> (Net, CallId, CallId) {
    let mut net = floor();
    net.phone("anna", Phone::AnswersAfter(1000));
    net.phone("ben", if ben_answers { Phone::AnswersAfter(2000) } else { Phone::Rings });
    let c1 = net.call("100", CALLER);
    net.run_until(5.0);
    net.core.leg_hold(in_call_leg(&net, "anna"), true);
    net.drain();
    assert_eq!(
        net.said(),
        ["c1: answer", "c1: hold default", "c1: invite anna", "c1: stop hold", "c1: bridge anna", "c1: hold default"]
    );
    let k = consults(&mut net, "anna", "200");
    net.run_until(10.0);
    let expected: Vec<String> = if ben_answers {
        vec![
            format!("c{}: answer", k.0),
            format!("c{}: hold default", k.0),
            format!("c{}: invite ben", k.0),
            format!("c{}: stop hold", k.0),
            format!("c{}: bridge ben", k.0),
        ]
    } else {
        vec![format!("c{}: answer", k.0), format!("c{}: hold default", k.0), format!("c{}: invite ben", k.0)]
    };
    assert_eq!(net.said(), expected);
    // A consultation: the call's events say who placed it.
    assert!(net.events.iter().any(|e| matches!(e, Event::CallArrived { call, attributes, .. }
        if *call == k && attributes.contains(&("consult_by".to_string(), "anna".to_string())))));
    (net, c1, k)
}

/// anna's phone sends REFER on the customer's call, Replaces naming `consult`.
fn anna_transfers(net: &mut Net, consult: Option<LegId>) {
    let leg = net.remotes.iter().find(|(_, r)| r.name == "anna" && r.state == Far::InCall).map(|(l, _)| *l).unwrap();
    net.core.handle_sip(net.now, SipEvent::ReferReplaces { leg, consult });
    // A leg that changed calls: the phone's dialog is the same, its call in
    // acd is the customer's now (checked by the Bridge below).
    for (l, call) in net.remotes.iter().map(|(l, r)| (*l, r.call)).collect::<Vec<_>>() {
        if let Some(now) = net.core.leg_call(l).filter(|c| *c != call) {
            net.remotes.get_mut(&l).unwrap().call = now;
        }
    }
    net.drain();
}

#[test]
fn the_customer_is_bridged_to_the_consulted_agent_and_anna_leaves_both_calls_into_wrap_up() {
    let (mut net, c1, k) = consulting(true);
    let ben_leg = in_call_leg(&net, "ben");
    let k_leg = net.caller_leg(k);
    net.run_until(20.0);
    anna_transfers(&mut net, Some(k_leg));
    assert_eq!(
        net.said(),
        [
            "c1: transfer accepted, bye anna".to_string(),
            format!("c{}: bye caller", k.0),
            "c1: stop hold".to_string(),
            "c1: bridge ben".to_string(),
        ],
        "anna's REFER is answered 202 + NOTIFY 200 and both her legs get BYE; the customer hears ben"
    );
    let bridge = net.commands.iter().rev().find_map(|(_, c)| match c {
        Command::Bridge { call, caller, other } => Some((*call, *caller, *other)),
        _ => None,
    });
    assert_eq!(bridge, Some((c1, net.caller_leg(c1), ben_leg)), "the customer's RTP leg with ben's");
    let (anna, ben) = (net.agent("anna"), net.agent("ben"));
    assert!(net.events.iter().any(|e| matches!(e, Event::Transferred { call, agent, to, kind, .. }
        if *call == c1 && *agent == anna && *to == crate::engine::TransferTarget::Agent(ben)
            && *kind == crate::engine::TransferKind::Attended)));
    assert_eq!(net.outcome(k), Some(Outcome::Consultation { by: anna, answered_by: Some(ben), transferred: true }));
    assert!(matches!(net.agent_state("anna"), AgentState::WrapUp { .. }), "{:?}", net.agent_state("anna"));
    assert!(matches!(net.agent_state("ben"), AgentState::OnCall { call, .. } if call == c1));
    assert_eq!(net.core.call_count(), 1, "the consultation is gone");
    assert_eq!(net.core.engine().call(c1).and_then(|v| v.agent), Some(ben));

    // The customer hangs up: ben's leg gets BYE, ben wraps up.
    net.run_until(60.0);
    net.caller_hangs_up(c1);
    assert_eq!(net.said(), ["c1: bye ben"]);
    assert_eq!(net.outcome(c1), Some(Outcome::Answered { agent: ben }));
    assert!(matches!(net.agent_state("ben"), AgentState::WrapUp { .. }), "{:?}", net.agent_state("ben"));
    net.finish_clean();
    assert!(matches!(net.agent_state("anna"), AgentState::Available { .. }), "anna's wrap-up ended");
}

#[test]
fn a_consultation_still_ringing_is_refused_603_and_the_customer_stays_with_anna() {
    let (mut net, c1, k) = consulting(false);
    let leg = net.caller_leg(k);
    anna_transfers(&mut net, Some(leg));
    assert_eq!(net.said(), ["c1: refer from anna declined 603 (the consultation call is not answered yet)"]);
    assert!(matches!(net.agent_state("anna"), AgentState::OnCall { call, .. } if call == c1));
    assert!(matches!(net.agent_state("ben"), AgentState::Ringing { .. }));
    assert_eq!(net.core.call_count(), 2);
    // anna gives up on the consultation and takes her customer back.
    net.caller_hangs_up(k);
    assert_eq!(net.said(), [format!("c{}: cancel ben", k.0)]);
    net.core.leg_hold(in_call_leg(&net, "anna"), false);
    net.drain();
    assert_eq!(net.said(), ["c1: stop hold", "c1: bridge anna"]);
    assert_eq!(
        net.outcome(k),
        Some(Outcome::Consultation { by: net.agent("anna"), answered_by: None, transferred: false })
    );
    net.far_end_hangs_up("anna");
    assert_eq!(net.said(), ["c1: bye caller"]);
    assert_eq!(net.outcome(c1), Some(Outcome::Answered { agent: net.agent("anna") }));
    net.finish_clean();
}

#[test]
fn replaces_naming_no_consultation_of_this_agent_is_refused_and_nothing_changes() {
    let (mut net, c1, k) = consulting(true);
    // No dialog acd knows.
    anna_transfers(&mut net, None);
    // A leg acd has that is no consultation: ben's own leg.
    let ben_leg = in_call_leg(&net, "ben");
    anna_transfers(&mut net, Some(ben_leg));
    assert_eq!(
        net.said(),
        [
            "c1: refer from anna declined 404 (Replaces names no call acd knows)",
            "c1: refer from anna declined 404 (Replaces names no consultation call acd knows)",
        ]
    );
    // cai's consultation, not answered: cai (free) dials the front queue,
    // where anna is busy, so it waits; anna names it.
    let other = consults(&mut net, "cai", "100");
    net.said();
    let leg = net.caller_leg(other);
    anna_transfers(&mut net, Some(leg));
    assert_eq!(net.said(), ["c1: refer from anna declined 603 (the consultation call is not answered yet)"]);
    // From the customer's side: 403, as for any REFER from a caller.
    let leg = net.caller_leg(c1);
    net.core.handle_sip(net.now, SipEvent::ReferReplaces { leg, consult: Some(net.caller_leg(k)) });
    net.drain();
    assert_eq!(net.said(), ["c1: refer from caller refused 403"]);
    assert!(matches!(net.agent_state("anna"), AgentState::OnCall { call, .. } if call == c1));
    assert!(matches!(net.agent_state("ben"), AgentState::OnCall { call, .. } if call == k));
    assert!(!net.events.iter().any(|e| matches!(e, Event::Transferred { .. })));
    net.caller_hangs_up(other);
    net.caller_hangs_up(k);
    net.caller_hangs_up(c1);
    assert!(matches!(net.agent_state("ben"), AgentState::WrapUp { .. }));
    assert!(matches!(net.agent_state("anna"), AgentState::WrapUp { .. }));
    net.finish_clean();
}

#[test]
fn an_answered_consultation_of_another_agent_is_refused_403() {
    let mut net = floor();
    net.phone("anna", Phone::AnswersAfter(500));
    net.phone("ben", Phone::AnswersAfter(500));
    let cust = net.call("100", CALLER);
    net.run_until(3.0);
    // cai (free) consults tech from her phone and ben answers.
    let cais = consults(&mut net, "cai", "200");
    net.run_until(6.0);
    assert!(matches!(net.agent_state("ben"), AgentState::OnCall { call, .. } if call == cais));
    net.said();
    let leg = net.caller_leg(cais);
    anna_transfers(&mut net, Some(leg));
    assert_eq!(
        net.said(),
        ["c1: refer from anna declined 403 (Replaces names a call that is not this agent's consultation)"]
    );
    assert!(matches!(net.agent_state("anna"), AgentState::OnCall { call, .. } if call == cust));
    assert!(matches!(net.agent_state("ben"), AgentState::OnCall { call, .. } if call == cais));
    net.caller_hangs_up(cais);
    net.caller_hangs_up(cust);
    net.finish_clean();
}
