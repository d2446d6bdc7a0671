//! The shell's own deadlines in one table (quinn-proto's `TimerTable`
//! shape): one slot per kind, the loop sleeps until the earliest of these
//! and the core's, front door's and adapter's `poll_timeout`s.

use tokio::time::Instant;

/// What the shell itself waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// OPTIONS pings to registered phones (`sip.options_interval_secs`).
    KeepAlive,
    /// Metrics gauges and published counters (every second).
    Refresh,
    /// Orphaned media and the media gauges (every 5 s).
    MediaSweep,
    /// SIGTERM's grace period, then the moment the last BYEs are given up.
    Drain,
    /// The config file changed: reload once it has been quiet this long.
    Reload,
    /// A callback confirmation prompt is over: BYE that caller.
    CallbackBye,
}

const KINDS: usize = 6;

impl Timer {
    const ALL: [Timer; KINDS] =
        [Timer::KeepAlive, Timer::Refresh, Timer::MediaSweep, Timer::Drain, Timer::Reload, Timer::CallbackBye];
    fn slot(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Default, Clone)]
pub struct TimerTable {
    at: [Option<Instant>; KINDS],
}

impl TimerTable {
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer.slot()] = Some(at);
    }

    pub fn stop(&mut self, timer: Timer) {
        self.at[timer.slot()] = None;
    }

    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer.slot()]
    }

    pub fn is_set(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    /// The earliest deadline set.
    pub fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// Takes the next timer due at `now` out of the table (it is stopped; a
    /// periodic one is set again by its handler).
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let t = Timer::ALL.into_iter().find(|t| self.get(*t).is_some_and(|at| at <= now))?;
        self.stop(t);
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_timers_come_out_once_and_the_rest_stay() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        assert_eq!(table.next(), None);
        table.set(Timer::Refresh, t0 + Duration::from_secs(1));
        table.set(Timer::Drain, t0 + Duration::from_secs(30));
        table.set(Timer::KeepAlive, t0 + Duration::from_millis(500));
        assert_eq!(table.next(), Some(t0 + Duration::from_millis(500)));
        let now = t0 + Duration::from_secs(2);
        let mut due = Vec::new();
        while let Some(t) = table.pop_due(now) {
            due.push(t);
        }
        assert_eq!(due, vec![Timer::KeepAlive, Timer::Refresh]);
        assert_eq!(table.next(), Some(t0 + Duration::from_secs(30)));
        assert!(table.is_set(Timer::Drain) && !table.is_set(Timer::Refresh));
    }
}
