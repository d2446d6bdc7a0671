//! Pending callbacks across a restart, on call control's side: at drain the
//! engine's pending callbacks are taken out with the number each is to be
//! dialled back on; at start-up each saved one becomes a call in Callback
//! (no caller leg, as after the confirmation prompt) and the engine's
//! [`Input::RestoreCallback`]. The shell does the file (`shell/callback_state.rs`).

use super::state::{CallState, Next};
use super::{Call, Core, LegId};
use crate::engine::{CallId, EngineError, Input, SavedCallback, Time};
use tracing::info;

impl Core {
    /// Drain with a state file: the pending callbacks (not being dialled),
    /// in arrival order, taken out of the engine (each a `callback_saved`
    /// event) and dropped here. Call before [`Core::drain`].
    pub fn save_callbacks(&mut self, now: Time) -> Vec<SavedCallback> {
        let calls = &self.calls;
        let r = self.engine.save_callbacks(now, |c| calls.get(&c).map(|x| x.caller.clone()));
        let saved = match r {
            Ok(saved) => saved,
            Err(e) => {
                self.bug(e.into());
                Vec::new()
            }
        };
        self.pump();
        self.forget_finished_callbacks();
        saved
    }

    /// Start-up: `saved` is pending again as a new call. On `Err` (its queue
    /// is gone) nothing is kept.
    pub fn restore_callback(&mut self, now: Time, saved: SavedCallback) -> Result<CallId, EngineError> {
        let call = self.new_call_id(None);
        // The caller leg ended before the restart: an id in no leg map.
        let leg = LegId(self.next_leg);
        self.next_leg += 1;
        let caller = saved.caller.clone();
        self.calls.insert(
            call,
            Call {
                caller_leg: leg,
                caller: caller.clone(),
                state: CallState::Callback,
                legs: Vec::new(),
                refused_refer: None,
                refer_waiting: None,
            },
        );
        let r = self.engine.handle(now, Input::RestoreCallback { call, saved });
        if let Err(e) = r {
            self.set_state(call, Next::Ended, "saved callback not restored");
            self.pump();
            return Err(e);
        }
        info!(%call, %caller, "callback restored from the state file");
        self.pump();
        Ok(call)
    }
}
