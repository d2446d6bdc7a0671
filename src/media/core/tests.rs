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
    let h = Header { version: 2, payload_type: pt, sequence_number: seq, timestamp: ts, ssrc, ..Default::default() };
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
