//! Per-leg media sessions: what each SIP leg's SDP said and what acd
//! answered, beside the RTP plane that carries it.
//!
//! One [`LegMedia`] per leg with media, from the caller's INVITE (its offer)
//! or acd's INVITE to an agent, until the leg closes: the law it settled on,
//! the `o=` version acd last sent, and the caller's pending offer. The
//! answer and re-INVITE rules live here, next to that state.
//!
//! What always holds: a leg has a `LegMedia` entry iff it has an offer
//! pending or RTP ports open in the plane (the daemon's sweep closes media
//! whose leg call control no longer knows).

use crate::callctl::LegId;
use crate::config::Config;
use crate::engine::CallId;
use crate::media::audio::Clip;
use crate::media::core::{MusicClass, ShardStats};
use crate::media::g711::Codec;
use crate::media::plane::{MediaError, MediaEvent, Plane, PlaneSettings};
use crate::media::sdp::{self, Negotiated, DTMF_PT};
use crate::sip::front::CallerOffer;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Announcement clips kept at most (thousands of callers hear the same few
/// sentences; each clip is built once).
const ANNOUNCEMENT_CACHE: usize = 4096;

/// One leg's media session.
#[derive(Debug, Clone, Default)]
struct LegMedia {
    /// The caller's offer, from its INVITE until acd answers.
    offer: Option<CallerOffer>,
    /// The law and telephone-event the leg settled on.
    negotiated: Option<Negotiated>,
    /// `o=` version of the SDP acd last sent on this leg.
    sdp_version: Option<u64>,
    /// The far end's last re-INVITE held the stream (not sendrecv, or
    /// `c=0.0.0.0`).
    held: bool,
    /// acd's SDP to the caller, once sent in a 183: the 200 repeats it.
    caller_sdp: Option<Vec<u8>>,
}

/// Why a re-INVITE was refused: status and Warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub warning: String,
}

pub struct MediaLegs {
    plane: Plane,
    legs: HashMap<LegId, LegMedia>,
    rtp_ip: IpAddr,
    announcements: HashMap<Vec<String>, Clip>,
    warned_no_prompts: bool,
    /// The plane's lateness histogram at the previous sweep: the pacing gauge
    /// is the p99 of the frames sent since then, not since start-up.
    prev_lateness: ShardStats,
}

const PCMU: Negotiated = Negotiated { codec: Codec::Pcmu, dtmf_pt: Some(DTMF_PT) };

impl MediaLegs {
    pub fn start(config: &Config) -> Result<(MediaLegs, mpsc::Receiver<MediaEvent>), MediaError> {
        let (tx, rx) = mpsc::channel(crate::media::plane::EVENT_CAPACITY);
        let rtp_ip = rtp_ip(config);
        let plane = Plane::start(
            PlaneSettings {
                rtp_ip,
                port_min: config.media.rtp_port_min,
                port_max: config.media.rtp_port_max,
                threads: config.media.threads,
                media_timeout_secs: config.media.timeout_secs,
                rtcp: config.media.rtcp,
            },
            music_classes(config),
            tx,
        )?;
        info!(
            "RTP on {rtp_ip} ports {}..{}, {} media thread(s)",
            config.media.rtp_port_min, config.media.rtp_port_max, config.media.threads
        );
        let legs = MediaLegs {
            plane,
            legs: HashMap::new(),
            rtp_ip,
            announcements: HashMap::new(),
            warned_no_prompts: false,
            prev_lateness: ShardStats::default(),
        };
        Ok((legs, rx))
    }

    pub fn plane(&self) -> &Plane {
        &self.plane
    }

    /// The caller's offer, kept until acd answers.
    pub fn offered(&mut self, leg: LegId, offer: CallerOffer) {
        self.legs.entry(leg).or_default().offer = Some(offer);
    }

    /// acd's SDP answer to a caller, with the leg's RTP ports opened; an
    /// error when no port pair could be bound after all (admission counted
    /// the pool, but other programs may hold ports in the range).
    pub fn answer_caller(&mut self, call: CallId, leg: LegId) -> Result<Vec<u8>, MediaError> {
        let entry = self.legs.entry(leg).or_default();
        if let Some(sdp) = entry.caller_sdp.take() {
            return Ok(sdp); // early media: the 183's ports and SDP
        }
        let offer = entry.offer.take().unwrap_or(CallerOffer { media: PCMU, remote: None, late: true });
        let n = offer.media;
        match self.plane.open(leg.0, call.0, n.codec, n.dtmf_pt, offer.remote) {
            Ok(local) => {
                entry.negotiated = Some(n);
                entry.sdp_version = Some(leg.0);
                let codecs: &[Codec] = if offer.late { &[Codec::Pcmu, Codec::Pcma] } else { &[n.codec] };
                let sdp = sdp::build(local, leg.0, codecs, n.dtmf_pt).into_bytes();
                entry.caller_sdp = Some(sdp.clone());
                Ok(sdp)
            }
            Err(e) => {
                warn!(%call, %leg, "cannot answer the caller: {e}");
                Err(e)
            }
        }
    }

