//! A trunk's edges over loopback, spoken in raw SIP from a UDP socket (a
//! trunk that misbehaves is exactly what no well-behaved client library
//! will do for us): INVITEs never ACKed, a trunk that vanishes without BYE
//! (session timer, media timeout), a session kept up by refreshes.
//!
//! Each test runs its own daemon on free ports; they run in parallel (none
//! takes the pjsua lock) so the 30–60 s waits overlap.

mod common;

use acd::shell::DaemonHandle;
use common::{free_port, free_rtp_range};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// A trunk at `ip` (a loopback address) talking to acd at `port`.
struct Trunk {
    sock: UdpSocket,
    me: SocketAddr,
    port: u16,
    /// Where acd's caller leg sends and expects RTP, per Call-ID.
    rtp: UdpSocket,
}

/// One answered call as the trunk sees it.
struct Dialog {
    call_id: String,
    from_tag: String,
    /// acd's To header (with its tag) and Contact URI.
    to: String,
    contact: String,
    /// acd's RTP address from its SDP answer.
    acd_rtp: SocketAddr,
    cseq: u32,
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

impl Trunk {
    fn new(ip: &str, port: u16) -> Trunk {
        let sock = UdpSocket::bind((ip, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let me = sock.local_addr().unwrap();
        let rtp = UdpSocket::bind((ip, 0)).unwrap();
        Trunk { sock, me, port, rtp }
    }

    fn send(&self, msg: &str) {
        self.sock.send_to(msg.as_bytes(), ("127.0.0.1", self.port)).unwrap();
    }

    /// The next message for which `want` holds, within `d`; answers acd's
    /// BYEs and OPTIONS on the way (the BYE is also returned if wanted).
    fn recv(&self, d: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + d;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else { continue };
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            if msg.starts_with("BYE ") || msg.starts_with("OPTIONS ") {
                self.answer_request(&msg, 200);
            }
            if want(&msg) {
                return Some(msg);
            }
        }
        None
    }

    fn answer_request(&self, req: &str, code: u16) {
        let mut out = format!("SIP/2.0 {code} OK\r\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            for l in req.split("\r\n").filter(|l| l.split(':').next().is_some_and(|n| n.eq_ignore_ascii_case(name))) {
                out.push_str(l);
                out.push_str("\r\n");
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        self.send(&out);
    }

    fn invite_text(&self, call_id: &str, extra: &str) -> String {
        let rtp = self.rtp.local_addr().unwrap();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {p} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
            ip = rtp.ip(),
            p = rtp.port()
        );
        format!(
            "INVITE sip:100@127.0.0.1:{port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}-1;rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:+358401234@{ip}>;tag=t-{call_id}\r\n\
             To: <sip:100@127.0.0.1:{port}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:trunk@{me}>\r\n\
             {extra}\
             Content-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n{sdp}",
            port = self.port,
            me = self.me,
            ip = self.me.ip(),
            len = sdp.len()
        )
    }

    /// INVITE and wait for the final response; `None` on silence.
    fn call(&self, call_id: &str, extra: &str) -> Option<String> {
        self.send(&self.invite_text(call_id, extra));
        self.recv(Duration::from_secs(5), |m| {
            status(m).is_some_and(|s| s >= 200) && header(m, "Call-ID") == Some(call_id)
        })
    }

    /// A call acd answers, then ACKed.
    fn answered(&self, call_id: &str, extra: &str) -> (Dialog, String) {
        let ok = self.call(call_id, extra).expect("a final response");
        self.answered_from(call_id, &ok)
    }

    /// The dialog of acd's 200 `ok` to `call_id`, ACKed.
    fn answered_from(&self, call_id: &str, ok: &str) -> (Dialog, String) {
        let ok = ok.to_string();
        assert_eq!(status(&ok), Some(200), "{ok}");
        let contact = header(&ok, "Contact").unwrap().trim_start_matches('<').split('>').next().unwrap().to_string();
        let body = ok.split("\r\n\r\n").nth(1).unwrap_or("");
        let ip = body.lines().find_map(|l| l.strip_prefix("c=IN IP4 ")).unwrap().trim();
        let rtp_port = body.lines().find_map(|l| l.strip_prefix("m=audio ")).unwrap().split(' ').next().unwrap();
        let d = Dialog {
            call_id: call_id.into(),
            from_tag: format!("t-{call_id}"),
            to: header(&ok, "To").unwrap().to_string(),
            contact,
            acd_rtp: format!("{ip}:{rtp_port}").parse().unwrap(),
            cseq: 1,
        };
        self.ack(&d);
        (d, ok)
    }

    fn in_dialog(&self, d: &Dialog, method: &str, cseq: u32, extra: &str) -> String {
        format!(
            "{method} {contact} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-{cid}-{method}-{cseq};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:+358401234@{ip}>;tag={tag}\r\n\
             To: {to}\r\n\
             Call-ID: {cid}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:trunk@{me}>\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n",
            contact = d.contact,
            me = self.me,
            ip = self.me.ip(),
            cid = d.call_id,
            tag = d.from_tag,
            to = d.to,
        )
    }

    fn ack(&self, d: &Dialog) {
        self.send(&self.in_dialog(d, "ACK", d.cseq, ""));
    }

    /// An UPDATE refreshing the session; acd's response.
    fn refresh(&self, d: &mut Dialog, se: &str) -> String {
        d.cseq += 1;
        self.send(&self.in_dialog(d, "UPDATE", d.cseq, &format!("Session-Expires: {se}\r\nSupported: timer\r\n")));
        let cseq = format!("{} UPDATE", d.cseq);
        self.recv(Duration::from_secs(5), |m| status(m).is_some() && header(m, "CSeq") == Some(cseq.as_str()))
            .expect("an answer to the UPDATE")
    }

    fn bye(&self, d: &mut Dialog) {
        d.cseq += 1;
        self.send(&self.in_dialog(d, "BYE", d.cseq, ""));
    }

    /// Waits for acd's BYE on `d`'s dialog (answered with 200).
    fn expect_bye(&self, d: &Dialog, within: Duration) -> bool {
        self.recv(within, |m| m.starts_with("BYE ") && header(m, "Call-ID") == Some(d.call_id.as_str())).is_some()
    }

    /// 20 ms PCMU frames of a 400 Hz tone to acd's caller leg.
    fn send_rtp(&self, d: &Dialog, frames: u16) {
        for seq in 0..frames {
            let mut pkt = vec![0x80, 0x00];
            pkt.extend_from_slice(&seq.to_be_bytes());
            pkt.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
            pkt.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            pkt.extend((0..160).map(|i| if (i / 10) % 2 == 0 { 0x10 } else { 0x90 }));
            self.rtp.send_to(&pkt, d.acd_rtp).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A daemon with one queue (`100`) whose only agent is never registered,
/// so callers wait, with music, until something ends them.
fn daemon(sip: &str, media: &str, pairs: u16) -> (u16, DaemonHandle) {
    let port = free_port();
    let text = daemon_text(port, sip, media, pairs);
    let config = acd::config::from_toml_str("front_door.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    (port, DaemonHandle::spawn(config).expect("daemon"))
}

/// The config of [`daemon`], `pairs` RTP port pairs free for it.
fn daemon_text(port: u16, sip: &str, media: &str, pairs: u16) -> String {
    let base = free_rtp_range(pairs);
    format!(
        r#"
[sip]
listen_udp = ["127.0.0.1:{port}"]
listen_tcp = ["127.0.0.1:{port}"]
options_interval_secs = 0
{sip}

[metrics]
listen = ""

[admin]
listen = ""

[media]
rtp_port_min = {base}
rtp_port_max = {max}
{media}

[[trunk]]
name = "edge-trunk"
sources = ["127.0.0.0/8"]

[[agent]]
id = "nobody"
password = "nobody-pw"

[[queue]]
name = "q"
members = [{{ agent = "nobody" }}]
when_no_agents = "join"

[[number]]
number = "100"
queue = "q"
"#,
        max = base + 2 * pairs
    )
}

fn wait_for(d: &DaemonHandle, within: Duration, what: &str, ok: impl Fn(&acd::shell::Snapshot) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        let s = d.snapshot();
        if ok(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {s:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn invites_never_acked_are_released_at_timer_h_and_real_callers_get_through() {
    let (port, d) = daemon("max_unacked_invites_per_source = 5", "", 50);
    let flood = Trunk::new("127.0.0.7", port);
    // Five answered, never ACKed (the answers are retransmitted; ignore them).
    for i in 0..5 {
        let r = flood.call(&format!("flood-{i}"), "").expect("an answer");
        assert_eq!(status(&r), Some(200), "{r}");
    }
    // The sixth from the same address: refused before any port is taken.
    let sixth = flood.call("flood-5", "").expect("an answer");
    assert_eq!(status(&sixth), Some(503), "{sixth}");
    // A burst: the short Retry-After (sip.retry_after_transient_secs), so a
    // proxy does not take acd out of rotation for 30 s, and a Warning that
    // says why.
    assert_eq!(header(&sixth, "Retry-After"), Some("2"), "{sixth}");
    assert!(header(&sixth, "Warning").is_some_and(|w| w.contains("not yet ACKed")), "{sixth}");
    let s = d.snapshot();
    assert_eq!((s.calls, s.rtp_ports_in_use), (5, 5), "{s:?}");
    // A real caller from another address is answered during the flood.
    let real = Trunk::new("127.0.0.8", port);
    let (mut call, _) = real.answered("real-1", "");
    wait_for(&d, Duration::from_secs(5), "the real call is up", |s| s.calls == 6);
    // Timer H (32 s) after the 200s: every unACKed caller is gone, its
    // ports with it; the ACKed call stays.
    wait_for(&d, Duration::from_secs(45), "unACKed callers released by Timer H", |s| {
        s.calls == 1 && s.rtp_ports_in_use == 1
    });
    // And the flooding address may call again.
    let again = flood.call("flood-6", "").expect("an answer");
    assert_eq!(status(&again), Some(200), "{again}");
    let (mut again, _) = flood.answered_from("flood-6", &again);
    flood.bye(&mut again);
    real.bye(&mut call);
    // 32 s after Timer H the stack cleans the finished INVITEs up, and
    // their ACK routes with them (rsipstack patch 5: by key, not by a scan
    // of every waiting ACK).
    wait_for(&d, Duration::from_secs(40), "the unACKed INVITEs' ACK routes forgotten", |s| {
        s.stack.waiting_acks == 0 && s.calls == 0
    });
    d.shutdown();
}

#[test]
fn a_trunk_that_stops_refreshing_its_session_is_hung_up_and_one_that_refreshes_is_not() {
    let (port, d) = daemon("", "timeout_secs = 0", 10);
    let trunk = Trunk::new("127.0.0.9", port);
    let se = "Session-Expires: 90;refresher=uac\r\nSupported: timer\r\n";
    let (gone, ok) = trunk.answered("st-gone", se);
    assert_eq!(header(&ok, "Session-Expires"), Some("90;refresher=uac"), "{ok}");
    assert_eq!(header(&ok, "Require"), Some("timer"), "{ok}");
    let (mut alive, _) = trunk.answered("st-alive", se);
    assert_eq!(d.snapshot().session_timers, 2);
    // Below the minimum: 422 with Min-SE.
    let short = trunk.call("st-short", "Session-Expires: 30\r\nSupported: timer\r\n").expect("an answer");
    assert_eq!((status(&short), header(&short, "Min-SE")), (Some(422), Some("90")), "{short}");
    // The trunk refreshes one of the two at half the interval.
    std::thread::sleep(Duration::from_secs(45));
    let r = trunk.refresh(&mut alive, "90;refresher=uac");
    assert_eq!(status(&r), Some(200), "{r}");
    assert_eq!(header(&r, "Session-Expires"), Some("90;refresher=uac"), "{r}");
    // 90 - 30 = 60 s after the 200: acd BYEs the silent one only.
    assert!(trunk.expect_bye(&gone, Duration::from_secs(25)), "no BYE for the unrefreshed session");
    wait_for(&d, Duration::from_secs(5), "one call left", |s| s.calls == 1 && s.session_timers == 1);
    trunk.bye(&mut alive);
    wait_for(&d, Duration::from_secs(5), "no call left", |s| s.calls == 0 && s.rtp_ports_in_use == 0);
    d.shutdown();
}

#[test]
fn a_waiting_caller_whose_rtp_stops_is_ended_by_the_media_timeout() {
    let (port, d) = daemon("", "timeout_secs = 5", 10);
    let trunk = Trunk::new("127.0.0.10", port);
    let (quiet, _) = trunk.answered("mt-quiet", "");
    let (talking, _) = trunk.answered("mt-talking", "");
    // One caller's RTP flows for a second, then the trunk vanishes.
    trunk.send_rtp(&talking, 50);
    assert!(trunk.expect_bye(&talking, Duration::from_secs(10)), "no BYE after the caller's RTP stopped");
    // The one that never sent RTP (no media seen) is not judged by it.
    let s = d.snapshot();
    assert_eq!(s.calls, 1, "{s:?}");
    let mut quiet = quiet;
    trunk.bye(&mut quiet);
    wait_for(&d, Duration::from_secs(5), "no call left", |s| s.calls == 0 && s.rtp_ports_in_use == 0);
    d.shutdown();
}

/// A phone that registers as `user` from `ip` and then never answers
/// anything (switched off, or its network gone): acd's INVITEs to it get no
/// response at all.
fn dead_phone(ip: &str, port: u16, user: &str, password: &str) -> UdpSocket {
    let sock = UdpSocket::bind((ip, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let me = sock.local_addr().unwrap();
    let uri = format!("sip:127.0.0.1:{port}");
    let register = |cseq: u32, auth: &str| {
        format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-reg-{cseq};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{user}@127.0.0.1>;tag=dead\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: dead-{user}\r\n\
             CSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{me}>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    let answer = |text: String| -> String {
        sock.send_to(text.as_bytes(), ("127.0.0.1", port)).unwrap();
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).to_string();
                if status(&m).is_some_and(|s| s >= 200) {
                    return m;
                }
            }
        }
        panic!("no answer to REGISTER");
    };
    let challenge = answer(register(1, ""));
    assert_eq!(status(&challenge), Some(401), "{challenge}");
    let ch = header(&challenge, "WWW-Authenticate").expect("a challenge");
    let param =
        |name: &str| ch.split(&format!("{name}=\"")).nth(1).and_then(|r| r.split('"').next()).map(str::to_string);
    let (realm, nonce) = (param("realm").unwrap(), param("nonce").unwrap());
    let qop = ch.contains("qop=");
    let d = acd::sip::digest::DigestResponse {
        username: user.into(),
        realm: realm.clone(),
        nonce: nonce.clone(),
        uri: uri.clone(),
        response: String::new(),
        algorithm: acd::sip::digest::Algorithm::Md5,
        cnonce: qop.then(|| "c0ffee".to_string()),
        nc: qop.then_some(1),
        qop: qop.then(|| "auth".to_string()),
        opaque: param("opaque"),
    };
    let resp = acd::sip::digest::expected_response(&d, "REGISTER", password);
    let mut auth = format!(
        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5"
    );
    if qop {
        auth.push_str(", qop=auth, nc=00000001, cnonce=\"c0ffee\"");
    }
    if let Some(o) = &d.opaque {
        auth.push_str(&format!(", opaque=\"{o}\""));
    }
    auth.push_str("\r\n");
    let ok = answer(register(2, &auth));
    assert_eq!(status(&ok), Some(200), "{ok}");
    sock
}

/// The caller hangs up while acd's INVITE to the agent's (dead) phone has
/// had no response at all. Before issue 12 the call kept its port pair and
/// its `max_calls` slot until Timer B (32 s) while `/calls` was empty, so a
/// few such calls made acd refuse every caller. Now the call, its media and
/// its slot go at once (only the SIP transaction lingers), the next caller
/// is answered, and SIGTERM does not wait the grace period for the
/// lingering INVITE.
#[test]
fn a_caller_who_hangs_up_while_a_dead_phone_rings_is_released_at_once() {
    let (port, d) = daemon("max_calls = 1\n\n[shutdown]\ngrace_secs = 30", "", 10);
    let phone = dead_phone("127.0.0.11", port, "nobody", "nobody-pw");
    wait_for(&d, Duration::from_secs(5), "the phone is registered", |s| s.registered_contacts == 1);
    let trunk = Trunk::new("127.0.0.12", port);
    let (mut ghost, _) = trunk.answered("ghost-1", "");
    // acd rings the phone; the phone says nothing.
    let mut buf = vec![0u8; 65536];
    let phone_recv = |buf: &mut [u8], within: Duration, want: &str| -> Option<(String, SocketAddr)> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok((n, from)) = phone.recv_from(buf) {
                let m = String::from_utf8_lossy(&buf[..n]).to_string();
                if m.starts_with(want) {
                    return Some((m, from));
                }
            }
        }
        None
    };
    let (invite, acd) = phone_recv(&mut buf, Duration::from_secs(5), "INVITE ").expect("acd rings the phone");
    wait_for(&d, Duration::from_secs(5), "caller and agent legs up", |s| s.calls == 1 && s.rtp_ports_in_use == 2);
    trunk.bye(&mut ghost);
    wait_for(&d, Duration::from_secs(2), "the ghost call released at once", |s| {
        s.calls == 0 && s.media_legs == 0 && s.rtp_ports_in_use == 0
    });
    // No CANCEL before a provisional response (RFC 3261 §9.1); once the
    // phone wakes up and sends 180, acd's CANCEL follows.
    assert!(phone_recv(&mut buf, Duration::from_secs(1), "CANCEL ").is_none(), "CANCEL sent before any provisional");
    let mut ringing = String::from("SIP/2.0 180 Ringing\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        let v = header(&invite, name).unwrap();
        let v = if name == "To" { format!("{v};tag=dead-phone") } else { v.to_string() };
        ringing.push_str(&format!("{name}: {v}\r\n"));
    }
    ringing.push_str("Content-Length: 0\r\n\r\n");
    phone.send_to(ringing.as_bytes(), acd).unwrap();
    let (cancel, _) = phone_recv(&mut buf, Duration::from_secs(3), "CANCEL ").expect("acd CANCELs after the 180");
    assert_eq!(header(&cancel, "Call-ID"), header(&invite, "Call-ID"), "{cancel}");
    // Its max_calls slot is free: the next caller is answered, not 503.
    let (mut next, ok) = trunk.answered("ghost-2", "");
    assert_eq!(status(&ok), Some(200), "{ok}");
    trunk.bye(&mut next);
    wait_for(&d, Duration::from_secs(2), "the second call released at once", |s| {
        s.calls == 0 && s.rtp_ports_in_use == 0
    });
    // Two INVITEs to the phone are still in their transactions (Timer B);
    // SIGTERM must not wait 30 s for them.
    let t0 = Instant::now();
    d.shutdown();
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(10), "shutdown waited {took:?} for ghost legs");
}

/// Admission counts RTP port pairs for both legs: with three pairs, two
/// waiting callers hold two and leave one, which could answer a third
/// caller but never ring an agent for it, so the third gets 503 with
/// Retry-After (before issue 12 it was answered and then logged "cannot
/// ring: no free RTP port" at every offer). The pair comes back with a
/// hang-up and the next caller is answered.
#[test]
fn a_caller_is_answered_only_when_ports_are_free_for_the_agent_leg_too() {
    let (port, d) = daemon("", "rtcp = false", 3);
    let trunk = Trunk::new("127.0.0.13", port);
    let (mut first, _) = trunk.answered("pairs-1", "");
    let (second, _) = trunk.answered("pairs-2", "");
    wait_for(&d, Duration::from_secs(5), "two callers waiting", |s| s.calls == 2 && s.rtp_ports_in_use == 2);
    let third = trunk.call("pairs-3", "").expect("an answer");
    assert_eq!(status(&third), Some(503), "{third}");
    assert!(header(&third, "Retry-After").is_some(), "{third}");
    assert!(header(&third, "Warning").is_some_and(|w| w.contains("RTP")), "{third}");
    assert_eq!(d.snapshot().calls, 2);
    trunk.bye(&mut first);
    wait_for(&d, Duration::from_secs(5), "a pair back", |s| s.calls == 1 && s.rtp_ports_in_use == 1);
    let (mut fourth, ok) = trunk.answered("pairs-4", "");
    assert_eq!(status(&ok), Some(200), "{ok}");
    let mut second = second;
    trunk.bye(&mut second);
    trunk.bye(&mut fourth);
    wait_for(&d, Duration::from_secs(5), "no call left", |s| s.calls == 0 && s.rtp_ports_in_use == 0);
    d.shutdown();
}

/// The binary under `ulimit -n 160` with `fd_headroom = 64`: waiting
/// callers take RTP sockets until fewer than 64 descriptors are left, then
/// new callers get 503 + Retry-After naming the descriptors (before issue 12
/// the daemon ran into EMFILE and kept answering), every call it answered
/// stays up, and once they hang up new callers are answered again.
#[test]
fn near_the_descriptor_limit_new_callers_get_503_and_the_daemon_carries_on() {
    use std::io::BufRead;
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("acd-fd-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("acd.toml");
    std::fs::write(&path, daemon_text(port, "fd_headroom = 64", "threads = 1", 200)).unwrap();
    /// Kills the daemon however the test ends (a panic must not leave it
    /// holding its ports).
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Killed(
        std::process::Command::new("sh")
            .args([
                "-c",
                &format!("ulimit -n 160 && exec {} run --config {}", env!("CARGO_BIN_EXE_acd"), path.display()),
            ])
            .stdout(std::process::Stdio::piped())
            .env_remove("ACD_LOG")
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let line = rx.recv_timeout(Duration::from_secs(10)).expect("the daemon starts");
        if line.contains("acd running") {
            break;
        }
    }
    let trunk = Trunk::new("127.0.0.14", port);
    let mut answered = Vec::new();
    let refused = loop {
        assert!(answered.len() < 100, "160 descriptors cannot hold 100 callers: no 503 came");
        let id = format!("fd-{}", answered.len());
        let r = trunk.call(&id, "").expect("an answer to every INVITE");
        match status(&r) {
            Some(200) => {
                let (d, _) = trunk.answered_from(&id, &r);
                answered.push(d);
            }
            Some(503) => break r,
            s => panic!("unexpected answer {s:?}: {r}"),
        }
    };
    assert!(answered.len() >= 5, "only {} callers answered before the 503", answered.len());
    assert!(header(&refused, "Retry-After").is_some(), "{refused}");
    assert!(header(&refused, "Warning").is_some_and(|w| w.contains("file descriptors")), "{refused}");
    // The answered calls are still there: a re-INVITE-free probe is an
    // UPDATE each must answer 200 (not 481).
    for d in answered.iter_mut() {
        let r = trunk.refresh(d, "1800");
        assert_eq!(status(&r), Some(200), "{r}");
    }
    for d in answered.iter_mut() {
        trunk.bye(d);
    }
    // The descriptors come back (sampled once a second): callers are
    // answered again.
    // (A new Call-ID per try: the same INVITE again would be a
    // retransmission and get the same 503.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tries = 0;
    let (id, again) = loop {
        tries += 1;
        let id = format!("fd-again-{tries}");
        let r = trunk.call(&id, "").expect("an answer");
        if status(&r) == Some(200) || Instant::now() > deadline {
            break (id, r);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(status(&again), Some(200), "{again}");
    let (mut d, _) = trunk.answered_from(&id, &again);
    trunk.bye(&mut d);
    std::process::Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    let _ = child.0.wait();
    std::fs::remove_dir_all(&dir).ok();
}

/// Another program holds the first 100 port pairs of acd's RTP range: a
/// caller is still answered on a free pair further up (acd tried 16 ports
/// and failed the leg before; a load run next to another one lost agents
/// to it as "unreachable").
#[test]
fn a_block_of_rtp_ports_held_by_another_program_is_skipped() {
    let port = free_port();
    let text = daemon_text(port, "", "rtcp = false", 120);
    let base: u16 = text.lines().find_map(|l| l.strip_prefix("rtp_port_min = ")).unwrap().trim().parse().unwrap();
    // (Not acd's SIP port, which free_port may have picked inside the block.)
    let _held: Vec<UdpSocket> =
        (base..base + 200).filter(|&p| p != port).filter_map(|p| UdpSocket::bind(("127.0.0.1", p)).ok()).collect();
    let config = acd::config::from_toml_str("front_door.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let d = DaemonHandle::spawn(config).expect("daemon");
    let trunk = Trunk::new("127.0.0.15", port);
    let (mut call, ok) = trunk.answered("held-block", "");
    let m = ok.split("\r\n").find_map(|l| l.strip_prefix("m=audio ")).unwrap().split(' ').next().unwrap();
    let rtp: u16 = m.parse().unwrap();
    assert!(rtp >= base + 200, "acd answered with port {rtp}, inside the held block from {base}");
    trunk.bye(&mut call);
    wait_for(&d, Duration::from_secs(5), "no call left", |s| s.calls == 0 && s.rtp_ports_in_use == 0);
    d.shutdown();
}

/// Every port of acd's range held by another program: the pool says pairs
/// are free, but none binds. The caller gets 503 + Retry-After (before, a
/// 200 with `m=audio 0`: a call nobody could hear), and nothing is left.
#[test]
fn a_caller_gets_503_when_no_port_of_the_range_can_be_bound() {
    let port = free_port();
    let text = daemon_text(port, "", "rtcp = false", 10);
    let base: u16 = text.lines().find_map(|l| l.strip_prefix("rtp_port_min = ")).unwrap().trim().parse().unwrap();
    let max: u16 = text.lines().find_map(|l| l.strip_prefix("rtp_port_max = ")).unwrap().trim().parse().unwrap();
    let _held: Vec<UdpSocket> =
        (base..=max).filter(|&p| p != port).filter_map(|p| UdpSocket::bind(("127.0.0.1", p)).ok()).collect();
    let config = acd::config::from_toml_str("front_door.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let d = DaemonHandle::spawn(config).expect("daemon");
    let trunk = Trunk::new("127.0.0.16", port);
    let r = trunk.call("no-bind", "").expect("an answer");
    assert_eq!(status(&r), Some(503), "{r}");
    assert!(header(&r, "Retry-After").is_some(), "{r}");
    wait_for(&d, Duration::from_secs(5), "nothing left", |s| {
        s.calls == 0 && s.legs == 0 && s.engine_calls == 0 && s.rtp_ports_in_use == 0
    });
    d.shutdown();
}

/// `sip.io_thread = true` (off by default): the SIP stack on its own thread
/// still answers, bridges nothing it should not, and releases the call.
#[test]
fn with_the_sip_io_thread_a_call_is_answered_and_released() {
    let (port, d) = daemon("io_thread = true", "", 4);
    let trunk = Trunk::new("127.0.0.17", port);
    let (mut call, ok) = trunk.answered("io-thread", "");
    assert_eq!(status(&ok), Some(200), "{ok}");
    wait_for(&d, Duration::from_secs(5), "the call is up", |s| s.calls == 1);
    trunk.bye(&mut call);
    wait_for(&d, Duration::from_secs(5), "no call left", |s| s.calls == 0 && s.rtp_ports_in_use == 0);
    d.shutdown();
}

/// `sip.workers = 2`: rsipstack's tasks on two worker threads, the daemon
/// loop on its own. A trunk's call is answered (queued) and released on its
/// BYE, and no call or RTP port is left behind.
#[test]
fn with_two_sip_workers_a_call_is_answered_and_released() {
    let (port, d) = daemon("workers = 2", "", 4);
    let trunk = Trunk::new("127.0.0.18", port);
    let (mut call, ok) = trunk.answered("workers-2", "");
    assert_eq!(status(&ok), Some(200), "{ok}");
    wait_for(&d, Duration::from_secs(5), "the call is up", |s| s.calls == 1);
    trunk.bye(&mut call);
    wait_for(&d, Duration::from_secs(5), "no call left", |s| s.calls == 0 && s.rtp_ports_in_use == 0);
    d.shutdown();
}

/// An agent's phone whose 200 OK crosses acd's ACK (or loses it) sends the
/// 200 again (RFC 3261 §13.3.1.4) and must be ACKed again, or it hangs up
/// after 32 s. acd keeps the ACK for that among the stack's finished
/// transactions (rsipstack patch 6), not the whole client transaction and
/// a clone of its dialog for Timer M's 32 s as upstream does: before the
/// patch `running_transactions` stayed 1 here until Timer M.
#[test]
fn an_agent_phone_that_sends_its_200_again_is_acked_again_and_nothing_runs_for_it() {
    let (port, d) = daemon("", "", 10);
    let phone = dead_phone("127.0.0.13", port, "nobody", "nobody-pw");
    wait_for(&d, Duration::from_secs(5), "the phone is registered", |s| s.registered_contacts == 1);
    let trunk = Trunk::new("127.0.0.14", port);
    let (mut call, _) = trunk.answered("reack-1", "");
    let mut buf = vec![0u8; 65536];
    let mut phone_recv = |within: Duration, want: &str| -> Option<(String, SocketAddr)> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok((n, from)) = phone.recv_from(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).to_string();
                if m.starts_with(want) {
                    return Some((m, from));
                }
            }
        }
        None
    };
    let (invite, acd) = phone_recv(Duration::from_secs(5), "INVITE ").expect("acd rings the phone");
    let rtp = UdpSocket::bind("127.0.0.13:0").unwrap();
    let sdp = format!(
        "v=0\r\no=phone 1 1 IN IP4 127.0.0.13\r\ns=-\r\nc=IN IP4 127.0.0.13\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        rtp.local_addr().unwrap().port()
    );
    let me = phone.local_addr().unwrap();
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        let v = header(&invite, name).unwrap();
        let v = if name == "To" { format!("{v};tag=phone-1") } else { v.to_string() };
        ok.push_str(&format!("{name}: {v}\r\n"));
    }
    ok.push_str(&format!(
        "Contact: <sip:nobody@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ));
    let call_id = header(&invite, "Call-ID").unwrap().to_string();
    let is_our_ack = |m: &str| header(m, "Call-ID") == Some(call_id.as_str()) && header(m, "CSeq") == Some("1 ACK");
    phone.send_to(ok.as_bytes(), acd).unwrap();
    let (ack, _) = phone_recv(Duration::from_secs(3), "ACK ").expect("acd ACKs the 200");
    assert!(is_our_ack(&ack), "{ack}");
    wait_for(&d, Duration::from_secs(3), "the bridge is up and no transaction runs", |s| {
        s.calls == 1 && s.stack.running_transactions == 0
    });
    // The same 200 twice more, as a phone that missed the ACK sends it.
    for wait in [Duration::from_millis(500), Duration::from_secs(2)] {
        std::thread::sleep(wait);
        phone.send_to(ok.as_bytes(), acd).unwrap();
        let (again, _) = phone_recv(Duration::from_secs(3), "ACK ").expect("acd ACKs the retransmitted 200");
        assert!(is_our_ack(&again), "{again}");
        assert!(again.contains("tag=phone-1"), "{again}");
    }
    let s = d.snapshot();
    assert_eq!((s.calls, s.stack.running_transactions), (1, 0), "{s:?}");
    trunk.bye(&mut call);
    let (bye, from) = phone_recv(Duration::from_secs(3), "BYE ").expect("acd hangs up the agent");
    let mut bye_ok = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        bye_ok.push_str(&format!("{name}: {}\r\n", header(&bye, name).unwrap()));
    }
    bye_ok.push_str("Content-Length: 0\r\n\r\n");
    phone.send_to(bye_ok.as_bytes(), from).unwrap();
    wait_for(&d, Duration::from_secs(3), "the call is released", |s| s.calls == 0 && s.rtp_ports_in_use == 0);
}

/// A trunk that missed acd's answers sends its INVITE and its BYE again
/// (same branch) after the transactions ended: it gets the same 200s again
/// from the stack's finished transactions (kept as wire bytes since
/// rsipstack patch 7), byte for byte, and no second call is queued.
#[test]
fn a_trunk_that_sends_its_invite_and_bye_again_gets_the_same_answers_and_no_second_call() {
    let (port, d) = daemon("", "", 10);
    let trunk = Trunk::new("127.0.0.15", port);
    let invite = trunk.invite_text("again-1", "");
    let (mut call, ok) = trunk.answered("again-1", "");
    wait_for(&d, Duration::from_secs(3), "the caller waits, nothing running", |s| {
        s.calls == 1 && s.stack.running_transactions == 0
    });
    let is_final = |m: &str, cseq: &str| status(m).is_some_and(|s| s >= 200) && header(m, "CSeq") == Some(cseq);
    trunk.send(&invite);
    let again = trunk.recv(Duration::from_secs(3), |m| is_final(m, "1 INVITE")).expect("the 200 again");
    assert_eq!(again, ok, "the retransmitted INVITE gets the same 200");
    assert_eq!(d.snapshot().calls, 1, "no second call");
    trunk.bye(&mut call);
    let bye = trunk.in_dialog(&call, "BYE", call.cseq, "");
    let bye_ok = trunk.recv(Duration::from_secs(3), |m| is_final(m, "2 BYE")).expect("the BYE answered");
    assert_eq!(status(&bye_ok), Some(200), "{bye_ok}");
    wait_for(&d, Duration::from_secs(3), "the call is released", |s| s.calls == 0 && s.rtp_ports_in_use == 0);
    trunk.send(&bye);
    let bye_again = trunk.recv(Duration::from_secs(3), |m| is_final(m, "2 BYE")).expect("the BYE's 200 again");
    assert_eq!(bye_again, bye_ok);
    assert!(d.snapshot().stack.finished_transactions >= 2, "{:?}", d.snapshot().stack);
}
