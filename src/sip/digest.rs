//! SIP digest authentication (RFC 2617, RFC 7616, RFC 8760): challenges,
//! parsing of `Authorization` values, and verification against issued nonces.
//!
//! Sans-IO: no clock and no unseeded randomness. Time comes in as `now`
//! ([`Time`]); nonces come from a ChaCha8 RNG seeded by the caller.
//!
//! This module owns the [`NonceStore`], the set of nonces acd has handed out
//! in challenges. What always holds:
//! - a request authenticates only against a nonce that is in the store and
//!   younger than its ttl (`now < issued + ttl`);
//! - a nonce is never accepted twice for the same request: with `qop=auth`
//!   each accepted use has a strictly greater nonce count than the last
//!   accepted one; without `qop` a nonce is accepted once;
//! - a wrong digest spends its nonce, as an accepted one does: every guess
//!   needs a fresh challenge, so guesses are as many as challenges (which
//!   the front door rate-limits). A phone whose nonce was spent by someone
//!   else's guess just gets a fresh 401 and retries;
//! - the store holds at most its limit of nonces ([`MAX_OUTSTANDING_NONCES`]
//!   by default); past it the oldest is dropped, and expired nonces are
//!   purged whenever a new one is issued.
//!
//! Only `qop=auth` (or no qop, RFC 2069 style) and the non-session
//! algorithms `MD5` and `SHA-256` are supported.
//!
//! Each 401 carries exactly one challenge, in the algorithm
//! [`challenge_algorithm`] picks. RFC 8760 §2.4 lets a server send one
//! `WWW-Authenticate` per algorithm, but real phones do not all cope with
//! that: baresip 1.0 (Debian's libre) fails the whole REGISTER with
//! "Function not implemented" when any challenge names an algorithm it does
//! not know, even when an MD5 one is beside it; sipsak 0.9.8 and baresip
//! refuse a SHA-256 challenge; pjsua2 2.15 and Linphone 5.1 answer the first
//! challenge they support. One MD5 challenge works with all four.
//!
//! What [`verify`] does not check, and the caller must: that the credentials'
//! `uri` names the request's Request-URI (RFC 7616 §3.4.6), and that the
//! client's algorithm is one the server accepts ([`accepts`]).
//!
//! # Flow
//! ```text
//! REGISTER (no Authorization)   ──▶ 401, challenge_header(realm, store.issue(now),
//!                                        challenge_algorithm(accepted, None), false)
//! REGISTER (Authorization: ..)  ──▶ parse_authorization(value)?, accepts(accepted, resp.algorithm)?
//!                                   verify(&mut store, now, "REGISTER", &resp, realm, password)
//!                                     Ok           → go on
//!                                     Err(Stale)   → 401 with a new nonce and stale=true
//!                                     Err(_)       → 401 with a new nonce (or 403)
//! ```

use crate::engine::Time;
use md5::Md5;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// How many nonces a [`NonceStore`] holds by default before it drops the
/// oldest. Each entry is under 150 bytes, so the bound is about 15 MB; a
/// REGISTER storm of unauthenticated requests cannot grow it further.
pub const MAX_OUTSTANDING_NONCES: usize = 100_000;

