//! The SIP front door: every out-of-dialog request (INVITE, REGISTER,
//! OPTIONS, anything else) is decided here, without sockets or a clock.
//!
//! What it owns: authentication (digest, the nonce store, the failure rate
//! limiter), the registrar, feature codes, trunk admission, the method policy
//! and RFC 3261 request checks, and the one admission policy for new calls
//! ([`Capacity`]: calls, RTP port pairs for both legs, file descriptors, loop
//! lag, un-ACKed answers per source, shutdown).
//!
//! The contract (sans-IO, like the core):
//! ```text
//! verdict = front.handle(now, &request, &capacity)
//!     Verdict::Reply(r)            → answer the request with r
//!     Verdict::Call { call, offer } → hand `call` to the core; on Ok bind the
//!                                    request to the caller leg, else answer
//!                                    the core's refusal
//!     Verdict::FeatureCode { .. }  → apply it to the engine, answer 200 + BYE
//!                                    (or 403 if the engine refuses)
//! then: while let Some(p) = front.poll_presence() { engine input }
//! sleep until front.poll_timeout(); front.handle_timeout(now)
//! ```
//!
//! What always holds:
//! - a request is answered exactly once, by exactly one verdict;
//! - an unknown user, a user without a password and a wrong password look the
//!   same from outside: a 401 challenge, then the same 403 (no enumeration);
//! - a nonce is spent by its first wrong response as well as by a right one;
//! - past `auth_max_failures` failures in `auth_failure_window_secs` from one
//!   address or for one user name, every attempt gets 403 with Retry-After
//!   until the lockout ends, the right password included;
//! - every registration change (registered, unregistered, expired, removed)
//!   is reported once through [`FrontDoor::poll_presence`].

use crate::callctl::IncomingCall;
use crate::config::{route_for, Config, DigestAlgorithm, FeatureCodes, NumberRoute, TrunkConfig};
use crate::engine::Time;
use crate::media::g711::Codec;
use crate::media::sdp::{self, Negotiated, DTMF_PT};
use crate::sip::adapter::{ContactValue, Method, Request, Transport};
use crate::sip::digest::{self, Algorithm, AuthFailure, NonceStore};
use crate::sip::registrar::{self, ContactReq, ContactsReq, Registrar, RegistrarSettings};
use crate::sip::session_timer::{self, UasDecision, UasPolicy};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tracing::{info, warn};

/// Methods acd answers outside a dialog.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER";

/// Methods RFC 3261 and its extensions define that acd does not serve
/// outside a dialog: 405 with Allow. Anything else is unknown: 501.
const NOT_ALLOWED: &[&str] = &["SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER", "INFO", "UPDATE", "PRACK"];

/// Option tags acd supports in `Require` (RFC 3261 §8.2.2.3: any other one
/// gets 420 with `Unsupported`).
pub const SUPPORTED_OPTIONS: &[&str] = &["timer"];

/// What 403s for a failed authentication say, whatever the cause: the same
/// words for an unknown user, a user without a password and a wrong one.
const AUTH_FAILED: &str = "399 acd \"authentication failed\"";

/// How many addresses and user names the failure limiter remembers at most
/// (each entry is a few dozen bytes; a spray from many addresses cannot grow
/// it past this).
const LIMITER_CAPACITY: usize = 10_000;

/// An answer to a request: status and extra headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    fn new(status: u16) -> Reply {
        Reply { status, headers: Vec::new() }
    }
    fn with(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }
    fn warning(self, text: &str) -> Reply {
        self.with("Warning", format!("399 acd \"{text}\""))
    }
    /// The header's value, for tests and logs.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The caller's SDP offer, read and negotiated before the call is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerOffer {
    pub media: Negotiated,
    /// Where the caller wants RTP (`None`: learn it from its first packet).
    pub remote: Option<SocketAddr>,
    /// The INVITE had no offer: acd offers both laws in its 200.
    pub late: bool,
}

