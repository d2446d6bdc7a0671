//! A waiting caller's keypad: digits the media plane heard on the caller's
//! leg (RFC 4733) become the engine's [`Input::CallerDigit`].
//!
//! Only a caller in `Queued` is heard: an agent's keys, a bridged caller's
//! keys (relayed to the agent instead), or a key that crossed the call's
//! end change nothing.

use super::{CallState, Core, LegId};
use crate::engine::{EngineError, Input, Time};
use tracing::debug;

impl Core {
    /// The media plane heard `digit` on `leg`.
    pub fn caller_digit(&mut self, now: Time, leg: LegId, digit: char) {
        let Some(&call_id) = self.legs.get(&leg) else { return };
        let Some(call) = self.calls.get(&call_id) else { return };
        if call.caller_leg != leg || call.state != CallState::Queued {
            debug!(call = %call_id, %leg, %digit, state = %call.state, "key ignored: not a waiting caller");
            return;
        }
        match self.engine.handle(now, Input::CallerDigit { call: call_id, digit }) {
            // Answered by an agent at this instant: the key is the agent's now.
            Ok(()) | Err(EngineError::NotWaiting(_)) => {}
            Err(e) => self.bug(e.into()),
        }
        self.pump();
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Command, Core, IncomingCall, Target};
    use crate::config::from_toml_str;
    use crate::engine::Time;

    const CONFIG: &str = r#"
[[agent]]
id = "anna"
auto_login = false
[[queue]]
name = "sales"
members = [{ agent = "anna" }]
exit_key = "0"
exit_target = "sip:operator@pbx.example.com"
[[queue]]
name = "tech"
music = "default"
members = [{ agent = "anna" }]
exit_key = "9"
exit_target = "sales"
[[number]]
number = "1000"
queue = "sales"
[[number]]
number = "2000"
queue = "tech"
"#;

    fn core() -> Core {
        Core::new(&from_toml_str("t.toml", CONFIG).unwrap(), Time::ZERO)
    }

    fn commands(c: &mut Core) -> Vec<Command> {
        std::iter::from_fn(|| c.poll_command()).collect()
    }

    fn call(c: &mut Core, dialled: &str) -> (crate::engine::CallId, super::LegId) {
        let inc = IncomingCall { dialled: dialled.into(), caller: "+35840123".into(), ..Default::default() };
        let r = c.incoming_call(Time::ZERO, inc).unwrap();
        let cmds = commands(c);
        assert!(cmds.iter().any(|x| matches!(x, Command::Hold { .. })), "{cmds:?}");
        r
    }

    #[test]
    fn a_waiting_caller_pressing_the_exit_key_to_a_uri_is_invited_there_on_music() {
        let mut c = core();
        let (call, leg) = call(&mut c, "1000");
        c.caller_digit(Time::from_secs(5), leg, '1'); // not the exit key
        assert_eq!(commands(&mut c), vec![]);
        c.caller_digit(Time::from_secs(6), leg, '0');
        let cmds = commands(&mut c);
        assert!(
            cmds.iter().any(|x| matches!(x, Command::Invite { call: k, target: Target::Uri(u), caller, .. }
                if *k == call && u == "sip:operator@pbx.example.com" && caller == "+35840123")),
            "{cmds:?}"
        );
        assert!(!cmds.iter().any(|x| matches!(x, Command::StopHold { .. })), "music until the target answers");
        assert_eq!(c.engine().call(call).map(|v| v.queue), None, "the engine let go");
    }

    #[test]
    fn the_exit_key_to_a_queue_plays_that_queues_music_and_an_agent_leg_key_is_ignored() {
        let mut c = core();
        let (call, leg) = call(&mut c, "2000");
        c.caller_digit(Time::from_secs(3), leg, '9');
        let cmds = commands(&mut c);
        assert!(cmds.iter().any(|x| matches!(x, Command::Hold { call: k, .. } if *k == call)), "{cmds:?}");
        let sales = c.engine().queue_id("sales").unwrap();
        assert_eq!(c.engine().call(call).map(|v| v.queue), Some(sales));
        // A leg that is not a caller's (unknown here) changes nothing.
        c.caller_digit(Time::from_secs(4), super::LegId(999), '9');
        assert_eq!(commands(&mut c), vec![]);
        assert_eq!(c.errors().total(), 0);
    }
}
