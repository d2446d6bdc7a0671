//! One media shard's legs, sans-IO: the shell hands it packets and the time
//! (microseconds on its own clock), and sends what it is told to.
//!
//! Pacing: every listener of hold music sits in one of 20 one-millisecond
//! slots (handed out round-robin, so each millisecond carries a twentieth of
//! the listeners). Slot `ms` sends one 20 ms frame to the listeners of
//! `ms % 20`. One clock for all, no timer per caller; a music class plays
//! like a radio (everyone hears the same position, frame `ms / 20`), while
//! each listener keeps its own SSRC, sequence and timestamp ([`OutStream`]).
//!
//! Relay: a bridged leg's packets go out of the other leg's socket with that
//! leg's stream header, the payload type mapped (and the G.711 law
//! transcoded if the two sides settled on different ones).
//!
//! Symmetric RTP: a leg sends to the address its packets really come from
//! (the first packet latches it; a later move is followed only for the same
//! SSRC, e.g. a NAT rebinding), not to the SDP's address.
//!
//! Media timeout: a leg is *judged* while it is not held, not yet reported,
//! and either bridged (from the bridge on) or has sent at least one RTP
//! packet (a waiting caller on music whose trunk vanished without BYE). A
//! leg that never sent RTP outside a bridge (late offer, one-way trunk) is
//! not judged. Judged legs sit in [`Deadlines`], a heap of "silent since"
//! deadlines checked at most every 250 ms, so a check costs the legs whose
//! deadline passed, not every leg of the shard.

use super::audio::{Clip, FRAME_SAMPLES};
use super::dtmf::Detector;
use super::g711::{self, Codec};
use super::stream::OutStream;
use rtc_rtp::header::Header;
use rtc_shared::marshal::{Marshal, MarshalSize, Unmarshal};
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;

/// A leg's key: the call-control leg id.
pub type Key = u64;

const SLOTS: u64 = 20;
/// More behind than this (the thread was descheduled), the slots in between
/// are skipped rather than sent in a burst.
const MAX_CATCH_UP_MS: u64 = 200;
/// Lateness histogram: 100 µs buckets up to 50 ms.
const LATE_BUCKET_US: u64 = 100;
const LATE_BUCKETS: usize = 500;
/// The media timeout is judged at most this often.
const TIMEOUT_CHECK_US: u64 = 250_000;
/// Deadlines handled per `timed_out` call: legs that all came due at once
/// are spread over the next few calls instead of delaying a music slot.
const TIMEOUT_BATCH: usize = 512;
/// Digits kept between two [`Shard::take_digits`]: a phone cannot press
/// faster than this within one poll turn; more is a flood, dropped.
const MAX_DIGITS: usize = 256;

/// How a new leg starts.
#[derive(Debug, Clone)]
pub struct LegSetup {
    pub codec: Codec,
    pub dtmf_pt: Option<u8>,
    /// From the far end's SDP; `None` until known (or latched).
    pub remote: Option<SocketAddr>,
    /// Random initial values of acd's stream on this leg.
    pub ssrc: u32,
    pub seq: u16,
    pub ts: u32,
}

#[derive(Debug, Clone)]
pub struct MusicClass {
    pub name: String,
    pub clip: Clip,
}

#[derive(Debug, Clone)]
enum Mode {
    /// Nothing to send (ringing agent leg, or between music and bridge).
    Idle,
    Hold {
        class: usize,
        slot: u8,
        prompt: Option<(Clip, usize)>,
    },
    Bridged {
        peer: Key,
    },
}

#[derive(Debug)]
struct Leg {
    codec: Codec,
    dtmf_pt: Option<u8>,
    remote: Option<SocketAddr>,
    latched_ssrc: Option<u32>,
    out: OutStream,
    mode: Mode,
    /// Last RTP received, or when the bridge began or the stream resumed
    /// (media timeout).
    last_rx_us: u64,
    /// At least one RTP packet came in: from then on the leg is judged
    /// even while it waits on music.
    rx_seen: bool,
    timed_out: bool,
    /// The far end put the stream on hold (its SDP is not sendrecv): it
    /// may send nothing, so the media timeout does not judge it.
    held: bool,
    /// The stamp of this leg's live entry in [`Deadlines`], if any.
    watch: Option<u64>,
    /// Keypad digits while not bridged ([`super::dtmf`]).
    keys: Detector,
}