/// A code an agent dials from a registered phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureCode {
    Login,
    Logout,
    Pause,
    Ready,
}

impl FeatureCode {
    fn of(codes: &FeatureCodes, dialled: &str) -> Option<FeatureCode> {
        [
            (&codes.login, FeatureCode::Login),
            (&codes.logout, FeatureCode::Logout),
            (&codes.pause, FeatureCode::Pause),
            (&codes.ready, FeatureCode::Ready),
        ]
        .into_iter()
        .find(|(c, _)| **c == dialled)
        .map(|(_, k)| k)
    }
}

/// What to do with a request.
#[derive(Debug, Clone)]
pub enum Verdict {
    Reply(Reply),
    /// A new call that passed every check: give it to the core.
    Call {
        call: IncomingCall,
        offer: CallerOffer,
        /// RFC 4028: what acd's 200 says about the session timer, and
        /// whether one runs.
        session: UasDecision,
    },
    /// An authenticated agent dialled a feature code. `agent` is the agent's
    /// id in the config.
    FeatureCode {
        agent: String,
        code: FeatureCode,
    },
}

/// What is free at the moment a new INVITE is decided, as the shell counts
/// it. The one place where every limit on new calls is read (h2's
/// `counts.rs` shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Calls in call control now.
    pub calls: usize,
    /// RTP port pairs free in the media plane.
    pub rtp_pairs_free: usize,
    /// File descriptors free below RLIMIT_NOFILE.
    pub fds_free: usize,
    /// Caller legs from the INVITE's source address answered and not ACKed.
    pub unacked_from_source: u32,
    /// SIGTERM arrived.
    pub draining: bool,
}

impl Capacity {
    /// Plenty of everything: for tests.
    pub fn ample() -> Capacity {
        Capacity { calls: 0, rtp_pairs_free: 1000, fds_free: 10_000, unacked_from_source: 0, draining: false }
    }
}

/// Why a new call was refused with 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shortage {
    /// The INVITE waited too long for the daemon loop.
    LoopLag,
    ShuttingDown,
    /// `sip.max_calls` calls in progress.
    Calls,
    /// Fewer than two free RTP port pairs (the caller's and an agent's).
    RtpPorts,
    FileDescriptors,
    /// The source has `sip.max_unacked_invites_per_source` answers un-ACKed.
    UnackedFromSource,
}

impl Shortage {
    pub const ALL: [Shortage; 6] = [
        Shortage::LoopLag,
        Shortage::ShuttingDown,
        Shortage::Calls,
        Shortage::RtpPorts,
        Shortage::FileDescriptors,
        Shortage::UnackedFromSource,
    ];
    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            Shortage::LoopLag => "loop_lag",
            Shortage::ShuttingDown => "shutting_down",
            Shortage::Calls => "max_calls",
            Shortage::RtpPorts => "rtp_ports",
            Shortage::FileDescriptors => "file_descriptors",
            Shortage::UnackedFromSource => "unacked_from_source",
        }
    }
    /// A moment's overload, over as soon as the burst is: short Retry-After.
    fn transient(self) -> bool {
        matches!(self, Shortage::LoopLag | Shortage::UnackedFromSource)
    }

    fn warning(self) -> &'static str {
        match self {
            Shortage::LoopLag => "overloaded",
            Shortage::ShuttingDown => "shutting down",
            Shortage::Calls => "too many calls",
            Shortage::RtpPorts => "no free RTP port pair",
            Shortage::FileDescriptors => "out of file descriptors",
            Shortage::UnackedFromSource => "overloaded: too many calls from this address not yet ACKed",
        }
    }
}

/// Counts of what the front door refused, for the shell's metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrontCounters {
    /// Failed digest responses (wrong password, unknown user, user name
    /// mismatch).
    pub auth_failures: u64,
    /// Lockouts started (one per episode).
    pub auth_lockouts: u64,
    /// Requests answered 403 because their address or user was locked out.
    pub auth_locked_refusals: u64,
    /// 503s by shortage.
    pub shortages: HashMap<Shortage, u64>,
}

