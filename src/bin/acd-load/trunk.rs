//! The trunk side: placing calls, their INVITE transactions, and hanging up.

use super::*;

impl Load {
    pub(crate) fn call_id(&self, n: usize) -> String {
        format!("c{n}-{:08x}@acd-load", self.run_id)
    }

    pub(crate) fn call_index(&self, call_id: &str) -> Option<usize> {
        let rest = call_id.strip_prefix('c')?;
        let (n, run) = rest.split_once('-')?;
        if run.get(..8)? != format!("{:08x}", self.run_id) {
            return None;
        }
        n.parse().ok()
    }

    pub(crate) fn place_call(&mut self, now: Instant) {
        let n = self.calls.len();
        let share = self.a.rtp_share;
        let rtp = ((n as f64 + 1.0) * share).floor() > (n as f64 * share).floor();
        let t = self.a.target;
        let me = self.trunk_addr;
        let sdp = msg::sdp(self.rtp_addr(caller_stream(n)), n as u64);
        let mut extra = String::new();
        if let Some(p) = self.a.priority {
            let _ = write!(extra, "X-Priority: {p}\r\n");
        }
        if let Some(s) = &self.a.skills {
            let _ = write!(extra, "X-Skills: {s}\r\n");
        }
        let invite = format!(
            "INVITE sip:{num}@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-i{n}-{run:x};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:L{n}@{me}>;tag=f{n}\r\nTo: <sip:{num}@{t}>\r\nCall-ID: {cid}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:L{n}@{me}>\r\n{extra}User-Agent: acd-load\r\n\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            num = self.a.number,
            run = self.run_id,
            cid = self.call_id(n),
            len = sdp.len(),
        );
        self.calls.push(Call {
            state: CallState::Inviting,
            started: now,
            answered: None,
            agent_answered: None,
            invite: invite.into_bytes(),
            ack: Vec::new(),
            bye: Vec::new(),
            to_tag: String::new(),
            remote_target: String::new(),
            rtp,
        });
        self.c.attempted += 1;
        let bytes = std::mem::take(&mut self.calls[n].invite);
        self.send_trunk(&bytes);
        self.calls[n].invite = bytes;
        self.at(now + T1, Timer::InviteRetx(n, 1));
        self.at(now + TIMER_B, Timer::InviteTimeout(n));
    }

    pub(crate) fn fail(&mut self, n: usize, why: String) {
        self.calls[n].state = CallState::Done;
        self.calls[n].invite = Vec::new();
        *self.c.failed.entry(why).or_default() += 1;
    }

    pub(crate) fn on_trunk(&mut self, data: &[u8]) {
        let Some(m) = Msg::parse(data) else {
            self.c.unparsed += 1;
            return;
        };
        let Some(n) = self.call_index(m.call_id) else { return };
        if n >= self.calls.len() {
            return;
        }
        let now = Instant::now();
        if let Some(code) = m.status {
            if m.cseq_method == "INVITE" {
                self.invite_response(n, code, &m, now);
            } else if m.cseq_method == "BYE" && code >= 200 {
                if self.calls[n].state == CallState::Byeing {
                    self.calls[n].state = CallState::Done;
                    if code < 300 {
                        self.c.completed += 1;
                    } else {
                        *self.c.failed.entry(format!("BYE {code}")).or_default() += 1;
                    }
                } else {
                    self.c.retx_seen += 1;
                }
            }
            return;
        }
        // A request from acd in the caller's dialog.
        match m.method {
            "BYE" => {
                let ok = response(&m, 200, "OK", None, "");
                self.send_trunk(ok.as_bytes());
                match self.calls[n].state {
                    CallState::Up | CallState::Byeing => {
                        self.c.hung_up_by_acd += 1;
                        self.calls[n].state = CallState::Done;
                        self.rtp(Cmd::Stop { id: caller_stream(n) });
                    }
                    CallState::Done => self.c.retx_seen += 1,
                    _ => {}
                }
            }
            "ACK" => {}
            _ => {
                let ok = response(&m, 200, "OK", None, "");
                self.send_trunk(ok.as_bytes());
            }
        }
    }

