//! Engine time: milliseconds on a clock the caller owns.
//!
//! The core never reads a clock. The shell maps its monotonic clock onto
//! [`Time`] (milliseconds since it started the engine); tests use a virtual
//! clock and jump straight to the next timer.

use std::time::Duration;

/// An instant on the engine's clock, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub u64);

impl Time {
    pub const ZERO: Time = Time(0);

    pub fn from_secs(s: u64) -> Time {
        Time(s * 1000)
    }
    pub fn from_millis(ms: u64) -> Time {
        Time(ms)
    }
    pub fn as_millis(self) -> u64 {
        self.0
    }
    /// `self - earlier`, zero if `earlier` is later.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
    pub fn plus_secs(self, s: u32) -> Time {
        Time(self.0 + s as u64 * 1000)
    }
}

impl std::ops::Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0 + d.as_millis() as u64)
    }
}

impl std::fmt::Display for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "t={}.{:03}s", self.0 / 1000, self.0 % 1000)
    }
}
