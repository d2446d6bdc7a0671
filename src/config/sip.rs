//! The SIP side of the config: listeners, registrar and digest settings,
//! trunks (who may send calls), dialled numbers (which queue a call joins)
//! and the agents' feature codes.
//!
//! Every default is chosen so that the shipped example runs on loopback with
//! no other set-up, and so that nothing is reachable from outside unless an
//! admin lists it: no trunk means no caller can reach a queue.

use super::raw::{RawNumber, RawSip, RawTrunk};
use super::validate::{check_range, skill_levels, Ctx};
use super::ConfigError;
use ipnet::IpNet;
use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};

/// Resolved `[sip]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipSettings {
    /// UDP listeners (default `127.0.0.1:5060`: loopback only until an admin
    /// opens it up).
    pub listen_udp: Vec<SocketAddr>,
    /// TCP listeners (default: the same addresses as UDP, since RFC 3261
    /// requires both and large INVITEs fall back to TCP).
    pub listen_tcp: Vec<SocketAddr>,
    /// Digest realm for agents and trunks (default `"acd"`).
    pub realm: String,
    /// Digest algorithms accepted, in order of preference (default MD5 then
    /// SHA-256). Each 401 carries one challenge: in the first listed, or in
    /// the one the phone already answered in if it is listed (a stale
    /// nonce). Credentials in any listed algorithm authenticate; others get a
    /// fresh challenge. MD5 leads by default because one MD5 challenge is what
    /// every phone measured registers with (baresip 1.0 fails a 401 that also
    /// names SHA-256; sipsak and baresip refuse SHA-256). List "SHA-256"
    /// first to challenge with it (pjsua2, Linphone), or only "SHA-256" to
    /// require it.
    pub digest_algorithms: Vec<DigestAlgorithm>,
    /// How long a nonce may be used (default 300 s). After that the phone
    /// gets a fresh challenge with `stale=true` and retries on its own.
    pub nonce_ttl_secs: u32,
    /// Shortest registration accepted (default 60 s; shorter gets 423 with
    /// Min-Expires, RFC 3261 §10.3).
    pub register_min_expires: u32,
    /// Longest registration granted (default 3600 s; longer is shortened).
    pub register_max_expires: u32,
    /// Granted when the phone asks for none (default 600 s).
    pub register_default_expires: u32,
    /// Phones one agent may register at once (default 5).
    pub max_contacts_per_agent: usize,
    /// Seconds between OPTIONS pings to each registered phone (default 30;
    /// 0 = off). A phone that does not answer in `options_timeout_secs` is
    /// treated as unreachable and is not rung until it registers again.
    pub options_interval_secs: u32,
    /// Default 5 s: a phone on a LAN answers OPTIONS in milliseconds.
    pub options_timeout_secs: u32,
    /// Shortest session-timer interval (RFC 4028) accepted from a trunk;
    /// a shorter `Session-Expires` gets 422 with this `Min-SE`. Default 90
    /// s, the RFC's floor (and the least an admin may set): the shorter
    /// the interval, the sooner a trunk that died without BYE is noticed.
    pub session_min_se_secs: u32,
    /// The interval acd asks for when a trunk supports session timers but
    /// offered none (default 1800 s, the RFC's recommendation; at least
    /// `session_min_se_secs`).
    pub session_interval_secs: u32,
    /// Calls in acd at once (default 500). The next caller gets 503 with
    /// Retry-After instead of a slow answer for everyone.
    pub max_calls: u32,
    /// Retry-After of that 503, and of a queue's 503 when full, out of RTP
    /// ports or file descriptors, or shutting down (default 30 s): shortages
    /// that last until calls end.
    pub retry_after_secs: u32,
    /// Retry-After of a 503 for a moment's overload (default 2 s): the daemon
    /// loop is behind (`overload_queue_delay_ms`), its inbound queue is full,
    /// or one source has too many unACKed INVITEs. Many proxies (Kamailio
    /// dispatcher, Asterisk) take a destination out of rotation for the whole
    /// Retry-After, so a burst that clears in a second should not cost 30 s.
    pub retry_after_transient_secs: u32,
    /// Header an upstream IVR may set to give the call a priority (default
    /// `X-Priority`); read only from trunks with `trust_headers`.
    pub priority_header: String,
    /// Header an upstream IVR may set to require skills, as
    /// `lang.fi:3, billing` (level 1 when left out; default `X-Skills`).
    pub skills_header: String,
    pub feature_codes: FeatureCodes,
    /// Failed digest attempts one source address or one user name may make
    /// within `auth_failure_window_secs` (default 5 in 10 s) before every
    /// further attempt gets 403 for `auth_lockout_secs` (default 60 s), even
    /// with the right password: a password is not guessable at 5 tries a
    /// minute, and a phone with a stale password stops hammering.
    pub auth_max_failures: u32,
    pub auth_failure_window_secs: u32,
    pub auth_lockout_secs: u32,
    /// New calls one source address may have answered and not yet ACKed
    /// (default 100). A real trunk ACKs within a round trip; an address that
    /// sends INVITEs and never ACKs would otherwise hold an RTP port pair per
    /// INVITE until Timer H (32 s). Past it, 503 + Retry-After.
    pub max_unacked_invites_per_source: u32,
    /// A new INVITE that waited longer than this for the daemon loop is
    /// answered 503 + Retry-After (default 100 ms; healthy setup p99 at
    /// 1,500 calls/s on 2 cores was 15 ms): the loop is behind, and taking
    /// the call would make it fall further behind for every call.
    pub overload_queue_delay_ms: u32,
    /// File descriptors kept free below RLIMIT_NOFILE (default 256): new
    /// calls get 503 before acd runs out of sockets for RTP, TCP and files.
    pub fd_headroom: u32,
    /// Run rsipstack's transport and transaction layer (socket reads, SIP
    /// parsing, transaction matching, retransmission timers) on a thread of
    /// its own, so the second core takes that work off the daemon loop.
    /// Default false: measured on 2 cores with acd-load (1 s calls), it cost
    /// more CPU per call (0.072 against 0.057 s per 100 calls/s at 1,500/s)
    /// and refused more at 2,000/s (520 against 63 503s): the cross-thread
    /// hand-offs cost more than the parsing it moves. Needs a restart.
    pub io_thread: bool,
    /// Worker threads of the tokio runtime that runs the SIP stack's tasks
    /// (transport receive loops, transaction and dialog tasks, timers) and
    /// the shell's other I/O; the daemon loop (engine and call control)
    /// stays one task on the main thread either way. 0 (default): one
    /// current-thread runtime for everything, as before. Needs a restart.
    pub workers: u32,
}