impl Leg {
    /// Whether the media timeout applies to this leg now.
    fn judged(&self) -> bool {
        !self.held && !self.timed_out && (self.rx_seen || matches!(self.mode, Mode::Bridged { .. }))
    }
}

/// The judged legs' deadlines: when each would have been silent for the
/// media timeout, by its `last_rx_us` at the time of the entry. Entries are
/// not updated per packet (that would be a heap operation per packet):
/// a leg still talking when its entry comes due gets a new one from its
/// latest packet, so a talking leg costs one heap push per timeout period.
/// An entry counts only while its stamp is the leg's `watch`; anything else
/// (a closed, re-opened, held or re-bridged leg) is dropped when it surfaces.
#[derive(Debug, Default)]
struct Deadlines {
    heap: BinaryHeap<Reverse<(u64, Key, u64)>>,
    next_stamp: u64,
}

impl Deadlines {
    /// Watches `leg` (again) from its `last_rx_us`, replacing any entry it had.
    fn watch(&mut self, key: Key, leg: &mut Leg, limit_us: u64) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        leg.watch = Some(stamp);
        // Timed out once silent for *more* than the limit.
        self.heap.push(Reverse((leg.last_rx_us + limit_us + 1, key, stamp)));
    }

    fn next(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }
}

/// Counters for metrics, tests and the benchmark.
#[derive(Debug, Clone, Default)]
pub struct ShardStats {
    pub generated: u64,
    pub relayed: u64,
    pub received: u64,
    /// Not RTP, unknown payload type, or no address to send to.
    pub dropped: u64,
    /// Slots skipped because the shard was more than 200 ms behind.
    pub skipped_slots: u64,
    /// How late frames were sent against their slot, 100 µs buckets.
    pub lateness: Vec<u64>,
}

impl ShardStats {
    /// The `q` quantile (0..1) of pacing lateness in microseconds (bucket
    /// upper bound), over every generated frame so far.
    pub fn lateness_quantile_us(&self, q: f64) -> u64 {
        let total: u64 = self.lateness.iter().sum();
        if total == 0 {
            return 0;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.lateness.iter().enumerate() {
            seen += n;
            if seen >= want {
                return (i as u64 + 1) * LATE_BUCKET_US;
            }
        }
        LATE_BUCKETS as u64 * LATE_BUCKET_US
    }

    /// What happened between `earlier` (a previous reading of the same
    /// counters) and now.
    pub fn since(&self, earlier: &ShardStats) -> ShardStats {
        let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
        ShardStats {
            generated: self.generated.saturating_sub(earlier.generated),
            relayed: self.relayed.saturating_sub(earlier.relayed),
            received: self.received.saturating_sub(earlier.received),
            dropped: self.dropped.saturating_sub(earlier.dropped),
            skipped_slots: self.skipped_slots.saturating_sub(earlier.skipped_slots),
            lateness: (0..self.lateness.len())
                .map(|i| at(&self.lateness, i).saturating_sub(at(&earlier.lateness, i)))
                .collect(),
        }
    }

    pub fn merge(&mut self, o: &ShardStats) {
        self.generated += o.generated;
        self.relayed += o.relayed;
        self.received += o.received;
        self.dropped += o.dropped;
        self.skipped_slots += o.skipped_slots;
        if self.lateness.len() < o.lateness.len() {
            self.lateness.resize(o.lateness.len(), 0);
        }
        for (a, b) in self.lateness.iter_mut().zip(&o.lateness) {
            *a += b;
        }
    }
}

/// What to do with a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send `buf[..len]` (rewritten in place) out of `via`'s socket to `to`.
    Forward {
        via: Key,
        to: SocketAddr,
        len: usize,
    },
    Drop,
}

