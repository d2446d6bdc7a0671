//! The few SIP message facts the load tool needs, read straight off the
//! datagram.
//!
//! Why not rsip's parser (which the daemon uses through rsipstack): the tool
//! shares two cores with the daemon it measures, and a typed parse builds every
//! header as owned strings. The tool only needs eight header values and the SDP
//! connection line, and reading them in place keeps its cost per call well
//! below the daemon's, so the figures are the daemon's. Compact header forms
//! (RFC 3261 §7.3.3) are understood, since acd may send them.

use std::net::{IpAddr, SocketAddr};

/// A parsed datagram: borrowed slices of the text.
#[derive(Debug, Default)]
pub struct Msg<'a> {
    /// `Some(code)` for a response.
    pub status: Option<u16>,
    /// The request method (empty for a response).
    pub method: &'a str,
    /// The request URI (empty for a response).
    pub uri: &'a str,
    pub call_id: &'a str,
    pub cseq_num: u32,
    pub cseq_method: &'a str,
    /// The whole top Via value.
    pub via: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub www_auth: &'a str,
    pub body: &'a str,
    /// Every Via value in order (responses must echo all of them).
    pub vias: Vec<&'a str>,
    pub record_route: Vec<&'a str>,
    pub contact: &'a str,
}

impl<'a> Msg<'a> {
    pub fn parse(buf: &'a [u8]) -> Option<Msg<'a>> {
        let text = std::str::from_utf8(buf).ok()?;
        let (head, body) = match text.find("\r\n\r\n") {
            Some(i) => (&text[..i], &text[i + 4..]),
            None => (text, ""),
        };
        let mut lines = head.split("\r\n");
        let first = lines.next()?;
        let mut m = Msg { body, ..Default::default() };
        if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
            m.status = Some(rest.get(..3)?.parse().ok()?);
        } else {
            let mut parts = first.split(' ');
            m.method = parts.next()?;
            m.uri = parts.next()?;
            if parts.next()? != "SIP/2.0" {
                return None;
            }
        }
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let name = name.trim();
            let value = value.trim();
            match name.len() {
                1 => match name.as_bytes()[0].to_ascii_lowercase() {
                    b'i' => m.call_id = value,
                    b'v' => m.vias.extend(value.split(',').map(str::trim)),
                    b'f' => m.from = value,
                    b't' => m.to = value,
                    b'm' => m.contact = value,
                    _ => {}
                },
                _ => {
                    if name.eq_ignore_ascii_case("Call-ID") {
                        m.call_id = value;
                    } else if name.eq_ignore_ascii_case("Via") {
                        m.vias.extend(value.split(',').map(str::trim));
                    } else if name.eq_ignore_ascii_case("From") {
                        m.from = value;
                    } else if name.eq_ignore_ascii_case("To") {
                        m.to = value;
                    } else if name.eq_ignore_ascii_case("CSeq") {
                        let (n, meth) = value.split_once(' ')?;
                        m.cseq_num = n.trim().parse().ok()?;
                        m.cseq_method = meth.trim();
                    } else if name.eq_ignore_ascii_case("WWW-Authenticate") {
                        m.www_auth = value;
                    } else if name.eq_ignore_ascii_case("Record-Route") {
                        m.record_route.push(value);
                    } else if name.eq_ignore_ascii_case("Contact") {
                        m.contact = value;
                    }
                }
            }
        }
        m.via = m.vias.first().copied().unwrap_or("");
        if m.call_id.is_empty() || m.cseq_method.is_empty() || m.via.is_empty() {
            return None;
        }
        Some(m)
    }

    /// The `branch` parameter of the top Via.
    pub fn branch(&self) -> &'a str {
        param(self.via, "branch").unwrap_or("")
    }

    pub fn to_tag(&self) -> Option<&'a str> {
        param(self.to, "tag")
    }

    /// The user part of the From URI (acd copies the caller's number there).
    pub fn caller_user(&self) -> &'a str {
        uri_user(self.from)
    }

    /// The Contact URI without angle brackets.
    pub fn contact_uri(&self) -> &'a str {
        angle(self.contact)
    }

    /// The RTP address in the SDP body (`c=` + the audio `m=` port).
    pub fn sdp_rtp(&self) -> Option<SocketAddr> {
        let mut ip: Option<IpAddr> = None;
        let mut port: Option<u16> = None;
        for line in self.body.lines() {
            if let Some(c) = line.strip_prefix("c=IN ") {
                let addr = c.split_whitespace().nth(1)?;
                ip = addr.parse().ok();
            } else if let Some(m) = line.strip_prefix("m=audio ") {
                port = m.split_whitespace().next()?.parse().ok();
            }
        }
        Some(SocketAddr::new(ip?, port?))
    }
}

