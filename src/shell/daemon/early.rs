//! Queue while ringing, in the shell: the core's `EarlyMedia` carried out
//! (callctl/early.rs decides it). With music, the caller's RTP ports open
//! now and acd's SDP goes in a 183 with the music as early media; the 200
//! later repeats the same SDP (media_legs keeps it). Without, a 180.

use super::Daemon;
use crate::callctl::{LegId, SipEvent};
use crate::engine::{CallId, Time};

impl Daemon {
    pub(super) fn early_media(&mut self, t: Time, call: CallId, leg: LegId, music: Option<String>) {
        let Some(music) = music else {
            self.stack.early_caller(leg, None);
            return;
        };
        match self.media.answer_caller(call, leg) {
            Ok(sdp) => {
                self.stack.early_caller(leg, Some(sdp));
                self.media.hold(leg, &music);
            }
            Err(_) => {
                // No RTP port: refused like a 200 that could not be given.
                metrics::counter!("acd_calls_refused_total", "status" => "503").increment(1);
                self.drop_leg(leg);
                let retry = self.core.config().sip.retry_after_secs;
                self.stack.reject_caller(leg, 503, Some(retry));
                self.leg_event(t, SipEvent::CallerCancelled { leg });
            }
        }
    }
}
