//! What a trunk engineer sees at acd's SIP edge: raw SIP over a loopback
//! UDP socket (and TCP for the stream framing), against the daemon
//! in-process (see tests/common), no SIP stack on this side. The requests
//! are the ones a carrier's interop checklist sends: an unknown method, the
//! RFC 3261 header checks, malformed and misframed messages, an offer with
//! no usable audio, and the Call-ID acd puts on the INVITEs it originates.
//!
//! Which assertions fail on the unpatched rsipstack 0.7.14 is said at each
//! test (the patches are listed in vendor/rsipstack/ACD-PATCHES.md). The
//! `codec_*` tests at the end call the patched rsipstack functions directly.

mod common;

use acd::shell::DaemonHandle;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a test waits for an answer acd should send at once.
const ANSWER: Duration = Duration::from_secs(3);
/// How long silence must last to count as "no response at all": acd's
/// 100 Trying or any final goes out within milliseconds on loopback.
const SILENCE: Duration = Duration::from_millis(1500);

const PCMU_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                          m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// One daemon on a free port with queue `q` (member anna) behind number 100;
/// every 127.0.0.1 source is the test trunk (tests/common).
fn daemon() -> (std::sync::MutexGuard<'static, ()>, SocketAddr, DaemonHandle) {
    let (guard, port, d) = daemon_q(r#"members = [{ agent = "anna" }]"#);
    (guard, SocketAddr::from(([127, 0, 0, 1], port)), d)
}

fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A loopback UDP socket playing a trunk or a phone.
struct Peer {
    sock: UdpSocket,
    acd: SocketAddr,
}

impl Peer {
    fn new(acd: SocketAddr) -> Peer {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        Peer { sock, acd }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    fn send(&self, raw: &[u8]) {
        self.sock.send_to(raw, self.acd).unwrap();
    }

    /// The next SIP message within `within`, keep-alives skipped.
    fn recv(&self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) if buf[..n].iter().all(u8::is_ascii_whitespace) => continue,
                Ok((n, _)) => return Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(_) => return None,
            }
        }
    }

    /// The first final response for `call_id` within `within`;
    /// provisionals and other calls' messages are skipped.
    fn final_for(&self, call_id: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        while let Some(msg) = self.recv(deadline.saturating_duration_since(Instant::now())) {
            if header(&msg, "Call-ID") == Some(call_id) && status(&msg).is_some_and(|s| s >= 200) {
                return Some(msg);
            }
        }
        None
    }

    /// A request from this socket, Via/Contact pointing back at it.
    fn request(&self, method: &str, uri: &str, call_id: &str, cseq: u32, extra: &str, body: &str) -> String {
        let me = self.addr();
        format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}{cseq};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:trunk@{me}>;tag=t{cseq}\r\n\
             To: <{uri}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:trunk@{me}>\r\n\
             {extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// An out-of-dialog request and its final response.
    fn ask(&self, method: &str, uri: &str, extra: &str, body: &str) -> String {
        let call_id = unique(&method.to_ascii_lowercase());
        let extra =
            if body.is_empty() { extra.to_string() } else { format!("{extra}Content-Type: application/sdp\r\n") };
        self.send(self.request(method, uri, &call_id, 1, &extra, body).as_bytes());
        let resp = self.final_for(&call_id, ANSWER).unwrap_or_else(|| panic!("no final response to {method}"));
        if method == "INVITE" {
            self.ack_non_2xx(&resp);
        }
        resp
    }

    /// RFC 3261 §17.1.1.3: the ACK to a non-2xx final, so acd stops resending it.
    fn ack_non_2xx(&self, resp: &str) {
        let via = header(resp, "Via").unwrap();
        let to = header(resp, "To").unwrap();
        let from = header(resp, "From").unwrap();
        let call_id = header(resp, "Call-ID").unwrap();
        let seq = header(resp, "CSeq").unwrap().split_whitespace().next().unwrap();
        let uri = to.trim_start_matches('<').split('>').next().unwrap();
        let ack = format!(
            "ACK {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\n\
             Call-ID: {call_id}\r\nCSeq: {seq} ACK\r\nContent-Length: 0\r\n\r\n"
        );
        self.send(ack.as_bytes());
    }

    /// The daemon is alive and serving: OPTIONS gets 200.
    fn assert_options_ok(&self) {
        let resp = self.ask("OPTIONS", &format!("sip:{}", self.acd), "", "");
        assert_eq!(status(&resp), Some(200), "{resp}");
    }
}

fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.split_whitespace().next()?.parse().ok()
}

/// The first value of header `name` (case-insensitive, compact forms not handled).
fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    let head = msg.split("\r\n\r\n").next().unwrap_or(msg);
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn number(acd: SocketAddr) -> String {
    format!("sip:100@{acd}")
}

/// Unpatched: the parser refused the method token (`invalid method: FOO`)
/// and the datagram was dropped, so no 501 ever came back.
#[test]
fn unknown_method_gets_501_with_allow_and_the_daemon_carries_on() {
    let (_g, acd, _d) = daemon();
    let trunk = Peer::new(acd);
    let resp = trunk.ask("FOO", &format!("sip:x@{acd}"), "", "");
    assert_eq!(status(&resp), Some(501), "{resp}");
    assert_eq!(header(&resp, "Allow"), Some(acd::sip::front::ALLOW), "{resp}");
    assert_eq!(header(&resp, "CSeq").map(|c| c.ends_with(" FOO")), Some(true), "{resp}");
    // A method acd knows of but does not serve is 405, BYE out of dialog 481.
    let resp = trunk.ask("SUBSCRIBE", &format!("sip:x@{acd}"), "Event: presence\r\n", "");
    assert_eq!(status(&resp), Some(405), "{resp}");
    assert!(header(&resp, "Allow").is_some(), "{resp}");
    let resp = trunk.ask("BYE", &format!("sip:x@{acd}"), "", "");
    assert_eq!(status(&resp), Some(481), "{resp}");
    trunk.assert_options_ok();
}

/// Passed before the patches too: acd's own front door checks.
#[test]
fn options_200_max_forwards_0_is_483_and_require_foo_is_420() {
    let (_g, acd, _d) = daemon();
    let trunk = Peer::new(acd);
    let resp = trunk.ask("OPTIONS", &format!("sip:{acd}"), "", "");
    assert_eq!(status(&resp), Some(200), "{resp}");
    assert!(header(&resp, "Allow").is_some_and(|a| a.contains("INVITE")), "{resp}");

    let invite = trunk.request("INVITE", &number(acd), &unique("mf0"), 1, "", "");
    let invite = invite.replace("Max-Forwards: 70", "Max-Forwards: 0");
    trunk.send(invite.as_bytes());
    let resp = trunk.final_for(header(&invite, "Call-ID").unwrap(), ANSWER).expect("a final to Max-Forwards 0");
    trunk.ack_non_2xx(&resp);
    assert_eq!(status(&resp), Some(483), "{resp}");

    let resp = trunk.ask("INVITE", &number(acd), "Require: foo\r\n", PCMU_OFFER);
    assert_eq!(status(&resp), Some(420), "{resp}");
    assert_eq!(header(&resp, "Unsupported"), Some("foo"), "{resp}");
    trunk.assert_options_ok();
}

/// Passed before the patches too (rsipstack dropped these at parse).
#[test]
fn malformed_request_line_and_garbage_are_400_or_dropped_and_the_daemon_carries_on() {
    let (_g, acd, _d) = daemon();
    let trunk = Peer::new(acd);
    let good = trunk.request("OPTIONS", &format!("sip:{acd}"), &unique("bad"), 1, "", "");
    let headers = good.split_once("\r\n").unwrap().1;
    let inputs: Vec<Vec<u8>> = vec![
        format!("OPTIONS\r\n{headers}").into_bytes(),
        format!("OPTIONS sip:{acd}\r\n{headers}").into_bytes(),
        format!("OPTIONS sip:{acd} HTTP/1.1\r\n{headers}").into_bytes(),
        format!("OPT IONS sip:{acd} SIP/2.0\r\n{headers}").into_bytes(),
        format!("OPTIONS <<<>>> SIP/2.0\r\n{headers}").into_bytes(),
        b"\x00\x01\x02garbage\xff\xfe\r\n\r\n".to_vec(),
        b"hello".to_vec(),
        vec![0xAB; 1400],
    ];
    for input in &inputs {
        trunk.send(input);
        if let Some(msg) = trunk.recv(Duration::from_millis(300)) {
            assert_eq!(status(&msg), Some(400), "to {:?}: {msg}", String::from_utf8_lossy(input));
        }
    }
    trunk.assert_options_ok();
}