/// A `;name=value` parameter of a header value (outside the URI's brackets).
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let after = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    after.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn angle(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next().unwrap_or(value).trim(),
    }
}

fn uri_user(value: &str) -> &str {
    let uri = angle(value);
    let uri = uri.strip_prefix("sip:").or_else(|| uri.strip_prefix("sips:")).unwrap_or(uri);
    match uri.find('@') {
        Some(i) => &uri[..i],
        None => "",
    }
}

/// A parameter of a `Digest` challenge (`nonce="..."`, `qop="auth"`).
pub fn auth_param<'a>(challenge: &'a str, name: &str) -> Option<&'a str> {
    let rest = challenge.trim_start().strip_prefix("Digest").unwrap_or(challenge);
    let mut s = rest;
    loop {
        s = s.trim_start_matches([' ', ',']);
        if s.is_empty() {
            return None;
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim();
        let after = &s[eq + 1..];
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        if key.eq_ignore_ascii_case(name) {
            return Some(val);
        }
        s = next;
    }
}

/// An SDP offer or answer for one G.711 µ-law stream at `rtp`.
pub fn sdp(rtp: SocketAddr, session: u64) -> String {
    let ip = rtp.ip();
    let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=acd-load {session} 1 IN {fam} {ip}\r\ns=acd-load\r\nc=IN {fam} {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
        rtp.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_response_with_compact_headers() {
        let text = "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport=5070\r\n\
                    f: <sip:L7@127.0.0.1>;tag=abc\r\nt: <sip:100@127.0.0.1>;tag=xyz\r\ni: load-7\r\n\
                    CSeq: 1 INVITE\r\nm: <sip:acd@127.0.0.1:5060>\r\nl: 40\r\n\r\n\
                    v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 20002 RTP/AVP 0\r\n";
        let m = Msg::parse(text.as_bytes()).unwrap();
        assert_eq!(m.status, Some(200));
        assert_eq!(m.call_id, "load-7");
        assert_eq!(m.cseq_num, 1);
        assert_eq!(m.cseq_method, "INVITE");
        assert_eq!(m.branch(), "z9hG4bK-1");
        assert_eq!(m.to_tag(), Some("xyz"));
        assert_eq!(param(m.from, "tag"), Some("abc"));
        assert_eq!(m.caller_user(), "L7");
        assert_eq!(m.contact_uri(), "sip:acd@127.0.0.1:5060");
        assert_eq!(m.sdp_rtp(), Some("127.0.0.1:20002".parse().unwrap()));
    }

    #[test]
    fn reads_a_request_and_a_challenge() {
        let text = "INVITE sip:a00001@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n\
                    Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKy\r\nFrom: <sip:L12@127.0.0.1:5060>;tag=1\r\n\
                    To: <sip:a00001@127.0.0.1:5071>\r\nCall-ID: c1\r\nCSeq: 5 INVITE\r\n\
                    WWW-Authenticate: Digest realm=\"acd\", nonce=\"n,1\", qop=\"auth\", algorithm=MD5\r\n\r\n";
        let m = Msg::parse(text.as_bytes()).unwrap();
        assert_eq!(m.method, "INVITE");
        assert_eq!(uri_user(m.uri), "a00001");
        assert_eq!(m.vias.len(), 2);
        assert_eq!(m.to_tag(), None);
        assert_eq!(auth_param(m.www_auth, "nonce"), Some("n,1"));
        assert_eq!(auth_param(m.www_auth, "realm"), Some("acd"));
        assert_eq!(auth_param(m.www_auth, "algorithm"), Some("MD5"));
        assert_eq!(auth_param(m.www_auth, "qop"), Some("auth"));
        assert!(Msg::parse(b"garbage").is_none());
        assert!(Msg::parse(b"INVITE sip:x SIP/2.0\r\nVia: a\r\n\r\n").is_none());
    }
}