pub struct Shard {
    legs: FxHashMap<Key, Leg>,
    classes: Vec<MusicClass>,
    slots: Vec<Vec<Key>>,
    /// The next slot (absolute millisecond) to play.
    next_ms: u64,
    rr: usize,
    media_timeout_us: Option<u64>,
    next_timeout_check_us: u64,
    deadlines: Deadlines,
    stats: ShardStats,
    scratch: Vec<i16>,
    scratch_bytes: Vec<u8>,
    /// Digits pressed on legs not bridged, for [`Shard::take_digits`].
    digits: Vec<(Key, char)>,
}

impl Shard {
    pub fn new(classes: Vec<MusicClass>, media_timeout_secs: u32, now_us: u64) -> Shard {
        Shard {
            legs: FxHashMap::default(),
            classes,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            next_ms: now_us / 1000 + 1,
            rr: 0,
            media_timeout_us: (media_timeout_secs > 0).then_some(media_timeout_secs as u64 * 1_000_000),
            next_timeout_check_us: 0,
            deadlines: Deadlines::default(),
            stats: ShardStats { lateness: vec![0; LATE_BUCKETS], ..Default::default() },
            scratch: Vec::new(),
            scratch_bytes: Vec::new(),
            digits: Vec::new(),
        }
    }

    /// New music (a reload): listeners keep their class by name, or go to
    /// the first class when theirs is gone.
    pub fn set_classes(&mut self, classes: Vec<MusicClass>, media_timeout_secs: u32) {
        let names: Vec<String> = self.classes.iter().map(|c| c.name.clone()).collect();
        for leg in self.legs.values_mut() {
            if let Mode::Hold { class, .. } = &mut leg.mode {
                *class = classes.iter().position(|c| c.name == names[*class]).unwrap_or(0);
            }
        }
        self.classes = classes;
        let limit = (media_timeout_secs > 0).then_some(media_timeout_secs as u64 * 1_000_000);
        if limit != self.media_timeout_us {
            // Every entry was computed with the old limit: start over.
            self.media_timeout_us = limit;
            self.deadlines.heap.clear();
            for (key, leg) in self.legs.iter_mut() {
                leg.watch = None;
                if let Some(limit) = limit.filter(|_| leg.judged()) {
                    self.deadlines.watch(*key, leg, limit);
                }
            }
        }
    }

    pub fn leg_count(&self) -> usize {
        self.legs.len()
    }
    pub fn listener_count(&self) -> usize {
        self.slots.iter().map(Vec::len).sum()
    }
    pub fn stats(&self) -> &ShardStats {
        &self.stats
    }
    /// Where a leg's RTP goes now (the SDP's address or the latched one).
    pub fn remote(&self, key: Key) -> Option<SocketAddr> {
        self.legs.get(&key).and_then(|l| l.remote)
    }

    pub fn open(&mut self, key: Key, s: LegSetup) {
        self.close(key);
        self.legs.insert(
            key,
            Leg {
                codec: s.codec,
                dtmf_pt: s.dtmf_pt,
                remote: s.remote,
                latched_ssrc: None,
                out: OutStream::new(s.ssrc, s.seq, s.ts),
                mode: Mode::Idle,
                last_rx_us: 0,
                rx_seen: false,
                timed_out: false,
                held: false,
                watch: None,
                keys: Detector::default(),
            },
        );
    }

    pub fn close(&mut self, key: Key) {
        self.set_mode(key, Mode::Idle, 0);
        self.legs.remove(&key);
    }

    /// The far end's SDP arrived (an agent's answer).
    pub fn set_remote(&mut self, key: Key, remote: Option<SocketAddr>, codec: Codec, dtmf_pt: Option<u8>) {
        if let Some(leg) = self.legs.get_mut(&key) {
            if leg.latched_ssrc.is_none() {
                leg.remote = remote.or(leg.remote);
            } else if remote.is_some() && remote != leg.remote {
                // Early RTP latched another device of a forked offer (or a
                // stale address): the answer's address now, the next packet
                // latches again.
                leg.remote = remote;
                leg.latched_ssrc = None;
            }
            leg.codec = codec;
            leg.dtmf_pt = dtmf_pt;
        }
    }