/// Unpatched: rsipstack passed the INVITE on with the short body, and acd
/// answered it (100 Trying and a final).
#[test]
fn udp_invite_with_content_length_beyond_its_body_is_discarded() {
    let (_g, acd, d) = daemon();
    let trunk = Peer::new(acd);
    let call_id = unique("short");
    let invite = trunk.request("INVITE", &number(acd), &call_id, 1, "Content-Type: application/sdp\r\n", PCMU_OFFER);
    let invite = invite.replace(
        &format!("Content-Length: {}\r\n", PCMU_OFFER.len()),
        &format!("Content-Length: {}\r\n", PCMU_OFFER.len() + 40),
    );
    trunk.send(invite.as_bytes());
    assert_eq!(trunk.recv(SILENCE), None, "a datagram with a truncated body was answered");
    assert_eq!(d.snapshot().calls, 0);
    trunk.assert_options_ok();
}

/// Reads a TCP connection until the peer closes it (true) or `within` ends
/// (false); returns what arrived.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> (bool, String) {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (false, String::from_utf8_lossy(&got).into_owned());
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (true, String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (true, String::from_utf8_lossy(&got).into_owned())
            }
            Err(_) => return (false, String::from_utf8_lossy(&got).into_owned()),
        }
    }
}

fn tcp_options(acd: SocketAddr, s: &TcpStream, content_length: &str, body: &str) -> String {
    let me = s.local_addr().unwrap();
    let call_id = unique("tcp");
    format!(
        "OPTIONS sip:{acd};transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:trunk@{me}>;tag=1\r\nTo: <sip:{acd}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: {content_length}\r\n\r\n{body}"
    )
}

/// Unpatched (debug build): the first message hit `attempt to add with
/// overflow` in the codec, its connection closed, and the next connect to
/// acd's TCP port was refused (seen: this test failed at the second
/// `connect`). The 100000 case (no overflow) would have hung: the codec
/// waited for 64 KiB before giving up (see the codec test below).
#[test]
fn tcp_content_length_overflow_closes_the_connection_and_the_daemon_carries_on() {
    let (_g, acd, _d) = daemon();
    for cl in ["18446744073709551615", "18446744073709551613", "100000"] {
        let mut s = TcpStream::connect(acd).unwrap();
        let msg = tcp_options(acd, &s, cl, "abc");
        s.write_all(msg.as_bytes()).unwrap();
        let (closed, got) = read_until_closed(&mut s, ANSWER);
        assert!(closed || status(&got) == Some(400), "Content-Length {cl}: connection still open, got {got:?}");
        assert!(got.is_empty() || status(&got) == Some(400), "Content-Length {cl}: answered {got:?}");
    }
    // UDP and a fresh TCP connection are both still served.
    Peer::new(acd).assert_options_ok();
    let mut s = TcpStream::connect(acd).unwrap();
    let msg = tcp_options(acd, &s, "0", "");
    s.write_all(msg.as_bytes()).unwrap();
    s.set_read_timeout(Some(ANSWER)).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).expect("a response over TCP");
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(status(&resp), Some(200), "{resp}");
}

