//! SDP offer/answer for audio legs (RFC 3264), over `rtc-sdp`'s parser and
//! printer. acd speaks G.711 only (PCMU, PCMA) plus RFC 4733
//! telephone-event, which it passes through.
//!
//! - The caller's INVITE carries an offer: [`parse`] it, [`negotiate`] the
//!   first codec the caller listed that acd has, and answer with [`build`]
//!   holding that one codec (and telephone-event when offered).
//! - The INVITE to an agent carries acd's offer: the caller's codec only, so
//!   the bridge relays payloads untouched. An agent that answers with the
//!   other law still works (the relay transcodes), anything else fails the
//!   leg like a decline.

use super::g711::Codec;
use rtc_sdp::description::common::{Address, Attribute, ConnectionInformation};
use rtc_sdp::description::media::{MediaName, RangedPort};
use rtc_sdp::description::session::{Origin, TimeDescription, Timing};
use rtc_sdp::{MediaDescription, SessionDescription};
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

/// The payload type acd offers for telephone-event when it makes the offer.
pub const DTMF_PT: u8 = 101;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP does not parse: {0}")]
    Parse(String),
    #[error("SDP has no audio stream")]
    NoAudio,
    #[error("the audio stream is declined (m=audio 0)")]
    AudioDisabled,
    #[error("no common codec: offered {0}; acd has PCMU and PCMA")]
    NoCommonCodec(String),
    #[error("SDP connection address: {0}")]
    Address(String),
}

/// The far end's audio stream as its SDP describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMedia {
    /// Where to send RTP; `None` for port 0 / address 0.0.0.0 (a stream
    /// that is off, or on hold the RFC 2543 way): symmetric RTP may still
    /// latch onto the real address.
    pub addr: Option<SocketAddr>,
    /// G.711 laws in the order offered.
    pub codecs: Vec<Codec>,
    /// Every payload type offered, for the error message.
    pub offered: Vec<String>,
    /// telephone-event's payload type, if offered.
    pub dtmf_pt: Option<u8>,
    /// `a=sendrecv` (the default), `sendonly`, `recvonly` or `inactive`.
    pub direction: Direction,
}

/// RFC 3264 §5.1 stream direction, from the side that wrote the SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The answer's direction to an offer with this one.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
    fn attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// What one leg settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    pub dtmf_pt: Option<u8>,
}

pub fn parse(body: &[u8]) -> Result<RemoteMedia, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::Parse("not UTF-8".into()))?;
    let desc = SessionDescription::unmarshal(&mut Cursor::new(text)).map_err(|e| SdpError::Parse(e.to_string()))?;
    // The first audio stream that is not declined (RFC 3264 §5.1: port 0
    // rejects a stream; an offer whose only audio has it leaves acd nothing
    // to answer with).
    let mut audio = desc.media_descriptions.iter().filter(|m| m.media_name.media.eq_ignore_ascii_case("audio"));
    audio.clone().next().ok_or(SdpError::NoAudio)?;
    let media = audio.find(|m| m.media_name.port.value != 0).ok_or(SdpError::AudioDisabled)?;
    let conn = media.connection_information.as_ref().or(desc.connection_information.as_ref());
    let ip: Option<IpAddr> = match conn.and_then(|c| c.address.as_ref()) {
        Some(a) => {
            let host = a.address.split('/').next().unwrap_or_default();
            Some(host.parse().map_err(|_| SdpError::Address(format!("\"{}\" is not an IP address", a.address)))?)
        }
        None => None,
    };
    let port = media.media_name.port.value;
    if !(0..=65535).contains(&port) {
        return Err(SdpError::Address(format!("port {port}")));
    }
    let addr = match ip {
        Some(ip) if port != 0 && !ip.is_unspecified() => Some(SocketAddr::new(ip, port as u16)),
        _ => None,
    };
    let rtpmaps = media.codecs();
    let mut codecs = Vec::new();
    let mut dtmf_pt = None;
    let mut offered = Vec::new();
    for f in &media.media_name.formats {
        let Ok(pt) = f.parse::<u8>() else {
            offered.push(f.clone());
            continue;
        };
        // Static payload types need no rtpmap (RFC 3551); a dynamic one is
        // known by its rtpmap's name.
        let name = match rtpmaps.get(&pt) {
            Some(c) => format!("{}/{}", c.name, c.clock_rate),
            None if pt == 0 => "PCMU/8000".to_string(),
            None if pt == 8 => "PCMA/8000".to_string(),
            None => pt.to_string(),
        };
        let upper = name.to_ascii_uppercase();
        if upper == "PCMU/8000" {
            codecs.push(Codec::Pcmu);
        } else if upper == "PCMA/8000" {
            codecs.push(Codec::Pcma);
        } else if upper == "TELEPHONE-EVENT/8000" && dtmf_pt.is_none() {
            dtmf_pt = Some(pt);
        }
        offered.push(name);
    }
    let dir_of = |attrs: &[Attribute]| {
        attrs.iter().find_map(|a| match a.key.as_str() {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        })
    };
    let direction = dir_of(&media.attributes).or_else(|| dir_of(&desc.attributes)).unwrap_or(Direction::SendRecv);
    Ok(RemoteMedia { addr, codecs, offered, dtmf_pt, direction })
}