    /// The far end's SDP says it holds the stream (`true`) or resumed it.
    pub fn set_held(&mut self, key: Key, held: bool, now_us: u64) {
        if let Some(leg) = self.legs.get_mut(&key) {
            let resumed = leg.held && !held;
            leg.held = held;
            if resumed {
                leg.last_rx_us = now_us; // the timeout starts again on resume
                if let Some(limit) = self.media_timeout_us.filter(|_| leg.judged()) {
                    self.deadlines.watch(key, leg, limit);
                }
            }
            // Held: its entry is dropped when it comes due.
        }
    }

    /// Starts hold music of class `class` (by name; unknown names play the
    /// first class).
    pub fn hold(&mut self, key: Key, class: &str) {
        let class = self.classes.iter().position(|c| c.name == class).unwrap_or(0);
        let slot = (self.rr % SLOTS as usize) as u8;
        self.rr += 1;
        self.set_mode(key, Mode::Hold { class, slot, prompt: None }, 0);
    }

    pub fn stop_hold(&mut self, key: Key) {
        if matches!(self.legs.get(&key).map(|l| &l.mode), Some(Mode::Hold { .. })) {
            self.set_mode(key, Mode::Idle, 0);
        }
    }

    /// Plays `clip` to a listener, then its music again; after the one
    /// playing, if one is (a position announcement and a periodic one due
    /// at the same time are both heard). Ignored unless the leg is on hold
    /// (an announcement never talks over an agent).
    pub fn announce(&mut self, key: Key, clip: Clip) {
        if let Some(Leg { mode: Mode::Hold { prompt, .. }, .. }) = self.legs.get_mut(&key) {
            *prompt = Some(match prompt.take() {
                // The playing clip is the prefix, so the frame index stays right.
                Some((playing, i)) if i < playing.frames() => (Clip::concat(&[&playing, &clip]), i),
                _ => (clip, 0),
            });
        }
    }

    /// Connects two legs' media both ways.
    pub fn bridge(&mut self, a: Key, b: Key, now_us: u64) {
        if !self.legs.contains_key(&a) || !self.legs.contains_key(&b) {
            return;
        }
        self.set_mode(a, Mode::Bridged { peer: b }, now_us);
        self.set_mode(b, Mode::Bridged { peer: a }, now_us);
    }

    fn set_mode(&mut self, key: Key, mode: Mode, now_us: u64) {
        let Some(leg) = self.legs.get_mut(&key) else { return };
        match &leg.mode {
            Mode::Hold { slot, .. } => {
                let bucket = &mut self.slots[*slot as usize];
                if let Some(i) = bucket.iter().position(|k| *k == key) {
                    bucket.swap_remove(i);
                }
            }
            Mode::Bridged { peer } => {
                let peer = *peer;
                // The other side stops relaying to a leg that is leaving (and
                // stays judged only if it ever sent RTP).
                if let Some(p) = self.legs.get_mut(&peer) {
                    if matches!(p.mode, Mode::Bridged { peer: pp } if pp == key) {
                        p.mode = Mode::Idle;
                    }
                }
            }
            Mode::Idle => {}
        }
        let leg = self.legs.get_mut(&key).expect("leg exists");
        match &mode {
            Mode::Hold { slot, .. } => self.slots[*slot as usize].push(key),
            Mode::Bridged { .. } => {
                leg.last_rx_us = now_us;
                leg.timed_out = false;
            }
            Mode::Idle => {}
        }
        let bridged = matches!(mode, Mode::Bridged { .. });
        leg.mode = mode;
        if let Some(limit) = self.media_timeout_us.filter(|_| bridged && leg.judged()) {
            self.deadlines.watch(key, leg, limit);
        }
    }

    /// When the shell must call in next, on this shard's clock.
    pub fn next_deadline_us(&self) -> Option<u64> {
        let slot = (self.listener_count() > 0).then_some(self.next_ms * 1000);
        let timeout = self.deadlines.next().map(|at| at.max(self.next_timeout_check_us));
        slot.into_iter().chain(timeout).min()
    }

