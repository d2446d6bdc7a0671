//! The running RFC 4028 session timers of the callers' dialogs, by leg.
//!
//! The rules live in [`crate::sip::session_timer`] (sans-IO); this table
//! only keeps one [`SessionTimer`] per caller leg, ordered by deadline, and
//! says what is due. The front door decides a timer at admission; it starts
//! when acd's 200 goes out; every re-INVITE or UPDATE the trunk sends in the
//! dialog is a refresh; a missed refresh ends the call (the shell BYEs it).

use crate::callctl::LegId;
use crate::engine::Time;
use crate::sip::session_timer::{self, SessionExpires, SessionTimer, TimerDue, TimerRequest, UasDecision, UasPolicy};
use std::collections::{BTreeSet, HashMap};

/// Header fields for a response, `(name, value)`.
pub type Headers = Vec<(String, String)>;

#[derive(Debug, Default)]
pub struct Sessions {
    policy: UasPolicy,
    /// Decided at admission; started by [`Sessions::answered`].
    pending: HashMap<LegId, UasDecision>,
    /// Running timers and the deadline each is indexed under.
    running: HashMap<LegId, (SessionTimer, Time)>,
    deadlines: BTreeSet<(Time, LegId)>,
}

/// What the shell does for a due timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Send acd's refresh (an UPDATE) with these headers.
    Refresh(LegId),
    /// No refresh came: BYE the leg.
    Expired(LegId),
}

impl Sessions {
    pub fn new(policy: UasPolicy) -> Sessions {
        Sessions { policy, ..Sessions::default() }
    }

