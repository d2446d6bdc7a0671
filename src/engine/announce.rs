//! What a waiting caller is told: position / estimated-wait announcements
//! (`announce_every_secs`, saying the place, the wait or both as the queue's
//! `announce_position` / `announce_wait` ask) and the queue's recorded
//! periodic announcements (`periodic_announce`, played in turn every
//! `periodic_announce_every_secs`, Asterisk's `periodic-announce`).
//!
//! Both are timers per call, armed when the call joins a queue (again after a
//! transfer into another one), kept across a reload that leaves them on, and
//! cancelled when the call leaves the line. Which recorded file plays is a
//! function of how long the caller has waited in this queue, so it needs no
//! state of its own: the first play is file 0, the next file 1, and so on
//! round the list. When both fall due at once the media plays one after the
//! other.

use super::{Action, AgentState, CallId, CallState, Engine, Time, TimerKind};

impl Engine {
    /// Sets or clears the two announcement timers of a waiting call from its
    /// queue's settings. `joined`: the call just joined, so both restart;
    /// otherwise (a reload, a routing step) a running timer keeps its time.
    pub(super) fn arm_announcements(&mut self, c: CallId, joined: bool) {
        let cfg = &self.queues[self.calls[&c].queue.0 as usize].cfg;
        let plan = [
            (TimerKind::Announce(c), cfg.announce_every_secs),
            (
                TimerKind::PeriodicAnnounce(c),
                if cfg.periodic_announce.is_empty() { 0 } else { cfg.periodic_announce_every_secs },
            ),
        ];
        for (kind, every) in plan {
            if every == 0 {
                self.timers.cancel(kind);
            } else if joined || !self.timers.is_set(kind) {
                self.timers.set(kind, self.now.plus_secs(every));
            }
        }
    }

    /// A waiting caller's place in its queue (1 = next; 0 when not in the
    /// line) and estimated wait in seconds: place × the queue's average
    /// handle time ÷ its logged-in members (the callback offer uses it too).
    pub(super) fn estimated_wait(&self, c: CallId, now: Time) -> (u32, u32) {
        let Some(call) = self.calls.get(&c) else { return (0, 0) };
        let queue = &self.queues[call.queue.0 as usize];
        let position = queue.line.iter(now, queue.cfg.aging_secs).position(|e| e.call == c).map_or(0, |p| p as u32 + 1);
        let staffed = queue
            .members
            .iter()
            .filter(|m| self.agents[m.agent.0 as usize].state != AgentState::LoggedOut)
            .count()
            .max(1) as u64;
        (position, (position as u64 * queue.avg_handle_ms / staffed / 1000) as u32)
    }

    pub(super) fn fire_announce(&mut self, c: CallId, now: Time) {
        let Some(call) = self.calls.get(&c) else { return };
        let (position, estimated_wait_secs) = self.estimated_wait(c, now);
        let cfg = &self.queues[call.queue.0 as usize].cfg;
        if position > 0 {
            self.actions.push_back(Action::Announce {
                call: c,
                position: cfg.announce_position.then_some(position),
                estimated_wait_secs: cfg.announce_wait.then_some(estimated_wait_secs),
            });
        }
        if cfg.announce_every_secs > 0 {
            self.timers.set(TimerKind::Announce(c), now.plus_secs(cfg.announce_every_secs));
        }
    }

    pub(super) fn fire_periodic(&mut self, c: CallId, now: Time) {
        let Some(call) = self.calls.get(&c) else { return };
        let cfg = &self.queues[call.queue.0 as usize].cfg;
        let (files, every) = (&cfg.periodic_announce, cfg.periodic_announce_every_secs);
        if files.is_empty() || every == 0 {
            return;
        }
        // In the line (waiting, or ringing an agent): not yet bridged.
        if matches!(call.state, CallState::Waiting | CallState::Offering) {
            // The n-th play since the caller joined (n >= 1): file n-1, round the list.
            let plays = (now.since(call.joined).as_millis() as u64 / (every as u64 * 1000)).max(1);
            let file = files[((plays - 1) % files.len() as u64) as usize].clone();
            self.actions.push_back(Action::PlayFile { call: c, file });
        }
        self.timers.set(TimerKind::PeriodicAnnounce(c), now.plus_secs(every));
    }
}
