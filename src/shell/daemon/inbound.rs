//! What reaches the daemon from outside: SIP from the adapter (out-of-dialog
//! requests go to the front door, leg events to the core) and media events.

use super::commands::transport;
use super::{Daemon, Drain};
use crate::callctl::{LegId, SipEvent};
use crate::engine::{Input, Time};
use crate::media::plane::MediaEvent;
use crate::sip::adapter::{Inbound, Method, Raw, Request};
use crate::sip::front::{Capacity, FeatureCode, Verdict};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Extra headers of a reply, as (name, value).
type Headers = Vec<(String, String)>;

impl Daemon {
    pub fn on_raw(&mut self, now: Instant, raw: Raw) {
        let t = self.time(now);
        match self.stack.absorb(raw) {
            None => {}
            Some(Inbound::Request(r)) => self.request(now, *r),
            Some(Inbound::Leg(ev)) => self.leg_event(t, ev),
            Some(Inbound::Reinvite { leg, update, sdp, headers, reply }) => {
                match self.in_dialog_update(t, leg, update, &sdp, &headers) {
                    Ok((answer, extra)) => reply.answer(answer, extra),
                    Err((status, extra)) => reply.reject(status, extra),
                }
            }
            Some(Inbound::RefreshDone { leg, status, headers })
                if self.sessions.own_refresh_done(t, leg, status, &headers) =>
            {
                info!(%leg, ?status, "session refresh failed: ending the call");
                metrics::counter!("acd_session_timer_expiries_total").increment(1);
                self.end_caller(t, leg);
            }
            Some(Inbound::RefreshDone { .. }) => {}
            Some(Inbound::Answered { leg, sdp }) => {
                self.media.answered(leg, &sdp);
                self.leg_event(t, SipEvent::Answered { leg });
            }
            Some(Inbound::KeepAlive { reachable: true, .. }) => {}
            Some(Inbound::KeepAlive { user, contact, reachable: false }) => {
                warn!(%user, %contact, "phone did not answer OPTIONS; not ringing it until it registers again");
                self.front.remove_contact(t, &user, &contact);
                self.presence(t);
            }
        }
        self.flush(now);
    }

    /// acd ends a caller's leg itself (no ACK, no session refresh): BYE, and
    /// the core hears it as a hang-up.
    pub(super) fn end_caller(&mut self, t: Time, leg: LegId) {
        self.drop_leg(leg);
        self.stack.bye(leg);
        self.core.handle_sip(t, SipEvent::CallerHungUp { leg });
    }

    /// A leg is over for acd: its media and its session timer go.
    pub(super) fn drop_leg(&mut self, leg: LegId) {
        self.media.close(leg);
        self.sessions.remove(leg);
    }