    pub fn reconfigure(&mut self, policy: UasPolicy) {
        self.policy = policy;
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// The front door's decision for a caller leg acd admitted.
    pub fn admitted(&mut self, leg: LegId, decision: UasDecision) {
        if matches!(decision, UasDecision::Timer { .. }) {
            self.pending.insert(leg, decision);
        }
    }

    /// acd's 200 to the caller leaves at `now`: the headers it carries
    /// (`Supported: timer` always, the timer's when one runs), and the timer
    /// starts.
    pub fn answered(&mut self, now: Time, leg: LegId) -> Headers {
        let mut headers: Headers = vec![("Supported".into(), "timer".into())];
        if let Some(decision) = self.pending.remove(&leg) {
            headers.extend(decision.response_headers().into_iter().map(|(n, v)| (n.to_string(), v)));
            if let Some(timer) = SessionTimer::start(now, &decision) {
                self.index(leg, timer);
            }
        }
        headers
    }

    /// A re-INVITE or UPDATE from the trunk in the leg's dialog, with its
    /// header fields: `Ok(headers for the 2xx)` (the refresh counts), or
    /// `Err((status, headers))` for a 422 or a 400.
    pub fn refresh<'a>(
        &mut self,
        now: Time,
        leg: LegId,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Headers, (u16, Headers)> {
        let decision = match TimerRequest::from_headers(headers) {
            Ok(req) => session_timer::decide(&self.policy, &req),
            Err(e) => return Err((400, vec![("Warning".into(), format!("399 acd \"{e}\""))])),
        };
        let own = |d: &UasDecision| d.response_headers().into_iter().map(|(n, v)| (n.to_string(), v)).collect();
        if let UasDecision::TooSmall { .. } = decision {
            return Err((422, own(&decision)));
        }
        let mut out: Headers = vec![("Supported".into(), "timer".into())];
        out.extend(own(&decision));
        match self.unindex(leg) {
            Some(mut timer) => {
                if timer.on_refresh(now, &decision) {
                    self.index(leg, timer);
                }
            }
            // A refresh may start a timer on a dialog that had none.
            None => {
                if let Some(timer) = SessionTimer::start(now, &decision) {
                    self.index(leg, timer);
                }
            }
        }
        Ok(out)
    }

    /// The headers of acd's own refresh for `leg`.
    pub fn refresh_request(&self, leg: LegId) -> Headers {
        self.running
            .get(&leg)
            .map(|(t, _)| t.refresh_request_headers().into_iter().map(|(n, v)| (n.to_string(), v)).collect())
            .unwrap_or_default()
    }

    /// The outcome of acd's refresh: the final status (`None`: no answer)
    /// and the 2xx's or 422's headers. `true` when the session is over
    /// (RFC 4028 §10: 408, 481 or no answer) and the shell must BYE.
    pub fn own_refresh_done(
        &mut self,
        now: Time,
        leg: LegId,
        status: Option<u16>,
        headers: &[(String, String)],
    ) -> bool {
        let Some(mut timer) = self.unindex(leg) else { return false };
        let value = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        match status {
            Some(200..=299) => {
                let se: Option<SessionExpires> =
                    value("Session-Expires").or(value("x")).and_then(|v| session_timer::parse_session_expires(v).ok());
                if timer.on_own_refresh_answered(now, se) {
                    self.index(leg, timer);
                }
                false
            }
            Some(422) => {
                let min = value("Min-SE").and_then(|v| session_timer::parse_min_se(v).ok()).unwrap_or(0);
                timer.raise_min(min);
                self.index(leg, timer);
                false
            }
            None | Some(408) | Some(481) => true,
            // Another error: the session runs out at its expiry.
            Some(_) => {
                self.index(leg, timer);
                false
            }
        }
    }

    /// The leg ended: its timer goes.
    pub fn remove(&mut self, leg: LegId) {
        self.pending.remove(&leg);
        self.unindex(leg);
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Every timer due at `now`. Expired timers are gone afterwards; a
    /// refresh is marked sent (the next deadline is then the expiry).
    pub fn handle_timeout(&mut self, now: Time) -> Vec<Due> {
        let mut due = Vec::new();
        while let Some(&(at, leg)) = self.deadlines.first() {
            if at > now {
                break;
            }
            let Some(mut timer) = self.unindex(leg) else { continue };
            match timer.poll(now) {
                Some(TimerDue::Expired) => due.push(Due::Expired(leg)),
                Some(TimerDue::Refresh) => {
                    timer.refresh_sent();
                    self.index(leg, timer);
                    due.push(Due::Refresh(leg));
                }
                None => self.index(leg, timer),
            }
        }
        due
    }

    fn index(&mut self, leg: LegId, timer: SessionTimer) {
        let at = timer.next_deadline();
        self.deadlines.insert((at, leg));
        self.running.insert(leg, (timer, at));
    }

    fn unindex(&mut self, leg: LegId) -> Option<SessionTimer> {
        let (timer, at) = self.running.remove(&leg)?;
        self.deadlines.remove(&(at, leg));
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::session_timer::Refresher;

    fn leg(n: u64) -> LegId {
        LegId(n)
    }

    fn s(secs: u64) -> Time {
        Time::from_secs(secs)
    }

    #[test]
    fn a_trunk_that_stops_refreshing_is_ended_and_one_that_refreshes_is_not() {
        let mut t = Sessions::new(UasPolicy::default());
        let timer = UasDecision::Timer { interval_secs: 90, refresher: Refresher::Uac, require_timer: true };
        t.admitted(leg(1), timer);
        t.admitted(leg(2), timer);
        let h = t.answered(s(0), leg(1));
        assert!(h.contains(&("Session-Expires".into(), "90;refresher=uac".into())), "{h:?}");
        assert!(h.contains(&("Require".into(), "timer".into())), "{h:?}");
        t.answered(s(0), leg(2));
        // 90 - min(32, 30) = 60 s without a refresh.
        assert_eq!(t.poll_timeout(), Some(s(60)));
        // Leg 2's trunk refreshes at 45 s; leg 1's is gone.
        let ok = t.refresh(s(45), leg(2), [("Session-Expires", "90;refresher=uac"), ("Supported", "timer")]).unwrap();
        assert!(ok.contains(&("Session-Expires".into(), "90;refresher=uac".into())), "{ok:?}");
        assert_eq!(t.handle_timeout(s(59)), vec![]);
        assert_eq!(t.handle_timeout(s(60)), vec![Due::Expired(leg(1))]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.poll_timeout(), Some(s(105)));
        t.remove(leg(2));
        assert!(t.len() == 0 && t.poll_timeout().is_none());
    }

    #[test]
    fn refreshes_below_the_minimum_get_422_and_acd_refreshes_when_it_must() {
        let mut t = Sessions::new(UasPolicy { min_se_secs: 120, interval_secs: 1800 });
        let err = t.refresh(s(0), leg(1), [("Session-Expires", "100"), ("Supported", "timer")]).unwrap_err();
        assert_eq!(err, (422, vec![("Min-SE".into(), "120".into())]));
        assert_eq!(t.refresh(s(0), leg(1), [("Session-Expires", "x1")]).unwrap_err().0, 400);
        // No `Supported: timer`: a proxy put the header in, acd refreshes.
        let ok = t.refresh(s(0), leg(1), [("Session-Expires", "200")]).unwrap();
        assert!(ok.contains(&("Session-Expires".into(), "200;refresher=uas".into())), "{ok:?}");
        assert_eq!(t.handle_timeout(s(100)), vec![Due::Refresh(leg(1))]);
        assert!(t.refresh_request(leg(1)).iter().any(|(n, v)| n == "Session-Expires" && v == "200;refresher=uac"));
        // The trunk answers 200: the interval restarts at 101 s.
        assert!(!t.own_refresh_done(
            s(101),
            leg(1),
            Some(200),
            &[("Session-Expires".into(), "200;refresher=uac".into())]
        ));
        assert_eq!(t.poll_timeout(), Some(s(201)));
        assert_eq!(t.handle_timeout(s(201)), vec![Due::Refresh(leg(1))]);
        // No answer to the refresh: the session is over.
        assert!(t.own_refresh_done(s(233), leg(1), None, &[]));
        assert_eq!(t.len(), 0);
    }
}