/// An agent's registration changed: the engine must hear of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// The agent's id in the config.
    pub agent: String,
    pub registered: bool,
}

/// The settings the front door reads, taken from the config (and again on
/// reload).
#[derive(Debug, Clone)]
struct Settings {
    realm: String,
    algorithms: Vec<Algorithm>,
    /// SIP user → (agent id, password).
    agents: HashMap<String, (String, Option<String>)>,
    trunks: Vec<TrunkConfig>,
    numbers: Vec<NumberRoute>,
    feature_codes: FeatureCodes,
    priority_header: String,
    skills_header: String,
    max_calls: usize,
    retry_after_secs: u32,
    retry_after_transient_secs: u32,
    max_unacked_per_source: u32,
    overload_queue_delay: Duration,
    fd_headroom: usize,
    session_timers: UasPolicy,
}

impl Settings {
    fn from(config: &Config) -> Settings {
        let sip = &config.sip;
        Settings {
            realm: sip.realm.clone(),
            algorithms: sip
                .digest_algorithms
                .iter()
                .map(|a| match a {
                    DigestAlgorithm::Md5 => Algorithm::Md5,
                    DigestAlgorithm::Sha256 => Algorithm::Sha256,
                })
                .collect(),
            agents: config.agents.iter().map(|a| (a.sip_user.clone(), (a.id.clone(), a.password.clone()))).collect(),
            trunks: config.trunks.clone(),
            numbers: config.numbers.clone(),
            feature_codes: sip.feature_codes.clone(),
            priority_header: sip.priority_header.clone(),
            skills_header: sip.skills_header.clone(),
            max_calls: sip.max_calls as usize,
            retry_after_secs: sip.retry_after_secs,
            retry_after_transient_secs: sip.retry_after_transient_secs,
            max_unacked_per_source: sip.max_unacked_invites_per_source,
            overload_queue_delay: Duration::from_millis(sip.overload_queue_delay_ms as u64),
            fd_headroom: sip.fd_headroom as usize,
            session_timers: UasPolicy::from(sip),
        }
    }
}

/// Failed attempts of one address or one user name.
#[derive(Debug, Clone, Copy)]
struct Failures {
    window_start: Time,
    count: u32,
    locked_until: Option<Time>,
}

/// Digest failures per source address and per user name, and the lockouts
/// they earn. Bounded by [`LIMITER_CAPACITY`] per map.
#[derive(Debug)]
struct AuthLimiter {
    max_failures: u32,
    window: Duration,
    lockout: Duration,
    by_source: HashMap<IpAddr, Failures>,
    by_user: HashMap<String, Failures>,
}

impl AuthLimiter {
    fn new(config: &Config) -> AuthLimiter {
        let mut l = AuthLimiter {
            max_failures: 0,
            window: Duration::ZERO,
            lockout: Duration::ZERO,
            by_source: HashMap::new(),
            by_user: HashMap::new(),
        };
        l.configure(config);
        l
    }

    fn configure(&mut self, config: &Config) {
        self.max_failures = config.sip.auth_max_failures;
        self.window = Duration::from_secs(config.sip.auth_failure_window_secs as u64);
        self.lockout = Duration::from_secs(config.sip.auth_lockout_secs as u64);
    }

    /// Until when `ip` or `user` is locked out, if either is at `now`.
    fn locked(&self, now: Time, ip: IpAddr, user: &str) -> Option<Time> {
        let until = |f: Option<&Failures>| f.and_then(|f| f.locked_until).filter(|t| *t > now);
        until(self.by_source.get(&ip)).into_iter().chain(until(self.by_user.get(user))).max()
    }

