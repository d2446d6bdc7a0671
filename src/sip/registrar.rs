//! The agent registrar (RFC 3261 §10.3): which contacts each agent's phones
//! have registered, and until when.
//!
//! Sans-IO: the caller has parsed and authenticated the REGISTER; this
//! module decides what the bindings become and what to answer. Time comes in
//! as `now` ([`Time`]); expiry is a timer the caller drives:
//! ```text
//! registrar.register(now, user, contacts, expires, call_id, cseq, source, transport)
//!     Ok(outcome)  → 200 OK listing outcome.bindings; agent registered/unregistered on the flags
//!     Err(e)       → e.status_code() (423 carries Min-Expires)
//! sleep_until(registrar.poll_timeout());
//! for user in registrar.handle_timeout(now) { /* agent is unregistered */ }
//! ```
//!
//! What always holds:
//! - a user is in the store iff it has at least one binding, and
//!   `len()` counts bindings; every binding has exactly one entry in the
//!   expiry index, so [`Registrar::handle_timeout`] touches only what is due;
//! - a user has at most `max_contacts` bindings, each granted between
//!   `min_expires` and `max_expires` seconds when it was last refreshed;
//! - a request that fails changes nothing;
//! - every transition of a user between "no bindings" and "some bindings" is
//!   reported exactly once: by the `became_*` flags of
//!   [`Registrar::register`], by [`Registrar::remove_contact`], or by
//!   [`Registrar::handle_timeout`]. A binding is gone at its `expires_at`
//!   (`expires_at <= now`); `register` and `remove_contact` drop such
//!   bindings of their user first, so they never count or list them.
//!
//! Contacts are told apart by their URI as sent, compared byte for byte:
//! phones resend their Contact unchanged on refresh, and the full URI
//! equivalence of RFC 3261 §19.1.4 is not implemented.

use crate::engine::Time;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

/// Limits on registrations. Config validation ensures
/// `min_expires <= default_expires <= max_expires` and `max_contacts >= 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarSettings {
    /// Shortest interval granted; shorter nonzero requests get 423 with
    /// Min-Expires. Default 60 s: keeps refresh traffic from a badly set
    /// phone bounded while still catching a vanished phone within a minute.
    pub min_expires: u32,
    /// Longest interval granted; longer requests are cut to it. Default
    /// 3600 s, the RFC 3261 §10.2.1.1 default.
    pub max_expires: u32,
    /// Interval when neither the contact nor the request says. Default
    /// 3600 s (RFC 3261 §10.3 step 7).
    pub default_expires: u32,
    /// Most bindings per agent. Default 10: a desk phone, a softphone and a
    /// mobile app with room to spare, but not unbounded.
    pub max_contacts: usize,
}

impl Default for RegistrarSettings {
    fn default() -> Self {
        RegistrarSettings { min_expires: 60, max_expires: 3600, default_expires: 3600, max_contacts: 10 }
    }
}

/// The transport a REGISTER came in over, which is how requests to the
/// binding go back out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One registered contact of one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI as sent.
    pub contact: String,
    /// The binding is gone at this instant.
    pub expires_at: Time,
    /// Where the REGISTER came from (not the Via sent-by).
    pub source: SocketAddr,
    pub transport: Transport,
    /// Call-ID and CSeq of the REGISTER that last refreshed it, to reject
    /// reordered requests.
    pub call_id: String,
    pub cseq: u32,
}

/// One Contact of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactReq {
    /// The Contact URI, without angle brackets or header parameters.
    pub uri: String,
    /// The contact's `expires` parameter, which overrides the Expires header.
    pub expires: Option<u32>,
}

/// The Contact header(s) of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactsReq {
    /// `Contact: *`: remove all bindings (only with `Expires: 0`).
    Star,
    /// The contacts listed; empty when there was no Contact header (a query).
    List(Vec<ContactReq>),
}

/// A successful REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterOutcome {
    /// Every binding the user now has, most recently registered first, with
    /// seconds left (rounded up): the Contact list of the 200 OK.
    pub bindings: Vec<(String, u32)>,
    /// The user had no bindings and now has some.
    pub became_registered: bool,
    /// The user had bindings and now has none.
    pub became_unregistered: bool,
}

