//! The RTP stream acd sends on one leg.
//!
//! A leg hears several sources in turn: hold music, a prompt, music again,
//! then the agent's relayed packets. To the phone it must stay one stream
//! (RFC 3550 §5.1, §8): one SSRC, a sequence number that goes up by one per
//! packet, and a timestamp that follows the clock. [`OutStream`] keeps that:
//! frames acd generates are numbered on from the last packet sent, and a
//! relayed stream gets fixed offsets at the moment it takes over (so its own
//! gaps and reordering pass through unchanged), with the marker bit set on
//! the first packet of every new source (a new talk spurt).

/// Header values for one outgoing packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutHeader {
    pub ssrc: u32,
    pub seq: u16,
    pub ts: u32,
    pub marker: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Nothing,
    Generated,
    Relay { ssrc: u32 },
}

#[derive(Debug, Clone)]
pub struct OutStream {
    ssrc: u32,
    /// The last packet sent (the newest, for relayed reordering).
    last_seq: u16,
    last_ts: u32,
    last_at_us: u64,
    source: Source,
    seq_off: u16,
    ts_off: u32,
}

/// RTP clock: 8 samples per millisecond for G.711 and telephone-event.
const SAMPLES_PER_MS: u64 = 8;

impl OutStream {
    /// `seq0` and `ts0` are the first packet's values (random, RFC 3550).
    pub fn new(ssrc: u32, seq0: u16, ts0: u32) -> OutStream {
        OutStream {
            ssrc,
            last_seq: seq0.wrapping_sub(1),
            last_ts: ts0,
            last_at_us: 0,
            source: Source::Nothing,
            seq_off: 0,
            ts_off: 0,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The timestamp a new source starts at: on from the last packet by the
    /// time that has passed (at least one frame), so the far end's jitter
    /// buffer sees the silence as silence.
    fn segment_ts(&self, at_us: u64, min_samples: u32) -> u32 {
        if self.source == Source::Nothing {
            return self.last_ts; // the very first packet: ts0
        }
        let elapsed = at_us.saturating_sub(self.last_at_us) * SAMPLES_PER_MS / 1000;
        let step = elapsed.clamp(min_samples as u64, u32::MAX as u64 / 2) as u32;
        self.last_ts.wrapping_add(step)
    }

    /// A frame acd generates (music, prompt) of `samples` samples, meant for
    /// `at_us` (its slot time, not the send time, so pacing jitter does not
    /// leak into the timestamps).
    pub fn generated(&mut self, at_us: u64, samples: u32) -> OutHeader {
        let (ts, marker) = if self.source == Source::Generated {
            (self.last_ts.wrapping_add(samples), false)
        } else {
            (self.segment_ts(at_us, samples), true)
        };
        self.source = Source::Generated;
        self.last_seq = self.last_seq.wrapping_add(1);
        self.last_ts = ts;
        self.last_at_us = at_us;
        OutHeader { ssrc: self.ssrc, seq: self.last_seq, ts, marker }
    }

    /// A packet relayed from the other leg, with its own header values.
    pub fn relayed(&mut self, now_us: u64, ssrc: u32, seq: u16, ts: u32, marker: bool) -> OutHeader {
        let mut marker = marker;
        if self.source != (Source::Relay { ssrc }) {
            let first_seq = self.last_seq.wrapping_add(1);
            let first_ts = self.segment_ts(now_us, 160);
            self.seq_off = first_seq.wrapping_sub(seq);
            self.ts_off = first_ts.wrapping_sub(ts);
            self.source = Source::Relay { ssrc };
            marker = true;
        }
        let out_seq = seq.wrapping_add(self.seq_off);
        let out_ts = ts.wrapping_add(self.ts_off);
        // Remember the newest packet (a late, reordered one is older).
        if out_seq.wrapping_sub(self.last_seq) < 0x8000 {
            self.last_seq = out_seq;
            self.last_ts = out_ts;
            self.last_at_us = now_us;
        }
        OutHeader { ssrc: self.ssrc, seq: out_seq, ts: out_ts, marker }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_frames_count_up_by_one_frame() {
        let mut s = OutStream::new(7, 65534, 1000);
        let a = s.generated(20_000, 160);
        let b = s.generated(40_000, 160);
        let c = s.generated(60_000, 160);
        assert_eq!((a.seq, a.ts, a.marker), (65534, 1000, true));
        assert_eq!((b.seq, b.ts, b.marker), (65535, 1160, false));
        assert_eq!((c.seq, c.ts, c.marker), (0, 1320, false)); // wraps
    }

    #[test]
    fn music_then_agent_is_one_continuous_stream() {
        let mut s = OutStream::new(0xabcd, 100, 5000);
        for i in 0..3 {
            s.generated(i * 20_000, 160);
        }
        // Last music: seq 102, ts 5320 at 40 ms. The agent's first packet
        // arrives 100 ms later with its own numbering.
        let a = s.relayed(140_000, 0x1111, 40_000, 9_999_999, false);
        assert_eq!(a.ssrc, 0xabcd);
        assert_eq!(a.seq, 103);
        assert_eq!(a.ts, 5320 + 800); // 100 ms of clock
        assert!(a.marker);
        // The agent's next packets keep their spacing, a gap stays a gap.
        let b = s.relayed(160_000, 0x1111, 40_001, 9_999_999 + 160, false);
        assert_eq!((b.seq, b.ts, b.marker), (104, 5320 + 960, false));
        let d = s.relayed(200_000, 0x1111, 40_003, 9_999_999 + 480, false);
        assert_eq!((d.seq, d.ts), (106, 5320 + 1280));
        // A late packet keeps its place and does not rewind the stream.
        let c = s.relayed(201_000, 0x1111, 40_002, 9_999_999 + 320, false);
        assert_eq!((c.seq, c.ts), (105, 5320 + 1120));
        // Back to generated (a prompt): on from the newest, not the late one.
        let m = s.generated(220_000, 160);
        assert_eq!(m.seq, 107);
        assert_eq!(m.ts, 5320 + 1280 + 160);
        assert!(m.marker);
    }

    #[test]
    fn a_new_ssrc_from_the_far_end_is_a_new_segment() {
        let mut s = OutStream::new(1, 0, 0);
        s.relayed(0, 10, 500, 80_000, false);
        s.relayed(20_000, 10, 501, 80_160, false);
        let x = s.relayed(40_000, 11, 7, 3, false);
        assert_eq!((x.seq, x.ts, x.marker), (2, 320, true));
    }
}
