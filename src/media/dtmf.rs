//! Keypad digits from a leg's RTP: RFC 4733 telephone-event, sans-IO.
//!
//! A key press is one event: packets with the same RTP timestamp (the
//! event's start) and a growing duration, then the *end* packet (E bit)
//! sent three times (RFC 4733 §2.5.1.4). A digit is reported once, on the
//! first end packet of its timestamp: the retransmitted ends, and any late
//! packets of an event already reported, are dropped. A phone that loses
//! every end packet loses the digit (acd does not guess from the start).
//!
//! What always holds: one report per (SSRC, event timestamp); the detector
//! keeps a constant amount of state per leg.

/// A decoded telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToneEvent {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

impl ToneEvent {
    /// Reads the first event block of a payload; `None` when it is shorter
    /// than one block.
    pub fn parse(payload: &[u8]) -> Option<ToneEvent> {
        if payload.len() < 4 {
            return None;
        }
        Some(ToneEvent {
            event: payload[0],
            end: payload[1] & 0x80 != 0,
            volume: payload[1] & 0x3f,
            duration: u16::from_be_bytes([payload[2], payload[3]]),
        })
    }
}

/// The keypad character of a DTMF event code (0-9, `*`, `#`, A-D); other
/// events (fax tones, line events) are not keys.
pub fn digit_of(event: u8) -> Option<char> {
    match event {
        0..=9 => Some((b'0' + event) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + event - 12) as char),
        _ => None,
    }
}

/// One leg's detector: remembers the last event it reported.
#[derive(Debug, Clone, Default)]
pub struct Detector {
    /// (SSRC, RTP timestamp) of the last event reported.
    last: Option<(u32, u32)>,
}

