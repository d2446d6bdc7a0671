//! SIP session timers (RFC 4028), acd as the UAS of a trunk's INVITE:
//! sans-IO, no clock (time is the engine's [`Time`], passed in).
//!
//! What it owns: reading `Session-Expires` (`x`), `Min-SE`, `Supported` /
//! `Require: timer` from a request; acd's answer to an initial INVITE (or
//! to a refresh: a re-INVITE or UPDATE in the dialog) as a [`UasDecision`];
//! and one dialog's running timer, [`SessionTimer`].
//!
//! Why acd wants it: a trunk that dies without BYE leaves its caller
//! queued for ever when no RTP ever came from it (issue 12). The timer ends
//! such a call within one session interval even with no media at all.
//!
//! The rules, RFC 4028 §9 (UAS) and §10 (refreshes):
//! - an offered interval below acd's minimum (never below the RFC's 90 s)
//!   gets 422 with `Min-SE: <acd's minimum>`; the UAC retries with more;
//! - otherwise the 2xx carries the request's interval (never raised; acd
//!   does not shorten it either), and `refresher=` the request's choice if
//!   it made one; with none, the UAC (the trunk) when it supports timers,
//!   else acd (`uas`), the only choice with a UAC that does not;
//! - `Require: timer` in the 2xx whenever the UAC supports timers (a MUST
//!   with `refresher=uac`, a SHOULD with `uas`);
//! - a UAC that supports timers but offered no interval gets acd's
//!   preferred one ([`UasPolicy::interval_secs`], RFC default 1800 s, never
//!   below the request's `Min-SE`); a request with neither `Session-Expires`
//!   nor `Supported: timer` runs no timer;
//! - the refresher refreshes at half the interval; the other side ends the
//!   session (BYE) when no refresh came by `interval - min(32 s, interval/3)`
//!   after the last one;
//! - every refresh (a re-INVITE or UPDATE that acd answers 2xx, or the 2xx
//!   to acd's own refresh) restarts the interval and may change it and the
//!   refresher.
//!
//! Always true: a [`SessionTimer`]'s interval is at least
//! [`RFC_MIN_SE_SECS`], and its expiry is after its last refresh.

use crate::engine::Time;
use std::fmt;

/// RFC 4028 §4: no session interval is ever below 90 s.
pub const RFC_MIN_SE_SECS: u32 = 90;
/// RFC 4028 §4 recommends 1800 s when a UA picks the interval itself.
pub const DEFAULT_INTERVAL_SECS: u32 = 1800;

/// Who sends the refreshes, named as in the header: the UAC or the UAS of
/// the INVITE that set the timer (for acd's trunk legs: `Uac` = the trunk,
/// `Uas` = acd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

impl Refresher {
    pub fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// A parsed `Session-Expires` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    pub interval_secs: u32,
    /// `None`: the request left the choice to the UAS.
    pub refresher: Option<Refresher>,
}

impl fmt::Display for SessionExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.interval_secs)?;
        if let Some(r) = self.refresher {
            write!(f, ";refresher={}", r.as_str())?;
        }
        Ok(())
    }
}

/// The peer sent a header acd cannot read: answer 400 and count it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionTimerError {
    #[error("malformed Session-Expires {0:?}")]
    BadSessionExpires(String),
    #[error("malformed Min-SE {0:?}")]
    BadMinSe(String),
}

/// RFC 3261 delta-seconds: digits only; a value beyond `u32` is taken as
/// the largest (RFC 3261 §25.1 says so for over-long deltas).
fn delta_seconds(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().map_or(u32::MAX, |v| v.min(u32::MAX as u64) as u32))
}

