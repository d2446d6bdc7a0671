//! Front-door scenarios (tier 2): requests in, verdicts out, `now` as a
//! parameter, no sockets. The phone here computes real digest responses
//! with the same function acd-load uses.

use super::*;
use crate::config::from_toml_str;
use crate::sip::adapter::TxId;
use crate::sip::digest::{expected_response, DigestResponse};

const CONFIG: &str = r#"
[sip]
listen_udp = ["127.0.0.1:5999"]
max_calls = 10
max_unacked_invites_per_source = 3

[[trunk]]
name = "carrier"
sources = ["10.1.0.0/16"]

[[trunk]]
name = "pbx"
sources = ["10.2.0.1"]
username = "pbx"
password = "pbx-secret"

[[agent]]
id = "anna"
password = "anna-pw"

[[agent]]
id = "nopass"

[[queue]]
name = "support"
members = [{ agent = "anna" }, { agent = "nopass" }]

[[number]]
number = "100"
queue = "support"
"#;

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.1.0.5\r\ns=-\r\nc=IN IP4 10.1.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

fn config() -> Config {
    from_toml_str("front.toml", CONFIG).expect("valid test config")
}

fn door() -> FrontDoor {
    FrontDoor::new(&config(), 42)
}

fn t(secs: u64) -> Time {
    Time::from_secs(secs)
}

fn request(method: &str, from: &str, to_user: &str, uri_user: &str, source: &str) -> Request {
    let method_kind = match method {
        "INVITE" => Method::Invite,
        "REGISTER" => Method::Register,
        "OPTIONS" => Method::Options,
        _ => Method::Other,
    };
    let uri =
        if uri_user.is_empty() { "sip:127.0.0.1:5999".to_string() } else { format!("sip:{uri_user}@127.0.0.1:5999") };
    Request {
        tx: TxId::test(1),
        method: method_kind,
        method_name: method.to_string(),
        source: source.parse().expect("socket address"),
        transport: Transport::Udp,
        uri,
        uri_user: uri_user.to_string(),
        from_user: from.to_string(),
        to_user: to_user.to_string(),
        call_id: "call-1@phone".into(),
        cseq: 1,
        contacts: vec![ContactValue::Uri { uri: format!("sip:{from}@{source}"), expires: None }],
        expires: Some(600),
        authorization: None,
        headers: vec![],
        has_body: false,
        body: vec![],
        max_forwards: Some(70),
        require: vec![],
        supported: vec![],
        user_agent: None,
        queued_for: Duration::ZERO,
    }
}

fn register(user: &str, source: &str) -> Request {
    request("REGISTER", user, user, "", source)
}

fn invite(from: &str, dialled: &str, source: &str) -> Request {
    let mut r = request("INVITE", from, dialled, dialled, source);
    r.has_body = true;
    r.body = SDP.as_bytes().to_vec();
    r
}

/// The nonce of a 401's first challenge.
fn nonce_of(reply: &Reply) -> String {
    assert_eq!(reply.status, 401, "{reply:?}");
    let h = reply.header("WWW-Authenticate").expect("challenge");
    let start = h.find("nonce=\"").expect("nonce") + 7;
    h[start..].split('"').next().unwrap().to_string()
}

/// What a phone sends back to a challenge, with `password`.
fn answer(mut r: Request, nonce: &str, user: &str, password: &str, nc: u32) -> Request {
    let mut resp = DigestResponse {
        username: user.into(),
        realm: "acd".into(),
        nonce: nonce.into(),
        uri: r.uri.clone(),
        response: String::new(),
        algorithm: Algorithm::Md5,
        cnonce: Some("c0ffee".into()),
        nc: Some(nc),
        qop: Some("auth".into()),
        opaque: None,
    };
    resp.response = expected_response(&resp, &r.method_name, password);
    r.authorization = Some(format!(
        "Digest username=\"{}\", realm=\"acd\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm=MD5, cnonce=\"c0ffee\", qop=auth, nc={:08x}",
        resp.username, resp.nonce, resp.uri, resp.response, nc
    ));
    r
}

