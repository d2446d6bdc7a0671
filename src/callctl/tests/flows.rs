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

// ----- queue while ringing (early.rs) ------------------------------------------

#[test]
fn an_on_agent_queue_plays_music_as_early_media_and_answers_the_caller_only_when_the_agent_does() {
    let mut net = two_agents("answer = \"on_agent\"\nearly_media = \"music\"");
    net.phone("anna", Phone::AnswersAfter(8000));
    let c1 = net.call("100", CALLER);
    assert_eq!(net.said(), ["c1: 183 early media default", "c1: invite anna"], "no 200: 183 with music, anna rings");
    net.run_until(7.0);
    assert!(net.said().is_empty(), "the caller is still not answered while anna rings");
    net.run_until(20.0);
    assert_eq!(net.said(), ["c1: stop hold", "c1: answer", "c1: bridge anna"], "the caller's 200 comes with anna's");
    assert_eq!(net.when("c1: answer"), Some(8.04), "at once when her 200 arrives");
    net.caller_hangs_up(c1);
    assert_eq!(net.said(), ["c1: bye anna"]);
    assert_eq!(net.outcome(c1), Some(Outcome::Answered { agent: net.agent("anna") }));
    net.finish_clean();
}

#[test]
fn an_early_caller_past_max_wait_gets_a_final_error_not_a_bye() {
    let mut net =
        two_agents("answer = \"on_agent\"\nearly_media = \"ringing\"\nmax_wait_secs = 30\noverflow = \"reject:486\"");
    net.phone("anna", Phone::Rings);
    net.phone("ben", Phone::Rings);
    let _c1 = net.call("100", CALLER);
    assert_eq!(net.said(), ["c1: 180", "c1: invite anna"], "180 without media");
    net.run_until(40.0);
    let said = net.said();
    assert_eq!(said.last().map(String::as_str), Some("c1: reject 486"), "{said:?}");
    assert!(!said.iter().any(|l| l.contains("answer") || l.contains("bye caller")), "never answered: {said:?}");
    net.finish_clean();
}

#[test]
fn an_early_caller_who_cancels_stops_the_ringing_and_abandons() {
    let mut net = two_agents("answer = \"on_agent\"");
    net.phone("anna", Phone::Rings);
    let c1 = net.call("100", CALLER);
    assert_eq!(net.said(), ["c1: 183 early media default", "c1: invite anna"], "early_media defaults to music");
    net.run_until(5.0);
    net.caller_cancels(c1);
    assert_eq!(net.said(), ["c1: cancel anna"]);
    assert_eq!(net.outcome(c1), Some(Outcome::Abandoned));
    assert_eq!(net.core.races().total(), 0, "a CANCEL before any 200 is no race");
    net.finish_clean();
}

#[test]
fn early_media_settings_are_checked_by_key() {
    let base = |extra: &str| {
        format!(
            "{SKILLS}\n{}{}{}",
            queue("support", "linear", &["anna"], extra),
            agents(&["anna"]),
            number("100", "support", "")
        )
    };
    let err = from_toml_str("t.toml", &base("early_media = \"music\"")).unwrap_err().to_string();
    assert!(err.contains("queue[0].early_media") || err.contains("early_media"), "{err}");
    assert!(err.contains("on_agent"), "{err}");
    let err = from_toml_str("t.toml", &base("answer = \"later\"")).unwrap_err().to_string();
    assert!(err.contains("answer") && err.contains("on_arrival, on_agent"), "{err}");
    let err = from_toml_str("t.toml", &base("answer = \"on_agent\"\nearly_media = \"tones\"")).unwrap_err().to_string();
    assert!(err.contains("early_media") && err.contains("music, ringing"), "{err}");
    let ok = from_toml_str("t.toml", &base("answer = \"on_agent\"\nearly_media = \"ringing\"")).unwrap();
    assert_eq!(ok.queue("support").unwrap().answer, crate::config::Answer::EarlyRinging);
}