    pub(crate) fn invite_response(&mut self, n: usize, code: u16, m: &Msg, now: Instant) {
        let state = self.calls[n].state;
        if code < 200 {
            if state == CallState::Inviting {
                self.calls[n].state = CallState::Early;
            }
            return;
        }
        let fresh = matches!(state, CallState::Inviting | CallState::Early);
        if !fresh {
            // A retransmitted final response: our ACK was lost or late.
            self.c.retx_seen += 1;
            let ack = self.calls[n].ack.clone();
            if !ack.is_empty() {
                self.send_trunk(&ack);
            }
            return;
        }
        let to_tag = m.to_tag().unwrap_or("").to_string();
        let me = self.trunk_addr;
        let t = self.a.target;
        let cid = self.call_id(n);
        if code >= 300 {
            // ACK for a failure: same branch as the INVITE (RFC 3261 17.1.1.3).
            let ack = format!(
                "ACK sip:{num}@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-i{n}-{run:x};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:L{n}@{me}>;tag=f{n}\r\nTo: {to}\r\nCall-ID: {cid}\r\n\
                 CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                num = self.a.number,
                run = self.run_id,
                to = m.to,
            );
            self.send_trunk(ack.as_bytes());
            self.calls[n].ack = ack.into_bytes();
            self.fail(n, code.to_string());
            return;
        }
        self.setup.record(now - self.calls[n].started);
        self.c.answered += 1;
        let target =
            if m.contact_uri().is_empty() { format!("sip:{}@{t}", self.a.number) } else { m.contact_uri().into() };
        let ack = format!(
            "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-a{n}-{run:x};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:L{n}@{me}>;tag=f{n}\r\nTo: {to}\r\nCall-ID: {cid}\r\n\
             CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            run = self.run_id,
            to = m.to,
        );
        self.send_trunk(ack.as_bytes());
        let call = &mut self.calls[n];
        call.ack = ack.into_bytes();
        call.invite = Vec::new();
        call.state = CallState::Up;
        call.answered = Some(now);
        call.to_tag = to_tag;
        call.remote_target = target;
        let rtp = call.rtp;
        if rtp {
            if let Some(remote) = m.sdp_rtp() {
                let send = self.a.rtp_while_waiting || self.calls[n].agent_answered.is_some();
                self.rtp(Cmd::Start { id: caller_stream(n), tag: n as u32, side: Side::Caller, remote, send });
            }
        }
        self.at(now + Duration::from_secs_f64(self.a.duration), Timer::Hangup(n));
    }

    pub(crate) fn hang_up(&mut self, n: usize, now: Instant) {
        let me = self.trunk_addr;
        let call = &self.calls[n];
        let bye = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-b{n}-{run:x};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:L{n}@{me}>;tag=f{n}\r\nTo: <sip:{num}@{t}>;tag={tag}\r\n\
             Call-ID: {cid}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            target = call.remote_target,
            run = self.run_id,
            num = self.a.number,
            t = self.a.target,
            tag = call.to_tag,
            cid = self.call_id(n),
        );
        self.rtp(Cmd::Stop { id: caller_stream(n) });
        self.send_trunk(bye.as_bytes());
        self.calls[n].bye = bye.into_bytes();
        self.calls[n].state = CallState::Byeing;
        self.at(now + T1, Timer::ByeRetx(n, 1));
        self.at(now + TIMER_B, Timer::ByeTimeout(n));
    }

    pub(crate) fn hang_up_all(&mut self) {
        let now = Instant::now();
        for n in 0..self.calls.len() {
            if self.calls[n].state == CallState::Up {
                self.hang_up(n, now);
            }
        }
    }
}
