//! The daemon's side of `engine.callback_state_file`: save the pending
//! callbacks when SIGTERM's drain begins, restore them at start-up
//! (`shell/callback_state.rs` reads and writes the file).

use super::Daemon;
use crate::engine::EngineError;
use crate::shell::callback_state;
use serde_json::json;
use tokio::time::Instant;
use tracing::{error, info, warn};

impl Daemon {
    /// Drain: with a state file, the pending callbacks go into it instead of
    /// being lost (each a `callback_saved` event). A write that fails is an
    /// error in the log; the callbacks are then lost.
    pub(super) fn save_callbacks(&mut self, now: Instant) {
        let Some(path) = self.core.config().engine.callback_state_file.clone() else { return };
        let saved = self.core.save_callbacks(self.time(now));
        self.flush(now);
        if saved.is_empty() {
            // Nothing to keep (and a file would be read back as nothing).
            return;
        }
        match callback_state::write(&path, &saved) {
            Ok(()) => info!("{} pending callback(s) saved to {}", saved.len(), path.display()),
            Err(e) => error!(
                "callback state file {}: write failed ({e}); {} pending callback(s) lost",
                path.display(),
                saved.len()
            ),
        }
    }

    /// Start-up: the callbacks saved by the last shutdown, back in their
    /// queues in their saved order (ahead of any caller to come). One whose
    /// queue is gone is logged and recorded as `callback_lost`. A corrupt
    /// file is moved aside with an error; acd starts anyway.
    pub(super) fn restore_callbacks(&mut self, now: Instant) {
        let Some(path) = self.core.config().engine.callback_state_file.clone() else { return };
        let saved = match callback_state::take(&path) {
            Ok(None) => return,
            Ok(Some(saved)) => saved,
            Err(e) => {
                error!("{e}; no callbacks restored");
                return;
            }
        };
        let t = self.time(now);
        let (mut restored, total) = (0, saved.len());
        for s in saved {
            let (queue, caller) = (s.queue.clone(), s.caller.clone());
            match self.core.restore_callback(t, s) {
                Ok(_) => restored += 1,
                Err(e) => {
                    let reason = match e {
                        EngineError::CallbackQueueGone(_) => "queue-gone",
                        _ => "not-restored",
                    };
                    warn!(%queue, %caller, "saved callback lost: {e}");
                    self.ops.report_line(
                        t,
                        "callback_lost",
                        json!({ "queue": queue, "caller": caller, "reason": reason }),
                    );
                    crate::ops::callback_log::count_lost_on_restore(&queue);
                }
            }
            self.flush(now);
        }
        info!("{restored} of {total} saved callback(s) restored from {}", path.display());
    }
}
