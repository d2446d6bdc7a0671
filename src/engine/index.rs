//! The available members of one queue, in the order its strategy tries them.
//!
//! A queue's index holds exactly the members whose agent is Available,
//! registered and not removed (the routing tag `Available`), less those
//! short of the queue's own skills when it has no relaxation, each filed
//! under a [`Key`]: tier first, then the strategy's own order (idle since,
//! calls answered, skill count, level on the queue's skills), then member
//! index. The engine re-files a member on every change of its agent's
//! routing state, so a decision walks the lowest open tier from its start
//! and stops at the first member past back-off and meeting the call's
//! skills, instead of collecting and sorting every available member.
//!
//! Beside the ordered set, each tier keeps its members in a plain list
//! (swap-remove, one position per member) so that `random` and
//! `weighted-random` draw a member in O(1) without building a pool.
//!
//! Always: a member is in `order` ⇔ `keys[m]` is `Some(k)` with `k` in
//! `order` ⇔ `m` is in `tiers[k.tier]` at position `pos[m]`.

use super::time::Time;
use std::collections::{btree_set, BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

/// Where a member stands in its queue's order; smaller is tried first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub tier: u32,
    /// The strategy's first criterion (0 when it has none).
    pub first: u64,
    /// Idle since, for strategies that break ties on it (else zero).
    pub idle: Time,
    pub member: u32,
}

impl Key {
    fn tier_range(tier: u32, from_member: u32) -> RangeInclusive<Key> {
        Key { tier, first: 0, idle: Time::ZERO, member: from_member }..=Key {
            tier,
            first: u64::MAX,
            idle: Time(u64::MAX),
            member: u32::MAX,
        }
    }
}

#[derive(Debug, Default)]
pub struct MemberIndex {
    order: BTreeSet<Key>,
    /// Per member index: its key while it is in the index.
    keys: Vec<Option<Key>>,
    /// Per tier: its members, in no particular order (for random draws).
    tiers: BTreeMap<u32, Vec<u32>>,
    /// Per member index: its position in its tier's list.
    pos: Vec<u32>,
}

impl MemberIndex {
    /// An empty index for a queue of `members` members.
    pub fn new(members: usize) -> MemberIndex {
        MemberIndex { keys: vec![None; members], pos: vec![0; members], ..MemberIndex::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn key(&self, m: u32) -> Option<Key> {
        self.keys.get(m as usize).copied().flatten()
    }

    /// Files member `key.member` under `key`, moving it if it was filed
    /// under another key.
    pub fn insert(&mut self, key: Key) {
        let m = key.member;
        if self.keys.len() <= m as usize {
            // Only a reload grows a queue, and it rebuilds the index; this
            // keeps a stray re-file in between from panicking.
            self.keys.resize(m as usize + 1, None);
            self.pos.resize(m as usize + 1, 0);
        }
        match self.key(m) {
            Some(old) if old == key => return,
            Some(old) if old.tier == key.tier => {
                self.order.remove(&old);
            }
            Some(_) => self.remove(m),
            None => {}
        }
        if self.key(m).is_none() {
            let list = self.tiers.entry(key.tier).or_default();
            self.pos[m as usize] = list.len() as u32;
            list.push(m);
        }
        self.order.insert(key);
        self.keys[m as usize] = Some(key);
    }

    /// Takes member `m` out, if it is in.
    pub fn remove(&mut self, m: u32) {
        let Some(key) = self.key(m) else {
            return;
        };
        self.order.remove(&key);
        self.keys[m as usize] = None;
        let list = self.tiers.get_mut(&key.tier).expect("a filed member's tier has a list");
        let at = self.pos[m as usize] as usize;
        list.swap_remove(at);
        if let Some(&moved) = list.get(at) {
            self.pos[moved as usize] = at as u32;
        }
        if list.is_empty() {
            self.tiers.remove(&key.tier);
        }
    }

    /// Tiers with at least one member, lowest first.
    pub fn tiers(&self) -> impl Iterator<Item = u32> + '_ {
        self.tiers.keys().copied()
    }

    /// The members of `tier` in order.
    pub fn tier(&self, tier: u32) -> btree_set::Range<'_, Key> {
        self.order.range(Key::tier_range(tier, 0))
    }

