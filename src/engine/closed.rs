//! The closed queue's prompt (`closed_prompt`): a caller reaching a closed
//! queue (or sent on at closing with `at_close = "send"`) hears a recorded
//! message before the queue's `when_closed` is carried out.
//!
//! ```text
//!   send_closed(q), q has a closed_prompt and when_closed is not
//!     "callback" ──► ClosedPrompt { file } (call control: 183 + SDP and the
//!     prompt as early media for a caller not answered yet, else the prompt
//!     over its music); timer ClosedPrompt at now + the clip's length
//!   ClosedPrompt timer ──► when_closed: Reject (a final status after the
//!     183: never billed), Transfer to a URI, or the target queue
//!   CallAbandoned during the prompt ──► finished; with a reject target it
//!     counts as that reject (the caller was told "closed" either way),
//!     otherwise as an abandon
//! ```
//!
//! What always holds: a caller hearing the prompt is in no queue's line (no
//! agent is rung for it) and has exactly one ClosedPrompt timer.

use super::{Action, CallId, Engine, Outcome, QueueId, TimerKind};
use crate::config::OverflowTarget;
use std::time::Duration;
use tracing::debug;

impl Engine {
    /// From `send_closed`: plays `q`'s prompt to `c` (in no line) when it
    /// has one; false when it has none (the target is carried out at once).
    pub(super) fn start_closed_prompt(&mut self, c: CallId, q: QueueId, hops: u32) -> bool {
        let cfg = &self.queues[q.0 as usize].cfg;
        let Some(file) = cfg.closed_prompt.clone() else { return false };
        let ms = cfg.closed_prompt_ms;
        self.withdraw_all_rings(c);
        let call = self.calls.get_mut(&c).expect("closed-queue call exists");
        debug!(call = c.0, file = %file.display(), ms, "Closed => ClosedPrompt");
        call.closed_prompt = Some((q, hops));
        // Call control starts media (early or the music it already had) for
        // the prompt: the target's StopHold / StartHold follow from here.
        call.on_hold = true;
        self.actions.push_back(Action::ClosedPrompt { call: c, file });
        self.timers.set(TimerKind::ClosedPrompt(c), self.now + Duration::from_millis(ms as u64));
        true
    }

    /// The ClosedPrompt timer: the prompt is over, `when_closed` follows.
    pub(super) fn closed_prompt_over(&mut self, c: CallId) {
        let Some((q, hops)) = self.calls.get_mut(&c).and_then(|call| call.closed_prompt.take()) else { return };
        debug!(call = c.0, "ClosedPrompt => Closed (prompt over)");
        self.closed_target(c, q, hops);
    }

    /// From `call_gone`: the caller hung up during the prompt. True when it
    /// was hearing one (the call is finished).
    pub(super) fn closed_prompt_gone(&mut self, c: CallId) -> bool {
        let Some((q, _)) = self.calls.get_mut(&c).and_then(|call| call.closed_prompt.take()) else { return false };
        self.timers.cancel(TimerKind::ClosedPrompt(c));
        let outcome = match self.queues[q.0 as usize].cfg.when_closed {
            OverflowTarget::Reject(status) => Outcome::Rejected { status },
            _ => Outcome::Abandoned,
        };
        debug!(call = c.0, "ClosedPrompt => Finished (caller hung up)");
        // No StopHold: the caller's leg is gone already.
        if let Some(call) = self.calls.get_mut(&c) {
            call.on_hold = false;
        }
        self.finish(c, outcome);
        true
    }
}

#[cfg(test)]
mod tests;
