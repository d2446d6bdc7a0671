//! The load tool's media: one thread that sends a 20 ms G.711 µ-law frame
//! for every active stream and checks every frame that comes back.
//!
//! A handful of local sockets carry all streams (the SDP of stream `id`
//! names socket `id % N`); received frames are told apart by their source,
//! which is the acd leg's own RTP port. Streams are spread over 20 one-ms
//! slots, as acd paces its own music, so the tool sends evenly.
//!
//! What is checked, per received frame:
//! - relayed audio (the other side's frames carry a marker: `ACDL`, the call
//!   tag, the side) must come from the same call and the other side, else it
//!   is counted as crosstalk;
//! - anything else is acd's own audio (music, prompts): decoded, it must not
//!   be silence, and its pacing (arrival gap against 20 ms) is recorded;
//! - the RTP sequence numbers give the frames lost when the stream ends;
//! - the frame rate: a stream that loses nothing can still play slowly (acd
//!   sending 34 frames a second instead of 50 has no sequence gap), so each
//!   stream's frames are counted against the 50 a second of a 20 ms ptime,
//!   separately for acd's own audio and for relayed audio (see [`judge`]).

use crate::stats::{Histogram, Rates};
use acd::media::g711::{linear_to_ulaw, ulaw_to_linear};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAGIC: &[u8; 4] = b"ACDL";
const SLOTS: usize = 20;
const FRAME: usize = 160;

/// Frames a second of a 20 ms ptime.
pub const FRAME_RATE: f64 = 50.0;
/// A run of frames shorter than this (first to last frame) is not judged:
/// its rate would be mostly the jitter of its two end frames.
pub const MIN_SPAN: Duration = Duration::from_secs(1);
/// Frames a run may fall short of the threshold before it is slow, so that
/// an end frame up to 40 ms late (a jittery but full-rate stream) is not.
pub const SLACK_FRAMES: f64 = 2.0;

/// The verdict on one run of frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Under [`MIN_SPAN`] from first to last frame (or one frame): not judged.
    TooShort,
    /// Frames per second from the first frame to the last, and whether that is
    /// below the threshold by more than [`SLACK_FRAMES`].
    Judged { per_sec: f64, slow: bool },
}

/// Judges `frames` frames that arrived over `span` (first to last arrival)
/// against `min_rate` frames a second. `frames` frames span `frames - 1`
/// packet intervals, so the edges need no partial-second rounding.
pub fn judge(frames: u64, span: Duration, min_rate: f64) -> Rate {
    if frames < 2 || span < MIN_SPAN {
        return Rate::TooShort;
    }
    let secs = span.as_secs_f64();
    let per_sec = (frames - 1) as f64 / secs;
    let slow = ((frames - 1) as f64 + SLACK_FRAMES) < secs * min_rate;
    Rate::Judged { per_sec, slow }
}

