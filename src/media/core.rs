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
mod tests {
    use super::*;
    use crate::media::audio::Clip;

    fn class(name: &str, level: i16) -> MusicClass {
        // A recognisable square-ish wave so frames differ from silence.
        let pcm: Vec<i16> = (0..1600).map(|i| if i % 16 < 8 { level } else { -level }).collect();
        MusicClass { name: name.into(), clip: Clip::from_pcm(&pcm) }
    }

    fn setup(remote: &str, ssrc: u32) -> LegSetup {
        LegSetup { codec: Codec::Pcmu, dtmf_pt: Some(101), remote: Some(remote.parse().unwrap()), ssrc, seq: 0, ts: 0 }
    }

    fn rtp(ssrc: u32, seq: u16, ts: u32, pt: u8, payload: &[u8]) -> Vec<u8> {
        let h =
            Header { version: 2, payload_type: pt, sequence_number: seq, timestamp: ts, ssrc, ..Default::default() };
        let mut v = h.marshal().unwrap().to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn head(p: &[u8]) -> Header {
        Header::unmarshal(&mut &p[..]).unwrap()
    }

    /// Runs the shard from `from_us` to `to_us` in 1 ms steps, collecting
    /// (time, leg, destination, packet).
    fn run(s: &mut Shard, from_us: u64, to_us: u64) -> Vec<(u64, Key, SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        let mut t = from_us;
        while t <= to_us {
            while let Some(ms) = s.due_slot(t) {
                let now = t;
                s.play_slot(ms, &mut || now, |k, to, p| {
                    out.push((now, k, to, p.to_vec()));
                    true
                });
            }
            t += 1000;
        }
        out
    }

    #[test]
    fn every_listener_gets_one_frame_per_20_ms_spread_over_the_slots() {
        let mut s = Shard::new(vec![class("default", 8000)], 0, 0);
        for k in 0..100u64 {
            s.open(k, setup(&format!("127.0.0.1:{}", 10000 + k), k as u32));
            s.hold(k, "default");
        }
        let sent = run(&mut s, 0, 1_000_000);
        // One second: 50 frames each (± the slot phase at the edges).
        for k in 0..100u64 {
            let mine: Vec<_> = sent.iter().filter(|p| p.1 == k).collect();
            assert!((49..=51).contains(&mine.len()), "leg {k}: {}", mine.len());
            for w in mine.windows(2) {
                assert_eq!(w[1].0 - w[0].0, 20_000, "leg {k} paced every 20 ms");
                let (a, b) = (head(&w[0].3), head(&w[1].3));
                assert_eq!(b.sequence_number, a.sequence_number.wrapping_add(1));
                assert_eq!(b.timestamp, a.timestamp.wrapping_add(160));
                assert_eq!(b.ssrc, k as u32);
                assert_eq!(w[1].3.len(), 12 + 160);
            }
        }
        // No millisecond carries more than its share.
        let mut per_ms = std::collections::HashMap::new();
        for p in &sent {
            *per_ms.entry(p.0).or_insert(0) += 1;
        }
        assert!(per_ms.values().all(|n| *n <= 5), "{:?}", per_ms.values().max());
        assert_eq!(s.stats().lateness_quantile_us(0.99), 100);
    }

    #[test]
    fn listeners_of_a_class_hear_the_same_position_like_a_radio() {
        let mut s = Shard::new(vec![class("default", 8000)], 0, 0);
        s.open(1, setup("127.0.0.1:10001", 1));
        s.hold(1, "default");
        run(&mut s, 0, 95_000);
        s.open(2, setup("127.0.0.1:10002", 2));
        s.hold(2, "default");
        let sent = run(&mut s, 96_000, 400_000);
        let clip = &s.classes[0].clip;
        for (t, k, _, p) in &sent {
            let ms = t / 1000;
            let want = clip.frame(Codec::Pcmu, (ms / 20) as usize);
            assert_eq!(&p[12..], want, "leg {k} at {ms} ms");
        }
    }

    #[test]
    fn an_announcement_interrupts_the_music_and_then_it_resumes() {
        let mut s = Shard::new(vec![class("default", 8000)], 0, 0);
        s.open(1, setup("127.0.0.1:10001", 1));
        s.hold(1, "default");
        run(&mut s, 0, 100_000);
        let prompt = Clip::from_pcm(&vec![3000i16; 160 * 3]);
        s.announce(1, prompt.clone());
        let sent = run(&mut s, 101_000, 200_000);
        let payloads: Vec<&[u8]> = sent.iter().map(|p| &p.3[12..]).collect();
        assert_eq!(payloads[0], prompt.frame(Codec::Pcmu, 0));
        assert_eq!(payloads[2], prompt.frame(Codec::Pcmu, 2));
        assert_ne!(payloads[3], prompt.frame(Codec::Pcmu, 0));
        // One stream throughout.
        for w in sent.windows(2) {
            assert_eq!(head(&w[1].3).sequence_number, head(&w[0].3).sequence_number + 1);
        }
    }

    #[test]
    fn a_second_announcement_waits_for_the_first_to_end() {
        let mut s = Shard::new(vec![class("default", 8000)], 0, 0);
        s.open(1, setup("127.0.0.1:10001", 1));
        s.hold(1, "default");
        run(&mut s, 0, 100_000);
        let first = Clip::from_pcm(&vec![3000i16; 160 * 3]);
        let second = Clip::from_pcm(&vec![-2000i16; 160 * 2]);
        s.announce(1, first.clone());
        let sent = run(&mut s, 101_000, 130_000);
        s.announce(1, second.clone());
        let sent2 = run(&mut s, 131_000, 220_000);
        let payloads: Vec<&[u8]> = sent.iter().chain(&sent2).map(|p| &p.3[12..]).collect();
        let want = [first.frame(Codec::Pcmu, 0), first.frame(Codec::Pcmu, 1), first.frame(Codec::Pcmu, 2)];
        assert_eq!(&payloads[..3], &want[..], "the first plays whole");
        assert_eq!(&payloads[3..5], &[second.frame(Codec::Pcmu, 0), second.frame(Codec::Pcmu, 1)][..]);
        assert_ne!(payloads[5], second.frame(Codec::Pcmu, 0), "then the music again");
    }

    #[test]
    fn bridged_legs_relay_both_ways_with_each_sides_own_stream() {
        let mut s = Shard::new(vec![class("default", 8000)], 0, 0);
        let caller: SocketAddr = "127.0.0.1:10001".parse().unwrap();
        let agent: SocketAddr = "127.0.0.1:10002".parse().unwrap();
        s.open(1, setup("127.0.0.1:10001", 0xc));
        s.hold(1, "default");
        let music = run(&mut s, 0, 100_000);
        let last = head(&music.last().unwrap().3);
        s.open(2, LegSetup { codec: Codec::Pcmu, dtmf_pt: Some(96), remote: None, ssrc: 0xa, seq: 500, ts: 0 });
        s.set_remote(2, Some(agent), Codec::Pcmu, Some(96));
        s.stop_hold(1);
        s.bridge(1, 2, 110_000);
        // Agent → caller: rewritten onto the caller's stream.
        let mut p = rtp(0x5555, 9000, 123_456, 0, &[0x11; 160]);
        p.resize(1500, 0);
        let v = s.on_rtp(120_000, 2, agent, &mut p, 172);
        let Verdict::Forward { via, to, len } = v else { panic!("{v:?}") };
        assert_eq!((via, to, len), (1, caller, 172));
        let h = head(&p[..len]);
        assert_eq!(h.ssrc, 0xc);
        assert_eq!(h.sequence_number, last.sequence_number + 1);
        assert!(h.marker);
        assert_eq!(&p[12..172], &[0x11; 160][..]);
        // Caller → agent, and its DTMF on the agent's payload type.
        let mut d = rtp(0x7777, 1, 50, 101, &[5, 0x0a, 0, 160]);
        d.resize(1500, 0);
        let Verdict::Forward { via, to, len } = s.on_rtp(121_000, 1, caller, &mut d, 16) else { panic!() };
        assert_eq!((via, to, len), (2, agent, 16));
        let h = head(&d[..len]);
        assert_eq!((h.ssrc, h.payload_type, h.sequence_number), (0xa, 96, 500));
        // Comfort noise is not passed on.
        let mut cn = rtp(0x7777, 2, 210, 13, &[40]);
        assert_eq!(s.on_rtp(122_000, 1, caller, &mut cn, 13), Verdict::Drop);
    }

    #[test]
    fn different_laws_on_the_two_sides_are_transcoded() {
        let mut s = Shard::new(vec![], 0, 0);
        s.open(1, setup("127.0.0.1:10001", 1));
        s.open(
            2,
            LegSetup {
                codec: Codec::Pcma,
                dtmf_pt: None,
                remote: Some("127.0.0.1:10002".parse().unwrap()),
                ssrc: 2,
                seq: 0,
                ts: 0,
            },
        );
        s.bridge(1, 2, 0);
        let pcm: Vec<i16> = (0..160).map(|i| ((i as f32 * 0.3).sin() * 9000.0) as i16).collect();
        let mut ulaw = Vec::new();
        g711::encode(Codec::Pcmu, &pcm, &mut ulaw);
        let mut p = rtp(9, 1, 0, 0, &ulaw);
        let Verdict::Forward { len, .. } = s.on_rtp(1000, 1, "127.0.0.1:10001".parse().unwrap(), &mut p, 172) else {
            panic!()
        };
        assert_eq!(head(&p[..len]).payload_type, 8);
        let mut back = Vec::new();
        g711::decode(Codec::Pcma, &p[12..len], &mut back);
        for (a, b) in pcm.iter().zip(&back) {
            assert!((*a as i32 - *b as i32).abs() < 600, "{a} vs {b}");
        }
    }

    #[test]
    fn rtp_goes_where_packets_really_come_from() {
        let mut s = Shard::new(vec![class("default", 8000)], 0, 0);
        s.open(1, setup("10.0.0.1:4000", 1)); // a private address in the SDP
        s.hold(1, "default");
        let nat: SocketAddr = "127.0.0.1:31000".parse().unwrap();
        let mut p = rtp(77, 1, 0, 0, &[0xff; 160]);
        assert_eq!(s.on_rtp(5_000, 1, nat, &mut p, 172), Verdict::Drop);
        assert_eq!(s.remote(1), Some(nat));
        let sent = run(&mut s, 6_000, 60_000);
        assert!(!sent.is_empty() && sent.iter().all(|p| p.2 == nat));
        // Someone else's stream from another address does not steal it.
        let mut q = rtp(99, 1, 0, 0, &[0xff; 160]);
        s.on_rtp(61_000, 1, "127.0.0.1:40000".parse().unwrap(), &mut q, 172);
        assert_eq!(s.remote(1), Some(nat));
        // The same stream from a new port (NAT rebinding) moves it.
        let moved: SocketAddr = "127.0.0.1:31002".parse().unwrap();
        let mut r = rtp(77, 2, 160, 0, &[0xff; 160]);
        s.on_rtp(62_000, 1, moved, &mut r, 172);
        assert_eq!(s.remote(1), Some(moved));
    }

    #[test]
    fn a_silent_bridged_leg_times_out_once() {
        let mut s = Shard::new(vec![], 5, 0);
        s.open(1, setup("127.0.0.1:10001", 1));
        s.open(2, setup("127.0.0.1:10002", 2));
        s.bridge(1, 2, 1_000_000);
        let mut t = 1_000_000;
        let mut found = Vec::new();
        while t < 8_000_000 {
            // Leg 1 keeps talking; leg 2 never does.
            let mut p = rtp(5, (t / 20_000) as u16, 0, 0, &[0; 160]);
            s.on_rtp(t, 1, "127.0.0.1:10001".parse().unwrap(), &mut p, 172);
            for k in s.timed_out(t) {
                found.push((t, k));
            }
            t += 20_000;
        }
        assert_eq!(found.len(), 1, "{found:?}");
        let (at, k) = found[0];
        assert_eq!(k, 2);
        assert!(at > 6_000_000 && at <= 6_260_000, "{at}");
    }

    #[test]
    fn a_leg_on_hold_is_not_timed_out_until_it_resumes() {
        let mut s = Shard::new(vec![], 5, 0);
        s.open(1, setup("127.0.0.1:10001", 1));
        s.open(2, setup("127.0.0.1:10002", 2));
        s.bridge(1, 2, 0);
        s.set_held(1, true, 1_000_000);
        s.set_held(2, true, 1_000_000);
        let silent = |s: &mut Shard, from: u64, to: u64| {
            let mut out = Vec::new();
            let mut t = from;
            while t < to {
                out.extend(s.timed_out(t));
                t += 100_000;
            }
            out
        };
        assert!(silent(&mut s, 0, 60_000_000).is_empty(), "held for a minute: no timeout");
        s.set_held(1, false, 60_000_000);
        let after = silent(&mut s, 60_000_000, 70_000_000);
        assert_eq!(after, vec![1], "resumed and silent: times out 5 s after the resume");
    }

    /// Polls `timed_out` every 100 ms in `[from, to)`, with `talk(s, t)`
    /// before each poll (to send packets), collecting (time, leg).
    fn watch_timeouts(s: &mut Shard, from: u64, to: u64, mut talk: impl FnMut(&mut Shard, u64)) -> Vec<(u64, Key)> {
        let mut out = Vec::new();
        let mut t = from;
        while t < to {
            talk(s, t);
            out.extend(s.timed_out(t).into_iter().map(|k| (t, k)));
            t += 100_000;
        }
        out
    }

    fn talk(s: &mut Shard, t: u64, key: Key) {
        let mut p = rtp(key as u32, (t / 20_000) as u16, 0, 0, &[0xff; 160]);
        s.on_rtp(t, key, format!("127.0.0.1:{}", 10000 + key).parse().unwrap(), &mut p, 172);
    }

    #[test]
    fn a_waiting_caller_that_sent_rtp_then_went_silent_times_out_once() {
        let mut s = Shard::new(vec![class("default", 8000)], 5, 0);
        s.open(1, setup("127.0.0.1:10001", 1));
        s.hold(1, "default");
        // Talks (e.g. comfort noise, DTMF) for its first 3 s on music, then
        // its trunk vanishes without BYE.
        let found = watch_timeouts(&mut s, 0, 30_000_000, |s, t| {
            if (1_000_000..=3_000_000).contains(&t) {
                talk(s, t, 1);
            }
        });
        assert_eq!(found.len(), 1, "{found:?}");
        let (at, k) = found[0];
        assert_eq!(k, 1);
        // Silent since 3 s; judged > 5 s later, within one 250 ms check.
        assert!(at > 8_000_000 && at <= 8_300_000, "{at}");
        // The music plays on until call control ends the leg.
        assert_eq!(s.listener_count(), 1);
    }

    #[test]
    fn a_waiting_caller_that_never_sent_rtp_is_never_judged() {
        let mut s = Shard::new(vec![], 5, 0);
        s.open(1, setup("127.0.0.1:10001", 1));
        s.hold(1, "default");
        assert!(watch_timeouts(&mut s, 0, 600_000_000, |_, _| {}).is_empty());
        // Late offer / one-way trunk: no deadline (the shell wakes for the
        // music's slots only).
        assert_eq!(s.deadlines.next(), None);
    }

    #[test]
    fn a_held_waiting_caller_is_not_judged_and_resuming_restarts_its_timer() {
        let mut s = Shard::new(vec![], 5, 0);
        s.open(1, setup("127.0.0.1:10001", 1));
        s.hold(1, "default");
        talk(&mut s, 1_000_000, 1);
        s.set_held(1, true, 2_000_000); // re-INVITE a=sendonly
        assert!(watch_timeouts(&mut s, 1_000_000, 60_000_000, |_, _| {}).is_empty(), "held for a minute");
        s.set_held(1, false, 60_000_000);
        let after = watch_timeouts(&mut s, 60_000_000, 80_000_000, |_, _| {});
        assert_eq!(after.len(), 1, "{after:?}");
        assert!(after[0].0 > 65_000_000 && after[0].0 <= 65_300_000, "5 s after the resume: {after:?}");
    }

    #[test]
    fn a_resumed_caller_that_talks_again_is_not_reported() {
        let mut s = Shard::new(vec![], 5, 0);
        s.open(1, setup("127.0.0.1:10001", 1));
        s.hold(1, "default");
        talk(&mut s, 0, 1);
        s.set_held(1, true, 1_000_000);
        s.set_held(1, false, 20_000_000);
        let found = watch_timeouts(&mut s, 20_000_000, 120_000_000, |s, t| {
            if t % 1_000_000 == 0 {
                talk(s, t, 1);
            }
        });
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn the_next_deadline_includes_a_judged_waiting_caller() {
        let mut s = Shard::new(vec![], 5, 0);
        // Not on music (e.g. between music and a bridge), so the slot clock
        // does not hide the timeout's deadline.
        s.open(1, setup("127.0.0.1:10001", 1));
        assert_eq!(s.next_deadline_us(), None);
        talk(&mut s, 1_000_000, 1);
        // Silent for more than 5 s from its packet at 1 s.
        assert_eq!(s.next_deadline_us(), Some(6_000_001));
        // A later packet does not move the entry (no heap work per packet):
        // the shell wakes at 6 s, finds it talked, and sleeps till 5 s later.
        talk(&mut s, 4_000_000, 1);
        assert_eq!(s.next_deadline_us(), Some(6_000_001));
        assert!(s.timed_out(6_000_001).is_empty());
        assert_eq!(s.next_deadline_us(), Some(9_000_001));
        // Media timeout off (0): nothing judged.
        s.set_classes(vec![], 0);
        assert_eq!(s.next_deadline_us(), None);
        assert!(s.timed_out(60_000_000).is_empty());
    }

    #[test]
    fn a_reload_with_a_shorter_timeout_applies_to_callers_already_waiting() {
        let mut s = Shard::new(vec![], 60, 0);
        s.open(1, setup("127.0.0.1:10001", 1));
        s.hold(1, "default");
        talk(&mut s, 1_000_000, 1);
        s.set_classes(vec![], 5);
        let found = watch_timeouts(&mut s, 1_000_000, 20_000_000, |_, _| {});
        assert_eq!(found.len(), 1);
        assert!(found[0].0 > 6_000_000 && found[0].0 <= 6_300_000, "{found:?}");
    }

    #[test]
    fn talking_legs_cost_one_deadline_each_not_one_per_packet() {
        let mut s = Shard::new(vec![], 5, 0);
        for k in 0..1000u64 {
            s.open(k, setup(&format!("127.0.0.1:{}", 10000 + k), k as u32));
            s.hold(k, "default");
        }
        let mut t = 0;
        let mut found = Vec::new();
        while t < 30_000_000 {
            for k in 0..1000u64 {
                talk(&mut s, t, k);
            }
            found.extend(s.timed_out(t));
            assert!(s.deadlines.heap.len() <= 1000, "{} entries at {t}", s.deadlines.heap.len());
            t += 20_000;
        }
        assert!(found.is_empty());
        // Reopened and closed legs leave no live entry behind.
        for k in 0..1000u64 {
            s.close(k);
        }
        // 1,000 stale entries come due together: a batch per call (no long
        // stall of the music slots), the rest on the next calls.
        assert!(s.timed_out(40_000_000).is_empty());
        assert_eq!(s.deadlines.heap.len(), 1000 - TIMEOUT_BATCH);
        assert_eq!(s.next_deadline_us(), Some(40_000_000), "due again at once");
        assert!(s.timed_out(40_000_000).is_empty());
        assert!(s.deadlines.heap.is_empty());
        assert_eq!(s.next_deadline_us(), None);
    }

    #[test]
    fn a_caller_that_sent_rtp_is_judged_again_after_its_agent_leaves() {
        let mut s = Shard::new(vec![], 5, 0);
        s.open(1, setup("127.0.0.1:10001", 1));
        s.open(2, setup("127.0.0.1:10002", 2));
        talk(&mut s, 0, 1);
        s.bridge(1, 2, 0);
        talk(&mut s, 1_000_000, 2);
        s.close(2); // the agent's leg ends; the caller waits, then goes silent
        let found = watch_timeouts(&mut s, 1_000_000, 20_000_000, |s, t| {
            if t <= 2_000_000 {
                talk(s, t, 1);
            }
        });
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, 1);
        assert!(found[0].0 > 7_000_000 && found[0].0 <= 7_300_000, "{found:?}");
    }

    #[test]
    fn closing_a_leg_stops_its_music_and_its_peer_relays_nothing() {
        let mut s = Shard::new(vec![class("default", 8000)], 0, 0);
        s.open(1, setup("127.0.0.1:10001", 1));
        s.hold(1, "default");
        s.close(1);
        assert_eq!(s.listener_count(), 0);
        assert!(run(&mut s, 0, 100_000).is_empty());
        s.open(1, setup("127.0.0.1:10001", 1));
        s.open(2, setup("127.0.0.1:10002", 2));
        s.bridge(1, 2, 0);
        s.close(2);
        let mut p = rtp(5, 1, 0, 0, &[0; 160]);
        assert_eq!(s.on_rtp(1000, 1, "127.0.0.1:10001".parse().unwrap(), &mut p, 172), Verdict::Drop);
        assert_eq!(s.leg_count(), 1);
        assert_eq!(s.next_deadline_us(), None);
    }
}