impl Detector {
    /// A telephone-event packet of stream `ssrc` with RTP timestamp `ts`:
    /// the key pressed, if this is the first end packet of its event.
    pub fn on_packet(&mut self, ssrc: u32, ts: u32, payload: &[u8]) -> Option<char> {
        let ev = ToneEvent::parse(payload)?;
        if !ev.end || self.last == Some((ssrc, ts)) {
            return None;
        }
        let digit = digit_of(ev.event)?;
        self.last = Some((ssrc, ts));
        Some(digit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [event, if end { 0x80 | 10 } else { 10 }, d[0], d[1]]
    }

    #[test]
    fn a_key_press_with_three_end_packets_is_one_digit() {
        let mut d = Detector::default();
        let mut got = Vec::new();
        // "5" pressed at ts 1000: three updates, then the end three times.
        for dur in [160, 320, 480] {
            got.extend(d.on_packet(7, 1000, &payload(5, false, dur)));
        }
        for _ in 0..3 {
            got.extend(d.on_packet(7, 1000, &payload(5, true, 640)));
        }
        assert_eq!(got, vec!['5']);
    }

    #[test]
    fn the_same_key_twice_is_two_digits_by_timestamp() {
        let mut d = Detector::default();
        let mut got = Vec::new();
        for ts in [1000, 3000] {
            for _ in 0..3 {
                got.extend(d.on_packet(7, ts, &payload(1, true, 800)));
            }
        }
        assert_eq!(got, vec!['1', '1']);
    }

    #[test]
    fn star_hash_letters_and_non_keys() {
        assert_eq!(digit_of(10), Some('*'));
        assert_eq!(digit_of(11), Some('#'));
        assert_eq!(digit_of(12), Some('A'));
        assert_eq!(digit_of(15), Some('D'));
        assert_eq!(digit_of(16), None); // flash
        assert_eq!(digit_of(36), None); // fax CNG
        let mut d = Detector::default();
        assert_eq!(d.on_packet(1, 1, &payload(36, true, 800)), None);
        assert_eq!(d.on_packet(1, 1, &[0x80, 0x80]), None, "short payload");
    }

    #[test]
    fn a_new_stream_with_the_same_timestamp_is_a_new_event() {
        let mut d = Detector::default();
        assert_eq!(d.on_packet(1, 500, &payload(2, true, 800)), Some('2'));
        assert_eq!(d.on_packet(2, 500, &payload(2, true, 800)), Some('2'));
    }

    /// The shard reports a waiting caller's key once, and not a bridged one's.
    mod shard {
        use super::payload;
        use crate::media::audio::Clip;
        use crate::media::core::{LegSetup, MusicClass, Shard, Verdict};
        use crate::media::g711::Codec;
        use rtc_rtp::header::Header;
        use rtc_shared::marshal::Marshal;
        use std::net::SocketAddr;

        fn rtp(ssrc: u32, seq: u16, ts: u32, pt: u8, payload: &[u8]) -> Vec<u8> {
            let h = Header {
                version: 2,
                payload_type: pt,
                sequence_number: seq,
                timestamp: ts,
                ssrc,
                ..Default::default()
            };
            let mut v = h.marshal().unwrap().to_vec();
            v.extend_from_slice(payload);
            v
        }

        fn shard() -> Shard {
            let class = MusicClass { name: "default".into(), clip: Clip::from_pcm(&[1000; 1600]) };
            let mut s = Shard::new(vec![class], 0, 0);
            for k in [1, 2] {
                let remote = Some(format!("127.0.0.1:{}", 20000 + k).parse().unwrap());
                s.open(k, LegSetup { codec: Codec::Pcmu, dtmf_pt: Some(101), remote, ssrc: k as u32, seq: 0, ts: 0 });
            }
            s
        }

        fn feed(s: &mut Shard, key: u64, pkts: &[Vec<u8>]) -> Vec<Verdict> {
            let from: SocketAddr = "127.0.0.1:30000".parse().unwrap();
            pkts.iter()
                .enumerate()
                .map(|(i, p)| {
                    let mut buf = p.clone();
                    buf.resize(2048, 0);
                    s.on_rtp(i as u64 * 20_000, key, from, &mut buf, p.len())
                })
                .collect()
        }

        /// A press of `event` at `ts`, as phones send it: updates, then the
        /// end three times (same timestamp, rising sequence).
        fn press(seq: u16, ts: u32, event: u8) -> Vec<Vec<u8>> {
            let mut v: Vec<Vec<u8>> = [160, 320]
                .iter()
                .enumerate()
                .map(|(i, d)| rtp(0xabc, seq + i as u16, ts, 101, &payload(event, false, *d)))
                .collect();
            for i in 0..3 {
                v.push(rtp(0xabc, seq + 2 + i, ts, 101, &payload(event, true, 480)));
            }
            v
        }

        #[test]
        fn a_caller_on_music_pressing_keys_is_heard_once_per_press() {
            let mut s = shard();
            s.hold(1, "default");
            let mut pkts = vec![rtp(0xabc, 1, 0, 0, &[0xff; 160])]; // voice first
            pkts.extend(press(2, 160, 1));
            pkts.extend(press(7, 2000, 1));
            pkts.extend(press(12, 4000, 11));
            // A stray end retransmitted much later: same event, not a new key.
            pkts.push(rtp(0xabc, 20, 4000, 101, &payload(11, true, 480)));
            let v = feed(&mut s, 1, &pkts);
            assert!(v.iter().all(|v| *v == Verdict::Drop), "nothing is relayed while on music");
            assert_eq!(s.take_digits(), vec![(1, '1'), (1, '1'), (1, '#')]);
            assert_eq!(s.take_digits(), vec![], "taken once");
        }

        #[test]
        fn a_bridged_leg_relays_its_keys_instead_of_reporting_them() {
            let mut s = shard();
            s.bridge(1, 2, 0);
            let v = feed(&mut s, 1, &press(1, 160, 5));
            assert!(v.iter().all(|v| matches!(v, Verdict::Forward { via: 2, .. })), "{v:?}");
            assert_eq!(s.take_digits(), vec![]);
        }

        #[test]
        fn keys_with_another_payload_type_are_not_digits() {
            let mut s = shard();
            s.hold(1, "default");
            // PT 96 is not the leg's negotiated telephone-event type.
            let pkts: Vec<Vec<u8>> = (0..3).map(|i| rtp(0xabc, i, 160, 96, &payload(5, true, 480))).collect();
            feed(&mut s, 1, &pkts);
            assert_eq!(s.take_digits(), vec![]);
        }
    }
}
