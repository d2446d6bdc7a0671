//! The bodies of the fuzz targets in `fuzz/`, shared with the stable smoke
//! test `tests/fuzz_corpus.rs`, so the committed corpus and every crash input
//! found run through exactly what the fuzzer ran. Not an API.
//!
//! Each function takes arbitrary bytes and must not panic; a panic is a bug
//! (in acd's code, or in rsipstack's for the SIP targets). The functions also
//! check a few cheap invariants on the way (an SDP answer acd builds parses
//! back to what it negotiated; a digest response verifies once, not twice).

use crate::engine::Time;
use crate::media::sdp;
use crate::sip::adapter::{self, Method};
use crate::sip::digest::{self, NonceStore};
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{SipMessage, Transport};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::connection::{KEEPALIVE_REQUEST, KEEPALIVE_RESPONSE};
use rsipstack::transport::stream::{SipCodec, SipCodecType};
use rsipstack::transport::udp::body_shorter_than_content_length;
use rsipstack::transport::SipConnection;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;
use tokio_util::codec::Decoder;

/// Where the fuzzed datagrams "come from".
const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)), 5062);

/// The realm, password and nonce seed the digest target checks against; the
/// seed corpus holds headers for the nonce this store issues first.
pub const DIGEST_REALM: &str = "acd";
pub const DIGEST_PASSWORD: &str = "secret";
pub const DIGEST_SEED: u64 = 1;
const DIGEST_TTL: Duration = Duration::from_secs(30);

/// One endpoint for every input: server transactions need one to attach to,
/// and building it per input would dominate the run. A transaction detaches
/// when dropped, so nothing accumulates across inputs.
fn endpoint() -> EndpointInnerRef {
    static ENDPOINT: OnceLock<EndpointInnerRef> = OnceLock::new();
    ENDPOINT.get_or_init(|| rsipstack::EndpointBuilder::new().build().inner.clone()).clone()
}

/// What acd does with one UDP datagram: rsipstack's UDP loop (keep-alives and
/// blank packets skipped, parse, a body shorter than its Content-Length
/// discarded, `received`/`rport` stamped into the Via),
/// the endpoint's transaction key, then for a new request acd's own reading
/// of it ([`adapter::summarize`]) and what the shell parses out of the
/// summary: the `Authorization` value and an INVITE's SDP offer.
pub fn sip_datagram(data: &[u8]) {
    if data == KEEPALIVE_REQUEST || data == KEEPALIVE_RESPONSE || data.iter().all(|b| b.is_ascii_whitespace()) {
        return;
    }
    let Ok(msg) = SipMessage::try_from(data) else {
        return;
    };
    if body_shorter_than_content_length(&msg) {
        return;
    }
    sip_message(msg, Transport::Udp);
}

/// What acd does with bytes arriving on a SIP TCP connection: rsipstack's
/// stream codec splits them into messages (at most 16 per input), each then
/// handled as [`sip_datagram`] handles one. A decode error is where the
/// connection would close.
pub fn sip_stream(data: &[u8]) {
    let mut buf = bytes::BytesMut::from(data);
    let mut codec = SipCodec::new();
    for _ in 0..16 {
        match codec.decode(&mut buf) {
            Ok(Some(SipCodecType::Message(msg))) => sip_message(msg, Transport::Tcp),
            Ok(Some(_keepalive)) => {}
            Ok(None) | Err(_) => return,
        }
    }
}

fn sip_message(msg: SipMessage, transport: Transport) {
    // Display is what the debug logs print.
    let _ = msg.to_string();
    let Ok(msg) = SipConnection::update_msg_received(msg, PEER, transport) else {
        return;
    };
    let req = match msg {
        SipMessage::Request(req) => req,
        SipMessage::Response(resp) => {
            let _ = TransactionKey::from_response(&resp, TransactionRole::Client);
            return;
        }
    };
    let Ok(key) = TransactionKey::from_request(&req, TransactionRole::Server) else {
        return;
    };
    // In-dialog requests go to rsipstack's dialog layer, not to summarize.
    if req.to_header().ok().and_then(|t| t.tag().ok().flatten()).is_some() {
        let _ = req.to_header().and_then(|t| t.typed());
        return;
    }
    let tx = Transaction::new_server(key, req, endpoint(), None);
    let Ok(summary) = adapter::summarize(&tx) else {
        return;
    };
    if let Some(value) = &summary.authorization {
        digest_header(value);
    }
    if summary.method == Method::Invite && summary.has_body {
        sdp_offer(&summary.body);
    }
}

/// acd's SDP path for an offer: parse, negotiate, and build the answer the
/// daemon would send, which must parse back to what was negotiated.
pub fn sdp_offer(data: &[u8]) {
    let Ok(offer) = sdp::parse(data) else {
        return;
    };
    let Ok(n) = sdp::negotiate(&offer) else {
        return;
    };
    let local: SocketAddr = "203.0.113.1:30000".parse().expect("a literal address");
    let answer = sdp::build_with(local, 7, 8, &[n.codec], n.dtmf_pt, offer.direction.answer());
    let back = sdp::parse(answer.as_bytes()).expect("acd's own answer parses");
    assert_eq!(back.addr, Some(local), "{answer}");
    assert_eq!(back.codecs, vec![n.codec], "{answer}");
    assert_eq!(back.dtmf_pt, n.dtmf_pt, "{answer}");
    assert_eq!(back.direction, offer.direction.answer(), "{answer}");
}

/// acd's digest path: parse an `Authorization` value (bytes taken as UTF-8,
/// lossily, as header values are text), then verify it against a store
/// that has issued one nonce. With the right response substituted, the
/// credentials must verify once and then be refused as a replay.
pub fn digest_authorization(data: &[u8]) {
    digest_header(&String::from_utf8_lossy(data));
}

fn digest_header(value: &str) {
    let Ok(resp) = digest::parse_authorization(value) else {
        return;
    };
    let mut store = NonceStore::new(DIGEST_TTL, DIGEST_SEED);
    let issued = store.issue(Time::ZERO);
    let now = Time::from_secs(1);
    let first = digest::verify(&mut store, now, "REGISTER", &resp, DIGEST_REALM, DIGEST_PASSWORD);
    let _ = digest::verify(&mut store, Time::from_secs(31), "REGISTER", &resp, DIGEST_REALM, DIGEST_PASSWORD);
    if first.is_ok() || resp.realm != DIGEST_REALM || resp.nonce != issued {
        return;
    }
    if resp.qop.is_some() && resp.nc == Some(0) {
        return; // refused whatever the response: nonce counts start at 1
    }
    let mut right = resp.clone();
    right.response = digest::expected_response(&resp, "REGISTER", DIGEST_PASSWORD);
    let mut store = NonceStore::new(DIGEST_TTL, DIGEST_SEED);
    store.issue(Time::ZERO);
    assert_eq!(digest::verify(&mut store, now, "REGISTER", &right, DIGEST_REALM, DIGEST_PASSWORD), Ok(()));
    assert_eq!(
        digest::verify(&mut store, now, "REGISTER", &right, DIGEST_REALM, DIGEST_PASSWORD),
        Err(digest::AuthFailure::Replay)
    );
}