    /// The members of `tier` in order from the first whose key has no first
    /// criterion and no idle time and a member index of at least `member`
    /// (for round-robin, whose keys have neither).
    pub fn tier_from(&self, tier: u32, member: u32) -> btree_set::Range<'_, Key> {
        self.order.range(Key::tier_range(tier, member))
    }

    /// The members of `tier` in no particular order, for random draws.
    pub fn tier_members(&self, tier: u32) -> &[u32] {
        self.tiers.get(&tier).map_or(&[], |v| v.as_slice())
    }

    /// Checks the invariant in the module docs; the first breach, if any.
    #[cfg(test)]
    pub fn verify(&self) -> Result<(), String> {
        let filed = self.keys.iter().flatten().count();
        if filed != self.order.len() {
            return Err(format!("{filed} members have keys, {} are in order", self.order.len()));
        }
        let listed: usize = self.tiers.values().map(|v| v.len()).sum();
        if listed != self.order.len() {
            return Err(format!("{listed} members in tier lists, {} in order", self.order.len()));
        }
        for key in &self.order {
            if self.key(key.member) != Some(*key) {
                return Err(format!(
                    "member {} is in order under {key:?} but keyed {:?}",
                    key.member,
                    self.key(key.member)
                ));
            }
            let at = self.pos[key.member as usize] as usize;
            if self.tiers.get(&key.tier).and_then(|v| v.get(at)) != Some(&key.member) {
                return Err(format!("member {} is not at its position {at} in tier {}", key.member, key.tier));
            }
        }
        if self.tiers.values().any(|v| v.is_empty()) {
            return Err("an empty tier list is kept".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn key(m: u32, tier: u32, first: u64, idle: u64) -> Key {
        Key { tier, first, idle: Time(idle), member: m }
    }

    #[test]
    fn walks_a_tier_in_key_order_and_tiers_lowest_first() {
        let mut ix = MemberIndex::new(5);
        ix.insert(key(0, 2, 0, 5));
        ix.insert(key(1, 1, 0, 9));
        ix.insert(key(2, 1, 0, 3));
        ix.insert(key(3, 1, 1, 0));
        assert_eq!(ix.tiers().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(ix.tier(1).map(|k| k.member).collect::<Vec<_>>(), vec![2, 1, 3]);
        assert_eq!(ix.tier(2).map(|k| k.member).collect::<Vec<_>>(), vec![0]);
        // Re-filing moves a member, also across tiers.
        ix.insert(key(1, 1, 0, 1));
        ix.insert(key(0, 1, 0, 0));
        assert_eq!(ix.tier(1).map(|k| k.member).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        assert_eq!(ix.tiers().collect::<Vec<_>>(), vec![1]);
        ix.verify().unwrap();
    }

    #[test]
    fn round_robin_starts_at_a_member_index() {
        let mut ix = MemberIndex::new(6);
        for m in [0, 2, 3, 5] {
            ix.insert(key(m, 1, 0, 0));
        }
        assert_eq!(ix.tier_from(1, 3).map(|k| k.member).collect::<Vec<_>>(), vec![3, 5]);
        assert_eq!(ix.tier_from(1, 4).map(|k| k.member).collect::<Vec<_>>(), vec![5]);
        assert_eq!(ix.tier_from(1, 6).count(), 0);
    }

    /// Random inserts, re-files and removals against a brute-force model.
    #[test]
    fn stays_in_step_with_a_plain_map() {
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        for _ in 0..50 {
            let n = rng.random_range(1..40);
            let mut ix = MemberIndex::new(n);
            let mut model: Vec<Option<Key>> = vec![None; n];
            for _ in 0..400 {
                let m = rng.random_range(0..n as u32);
                if rng.random_bool(0.6) {
                    let k = key(m, rng.random_range(1..4), rng.random_range(0..3), rng.random_range(0..5));
                    ix.insert(k);
                    model[m as usize] = Some(k);
                } else {
                    ix.remove(m);
                    model[m as usize] = None;
                }
                ix.verify().unwrap();
                let mut want: Vec<Key> = model.iter().flatten().copied().collect();
                want.sort();
                let got: Vec<Key> = ix.tiers().flat_map(|t| ix.tier(t).copied().collect::<Vec<_>>()).collect();
                assert_eq!(got, want);
                assert_eq!(ix.len(), want.len());
                for t in 1..4 {
                    let mut members = ix.tier_members(t).to_vec();
                    members.sort();
                    let mut expect: Vec<u32> = want.iter().filter(|k| k.tier == t).map(|k| k.member).collect();
                    expect.sort();
                    assert_eq!(members, expect);
                }
            }
        }
    }
}
