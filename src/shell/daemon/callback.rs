//! The callback confirmation: the caller who pressed the callback key hears
//! the `we-will-call-you-back` prompt (when the prompt set has it), then acd
//! sends BYE. The core let go of the leg already; the shell keeps its media
//! alive until the BYE (the media sweep spares `confirming` legs).

use super::Daemon;
use crate::callctl::LegId;
use crate::media::prompts::CALLBACK_CONFIRM;
use crate::shell::timers::Timer;
use std::time::Duration;
use tokio::time::Instant;

/// Silence after the prompt before the BYE, so its end is not clipped.
const AFTER_PROMPT: Duration = Duration::from_millis(400);

impl Daemon {
    pub(super) fn confirm_callback(&mut self, leg: LegId) {
        let clip = self.core.config().media.prompts.as_ref().and_then(|p| p.clip(CALLBACK_CONFIRM)).cloned();
        let wait = match clip {
            Some(clip) => {
                let ms = clip.duration_ms();
                self.media.play_clip(leg, clip);
                Duration::from_millis(ms) + AFTER_PROMPT
            }
            None => AFTER_PROMPT,
        };
        self.confirming.push((Instant::now() + wait, leg));
        self.arm_callback_bye();
    }

    /// BYEs the callers whose confirmation is over.
    pub(super) fn callback_byes(&mut self, now: Instant) {
        let (due, rest): (Vec<_>, Vec<_>) = self.confirming.drain(..).partition(|(at, _)| *at <= now);
        self.confirming = rest;
        for (_, leg) in due {
            self.drop_leg(leg);
            self.stack.bye(leg);
        }
        self.arm_callback_bye();
    }

    fn arm_callback_bye(&mut self) {
        match self.confirming.iter().map(|(at, _)| *at).min() {
            Some(at) => self.timers.set(Timer::CallbackBye, at),
            None => self.timers.stop(Timer::CallbackBye),
        }
    }
}