    /// A re-INVITE or UPDATE in a leg's dialog: media first (an offer acd
    /// cannot take is 488 whatever the timer says), then the session timer
    /// of a caller's leg.
    pub(super) fn in_dialog_update(
        &mut self,
        t: Time,
        leg: LegId,
        update: bool,
        sdp: &[u8],
        headers: &[(String, String)],
    ) -> Result<(Vec<u8>, Headers), (u16, Headers)> {
        let was_held = self.media.held(leg);
        let answer = if update && sdp.is_empty() {
            Vec::new()
        } else {
            self.media.reinvite(leg, sdp).map_err(|r| (r.status, vec![("Warning".to_string(), r.warning)]))?
        };
        if self.media.held(leg) != was_held {
            self.core.leg_hold(leg, !was_held); // the caller hears music while the agent holds
        }
        let is_caller = self.core.leg_call(leg).is_some_and(|call| self.core.caller_leg(call) == Some(leg));
        let extra = if is_caller {
            self.sessions.refresh(t, leg, headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))?
        } else {
            Vec::new()
        };
        Ok((answer, extra))
    }

    /// A leg's event to the core; a leg the core let go of loses its media.
    pub(super) fn leg_event(&mut self, t: Time, ev: SipEvent) {
        let leg = ev.leg();
        self.core.handle_sip(t, ev);
        if self.core.leg_call(leg).is_none() {
            self.drop_leg(leg);
        }
    }

    pub fn on_media(&mut self, now: Instant, ev: MediaEvent) {
        match ev {
            MediaEvent::Timeout { leg } => {
                let leg = LegId(leg);
                info!(%leg, "no RTP for {} s: ending the call", self.core.config().media.timeout_secs);
                metrics::counter!("acd_media_timeouts_total").increment(1);
                self.core.media_lost(self.time(now), leg);
                self.flush(now);
            }
            MediaEvent::Digit { leg, digit } => {
                debug!(leg, %digit, "key pressed");
                self.core.caller_digit(self.time(now), LegId(leg), digit);
                self.flush(now);
            }
        }
    }

    pub(super) fn keep_alive(&mut self) {
        let timeout = Duration::from_secs(self.core.config().sip.options_timeout_secs as u64);
        for a in &self.core.config().agents {
            for b in self.front.registrar().contacts(&a.sip_user) {
                let dest = (b.source, transport(b.transport));
                self.stack.keep_alive(a.sip_user.clone(), b.contact.clone(), dest, timeout);
            }
        }
    }

    /// An out-of-dialog request: the front door decides.
    pub(super) fn request(&mut self, now: Instant, r: Request) {
        let t = self.time(now);
        let plane = self.media.plane();
        let capacity = Capacity {
            calls: self.core.call_count(),
            rtp_pairs_free: plane.free_pairs(),
            fds_free: self.fds.free(plane.ports_in_use(), plane.sockets_per_leg()),
            unacked_from_source: self.stack.unacked_from(r.source.ip()),
            draining: self.drain != Drain::Running,
        };
        let verdict = self.front.handle(t, &r, &capacity);
        self.presence(t);
        match verdict {
            Verdict::Reply(reply) => {
                if r.method == Method::Invite && reply.status >= 300 && !matches!(reply.status, 401 | 407) {
                    metrics::counter!("acd_calls_refused_total", "status" => reply.status.to_string()).increment(1);
                }
                self.stack.reply(r.tx, reply.status, reply.headers);
            }
            Verdict::Call { call, offer, session } => {
                let (caller, dialled, trunk) = (call.caller.clone(), call.dialled.clone(), call.trunk.clone());
                match self.core.incoming_call(t, call) {
                    Ok((call, leg)) => {
                        info!(%call, %caller, %dialled, %trunk, "call arrived");
                        self.media.offered(leg, offer);
                        self.sessions.admitted(leg, session);
                        self.stack.bind_caller(r.tx, leg);
                    }
                    Err(refusal) => {
                        info!(%caller, %dialled, "refused: {refusal}");
                        let status = refusal.status();
                        metrics::counter!("acd_calls_refused_total", "status" => status.to_string()).increment(1);
                        let retry = refusal.retry_after().map(|s| ("Retry-After".to_string(), s.to_string()));
                        self.stack.reply(r.tx, status, retry.into_iter().collect());
                    }
                }
            }
            Verdict::FeatureCode { agent, code } => self.feature_code(t, r, &agent, code),
        }
    }

    pub(super) fn feature_code(&mut self, t: Time, r: Request, agent: &str, code: FeatureCode) {
        let Some(id) = self.core.engine().agent_id(agent) else {
            self.stack.reply(r.tx, 404, vec![]);
            return;
        };
        let input = match code {
            FeatureCode::Login => Input::AgentLogin { agent: id },
            FeatureCode::Logout => Input::AgentLogout { agent: id },
            FeatureCode::Pause => Input::AgentPause { agent: id, reason: "paused from the phone".into() },
            FeatureCode::Ready => Input::AgentReady { agent: id },
        };
        match self.core.handle_engine(t, input) {
            Ok(()) => {
                info!(%agent, code = %r.uri_user, "feature code");
                let sdp = self.media.feature_code_sdp();
                self.stack.answer_and_hang_up(r.tx, sdp, Duration::from_millis(500));
            }
            Err(e) => {
                info!(%agent, code = %r.uri_user, "feature code refused: {e}");
                self.stack.reply(r.tx, 403, vec![("Warning".into(), format!("399 acd \"{e}\""))]);
            }
        }
    }

    /// Registration changes the front door reported, to the engine.
    pub(super) fn presence(&mut self, t: Time) {
        while let Some(p) = self.front.poll_presence() {
            let Some(agent) = self.core.engine().agent_id(&p.agent) else { continue };
            let input =
                if p.registered { Input::AgentRegistered { agent } } else { Input::AgentUnregistered { agent } };
            if let Err(e) = self.core.handle_engine(t, input) {
                debug!(error = %e, "registration input");
            }
        }
    }
}
