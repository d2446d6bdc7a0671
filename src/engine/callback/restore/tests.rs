//! Saving and restoring pending callbacks, on the virtual clock.

use super::super::tests::{config, H};
use super::SavedCallback;
use crate::engine::*;
use std::time::Duration;

fn answered_waited(h: &H, call: u64) -> Option<Duration> {
    h.events.iter().find_map(|e| match e {
        Event::Answered { call: c, waited, .. } if c.0 == call => Some(*waited),
        _ => None,
    })
}

#[test]
fn drain_saves_pending_callbacks_in_order_with_their_wait_and_delay() {
    let mut h = H::new(&config(30, 3, 60));
    h.pause(0, "anna");
    h.pause(0, "ben");
    h.call(0, 1, "sales");
    h.call(10, 2, "sales");
    h.call(15, 3, "sales");
    h.input(20, Input::CallerDigit { call: CallId(2), digit: '*' }).unwrap();
    h.input(25, Input::CallerDigit { call: CallId(1), digit: '*' }).unwrap();
    h.clear();
    let saved = h.e.save_callbacks(Time::from_secs(40), |c| Some(format!("+35840{}", c.0))).unwrap();
    h.drain();
    // Arrival order (call 1 first), waited since reaching acd, delay left.
    assert_eq!(
        saved,
        vec![
            SavedCallback {
                queue: "sales".into(),
                caller: "+358401".into(),
                priority: 0,
                skills: vec![],
                attempts: 0,
                waited_ms: 40_000,
                retry_in_ms: 15_000,
                when_closed: false,
            },
            SavedCallback {
                queue: "sales".into(),
                caller: "+358402".into(),
                priority: 0,
                skills: vec![],
                attempts: 0,
                waited_ms: 30_000,
                retry_in_ms: 10_000,
                when_closed: false,
            },
        ]
    );
    assert_eq!(h.steps(), vec![CallbackStep::Saved, CallbackStep::Saved]);
    assert!(h.e.call(CallId(1)).is_none() && h.e.call(CallId(2)).is_none());
    assert!(h.e.call(CallId(3)).is_some(), "an ordinary caller is not saved");
    let sales = h.e.queue_id("sales").unwrap();
    assert_eq!(h.e.callbacks_pending(sales), 0);
    // Nothing left for the drain to lose.
    h.input(40, Input::Drain).unwrap();
    assert!(!h.steps().contains(&CallbackStep::Lost));
}

#[test]
fn restored_callbacks_keep_order_ahead_of_later_callers_waited_time_attempts_and_delay() {
    let mut h = H::new(&config(0, 3, 60));
    h.pause(1000, "anna");
    h.pause(1000, "ben");
    h.clear();
    let first = SavedCallback {
        queue: "sales".into(),
        caller: "+358401".into(),
        priority: 0,
        skills: vec![],
        attempts: 1,
        waited_ms: 50_000,
        retry_in_ms: 30_000,
        when_closed: false,
    };
    let second =
        SavedCallback { caller: "+358402".into(), attempts: 0, waited_ms: 20_000, retry_in_ms: 0, ..first.clone() };
    h.input(1000, Input::RestoreCallback { call: CallId(101), saved: first }).unwrap();
    h.input(1000, Input::RestoreCallback { call: CallId(102), saved: second }).unwrap();
    h.call(1000, 103, "sales");
    assert_eq!(h.steps(), vec![CallbackStep::Restored, CallbackStep::Restored]);
    let sales = h.e.queue_id("sales").unwrap();
    assert_eq!(h.e.callbacks_pending(sales), 2);
    assert_eq!(h.e.call(CallId(101)).unwrap().arrived, Time::from_secs(950));
    assert_eq!(h.e.call(CallId(102)).unwrap().arrived, Time::from_secs(980));
    // No caller leg: no hold music for a restored callback.
    assert!(!h.actions.iter().any(|a| matches!(a, Action::StartHold { call, .. } if call.0 < 103)));
    // 101 is not offerable before 1030: anna gets 102, ahead of 103.
    h.ready(1001, "anna");
    let anna = h.agent("anna");
    assert_eq!(h.rung(102), Some(anna));
    assert_eq!(h.rung(101), None);
    assert_eq!(h.rung(103), None);
    h.input(1002, Input::OfferAnswered { call: CallId(102), agent: anna }).unwrap();
    assert_eq!(h.dialled(102).map(|d| d.2), Some(1));
    // At 1030 101 is due again; ben takes it ahead of 103.
    h.tick(1030);
    h.ready(1031, "ben");
    let ben = h.agent("ben");
    assert_eq!(h.rung(101), Some(ben));
    assert_eq!(h.rung(103), None);
    h.input(1032, Input::OfferAnswered { call: CallId(101), agent: ben }).unwrap();
    // Attempts made before the restart count.
    assert_eq!(h.dialled(101), Some((ben, "127.0.0.1:5099".into(), 2)));
    h.input(1035, Input::CallbackAnswered { call: CallId(101) }).unwrap();
    // The wait counts from before the restart: 50 s + 35 s.
    assert_eq!(answered_waited(&h, 101), Some(Duration::from_secs(85)));
}

#[test]
fn a_callback_for_a_queue_that_is_gone_is_refused_and_nothing_changes() {
    let mut h = H::new(&config(0, 3, 60));
    h.clear();
    let saved = SavedCallback {
        queue: "nope".into(),
        caller: "+358401".into(),
        priority: 0,
        skills: vec![],
        attempts: 0,
        waited_ms: 1000,
        retry_in_ms: 0,
        when_closed: false,
    };
    let r = h.input(5, Input::RestoreCallback { call: CallId(1), saved: saved.clone() });
    assert_eq!(r, Err(EngineError::CallbackQueueGone("nope".into())));
    // "tech" exists but takes no callbacks.
    let r =
        h.input(5, Input::RestoreCallback { call: CallId(1), saved: SavedCallback { queue: "tech".into(), ..saved } });
    assert_eq!(r, Err(EngineError::CallbackQueueGone("tech".into())));
    assert!(h.e.call(CallId(1)).is_none());
    assert!(h.events.is_empty() && h.actions.is_empty());
}