/// Arrivals of one kind of frame on one stream.
#[derive(Default, Clone, Copy)]
struct Run {
    frames: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Run {
    fn add(&mut self, now: Instant) {
        self.frames += 1;
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    fn judge(&self, min_rate: f64) -> Option<Rate> {
        let (first, last) = (self.first?, self.last?);
        Some(judge(self.frames, last.saturating_duration_since(first), min_rate))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Caller = 0,
    Agent = 1,
}

pub enum Cmd {
    /// Start stream `id` towards `remote` (acd's RTP address for this leg).
    Start {
        id: u32,
        tag: u32,
        side: Side,
        remote: SocketAddr,
        send: bool,
    },
    /// Start or stop sending on a stream (receiving goes on).
    Send {
        id: u32,
        on: bool,
    },
    Stop {
        id: u32,
    },
}

/// Counters the SIP loop reads for its per-second line.
#[derive(Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub lost: AtomicU64,
    pub crosstalk: AtomicU64,
    /// Streams that ended playing slowly.
    pub slow: AtomicU64,
    /// Streams still running whose rate so far is slow (updated each second).
    pub slow_now: AtomicU64,
}

/// The media part of the final report.
#[derive(Default, Clone)]
pub struct Totals {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    /// Frames of the other side of the same call.
    pub relayed: u64,
    /// Frames of another call, or of this side echoed back.
    pub crosstalk: u64,
    /// acd's own audio (music, prompts) with sound in it.
    pub acd_audio: u64,
    /// acd's own audio frames that were silence.
    pub acd_silent: u64,
    /// Frames from an address no stream expects (late after a stop).
    pub stray: u64,
    pub streams: u64,
    /// |arrival gap - 20 ms| between consecutive frames of acd's own audio.
    pub pacing: Option<Histogram>,
    /// Send slots the thread ran late for by more than 5 ms.
    pub late_slots: u64,
    /// The threshold below which a run of frames is slow (frames/s).
    pub min_frame_rate: f64,
    /// Frame rates of acd's own audio (music, prompts), one per stream.
    pub music_rate: Rates,
    /// Frame rates of relayed audio (the other side's), one per stream.
    pub relayed_rate: Rates,
    /// Streams with a slow run of either kind.
    pub slow_streams: u64,
    /// Frames the streams would have received at 50/s from start to stop.
    pub expected: f64,
}

struct Stream {
    tag: u32,
    side: Side,
    remote: SocketAddr,
    sock: usize,
    send: bool,
    ssrc: u32,
    seq: u16,
    ts: u32,
    idx: u32,
    rx: u64,
    first_ext: Option<i64>,
    max_ext: i64,
    last: Option<(Instant, i64, bool)>,
    started: Instant,
    own: Run,
    relayed: Run,
}

pub struct Media {
    poll: Poll,
    socks: Vec<UdpSocket>,
    streams: HashMap<u32, Stream>,
    by_remote: HashMap<SocketAddr, u32>,
    slots: Vec<Vec<u32>>,
    tone: [u8; FRAME],
    totals: Totals,
    pacing: Histogram,
    live: Arc<Live>,
    min_rate: f64,
}

impl Media {
    /// `min_rate`: frames a second below which a stream is slow.
    pub fn new(socks: Vec<std::net::UdpSocket>, live: Arc<Live>, min_rate: f64) -> std::io::Result<Media> {
        let poll = Poll::new()?;
        let mut out = Vec::new();
        for (i, s) in socks.into_iter().enumerate() {
            s.set_nonblocking(true)?;
            let mut m = UdpSocket::from_std(s);
            poll.registry().register(&mut m, Token(i), Interest::READABLE)?;
            out.push(m);
        }
        // A 1 kHz tone at a quarter of full scale: 8 samples per period,
        // so 160 samples are 20 whole periods and frames join seamlessly.
        let mut tone = [0u8; FRAME];
        for (i, b) in tone.iter_mut().enumerate() {
            let s = (std::f32::consts::TAU * i as f32 / 8.0).sin() * 8000.0;
            *b = linear_to_ulaw(s as i16);
        }
        Ok(Media {
            poll,
            socks: out,
            streams: HashMap::new(),
            by_remote: HashMap::new(),
            slots: vec![Vec::new(); SLOTS],
            tone,
            totals: Totals { min_frame_rate: min_rate, ..Totals::default() },
            pacing: Histogram::default(),
            live,
            min_rate,
        })
    }

    /// Runs until the command channel closes; returns the totals.
    pub fn run(mut self, cmds: Receiver<Cmd>) -> Totals {
        let start = Instant::now();
        let mut next_ms: u64 = 0;
        let mut events = Events::with_capacity(256);
        let mut buf = [0u8; 2048];
        let mut rng: u32 = 0x9e37_79b9;
        let mut next_check = start + Duration::from_secs(1);
        loop {
            loop {
                match cmds.try_recv() {
                    Ok(c) => self.command(c, &mut rng, Instant::now()),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return self.finish(Instant::now()),
                }
            }
            if Instant::now() >= next_check {
                next_check += Duration::from_secs(1);
                let slow = self.streams.values().filter(|s| self.is_slow(s)).count();
                self.live.slow_now.store(slow as u64, Ordering::Relaxed);
            }
            let now_ms = start.elapsed().as_millis() as u64;
            if now_ms > next_ms + 200 {
                self.totals.late_slots += now_ms - next_ms;
                next_ms = now_ms;
            }
            let mut n = 0;
            while next_ms <= now_ms && n < SLOTS {
                if now_ms > next_ms + 5 {
                    self.totals.late_slots += 1;
                }
                self.send_slot((next_ms % SLOTS as u64) as usize);
                next_ms += 1;
                n += 1;
            }
            let due = start + Duration::from_millis(next_ms);
            let wait = due.saturating_duration_since(Instant::now());
            if self.poll.poll(&mut events, Some(wait)).is_err() {
                continue;
            }
            for ev in events.iter() {
                let i = ev.token().0;
                loop {
                    match self.socks[i].recv_from(&mut buf) {
                        Ok((len, from)) => self.receive(&buf[..len], from, Instant::now()),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    }
                }
            }
        }
    }

    /// Stops every stream and returns the totals.
    fn finish(mut self, now: Instant) -> Totals {
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            self.stop(id, now);
        }
        self.totals.pacing = Some(self.pacing);
        self.totals
    }

    fn is_slow(&self, s: &Stream) -> bool {
        [s.own, s.relayed].iter().any(|r| matches!(r.judge(self.min_rate), Some(Rate::Judged { slow: true, .. })))
    }

    fn command(&mut self, c: Cmd, rng: &mut u32, now: Instant) {
        match c {
            Cmd::Start { id, tag, side, remote, send } => {
                *rng ^= *rng << 13;
                *rng ^= *rng >> 17;
                *rng ^= *rng << 5;
                let st = Stream {
                    tag,
                    side,
                    remote,
                    sock: id as usize % self.socks.len(),
                    send,
                    ssrc: *rng,
                    seq: (*rng >> 16) as u16,
                    ts: *rng,
                    idx: 0,
                    rx: 0,
                    first_ext: None,
                    max_ext: 0,
                    last: None,
                    started: now,
                    own: Run::default(),
                    relayed: Run::default(),
                };
                self.by_remote.insert(remote, id);
                self.slots[id as usize % SLOTS].push(id);
                self.streams.insert(id, st);
                self.totals.streams += 1;
            }
            Cmd::Send { id, on } => {
                if let Some(s) = self.streams.get_mut(&id) {
                    s.send = on;
                }
            }
            Cmd::Stop { id } => self.stop(id, now),
        }
    }

    fn stop(&mut self, id: u32, now: Instant) {
        let Some(s) = self.streams.remove(&id) else { return };
        self.totals.expected += now.saturating_duration_since(s.started).as_secs_f64() * FRAME_RATE;
        let mut slow = false;
        for (run, rates) in [(s.own, &mut self.totals.music_rate), (s.relayed, &mut self.totals.relayed_rate)] {
            match run.judge(self.min_rate) {
                None => {}
                Some(Rate::TooShort) => rates.short += 1,
                Some(Rate::Judged { per_sec, slow: is_slow }) => {
                    rates.record(per_sec);
                    if is_slow {
                        rates.below += 1;
                        slow = true;
                    }
                }
            }
        }
        if slow {
            self.totals.slow_streams += 1;
            self.live.slow.fetch_add(1, Ordering::Relaxed);
        }
        if self.by_remote.get(&s.remote) == Some(&id) {
            self.by_remote.remove(&s.remote);
        }
        let slot = &mut self.slots[id as usize % SLOTS];
        if let Some(p) = slot.iter().position(|x| *x == id) {
            slot.swap_remove(p);
        }
        if let Some(first) = s.first_ext {
            let expected = (s.max_ext - first + 1) as u64;
            let lost = expected.saturating_sub(s.rx);
            self.totals.lost += lost;
            self.live.lost.fetch_add(lost, Ordering::Relaxed);
        }
    }

    fn send_slot(&mut self, slot: usize) {
        let mut pkt = [0u8; 12 + FRAME];
        for &id in &self.slots[slot] {
            let Some(s) = self.streams.get_mut(&id) else { continue };
            if !s.send {
                continue;
            }
            pkt[0] = 0x80;
            pkt[1] = if s.idx == 0 { 0x80 } else { 0 };
            pkt[2..4].copy_from_slice(&s.seq.to_be_bytes());
            pkt[4..8].copy_from_slice(&s.ts.to_be_bytes());
            pkt[8..12].copy_from_slice(&s.ssrc.to_be_bytes());
            pkt[12..].copy_from_slice(&self.tone);
            pkt[12..16].copy_from_slice(MAGIC);
            pkt[16..20].copy_from_slice(&s.tag.to_be_bytes());
            pkt[20] = s.side as u8;
            pkt[21..25].copy_from_slice(&s.idx.to_be_bytes());
            if self.socks[s.sock].send_to(&pkt, s.remote).is_ok() {
                self.totals.sent += 1;
                self.live.sent.fetch_add(1, Ordering::Relaxed);
            }
            s.seq = s.seq.wrapping_add(1);
            s.ts = s.ts.wrapping_add(FRAME as u32);
            s.idx += 1;
        }
    }

    fn receive(&mut self, pkt: &[u8], from: SocketAddr, now: Instant) {
        if pkt.len() < 12 || pkt[0] >> 6 != 2 {
            return;
        }
        let Some(&id) = self.by_remote.get(&from) else {
            self.totals.stray += 1;
            return;
        };
        let Some(s) = self.streams.get_mut(&id) else { return };
        let cc = (pkt[0] & 0x0f) as usize;
        let mut off = 12 + 4 * cc;
        if pkt[0] & 0x10 != 0 && pkt.len() >= off + 4 {
            off += 4 + 4 * u16::from_be_bytes([pkt[off + 2], pkt[off + 3]]) as usize;
        }
        if off > pkt.len() {
            return;
        }
        let payload = &pkt[off..];
        let pt = pkt[1] & 0x7f;
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let ext = match s.first_ext {
            None => {
                s.first_ext = Some(seq as i64);
                s.max_ext = seq as i64;
                seq as i64
            }
            Some(_) => {
                let d = seq.wrapping_sub(s.max_ext as u16) as i16 as i64;
                let e = s.max_ext + d;
                s.max_ext = s.max_ext.max(e);
                e
            }
        };
        s.rx += 1;
        self.totals.received += 1;
        self.live.received.fetch_add(1, Ordering::Relaxed);
        let relayed = payload.len() >= 9 && &payload[..4] == MAGIC;
        // Every frame counts towards the rate, whatever its payload type.
        if relayed {
            s.relayed.add(now);
        } else {
            s.own.add(now);
        }
        if pt != 0 {
            return;
        }
        let own = if relayed {
            let tag = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
            if tag == s.tag && payload[8] != s.side as u8 {
                self.totals.relayed += 1;
            } else {
                self.totals.crosstalk += 1;
                self.live.crosstalk.fetch_add(1, Ordering::Relaxed);
            }
            false
        } else {
            let energy: u64 = payload.iter().map(|&b| ulaw_to_linear(b).unsigned_abs() as u64).sum();
            if energy / payload.len().max(1) as u64 > 64 {
                self.totals.acd_audio += 1;
            } else {
                self.totals.acd_silent += 1;
            }
            true
        };
        if let Some((at, prev, prev_own)) = s.last {
            if own && prev_own && ext == prev + 1 {
                let gap = now.duration_since(at);
                let dev = if gap > Duration::from_millis(20) {
                    gap - Duration::from_millis(20)
                } else {
                    Duration::from_millis(20) - gap
                };
                self.pacing.record(dev);
            }
        }
        if s.last.is_none_or(|(_, prev, _)| ext > prev) {
            s.last = Some((now, ext, own));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REMOTE: &str = "127.0.0.1:40000";

    fn media() -> Media {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        Media::new(vec![sock], Arc::new(Live::default()), 47.5).unwrap()
    }

    /// An RTP frame from acd: its own audio, or the other side's relayed.
    fn frame(seq: u16, relayed_tag: Option<u32>) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend((0..FRAME).map(|i| if i % 2 == 0 { 0x10 } else { 0x90 }));
        if let Some(tag) = relayed_tag {
            p[12..16].copy_from_slice(MAGIC);
            p[16..20].copy_from_slice(&tag.to_be_bytes());
            p[20] = Side::Agent as u8;
        }
        p
    }

    /// Feeds stream 0 (a caller, tag 7) `n` consecutive frames, the k-th at
    /// `at(k)` after `t0`.
    fn play(m: &mut Media, t0: Instant, n: u16, relayed: bool, at: impl Fn(u16) -> Duration) {
        for k in 0..n {
            m.receive(&frame(1000 + k, relayed.then_some(7)), REMOTE.parse().unwrap(), t0 + at(k));
        }
    }

    fn start(m: &mut Media, t0: Instant) {
        let remote = REMOTE.parse().unwrap();
        m.command(Cmd::Start { id: 0, tag: 7, side: Side::Caller, remote, send: false }, &mut 1, t0);
    }

    fn every(ms: f64) -> impl Fn(u16) -> Duration {
        move |k| Duration::from_secs_f64(k as f64 * ms / 1000.0)
    }

    #[test]
    fn thirty_four_frames_a_second_is_slow_and_fifty_is_not() {
        assert!(
            matches!(judge(171, Duration::from_secs(5), 47.5), Rate::Judged { per_sec, slow: true } if (per_sec - 34.0).abs() < 1e-9)
        );
        assert!(
            matches!(judge(251, Duration::from_secs(5), 47.5), Rate::Judged { per_sec, slow: false } if (per_sec - 50.0).abs() < 1e-9)
        );
        // 47 a second over 10 s is below 47.5 by more than the slack.
        assert!(matches!(judge(471, Duration::from_secs(10), 47.5), Rate::Judged { slow: true, .. }));
        // Full rate with the last frame 40 ms late (ends jitter, not rate).
        assert!(matches!(judge(51, Duration::from_millis(1040), 47.5), Rate::Judged { slow: false, .. }));
        // Under a second, or a single frame: not judged.
        assert_eq!(judge(20, Duration::from_millis(990), 47.5), Rate::TooShort);
        assert_eq!(judge(1, Duration::ZERO, 47.5), Rate::TooShort);
        // 0 turns the check off.
        assert!(matches!(judge(10, Duration::from_secs(5), 0.0), Rate::Judged { slow: false, .. }));
    }

    #[test]
    fn even_music_at_34_frames_a_second_loses_nothing_but_is_slow() {
        // What acd did to 10,000 waiting callers: every frame in sequence,
        // perfectly even, 29.4 ms apart. No gap, so nothing is "lost".
        let mut m = media();
        let t0 = Instant::now();
        start(&mut m, t0);
        play(&mut m, t0, 171, false, every(1000.0 / 34.0));
        let t = m.finish(t0 + Duration::from_secs(5));
        assert_eq!(t.lost, 0);
        assert_eq!(t.acd_audio, 171);
        assert_eq!(t.slow_streams, 1);
        assert_eq!((t.music_rate.count(), t.music_rate.below), (1, 1));
        assert!((t.music_rate.quantile(0.5) - 34.0).abs() < 0.01, "{}", t.music_rate.quantile(0.5));
        assert_eq!(t.relayed_rate.count(), 0);
        assert!((t.expected - 250.0).abs() < 1e-6, "{}", t.expected);
    }

    #[test]
    fn jittery_music_at_fifty_frames_a_second_is_not_slow() {
        // Frames in bursts: each up to 35 ms late against its slot, in order.
        let mut m = media();
        let t0 = Instant::now();
        start(&mut m, t0);
        play(&mut m, t0, 251, false, |k| Duration::from_millis(k as u64 * 20 + (k as u64 * 7) % 36));
        let t = m.finish(t0 + Duration::from_secs(5));
        assert_eq!((t.lost, t.slow_streams), (0, 0));
        let p50 = t.music_rate.quantile(0.5);
        assert!((49.0..=51.0).contains(&p50), "{p50}");
    }

    #[test]
    fn music_then_relayed_audio_are_judged_apart() {
        // 0.4 s of music while an agent rings (too short to judge), then
        // 3 s of the agent's audio at full rate: one stream, not slow.
        let mut m = media();
        let t0 = Instant::now();
        start(&mut m, t0);
        play(&mut m, t0, 20, false, every(20.0));
        let t1 = Duration::from_millis(400);
        for k in 0..151u16 {
            m.receive(&frame(1020 + k, Some(7)), REMOTE.parse().unwrap(), t0 + t1 + every(20.0)(k));
        }
        let t = m.finish(t0 + Duration::from_millis(3420));
        assert_eq!((t.lost, t.crosstalk, t.relayed), (0, 0, 151));
        assert_eq!((t.music_rate.short, t.music_rate.count()), (1, 0));
        assert_eq!((t.relayed_rate.count(), t.relayed_rate.below, t.slow_streams), (1, 0, 0));
        assert!((t.relayed_rate.quantile(0.5) - 50.0).abs() < 0.01);

        // The same with relayed audio at 34/s: slow.
        let mut m = media();
        start(&mut m, t0);
        play(&mut m, t0, 20, false, every(20.0));
        for k in 0..103u16 {
            m.receive(&frame(1020 + k, Some(7)), REMOTE.parse().unwrap(), t0 + t1 + every(1000.0 / 34.0)(k));
        }
        let t = m.finish(t0 + Duration::from_millis(3420));
        assert_eq!((t.lost, t.relayed_rate.below, t.slow_streams), (0, 1, 1));
    }

    #[test]
    fn a_slow_stream_shows_in_the_live_counters() {
        let mut m = media();
        let live = m.live.clone();
        let t0 = Instant::now();
        start(&mut m, t0);
        play(&mut m, t0, 69, false, every(1000.0 / 34.0));
        assert!(m.is_slow(&m.streams[&0]));
        m.stop(0, t0 + Duration::from_secs(2));
        assert_eq!(live.slow.load(Ordering::Relaxed), 1);
    }
}
