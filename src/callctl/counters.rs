//! What call control counts: races between peers, which are normal, and
//! bugs, which are not. Both are plain counters; of the bugs only the last
//! [`RECENT_ERRORS`] are kept, for tests and diagnostics, so nothing here
//! grows with the life of the process.

use std::collections::VecDeque;

use super::CallCtlError;

/// How many of the latest errors [`Errors`] keeps.
pub const RECENT_ERRORS: usize = 64;

/// A race between acd and a peer: both acted on what they knew, and the
/// messages crossed. Normal on a real network; counted, logged at debug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Race {
    /// A 2xx on an INVITE acd had cancelled (the CANCEL crossed the answer):
    /// the leg is BYEd.
    AnswerAfterCancel,
    /// A final other than 487 (or no response) on an INVITE acd had
    /// cancelled: a 486 or 603 crossing the CANCEL.
    FinalAfterCancel,
    /// A response for an offer the engine withdrew at that same instant (its
    /// ring timeout fired first): an answered leg is BYEd.
    OfferWithdrawn,
    /// The caller's CANCEL crossed our 200 OK: handled as a hang-up.
    CancelAfterAnswer,
    /// An event on a leg acd had already ended (a BYE crossing ours, a
    /// response for a leg already released).
    LegAlreadyEnded,
}

impl Race {
    pub const ALL: [Race; 5] = [
        Race::AnswerAfterCancel,
        Race::FinalAfterCancel,
        Race::OfferWithdrawn,
        Race::CancelAfterAnswer,
        Race::LegAlreadyEnded,
    ];

    /// The metric label (`acd_call_races_total{kind}`).
    pub fn name(self) -> &'static str {
        match self {
            Race::AnswerAfterCancel => "answer-after-cancel",
            Race::FinalAfterCancel => "final-after-cancel",
            Race::OfferWithdrawn => "offer-withdrawn",
            Race::CancelAfterAnswer => "cancel-after-answer",
            Race::LegAlreadyEnded => "leg-already-ended",
        }
    }
}

/// Races the core absorbed since start, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RaceCounters {
    counts: [u64; Race::ALL.len()],
}

impl RaceCounters {
    pub fn get(&self, race: Race) -> u64 {
        self.counts[race as usize]
    }
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
    /// Each kind with its count.
    pub fn by_kind(&self) -> impl Iterator<Item = (Race, u64)> + '_ {
        Race::ALL.into_iter().map(|r| (r, self.get(r)))
    }
    pub(super) fn count(&mut self, race: Race) {
        self.counts[race as usize] += 1;
    }
}

/// Bugs seen since start: how many of each kind, and the last
/// [`RECENT_ERRORS`] of them.
#[derive(Debug, Clone, Default)]
pub struct Errors {
    total: u64,
    by_kind: [u64; CallCtlError::KINDS.len()],
    recent: VecDeque<CallCtlError>,
}

impl Errors {
    /// Errors since start, including those no longer kept.
    pub fn total(&self) -> u64 {
        self.total
    }
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
    /// Errors since start of one kind ([`CallCtlError::kind`]).
    pub fn of_kind(&self, kind: &str) -> u64 {
        CallCtlError::KINDS.iter().position(|k| *k == kind).map_or(0, |i| self.by_kind[i])
    }
    /// The latest errors, oldest first (at most [`RECENT_ERRORS`]).
    pub fn recent(&self) -> impl ExactSizeIterator<Item = &CallCtlError> {
        self.recent.iter()
    }
    pub(super) fn push(&mut self, e: CallCtlError) {
        self.total += 1;
        let i = CallCtlError::KINDS.iter().position(|k| *k == e.kind()).expect("kind listed");
        self.by_kind[i] += 1;
        if self.recent.len() == RECENT_ERRORS {
            self.recent.pop_front();
        }
        self.recent.push_back(e);
    }
}