/// The answer to an offer: the first G.711 law the offer lists.
pub fn negotiate(offer: &RemoteMedia) -> Result<Negotiated, SdpError> {
    match offer.codecs.first() {
        Some(&codec) => Ok(Negotiated { codec, dtmf_pt: offer.dtmf_pt }),
        None => Err(SdpError::NoCommonCodec(offer.offered.join(", "))),
    }
}

/// acd's side of a session: `codecs` in preference order, telephone-event
/// at `dtmf_pt` when given.
pub fn build(local: SocketAddr, session_id: u64, codecs: &[Codec], dtmf_pt: Option<u8>) -> String {
    build_with(local, session_id, session_id, codecs, dtmf_pt, Direction::SendRecv)
}

/// [`build`] with the `o=` version (one more for each new SDP in a dialog,
/// RFC 3264 §8) and a direction (the answer to a hold).
pub fn build_with(
    local: SocketAddr,
    session_id: u64,
    version: u64,
    codecs: &[Codec],
    dtmf_pt: Option<u8>,
    direction: Direction,
) -> String {
    let (addr_type, ip) = match local.ip() {
        IpAddr::V4(ip) => ("IP4", ip.to_string()),
        IpAddr::V6(ip) => ("IP6", ip.to_string()),
    };
    let mut formats: Vec<String> = codecs.iter().map(|c| c.payload_type().to_string()).collect();
    let mut attributes: Vec<Attribute> =
        codecs.iter().map(|c| attr("rtpmap", &format!("{} {}/8000", c.payload_type(), c.name()))).collect();
    if let Some(pt) = dtmf_pt {
        formats.push(pt.to_string());
        attributes.push(attr("rtpmap", &format!("{pt} telephone-event/8000")));
        attributes.push(attr("fmtp", &format!("{pt} 0-16")));
    }
    attributes.push(attr("ptime", "20"));
    attributes.push(Attribute::new(direction.attr().into(), None));
    let media = MediaDescription {
        media_name: MediaName {
            media: "audio".into(),
            port: RangedPort { value: local.port() as isize, range: None },
            protos: vec!["RTP".into(), "AVP".into()],
            formats,
        },
        attributes,
        ..Default::default()
    };
    let desc = SessionDescription {
        version: 0,
        origin: Origin {
            username: "acd".into(),
            session_id,
            session_version: version,
            network_type: "IN".into(),
            address_type: addr_type.into(),
            unicast_address: ip.clone(),
        },
        session_name: "acd".into(),
        connection_information: Some(ConnectionInformation {
            network_type: "IN".into(),
            address_type: addr_type.into(),
            address: Some(Address { address: ip, ttl: None, range: None }),
        }),
        time_descriptions: vec![TimeDescription {
            timing: Timing { start_time: 0, stop_time: 0 },
            repeat_times: vec![],
        }],
        media_descriptions: vec![media],
        ..Default::default()
    };
    desc.marshal()
}