    /// Records a failure; true when it starts a lockout (of the address or
    /// the user name).
    fn failed(&mut self, now: Time, ip: IpAddr, user: &str) -> bool {
        let (max, window, lockout) = (self.max_failures, self.window, self.lockout);
        let bump = |f: &mut Failures| -> bool {
            if f.locked_until.is_some_and(|t| t <= now) {
                f.locked_until = None;
                f.count = 0;
                f.window_start = now;
            }
            if now.since(f.window_start) >= window {
                f.window_start = now;
                f.count = 0;
            }
            f.count += 1;
            if f.count >= max && f.locked_until.is_none() {
                f.locked_until = Some(now + lockout);
                return true;
            }
            false
        };
        let fresh = Failures { window_start: now, count: 0, locked_until: None };
        let mut started = false;
        if let Some(f) = entry(&mut self.by_source, ip, fresh, now, window) {
            started |= bump(f);
        }
        if let Some(f) = entry(&mut self.by_user, user.to_string(), fresh, now, window) {
            started |= bump(f);
        }
        started
    }
}

/// The entry for `key`, made if there is room: a full map first forgets the
/// entries that are neither locked nor inside their window.
fn entry<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Failures>,
    key: K,
    fresh: Failures,
    now: Time,
    window: Duration,
) -> Option<&mut Failures> {
    if !map.contains_key(&key) && map.len() >= LIMITER_CAPACITY {
        map.retain(|_, f| f.locked_until.is_some_and(|t| t > now) || now.since(f.window_start) < window);
        if map.len() >= LIMITER_CAPACITY {
            return None;
        }
    }
    Some(map.entry(key).or_insert(fresh))
}

/// The front door. See the module doc for its contract.
pub struct FrontDoor {
    settings: Settings,
    nonces: NonceStore,
    limiter: AuthLimiter,
    registrar: Registrar,
    presence: VecDeque<Presence>,
    counters: FrontCounters,
}

/// Why authentication did not let a request through; the request has its
/// answer in it.
struct Refused(Reply);

impl FrontDoor {
    /// `seed` makes the nonces: the shell draws it from the OS, never from
    /// the routing seed in the config (nonces must not be guessable).
    pub fn new(config: &Config, seed: u64) -> FrontDoor {
        FrontDoor {
            settings: Settings::from(config),
            nonces: NonceStore::new(Duration::from_secs(config.sip.nonce_ttl_secs as u64), seed),
            limiter: AuthLimiter::new(config),
            registrar: Registrar::new(registrar_settings(config)),
            presence: VecDeque::new(),
            counters: FrontCounters::default(),
        }
    }

    /// A validated new config: agents, trunks, numbers, limits. Registrations
    /// and nonces stay. An agent removed from the config is no longer
    /// reported when its bindings expire.
    pub fn reload(&mut self, config: &Config) {
        self.settings = Settings::from(config);
        self.limiter.configure(config);
    }

    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    pub fn counters(&self) -> &FrontCounters {
        &self.counters
    }

    /// The next registration change for the engine.
    #[must_use]
    pub fn poll_presence(&mut self) -> Option<Presence> {
        self.presence.pop_front()
    }

