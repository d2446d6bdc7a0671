//! Music while the agent holds: the far end of a bridged call (an agent, or
//! the target of a transfer) puts the caller on hold with a re-INVITE or
//! UPDATE whose SDP is not sendrecv (RFC 3264 §8.4: `a=sendonly`,
//! `a=inactive`; or RFC 2543's `c=0.0.0.0`), and resumes with sendrecv.
//!
//! ```text
//!   Bridged(agent, leg) ── leg held ──► Hold(caller, the queue's music)   (state unchanged)
//!                       ── leg resumed ──► StopHold(caller), Bridge(caller, leg)
//! ```
//!
//! The call stays Bridged (the agent is on the call, the engine's view does
//! not change); only the caller's media source switches, so a caller never
//! hears dead air while an agent consults a colleague. The shell reports a
//! change of direction only (it keeps each leg's last SDP direction), so a
//! session refresh that repeats sendrecv is not a resume. A hold on the
//! caller's own leg, or on a leg that is not the call's bridged one, changes
//! nothing here: acd answers its SDP and the bridge carries on.

use super::{CallState, Command, Core, LegId};
use crate::engine::CallId;
use tracing::debug;

/// The music class when the engine no longer holds the call (a transfer
/// target's leg): the media plane plays its first class for a name it does
/// not know, and `default` is the class every config has.
const FALLBACK_MUSIC: &str = "default";

impl Core {
    /// The far end of `leg` held (`held`) or resumed its stream. On the
    /// bridged leg of an answered call the caller hears the queue's music
    /// while held, and the bridge again on resume; on any other leg it does
    /// nothing.
    pub fn leg_hold(&mut self, leg: LegId, held: bool) {
        let Some(&call_id) = self.legs.get(&leg) else { return };
        let Some(call) = self.calls.get(&call_id) else { return };
        let bridged = match call.state {
            CallState::Bridged { leg: out, .. } | CallState::TransferBridged { leg: out } => out,
            _ => return,
        };
        if bridged != leg {
            return;
        }
        let caller = call.caller_leg;
        if held {
            let music = self.music_of(call_id);
            debug!(call = %call_id, %leg, "the far end holds the caller: {music} music");
            self.commands.push_back(Command::Hold { call: call_id, leg: caller, music });
        } else {
            debug!(call = %call_id, %leg, "the far end resumed: bridge again");
            self.commands.push_back(Command::StopHold { call: call_id, leg: caller });
            self.commands.push_back(Command::Bridge { call: call_id, caller, other: leg });
        }
    }

    /// The music class of the queue the engine has the call in.
    fn music_of(&self, call: CallId) -> String {
        self.engine
            .call(call)
            .and_then(|v| self.config.queue(self.engine.queue_name(v.queue)))
            .map(|q| q.music.clone())
            .unwrap_or_else(|| FALLBACK_MUSIC.to_string())
    }
}
