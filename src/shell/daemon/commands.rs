//! The core's commands carried out: SIP to the adapter, media to the plane,
//! events to the metrics and logs. Nothing here decides anything.

use super::Daemon;
use crate::callctl::{Command, LegId, SipEvent, Target};
use crate::engine::{CallId, Time};
use crate::sip::adapter::{ReferStep, Transport};
use crate::sip::registrar;
use tokio::time::Instant;
use tracing::{debug, warn};

impl Daemon {
    /// Carries out the core's commands and reports its events.
    pub(super) fn flush(&mut self, now: Instant) {
        let t = self.time(now);
        loop {
            let mut progressed = false;
            while let Some(cmd) = self.core.poll_command() {
                progressed = true;
                self.execute(t, cmd);
            }
            while let Some(ev) = self.core.poll_event() {
                progressed = true;
                self.ops.report(t, self.core.engine(), &ev);
            }
            if !progressed {
                break;
            }
        }
    }

    pub(super) fn execute(&mut self, t: Time, cmd: Command) {
        debug!(?cmd, "command");
        match cmd {
            Command::AnswerCaller { call, leg } => match self.media.answer_caller(call, leg) {
                Ok(sdp) => {
                    let headers = self.sessions.answered(t, leg);
                    self.stack.answer_caller(leg, sdp, headers);
                }
                Err(_) => {
                    // A 200 with `m=audio 0` would be a call nobody can hear:
                    // refuse it like any other shortage, and the core forgets
                    // the caller as if it had left before the answer.
                    metrics::counter!("acd_calls_refused_total", "status" => "503").increment(1);
                    self.drop_leg(leg);
                    let retry = self.core.config().sip.retry_after_secs;
                    self.stack.reject_caller(leg, 503, Some(retry));
                    self.leg_event(t, SipEvent::CallerCancelled { leg });
                }
            },
            Command::RejectCaller { leg, status, retry_after, .. } => {
                self.drop_leg(leg);
                self.stack.reject_caller(leg, status, retry_after);
            }
            Command::Invite { call, leg, target, caller } => self.invite_leg(t, call, leg, target, &caller),
            Command::Cancel { leg, .. } => self.stack.cancel(leg),
            Command::ReleaseMedia { leg, .. } => self.drop_leg(leg),
            Command::Bye { leg, .. } => {
                self.drop_leg(leg);
                self.stack.bye(leg);
            }
            Command::ReferAccepted { leg, .. } => {
                self.drop_leg(leg);
                self.stack.refer_step(leg, ReferStep::Done);
            }
            Command::ReferTrying { leg, .. } => self.stack.refer_step(leg, ReferStep::Trying),
            Command::ReferFailed { leg, status, .. } => self.stack.refer_step(leg, ReferStep::Failed(status)),
            Command::ReferRefused { leg, status, .. } => self.stack.refer_step(leg, ReferStep::Refused(status)),
            Command::ReferDeclined { leg, status, why, .. } => {
                self.stack.refer_step(leg, ReferStep::Declined(status, why))
            }
            Command::EarlyMedia { call, leg, music } => self.early_media(t, call, leg, music),
            Command::Hold { leg, music, .. } => self.media.hold(leg, &music),
            Command::StopHold { leg, .. } => self.media.stop_hold(leg),
            Command::Bridge { caller, other, .. } => self.media.bridge(caller, other),
            Command::Announce { leg, position, estimated_wait_secs, .. } => {
                self.media.announce(self.core.config(), leg, position, estimated_wait_secs)
            }
            Command::PlayFile { leg, file, .. } => self.media.play_file(self.core.config(), leg, &file),
            Command::ConfirmCallback { leg, closed, .. } => self.confirm_callback(leg, closed),
            Command::Whisper { leg, file, .. } => self.callback_whisper(leg, file),
            Command::OfferCallback { leg, key, .. } => self.offer_callback(leg, key),
        }
    }

    /// acd's INVITE to an agent's phone or an overflow target.
    pub(super) fn invite_leg(&mut self, t: Time, call: CallId, leg: LegId, target: Target, caller: &str) {
        let sdp = match self.media.offer_to(call, leg, self.core.caller_leg(call)) {
            Ok(sdp) => sdp,
            Err(e) => {
                warn!(%call, %leg, "cannot ring: {e}");
                self.core.handle_sip(t, SipEvent::Failed { leg, status: None });
                return;
            }
        };
        match target {
            Target::Agent(agent) => {
                let name = self.core.engine().agent_name(agent).to_string();
                let user = self.core.config().agent(&name).map(|a| a.sip_user.clone()).unwrap_or(name);
                // Every registered device of the agent rings (sip/adapter/fork.rs).
                let contacts: Vec<_> = self
                    .front
                    .registrar()
                    .contacts(&user)
                    .map(|b| {
                        let dest = crate::sip::front::agent_destination(&b.contact, b.source, b.transport);
                        (b.contact.clone(), dest.map(|a| (a, transport(b.transport))))
                    })
                    .collect();
                match contacts.is_empty() {
                    false => self.stack.invite_all(leg, contacts, caller, sdp),
                    true => {
                        self.core.handle_sip(t, SipEvent::Failed { leg, status: None });
                        self.drop_leg(leg);
                    }
                }
            }
            Target::Uri(uri) => self.stack.invite(leg, &uri, None, caller, sdp),
        }
    }
}

pub(super) fn transport(t: registrar::Transport) -> Transport {
    match t {
        registrar::Transport::Udp => Transport::Udp,
        registrar::Transport::Tcp => Transport::Tcp,
    }
}