/// Why a REGISTER was refused; all are the peer's doing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("Contact: * requires Expires: 0")]
    StarWithoutZeroExpires,
    #[error("expiry shorter than the minimum of {min_expires} s")]
    IntervalTooBrief { min_expires: u32 },
    #[error("out-of-order REGISTER for {contact}: CSeq {cseq} not above {stored}")]
    OutOfOrder { contact: String, cseq: u32, stored: u32 },
    #[error("more than {max} contacts")]
    TooManyContacts { max: usize },
}

impl RegisterError {
    /// The SIP status to answer with.
    pub fn status_code(&self) -> u16 {
        match self {
            RegisterError::StarWithoutZeroExpires => 400,
            // With a Min-Expires header (RFC 3261 §10.3 step 7).
            RegisterError::IntervalTooBrief { .. } => 423,
            // RFC 3261 §10.3 step 7 only says the request fails; a retry with
            // a fresh CSeq succeeds, which 500 invites.
            RegisterError::OutOfOrder { .. } => 500,
            // As Kamailio and OpenSIPS answer a full contact table.
            RegisterError::TooManyContacts { .. } => 503,
        }
    }
}

/// The registrations of all agents, keyed by user name (see the module doc
/// for the driving contract and what always holds).
#[derive(Debug)]
pub struct Registrar {
    settings: RegistrarSettings,
    /// Each user's bindings, most recently registered first; never empty.
    users: HashMap<String, Vec<Binding>>,
    /// (expires_at, user, contact) of every binding.
    expiry: BTreeSet<(Time, String, String)>,
}

impl Registrar {
    pub fn new(settings: RegistrarSettings) -> Registrar {
        Registrar { settings, users: HashMap::new(), expiry: BTreeSet::new() }
    }

    pub fn settings(&self) -> &RegistrarSettings {
        &self.settings
    }