    /// When a registration expires next.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.registrar.poll_timeout()
    }

    pub fn handle_timeout(&mut self, now: Time) {
        for user in self.registrar.handle_timeout(now) {
            info!(%user, "registration expired");
            self.presence_changed(&user, false);
        }
    }

    /// A phone stopped answering OPTIONS: its contact goes.
    pub fn remove_contact(&mut self, now: Time, user: &str, contact: &str) {
        if self.registrar.remove_contact(now, user, contact) {
            self.presence_changed(user, false);
        }
    }

    /// Decides one out-of-dialog request.
    pub fn handle(&mut self, now: Time, r: &Request, capacity: &Capacity) -> Verdict {
        if let Some(reply) = self.method_policy(r) {
            return Verdict::Reply(reply);
        }
        if let Some(reply) = self.rfc_checks(r) {
            return Verdict::Reply(reply);
        }
        match r.method {
            Method::Options => Verdict::Reply(
                Reply::new(200).with("Allow", ALLOW).with("Accept", "application/sdp").with("Supported", supported()),
            ),
            Method::Register => Verdict::Reply(self.register(now, r)),
            Method::Invite => self.invite(now, r, capacity),
            // method_policy answered every other method.
            Method::Other => Verdict::Reply(Reply::new(501).with("Allow", ALLOW)),
        }
    }

    /// RFC 3261 §8.2.1: a method acd does not serve outside a dialog.
    fn method_policy(&self, r: &Request) -> Option<Reply> {
        if r.method != Method::Other {
            return None;
        }
        let name = r.method_name.as_str();
        Some(match name {
            // No dialog or transaction matched (the adapter tried first).
            "BYE" | "CANCEL" => Reply::new(481),
            _ if NOT_ALLOWED.contains(&name) => Reply::new(405).with("Allow", ALLOW),
            _ => Reply::new(501).with("Allow", ALLOW),
        })
    }

    /// Header checks every request acd serves passes first.
    fn rfc_checks(&self, r: &Request) -> Option<Reply> {
        // §16.3 / §8.2: Max-Forwards 0 ends a request here; OPTIONS is the
        // exception (§11: a request with Max-Forwards 0 queries the server
        // itself).
        if r.max_forwards == Some(0) && r.method != Method::Options {
            return Some(Reply::new(483));
        }
        // §8.2.2.3: an extension the request requires and acd lacks.
        let unsupported: Vec<&str> = r
            .require
            .iter()
            .map(String::as_str)
            .filter(|t| !SUPPORTED_OPTIONS.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unsupported.is_empty() {
            return Some(Reply::new(420).with("Unsupported", unsupported.join(", ")));
        }
        None
    }

    fn register(&mut self, now: Time, r: &Request) -> Reply {
        let user = r.to_user.clone();
        if let Err(Refused(reply)) = self.authenticate(now, r, &user) {
            return reply;
        }
        let contacts = if r.contacts.contains(&ContactValue::Star) {
            if r.contacts.len() > 1 {
                return Reply::new(400).warning("'*' must be the only Contact");
            }
            ContactsReq::Star
        } else {
            ContactsReq::List(
                r.contacts
                    .iter()
                    .filter_map(|c| match c {
                        ContactValue::Uri { uri, expires } => Some(ContactReq { uri: uri.clone(), expires: *expires }),
                        ContactValue::Star => None,
                    })
                    .collect(),
            )
        };
        let transport = match r.transport {
            Transport::Udp => registrar::Transport::Udp,
            Transport::Tcp => registrar::Transport::Tcp,
        };
        match self.registrar.register(now, &user, contacts, r.expires, &r.call_id, r.cseq, r.source, transport) {
            Ok(out) => {
                let mut reply = Reply::new(200);
                for (c, secs) in &out.bindings {
                    reply = reply.with("Contact", format!("<{c}>;expires={secs}"));
                }
                if out.became_registered {
                    info!(%user, source = %r.source, "registered");
                    self.presence_changed(&user, true);
                }
                if out.became_unregistered {
                    info!(%user, "unregistered");
                    self.presence_changed(&user, false);
                }
                reply
            }
            Err(registrar::RegisterError::IntervalTooBrief { min_expires }) => {
                Reply::new(423).with("Min-Expires", min_expires.to_string())
            }
            Err(e) => Reply::new(e.status_code()).warning(&e.to_string()),
        }
    }

    fn presence_changed(&mut self, user: &str, registered: bool) {
        if let Some((agent, _)) = self.settings.agents.get(user) {
            self.presence.push_back(Presence { agent: agent.clone(), registered });
        }
    }

    fn invite(&mut self, now: Time, r: &Request, capacity: &Capacity) -> Verdict {
        // The cheapest refusals first: an overloaded loop must not spend a
        // digest on a call it will refuse.
        if r.queued_for > self.settings.overload_queue_delay {
            return Verdict::Reply(self.shortage(Shortage::LoopLag));
        }
        if capacity.draining {
            return Verdict::Reply(self.shortage(Shortage::ShuttingDown));
        }
        // A feature code dialled by an agent's phone.
        if let (Some(code), Some((agent, _))) =
            (FeatureCode::of(&self.settings.feature_codes, &r.uri_user), self.settings.agents.get(&r.from_user))
        {
            let agent = agent.clone();
            let user = r.from_user.clone();
            return match self.authenticate(now, r, &user) {
                Ok(()) => Verdict::FeatureCode { agent, code },
                Err(Refused(reply)) => Verdict::Reply(reply),
            };
        }
        // An agent's own phone (a consultation call): digest as that agent
        // (agent_call.rs); otherwise a trunk, or nobody.
        let from_agent = self.registered_agent_caller(r);
        let trunk = match &from_agent {
            Some(_) => None,
            None => match self.settings.trunks.iter().find(|t| t.allows(r.source.ip())).cloned() {
                Some(t) => Some(t),
                None => {
                    info!(source = %r.source, to = %r.uri_user, "INVITE from an address that is not a trunk: 403");
                    return Verdict::Reply(Reply::new(403).warning("not a configured trunk"));
                }
            },
        };
        let credentials = match &trunk {
            Some(t) => t.credentials.clone().map(|(u, p)| (u, Some(p))),
            None => self.settings.agents.get(&r.from_user).map(|(_, p)| (r.from_user.clone(), p.clone())),
        };
        if let Some((user, password)) = credentials {
            if let Err(Refused(reply)) = self.authenticate_with(now, r, &user, password.as_deref()) {
                return Verdict::Reply(reply);
            }
        }
        if route_for(&self.settings.numbers, &r.uri_user).is_none() {
            info!(caller = %r.from_user, dialled = %r.uri_user, "no queue for the number: 404");
            return Verdict::Reply(Reply::new(404).warning(&format!("no queue for number \"{}\"", r.uri_user)));
        }
        let offer = if r.has_body {
            match sdp::parse(&r.body).and_then(|o| sdp::negotiate(&o).map(|n| (n, o.addr))) {
                Ok((media, remote)) => CallerOffer { media, remote, late: false },
                Err(e) => {
                    info!(caller = %r.from_user, "488: {e}");
                    return Verdict::Reply(Reply::new(488).with("Warning", format!("305 acd \"{e}\"")));
                }
            }
        } else {
            // No offer in the INVITE: acd offers in its 200 and learns the
            // address from the caller's first RTP packet.
            CallerOffer { media: Negotiated { codec: Codec::Pcmu, dtmf_pt: Some(DTMF_PT) }, remote: None, late: true }
        };
        // RFC 4028: the trunk's session timer, refreshed by the trunk when
        // it can; one it sets too short gets 422 with acd's minimum.
        let session = match session_timer::TimerRequest::from_headers(session_headers(r)) {
            Ok(req) => session_timer::decide(&self.settings.session_timers, &req),
            Err(e) => return Verdict::Reply(Reply::new(400).warning(&e.to_string())),
        };
        if let UasDecision::TooSmall { .. } = session {
            let mut reply = Reply::new(422);
            for (name, value) in session.response_headers() {
                reply = reply.with(name, value);
            }
            return Verdict::Reply(reply);
        }
        if let Some(s) = self.short_of(capacity) {
            return Verdict::Reply(self.shortage(s));
        }
        let trust = trunk.as_ref().is_some_and(|t| t.trust_headers);
        let header = |name: &str| trust.then(|| r.header(name).map(str::to_string)).flatten();
        let call = IncomingCall {
            dialled: r.uri_user.clone(),
            caller: r.from_user.clone(),
            priority_header: header(&self.settings.priority_header),
            skills_header: header(&self.settings.skills_header),
            trunk: trunk.map(|t| t.name).unwrap_or_default(),
            agent: from_agent,
        };
        Verdict::Call { call, offer, session }
    }

    /// The one admission policy: what a new call needs that is not there.
    fn short_of(&self, c: &Capacity) -> Option<Shortage> {
        if c.calls >= self.settings.max_calls {
            Some(Shortage::Calls)
        } else if c.rtp_pairs_free < 2 {
            // The caller's leg and the first agent's: a call acd answers but
            // cannot ring is worse than a 503.
            Some(Shortage::RtpPorts)
        } else if c.fds_free < self.settings.fd_headroom {
            Some(Shortage::FileDescriptors)
        } else if c.unacked_from_source >= self.settings.max_unacked_per_source {
            Some(Shortage::UnackedFromSource)
        } else {
            None
        }
    }

    fn shortage(&mut self, s: Shortage) -> Reply {
        *self.counters.shortages.entry(s).or_default() += 1;
        if s != Shortage::LoopLag {
            // Under loop lag every log line makes it worse; the metric says it.
            warn!(reason = s.name(), "new call refused: 503");
        }
        let secs =
            if s.transient() { self.settings.retry_after_transient_secs } else { self.settings.retry_after_secs };
        Reply::new(503).with("Retry-After", secs.to_string()).warning(s.warning())
    }

    /// Digest check for an agent's phone, by SIP user name: the password is
    /// the agent's (none for an unknown user or one without a password,
    /// which then fail exactly like a wrong password).
    fn authenticate(&mut self, now: Time, r: &Request, user: &str) -> Result<(), Refused> {
        let password = self.settings.agents.get(user).and_then(|(_, p)| p.clone());
        self.authenticate_with(now, r, user, password.as_deref())
    }

    fn authenticate_with(&mut self, now: Time, r: &Request, user: &str, password: Option<&str>) -> Result<(), Refused> {
        let ip = r.source.ip();
        if let Some(until) = self.limiter.locked(now, ip, user) {
            self.counters.auth_locked_refusals += 1;
            let secs = until.since(now).as_secs().max(1);
            return Err(Refused(
                Reply::new(403).with("Retry-After", secs.to_string()).warning("too many failed attempts; try later"),
            ));
        }
        let Some(auth) = &r.authorization else {
            return Err(Refused(self.challenge(now, None, false)));
        };
        let resp = match digest::parse_authorization(auth) {
            Ok(resp) => resp,
            Err(e) => return Err(Refused(Reply::new(400).warning(&format!("Authorization: {e}")))),
        };
        // RFC 3261 §22.4 / RFC 7616 §3.4.6: the digest covers this request,
        // not one the credentials were captured from.
        if !same_uri(&resp.uri, &r.uri) {
            return Err(Refused(Reply::new(400).warning("digest uri does not match the Request-URI")));
        }
        // Credentials in an algorithm acd does not accept (MD5 when only
        // SHA-256 is configured) get a challenge in one it does.
        if !digest::accepts(&self.settings.algorithms, resp.algorithm) {
            return Err(Refused(self.challenge(now, None, false)));
        }
        let outcome = if resp.username != user {
            Err(AuthFailure::BadResponse)
        } else {
            digest::verify_user(&mut self.nonces, now, &r.method_name, &resp, &self.settings.realm, password)
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(AuthFailure::Stale) => Err(Refused(self.challenge(now, Some(auth), true))),
            Err(AuthFailure::UnknownNonce | AuthFailure::Replay | AuthFailure::WrongRealm) => {
                Err(Refused(self.challenge(now, Some(auth), false)))
            }
            Err(AuthFailure::BadResponse) => {
                self.counters.auth_failures += 1;
                if self.limiter.failed(now, ip, user) {
                    self.counters.auth_lockouts += 1;
                    warn!(
                        %user, source = %ip,
                        "{} failed digest attempts: refusing this address and user for {} s",
                        self.limiter.max_failures, self.limiter.lockout.as_secs()
                    );
                } else {
                    info!(%user, source = %ip, "authentication failed");
                }
                Err(Refused(Reply::new(403).with("Warning", AUTH_FAILED)))
            }
        }
    }

    /// One challenge per 401 (Debian baresip 1.0 fails a 401 that names
    /// MD5 and SHA-256 both): in the algorithm the phone already answered
    /// in when acd accepts it, else the first configured.
    fn challenge(&mut self, now: Time, answered: Option<&str>, stale: bool) -> Reply {
        let nonce = self.nonces.issue(now);
        let alg = digest::challenge_algorithm(&self.settings.algorithms, answered);
        Reply::new(401).with("WWW-Authenticate", digest::challenge_header(&self.settings.realm, &nonce, alg, stale))
    }
}