/// `Session-Expires: delta-seconds *(;se-params)`, e.g.
/// `1800;refresher=uac`. Unknown parameters are ignored; a `refresher`
/// other than `uac`/`uas` is ignored too (as a generic-param), and so the
/// choice is left to the UAS.
pub fn parse_session_expires(value: &str) -> Result<SessionExpires, SessionTimerError> {
    let bad = || SessionTimerError::BadSessionExpires(value.to_string());
    let mut parts = value.split(';');
    let interval_secs = delta_seconds(parts.next().unwrap_or("").trim()).ok_or_else(bad)?;
    let mut refresher = None;
    for p in parts {
        let (name, val) = p.split_once('=').unwrap_or((p, ""));
        if name.trim().eq_ignore_ascii_case("refresher") {
            let val = val.trim();
            if val.eq_ignore_ascii_case("uac") {
                refresher = Some(Refresher::Uac);
            } else if val.eq_ignore_ascii_case("uas") {
                refresher = Some(Refresher::Uas);
            }
        } else if name.trim().is_empty() {
            return Err(bad()); // "1800;;x" or a trailing ';'
        }
    }
    Ok(SessionExpires { interval_secs, refresher })
}

/// `Min-SE: delta-seconds *(;generic-param)`.
pub fn parse_min_se(value: &str) -> Result<u32, SessionTimerError> {
    let first = value.split(';').next().unwrap_or("").trim();
    delta_seconds(first).ok_or_else(|| SessionTimerError::BadMinSe(value.to_string()))
}

/// Whether an option-tag list (`Supported`, `Require`) names `timer`.
pub fn lists_timer(value: &str) -> bool {
    value.split(',').any(|t| t.trim().eq_ignore_ascii_case("timer"))
}

/// What a request (initial INVITE, or a refresh) says about session timers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerRequest {
    pub session_expires: Option<SessionExpires>,
    pub min_se_secs: Option<u32>,
    /// `Supported: timer` or `Require: timer`.
    pub uac_supports: bool,
}

impl TimerRequest {
    /// From a request's header fields as `(name, value)` pairs, names in
    /// any case, compact forms (`x` Session-Expires, `k` Supported)
    /// included. Repeated `Supported`/`Require` headers add up; a second
    /// `Session-Expires` or `Min-SE` replaces the first.
    pub fn from_headers<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<TimerRequest, SessionTimerError> {
        let mut r = TimerRequest::default();
        for (name, value) in headers {
            let name = name.trim();
            let is = |n: &str| name.eq_ignore_ascii_case(n);
            if is("session-expires") || is("x") {
                r.session_expires = Some(parse_session_expires(value)?);
            } else if is("min-se") {
                r.min_se_secs = Some(parse_min_se(value)?);
            } else if (is("supported") || is("k") || is("require")) && lists_timer(value) {
                r.uac_supports = true;
            }
        }
        Ok(r)
    }
}

/// acd's side of the negotiation, from config (`sip.session_min_se_secs`,
/// `sip.session_interval_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UasPolicy {
    /// The smallest interval acd accepts (a shorter one gets 422). Taken as
    /// at least [`RFC_MIN_SE_SECS`].
    pub min_se_secs: u32,
    /// The interval acd asks for when a UAC that supports timers offered
    /// none. Taken as at least the minimum.
    pub interval_secs: u32,
}

impl From<&crate::config::SipSettings> for UasPolicy {
    fn from(s: &crate::config::SipSettings) -> UasPolicy {
        UasPolicy { min_se_secs: s.session_min_se_secs, interval_secs: s.session_interval_secs }
    }
}

impl Default for UasPolicy {
    fn default() -> UasPolicy {
        UasPolicy { min_se_secs: RFC_MIN_SE_SECS, interval_secs: DEFAULT_INTERVAL_SECS }
    }
}

/// How acd answers a request, as far as session timers go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UasDecision {
    /// 422 Session Interval Too Small, with `Min-SE: min_se_secs`.
    TooSmall { min_se_secs: u32 },
    /// A plain 2xx: no session timer on this dialog.
    NoTimer,
    /// A 2xx with [`UasDecision::response_headers`]; run a [`SessionTimer`].
    Timer { interval_secs: u32, refresher: Refresher, require_timer: bool },
}