    /// The next slot to play if it is due at `now_us`.
    pub fn due_slot(&mut self, now_us: u64) -> Option<u64> {
        if self.listener_count() == 0 {
            // Nothing to pace: keep the slot clock at the present.
            self.next_ms = self.next_ms.max(now_us / 1000 + 1);
            return None;
        }
        if self.next_ms * 1000 > now_us {
            return None;
        }
        let behind = now_us / 1000 - self.next_ms;
        if behind > MAX_CATCH_UP_MS {
            self.stats.skipped_slots += behind;
            self.next_ms = now_us / 1000;
        }
        Some(self.next_ms)
    }

    /// Plays slot `ms`: one frame to each of its listeners. `send` gets the
    /// leg, the destination and the packet; `clock` is read every few dozen
    /// packets to record how late they leave.
    pub fn play_slot(
        &mut self,
        ms: u64,
        clock: &mut impl FnMut() -> u64,
        mut send: impl FnMut(Key, SocketAddr, &[u8]) -> bool,
    ) {
        self.next_ms = ms + 1;
        let slot = (ms % SLOTS) as usize;
        let frame_no = (ms / SLOTS) as usize;
        let at_us = ms * 1000;
        let mut buf = [0u8; 12 + FRAME_SAMPLES];
        let mut now = clock();
        for i in 0..self.slots[slot].len() {
            if i % 32 == 31 {
                now = clock();
            }
            let key = self.slots[slot][i];
            let Some(leg) = self.legs.get_mut(&key) else { continue };
            let Mode::Hold { class, prompt, .. } = &mut leg.mode else { continue };
            let Some(to) = leg.remote else { continue };
            let payload = match prompt {
                Some((clip, pos)) if *pos < clip.frames() => {
                    *pos += 1;
                    clip.frame(leg.codec, *pos - 1)
                }
                _ => {
                    *prompt = None;
                    let Some(c) = self.classes.get(*class) else { continue };
                    c.clip.frame(leg.codec, frame_no)
                }
            };
            let h = leg.out.generated(at_us, FRAME_SAMPLES as u32);
            let header = Header {
                version: 2,
                marker: h.marker,
                payload_type: leg.codec.payload_type(),
                sequence_number: h.seq,
                timestamp: h.ts,
                ssrc: h.ssrc,
                ..Default::default()
            };
            let Ok(n) = header.marshal_to(&mut buf) else { continue };
            let len = n + payload.len();
            buf[n..len].copy_from_slice(payload);
            if send(key, to, &buf[..len]) {
                self.stats.generated += 1;
            } else {
                self.stats.dropped += 1;
            }
            let late = now.saturating_sub(at_us) / LATE_BUCKET_US;
            self.stats.lateness[(late as usize).min(LATE_BUCKETS - 1)] += 1;
        }
    }