/// Unpatched rsipstack bound the TCP port only when its serve task first
/// ran, after start-up had returned: CI saw the first `connect` of the test
/// above refused. Each daemon here is connected to the moment `spawn`
/// returns, and must answer OPTIONS over that connection.
#[test]
fn tcp_accepts_a_connection_as_soon_as_start_up_returns() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for round in 0..20 {
        let port = free_port();
        let d = DaemonHandle::spawn(config(port, &queue_q(r#"members = [{ agent = "anna" }]"#))).expect("daemon");
        let acd = SocketAddr::from(([127, 0, 0, 1], port));
        let mut s =
            TcpStream::connect(acd).unwrap_or_else(|e| panic!("round {round}: connect right after start-up: {e}"));
        s.write_all(tcp_options(acd, &s, "0", "").as_bytes()).unwrap();
        s.set_read_timeout(Some(ANSWER)).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).expect("a response over TCP");
        assert_eq!(status(&String::from_utf8_lossy(&buf[..n])), Some(200), "round {round}");
        drop(d);
    }
}

/// Passed before the patches too: acd's SDP negotiation.
#[test]
fn invite_whose_only_audio_is_rejected_gets_488() {
    let (_g, acd, d) = daemon();
    let trunk = Peer::new(acd);
    let offer = PCMU_OFFER.replace("m=audio 40000 ", "m=audio 0 ");
    let resp = trunk.ask("INVITE", &number(acd), "", &offer);
    assert_eq!(status(&resp), Some(488), "{resp}");
    assert_eq!(d.snapshot().calls, 0);
    trunk.assert_options_ok();
}

/// Registers `user` from `phone` with digest (MD5, qop=auth).
fn register(phone: &Peer, user: &str, password: &str) {
    use acd::sip::digest::{expected_response, Algorithm, DigestResponse};
    let acd = phone.acd;
    let me = phone.addr();
    let call_id = unique("reg");
    let uri = format!("sip:{acd}");
    let register = |cseq: u32, auth: &str| {
        format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{acd}>;tag=r1\r\nTo: <sip:{user}@{acd}>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{me}>\r\nExpires: 60\r\n\
             {auth}Content-Length: 0\r\n\r\n"
        )
    };
    phone.send(register(1, "").as_bytes());
    let challenge = phone.final_for(&call_id, ANSWER).expect("a 401");
    assert_eq!(status(&challenge), Some(401), "{challenge}");
    let www = header(&challenge, "WWW-Authenticate").expect("a challenge");
    let param = |name: &str| {
        let start = www.find(&format!("{name}=\"")).unwrap_or_else(|| panic!("{name} in {www}")) + name.len() + 2;
        www[start..].split('"').next().unwrap().to_string()
    };
    let mut resp = DigestResponse {
        username: user.into(),
        realm: param("realm"),
        nonce: param("nonce"),
        uri: uri.clone(),
        response: String::new(),
        algorithm: Algorithm::Md5,
        cnonce: Some("c0ffee".into()),
        nc: Some(1),
        qop: Some("auth".into()),
        opaque: None,
    };
    resp.response = expected_response(&resp, "REGISTER", password);
    let auth = format!(
        "Authorization: Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", \
         response=\"{}\", algorithm=MD5, cnonce=\"c0ffee\", nc=00000001, qop=auth\r\n",
        resp.realm, resp.nonce, resp.response
    );
    phone.send(register(2, &auth).as_bytes());
    let ok = phone.final_for(&call_id, ANSWER).expect("a final to the credentialed REGISTER");
    assert_eq!(status(&ok), Some(200), "{ok}");
}

/// Unpatched adapter: the agent's INVITE had a Call-ID `…@restsend.com`,
/// rsipstack's default suffix.
#[test]
fn the_invite_acd_sends_an_agent_has_acds_own_call_id() {
    let (_g, acd, d) = daemon();
    let anna = Peer::new(acd);
    register(&anna, "anna", "anna-pw");
    let deadline = Instant::now() + ANSWER;
    while d.snapshot().registered_contacts == 0 {
        assert!(Instant::now() < deadline, "anna never showed as registered");
        std::thread::sleep(Duration::from_millis(20));
    }

    let trunk = Peer::new(acd);
    let caller_call_id = unique("caller");
    let invite =
        trunk.request("INVITE", &number(acd), &caller_call_id, 1, "Content-Type: application/sdp\r\n", PCMU_OFFER);
    trunk.send(invite.as_bytes());

    let deadline = Instant::now() + ANSWER;
    let offer = loop {
        let msg = anna.recv(deadline.saturating_duration_since(Instant::now())).expect("acd offers the call to anna");
        if msg.starts_with("INVITE ") {
            break msg;
        }
    };
    let call_id = header(&offer, "Call-ID").expect("a Call-ID");
    assert!(!call_id.ends_with("@restsend.com"), "{call_id}");
    assert!(call_id.ends_with(&format!("@{}", acd::sip::adapter::CALL_ID_SUFFIX)), "{call_id}");
    assert_ne!(call_id, caller_call_id, "a B2BUA makes its own Call-ID");

    // Anna is busy: acd ACKs the 486, and the caller is still waiting.
    let via = header(&offer, "Via").unwrap();
    let (from, to, cseq) =
        (header(&offer, "From").unwrap(), header(&offer, "To").unwrap(), header(&offer, "CSeq").unwrap());
    let busy = format!(
        "SIP/2.0 486 Busy Here\r\nVia: {via}\r\nFrom: {from}\r\nTo: {to};tag=anna1\r\nCall-ID: {call_id}\r\n\
         CSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
    );
    anna.send(busy.as_bytes());
    trunk.assert_options_ok();
}

