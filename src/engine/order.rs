//! The waiting line of one queue: priority first, then arrival.
//!
//! Callers sit in one bucket per base priority, each bucket in arrival
//! order. With aging, a caller's effective priority is
//! `base + waited / aging_secs`; inside a bucket everyone has the same base,
//! so the oldest is also the most aged and buckets stay sorted by the same
//! key. Merging the bucket heads therefore yields the exact
//! priority-then-arrival order at any `now` without re-sorting, and removal
//! from the middle (abandon, answer) is `O(log n)`.

use super::time::Time;
use super::CallId;
use std::cmp::Reverse;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub call: CallId,
    pub entered: Time,
}

#[derive(Debug, Default)]
pub struct WaitingLine {
    buckets: BTreeMap<Reverse<i32>, BTreeMap<u64, Entry>>,
    len: usize,
}

impl WaitingLine {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn insert(&mut self, priority: i32, seq: u64, entry: Entry) {
        if self.buckets.entry(Reverse(priority)).or_default().insert(seq, entry).is_none() {
            self.len += 1;
        }
    }

    pub fn remove(&mut self, priority: i32, seq: u64) -> bool {
        let Some(bucket) = self.buckets.get_mut(&Reverse(priority)) else {
            return false;
        };
        let removed = bucket.remove(&seq).is_some();
        if bucket.is_empty() {
            self.buckets.remove(&Reverse(priority));
        }
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Callers whose base priority is `priority` or higher: the position of
    /// a caller who just joined at `priority`, ignoring aging. O(priorities).
    pub fn count_at_or_above(&self, priority: i32) -> usize {
        self.buckets.range(..=std::cmp::Reverse(priority)).map(|(_, b)| b.len()).sum()
    }

    /// Callers in service order at `now`.
    pub fn iter(&self, now: Time, aging_secs: u32) -> Ordered<'_> {
        let heads = self.buckets.iter().map(|(Reverse(p), b)| (*p, b.iter().peekable())).collect();
        Ordered { heads, now, aging_secs }
    }

    /// When the longest-waiting caller joined, for the longest-wait figure.
    pub fn oldest_entered(&self) -> Option<Time> {
        self.buckets.values().flat_map(|b| b.values().map(|e| e.entered)).min()
    }
}

pub fn effective_priority(base: i32, entered: Time, now: Time, aging_secs: u32) -> i64 {
    if aging_secs == 0 {
        base as i64
    } else {
        base as i64 + (now.since(entered).as_millis() as u64 / (aging_secs as u64 * 1000)) as i64
    }
}

type BucketIter<'a> = std::iter::Peekable<std::collections::btree_map::Iter<'a, u64, Entry>>;

pub struct Ordered<'a> {
    heads: Vec<(i32, BucketIter<'a>)>,
    now: Time,
    aging_secs: u32,
}

impl Iterator for Ordered<'_> {
    type Item = Entry;
    fn next(&mut self) -> Option<Entry> {
        let mut best: Option<(usize, i64, u64)> = None;
        for (i, (base, it)) in self.heads.iter_mut().enumerate() {
            let Some((&seq, e)) = it.peek() else { continue };
            let eff = effective_priority(*base, e.entered, self.now, self.aging_secs);
            let better = match best {
                None => true,
                Some((_, beff, bseq)) => eff > beff || (eff == beff && seq < bseq),
            };
            if better {
                best = Some((i, eff, seq));
            }
        }
        let (i, _, _) = best?;
        self.heads[i].1.next().map(|(_, e)| *e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(entries: &[(i32, u64, u64)]) -> WaitingLine {
        let mut l = WaitingLine::default();
        for &(p, seq, entered) in entries {
            l.insert(p, seq, Entry { call: CallId(seq), entered: Time::from_secs(entered) });
        }
        l
    }

    fn order(l: &WaitingLine, now: u64, aging: u32) -> Vec<u64> {
        l.iter(Time::from_secs(now), aging).map(|e| e.call.0).collect()
    }

    #[test]
    fn higher_priority_first_then_arrival() {
        let l = line(&[(0, 1, 0), (5, 2, 1), (0, 3, 2), (5, 4, 3)]);
        assert_eq!(order(&l, 10, 0), vec![2, 4, 1, 3]);
    }

    #[test]
    fn aging_lets_a_long_waiting_low_priority_caller_overtake() {
        // Priority 0 since t=0; a priority-2 caller arrives at t=90.
        let l = line(&[(0, 1, 0), (2, 2, 90)]);
        assert_eq!(order(&l, 90, 0), vec![2, 1], "without aging the VIP goes first");
        // Aging +1 per 30 s: at t=90 caller 1 is at 0+3 = 3 > 2.
        assert_eq!(order(&l, 90, 30), vec![1, 2]);
        // At t=60 (pretend) caller 1 is at 2 and ties on priority: arrival decides.
        assert_eq!(order(&l, 60, 30), vec![1, 2]);
        assert_eq!(order(&l, 59, 30), vec![2, 1]);
    }

    #[test]
    fn a_new_callers_position_counts_equal_and_higher_priorities() {
        let l = line(&[(0, 1, 0), (5, 2, 1), (0, 3, 2), (9, 4, 3)]);
        assert_eq!(l.count_at_or_above(0), 4);
        assert_eq!(l.count_at_or_above(5), 2);
        assert_eq!(l.count_at_or_above(6), 1);
        assert_eq!(l.count_at_or_above(10), 0);
    }

    #[test]
    fn removal_from_the_middle_keeps_order() {
        let mut l = line(&[(0, 1, 0), (0, 2, 1), (0, 3, 2)]);
        assert!(l.remove(0, 2));
        assert!(!l.remove(0, 2));
        assert_eq!(order(&l, 5, 0), vec![1, 3]);
        assert_eq!(l.len(), 2);
    }
}
