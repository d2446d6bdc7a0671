//! The media plane's I/O: shard threads, each a mio poll over its legs' UDP
//! sockets and one [`Shard`] core. Both legs of a call live on the same
//! shard (chosen by call id), so the bridge relays without crossing threads.
//!
//! Why OS threads with mio and not tokio tasks: a shard paces thousands of
//! listeners from one 1 ms slot clock and relays packets from thousands of
//! sockets; a plain loop that owns its sockets and core does that without a
//! task, waker or lock per leg. The daemon's tokio loop talks to the shards
//! through a channel and a mio waker, and hears back on a tokio channel.
//!
//! RTCP is terminated: each leg binds its RTCP port (RTP + 1) and reads and
//! discards what arrives; acd sends no RTCP of its own. The media timeout is
//! judged on RTP alone.

use super::audio::Clip;
use super::core::{Key, LegSetup, MusicClass, Shard, ShardStats, Verdict};
use super::g711::Codec;
use super::ports::PortPool;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use rand::{Rng, SeedableRng};
use rustc_hash::FxHashMap;
use std::hash::{BuildHasher, Hasher};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender as EventSender;
use tracing::{debug, warn};

const WAKER: Token = Token(usize::MAX);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaneSettings {
    /// Bound for RTP and written into SDP.
    pub rtp_ip: IpAddr,
    pub port_min: u16,
    pub port_max: u16,
    pub threads: usize,
    pub media_timeout_secs: u32,
    /// Bind each leg's RTCP port (RTP + 1) and drain it. Off, the port is
    /// only reserved: half the descriptors, and a phone's RTCP gets ICMP
    /// port-unreachable.
    pub rtcp: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("cannot open an RTP socket: {0} (raise the open-file limit, e.g. LimitNOFILE= in the systemd unit)")]
    Descriptors(String),
    #[error("no free RTP port in {min}..{max} ({in_use} pairs in use)")]
    NoPorts { min: u16, max: u16, in_use: usize },
    #[error("media thread: {0}")]
    Thread(String),
}

/// What a shard tells the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// No RTP for the media timeout from a leg that is bridged, or that
    /// sent RTP while waiting (see [`super::core`]'s module doc); never
    /// while the far end holds the stream.
    Timeout { leg: u64 },
    /// A key pressed on a leg that is not bridged (a caller on music),
    /// once per press (RFC 4733 end packets, see [`crate::media::dtmf`]).
    Digit { leg: u64, digit: char },
}

enum Cmd {
    Open { key: Key, setup: LegSetup, rtp: std::net::UdpSocket, rtcp: Option<std::net::UdpSocket> },
    Remote { key: Key, remote: Option<SocketAddr>, codec: Codec, dtmf_pt: Option<u8> },
    Hold { key: Key, class: String },
    Held { key: Key, held: bool },
    StopHold { key: Key },
    Announce { key: Key, clip: Clip },
    Bridge { a: Key, b: Key },
    Close { key: Key },
    Classes { classes: Vec<MusicClass>, media_timeout_secs: u32 },
    Shutdown,
}

/// Commands queued for one shard at most. A shard drains its queue on every
/// wake-up, so a full queue means it is far behind: the daemon loop then
/// waits for room (back-pressure) rather than queueing without limit.
const COMMAND_CAPACITY: usize = 16_384;

/// Media events (timeouts) queued for the daemon at most; a shard keeps what
/// does not fit and sends it on a later turn.
pub const EVENT_CAPACITY: usize = 4096;

struct ShardHandle {
    tx: SyncSender<Cmd>,
    waker: Arc<Waker>,
    thread: Option<std::thread::JoinHandle<()>>,
    published: Arc<Mutex<Published>>,
}

/// A shard's figures, copied out about once a second.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// When it was copied out, on the plane's clock (µs); merged: the oldest.
    pub at_us: u64,
    pub legs: usize,
    pub listeners: usize,
    pub stats: ShardStats,
}

pub struct Plane {
    settings: PlaneSettings,
    shards: Vec<ShardHandle>,
    pool: PortPool,
    /// Leg → (shard, RTP port).
    legs: FxHashMap<Key, (usize, u16)>,
    rng: rand_chacha::ChaCha8Rng,
}