fn reply(v: Verdict) -> Reply {
    match v {
        Verdict::Reply(r) => r,
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// Challenge, then answer with `password`: the second verdict.
fn login(door: &mut FrontDoor, now: Time, r: Request, user: &str, password: &str) -> Verdict {
    let challenge = reply(door.handle(now, &r, &Capacity::ample()));
    let nonce = nonce_of(&challenge);
    door.handle(now, &answer(r, &nonce, user, password, 1), &Capacity::ample())
}

#[test]
fn agent_registers_after_one_challenge_and_the_engine_hears_it() {
    let mut d = door();
    let ok = reply(login(&mut d, t(1), register("anna", "10.9.0.7:5062"), "anna", "anna-pw"));
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("Contact"), Some("<sip:anna@10.9.0.7:5062>;expires=600"));
    assert_eq!(d.poll_presence(), Some(Presence { agent: "anna".into(), registered: true }));
    assert_eq!(d.poll_presence(), None);
    assert_eq!(d.registrar().contacts("anna").count(), 1);
}

#[test]
fn registration_expiry_is_reported_once() {
    let mut d = door();
    reply(login(&mut d, t(1), register("anna", "10.9.0.7:5062"), "anna", "anna-pw"));
    assert!(d.poll_presence().is_some());
    let at = d.poll_timeout().expect("expiry timer");
    assert_eq!(at, t(601));
    d.handle_timeout(at);
    assert_eq!(d.poll_presence(), Some(Presence { agent: "anna".into(), registered: false }));
    d.handle_timeout(t(700));
    assert_eq!(d.poll_presence(), None);
}

#[test]
fn a_wrong_guess_burns_the_nonce() {
    let mut d = door();
    let r = register("anna", "10.9.0.7:5062");
    let nonce = nonce_of(&reply(d.handle(t(1), &r, &Capacity::ample())));
    let wrong = reply(d.handle(t(1), &answer(r.clone(), &nonce, "anna", "guess", 1), &Capacity::ample()));
    assert_eq!(wrong.status, 403);
    // The right password on the same nonce is not accepted: a fresh challenge.
    let again = reply(d.handle(t(1), &answer(r, &nonce, "anna", "anna-pw", 2), &Capacity::ample()));
    assert_eq!(again.status, 401);
    assert_ne!(nonce_of(&again), nonce);
    assert_eq!(d.registrar().len(), 0);
}

#[test]
fn failures_lock_out_the_address_and_the_user_then_the_lockout_ends() {
    let mut d = door();
    let src = "10.9.0.66:5060";
    for i in 0..5 {
        let v = reply(login(&mut d, t(10), register("anna", src), "anna", &format!("guess{i}")));
        assert_eq!(v.status, 403, "attempt {i}");
        assert_eq!(v.header("Warning"), Some(AUTH_FAILED));
    }
    assert_eq!(d.counters().auth_failures, 5);
    assert_eq!(d.counters().auth_lockouts, 1);
    // Locked: even the right password gets 403 with a back-off, at once
    // (no challenge, no digest work).
    let locked = reply(d.handle(t(11), &register("anna", src), &Capacity::ample()));
    assert_eq!(locked.status, 403);
    assert_eq!(locked.header("Retry-After"), Some("59"));
    // The user name is locked from another address too, and the address for
    // another user.
    assert_eq!(reply(d.handle(t(11), &register("anna", "10.9.0.1:5060"), &Capacity::ample())).status, 403);
    assert_eq!(reply(d.handle(t(11), &register("nopass", src), &Capacity::ample())).status, 403);
    // Another user from another address is untouched.
    assert_eq!(reply(d.handle(t(11), &register("nopass", "10.9.0.2:5060"), &Capacity::ample())).status, 401);
    // After the lockout the right password works again.
    assert_eq!(reply(login(&mut d, t(71), register("anna", src), "anna", "anna-pw")).status, 200);
    assert_eq!(d.counters().auth_lockouts, 1, "one episode, one lockout");
}

#[test]
fn failures_spread_over_time_do_not_lock_out() {
    let mut d = door();
    for i in 0..12 {
        let v = reply(login(&mut d, t(i * 3), register("anna", "10.9.0.66:5060"), "anna", "typo"));
        assert_eq!(v.status, 403);
        assert!(v.header("Retry-After").is_none(), "attempt {i} was not locked out");
    }
    assert_eq!(d.counters().auth_lockouts, 0);
}

#[test]
fn unknown_users_look_like_known_ones() {
    let mut d = door();
    let known = reply(d.handle(t(1), &register("anna", "10.9.0.7:5060"), &Capacity::ample()));
    let unknown = reply(d.handle(t(1), &register("mallory", "10.9.0.7:5060"), &Capacity::ample()));
    assert_eq!((known.status, unknown.status), (401, 401));
    let shape = |r: &Reply| r.headers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(shape(&known), shape(&unknown));
    let a = reply(login(&mut d, t(2), register("anna", "10.9.1.1:5060"), "anna", "wrong"));
    let b = reply(login(&mut d, t(2), register("mallory", "10.9.1.2:5060"), "mallory", "anything"));
    let c = reply(login(&mut d, t(2), register("nopass", "10.9.1.3:5060"), "nopass", ""));
    assert_eq!((a.status, b.status, c.status), (403, 403, 403));
    assert_eq!(a.headers, b.headers);
    assert_eq!(a.headers, c.headers);
}

#[test]
fn a_digest_for_another_uri_is_refused() {
    let mut d = door();
    let r = register("anna", "10.9.0.7:5060");
    let nonce = nonce_of(&reply(d.handle(t(1), &r, &Capacity::ample())));
    let mut other = r.clone();
    other.uri = "sip:elsewhere.example.com".into();
    let mut sent = answer(other, &nonce, "anna", "anna-pw", 1);
    sent.uri = r.uri.clone();
    assert_eq!(reply(d.handle(t(1), &sent, &Capacity::ample())).status, 400);
    // The same URI written differently (host case, default port) is fine.
    assert!(same_uri("sip:anna@127.0.0.1", "sip:anna@127.0.0.1:5060;transport=UDP"));
    assert!(same_uri("SIP:acd.EXAMPLE.com", "sip:acd.example.com:5060"));
    assert!(!same_uri("sip:acd.example.com:5070", "sip:acd.example.com"));
    assert!(same_uri("sip:[::1]:5999", "sip:[::1]:5999"));
}

#[test]
fn feature_codes_need_the_agents_password() {
    let mut d = door();
    let r = request("INVITE", "anna", "*43", "*43", "10.9.0.7:5062");
    match login(&mut d, t(1), r.clone(), "anna", "anna-pw") {
        Verdict::FeatureCode { agent, code } => assert_eq!((agent.as_str(), code), ("anna", FeatureCode::Pause)),
        other => panic!("{other:?}"),
    }
    assert_eq!(reply(login(&mut d, t(1), r, "anna", "nope")).status, 403);
}

#[test]
fn trunks_numbers_and_offers() {
    let mut d = door();
    match d.handle(t(1), &invite("+358401", "100", "10.1.3.4:5060"), &Capacity::ample()) {
        Verdict::Call { call, offer, .. } => {
            assert_eq!(
                (call.trunk.as_str(), call.dialled.as_str(), call.caller.as_str()),
                ("carrier", "100", "+358401")
            );
            assert_eq!(offer.media.codec, Codec::Pcmu);
            assert_eq!(offer.remote, Some("10.1.0.5:4000".parse().unwrap()));
            assert!(!offer.late);
        }
        other => panic!("{other:?}"),
    }
    let not_trunk = reply(d.handle(t(1), &invite("x", "100", "192.0.2.9:5060"), &Capacity::ample()));
    assert_eq!(not_trunk.status, 403);
    assert_eq!(reply(d.handle(t(1), &invite("x", "999", "10.1.3.4:5060"), &Capacity::ample())).status, 404);
    let mut g729 = invite("x", "100", "10.1.3.4:5060");
    g729.body = SDP.replace("RTP/AVP 0 101", "RTP/AVP 18").into_bytes();
    assert_eq!(reply(d.handle(t(1), &g729, &Capacity::ample())).status, 488);
    let mut off = invite("x", "100", "10.1.3.4:5060");
    off.body = SDP.replace("m=audio 4000", "m=audio 0").into_bytes();
    assert_eq!(reply(d.handle(t(1), &off, &Capacity::ample())).status, 488);
    let mut late = invite("x", "100", "10.1.3.4:5060");
    (late.has_body, late.body) = (false, vec![]);
    assert!(matches!(
        d.handle(t(1), &late, &Capacity::ample()),
        Verdict::Call { offer: CallerOffer { late: true, .. }, .. }
    ));
}

#[test]
fn a_trunk_with_credentials_is_challenged() {
    let mut d = door();
    let r = invite("+1555", "100", "10.2.0.1:5060");
    assert!(matches!(login(&mut d, t(1), r.clone(), "pbx", "pbx-secret"), Verdict::Call { .. }));
    assert_eq!(reply(login(&mut d, t(1), r, "pbx", "wrong")).status, 403);
}

#[test]
fn method_policy() {
    let mut d = door();
    let opts = reply(d.handle(t(1), &request("OPTIONS", "x", "", "", "10.9.0.1:5060"), &Capacity::ample()));
    assert_eq!(opts.status, 200);
    assert_eq!(opts.header("Allow"), Some(ALLOW));
    let foo = reply(d.handle(t(1), &request("FOO", "x", "", "", "10.9.0.1:5060"), &Capacity::ample()));
    assert_eq!((foo.status, foo.header("Allow")), (501, Some(ALLOW)));
    assert_eq!(
        reply(d.handle(t(1), &request("SUBSCRIBE", "x", "", "", "10.9.0.1:5060"), &Capacity::ample())).status,
        405
    );
    assert_eq!(reply(d.handle(t(1), &request("BYE", "x", "", "", "10.9.0.1:5060"), &Capacity::ample())).status, 481);
}

#[test]
fn max_forwards_and_require() {
    let mut d = door();
    let mut r = invite("x", "100", "10.1.3.4:5060");
    r.max_forwards = Some(0);
    assert_eq!(reply(d.handle(t(1), &r, &Capacity::ample())).status, 483);
    let mut o = request("OPTIONS", "x", "", "", "10.9.0.1:5060");
    o.max_forwards = Some(0);
    assert_eq!(reply(d.handle(t(1), &o, &Capacity::ample())).status, 200, "OPTIONS with 0 asks acd itself");
    let mut q = invite("x", "100", "10.1.3.4:5060");
    q.require = vec!["100rel".into(), "foo".into()];
    let r420 = reply(d.handle(t(1), &q, &Capacity::ample()));
    assert_eq!((r420.status, r420.header("Unsupported")), (420, Some("100rel, foo")));
}

#[test]
fn one_admission_policy_for_every_shortage() {
    let mut d = door();
    let r = invite("x", "100", "10.1.3.4:5060");
    let cases = [
        // Shortages that last until calls end: the long Retry-After.
        (Capacity { calls: 10, ..Capacity::ample() }, Shortage::Calls, "30", "too many calls"),
        (Capacity { rtp_pairs_free: 1, ..Capacity::ample() }, Shortage::RtpPorts, "30", "no free RTP port pair"),
        (Capacity { fds_free: 255, ..Capacity::ample() }, Shortage::FileDescriptors, "30", "out of file descriptors"),
        (Capacity { draining: true, ..Capacity::ample() }, Shortage::ShuttingDown, "30", "shutting down"),
        // A burst from one source: over when it is, so the short one.
        (
            Capacity { unacked_from_source: 3, ..Capacity::ample() },
            Shortage::UnackedFromSource,
            "2",
            "overloaded: too many calls from this address not yet ACKed",
        ),
    ];
    for (c, s, secs, why) in cases {
        let v = reply(d.handle(t(1), &r, &c));
        assert_eq!((v.status, v.header("Retry-After")), (503, Some(secs)), "{s:?}");
        assert_eq!(v.header("Warning"), Some(format!("399 acd \"{why}\"").as_str()), "{s:?}");
        assert_eq!(d.counters().shortages.get(&s), Some(&1), "{s:?}");
    }
    let mut lagging = r.clone();
    lagging.queued_for = Duration::from_millis(150);
    let lag = reply(d.handle(t(1), &lagging, &Capacity::ample()));
    assert_eq!((lag.status, lag.header("Retry-After")), (503, Some("2")));
    assert_eq!(d.counters().shortages.get(&Shortage::LoopLag), Some(&1));
    // Just inside every limit: admitted.
    let edge = Capacity { calls: 9, rtp_pairs_free: 2, fds_free: 256, unacked_from_source: 2, draining: false };
    assert!(matches!(d.handle(t(1), &r, &edge), Verdict::Call { .. }));
    // An unknown number is still 404 when full: the caller learns the truth.
    assert_eq!(
        reply(d.handle(t(1), &invite("x", "999", "10.1.3.4:5060"), &Capacity { calls: 10, ..Capacity::ample() }))
            .status,
        404
    );
}

#[test]
fn reload_changes_agents_and_keeps_registrations() {
    let mut d = door();
    reply(login(&mut d, t(1), register("anna", "10.9.0.7:5062"), "anna", "anna-pw"));
    let _ = d.poll_presence();
    let new = from_toml_str("front.toml", &CONFIG.replace("anna-pw", "anna-new")).unwrap();
    d.reload(&new);
    assert_eq!(d.registrar().len(), 1);
    assert_eq!(reply(login(&mut d, t(2), register("anna", "10.9.0.7:5062"), "anna", "anna-pw")).status, 403);
    // The phone's next REGISTER in the same registration: CSeq goes up.
    let mut again = register("anna", "10.9.0.7:5062");
    again.cseq = 2;
    assert_eq!(reply(login(&mut d, t(2), again, "anna", "anna-new")).status, 200);
}

#[test]
fn agent_invites_go_to_the_contact_unless_nat_or_tcp() {
    use registrar::Transport::{Tcp, Udp};
    let src: SocketAddr = "10.9.0.7:40001".parse().unwrap();
    // Registers from an ephemeral port, listens on 5062: the Contact.
    assert_eq!(agent_destination("sip:anna@10.9.0.7:5062", src, Udp), None);
    assert_eq!(agent_destination("<sip:anna@10.9.0.7:5062;transport=udp>", src, Udp), None);
    // NAT: the Contact names a private address the REGISTER did not come from.
    assert_eq!(agent_destination("sip:anna@192.168.1.20:5060", src, Udp), Some(src));
    // A placeholder host (browsers, NAT-aware clients).
    assert_eq!(agent_destination("sip:x@df7jal23ls0d.invalid;transport=ws", src, Udp), Some(src));
    // TCP: the registering connection.
    assert_eq!(agent_destination("sip:anna@10.9.0.7:5062", src, Tcp), Some(src));
    // A hostname is resolved by the stack.
    assert_eq!(agent_destination("sip:anna@phone.example.com", src, Udp), None);
}

#[test]
fn each_challenge_names_one_algorithm() {
    // Debian baresip 1.0 gives up on a 401 with an MD5 and a SHA-256
    // challenge ("Register: Function not implemented"): one per 401.
    let mut d = door();
    let c = reply(d.handle(t(1), &register("anna", "10.9.0.7:5062"), &Capacity::ample()));
    let challenges: Vec<_> = c.headers.iter().filter(|(n, _)| n == "WWW-Authenticate").collect();
    assert_eq!(challenges.len(), 1, "{c:?}");
    assert!(challenges[0].1.contains("algorithm=MD5"), "{c:?}");
    // With only SHA-256 configured, MD5 credentials do not authenticate.
    let sha =
        from_toml_str("front.toml", &CONFIG.replace("[sip]", "[sip]\ndigest_algorithms = [\"SHA-256\"]")).unwrap();
    let mut d = FrontDoor::new(&sha, 42);
    let c = reply(d.handle(t(1), &register("anna", "10.9.0.7:5062"), &Capacity::ample()));
    assert!(c.header("WWW-Authenticate").unwrap().contains("algorithm=SHA-256"), "{c:?}");
    let md5 = answer(register("anna", "10.9.0.7:5062"), &nonce_of(&c), "anna", "anna-pw", 1);
    let again = reply(d.handle(t(1), &md5, &Capacity::ample()));
    assert_eq!(again.status, 401, "{again:?}");
    assert!(again.header("WWW-Authenticate").unwrap().contains("algorithm=SHA-256"));
}

#[test]
fn session_timers_are_negotiated_at_admission() {
    use crate::sip::session_timer::Refresher;
    let mut d = door();
    // A trunk that supports timers and asks for 90 s: it refreshes.
    let mut r = invite("x", "100", "10.1.3.4:5060");
    r.headers.push(("Session-Expires".into(), "90".into()));
    r.supported = vec!["timer".into(), "100rel".into()];
    match d.handle(t(1), &r, &Capacity::ample()) {
        Verdict::Call { session, .. } => assert_eq!(
            session,
            UasDecision::Timer { interval_secs: 90, refresher: Refresher::Uac, require_timer: true }
        ),
        other => panic!("{other:?}"),
    }
    // `Require: timer` is an extension acd has: no 420.
    r.require = vec!["timer".into()];
    assert!(matches!(d.handle(t(1), &r, &Capacity::ample()), Verdict::Call { .. }));
    // Below RFC 4028's 90 s: 422 with acd's minimum.
    let mut short = invite("x", "100", "10.1.3.4:5060");
    short.headers.push(("Session-Expires".into(), "30;refresher=uac".into()));
    let v = reply(d.handle(t(1), &short, &Capacity::ample()));
    assert_eq!((v.status, v.header("Min-SE")), (422, Some("90")));
    short.headers[0].1 = "soon".into();
    assert_eq!(reply(d.handle(t(1), &short, &Capacity::ample())).status, 400);
    // Neither header: no timer.
    match d.handle(t(1), &invite("x", "100", "10.1.3.4:5060"), &Capacity::ample()) {
        Verdict::Call { session, .. } => assert_eq!(session, UasDecision::NoTimer),
        other => panic!("{other:?}"),
    }
}

// ----- calls from agents' own phones (agent_call.rs) ------------------------------

#[test]
fn an_agents_registered_phone_calls_a_number_after_digest_as_that_agent() {
    let mut d = door();
    reply(login(&mut d, t(1), register("anna", "10.9.0.7:5062"), "anna", "anna-pw"));
    // Not a trunk address, but anna's registered one: challenged, then taken
    // as anna's consultation call, with no header trusted.
    let mut r = invite("anna", "100", "10.9.0.7:5062");
    r.headers = vec![("X-Priority".into(), "9".into())];
    match login(&mut d, t(2), r.clone(), "anna", "anna-pw") {
        Verdict::Call { call, .. } => {
            assert_eq!(call.agent.as_deref(), Some("anna"));
            assert_eq!((call.trunk.as_str(), call.dialled.as_str(), call.caller.as_str()), ("", "100", "anna"));
            assert_eq!(call.priority_header, None);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(reply(login(&mut d, t(3), r, "anna", "guess")).status, 403, "the agent's password, not any");
    assert_eq!(reply(login(&mut d, t(3), invite("anna", "999", "10.9.0.7:5062"), "anna", "anna-pw")).status, 404);
}

#[test]
fn a_from_header_naming_an_agent_opens_nothing_from_elsewhere() {
    let mut d = door();
    reply(login(&mut d, t(1), register("anna", "10.9.0.7:5062"), "anna", "anna-pw"));
    // Another port of the same host, or anna not registered at all: no
    // challenge, the usual 403 for a source that is no trunk.
    let other_port = reply(d.handle(t(2), &invite("anna", "100", "10.9.0.7:5999"), &Capacity::ample()));
    assert_eq!((other_port.status, other_port.header("Warning")), (403, Some("399 acd \"not a configured trunk\"")));
    let mut fresh = door();
    assert_eq!(reply(fresh.handle(t(2), &invite("anna", "100", "10.9.0.7:5062"), &Capacity::ample())).status, 403);
    // From a trunk, a caller id equal to an agent's user is a customer's call.
    match d.handle(t(2), &invite("anna", "100", "10.1.3.4:5060"), &Capacity::ample()) {
        Verdict::Call { call, .. } => assert_eq!((call.agent, call.trunk.as_str()), (None, "carrier")),
        other => panic!("{other:?}"),
    }
}
