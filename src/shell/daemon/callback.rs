//! The callback confirmation: the caller who pressed the callback key hears
//! the `we-will-call-you-back` prompt (when the prompt set has it), then acd
//! sends BYE. The core let go of the leg already; the shell keeps its media
//! alive until the BYE (the media sweep spares `confirming` legs).

use super::Daemon;
use crate::callctl::LegId;
use crate::media::prompts::{CALLBACK_CONFIRM, CLOSED_CALLBACK};
use crate::shell::timers::Timer;
use std::time::Duration;
use tokio::time::Instant;

/// Silence after the prompt before the BYE, so its end is not clipped.
const AFTER_PROMPT: Duration = Duration::from_millis(400);

impl Daemon {
    pub(super) fn confirm_callback(&mut self, leg: LegId, closed: bool) {
        let name = if closed { CLOSED_CALLBACK } else { CALLBACK_CONFIRM };
        let clip = self.core.config().media.prompts.as_ref().and_then(|p| p.clip(name)).cloned();
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

    /// The agent of a callback hears its whisper (over the ringback the
    /// core started); the engine times the dial from the same clips.
    pub(super) fn callback_whisper(&mut self, leg: LegId, file: Option<std::path::PathBuf>) {
        let media = &self.core.config().media;
        let own = file.as_ref().and_then(|f| media.announcements.get(f));
        if let Some(clip) = crate::media::prompts::callback_whisper(media.prompts.as_deref(), own) {
            self.media.play_clip(leg, clip);
        }
    }

    /// A waiting caller hears the automatic callback offer naming its key.
    pub(super) fn offer_callback(&mut self, leg: LegId, key: char) {
        let prompts = self.core.config().media.prompts.as_deref();
        match prompts.and_then(|p| crate::media::prompts::callback_offer(p, key)) {
            Some(clip) => self.media.play_clip(leg, clip),
            None => tracing::warn!(%leg, "callback offer: media.prompts has no callback-offer prompt for '{key}'"),
        }
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