/// Numbers an agent dials from a registered phone to change state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureCodes {
    /// Default `*41`.
    pub login: String,
    /// Default `*42`.
    pub logout: String,
    /// Default `*43`.
    pub pause: String,
    /// Default `*44`.
    pub ready: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    Md5,
    Sha256,
}

/// A source allowed to send calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkConfig {
    pub name: String,
    /// Addresses or networks (`10.0.0.1`, `192.0.2.0/24`, `::1`).
    pub sources: Vec<IpNet>,
    /// When set, INVITEs from this trunk must also pass digest auth.
    pub credentials: Option<(String, String)>,
    /// Read the priority and skills headers from this trunk's INVITEs
    /// (default false: a carrier's headers are not ours to trust).
    pub trust_headers: bool,
}

impl TrunkConfig {
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.sources.iter().any(|net| net.contains(&ip))
    }
}

/// A dialled number (Request-URI user) and the queue it reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRoute {
    /// Exact number, or a prefix ending in `*`.
    pub number: String,
    pub queue: String,
    /// Added to the caller's priority (default 0), e.g. a VIP line.
    pub priority: i32,
    /// Extra skills a call on this number needs (e.g. a Finnish line).
    pub skills: Vec<(String, u8)>,
}

impl NumberRoute {
    fn matches(&self, dialled: &str) -> Option<usize> {
        match self.number.strip_suffix('*') {
            Some(prefix) => dialled.starts_with(prefix).then_some(prefix.len()),
            None => (dialled == self.number).then_some(usize::MAX),
        }
    }
}

/// The route for a dialled number: an exact match first, else the longest
/// matching prefix.
pub fn route_for<'a>(routes: &'a [NumberRoute], dialled: &str) -> Option<&'a NumberRoute> {
    routes.iter().filter_map(|r| r.matches(dialled).map(|len| (len, r))).max_by_key(|(len, _)| *len).map(|(_, r)| r)
}

