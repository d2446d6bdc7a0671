//! Queue while ringing: a queue with `answer = "on_agent"` keeps the caller's
//! INVITE unanswered while it waits, so a carrier does not bill the wait.
//!
//! ```text
//!   Arriving ── engine StartHold, queue answers on arrival ──► AnswerCaller, Hold ──► Queued
//!            └─ engine StartHold, queue answers on agent:
//!                 EarlyMedia(music) (183 + SDP, music as early media)
//!                 or EarlyMedia(none) (180 Ringing)          ──► Early
//!   Early ── agents ring as from Queued; an agent's 2xx → engine Bridge:
//!              StopHold, AnswerCaller (the caller's 200 now), Bridge ──► Bridged
//!         ── engine Reject (max_wait, overflow reject:NNN, queue closed,
//!              leave_when_empty, shutdown): RejectCaller(status) ──► Ended
//!              (a final response, not a BYE: the caller was never answered)
//!         ── caller CANCEL: the stack answers 487; CallAbandoned ──► Ended
//!         ── engine Transfer(uri) (overflow to a URI): AnswerCaller, as from
//!              Arriving ──► Transferring
//! ```
//!
//! No PRACK (RFC 3262) is asked for: the 183 is sent unreliably, as most
//! trunks expect; a lost 183 costs the caller its early music, not the call.
//! What always holds: an Early caller has had no 2xx; the only 2xx it gets
//! is the AnswerCaller that comes with the Bridge or the Transfer.

use super::{CallState, Command, Core, LegId, Next};
use crate::config::Answer;
use crate::engine::{CallId, QueueId};

impl Core {
    /// The engine's first StartHold for a new call: answer and play music,
    /// or keep the INVITE ringing with early media as the queue says.
    pub(super) fn start_waiting(&mut self, call: CallId, caller: LegId, queue: QueueId, music: String) {
        let answer = self.config.queue(self.engine.queue_name(queue)).map(|q| q.answer).unwrap_or(Answer::OnArrival);
        match answer {
            Answer::OnArrival => {
                self.commands.push_back(Command::AnswerCaller { call, leg: caller });
                self.set_state(call, Next::To(CallState::Queued), "answered, waiting");
                self.commands.push_back(Command::Hold { call, leg: caller, music });
            }
            Answer::EarlyMusic => {
                self.set_state(call, Next::To(CallState::Early { music: true }), "183, early-media music, waiting");
                self.commands.push_back(Command::EarlyMedia { call, leg: caller, music: Some(music) });
            }
            Answer::EarlyRinging => {
                self.set_state(call, Next::To(CallState::Early { music: false }), "180, waiting");
                self.commands.push_back(Command::EarlyMedia { call, leg: caller, music: None });
            }
        }
    }
}