/// Where acd sends an INVITE for a registered contact: `None` means to the
/// Contact URI itself, `Some(source)` to the address the REGISTER came from.
///
/// The rule: the Contact, unless it cannot be reached as written or the
/// phone is behind NAT:
/// - over TCP, always the registering connection's address (the phone may
///   not listen for new connections, RFC 5626 style);
/// - a Contact host that is not an IP address and ends in `.invalid` (a
///   browser's or a NAT-aware client's placeholder): the source;
/// - a Contact IP other than the source IP (NAT rewrote the address, or the
///   phone put a private address in a public REGISTER): the source;
/// - the same IP but another port (a phone that registers from one port and
///   listens on another): the Contact, since the phone listens there.
pub fn agent_destination(contact: &str, source: SocketAddr, transport: registrar::Transport) -> Option<SocketAddr> {
    if transport == registrar::Transport::Tcp {
        return Some(source);
    }
    let Some((_, host, _)) = uri_parts(contact) else { return Some(source) };
    match host.parse::<IpAddr>() {
        Ok(ip) if same_ip(ip, source.ip()) => None,
        Ok(_) => Some(source),
        Err(_) if host.ends_with(".invalid") => Some(source),
        Err(_) => None,
    }
}

fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    canon(a) == canon(b)
}

/// The headers RFC 4028 reads, as `(name, value)` pairs.
fn session_headers(r: &Request) -> impl Iterator<Item = (&str, &str)> {
    r.headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain(r.supported.iter().map(|t| ("Supported", t.as_str())))
        .chain(r.require.iter().map(|t| ("Require", t.as_str())))
}