impl Default for SipSettings {
    fn default() -> Self {
        let addr: SocketAddr = "127.0.0.1:5060".parse().expect("literal address");
        SipSettings {
            listen_udp: vec![addr],
            listen_tcp: vec![addr],
            realm: "acd".into(),
            digest_algorithms: vec![DigestAlgorithm::Md5, DigestAlgorithm::Sha256],
            nonce_ttl_secs: 300,
            register_min_expires: 60,
            register_max_expires: 3600,
            register_default_expires: 600,
            max_contacts_per_agent: 5,
            options_interval_secs: 30,
            options_timeout_secs: 5,
            session_min_se_secs: 90,
            session_interval_secs: 1800,
            max_calls: 500,
            retry_after_secs: 30,
            retry_after_transient_secs: 2,
            priority_header: "X-Priority".into(),
            skills_header: "X-Skills".into(),
            feature_codes: FeatureCodes {
                login: "*41".into(),
                logout: "*42".into(),
                pause: "*43".into(),
                ready: "*44".into(),
            },
            auth_max_failures: 5,
            auth_failure_window_secs: 10,
            auth_lockout_secs: 60,
            max_unacked_invites_per_source: 100,
            overload_queue_delay_ms: 100,
            fd_headroom: 256,
            io_thread: false,
            workers: 0,
        }
    }
}

fn addresses(cx: &Ctx, key: &str, list: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut out = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        let a: SocketAddr = s.parse().map_err(|_| {
            cx.err(format!("{key}[{i}]"), format!("\"{s}\" is not an IP:port address, e.g. 127.0.0.1:5060"))
        })?;
        out.push(a);
    }
    Ok(out)
}