/// Decides acd's answer to `req` (RFC 4028 §9).
pub fn decide(policy: &UasPolicy, req: &TimerRequest) -> UasDecision {
    let own_min = policy.min_se_secs.max(RFC_MIN_SE_SECS);
    // The request's Min-SE binds the answer too (§9: never below it).
    let floor = own_min.max(req.min_se_secs.unwrap_or(0));
    let (interval_secs, asked) = match req.session_expires {
        Some(se) if se.interval_secs < floor => return UasDecision::TooSmall { min_se_secs: floor },
        Some(se) => (se.interval_secs, se.refresher),
        None if req.uac_supports => (policy.interval_secs.max(floor), None),
        None => return UasDecision::NoTimer,
    };
    let refresher = match (req.uac_supports, asked) {
        // A UAC that does not know timers cannot refresh (a proxy put the
        // header in): acd does, whatever the header said.
        (false, _) => Refresher::Uas,
        (true, Some(r)) => r,
        // The trunk refreshing costs acd nothing and proves the trunk alive.
        (true, None) => Refresher::Uac,
    };
    UasDecision::Timer { interval_secs, refresher, require_timer: req.uac_supports }
}

impl UasDecision {
    /// Header fields acd adds to its response (the 422, or the 2xx), besides
    /// `Supported: timer`, which it sends in every INVITE/UPDATE response.
    pub fn response_headers(&self) -> Vec<(&'static str, String)> {
        match *self {
            UasDecision::TooSmall { min_se_secs } => vec![("Min-SE", min_se_secs.to_string())],
            UasDecision::NoTimer => Vec::new(),
            UasDecision::Timer { interval_secs, refresher, require_timer } => {
                let mut h =
                    vec![("Session-Expires", SessionExpires { interval_secs, refresher: Some(refresher) }.to_string())];
                if require_timer {
                    h.push(("Require", "timer".to_string()));
                }
                h
            }
        }
    }

    /// The response status: 422, or 200.
    pub fn status(&self) -> u16 {
        match self {
            UasDecision::TooSmall { .. } => 422,
            _ => 200,
        }
    }
}

/// What a [`SessionTimer`] wants at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerDue {
    /// acd refreshes: send a re-INVITE (or UPDATE) with
    /// [`SessionTimer::refresh_request_headers`], then call
    /// [`SessionTimer::refresh_sent`].
    Refresh,
    /// No refresh in time: BYE the leg, the session is over.
    Expired,
}

/// One dialog's session timer, acd being the UAS of the INVITE that set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimer {
    interval_secs: u32,
    refresher: Refresher,
    /// The last refresh (or the 2xx that started the timer).
    refreshed: Time,
    /// acd's refresh is on the wire (no second one until it completes).
    refreshing: bool,
    /// The interval acd's next refresh asks for (raised by a 422).
    ask_secs: u32,
}

impl SessionTimer {
    /// The timer a 2xx with `decision` starts; `None` for no timer.
    pub fn start(now: Time, decision: &UasDecision) -> Option<SessionTimer> {
        let UasDecision::Timer { interval_secs, refresher, .. } = *decision else { return None };
        let interval_secs = interval_secs.max(RFC_MIN_SE_SECS);
        Some(SessionTimer { interval_secs, refresher, refreshed: now, refreshing: false, ask_secs: interval_secs })
    }

    pub fn interval_secs(&self) -> u32 {
        self.interval_secs
    }
    pub fn refresher(&self) -> Refresher {
        self.refresher
    }
    /// Whether acd (the UAS) sends the refreshes.
    pub fn acd_refreshes(&self) -> bool {
        self.refresher == Refresher::Uas
    }

    /// A refresh completed at `now`: acd answered a re-INVITE or UPDATE 2xx
    /// with `decision` (from [`decide`] on that request), or acd's own
    /// refresh got its 2xx (then `decision` is the 2xx's `Session-Expires`
    /// made into a `Timer`, see [`SessionTimer::on_own_refresh_answered`]).
    /// Returns `false` when the refresh turned the timer off (a `NoTimer`
    /// answer: the caller drops the timer); a `TooSmall` answer (422) is no
    /// refresh and changes nothing.
    pub fn on_refresh(&mut self, now: Time, decision: &UasDecision) -> bool {
        match *decision {
            UasDecision::TooSmall { .. } => true,
            UasDecision::NoTimer => false,
            UasDecision::Timer { interval_secs, refresher, .. } => {
                self.interval_secs = interval_secs.max(RFC_MIN_SE_SECS);
                self.ask_secs = self.interval_secs;
                self.refresher = refresher;
                self.refreshed = now;
                self.refreshing = false;
                true
            }
        }
    }