impl Plane {
    pub fn start(
        settings: PlaneSettings,
        classes: Vec<MusicClass>,
        events: EventSender<MediaEvent>,
    ) -> Result<Plane, MediaError> {
        // Two descriptors per leg: thousands of callers need more than the
        // usual soft limit of 1024.
        if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
            warn!("cannot raise the open-file limit: {e}");
        }
        let epoch = Instant::now();
        let mut shards = Vec::new();
        for i in 0..settings.threads.max(1) {
            let poll = Poll::new().map_err(|e| MediaError::Thread(e.to_string()))?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(|e| MediaError::Thread(e.to_string()))?);
            let (tx, rx) = sync_channel(COMMAND_CAPACITY);
            let published = Arc::new(Mutex::new(Published::default()));
            let (classes, events, publ) = (classes.clone(), events.clone(), published.clone());
            let timeout = settings.media_timeout_secs;
            let thread = std::thread::Builder::new()
                .name(format!("acd-media-{i}"))
                .spawn(move || shard_main(poll, rx, classes, timeout, epoch, events, publ))
                .map_err(|e| MediaError::Thread(e.to_string()))?;
            shards.push(ShardHandle { tx, waker, thread: Some(thread), published });
        }
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(epoch.elapsed().as_nanos() as u64);
        Ok(Plane {
            pool: PortPool::new(settings.port_min, settings.port_max),
            settings,
            shards,
            legs: FxHashMap::default(),
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(h.finish()),
        })
    }

    fn send(&self, shard: usize, cmd: Cmd) {
        let s = &self.shards[shard];
        if s.tx.send(cmd).is_ok() {
            s.waker.wake().ok();
        }
    }

    fn shard_of(&self, key: Key) -> Option<usize> {
        self.legs.get(&key).map(|(s, _)| *s)
    }

    /// Free port pairs left.
    pub fn has_capacity(&self) -> bool {
        self.free_pairs() > 0
    }

    /// How many more legs could open now.
    pub fn free_pairs(&self) -> usize {
        self.pool.capacity() - self.pool.in_use()
    }

    /// Sockets a leg holds: RTP, and RTCP when it is bound.
    pub fn sockets_per_leg(&self) -> usize {
        if self.settings.rtcp {
            2
        } else {
            1
        }
    }

    /// Binds a port pair for a new leg of call `call` and hands it to the
    /// call's shard; returns the local RTP address for the SDP.
    pub fn open(
        &mut self,
        key: Key,
        call: u64,
        codec: Codec,
        dtmf_pt: Option<u8>,
        remote: Option<SocketAddr>,
    ) -> Result<SocketAddr, MediaError> {
        let shard = (call % self.shards.len() as u64) as usize;
        let ip = self.settings.rtp_ip;
        // A port another program holds goes to the back of the pool. Up to
        // 512 tries (a failed bind costs a few µs): another program holding
        // a block of the range (600 ports in one load run) must not fail
        // the legs that land on it.
        let mut tried = Vec::new();
        let mut bound = None;
        let mut fatal = None;
        for _ in 0..512 {
            let Some(port) = self.pool.allocate() else { break };
            let rtp = std::net::UdpSocket::bind((ip, port));
            let rtcp = match (&rtp, self.settings.rtcp) {
                (Ok(_), true) => Some(std::net::UdpSocket::bind((ip, port + 1))),
                _ => None,
            };
            match (rtp, rtcp.transpose()) {
                (Ok(rtp), Ok(rtcp)) => {
                    bound = Some((port, rtp, rtcp));
                    break;
                }
                (Err(e), _) | (_, Err(e)) => {
                    tried.push(port);
                    if e.raw_os_error() == Some(24) || e.raw_os_error() == Some(23) {
                        fatal = Some(e.to_string()); // EMFILE / ENFILE: no other port helps
                        break;
                    }
                    debug!(port, error = %e, "RTP port busy");
                }
            }
        }
        for p in tried {
            self.pool.release(p);
        }
        if let Some(e) = fatal {
            return Err(MediaError::Descriptors(e));
        }
        let Some((port, rtp, rtcp)) = bound else {
            return Err(MediaError::NoPorts {
                min: self.settings.port_min,
                max: self.settings.port_max,
                in_use: self.pool.in_use(),
            });
        };
        rtp.set_nonblocking(true).ok();
        if let Some(r) = &rtcp {
            r.set_nonblocking(true).ok();
        }
        let setup =
            LegSetup { codec, dtmf_pt, remote, ssrc: self.rng.random(), seq: self.rng.random(), ts: self.rng.random() };
        self.legs.insert(key, (shard, port));
        self.send(shard, Cmd::Open { key, setup, rtp, rtcp });
        Ok(SocketAddr::new(ip, port))
    }

    pub fn set_remote(&self, key: Key, remote: Option<SocketAddr>, codec: Codec, dtmf_pt: Option<u8>) {
        if let Some(s) = self.shard_of(key) {
            self.send(s, Cmd::Remote { key, remote, codec, dtmf_pt });
        }
    }
    /// The far end holds (or resumed) the stream: no media timeout meanwhile.
    pub fn set_held(&self, key: Key, held: bool) {
        if let Some(s) = self.shard_of(key) {
            self.send(s, Cmd::Held { key, held });
        }
    }
    pub fn hold(&self, key: Key, class: &str) {
        if let Some(s) = self.shard_of(key) {
            self.send(s, Cmd::Hold { key, class: class.to_string() });
        }
    }
    pub fn stop_hold(&self, key: Key) {
        if let Some(s) = self.shard_of(key) {
            self.send(s, Cmd::StopHold { key });
        }
    }
    pub fn announce(&self, key: Key, clip: Clip) {
        if let Some(s) = self.shard_of(key) {
            self.send(s, Cmd::Announce { key, clip });
        }
    }
    pub fn bridge(&self, a: Key, b: Key) {
        match (self.shard_of(a), self.shard_of(b)) {
            (Some(x), Some(y)) if x == y => self.send(x, Cmd::Bridge { a, b }),
            (Some(_), Some(_)) => warn!(a, b, "legs of one call on two media shards: not bridged"),
            _ => debug!(a, b, "bridge of a leg without media"),
        }
    }

    /// Ends a leg's media and frees its ports. Unknown legs are ignored.
    pub fn close(&mut self, key: Key) {
        if let Some((shard, port)) = self.legs.remove(&key) {
            self.send(shard, Cmd::Close { key });
            self.pool.release(port);
        }
    }

    pub fn has_leg(&self, key: Key) -> bool {
        self.legs.contains_key(&key)
    }
    /// Legs with media, and the port pairs they hold.
    pub fn leg_count(&self) -> usize {
        self.legs.len()
    }
    pub fn ports_in_use(&self) -> usize {
        self.pool.in_use()
    }
    pub fn leg_keys(&self) -> Vec<Key> {
        self.legs.keys().copied().collect()
    }
    /// The RTP port a leg holds.
    pub fn port_of(&self, key: Key) -> Option<u16> {
        self.legs.get(&key).map(|(_, p)| *p)
    }

    /// New music classes and timeout (a reload). The port range and thread
    /// count stay until a restart.
    pub fn reload(&mut self, classes: Vec<MusicClass>, media_timeout_secs: u32) {
        for i in 0..self.shards.len() {
            self.send(i, Cmd::Classes { classes: classes.clone(), media_timeout_secs });
        }
        self.settings.media_timeout_secs = media_timeout_secs;
    }

    /// Every shard's last published figures, merged.
    pub fn published(&self) -> Published {
        let mut all = Published { at_us: u64::MAX, ..Default::default() };
        for s in &self.shards {
            let p = s.published.lock().expect("published lock");
            all.at_us = all.at_us.min(p.at_us);
            all.legs += p.legs;
            all.listeners += p.listeners;
            all.stats.merge(&p.stats);
        }
        all
    }

    pub fn shutdown(&mut self) {
        for i in 0..self.shards.len() {
            self.send(i, Cmd::Shutdown);
        }
        for s in &mut self.shards {
            if let Some(t) = s.thread.take() {
                t.join().ok();
            }
        }
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Socks {
    key: Key,
    rtp: UdpSocket,
    rtcp: Option<UdpSocket>,
}

/// A shard's sockets: slab index `i` has tokens `2i` (RTP) and `2i + 1`.
#[derive(Default)]
struct Slab {
    socks: Vec<Option<Socks>>,
    free: Vec<usize>,
    by_key: FxHashMap<Key, usize>,
}

impl Slab {
    fn send(&self, key: Key, to: SocketAddr, p: &[u8]) -> bool {
        let Some(&i) = self.by_key.get(&key) else { return false };
        match &self.socks[i] {
            Some(s) => s.rtp.send_to(p, to).is_ok(),
            None => false,
        }
    }
}

fn shard_main(
    mut poll: Poll,
    rx: Receiver<Cmd>,
    classes: Vec<MusicClass>,
    media_timeout_secs: u32,
    epoch: Instant,
    events: EventSender<MediaEvent>,
    published: Arc<Mutex<Published>>,
) {
    let mut clock = move || epoch.elapsed().as_micros() as u64;
    let mut shard = Shard::new(classes, media_timeout_secs, clock());
    let mut slab = Slab::default();
    let mut mio_events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 2048];
    let mut next_publish = clock();
    // Timeouts the daemon's full event queue did not take yet: at most one
    // per leg of this shard.
    let mut unsent: Vec<Key> = Vec::new();
    loop {
        let now = clock();
        let deadline = shard.next_deadline_us().unwrap_or(now + 1_000_000).min(next_publish);
        // epoll waits in whole milliseconds, rounded up: wait the whole ones
        // there, and the last fraction in a precise sleep, so frames leave
        // on their slot rather than up to a millisecond late.
        let wait = deadline.saturating_sub(now);
        let timeout = if wait >= 1000 {
            Duration::from_millis(wait / 1000)
        } else {
            if wait > 50 {
                std::thread::sleep(Duration::from_micros(wait));
            }
            Duration::ZERO
        };
        if let Err(e) = poll.poll(&mut mio_events, Some(timeout)) {
            if e.kind() != ErrorKind::Interrupted {
                warn!(error = %e, "media poll failed");
                return;
            }
        }
        for ev in mio_events.iter() {
            if ev.token() == WAKER {
                while let Ok(cmd) = rx.try_recv() {
                    if !command(&mut shard, &mut slab, &poll, cmd, clock()) {
                        return;
                    }
                }
                continue;
            }
            let (i, is_rtcp) = (ev.token().0 / 2, ev.token().0 % 2 == 1);
            let Some(Some(socks)) = slab.socks.get(i) else { continue };
            let key = socks.key;
            if is_rtcp {
                // Terminated: read and discard.
                if let Some(rtcp) = &socks.rtcp {
                    while rtcp.recv_from(&mut buf).is_ok() {}
                }
                continue;
            }
            while let Some(Some(socks)) = slab.socks.get(i) {
                let (n, from) = match socks.rtp.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => continue, // ICMP errors surface here on Linux
                };
                if let Verdict::Forward { via, to, len } = shard.on_rtp(clock(), key, from, &mut buf, n) {
                    slab.send(via, to, &buf[..len]);
                }
            }
        }
        // Due slots, but at most a few per turn: a shard that falls behind
        // still reads its sockets and commands (and skips slots, counted,
        // once it is 200 ms behind) instead of spinning here.
        for _ in 0..4 {
            let Some(ms) = shard.due_slot(clock()) else { break };
            shard.play_slot(ms, &mut clock, |k, to, p| slab.send(k, to, p));
        }
        // A key press the daemon's full queue cannot take is dropped (the
        // caller presses again); a timeout is kept until it fits.
        for (leg, digit) in shard.take_digits() {
            if events.try_send(MediaEvent::Digit { leg, digit }).is_err() {
                warn!(leg, "media event queue full: key press dropped");
            }
        }
        unsent.extend(shard.timed_out(clock()));
        while let Some(&leg) = unsent.first() {
            match events.try_send(MediaEvent::Timeout { leg }) {
                Ok(()) => {
                    unsent.remove(0);
                }
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => break,
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                    unsent.clear();
                }
            }
        }
        if clock() >= next_publish {
            next_publish = clock() + 1_000_000;
            let mut p = published.lock().expect("published lock");
            p.at_us = clock();
            p.legs = shard.leg_count();
            p.listeners = shard.listener_count();
            p.stats = shard.stats().clone();
        }
    }
}

