//! The RTP port range (`[media] rtp_port_min..rtp_port_max`): an even port
//! for RTP and the odd one above it for RTCP (RFC 3550 §11), handed out
//! least-recently-released first, so a late packet of an ended call does not
//! land in the next call that took its port.

use std::collections::{HashSet, VecDeque};

#[derive(Debug)]
pub struct PortPool {
    free: VecDeque<u16>,
    in_use: HashSet<u16>,
    capacity: usize,
}

impl PortPool {
    /// Pairs from `min` (rounded up to even) while the pair's RTCP port
    /// stays `<= max`.
    pub fn new(min: u16, max: u16) -> PortPool {
        let first = min + (min % 2);
        let free: VecDeque<u16> = (first as u32..max as u32).step_by(2).map(|p| p as u16).collect();
        let capacity = free.len();
        PortPool { free, in_use: HashSet::new(), capacity }
    }

    /// The RTP port of a free pair, or `None` when all are taken.
    pub fn allocate(&mut self) -> Option<u16> {
        let p = self.free.pop_front()?;
        self.in_use.insert(p);
        Some(p)
    }

    /// Gives a pair back; unknown ports are ignored (so a double release is
    /// harmless).
    pub fn release(&mut self, rtp_port: u16) {
        if self.in_use.remove(&rtp_port) {
            self.free.push_back(rtp_port);
        }
    }

    /// Pairs handed out and not released.
    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether a port (as given by `allocate`) is held.
    pub fn is_allocated(&self, rtp_port: u16) -> bool {
        self.in_use.contains(&rtp_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_and_inside_the_range() {
        let mut p = PortPool::new(20001, 20010);
        assert_eq!(p.capacity(), 4); // 20002, 20004, 20006, 20008 (RTCP 20009)
        let got: Vec<u16> = std::iter::from_fn(|| p.allocate()).collect();
        assert_eq!(got, vec![20002, 20004, 20006, 20008]);
        assert_eq!(p.allocate(), None);
        assert_eq!(p.in_use(), 4);
    }

    #[test]
    fn released_ports_come_back_last() {
        let mut p = PortPool::new(30000, 30006);
        let a = p.allocate().unwrap();
        let b = p.allocate().unwrap();
        p.release(a);
        p.release(a); // twice: harmless
        assert_eq!(p.in_use(), 1);
        assert_eq!(p.allocate(), Some(30004));
        assert_eq!(p.allocate(), Some(a));
        assert_eq!(p.allocate(), None);
        p.release(b);
        assert_eq!(p.allocate(), Some(b));
    }
}
