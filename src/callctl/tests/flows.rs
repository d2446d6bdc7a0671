//! Scenario tests of the issue-14 queue rules on the SIP side (music while
//! the agent holds, ...), on [`Net`] like the rest of `tests.rs`.

use super::*;

/// `name`'s leg in a call with acd.
fn in_call_leg(net: &Net, name: &str) -> LegId {
    *net.remotes
        .iter()
        .find(|(_, r)| r.name == name && r.state == Far::InCall)
        .unwrap_or_else(|| panic!("{name} is in no call"))
        .0
}

#[test]
fn agent_hold_plays_the_queues_music_to_the_caller_and_resume_bridges_again() {
    let mut net = two_agents(r#"music = "ringback""#);
    net.phone("anna", Phone::AnswersAfter(1000));
    let c1 = net.call("100", CALLER);
    net.run_until(5.0);
    assert_eq!(net.said(), ["c1: answer", "c1: hold ringback", "c1: invite anna", "c1: stop hold", "c1: bridge anna"]);
    let anna = in_call_leg(&net, "anna");

    // anna presses hold: her re-INVITE says sendonly.
    net.core.leg_hold(anna, true);
    net.drain();
    assert_eq!(net.said(), ["c1: hold ringback"], "the caller hears the queue's music, not silence");
    assert!(matches!(net.agent_state("anna"), AgentState::OnCall { call, .. } if call == c1), "anna is still on it");
    assert_eq!(net.core.call_count(), 1);

    // Resume: the bridge again, to anna's own leg.
    net.run_until(40.0);
    net.core.leg_hold(anna, false);
    net.drain();
    assert_eq!(net.said(), ["c1: stop hold", "c1: bridge anna"]);
    let last_bridge = net.commands.iter().rev().find_map(|(_, c)| match c {
        Command::Bridge { caller, other, .. } => Some((*caller, *other)),
        _ => None,
    });
    assert_eq!(last_bridge, Some((net.caller_leg(c1), anna)));

    // Held again and the agent hangs up: the caller's call ends as usual.
    net.core.leg_hold(anna, true);
    net.drain();
    assert_eq!(net.said(), ["c1: hold ringback"]);
    net.far_end_hangs_up("anna");
    assert_eq!(net.said(), ["c1: bye caller"]);
    assert_eq!(net.outcome(c1), Some(Outcome::Answered { agent: net.agent("anna") }));
    net.finish_clean();
}

#[test]
fn a_hold_on_the_callers_own_leg_or_a_ringing_leg_changes_nothing() {
    let mut net = two_agents("");
    net.phone("anna", Phone::Rings);
    let c1 = net.call("100", CALLER);
    net.run_until(2.0);
    assert_eq!(net.said(), ["c1: answer", "c1: hold default", "c1: invite anna"]);
    let ringing = *net.remotes.keys().next().unwrap();
    net.core.leg_hold(ringing, true); // early media of a ringing phone
    net.core.leg_hold(net.caller_leg(c1), true); // the trunk holds the caller
    net.core.leg_hold(LegId(999), true); // a leg acd does not know
    net.drain();
    assert!(net.said().is_empty(), "music goes on, nothing else happens");
    net.caller_hangs_up(c1);
    net.finish_clean();
}