    /// Applies a REGISTER from `user` (RFC 3261 §10.3 steps 6–8).
    ///
    /// An empty contact list is a query. `*` removes every binding and needs
    /// `Expires: 0`. Each contact's expiry is its own parameter, else the
    /// Expires header, else the default: 0 removes it, a nonzero value
    /// below the minimum fails the whole request, one above the maximum is
    /// cut to it. A binding with the request's Call-ID must have a lower
    /// CSeq than the request's. On any error nothing changes.
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &mut self,
        now: Time,
        user: &str,
        contacts: ContactsReq,
        expires_header: Option<u32>,
        call_id: &str,
        cseq: u32,
        source: SocketAddr,
        transport: Transport,
    ) -> Result<RegisterOutcome, RegisterError> {
        let stored = self.users.get(user);
        let was_registered = stored.is_some();
        let mut bindings: Vec<Binding> =
            stored.map(|v| v.iter().filter(|b| b.expires_at > now).cloned().collect()).unwrap_or_default();
        let in_order = |b: &Binding| {
            if b.call_id == call_id && cseq <= b.cseq {
                Err(RegisterError::OutOfOrder { contact: b.contact.clone(), cseq, stored: b.cseq })
            } else {
                Ok(())
            }
        };

        match contacts {
            ContactsReq::Star => {
                if expires_header != Some(0) {
                    return Err(RegisterError::StarWithoutZeroExpires);
                }
                bindings.iter().try_for_each(in_order)?;
                bindings.clear();
            }
            ContactsReq::List(list) => {
                let s = &self.settings;
                // Check everything against the bindings as they were, then
                // apply in order (a contact listed twice: the last one wins).
                let mut granted = Vec::with_capacity(list.len());
                for c in list {
                    let asked = c.expires.or(expires_header).unwrap_or(s.default_expires);
                    if asked != 0 && asked < s.min_expires {
                        return Err(RegisterError::IntervalTooBrief { min_expires: s.min_expires });
                    }
                    if let Some(b) = bindings.iter().find(|b| b.contact == c.uri) {
                        in_order(b)?;
                    }
                    granted.push((c.uri, asked.min(s.max_expires)));
                }
                for (uri, secs) in granted {
                    bindings.retain(|b| b.contact != uri);
                    if secs > 0 {
                        let binding = Binding {
                            contact: uri,
                            expires_at: now.plus_secs(secs),
                            source,
                            transport,
                            call_id: call_id.to_owned(),
                            cseq,
                        };
                        bindings.insert(0, binding);
                    }
                }
                if bindings.len() > s.max_contacts {
                    return Err(RegisterError::TooManyContacts { max: s.max_contacts });
                }
            }
        }

        let outcome = RegisterOutcome {
            bindings: bindings.iter().map(|b| (b.contact.clone(), secs_left(b.expires_at, now))).collect(),
            became_registered: !was_registered && !bindings.is_empty(),
            became_unregistered: was_registered && bindings.is_empty(),
        };
        self.replace(user, bindings);
        Ok(outcome)
    }

    /// Removes one contact of `user` (say, its phone stopped answering
    /// OPTIONS), along with any of the user's bindings due at `now`.
    /// Returns whether the user thereby became unregistered.
    pub fn remove_contact(&mut self, now: Time, user: &str, contact: &str) -> bool {
        let Some(stored) = self.users.get(user) else {
            return false;
        };
        let kept: Vec<Binding> =
            stored.iter().filter(|b| b.expires_at > now && b.contact != contact).cloned().collect();
        let unregistered = kept.is_empty();
        self.replace(user, kept);
        unregistered
    }

    /// When the next binding expires.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.expiry.first().map(|(t, _, _)| *t)
    }

    /// Removes every binding with `expires_at <= now`; returns the users
    /// whose last binding that was, in order of expiry.
    pub fn handle_timeout(&mut self, now: Time) -> Vec<String> {
        let mut unregistered = Vec::new();
        while let Some((at, _, _)) = self.expiry.first() {
            if *at > now {
                break;
            }
            let (_, user, contact) = self.expiry.pop_first().expect("first exists");
            if let Some(bindings) = self.users.get_mut(&user) {
                bindings.retain(|b| b.contact != contact);
                if bindings.is_empty() {
                    self.users.remove(&user);
                    unregistered.push(user);
                }
            }
        }
        unregistered
    }

    /// The user's bindings, most recently registered first. Bindings due
    /// but not yet removed by [`Registrar::handle_timeout`] are included.
    pub fn contacts(&self, user: &str) -> impl Iterator<Item = &Binding> {
        self.users.get(user).into_iter().flatten()
    }

    /// Whether the user has any binding (as of the last `handle_timeout`).
    pub fn is_registered(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Total bindings across all users.
    pub fn len(&self) -> usize {
        self.expiry.len()
    }

    pub fn is_empty(&self) -> bool {
        self.expiry.is_empty()
    }

    /// Users with at least one binding.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Makes `bindings` the user's bindings, keeping the expiry index in step.
    fn replace(&mut self, user: &str, bindings: Vec<Binding>) {
        if let Some(old) = self.users.remove(user) {
            for b in old {
                self.expiry.remove(&(b.expires_at, user.to_owned(), b.contact));
            }
        }
        if bindings.is_empty() {
            return;
        }
        for b in &bindings {
            self.expiry.insert((b.expires_at, user.to_owned(), b.contact.clone()));
        }
        self.users.insert(user.to_owned(), bindings);
    }
}