fn supported() -> String {
    SUPPORTED_OPTIONS.join(", ")
}

fn registrar_settings(config: &Config) -> RegistrarSettings {
    RegistrarSettings {
        min_expires: config.sip.register_min_expires,
        max_expires: config.sip.register_max_expires,
        default_expires: config.sip.register_default_expires,
        max_contacts: config.sip.max_contacts_per_agent,
    }
}

/// Whether a digest `uri` names the Request-URI: the same user, host and
/// port (a missing port is 5060), the host compared without case; URI
/// parameters are left out, since the SIP library may rewrite their case.
fn same_uri(digest_uri: &str, request_uri: &str) -> bool {
    match (uri_parts(digest_uri), uri_parts(request_uri)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A SIP URI's user, host (lowercase, IPv6 without brackets) and port (5060
/// when absent); `None` if it is not a `sip:`/`sips:` URI.
fn uri_parts(u: &str) -> Option<(String, String, u16)> {
    let u = u.trim();
    let u = match (u.find('<'), u.rfind('>')) {
        (Some(a), Some(b)) if a < b => &u[a + 1..b],
        _ => u,
    };
    let scheme_end = u.find(':')?;
    if !matches!(u[..scheme_end].to_ascii_lowercase().as_str(), "sip" | "sips") {
        return None;
    }
    let rest = u[scheme_end + 1..].split([';', '?']).next()?;
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((user, hp)) => (user.to_string(), hp),
        None => (String::new(), rest),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => 5060,
        };
        (h.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (hostport.to_string(), 5060),
        }
    };
    Some((user, host.to_ascii_lowercase(), port))
}

mod agent_call;
#[cfg(test)]
mod tests;