/// Applies one command; `false` to stop the thread.
fn command(shard: &mut Shard, slab: &mut Slab, poll: &Poll, cmd: Cmd, now: u64) -> bool {
    match cmd {
        Cmd::Open { key, setup, rtp, rtcp } => {
            let mut rtp = UdpSocket::from_std(rtp);
            let mut rtcp = rtcp.map(UdpSocket::from_std);
            let i = slab.free.pop().unwrap_or_else(|| {
                slab.socks.push(None);
                slab.socks.len() - 1
            });
            let reg = poll.registry();
            if let Err(e) = reg.register(&mut rtp, Token(2 * i), Interest::READABLE).and_then(|_| match &mut rtcp {
                Some(r) => reg.register(r, Token(2 * i + 1), Interest::READABLE),
                None => Ok(()),
            }) {
                warn!(error = %e, "cannot poll an RTP socket");
            }
            slab.socks[i] = Some(Socks { key, rtp, rtcp });
            slab.by_key.insert(key, i);
            shard.open(key, setup);
        }
        Cmd::Remote { key, remote, codec, dtmf_pt } => shard.set_remote(key, remote, codec, dtmf_pt),
        Cmd::Hold { key, class } => shard.hold(key, &class),
        Cmd::Held { key, held } => shard.set_held(key, held, now),
        Cmd::StopHold { key } => shard.stop_hold(key),
        Cmd::Announce { key, clip } => shard.announce(key, clip),
        Cmd::Bridge { a, b } => shard.bridge(a, b, now),
        Cmd::Close { key } => {
            shard.close(key);
            if let Some(i) = slab.by_key.remove(&key) {
                if let Some(mut s) = slab.socks[i].take() {
                    poll.registry().deregister(&mut s.rtp).ok();
                    if let Some(r) = &mut s.rtcp {
                        poll.registry().deregister(r).ok();
                    }
                }
                slab.free.push(i);
            }
        }
        Cmd::Classes { classes, media_timeout_secs } => shard.set_classes(classes, media_timeout_secs),
        Cmd::Shutdown => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket as StdUdp;

    fn rtp(seq: u16, fill: u8) -> Vec<u8> {
        let mut p = vec![0u8; 12 + 160];
        p[0] = 0x80;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&0x1234u32.to_be_bytes());
        p[12..].fill(fill);
        p
    }

    /// A waiting caller latches from its first packets, and what it sent
    /// while it waited is not relayed to the agent once bridged (a read
    /// policy that leaves packets queued must keep both true).
    #[test]
    fn a_waiting_caller_latches_and_its_queued_packets_are_not_relayed_on_the_bridge() {
        let (tx, _rx) = tokio::sync::mpsc::channel(EVENT_CAPACITY);
        let music = MusicClass { name: "default".into(), clip: Clip::from_pcm(&[1000i16; 1600]) };
        let settings = PlaneSettings {
            rtp_ip: "127.0.0.1".parse().unwrap(),
            port_min: 43100,
            port_max: 43200,
            threads: 1,
            media_timeout_secs: 0,
            rtcp: false,
        };
        let mut plane = Plane::start(settings, vec![music], tx).unwrap();
        let caller = StdUdp::bind("127.0.0.1:0").unwrap();
        let agent = StdUdp::bind("127.0.0.1:0").unwrap();
        caller.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        agent.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        // The SDP names an address nobody listens on: the caller's packets latch.
        let a1 = plane.open(1, 7, Codec::Pcmu, None, Some("127.0.0.1:9".parse().unwrap())).unwrap();
        plane.hold(1, "default");
        std::thread::sleep(Duration::from_millis(50));
        for seq in 1..=5 {
            caller.send_to(&rtp(seq, seq as u8), a1).unwrap();
        }
        let mut buf = [0u8; 2048];
        let (_, from) = caller.recv_from(&mut buf).expect("music after latching");
        assert_eq!(from, a1);
        let _a2 = plane.open(2, 7, Codec::Pcmu, None, Some(agent.local_addr().unwrap())).unwrap();
        plane.stop_hold(1);
        plane.bridge(1, 2);
        std::thread::sleep(Duration::from_millis(100));
        assert!(agent.recv_from(&mut buf).is_err(), "nothing queued before the bridge is relayed");
        caller.send_to(&rtp(6, 6), a1).unwrap();
        let (n, _) = agent.recv_from(&mut buf).expect("relayed after the bridge");
        assert_eq!((n, buf[12]), (172, 6));
        assert!(agent.recv_from(&mut buf).is_err(), "only the new packet");
        plane.shutdown();
    }
}