/// Whole seconds from `now` to `at`, rounded up.
fn secs_left(at: Time, now: Time) -> u32 {
    let ms = at.as_millis().saturating_sub(now.as_millis());
    u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RegistrarSettings {
        RegistrarSettings { min_expires: 60, max_expires: 3600, default_expires: 600, max_contacts: 3 }
    }

    fn src() -> SocketAddr {
        "192.0.2.10:5060".parse().unwrap()
    }

    fn list(contacts: &[(&str, Option<u32>)]) -> ContactsReq {
        ContactsReq::List(contacts.iter().map(|(u, e)| ContactReq { uri: u.to_string(), expires: *e }).collect())
    }

    /// A REGISTER with one Call-ID per test, like a phone.
    fn reg(
        r: &mut Registrar,
        now: Time,
        user: &str,
        contacts: ContactsReq,
        expires: Option<u32>,
        cseq: u32,
    ) -> Result<RegisterOutcome, RegisterError> {
        r.register(now, user, contacts, expires, "call-1", cseq, src(), Transport::Udp)
    }

    const A: &str = "sip:alice@192.0.2.10:5060";
    const B: &str = "sip:alice@198.51.100.7:5062;transport=tcp";

    #[test]
    fn register_refresh_and_query() {
        let mut r = Registrar::new(settings());
        let t0 = Time::from_secs(1000);
        let out = reg(&mut r, t0, "alice", list(&[(A, None)]), Some(120), 1).unwrap();
        assert_eq!(out.bindings, vec![(A.to_string(), 120)]);
        assert!(out.became_registered && !out.became_unregistered);
        assert!(r.is_registered("alice"));
        assert_eq!(r.poll_timeout(), Some(Time::from_secs(1120)));
        let b = r.contacts("alice").next().unwrap();
        assert_eq!((b.source, b.transport, b.cseq, b.call_id.as_str()), (src(), Transport::Udp, 1, "call-1"));

        // Refresh: no transition, expiry moves.
        let t1 = Time::from_secs(1100);
        let out = reg(&mut r, t1, "alice", list(&[(A, None)]), Some(120), 2).unwrap();
        assert_eq!(out.bindings, vec![(A.to_string(), 120)]);
        assert!(!out.became_registered && !out.became_unregistered);
        assert_eq!(r.len(), 1);
        assert_eq!(r.poll_timeout(), Some(Time::from_secs(1220)));

        // Query (no Contact): lists with the time left, changes nothing.
        let out = reg(&mut r, Time::from_millis(1_150_500), "alice", list(&[]), None, 3).unwrap();
        assert_eq!(out.bindings, vec![(A.to_string(), 70)]);
        assert!(!out.became_registered && !out.became_unregistered);
        assert_eq!(r.len(), 1);

        // A query for an unknown user is fine and empty.
        let out = reg(&mut r, t1, "bob", list(&[]), None, 1).unwrap();
        assert!(out.bindings.is_empty() && !out.became_registered && !out.became_unregistered);
        assert!(!r.is_registered("bob"));
    }

    #[test]
    fn expiry_is_exact() {
        let mut r = Registrar::new(settings());
        let t0 = Time::from_secs(10);
        reg(&mut r, t0, "alice", list(&[(A, None)]), Some(60), 1).unwrap();
        let at = Time::from_secs(70);
        assert_eq!(r.poll_timeout(), Some(at));
        assert!(r.handle_timeout(Time::from_millis(69_999)).is_empty());
        assert!(r.is_registered("alice"));
        assert_eq!(r.handle_timeout(at), vec!["alice".to_string()]);
        assert!(!r.is_registered("alice"));
        assert_eq!(r.len(), 0);
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.contacts("alice").count(), 0);
    }

    #[test]
    fn several_contacts_most_recent_first_and_last_expiry_unregisters() {
        let mut r = Registrar::new(settings());
        reg(&mut r, Time::from_secs(0), "alice", list(&[(A, None)]), Some(100), 1).unwrap();
        let out = r
            .register(Time::from_secs(10), "alice", list(&[(B, None)]), Some(200), "call-2", 1, src(), Transport::Tcp)
            .unwrap();
        assert_eq!(out.bindings, vec![(B.to_string(), 200), (A.to_string(), 90)]);
        assert!(!out.became_registered);
        let order: Vec<&str> = r.contacts("alice").map(|b| b.contact.as_str()).collect();
        assert_eq!(order, vec![B, A]);
        assert_eq!(r.contacts("alice").next().unwrap().transport, Transport::Tcp);
        assert_eq!(r.len(), 2);
        assert_eq!(r.user_count(), 1);

        // A goes at 100 s: alice stays registered.
        assert!(r.handle_timeout(Time::from_secs(100)).is_empty());
        assert_eq!(r.len(), 1);
        assert_eq!(r.poll_timeout(), Some(Time::from_secs(210)));
        assert_eq!(r.handle_timeout(Time::from_secs(500)), vec!["alice".to_string()]);
    }

    #[test]
    fn handle_timeout_reports_users_in_expiry_order() {
        let mut r = Registrar::new(settings());
        reg(&mut r, Time::ZERO, "bob", list(&[(A, None)]), Some(90), 1).unwrap();
        reg(&mut r, Time::ZERO, "alice", list(&[(A, None)]), Some(80), 1).unwrap();
        reg(&mut r, Time::ZERO, "carol", list(&[(A, None)]), Some(3000), 1).unwrap();
        assert_eq!(r.handle_timeout(Time::from_secs(90)), vec!["alice".to_string(), "bob".to_string()]);
        assert!(r.is_registered("carol"));
    }

    #[test]
    fn zero_expiry_removes_contact() {
        let mut r = Registrar::new(settings());
        reg(&mut r, Time::ZERO, "alice", list(&[(A, None), (B, None)]), Some(300), 1).unwrap();
        assert_eq!(r.len(), 2);
        // Per-contact 0 overrides the header.
        let out = reg(&mut r, Time::from_secs(1), "alice", list(&[(A, Some(0))]), Some(300), 2).unwrap();
        assert_eq!(out.bindings, vec![(B.to_string(), 299)]);
        assert!(!out.became_unregistered);
        // Header 0 removes the last one.
        let out = reg(&mut r, Time::from_secs(2), "alice", list(&[(B, None)]), Some(0), 3).unwrap();
        assert!(out.bindings.is_empty());
        assert!(out.became_unregistered && !out.became_registered);
        assert!(!r.is_registered("alice"));
        assert_eq!(r.poll_timeout(), None);
        // Removing what is not there changes nothing.
        let out = reg(&mut r, Time::from_secs(3), "alice", list(&[(A, Some(0))]), None, 4).unwrap();
        assert!(out.bindings.is_empty() && !out.became_registered && !out.became_unregistered);
    }

    #[test]
    fn per_contact_expires_overrides_header_and_default_applies() {
        let mut r = Registrar::new(settings());
        let out = reg(&mut r, Time::ZERO, "alice", list(&[(A, Some(120)), (B, None)]), Some(300), 1).unwrap();
        assert_eq!(out.bindings, vec![(B.to_string(), 300), (A.to_string(), 120)]);
        let out = reg(&mut r, Time::ZERO, "bob", list(&[(A, None)]), None, 1).unwrap();
        assert_eq!(out.bindings, vec![(A.to_string(), 600)]);
    }

    #[test]
    fn too_brief_is_423_and_changes_nothing() {
        let mut r = Registrar::new(settings());
        reg(&mut r, Time::ZERO, "alice", list(&[(A, None)]), Some(300), 1).unwrap();
        // One good and one too-brief contact: the whole request fails.
        let err =
            reg(&mut r, Time::from_secs(1), "alice", list(&[(A, Some(0)), (B, Some(59))]), Some(300), 2).unwrap_err();
        assert_eq!(err, RegisterError::IntervalTooBrief { min_expires: 60 });
        assert_eq!(err.status_code(), 423);
        let b: Vec<_> = r.contacts("alice").cloned().collect();
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].contact.as_str(), b[0].expires_at, b[0].cseq), (A, Time::from_secs(300), 1));
        // Exactly the minimum is fine.
        let out = reg(&mut r, Time::from_secs(1), "alice", list(&[(B, Some(60))]), None, 3).unwrap();
        assert!(out.bindings.contains(&(B.to_string(), 60)));
    }

    #[test]
    fn above_max_is_capped() {
        let mut r = Registrar::new(settings());
        let out = reg(&mut r, Time::ZERO, "alice", list(&[(A, None)]), Some(86_400), 1).unwrap();
        assert_eq!(out.bindings, vec![(A.to_string(), 3600)]);
        assert_eq!(r.poll_timeout(), Some(Time::from_secs(3600)));
    }

    #[test]
    fn star_needs_expires_zero() {
        let mut r = Registrar::new(settings());
        reg(&mut r, Time::ZERO, "alice", list(&[(A, None), (B, None)]), Some(300), 1).unwrap();
        for bad in [None, Some(60)] {
            let err = reg(&mut r, Time::from_secs(1), "alice", ContactsReq::Star, bad, 2).unwrap_err();
            assert_eq!(err, RegisterError::StarWithoutZeroExpires);
            assert_eq!(err.status_code(), 400);
            assert_eq!(r.len(), 2);
        }
        let out = reg(&mut r, Time::from_secs(1), "alice", ContactsReq::Star, Some(0), 2).unwrap();
        assert!(out.bindings.is_empty() && out.became_unregistered);
        assert_eq!(r.len(), 0);
        assert_eq!(r.poll_timeout(), None);
        // `*` for a user with nothing registered is a no-op.
        let out = reg(&mut r, Time::from_secs(2), "bob", ContactsReq::Star, Some(0), 1).unwrap();
        assert!(!out.became_unregistered && !out.became_registered);
    }

    #[test]
    fn out_of_order_same_call_id_is_refused() {
        let mut r = Registrar::new(settings());
        reg(&mut r, Time::ZERO, "alice", list(&[(A, None)]), Some(300), 5).unwrap();
        for cseq in [5, 4] {
            let err = reg(&mut r, Time::from_secs(1), "alice", list(&[(A, None)]), Some(0), cseq).unwrap_err();
            assert_eq!(err, RegisterError::OutOfOrder { contact: A.to_string(), cseq, stored: 5 });
            assert_eq!(err.status_code(), 500);
        }
        let err = reg(&mut r, Time::from_secs(1), "alice", ContactsReq::Star, Some(0), 5).unwrap_err();
        assert!(matches!(err, RegisterError::OutOfOrder { .. }));
        assert_eq!(r.contacts("alice").next().unwrap().expires_at, Time::from_secs(300));
        // Another Call-ID (the phone rebooted) may have any CSeq.
        let out = r
            .register(Time::from_secs(2), "alice", list(&[(A, None)]), Some(120), "call-2", 1, src(), Transport::Udp)
            .unwrap();
        assert_eq!(out.bindings, vec![(A.to_string(), 120)]);
        // And then its own CSeq rules.
        let err = r
            .register(Time::from_secs(3), "alice", list(&[(A, None)]), Some(120), "call-2", 1, src(), Transport::Udp)
            .unwrap_err();
        assert!(matches!(err, RegisterError::OutOfOrder { stored: 1, .. }));
        // A query is not checked against CSeq.
        assert!(reg(&mut r, Time::from_secs(3), "alice", list(&[]), None, 1).is_ok());
    }

    #[test]
    fn too_many_contacts_is_refused() {
        let mut r = Registrar::new(settings());
        let c = ["sip:a@h1", "sip:a@h2", "sip:a@h3", "sip:a@h4"];
        reg(&mut r, Time::ZERO, "alice", list(&[(c[0], None), (c[1], None), (c[2], None)]), None, 1).unwrap();
        let err = reg(&mut r, Time::ZERO, "alice", list(&[(c[3], None)]), None, 2).unwrap_err();
        assert_eq!(err, RegisterError::TooManyContacts { max: 3 });
        assert_eq!(err.status_code(), 503);
        assert_eq!(r.len(), 3);
        // Swapping one out in the same request fits.
        let out = reg(&mut r, Time::ZERO, "alice", list(&[(c[0], Some(0)), (c[3], None)]), None, 3).unwrap();
        assert_eq!(out.bindings.len(), 3);
        assert_eq!(out.bindings[0].0, c[3]);
        // An expired binding no longer takes a slot, even before handle_timeout.
        reg(&mut r, Time::ZERO, "bob", list(&[(c[0], Some(60)), (c[1], None), (c[2], None)]), None, 1).unwrap();
        let out = reg(&mut r, Time::from_secs(60), "bob", list(&[(c[3], None)]), None, 2).unwrap();
        assert_eq!(out.bindings.len(), 3);
        assert!(!out.bindings.iter().any(|(u, _)| u == c[0]));
        assert_eq!(r.len(), 6);
    }

    #[test]
    fn a_due_binding_is_gone_for_register_and_reported_once() {
        let mut r = Registrar::new(settings());
        reg(&mut r, Time::ZERO, "alice", list(&[(A, None)]), Some(60), 1).unwrap();
        // At 60 s the binding is gone; a query reports the transition itself...
        let out = reg(&mut r, Time::from_secs(60), "alice", list(&[]), None, 2).unwrap();
        assert!(out.bindings.is_empty() && out.became_unregistered);
        // ...so handle_timeout does not report it again.
        assert_eq!(r.poll_timeout(), None);
        assert!(r.handle_timeout(Time::from_secs(60)).is_empty());

        // Refreshing a due binding before handle_timeout ran: no transition
        // either way, the agent simply stays registered.
        reg(&mut r, Time::ZERO, "bob", list(&[(A, None)]), Some(60), 1).unwrap();
        let out = reg(&mut r, Time::from_secs(61), "bob", list(&[(A, None)]), Some(60), 2).unwrap();
        assert!(!out.became_registered && !out.became_unregistered);
        assert!(r.handle_timeout(Time::from_secs(61)).is_empty());
        assert_eq!(r.poll_timeout(), Some(Time::from_secs(121)));
    }

    #[test]
    fn failed_register_leaves_due_bindings_for_handle_timeout() {
        let mut r = Registrar::new(settings());
        reg(&mut r, Time::ZERO, "alice", list(&[(A, None)]), Some(60), 1).unwrap();
        let err = reg(&mut r, Time::from_secs(70), "alice", list(&[(B, Some(5))]), None, 2).unwrap_err();
        assert!(matches!(err, RegisterError::IntervalTooBrief { .. }));
        assert!(r.is_registered("alice"));
        assert_eq!(r.handle_timeout(Time::from_secs(70)), vec!["alice".to_string()]);
    }

    #[test]
    fn remove_contact_for_unreachable_phone() {
        let mut r = Registrar::new(settings());
        reg(&mut r, Time::ZERO, "alice", list(&[(A, None), (B, None)]), Some(300), 1).unwrap();
        assert!(!r.remove_contact(Time::from_secs(1), "alice", A));
        assert_eq!(r.len(), 1);
        assert!(!r.remove_contact(Time::from_secs(1), "alice", "sip:nobody@h"));
        assert!(r.remove_contact(Time::from_secs(1), "alice", B));
        assert!(!r.is_registered("alice"));
        assert_eq!(r.poll_timeout(), None);
        assert!(!r.remove_contact(Time::from_secs(1), "alice", B));
        assert!(!r.remove_contact(Time::from_secs(1), "nobody", B));
    }

    #[test]
    fn same_contact_twice_in_one_request_last_wins() {
        let mut r = Registrar::new(settings());
        let out = reg(&mut r, Time::ZERO, "alice", list(&[(A, Some(120)), (A, Some(240))]), None, 1).unwrap();
        assert_eq!(out.bindings, vec![(A.to_string(), 240)]);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn index_stays_in_step_over_many_operations() {
        let mut r = Registrar::new(settings());
        let contacts = ["sip:x@1", "sip:x@2", "sip:x@3"];
        let users = ["u1", "u2", "u3", "u4"];
        let mut cseq = 0;
        for step in 0..400u64 {
            cseq += 1;
            let now = Time::from_secs(step * 7);
            let user = users[(step % 4) as usize];
            let contact = contacts[(step % 3) as usize];
            let expires = [0, 60, 90, 200][(step % 4 + step / 4) as usize % 4];
            let _ = reg(&mut r, now, user, list(&[(contact, Some(expires))]), None, cseq as u32);
            if step % 11 == 0 {
                r.remove_contact(now, user, contacts[0]);
            }
            r.handle_timeout(now);
            let total: usize = users.iter().map(|u| r.contacts(u).count()).sum();
            assert_eq!(total, r.len());
            assert!(users.iter().all(|u| r.is_registered(u) == (r.contacts(u).count() > 0)));
            assert!(r.poll_timeout().is_none_or(|t| t > now));
        }
    }
}
