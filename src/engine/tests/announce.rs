//! What a waiting caller hears besides music, on the virtual clock: position
//! and wait announcements saying what the queue asks, and recorded periodic
//! announcements in turn.

use super::*;

const A: &str = "config/sounds/prompts/en/minute.wav";
const B: &str = "config/sounds/prompts/en/hundred.wav";

/// anna is busy on call 1 from t=0, so call 2 (t=1) waits.
fn busy_floor(extra: &str) -> H {
    let toml = format!("{}{}", agents(&["anna"]), queue("q", "linear", &["anna"], extra));
    let mut h = H::new(&toml);
    h.call(0, 1, "q", 0);
    h.answer(0, 1, "anna");
    h.call(1, 2, "q", 0);
    h.clear();
    h
}

/// What call 2 was told, as "place,wait" / "file <name>", between two times.
fn heard(h: &mut H, from: u64, to: u64) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for s in from..=to {
        h.at(s);
        for a in h.actions.drain(..) {
            match a {
                Action::Announce { call: CallId(2), position, estimated_wait_secs } => {
                    let f = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
                    out.push((s, format!("{},{}", f(position), f(estimated_wait_secs))))
                }
                Action::PlayFile { call: CallId(2), file } => {
                    out.push((s, format!("file {}", file.file_name().unwrap().to_string_lossy())))
                }
                _ => {}
            }
        }
    }
    out
}

#[test]
fn recorded_announcements_play_in_turn_and_the_place_is_said_without_the_wait() {
    let extra = format!(
        "wrap_up_secs = 0\nannounce_every_secs = 20\nannounce_wait = false\nperiodic_announce = [\"{A}\", \"{B}\"]\nperiodic_announce_every_secs = 30"
    );
    let mut h = busy_floor(&extra);
    let got = heard(&mut h, 2, 95);
    let want: Vec<(u64, String)> = vec![
        (21, "1,-".into()),
        (31, "file minute.wav".into()),
        (41, "1,-".into()),
        (61, "1,-".into()),
        (61, "file hundred.wav".into()),
        (81, "1,-".into()),
        (91, "file minute.wav".into()),
    ];
    assert_eq!(got, want);
    // Bridged: nothing more is said.
    h.end(96, 1);
    h.answer(97, 2, "anna");
    assert!(heard(&mut h, 98, 200).is_empty());
}

#[test]
fn only_the_wait_when_the_queue_says_so() {
    let mut h = busy_floor("announce_every_secs = 15\nannounce_position = false");
    let got = heard(&mut h, 2, 20);
    assert_eq!(got, vec![(16, "-,0".to_string())]);
}

#[test]
fn a_reload_turns_periodic_announcements_on_and_off_for_callers_already_waiting() {
    let mut h = busy_floor("");
    assert!(heard(&mut h, 2, 100).is_empty());
    let on = format!("periodic_announce = [\"{B}\"]\nperiodic_announce_every_secs = 10");
    h.reload(100, &format!("{}{}", agents(&["anna"]), queue("q", "linear", &["anna"], &on)));
    let got = heard(&mut h, 101, 125);
    assert_eq!(got, vec![(110, "file hundred.wav".to_string()), (120, "file hundred.wav".to_string())]);
    h.reload(125, &format!("{}{}", agents(&["anna"]), queue("q", "linear", &["anna"], "")));
    assert!(heard(&mut h, 126, 200).is_empty());
}

#[test]
fn announcement_settings_that_cannot_work_name_their_key() {
    let bad = |extra: &str| -> String {
        let toml = format!("{SKILLS}\n{}{}", agents(&["anna"]), queue("q", "linear", &["anna"], extra));
        from_toml_str("test.toml", &toml).expect_err("refused").to_string()
    };
    let e = bad("periodic_announce_every_secs = 30");
    assert!(e.contains("queue[q].periodic_announce_every_secs") && e.contains("periodic_announce = ["), "{e}");
    let e = bad("periodic_announce = [\"config/sounds/nope.wav\"]\nperiodic_announce_every_secs = 30");
    assert!(e.contains("queue[q].periodic_announce[0]") && e.contains("nope.wav"), "{e}");
    let e = bad(&format!("periodic_announce = [\"{A}\"]\nperiodic_announce_every_secs = 5"));
    assert!(e.contains("every 10 s"), "{e}");
    let e = bad("announce_every_secs = 30\nannounce_position = false\nannounce_wait = false");
    assert!(e.contains("queue[q].announce_wait") && e.contains("says nothing"), "{e}");
}