    /// A packet arrived on `key`'s RTP socket from `from`; `buf[..len]` may
    /// be rewritten in place for forwarding.
    pub fn on_rtp(&mut self, now_us: u64, key: Key, from: SocketAddr, buf: &mut [u8], len: usize) -> Verdict {
        let Some(leg) = self.legs.get_mut(&key) else { return Verdict::Drop };
        let Ok(header) = Header::unmarshal(&mut &buf[..len]) else {
            self.stats.dropped += 1;
            return Verdict::Drop;
        };
        if header.version != 2 {
            self.stats.dropped += 1;
            return Verdict::Drop;
        }
        self.stats.received += 1;
        leg.last_rx_us = now_us;
        leg.rx_seen = true;
        if leg.watch.is_none() {
            // The first packet (or the first since a report or a hold).
            if let Some(limit) = self.media_timeout_us.filter(|_| leg.judged()) {
                self.deadlines.watch(key, leg, limit);
            }
        }
        match leg.latched_ssrc {
            None => {
                leg.remote = Some(from);
                leg.latched_ssrc = Some(header.ssrc);
            }
            Some(s) if leg.remote != Some(from) && s == header.ssrc => leg.remote = Some(from),
            Some(s) if s != header.ssrc && leg.remote == Some(from) => leg.latched_ssrc = Some(header.ssrc),
            _ => {}
        }
        let Mode::Bridged { peer } = leg.mode else {
            // A waiting caller's keypad (a bridge relays digits instead).
            if Some(header.payload_type) == leg.dtmf_pt && self.digits.len() < MAX_DIGITS {
                let payload = &buf[header.marshal_size().min(len)..len];
                if let Some(d) = leg.keys.on_packet(header.ssrc, header.timestamp, payload) {
                    self.digits.push((key, d));
                }
            }
            return Verdict::Drop;
        };
        let (in_codec, in_dtmf) = (leg.codec, leg.dtmf_pt);
        let Some(p) = self.legs.get_mut(&peer) else { return Verdict::Drop };
        let Some(to) = p.remote else {
            self.stats.dropped += 1;
            return Verdict::Drop;
        };
        let pt = header.payload_type;
        let (out_pt, transcode) = if pt == in_codec.payload_type() {
            (p.codec.payload_type(), in_codec != p.codec)
        } else if Some(pt) == in_dtmf && p.dtmf_pt.is_some() {
            (p.dtmf_pt.unwrap_or(pt), false)
        } else {
            // Comfort noise, DTMF the other side cannot take, or junk.
            self.stats.dropped += 1;
            return Verdict::Drop;
        };
        let h = p.out.relayed(now_us, header.ssrc, header.sequence_number, header.timestamp, header.marker);
        let hlen = header.marshal_size();
        let new = Header {
            marker: h.marker,
            payload_type: out_pt,
            sequence_number: h.seq,
            timestamp: h.ts,
            ssrc: h.ssrc,
            csrc: Vec::new(),
            ..header
        };
        let mut out_len = len;
        if new.marshal_size() != hlen {
            // CSRCs dropped (acd is the source now): move the payload up.
            let nlen = new.marshal_size();
            buf.copy_within(hlen..len, nlen);
            out_len = len - hlen + nlen;
        }
        if new.marshal_to(&mut buf[..out_len]).is_err() {
            self.stats.dropped += 1;
            return Verdict::Drop;
        }
        if transcode {
            let start = new.marshal_size();
            let end = out_len - if new.padding { buf[out_len - 1] as usize } else { 0 };
            if start < end {
                self.scratch.clear();
                g711::decode(in_codec, &buf[start..end], &mut self.scratch);
                self.scratch_bytes.clear();
                g711::encode(p.codec, &self.scratch, &mut self.scratch_bytes);
                buf[start..end].copy_from_slice(&self.scratch_bytes);
            }
        }
        self.stats.relayed += 1;
        Verdict::Forward { via: peer, to, len: out_len }
    }

    /// Keys pressed on legs that are not bridged (a caller on music), in
    /// order, since the last call.
    pub fn take_digits(&mut self) -> Vec<(Key, char)> {
        std::mem::take(&mut self.digits)
    }

    /// Judged legs (see the module doc) silent for longer than the media
    /// timeout, each reported once (again only after a new bridge). Checked
    /// at most every 250 ms; a check visits only the legs whose deadline
    /// passed.
    pub fn timed_out(&mut self, now_us: u64) -> Vec<Key> {
        let Some(limit) = self.media_timeout_us else { return Vec::new() };
        if now_us < self.next_timeout_check_us || self.deadlines.next().is_none_or(|at| at > now_us) {
            return Vec::new();
        }
        self.next_timeout_check_us = now_us + TIMEOUT_CHECK_US;
        let mut out = Vec::new();
        let mut handled = 0;
        while let Some(&Reverse((at, key, stamp))) = self.deadlines.heap.peek() {
            if at > now_us {
                break;
            }
            if handled == TIMEOUT_BATCH {
                self.next_timeout_check_us = now_us; // the rest on the next call
                break;
            }
            handled += 1;
            self.deadlines.heap.pop();
            let Some(leg) = self.legs.get_mut(&key) else { continue };
            if leg.watch != Some(stamp) {
                continue; // superseded
            }
            leg.watch = None;
            if !leg.judged() {
                continue; // held since; watched again on resume
            }
            if now_us.saturating_sub(leg.last_rx_us) > limit {
                leg.timed_out = true;
                out.push(key);
            } else {
                self.deadlines.watch(key, leg, limit); // it talked since
            }
        }
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests;