// ── the patched rsipstack functions, directly ──────────────────────────

fn options_with_content_length(value: &str, body: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP pc;branch=z9hG4bK1\r\n\
         To: <sip:bob@example.com>\r\nFrom: <sip:alice@example.com>;tag=1\r\nCall-ID: x@y\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: {value}\r\n\r\n{body}"
    )
    .into_bytes()
}

/// Unpatched: the first two panicked (`attempt to add with overflow`) in a
/// debug build; 100000 was `Ok(None)` until 64 KiB had been buffered.
#[test]
fn codec_refuses_content_length_that_overflows_or_exceeds_the_limit() {
    use rsipstack::transport::stream::{SipCodec, SipCodecType};
    use tokio_util::codec::Decoder;
    for value in ["18446744073709551615", "18446744073709551613", "100000"] {
        let mut buf = bytes::BytesMut::from(options_with_content_length(value, "abc").as_slice());
        assert!(SipCodec::new().decode(&mut buf).is_err(), "Content-Length {value}");
    }
    let mut buf = bytes::BytesMut::from(options_with_content_length("10", "abc").as_slice());
    assert!(SipCodec::new().decode(&mut buf).unwrap().is_none(), "waits for the rest of a body within the limit");
    let mut buf = bytes::BytesMut::from(options_with_content_length("3", "abc").as_slice());
    assert!(matches!(SipCodec::new().decode(&mut buf), Ok(Some(SipCodecType::Message(_)))));
}

/// Unpatched: the function did not exist (the UDP loop took any length).
#[test]
fn codec_udp_framing_check_discards_larger_content_length_and_truncates_smaller() {
    use rsipstack::sip::SipMessage;
    use rsipstack::transport::udp::body_shorter_than_content_length as short;
    let parse = |cl: &str, body: &str| SipMessage::try_from(options_with_content_length(cl, body).as_slice()).unwrap();
    for cl in ["10", "18446744073709551615", "99999999999999999999999", "x"] {
        assert!(short(&parse(cl, "abc")), "Content-Length {cl}");
    }
    for cl in ["3", "2", "0"] {
        assert!(!short(&parse(cl, "abc")), "Content-Length {cl}");
    }
    match parse("2", "abc") {
        SipMessage::Request(r) => assert_eq!(r.body, b"ab", "§18.3: a smaller Content-Length truncates"),
        SipMessage::Response(_) => unreachable!(),
    }
}

/// Unpatched: `"FOO".parse::<Method>()` was `Err(invalid method: FOO)`.
#[test]
fn codec_unknown_method_parses_as_an_extension_token() {
    use rsipstack::sip::prelude::HeadersExt;
    use rsipstack::sip::{Method, SipMessage};
    let m: Method = "FOO".parse().unwrap();
    assert!(matches!(m, Method::Extension(_)));
    assert_eq!(m.to_string(), "FOO");
    assert_ne!(m, "BAR".parse::<Method>().unwrap());
    assert_eq!("INVITE".parse::<Method>().unwrap(), Method::Invite);
    for bad in ["", "FO O", "FOO:", &"A".repeat(rsipstack::sip::method::MAX_EXTENSION_METHOD_LEN + 1)] {
        assert!(bad.parse::<Method>().is_err(), "{bad:?}");
    }
    let raw = "FOO sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKfoo\r\n\
               From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: foo1\r\n\
               CSeq: 1 FOO\r\nContent-Length: 0\r\n\r\n";
    let SipMessage::Request(req) = SipMessage::try_from(raw.as_bytes()).unwrap() else { panic!("a request") };
    assert_eq!(req.cseq_header().unwrap().method().unwrap(), req.method);
    assert_eq!(req.to_string().lines().next(), Some("FOO sip:x@127.0.0.1 SIP/2.0"));
}
