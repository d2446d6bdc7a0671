//! The agent side: registration with digest, and the phones answering acd's INVITEs.

use super::*;

impl Load {
    pub(crate) fn register(&mut self, i: usize, challenge: Option<&str>) {
        let user = agent_user(&self.a.agent_prefix, i);
        let t = self.a.target;
        let me = self.agent_addr;
        let reg = &mut self.regs[i];
        reg.cseq += 1;
        let cseq = reg.cseq;
        let uri = format!("sip:{t}");
        let mut auth = String::new();
        if let Some(ch) = challenge {
            let realm = msg::auth_param(ch, "realm").unwrap_or("").to_string();
            let nonce = msg::auth_param(ch, "nonce").unwrap_or("").to_string();
            let alg = msg::auth_param(ch, "algorithm").unwrap_or("MD5");
            let algorithm = if alg.eq_ignore_ascii_case("SHA-256") {
                acd::sip::digest::Algorithm::Sha256
            } else {
                acd::sip::digest::Algorithm::Md5
            };
            let qop = msg::auth_param(ch, "qop").map(|_| "auth".to_string());
            let opaque = msg::auth_param(ch, "opaque").map(str::to_string);
            let cnonce = format!("{:08x}", self.rng.random::<u32>());
            let d = acd::sip::digest::DigestResponse {
                username: user.clone(),
                realm: realm.clone(),
                nonce: nonce.clone(),
                uri: uri.clone(),
                response: String::new(),
                algorithm,
                cnonce: qop.as_ref().map(|_| cnonce.clone()),
                nc: qop.as_ref().map(|_| 1),
                qop: qop.clone(),
                opaque: opaque.clone(),
            };
            let resp = acd::sip::digest::expected_response(&d, "REGISTER", &format!("{user}-pw"));
            let _ = write!(
                auth,
                "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
                 response=\"{resp}\", algorithm={}",
                algorithm.as_str()
            );
            if qop.is_some() {
                let _ = write!(auth, ", qop=auth, nc=00000001, cnonce=\"{cnonce}\"");
            }
            if let Some(o) = opaque {
                let _ = write!(auth, ", opaque=\"{o}\"");
            }
            auth.push_str("\r\n");
        }
        let text = format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-r{i}-{cseq}-{run:x};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{t}>;tag=r{i}\r\nTo: <sip:{user}@{t}>\r\n\
             Call-ID: r{i}-{run:08x}@acd-load\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{me}>\r\n\
             Expires: 3600\r\n{auth}User-Agent: acd-load\r\nContent-Length: 0\r\n\r\n",
            run = self.run_id,
        );
        let bytes = text.into_bytes();
        self.send_agent(&bytes, t);
        self.regs[i].last = bytes;
        self.at(Instant::now() + T1, Timer::RegisterRetx(i, cseq, 1));
    }

    pub(crate) fn on_register_response(&mut self, m: &Msg, code: u16) {
        let Some(i) =
            m.call_id.strip_prefix('r').and_then(|r| r.split('-').next()).and_then(|n| n.parse::<usize>().ok())
        else {
            return;
        };
        if i >= self.regs.len() || self.regs[i].done || m.cseq_num != self.regs[i].cseq || code < 200 {
            if i < self.regs.len() && m.cseq_num < self.regs[i].cseq {
                self.c.retx_seen += 1;
            }
            return;
        }
        match code {
            200..=299 => {
                self.regs[i].done = true;
                self.c.registered += 1;
            }
            401 | 407 if self.regs[i].cseq < 4 => {
                let ch = m.www_auth.to_string();
                self.register(i, Some(&ch));
            }
            _ => {
                self.regs[i].done = true;
                *self.c.register_failed.entry(code.to_string()).or_default() += 1;
            }
        }
    }

    pub(crate) fn on_agent(&mut self, data: &[u8], from: SocketAddr) {
        let Some(m) = Msg::parse(data) else {
            self.c.unparsed += 1;
            return;
        };
        if let Some(code) = m.status {
            if m.cseq_method == "REGISTER" {
                self.on_register_response(&m, code);
            }
            return;
        }
        let now = Instant::now();
        match m.method {
            "INVITE" => self.on_offer(&m, from, now),
            "ACK" => {
                if let Some(o) = self.offers.get_mut(m.call_id) {
                    match o.state {
                        OfferState::Answered => o.state = OfferState::Confirmed,
                        OfferState::Rejected => {
                            o.state = OfferState::Ended;
                            let key = o.key;
                            self.at(now + TIMER_B, Timer::OfferForget(key));
                        }
                        _ => {}
                    }
                }
            }
            "CANCEL" => {
                let ok = response(&m, 200, "OK", None, "");
                self.send_agent(ok.as_bytes(), from);
                let Some(o) = self.offers.get_mut(m.call_id) else { return };
                if o.state == OfferState::Ringing {
                    o.state = OfferState::Rejected;
                    let r = offer_response(o, 487, "Request Terminated", None, "");
                    o.last = r.into_bytes();
                    let bytes = o.last.clone();
                    self.c.offers_cancelled += 1;
                    self.send_agent(&bytes, from);
                }
            }
            "BYE" => {
                let ok = response(&m, 200, "OK", None, "");
                self.send_agent(ok.as_bytes(), from);
                let Some(o) = self.offers.get_mut(m.call_id) else { return };
                if o.state == OfferState::Ended && !o.bye_ok.is_empty() {
                    self.c.retx_seen += 1;
                    return;
                }
                o.bye_ok = ok.into_bytes();
                o.state = OfferState::Ended;
                let (key, stream) = (o.key, o.stream);
                if let Some(id) = stream {
                    self.rtp(Cmd::Stop { id });
                }
                self.at(now + TIMER_B, Timer::OfferForget(key));
            }
            _ => {
                let ok = response(&m, 200, "OK", None, "");
                self.send_agent(ok.as_bytes(), from);
            }
        }
    }

    pub(crate) fn on_offer(&mut self, m: &Msg, from: SocketAddr, now: Instant) {
        if let Some(o) = self.offers.get(m.call_id) {
            if o.branch == m.branch() {
                // Retransmitted INVITE: repeat our last answer.
                self.c.retx_seen += 1;
                let bytes = o.last.clone();
                let src = o.src;
                self.send_agent(&bytes, src);
            } else {
                // A re-INVITE: accept with the same SDP.
                let r = response(m, 200, "OK", None, "");
                self.send_agent(r.as_bytes(), from);
            }
            return;
        }
        self.c.offers += 1;
        let key = self.next_offer;
        self.next_offer += 1;
        let call =
            m.caller_user().strip_prefix('L').and_then(|n| n.parse::<usize>().ok()).filter(|n| *n < self.calls.len());
        let mut o = Offer {
            key,
            call,
            state: OfferState::Ringing,
            branch: m.branch().to_string(),
            last: Vec::new(),
            src: from,
            vias: m.vias.iter().map(|s| s.to_string()).collect(),
            from: m.from.to_string(),
            to: m.to.to_string(),
            call_id: m.call_id.to_string(),
            cseq: m.cseq_num,
            tag: format!("g{key}"),
            bye_ok: Vec::new(),
            stream: None,
            remote: m.sdp_rtp(),
        };
        let draw: f64 = self.rng.random();
        if draw < self.a.busy {
            self.c.offers_busy += 1;
            o.state = OfferState::Rejected;
            o.last = offer_response(&o, 486, "Busy Here", None, "").into_bytes();
        } else {
            o.last = offer_response(&o, 180, "Ringing", None, "").into_bytes();
            if draw < self.a.busy + self.a.no_answer {
                self.c.offers_no_answer += 1;
            } else {
                self.at(now + Duration::from_millis(self.a.ring_delay_ms), Timer::AgentAnswer(key));
            }
        }
        let bytes = o.last.clone();
        self.send_agent(&bytes, from);
        self.offer_keys.insert(key, o.call_id.clone());
        self.offers.insert(o.call_id.clone(), o);
    }

    pub(crate) fn answer_offer(&mut self, key: u64, now: Instant) {
        let Some(cid) = self.offer_keys.get(&key).cloned() else { return };
        let Some(o) = self.offers.get(&cid) else { return };
        if o.state != OfferState::Ringing {
            return;
        }
        let stream = match o.call {
            Some(n) => agent_stream(n),
            None => u32::MAX / 2 + key as u32,
        };
        let local = self.rtp_addr(stream);
        let body = msg::sdp(local, key);
        let contact = self.agent_addr;
        let (call, remote, src) = (o.call, o.remote, o.src);
        let text = offer_response(o, 200, "OK", Some(contact), &body);
        let bytes = text.into_bytes();
        self.send_agent(&bytes, src);
        let o = self.offers.get_mut(&cid).unwrap();
        o.last = bytes;
        o.state = OfferState::Answered;
        self.at(now + T1, Timer::OkRetx(key, 1));
        let Some(n) = call else { return };
        if self.calls[n].agent_answered.is_some() {
            return;
        }
        self.calls[n].agent_answered = Some(now);
        self.c.agent_answered += 1;
        let since = self.calls[n].answered.unwrap_or(self.calls[n].started);
        self.queue.record(now.saturating_duration_since(since));
        if self.calls[n].rtp {
            if let Some(remote) = remote {
                self.offers.get_mut(&cid).unwrap().stream = Some(stream);
                self.rtp(Cmd::Start { id: stream, tag: n as u32, side: Side::Agent, remote, send: true });
            }
            if !self.a.rtp_while_waiting {
                self.rtp(Cmd::Send { id: caller_stream(n), on: true });
            }
        }
    }
}