    /// Opens media for acd's INVITE to an agent or overflow target, offered
    /// in the caller's law only so the bridge relays payloads as they are.
    pub fn offer_to(&mut self, call: CallId, leg: LegId, caller: Option<LegId>) -> Result<Vec<u8>, MediaError> {
        let caller_n = caller.and_then(|c| self.legs.get(&c)).and_then(|m| m.negotiated).unwrap_or(PCMU);
        let dtmf = caller_n.dtmf_pt.map(|_| DTMF_PT);
        let local = self.plane.open(leg.0, call.0, caller_n.codec, dtmf, None)?;
        let entry = self.legs.entry(leg).or_default();
        entry.negotiated = Some(Negotiated { codec: caller_n.codec, dtmf_pt: dtmf });
        entry.sdp_version = Some(leg.0);
        Ok(sdp::build(local, leg.0, &[caller_n.codec], dtmf).into_bytes())
    }

    /// The far end's SDP answer on an outgoing leg (empty: none; RTP then
    /// goes where its packets come from).
    pub fn answered(&mut self, leg: LegId, body: &[u8]) {
        if body.is_empty() {
            return;
        }
        match sdp::parse(body) {
            Ok(answer) => {
                let entry = self.legs.entry(leg).or_default();
                let offered = entry.negotiated.map(|n| n.codec).unwrap_or(Codec::Pcmu);
                let codec = answer.codecs.first().copied().unwrap_or(offered);
                entry.negotiated = Some(Negotiated { codec, dtmf_pt: answer.dtmf_pt });
                self.plane.set_remote(leg.0, answer.addr, codec, answer.dtmf_pt);
            }
            Err(e) => warn!(%leg, "SDP answer: {e}; sending RTP where the far end's packets come from"),
        }
    }

    /// A re-INVITE on a leg (hold, resume, new address), answered leg by leg;
    /// the other side of the bridge is not asked. A held leg is exempt from
    /// the media timeout until it resumes.
    pub fn reinvite(&mut self, leg: LegId, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        let refuse = |status, warning: String| Refusal { status, warning };
        let port = self.plane.port_of(leg.0);
        let Some((port, entry)) = port.zip(self.legs.get_mut(&leg)) else {
            return Err(refuse(488, "399 acd \"no media on this leg\"".into()));
        };
        let Some(mut n) = entry.negotiated else {
            return Err(refuse(488, "399 acd \"no media on this leg\"".into()));
        };
        let mut direction = sdp::Direction::SendRecv;
        if !body.is_empty() {
            let offer = sdp::parse(body).map_err(|e| refuse(488, format!("399 acd \"{e}\"")))?;
            let codec = if offer.codecs.contains(&n.codec) {
                n.codec
            } else if let Some(&c) = offer.codecs.first() {
                c
            } else {
                return Err(refuse(488, format!("305 acd \"no common codec: offered {}\"", offer.offered.join(", "))));
            };
            n = Negotiated { codec, dtmf_pt: offer.dtmf_pt.or(n.dtmf_pt) };
            entry.negotiated = Some(n);
            self.plane.set_remote(leg.0, offer.addr, codec, n.dtmf_pt);
            direction = offer.direction;
            // RFC 2543 hold (c=0.0.0.0 with sendrecv): acd will not send.
            if offer.addr.is_none() && direction == sdp::Direction::SendRecv {
                direction = sdp::Direction::SendOnly;
            }
        }
        let held = direction != sdp::Direction::SendRecv;
        info!(%leg, held, "re-INVITE");
        entry.held = held;
        self.plane.set_held(leg.0, held);
        let version = entry.sdp_version.get_or_insert(leg.0);
        *version += 1;
        let local = SocketAddr::new(self.rtp_ip, port);
        Ok(sdp::build_with(local, leg.0, *version, &[n.codec], n.dtmf_pt, direction.answer()).into_bytes())
    }

    /// Whether the far end of `leg` holds its stream, by its last re-INVITE.
    pub fn held(&self, leg: LegId) -> bool {
        self.legs.get(&leg).is_some_and(|m| m.held)
    }

    pub fn hold(&self, leg: LegId, music: &str) {
        self.plane.hold(leg.0, music);
    }

    pub fn stop_hold(&self, leg: LegId) {
        self.plane.stop_hold(leg.0);
    }

    pub fn bridge(&self, caller: LegId, other: LegId) {
        self.plane.bridge(caller.0, other.0);
    }