pub(super) fn sip_settings(cx: &Ctx, raw: Option<&RawSip>) -> Result<SipSettings, ConfigError> {
    let d = SipSettings::default();
    let Some(r) = raw else { return Ok(d) };
    let listen_udp = match &r.listen_udp {
        Some(l) => addresses(cx, "sip.listen_udp", l)?,
        None => d.listen_udp.clone(),
    };
    let listen_tcp = match &r.listen_tcp {
        Some(l) => addresses(cx, "sip.listen_tcp", l)?,
        None => listen_udp.clone(),
    };
    if listen_udp.is_empty() && listen_tcp.is_empty() {
        return Err(cx.err("sip.listen_udp", "acd needs at least one UDP or TCP listener"));
    }
    let realm = r.realm.clone().unwrap_or(d.realm.clone());
    if realm.is_empty() || realm.contains('"') {
        return Err(cx.err("sip.realm", "the realm must be non-empty and contain no '\"'"));
    }
    let digest_algorithms = match &r.digest_algorithms {
        None => d.digest_algorithms.clone(),
        Some(list) => {
            let mut out = Vec::new();
            for (i, a) in list.iter().enumerate() {
                let alg = match a.to_ascii_uppercase().as_str() {
                    "MD5" => DigestAlgorithm::Md5,
                    "SHA-256" => DigestAlgorithm::Sha256,
                    _ => {
                        return Err(cx.err(
                            format!("sip.digest_algorithms[{i}]"),
                            format!("unknown algorithm \"{a}\"; expected \"SHA-256\" or \"MD5\""),
                        ))
                    }
                };
                if out.contains(&alg) {
                    return Err(cx.err(format!("sip.digest_algorithms[{i}]"), format!("\"{a}\" is listed twice")));
                }
                out.push(alg);
            }
            if out.is_empty() {
                return Err(cx.err("sip.digest_algorithms", "list at least one of \"SHA-256\", \"MD5\""));
            }
            out
        }
    };
    let nonce_ttl_secs = r.nonce_ttl_secs.unwrap_or(d.nonce_ttl_secs);
    check_range(cx, "sip.nonce_ttl_secs", nonce_ttl_secs, 10, 86_400)?;
    let register_min_expires = r.register_min_expires.unwrap_or(d.register_min_expires);
    check_range(cx, "sip.register_min_expires", register_min_expires, 1, 86_400)?;
    let register_max_expires = r.register_max_expires.unwrap_or(d.register_max_expires);
    if register_max_expires < register_min_expires {
        return Err(cx.err(
            "sip.register_max_expires",
            format!("{register_max_expires} is below register_min_expires ({register_min_expires})"),
        ));
    }
    let register_default_expires = r
        .register_default_expires
        .unwrap_or(d.register_default_expires)
        .clamp(register_min_expires, register_max_expires);
    let max_contacts_per_agent = r.max_contacts_per_agent.unwrap_or(d.max_contacts_per_agent as u32);
    check_range(cx, "sip.max_contacts_per_agent", max_contacts_per_agent, 1, 100)?;
    let options_interval_secs = r.options_interval_secs.unwrap_or(d.options_interval_secs);
    check_range(cx, "sip.options_interval_secs", options_interval_secs, 0, 3600)?;
    let options_timeout_secs = r.options_timeout_secs.unwrap_or(d.options_timeout_secs);
    check_range(cx, "sip.options_timeout_secs", options_timeout_secs, 1, 32)?;
    let session_min_se_secs = r.session_min_se_secs.unwrap_or(d.session_min_se_secs);
    check_range(cx, "sip.session_min_se_secs", session_min_se_secs, 90, 86_400)?;
    let session_interval_secs = r.session_interval_secs.unwrap_or(d.session_interval_secs.max(session_min_se_secs));
    check_range(cx, "sip.session_interval_secs", session_interval_secs, 90, 86_400)?;
    if session_interval_secs < session_min_se_secs {
        return Err(cx.err(
            "sip.session_interval_secs",
            format!("{session_interval_secs} is below session_min_se_secs ({session_min_se_secs})"),
        ));
    }
    let max_calls = r.max_calls.unwrap_or(d.max_calls);
    check_range(cx, "sip.max_calls", max_calls, 1, 1_000_000)?;
    let retry_after_secs = r.retry_after_secs.unwrap_or(d.retry_after_secs);
    check_range(cx, "sip.retry_after_secs", retry_after_secs, 1, 3600)?;
    let retry_after_transient_secs = r.retry_after_transient_secs.unwrap_or(d.retry_after_transient_secs);
    check_range(cx, "sip.retry_after_transient_secs", retry_after_transient_secs, 1, 3600)?;
    let header = |key: &str, v: &Option<String>, default: &str| -> Result<String, ConfigError> {
        let h = v.clone().unwrap_or_else(|| default.to_string());
        if h.is_empty() || !h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(cx.err(key, format!("\"{h}\" is not a header name (letters, digits and '-')")));
        }
        Ok(h)
    };
    let priority_header = header("sip.priority_header", &r.priority_header, &d.priority_header)?;
    let skills_header = header("sip.skills_header", &r.skills_header, &d.skills_header)?;
    let fc = r.feature_codes.as_ref();
    let dfc = &d.feature_codes;
    let feature_codes = FeatureCodes {
        login: fc.and_then(|f| f.login.clone()).unwrap_or(dfc.login.clone()),
        logout: fc.and_then(|f| f.logout.clone()).unwrap_or(dfc.logout.clone()),
        pause: fc.and_then(|f| f.pause.clone()).unwrap_or(dfc.pause.clone()),
        ready: fc.and_then(|f| f.ready.clone()).unwrap_or(dfc.ready.clone()),
    };
    let auth_max_failures = r.auth_max_failures.unwrap_or(d.auth_max_failures);
    check_range(cx, "sip.auth_max_failures", auth_max_failures, 1, 1000)?;
    let auth_failure_window_secs = r.auth_failure_window_secs.unwrap_or(d.auth_failure_window_secs);
    check_range(cx, "sip.auth_failure_window_secs", auth_failure_window_secs, 1, 3600)?;
    let auth_lockout_secs = r.auth_lockout_secs.unwrap_or(d.auth_lockout_secs);
    check_range(cx, "sip.auth_lockout_secs", auth_lockout_secs, 1, 86_400)?;
    let max_unacked_invites_per_source = r.max_unacked_invites_per_source.unwrap_or(d.max_unacked_invites_per_source);
    check_range(cx, "sip.max_unacked_invites_per_source", max_unacked_invites_per_source, 1, 1_000_000)?;
    let overload_queue_delay_ms = r.overload_queue_delay_ms.unwrap_or(d.overload_queue_delay_ms);
    check_range(cx, "sip.overload_queue_delay_ms", overload_queue_delay_ms, 10, 10_000)?;
    let fd_headroom = r.fd_headroom.unwrap_or(d.fd_headroom);
    check_range(cx, "sip.fd_headroom", fd_headroom, 16, 100_000)?;
    let workers = r.workers.unwrap_or(d.workers);
    check_range(cx, "sip.workers", workers, 0, 64)?;
    let mut seen = HashSet::new();
    for (k, v) in [
        ("login", &feature_codes.login),
        ("logout", &feature_codes.logout),
        ("pause", &feature_codes.pause),
        ("ready", &feature_codes.ready),
    ] {
        if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '@' || c == ':') {
            return Err(cx.err(format!("sip.feature_codes.{k}"), format!("\"{v}\" is not a dialable code")));
        }
        if !seen.insert(v.clone()) {
            return Err(cx.err(format!("sip.feature_codes.{k}"), format!("\"{v}\" is used for two feature codes")));
        }
    }
    Ok(SipSettings {
        listen_udp,
        listen_tcp,
        realm,
        digest_algorithms,
        nonce_ttl_secs,
        register_min_expires,
        register_max_expires,
        register_default_expires,
        max_contacts_per_agent: max_contacts_per_agent as usize,
        options_interval_secs,
        options_timeout_secs,
        session_min_se_secs,
        session_interval_secs,
        max_calls,
        retry_after_secs,
        retry_after_transient_secs,
        priority_header,
        skills_header,
        feature_codes,
        auth_max_failures,
        auth_failure_window_secs,
        auth_lockout_secs,
        max_unacked_invites_per_source,
        overload_queue_delay_ms,
        fd_headroom,
        io_thread: r.io_thread.unwrap_or(d.io_thread),
        workers,
    })
}