    /// The 2xx to acd's own refresh arrived with `se` (its Session-Expires,
    /// if any). In that transaction acd is the UAC, so `refresher=uac`
    /// there means acd: it is translated back to the dialog's naming.
    /// Without the header the trunk no longer runs a timer: `false`.
    pub fn on_own_refresh_answered(&mut self, now: Time, se: Option<SessionExpires>) -> bool {
        let Some(se) = se else { return false };
        let refresher = match se.refresher {
            Some(Refresher::Uac) | None => Refresher::Uas, // acd
            Some(Refresher::Uas) => Refresher::Uac,        // the trunk
        };
        self.on_refresh(now, &UasDecision::Timer { interval_secs: se.interval_secs, refresher, require_timer: true })
    }

    /// acd's refresh went on the wire: no other until it completes. Its
    /// outcome: a 2xx → [`SessionTimer::on_own_refresh_answered`]; a 422 →
    /// [`SessionTimer::raise_min`] with the 422's `Min-SE`, and send again;
    /// 408, 481 or no answer → BYE (RFC 4028 §10); any other error leaves
    /// the session to run out at [`SessionTimer::expires_at`].
    pub fn refresh_sent(&mut self) {
        self.refreshing = true;
    }

    /// A 422 to acd's refresh: the retry (due at once) asks for at least
    /// `min_se_secs`; the session's current expiry stays.
    pub fn raise_min(&mut self, min_se_secs: u32) {
        self.ask_secs = self.ask_secs.max(min_se_secs);
        self.refreshing = false;
    }

    /// When acd refreshes: half the interval after the last refresh.
    pub fn refresh_at(&self) -> Option<Time> {
        self.acd_refreshes().then(|| Time(self.refreshed.0 + self.interval_secs as u64 * 500))
    }

    /// When the session ends without a refresh: RFC 4028 §10's
    /// `interval - min(32 s, interval / 3)` after the last refresh.
    pub fn expires_at(&self) -> Time {
        let interval_ms = self.interval_secs as u64 * 1000;
        Time(self.refreshed.0 + interval_ms - (interval_ms / 3).min(32_000))
    }

    /// The next instant the shell must call [`SessionTimer::poll`].
    pub fn next_deadline(&self) -> Time {
        match self.refresh_at() {
            Some(at) if !self.refreshing => at.min(self.expires_at()),
            _ => self.expires_at(),
        }
    }

    pub fn expired(&self, now: Time) -> bool {
        now >= self.expires_at()
    }

    /// What is due at `now`, if anything (expiry first).
    pub fn poll(&self, now: Time) -> Option<TimerDue> {
        if self.expired(now) {
            return Some(TimerDue::Expired);
        }
        match self.refresh_at() {
            Some(at) if !self.refreshing && now >= at => Some(TimerDue::Refresh),
            _ => None,
        }
    }