    /// Tells a caller their place, when `media.prompts` is set.
    pub fn announce(&mut self, config: &Config, leg: LegId, position: Option<u32>, estimated_wait_secs: Option<u32>) {
        let Some(p) = &config.media.prompts else {
            if !self.warned_no_prompts {
                self.warned_no_prompts = true;
                warn!("position announcements are on but media.prompts is not set: skipped");
            }
            return;
        };
        let words = crate::media::prompts::words(position, estimated_wait_secs);
        if self.announcements.len() >= ANNOUNCEMENT_CACHE {
            self.announcements.clear();
        }
        let clip =
            self.announcements.entry(words).or_insert_with(|| p.announcement(position, estimated_wait_secs)).clone();
        self.plane.announce(leg.0, clip);
    }

    /// Plays a clip to a leg (a prompt).
    pub fn play_clip(&mut self, leg: LegId, clip: crate::media::audio::Clip) {
        self.plane.announce(leg.0, clip);
    }

    /// Plays one of a queue's `periodic_announce` files (read at load).
    pub fn play_file(&mut self, config: &Config, leg: LegId, file: &std::path::Path) {
        match config.media.announcements.get(file) {
            Some(clip) => self.plane.announce(leg.0, clip.clone()),
            // The call's queue changed its files in a reload since the timer fired.
            None => warn!(file = %file.display(), "periodic announcement not loaded: skipped"),
        }
    }

    /// A leg ended: its RTP ports go back to the pool.
    pub fn close(&mut self, leg: LegId) {
        self.legs.remove(&leg);
        self.plane.close(leg.0);
    }

    /// Media of legs `alive` says are gone (a path that ended a leg without
    /// closing it): closed and counted. Then the media gauges.
    pub fn sweep(&mut self, alive: impl Fn(LegId) -> bool) {
        for key in self.plane.leg_keys() {
            let leg = LegId(key);
            if !alive(leg) {
                warn!(%leg, "media outlived its leg; closed");
                metrics::counter!("acd_media_orphans_total").increment(1);
                self.close(leg);
            }
        }
        self.legs.retain(|leg, m| m.offer.is_some() || self.plane.has_leg(leg.0));
        let p = self.plane.published();
        metrics::gauge!("acd_media_legs").set(self.plane.leg_count() as f64);
        metrics::gauge!("acd_media_listeners").set(p.listeners as f64);
        metrics::gauge!("acd_rtp_ports_in_use").set(self.plane.ports_in_use() as f64);
        let window = p.stats.since(&self.prev_lateness);
        metrics::gauge!("acd_media_pacing_p99_seconds").set(window.lateness_quantile_us(0.99) as f64 / 1e6);
        // Slots a shard gave up on (more than 200 ms behind): frames never
        // sent, so the music played slowly. The pacing gauge cannot show it.
        metrics::counter!("acd_media_skipped_slots_total").increment(window.skipped_slots);
        metrics::counter!("acd_media_frames_generated_total").increment(window.generated);
        self.prev_lateness = p.stats;
    }

    /// New music classes and media timeout; the port range, address and
    /// threads stay until a restart.
    pub fn reload(&mut self, old: &Config, new: &Config) {
        if new.media.rtp_port_min != old.media.rtp_port_min
            || new.media.rtp_port_max != old.media.rtp_port_max
            || new.media.rtp_address != old.media.rtp_address
            || new.media.threads != old.media.threads
        {
            warn!("media.rtp_address / rtp_port_min / rtp_port_max / threads changed: take effect after a restart");
        }
        self.plane.reload(music_classes(new), new.media.timeout_secs);
        self.announcements.clear();
    }

    pub fn shutdown(&mut self) {
        self.plane.shutdown();
    }

    /// An SDP for a feature-code call: acd's address, both laws, and the
    /// discard port 9 (the call is hung up at once; no RTP flows).
    pub fn feature_code_sdp(&self) -> Vec<u8> {
        sdp::build(SocketAddr::new(self.rtp_ip, 9), 1, &[Codec::Pcmu, Codec::Pcma], Some(DTMF_PT)).into_bytes()
    }
}

/// Where RTP binds and what SDP names: `media.rtp_address`, else the first
/// SIP listen address (loopback if that is a wildcard).
fn rtp_ip(config: &Config) -> IpAddr {
    if let Some(ip) = config.media.rtp_address {
        return ip;
    }
    match config.sip.listen_udp.first().or(config.sip.listen_tcp.first()).map(|a| a.ip()) {
        Some(ip) if !ip.is_unspecified() => ip,
        _ => IpAddr::from([127, 0, 0, 1]),
    }
}

fn music_classes(config: &Config) -> Vec<MusicClass> {
    config.media.music.iter().map(|m| MusicClass { name: m.name.clone(), clip: m.clip.clone() }).collect()
}