fn attr(key: &str, value: &str) -> Attribute {
    Attribute::new(key.into(), Some(value.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PJSUA_OFFER: &str = "v=0\r\no=- 3917 3917 IN IP4 127.0.0.1\r\ns=pjmedia\r\nb=AS:84\r\nt=0 0\r\n\
        a=X-nat:0\r\nm=audio 20012 RTP/AVP 96 9 8 0 101\r\nc=IN IP4 127.0.0.1\r\nb=TIAS:64000\r\n\
        a=rtcp:20013 IN IP4 127.0.0.1\r\na=sendrecv\r\na=rtpmap:96 speex/16000\r\na=rtpmap:9 G722/8000\r\n\
        a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n";

    #[test]
    fn a_softphone_offer_settles_on_its_first_g711_law_and_keeps_its_dtmf_type() {
        let offer = parse(PJSUA_OFFER.as_bytes()).unwrap();
        assert_eq!(offer.addr, Some("127.0.0.1:20012".parse().unwrap()));
        assert_eq!(offer.codecs, vec![Codec::Pcma, Codec::Pcmu]);
        assert_eq!(offer.dtmf_pt, Some(101));
        let n = negotiate(&offer).unwrap();
        assert_eq!(n, Negotiated { codec: Codec::Pcma, dtmf_pt: Some(101) });
    }

    #[test]
    fn static_payload_types_need_no_rtpmap() {
        let sdp = "v=0\r\no=x 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let offer = parse(sdp.as_bytes()).unwrap();
        assert_eq!(offer.codecs, vec![Codec::Pcmu]);
        assert_eq!(offer.addr, Some("10.0.0.5:4000".parse().unwrap()));
        assert_eq!(offer.dtmf_pt, None);
    }

    #[test]
    fn an_offer_without_g711_is_refused_naming_what_was_offered() {
        let sdp = "v=0\r\no=x 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
                   m=audio 4000 RTP/AVP 9 96\r\na=rtpmap:9 G722/8000\r\na=rtpmap:96 opus/48000/2\r\n";
        let err = negotiate(&parse(sdp.as_bytes()).unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "no common codec: offered G722/8000, opus/48000; acd has PCMU and PCMA");
    }

    #[test]
    fn held_or_disabled_streams_have_no_address() {
        let sdp = "v=0\r\no=x 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(parse(sdp.as_bytes()).unwrap().addr, None);
        let sdp = "v=0\r\no=x 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n";
        assert_eq!(parse(sdp.as_bytes()), Err(SdpError::AudioDisabled));
        // A declined first stream with a live second one: the live one.
        let two = format!("{sdp}m=audio 4002 RTP/AVP 8\r\n");
        let m = parse(two.as_bytes()).unwrap();
        assert_eq!((m.addr, m.codecs), (Some("10.0.0.5:4002".parse().unwrap()), vec![Codec::Pcma]));
    }

    #[test]
    fn a_hold_offer_is_answered_with_the_mirror_direction() {
        let sdp = "v=0\r\no=x 1 2 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n";
        let offer = parse(sdp.as_bytes()).unwrap();
        assert_eq!(offer.direction, Direction::SendOnly);
        let text = build_with("127.0.0.1:30000".parse().unwrap(), 7, 8, &[Codec::Pcmu], None, offer.direction.answer());
        assert!(text.contains("a=recvonly") && text.contains("o=acd 7 8 IN IP4"), "{text}");
        assert_eq!(parse(PJSUA_OFFER.as_bytes()).unwrap().direction, Direction::SendRecv);
    }

    #[test]
    fn garbage_and_video_only_are_errors() {
        assert!(matches!(parse(b"hello"), Err(SdpError::Parse(_))));
        let sdp = "v=0\r\no=x 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=video 4000 RTP/AVP 96\r\n";
        assert_eq!(parse(sdp.as_bytes()), Err(SdpError::NoAudio));
    }

    #[test]
    fn what_acd_builds_parses_back_to_the_same_stream() {
        for local in ["127.0.0.1:30000", "[::1]:30002"] {
            let local: SocketAddr = local.parse().unwrap();
            let text = build(local, 7, &[Codec::Pcmu], Some(DTMF_PT));
            assert!(text.contains("m=audio"), "{text}");
            let back = parse(text.as_bytes()).unwrap();
            assert_eq!(back.addr, Some(local));
            assert_eq!(back.codecs, vec![Codec::Pcmu]);
            assert_eq!(back.dtmf_pt, Some(DTMF_PT));
        }
    }
}