/// A digest hash algorithm, as named in the `algorithm` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// `MD5`: what every SIP phone speaks; the default when the parameter is absent.
    #[default]
    Md5,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The parameter value: `"MD5"` or `"SHA-256"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parses an `algorithm` value, ignoring ASCII case.
    fn parse(value: &str) -> Result<Algorithm, DigestError> {
        if value.eq_ignore_ascii_case("MD5") {
            Ok(Algorithm::Md5)
        } else if value.eq_ignore_ascii_case("SHA-256") {
            Ok(Algorithm::Sha256)
        } else {
            Err(DigestError::UnsupportedAlgorithm(value.to_owned()))
        }
    }

    /// Lowercase hex of the hash of `parts` joined by `:`.
    fn hash_hex(self, parts: &[&str]) -> String {
        fn feed<D: Digest>(mut d: D, parts: &[&str]) -> String {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p.as_bytes());
            }
            to_hex(&d.finalize())
        }
        match self {
            Algorithm::Md5 => feed(Md5::new(), parts),
            Algorithm::Sha256 => feed(Sha256::new(), parts),
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// The credentials a client sent: the parsed value of an `Authorization`
/// (or `Proxy-Authorization`) header with the `Digest` scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestResponse {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    /// The `uri` parameter (digest-uri) exactly as sent; it enters the hash.
    pub uri: String,
    /// The `response` parameter: hex of the request digest.
    pub response: String,
    /// `MD5` when the parameter is absent.
    pub algorithm: Algorithm,
    /// Present whenever `qop` is.
    pub cnonce: Option<String>,
    /// The nonce count, parsed from its hex form; present whenever `qop` is.
    /// It enters the hash as 8 lowercase hex digits, as RFC 7616 requires.
    pub nc: Option<u32>,
    /// Only `auth` is accepted.
    pub qop: Option<String>,
    pub opaque: Option<String>,
}

/// Why an `Authorization` value could not be parsed: the peer sent something
/// wrong (answer 400 or a fresh 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("authorization scheme is not Digest")]
    NotDigest,
    #[error("malformed digest parameters at byte {offset}")]
    Syntax { offset: usize },
    #[error("digest parameter {0:?} appears twice")]
    DuplicateParam(String),
    #[error("digest parameter {0} is missing")]
    MissingParam(&'static str),
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("unsupported qop {0:?} (only auth)")]
    UnsupportedQop(String),
    #[error("nonce count {0:?} is not 1 to 8 hex digits")]
    BadNonceCount(String),
}

/// Why [`verify`] refused credentials. All of them are the peer's doing;
/// the answer is a fresh challenge (with `stale=true` for [`AuthFailure::Stale`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("credentials are for another realm")]
    WrongRealm,
    #[error("nonce was not issued here (or was dropped)")]
    UnknownNonce,
    #[error("nonce has expired")]
    Stale,
    #[error("nonce or nonce count was already used")]
    Replay,
    #[error("digest response does not match")]
    BadResponse,
}

/// Parses the value of an `Authorization` header:
/// `Digest username="alice", realm="acd", nonce="…", uri="sip:…", response="…", …`.
///
/// Parameter names are case-insensitive, values may be quoted (with `\`
/// escapes, commas allowed inside) or bare tokens, unknown parameters are
/// ignored. A missing `algorithm` means MD5; an unknown one, `qop` other
/// than `auth`, or `qop` without `cnonce` and `nc` is an error.
pub fn parse_authorization(value: &str) -> Result<DigestResponse, DigestError> {
    let trimmed = value.trim_start();
    let start = value.len() - trimmed.len();
    let scheme_len = trimmed.find(|c: char| c.is_ascii_whitespace()).unwrap_or(trimmed.len());
    if !trimmed[..scheme_len].eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest);
    }
    let params = parse_params(value, start + scheme_len)?;

    let mut seen: HashMap<&str, String> = HashMap::new();
    for (name, val) in params {
        const KNOWN: [&str; 10] =
            ["username", "realm", "nonce", "uri", "response", "algorithm", "cnonce", "nc", "qop", "opaque"];
        let Some(key) = KNOWN.iter().find(|k| **k == name) else {
            continue; // e.g. userhash: not offered, so not used
        };
        if seen.insert(key, val).is_some() {
            return Err(DigestError::DuplicateParam(name));
        }
    }
    let mut take = |k: &'static str| seen.remove(k);
    let mut required = |k: &'static str| take(k).ok_or(DigestError::MissingParam(k));

    let username = required("username")?;
    let realm = required("realm")?;
    let nonce = required("nonce")?;
    let uri = required("uri")?;
    let response = required("response")?;
    let algorithm = match take("algorithm") {
        Some(a) => Algorithm::parse(&a)?,
        None => Algorithm::Md5,
    };
    let cnonce = take("cnonce");
    let nc = match take("nc") {
        Some(nc) => Some(parse_nc(&nc)?),
        None => None,
    };
    let qop = take("qop");
    let opaque = take("opaque");
    if let Some(q) = &qop {
        if !q.eq_ignore_ascii_case("auth") {
            return Err(DigestError::UnsupportedQop(q.clone()));
        }
        if cnonce.is_none() {
            return Err(DigestError::MissingParam("cnonce"));
        }
        if nc.is_none() {
            return Err(DigestError::MissingParam("nc"));
        }
    }
    Ok(DigestResponse { username, realm, nonce, uri, response, algorithm, cnonce, nc, qop, opaque })
}

fn parse_nc(s: &str) -> Result<u32, DigestError> {
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DigestError::BadNonceCount(s.to_owned()));
    }
    u32::from_str_radix(s, 16).map_err(|_| DigestError::BadNonceCount(s.to_owned()))
}

/// Splits `name=value` pairs separated by commas, starting at byte `pos` of
/// `s`. Names come back lowercased; quoted values unescaped.
fn parse_params(s: &str, mut pos: usize) -> Result<Vec<(String, String)>, DigestError> {
    let b = s.as_bytes();
    let skip_ws = |mut p: usize| {
        while p < b.len() && b[p].is_ascii_whitespace() {
            p += 1;
        }
        p
    };
    let is_token_end = |c: u8| c == b'=' || c == b',' || c == b'"' || c.is_ascii_whitespace();
    let mut out = Vec::new();
    loop {
        // Between parameters: whitespace and empty list elements (RFC 7230 #rule).
        while pos < b.len() && (b[pos].is_ascii_whitespace() || b[pos] == b',') {
            pos += 1;
        }
        if pos == b.len() {
            return Ok(out);
        }
        let name_start = pos;
        while pos < b.len() && !is_token_end(b[pos]) {
            pos += 1;
        }
        if pos == name_start {
            return Err(DigestError::Syntax { offset: pos });
        }
        let name = s[name_start..pos].to_ascii_lowercase();
        pos = skip_ws(pos);
        if pos == b.len() || b[pos] != b'=' {
            return Err(DigestError::Syntax { offset: pos });
        }
        pos = skip_ws(pos + 1);
        let value = if pos < b.len() && b[pos] == b'"' {
            let mut v = String::new();
            pos += 1;
            loop {
                // Walk by chars so non-ASCII (a UTF-8 display name in a
                // username, say) survives intact.
                let Some(c) = s[pos..].chars().next() else {
                    return Err(DigestError::Syntax { offset: pos });
                };
                pos += c.len_utf8();
                match c {
                    '"' => break,
                    '\\' => {
                        let Some(e) = s[pos..].chars().next() else {
                            return Err(DigestError::Syntax { offset: pos });
                        };
                        pos += e.len_utf8();
                        v.push(e);
                    }
                    c => v.push(c),
                }
            }
            v
        } else {
            let value_start = pos;
            while pos < b.len() && !is_token_end(b[pos]) {
                pos += 1;
            }
            if pos == value_start {
                return Err(DigestError::Syntax { offset: pos });
            }
            s[value_start..pos].to_owned()
        };
        out.push((name, value));
        pos = skip_ws(pos);
        if pos < b.len() && b[pos] != b',' {
            return Err(DigestError::Syntax { offset: pos });
        }
    }
}

/// The one algorithm a 401 challenges with, given the algorithms the server
/// accepts (`accepted`, in order of preference, as configured) and the
/// request being answered (`authorization`: its `Authorization` value, if it
/// carried one).
///
/// - A request that already carried credentials in an accepted algorithm
///   (a stale or unknown nonce, a replay) is challenged again in that
///   algorithm: the phone has shown it speaks it, and a phone whose stored
///   secret is an MD5 HA1 (Linphone keeps only that after its first
///   registration) cannot switch to SHA-256 on its own.
/// - Otherwise the first accepted algorithm. The default list puts MD5 first
///   because that is what every phone measured here answers (see the module
///   doc); listing SHA-256 first opts in to it for phones that support it.
///
/// `accepted` is never empty in a validated config; if it is, MD5.
pub fn challenge_algorithm(accepted: &[Algorithm], authorization: Option<&str>) -> Algorithm {
    let answered = authorization.and_then(|a| parse_authorization(a).ok()).map(|r| r.algorithm);
    match answered {
        Some(alg) if accepts(accepted, alg) => alg,
        _ => accepted.first().copied().unwrap_or_default(),
    }
}

/// Whether credentials computed with `algorithm` may authenticate: only the
/// accepted (configured) algorithms do, whichever one the challenge named,
/// so a config that lists only SHA-256 cannot be answered in MD5.
pub fn accepts(accepted: &[Algorithm], algorithm: Algorithm) -> bool {
    accepted.contains(&algorithm)
}

impl From<crate::config::DigestAlgorithm> for Algorithm {
    fn from(a: crate::config::DigestAlgorithm) -> Algorithm {
        match a {
            crate::config::DigestAlgorithm::Md5 => Algorithm::Md5,
            crate::config::DigestAlgorithm::Sha256 => Algorithm::Sha256,
        }
    }
}

/// Builds a `WWW-Authenticate` (or `Proxy-Authenticate`) value:
/// `Digest realm="acd", nonce="…", algorithm=MD5, qop="auth"`, with
/// `, stale=true` appended when the client's nonce had expired.
pub fn challenge_header(realm: &str, nonce: &str, algorithm: Algorithm, stale: bool) -> String {
    let mut h = format!(
        "Digest realm=\"{}\", nonce=\"{}\", algorithm={}, qop=\"auth\"",
        quote_escape(realm),
        quote_escape(nonce),
        algorithm.as_str()
    );
    if stale {
        h.push_str(", stale=true");
    }
    h
}

fn quote_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The request digest the client should have sent, in lowercase hex:
/// `H(HA1:nonce:nc:cnonce:qop:HA2)` with qop, `H(HA1:nonce:HA2)` without,
/// where `HA1 = H(username:realm:password)` and `HA2 = H(method:uri)`.
/// The nonce count enters as 8 lowercase hex digits.
pub fn expected_response(resp: &DigestResponse, method: &str, password: &str) -> String {
    let alg = resp.algorithm;
    let ha1 = alg.hash_hex(&[&resp.username, &resp.realm, password]);
    let ha2 = alg.hash_hex(&[method, &resp.uri]);
    match (&resp.qop, resp.nc, &resp.cnonce) {
        (Some(qop), Some(nc), Some(cnonce)) => {
            let nc = format!("{nc:08x}");
            alg.hash_hex(&[&ha1, &resp.nonce, &nc, cnonce, qop, &ha2])
        }
        _ => alg.hash_hex(&[&ha1, &resp.nonce, &ha2]),
    }
}

/// Checks `resp` for a request with `method` against the user's `password`,
/// in this order: realm, nonce known, nonce not expired, nonce (count) not
/// used, digest. A wrong digest spends the nonce.
pub fn verify(
    store: &mut NonceStore,
    now: Time,
    method: &str,
    resp: &DigestResponse,
    realm: &str,
    password: &str,
) -> Result<(), AuthFailure> {
    verify_user(store, now, method, resp, realm, Some(password))
}

/// [`verify`] for a user who may have no password (unknown, or none set):
/// the same checks in the same order, so such a user fails exactly like a
/// wrong password, after the same nonce checks (nothing tells an attacker
/// which user names exist). A wrong response spends the nonce, as a right
/// one does: each guess costs a fresh challenge.
pub fn verify_user(
    store: &mut NonceStore,
    now: Time,
    method: &str,
    resp: &DigestResponse,
    realm: &str,
    password: Option<&str>,
) -> Result<(), AuthFailure> {
    if resp.realm != realm {
        return Err(AuthFailure::WrongRealm);
    }
    let next_use = store.check(now, &resp.nonce, resp.qop.as_ref().and(resp.nc))?;
    // An impossible password still costs the hash, so timing does not tell
    // unknown users apart either.
    let expected = expected_response(resp, method, password.unwrap_or(""));
    if password.is_none() || !eq_hex_constant_time(&expected, &resp.response) {
        store.commit(&resp.nonce, NonceUse::Spent);
        return Err(AuthFailure::BadResponse);
    }
    store.commit(&resp.nonce, next_use);
    Ok(())
}

/// Compares hex digests ignoring ASCII case, in time independent of where
/// they first differ.
fn eq_hex_constant_time(expected: &str, got: &str) -> bool {
    if expected.len() != got.len() {
        return false;
    }
    expected.bytes().zip(got.bytes()).fold(0u8, |acc, (a, b)| acc | (a.to_ascii_lowercase() ^ b.to_ascii_lowercase()))
        == 0
}

/// What a nonce has been used for so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonceUse {
    /// Issued, not yet accepted.
    Fresh,
    /// Accepted with `qop=auth`; the highest nonce count accepted.
    Counted(u32),
    /// Accepted without qop: single-use, now spent.
    Spent,
}

#[derive(Debug)]
struct NonceEntry {
    issued: Time,
    used: NonceUse,
}

/// The nonces issued in challenges, their age and their use (see the module
/// doc for what always holds).
///
/// A nonce is 48 lowercase hex digits: the issue time in milliseconds (16)
/// and 128 random bits (32). The store is the authority; the embedded time
/// only lets a nonce that has already been purged still read as
/// [`AuthFailure::Stale`] rather than unknown, so the phone retries with the
/// new nonce instead of asking its user for a password.
#[derive(Debug)]
pub struct NonceStore {
    ttl: Duration,
    limit: usize,
    rng: ChaCha8Rng,
    entries: HashMap<String, NonceEntry>,
    /// Every nonce issued and not yet dropped, oldest first. Entries can be
    /// here after their nonce left `entries`; `order.len() >= entries.len()`,
    /// and `order.len() <= limit` bounds both.
    order: VecDeque<(Time, String)>,
}

impl NonceStore {
    /// A store whose nonces live for `ttl`, drawn from a ChaCha8 RNG seeded
    /// with `seed`, holding at most [`MAX_OUTSTANDING_NONCES`].
    pub fn new(ttl: Duration, seed: u64) -> NonceStore {
        NonceStore::with_limit(ttl, seed, MAX_OUTSTANDING_NONCES)
    }

    /// As [`NonceStore::new`], holding at most `limit` nonces (at least 1).
    pub fn with_limit(ttl: Duration, seed: u64, limit: usize) -> NonceStore {
        NonceStore {
            ttl,
            limit: limit.max(1),
            rng: ChaCha8Rng::seed_from_u64(seed),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// How long a nonce is accepted after it is issued.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Nonces currently held (issued, not expired-and-purged, not dropped).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Issues a new nonce at `now`, first purging expired ones and, at the
    /// limit, dropping the oldest.
    pub fn issue(&mut self, now: Time) -> String {
        self.purge(now);
        while self.order.len() >= self.limit {
            self.drop_oldest();
        }
        let nonce = loop {
            let n = format!("{:016x}{:032x}", now.as_millis(), self.rng.random::<u128>());
            if !self.entries.contains_key(&n) {
                break n;
            }
        };
        self.entries.insert(nonce.clone(), NonceEntry { issued: now, used: NonceUse::Fresh });
        self.order.push_back((now, nonce.clone()));
        nonce
    }

    /// Forgets every nonce that has expired at `now`.
    pub fn purge(&mut self, now: Time) {
        // `order` is by issue time as long as `now` never goes backwards;
        // if it did, purging stops early and the entry goes at the limit.
        while let Some((issued, _)) = self.order.front() {
            if !self.expired(*issued, now) {
                break;
            }
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some((issued, nonce)) = self.order.pop_front() {
            if self.entries.get(&nonce).is_some_and(|e| e.issued == issued) {
                self.entries.remove(&nonce);
            }
        }
    }

    fn expired(&self, issued: Time, now: Time) -> bool {
        now >= issued + self.ttl
    }

    /// Whether `nonce` may be used at `now` with nonce count `nc` (`None`:
    /// no qop). Returns the state it moves to if the digest also matches.
    fn check(&self, now: Time, nonce: &str, nc: Option<u32>) -> Result<NonceUse, AuthFailure> {
        let Some(entry) = self.entries.get(nonce) else {
            return Err(match embedded_issue_time(nonce) {
                Some(issued) if self.expired(issued, now) => AuthFailure::Stale,
                _ => AuthFailure::UnknownNonce,
            });
        };
        if self.expired(entry.issued, now) {
            return Err(AuthFailure::Stale);
        }
        match (entry.used, nc) {
            (NonceUse::Spent, _) => Err(AuthFailure::Replay),
            (NonceUse::Fresh, None) => Ok(NonceUse::Spent),
            (NonceUse::Counted(_), None) => Err(AuthFailure::Replay),
            (NonceUse::Fresh, Some(nc)) if nc > 0 => Ok(NonceUse::Counted(nc)),
            (NonceUse::Counted(last), Some(nc)) if nc > last => Ok(NonceUse::Counted(nc)),
            (_, Some(_)) => Err(AuthFailure::Replay),
        }
    }

    fn commit(&mut self, nonce: &str, used: NonceUse) {
        if let Some(e) = self.entries.get_mut(nonce) {
            e.used = used;
        }
    }

    /// Puts a nonce not made by [`NonceStore::issue`] in the store, so the
    /// RFC examples can be checked against their own nonces.
    #[cfg(test)]
    fn insert_for_test(&mut self, nonce: &str, issued: Time) {
        self.entries.insert(nonce.to_owned(), NonceEntry { issued, used: NonceUse::Fresh });
        self.order.push_back((issued, nonce.to_owned()));
    }
}

/// The issue time embedded in a nonce of our own format, if it is one.
fn embedded_issue_time(nonce: &str) -> Option<Time> {
    if nonce.len() != 48 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(&nonce[..16], 16).ok().map(Time::from_millis)
}

#[cfg(test)]
mod tests;