pub(super) fn trunks(cx: &Ctx, raw: &[RawTrunk]) -> Result<Vec<TrunkConfig>, ConfigError> {
    let mut out: Vec<TrunkConfig> = Vec::with_capacity(raw.len());
    for (i, t) in raw.iter().enumerate() {
        let key = format!("trunk[{}]", if t.name.trim().is_empty() { format!("#{}", i + 1) } else { t.name.clone() });
        if t.name.trim().is_empty() {
            return Err(cx.err(format!("{key}.name"), "every trunk needs a name"));
        }
        if out.iter().any(|o| o.name == t.name) {
            return Err(cx.err(format!("{key}.name"), format!("duplicate trunk \"{}\"", t.name)));
        }
        if t.sources.is_empty() {
            return Err(cx.err(format!("{key}.sources"), "list the addresses or networks calls come from"));
        }
        let mut sources = Vec::new();
        for (j, s) in t.sources.iter().enumerate() {
            let net = s.parse::<IpNet>().or_else(|_| s.parse::<IpAddr>().map(IpNet::from)).map_err(|_| {
                cx.err(format!("{key}.sources[{j}]"), format!("\"{s}\" is not an IP address or network (192.0.2.0/24)"))
            })?;
            sources.push(net);
        }
        let credentials = match (&t.username, &t.password) {
            (None, None) => None,
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Some((u.clone(), p.clone())),
            _ => {
                return Err(cx.err(
                    format!("{key}.password"),
                    "digest for a trunk needs both username and password (or neither)",
                ))
            }
        };
        out.push(TrunkConfig {
            name: t.name.clone(),
            sources,
            credentials,
            trust_headers: t.trust_headers.unwrap_or(false),
        });
    }
    Ok(out)
}

pub(super) fn numbers(
    cx: &Ctx,
    raw: &[RawNumber],
    queues: &[super::QueueConfig],
    declared: &BTreeSet<&str>,
) -> Result<Vec<NumberRoute>, ConfigError> {
    let mut out: Vec<NumberRoute> = Vec::with_capacity(raw.len());
    for (i, n) in raw.iter().enumerate() {
        let key = format!("number[{}]", if n.number.is_empty() { format!("#{}", i + 1) } else { n.number.clone() });
        let body = n.number.strip_suffix('*').unwrap_or(&n.number);
        if body.is_empty() || body.contains(|c: char| c == '*' || c == '@' || c.is_whitespace()) {
            return Err(
                cx.err(format!("{key}.number"), format!("\"{}\" is not a number or a prefix ending in '*'", n.number))
            );
        }
        if out.iter().any(|o| o.number == n.number) {
            return Err(cx.err(format!("{key}.number"), format!("duplicate number \"{}\"", n.number)));
        }
        if !queues.iter().any(|q| q.name == n.queue) {
            let names: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
            return Err(cx.err(
                format!("{key}.queue"),
                format!("no queue named \"{}\"; queues are: {}", n.queue, names.join(", ")),
            ));
        }
        let priority = n.priority.unwrap_or(0);
        if !(-100..=100).contains(&priority) {
            return Err(cx.err(format!("{key}.priority"), format!("{priority} is out of range -100..=100")));
        }
        let skills = skill_levels(cx, &format!("{key}.skills"), n.skills.as_ref(), declared, 1)?;
        out.push(NumberRoute { number: n.number.clone(), queue: n.queue.clone(), priority, skills });
    }
    Ok(out)
}

/// Parses an `X-Skills` value (`lang.fi:3, billing`) into `(skill, level)`;
/// malformed items are skipped (the header is advisory, the call still
/// reaches its queue).
pub fn parse_skills_header(value: &str) -> Vec<(String, u8)> {
    value
        .split(',')
        .filter_map(|item| {
            let item = item.trim();
            if item.is_empty() {
                return None;
            }
            let (name, level) = match item.split_once(':') {
                Some((n, l)) => (n.trim(), l.trim().parse::<u8>().ok()?),
                None => (item, 1),
            };
            (!name.is_empty() && (1..=10).contains(&level)).then(|| (name.to_string(), level))
        })
        .collect()
}
