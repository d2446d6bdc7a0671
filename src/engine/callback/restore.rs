//! Pending callbacks across a restart (`engine.callback_state_file`): on
//! drain the shell takes them out with [`Engine::save_callbacks`] (instead
//! of their being lost) and writes them to the state file; at start-up it
//! feeds each back with [`Input::RestoreCallback`](crate::engine::Input::RestoreCallback).
//!
//! ```text
//!   pending (not being dialled) ── save_callbacks(now) ──► SavedCallback
//!        (queue name, caller, priority, skills, attempts, waited, retry
//!        delay left, wait_open); CallbackStep::Saved; the call finishes
//!   RestoreCallback { call, saved } ──► pending in the queue of that name,
//!        behind callbacks restored before it and ahead of any later
//!        arrival (a new arrival order), `arrived`/`entered` = now - waited
//!        (what the engine clock cannot go back to is kept in `waited_before`),
//!        offered not before now + the retry delay left;
//!        CallbackStep::Restored
//!   RestoreCallback for a queue that is gone (or has no callback_trunk
//!        any more) ──► Err(CallbackQueueGone), nothing changed (the shell
//!        records it lost)
//! ```

use super::super::{Call, CallState, Engine, Entry, Req, SkillId};
use super::Pending;
use crate::engine::{CallId, CallbackStep, EngineError, Event, Outcome, Time};
use std::sync::Arc;
use tracing::debug;

/// A pending callback as kept across a restart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedCallback {
    /// Its queue, by name.
    pub queue: String,
    /// The caller's number (From user): the number dialled back.
    pub caller: String,
    pub priority: i32,
    /// Skills the call itself asked for, with minimum levels.
    #[serde(default)]
    pub skills: Vec<(String, u8)>,
    /// Dials of the customer that failed so far.
    #[serde(default)]
    pub attempts: u32,
    /// How long it had waited (since reaching acd) when saved.
    pub waited_ms: u64,
    /// How long until it may be offered again (the initial or retry delay
    /// left), 0 when it was offerable.
    #[serde(default)]
    pub retry_in_ms: u64,
    /// Made by a closed queue's `when_closed = "callback"`: offered only
    /// while the queue is open.
    #[serde(default)]
    pub when_closed: bool,
}

impl Engine {
    /// Drain with a state file: every pending callback not being dialled,
    /// in arrival order, as saved (`caller_of` gives the number the shell
    /// keeps); each is reported ([`CallbackStep::Saved`]) and finished.
    /// Call before [`Input::Drain`](crate::engine::Input::Drain) (which
    /// reports any left as lost).
    pub fn save_callbacks(
        &mut self,
        now: Time,
        caller_of: impl Fn(CallId) -> Option<String>,
    ) -> Result<Vec<SavedCallback>, EngineError> {
        self.advance(now)?;
        let mut ids: Vec<(u64, CallId)> = self
            .calls
            .iter()
            .filter(|(_, x)| x.callback.is_some_and(|p| !p.dialling))
            .map(|(id, x)| (x.seq, *id))
            .collect();
        ids.sort();
        let mut out = Vec::new();
        for (_, c) in ids {
            let Some(caller) = caller_of(c) else { continue };
            let call = &self.calls[&c];
            let p = call.callback.expect("filtered");
            let skills = call
                .own
                .iter()
                .map(|r| {
                    let name = if r.skill == SkillId::UNDECLARED {
                        call.undeclared_skill.as_deref().unwrap_or("").to_string()
                    } else {
                        self.skills[r.skill.0 as usize].to_string()
                    };
                    (name, r.min)
                })
                .collect();
            let q = call.queue;
            out.push(SavedCallback {
                queue: self.queues[q.0 as usize].cfg.name.clone(),
                caller,
                priority: call.priority,
                skills,
                attempts: p.failed,
                waited_ms: (self.now.since(call.arrived) + call.waited_before).as_millis() as u64,
                retry_in_ms: p.not_before.since(self.now).as_millis() as u64,
                when_closed: p.wait_open,
            });
            self.withdraw_all_rings(c);
            self.events.push_back(Event::Callback { call: c, queue: q, step: CallbackStep::Saved });
            self.finish(c, Outcome::CallbackFailed { attempts: p.failed });
        }
        self.leave_empty_queues();
        self.dispatch();
        Ok(out)
    }

    /// [`Input::RestoreCallback`](crate::engine::Input::RestoreCallback).
    pub(in crate::engine) fn restore_callback(&mut self, c: CallId, s: SavedCallback) -> Result<(), EngineError> {
        if self.calls.contains_key(&c) {
            return Err(EngineError::DuplicateCall(c));
        }
        let gone = || EngineError::CallbackQueueGone(s.queue.clone());
        let q = self.queue_id(&s.queue).ok_or_else(gone)?;
        let queue = &self.queues[q.0 as usize];
        if queue.closed || queue.cfg.keypad.callback.is_none() {
            return Err(gone());
        }
        let mut own: Vec<Req> = Vec::new();
        let mut undeclared_skill = None;
        for (name, level) in &s.skills {
            let skill = match self.skill_ids.get(name) {
                Some(id) => *id,
                None => {
                    undeclared_skill.get_or_insert_with(|| Arc::from(name.as_str()));
                    SkillId::UNDECLARED
                }
            };
            super::super::upsert(&mut own, Req { skill, min: *level });
        }
        self.seq += 1;
        let (now, seq) = (self.now, self.seq);
        let arrived = Time(now.0.saturating_sub(s.waited_ms));
        let not_before = Time(now.0 + s.retry_in_ms);
        debug!(call = c.0, queue = %s.queue, waited_ms = s.waited_ms, "Restored => CallbackPending");
        self.events.push_back(Event::CallArrived {
            call: c,
            queue: q,
            caller: s.caller.clone(),
            priority: s.priority,
            attributes: vec![("restored".to_string(), "callback".to_string())],
        });
        self.calls.insert(
            c,
            Call {
                queue: q,
                priority: s.priority,
                own,
                undeclared_skill,
                arrived,
                entered: arrived,
                joined: now,
                seq,
                state: CallState::Waiting,
                ringing: Vec::new(),
                on_hold: false,
                callback: Some(Pending { not_before, failed: s.attempts, dialling: false, wait_open: s.when_closed }),
                consult_by: None,
                transferred: false,
                callback_offered: true,
                closed_prompt: None,
                waited_before: std::time::Duration::from_millis(s.waited_ms.saturating_sub(now.0)),
            },
        );
        self.queues[q.0 as usize].line.insert(s.priority, seq, Entry { call: c, entered: arrived });
        self.events.push_back(Event::Callback { call: c, queue: q, step: CallbackStep::Restored });
        self.arm_call_timers(c, false);
        self.dirty.insert(q);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
