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
    let base = free_rtp_range(pairs);
    let text = format!(
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
    );
    let config = acd::config::from_toml_str("front_door.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    (port, DaemonHandle::spawn(config).expect("daemon"))
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
    assert!(header(&sixth, "Retry-After").is_some(), "{sixth}");
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
    real.bye(&mut call);
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