    /// Headers for acd's refreshing re-INVITE or UPDATE: acd is that
    /// request's UAC, and keeps the refreshing (`refresher=uac`).
    pub fn refresh_request_headers(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "Session-Expires",
                SessionExpires { interval_secs: self.ask_secs, refresher: Some(Refresher::Uac) }.to_string(),
            ),
            ("Min-SE", RFC_MIN_SE_SECS.to_string()),
            ("Supported", "timer".to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> TimerRequest {
        TimerRequest::from_headers(headers.iter().copied()).expect("parses")
    }

    fn policy(min: u32) -> UasPolicy {
        UasPolicy { min_se_secs: min, ..UasPolicy::default() }
    }

    fn timer(interval_secs: u32, refresher: Refresher) -> UasDecision {
        UasDecision::Timer { interval_secs, refresher, require_timer: true }
    }

    #[test]
    fn the_policy_comes_from_the_sip_config_which_keeps_the_rfcs_floor() {
        use crate::config::from_toml_str;
        let c = from_toml_str("acd.toml", "").expect("defaults");
        assert_eq!(UasPolicy::from(&c.sip), UasPolicy { min_se_secs: 90, interval_secs: 1800 });
        let c = from_toml_str("acd.toml", "[sip]\nsession_min_se_secs = 300\n").expect("valid");
        assert_eq!(UasPolicy::from(&c.sip), UasPolicy { min_se_secs: 300, interval_secs: 1800 });
        let c = from_toml_str("acd.toml", "[sip]\nsession_min_se_secs = 2000\n").expect("valid");
        assert_eq!(UasPolicy::from(&c.sip).interval_secs, 2000, "the default interval follows a larger minimum");
        let e = from_toml_str("acd.toml", "[sip]\nsession_min_se_secs = 60\n").unwrap_err();
        assert_eq!(e.key(), Some("sip.session_min_se_secs"), "{e}");
        let e =
            from_toml_str("acd.toml", "[sip]\nsession_min_se_secs = 600\nsession_interval_secs = 300\n").unwrap_err();
        assert_eq!(e.key(), Some("sip.session_interval_secs"), "{e}");
    }

    // ----- parsing ---------------------------------------------------------

    #[test]
    fn session_expires_parses_with_whitespace_params_and_either_case() {
        let se = |v| parse_session_expires(v).unwrap();
        assert_eq!(se("1800"), SessionExpires { interval_secs: 1800, refresher: None });
        assert_eq!(se(" 1800 ;refresher=uac"), SessionExpires { interval_secs: 1800, refresher: Some(Refresher::Uac) });
        assert_eq!(se("90; Refresher = UAS"), SessionExpires { interval_secs: 90, refresher: Some(Refresher::Uas) });
        assert_eq!(se("600;foo=bar;refresher=uas;baz").refresher, Some(Refresher::Uas));
        // An unknown refresher value is a generic-param: the choice is ours.
        assert_eq!(se("600;refresher=proxy").refresher, None);
        // Over-long delta-seconds saturate (RFC 3261 §25.1).
        assert_eq!(se("99999999999").interval_secs, u32::MAX);
    }

    #[test]
    fn garbage_session_expires_and_min_se_are_the_peers_error() {
        for v in ["", " ", "abc", "-5", "1800s", "18 00", "1.5", ";refresher=uac", "1800;;refresher=uac", "1800;"] {
            assert_eq!(parse_session_expires(v), Err(SessionTimerError::BadSessionExpires(v.into())), "{v:?}");
        }
        for v in ["", "x", "-90", "90 s"] {
            assert_eq!(parse_min_se(v), Err(SessionTimerError::BadMinSe(v.into())), "{v:?}");
        }
        assert_eq!(parse_min_se(" 120 ;foo=1"), Ok(120));
        let e = TimerRequest::from_headers([("Session-Expires", "soon")]).unwrap_err();
        assert_eq!(e, SessionTimerError::BadSessionExpires("soon".into()));
    }

    #[test]
    fn a_request_is_read_from_full_and_compact_header_names_in_any_case() {
        let r = req(&[
            ("Via", "SIP/2.0/UDP 10.0.0.1"),
            ("x", "1200;refresher=uac"),
            ("MIN-SE", "300"),
            ("k", "100rel, Timer"),
        ]);
        assert_eq!(
            r,
            TimerRequest {
                session_expires: Some(SessionExpires { interval_secs: 1200, refresher: Some(Refresher::Uac) }),
                min_se_secs: Some(300),
                uac_supports: true,
            }
        );
        assert!(req(&[("Require", "timer")]).uac_supports, "Require: timer implies support");
        assert!(req(&[("Supported", "100rel"), ("supported", "timer")]).uac_supports, "repeated headers add up");
        assert!(!req(&[("Supported", "100rel, timers, replaces")]).uac_supports, "a whole tag, not a prefix");
        assert_eq!(req(&[]), TimerRequest::default());
    }

    // ----- the UAS decision ------------------------------------------------

    #[test]
    fn an_interval_below_acds_minimum_gets_422_with_min_se() {
        let r = req(&[("Session-Expires", "60"), ("Supported", "timer")]);
        let d = decide(&policy(90), &r);
        assert_eq!(d, UasDecision::TooSmall { min_se_secs: 90 });
        assert_eq!(d.status(), 422);
        assert_eq!(d.response_headers(), vec![("Min-SE", "90".to_string())]);
        // A stricter acd.
        let r = req(&[("Session-Expires", "300"), ("Supported", "timer")]);
        assert_eq!(decide(&policy(600), &r), UasDecision::TooSmall { min_se_secs: 600 });
        // Exactly the minimum is fine.
        let r = req(&[("Session-Expires", "600"), ("Supported", "timer")]);
        assert!(matches!(decide(&policy(600), &r), UasDecision::Timer { interval_secs: 600, .. }));
    }

    #[test]
    fn acds_minimum_is_never_below_the_rfcs_90_s() {
        let r = req(&[("Session-Expires", "60"), ("Supported", "timer")]);
        assert_eq!(decide(&policy(30), &r), UasDecision::TooSmall { min_se_secs: 90 });
    }

    #[test]
    fn the_uacs_retry_after_422_with_a_raised_interval_is_accepted() {
        let p = policy(120);
        let first = req(&[("Session-Expires", "90"), ("Min-SE", "90"), ("Supported", "timer")]);
        let UasDecision::TooSmall { min_se_secs } = decide(&p, &first) else { panic!() };
        // RFC 4028 §7.3: the retry carries Min-SE and Session-Expires raised.
        let m = min_se_secs.to_string();
        let retry = req(&[("Session-Expires", &m), ("Min-SE", &m), ("Supported", "timer")]);
        assert_eq!(decide(&p, &retry), timer(120, Refresher::Uac));
    }

    #[test]
    fn the_requests_min_se_raises_the_floor() {
        // An interval below the request's own Min-SE is answered with it.
        let r = req(&[("Session-Expires", "200"), ("Min-SE", "300"), ("Supported", "timer")]);
        assert_eq!(decide(&policy(90), &r), UasDecision::TooSmall { min_se_secs: 300 });
        // acd's preferred interval is raised to the request's Min-SE.
        let p = UasPolicy { min_se_secs: 90, interval_secs: 120 };
        let r = req(&[("Min-SE", "400"), ("Supported", "timer")]);
        assert_eq!(decide(&p, &r), timer(400, Refresher::Uac));
    }

    #[test]
    fn the_answer_keeps_the_requests_interval_never_raising_it() {
        let r = req(&[("Session-Expires", "3600"), ("Supported", "timer")]);
        let p = UasPolicy { min_se_secs: 90, interval_secs: 1800 };
        assert_eq!(decide(&p, &r), timer(3600, Refresher::Uac));
        let r = req(&[("Session-Expires", "100"), ("Supported", "timer")]);
        assert_eq!(decide(&p, &r), timer(100, Refresher::Uac));
    }

    #[test]
    fn refresher_choice_follows_rfc_4028_section_9() {
        let p = UasPolicy::default();
        // UAC supports, no preference: the trunk refreshes.
        let r = req(&[("Session-Expires", "1800"), ("Supported", "timer")]);
        assert_eq!(decide(&p, &r), timer(1800, Refresher::Uac));
        // UAC supports and asks: its choice is copied.
        let r = req(&[("Session-Expires", "1800;refresher=uas"), ("Supported", "timer")]);
        assert_eq!(decide(&p, &r), timer(1800, Refresher::Uas));
        let r = req(&[("Session-Expires", "1800;refresher=uac"), ("Supported", "timer")]);
        assert_eq!(decide(&p, &r), timer(1800, Refresher::Uac));
        // UAC does not support (a proxy inserted the header): acd refreshes,
        // and no Require: timer the UAC would not understand.
        let r = req(&[("Session-Expires", "1800;refresher=uac")]);
        assert_eq!(
            decide(&p, &r),
            UasDecision::Timer { interval_secs: 1800, refresher: Refresher::Uas, require_timer: false }
        );
    }

    #[test]
    fn a_uac_that_supports_timers_but_asked_for_none_gets_acds_interval() {
        let p = UasPolicy { min_se_secs: 90, interval_secs: 900 };
        assert_eq!(decide(&p, &req(&[("Supported", "timer")])), timer(900, Refresher::Uac));
        // Configured below the minimum: the minimum.
        let p = UasPolicy { min_se_secs: 300, interval_secs: 100 };
        assert_eq!(decide(&p, &req(&[("Supported", "timer")])), timer(300, Refresher::Uac));
    }

    #[test]
    fn no_session_expires_and_no_support_means_no_timer() {
        let d = decide(&UasPolicy::default(), &req(&[("Supported", "100rel")]));
        assert_eq!(d, UasDecision::NoTimer);
        assert!(d.response_headers().is_empty());
        assert_eq!(d.status(), 200);
        assert_eq!(SessionTimer::start(Time::ZERO, &d), None);
    }

    #[test]
    fn the_2xx_headers_name_the_interval_the_refresher_and_require_timer() {
        let d = decide(&UasPolicy::default(), &req(&[("x", "1800"), ("k", "timer")]));
        assert_eq!(
            d.response_headers(),
            vec![("Session-Expires", "1800;refresher=uac".to_string()), ("Require", "timer".to_string())]
        );
        let d = decide(&UasPolicy::default(), &req(&[("Session-Expires", "1800")]));
        assert_eq!(d.response_headers(), vec![("Session-Expires", "1800;refresher=uas".to_string())]);
    }

    // ----- the running timer -----------------------------------------------

    #[test]
    fn the_session_ends_at_interval_minus_min_32_s_and_a_third() {
        let start = Time::from_secs(1000);
        // 1800 s: a third is 600, so 32 s before: 1768 s.
        let t = SessionTimer::start(start, &timer(1800, Refresher::Uac)).unwrap();
        assert_eq!(t.expires_at(), Time::from_secs(1000 + 1768));
        assert!(!t.expired(Time::from_millis(2_767_999)));
        assert!(t.expired(Time::from_secs(2768)));
        // 90 s: a third (30 s) is less than 32 s: 60 s.
        let t = SessionTimer::start(start, &timer(90, Refresher::Uac)).unwrap();
        assert_eq!(t.expires_at(), Time::from_secs(1060));
        // 96 s: a third is exactly 32 s.
        let t = SessionTimer::start(start, &timer(96, Refresher::Uac)).unwrap();
        assert_eq!(t.expires_at(), Time::from_secs(1064));
        // 100 s: a third is 33.3 s, so 32 s: 68 s.
        let t = SessionTimer::start(start, &timer(100, Refresher::Uac)).unwrap();
        assert_eq!(t.expires_at(), Time::from_secs(1068));
    }

    #[test]
    fn when_the_trunk_refreshes_acd_only_waits_and_ends_a_missed_refresh() {
        let t = SessionTimer::start(Time::ZERO, &timer(1800, Refresher::Uac)).unwrap();
        assert!(!t.acd_refreshes());
        assert_eq!(t.refresh_at(), None);
        assert_eq!(t.next_deadline(), Time::from_secs(1768));
        assert_eq!(t.poll(Time::from_secs(900)), None, "no refresh of ours at half time");
        assert_eq!(t.poll(Time::from_secs(1768)), Some(TimerDue::Expired));
    }

    #[test]
    fn a_received_refresh_restarts_the_interval_and_may_change_it() {
        let mut t = SessionTimer::start(Time::ZERO, &timer(1800, Refresher::Uac)).unwrap();
        // The trunk's re-INVITE (or UPDATE) at 900 s, answered 2xx.
        let refresh = req(&[("Session-Expires", "1800;refresher=uac"), ("Supported", "timer")]);
        assert!(t.on_refresh(Time::from_secs(900), &decide(&UasPolicy::default(), &refresh)));
        assert_eq!(t.expires_at(), Time::from_secs(900 + 1768));
        assert!(!t.expired(Time::from_secs(1800)), "the first deadline no longer counts");
        // A later refresh shortens the interval.
        let shorter = req(&[("Session-Expires", "600"), ("Supported", "timer")]);
        assert!(t.on_refresh(Time::from_secs(1800), &decide(&UasPolicy::default(), &shorter)));
        assert_eq!((t.interval_secs(), t.expires_at()), (600, Time::from_secs(1800 + 568)));
        // A too-small refresh gets 422 and is no refresh.
        let tiny = req(&[("Session-Expires", "30"), ("Supported", "timer")]);
        let d = decide(&UasPolicy::default(), &tiny);
        assert_eq!(d.status(), 422);
        assert!(t.on_refresh(Time::from_secs(2000), &d));
        assert_eq!(t.expires_at(), Time::from_secs(1800 + 568));
        // A refresh without any timer headers turns the timer off.
        assert!(!t.on_refresh(Time::from_secs(2100), &decide(&UasPolicy::default(), &req(&[]))));
    }

    #[test]
    fn when_acd_refreshes_it_sends_at_half_the_interval_once() {
        let d = decide(&UasPolicy::default(), &req(&[("Session-Expires", "1800")]));
        let mut t = SessionTimer::start(Time::from_secs(10), &d).unwrap();
        assert!(t.acd_refreshes());
        assert_eq!(t.refresh_at(), Some(Time::from_secs(910)));
        assert_eq!(t.next_deadline(), Time::from_secs(910));
        assert_eq!(t.poll(Time::from_secs(909)), None);
        assert_eq!(t.poll(Time::from_secs(910)), Some(TimerDue::Refresh));
        assert_eq!(
            t.refresh_request_headers(),
            vec![
                ("Session-Expires", "1800;refresher=uac".to_string()),
                ("Min-SE", "90".to_string()),
                ("Supported", "timer".to_string()),
            ]
        );
        t.refresh_sent();
        assert_eq!(t.poll(Time::from_secs(911)), None, "one refresh on the wire at a time");
        assert_eq!(t.next_deadline(), Time::from_secs(10 + 1768), "the expiry still stands behind it");
        // The trunk's 2xx: refresher=uac in our transaction is acd.
        let se = parse_session_expires("1800;refresher=uac").unwrap();
        assert!(t.on_own_refresh_answered(Time::from_secs(911), Some(se)));
        assert!(t.acd_refreshes());
        assert_eq!(t.refresh_at(), Some(Time::from_secs(911 + 900)));
    }

    #[test]
    fn acds_refresh_unanswered_ends_the_session_at_the_expiry() {
        let d = decide(&UasPolicy::default(), &req(&[("Session-Expires", "90")]));
        let mut t = SessionTimer::start(Time::ZERO, &d).unwrap();
        assert_eq!(t.poll(Time::from_secs(45)), Some(TimerDue::Refresh));
        t.refresh_sent();
        assert_eq!(t.next_deadline(), Time::from_secs(60));
        assert_eq!(t.poll(Time::from_secs(60)), Some(TimerDue::Expired));
    }

    #[test]
    fn a_422_to_acds_refresh_raises_its_interval_for_the_retry() {
        let d = decide(&UasPolicy::default(), &req(&[("Session-Expires", "90")]));
        let mut t = SessionTimer::start(Time::ZERO, &d).unwrap();
        t.refresh_sent();
        t.raise_min(180);
        assert_eq!(t.poll(Time::from_secs(50)), Some(TimerDue::Refresh), "retry at once");
        assert_eq!(t.refresh_request_headers()[0].1, "180;refresher=uac");
        assert_eq!(t.expires_at(), Time::from_secs(60), "the session so far is not extended");
    }

    #[test]
    fn the_trunk_may_take_the_refreshing_over_and_stopping_it_ends_the_timer() {
        let d = decide(&UasPolicy::default(), &req(&[("Session-Expires", "1800"), ("Supported", "timer")]));
        let mut t = SessionTimer::start(Time::ZERO, &d).unwrap();
        // Our refresh answered with refresher=uas: the trunk (the UAS there).
        let se = parse_session_expires("1800;refresher=uas").unwrap();
        assert!(t.on_own_refresh_answered(Time::from_secs(900), Some(se)));
        assert!(!t.acd_refreshes());
        // A 2xx with no Session-Expires: the trunk runs no timer any more.
        assert!(!t.on_own_refresh_answered(Time::from_secs(1000), None));
    }
}
