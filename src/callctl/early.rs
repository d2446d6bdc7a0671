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
//!   Arriving (or Early without media) ── engine ClosedPrompt (a closed
//!     queue's `closed_prompt`): EarlyMedia(music) and the prompt over it
//!     ──► Early { music }; then the engine's Reject (RejectCaller: a final
//!     status after the 183, never billed), Transfer, or the target
//!     queue's StartHold as above
//!   Queued / Early { music } ── engine ClosedPrompt: the prompt over the
//!     music it has (sent on at closing)
//!
//! No PRACK (RFC 3262) is asked for: the 183 is sent unreliably, as most
//! trunks expect; a lost 183 costs the caller its early music, not the call.
//! What always holds: an Early caller has had no 2xx; the only 2xx it gets
//! is the AnswerCaller that comes with the Bridge or the Transfer.

use super::{unexpected, CallState, Command, Core, LegId, Next};
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

    /// The engine's ClosedPrompt: the caller hears the closed queue's prompt,
    /// as early media when it was not answered (nothing is billed for it).
    pub(super) fn closed_prompt(&mut self, call: CallId, file: std::path::PathBuf) {
        let c = &self.calls[&call];
        let (state, leg) = (c.state, c.caller_leg);
        match state {
            CallState::Arriving | CallState::Early { music: false } => {
                let music = self
                    .engine
                    .call(call)
                    .and_then(|v| self.config.queue(self.engine.queue_name(v.queue)))
                    .map_or_else(|| "default".to_string(), |q| q.music.clone());
                self.set_state(call, Next::To(CallState::Early { music: true }), "183, closed prompt as early media");
                self.commands.push_back(Command::EarlyMedia { call, leg, music: Some(music) });
            }
            CallState::Queued | CallState::Early { music: true } => {}
            _ => return self.bug(unexpected(call, leg, "ClosedPrompt", state)),
        }
        self.commands.push_back(Command::PlayFile { call, leg, file });
    }
}
