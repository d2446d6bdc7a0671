//! The daemon's loop: SIP in, core decisions out.

use crate::callctl::{Command, Core, IncomingCall, LegId, SipEvent, Target};
use crate::config::{Config, DigestAlgorithm};
use crate::engine::{Event, Input, Time};
use crate::sip::adapter::{ContactValue, Inbound, Method, Request, SipError, SipStack, StackCounts, Transport};
use crate::sip::digest::{self, Algorithm, AuthFailure, NonceStore};
use crate::sip::registrar::{self, ContactReq, ContactsReq, Registrar, RegistrarSettings};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, info, warn};

const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER";

/// Methods RFC 3261 knows that acd does not serve outside a dialog: 405.
const NOT_ALLOWED: &[&str] = &["SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER", "INFO", "UPDATE", "PRACK"];

/// Everything the daemon holds. Public so tests can drive it in-process
/// and look at its counts.
pub struct Daemon {
    core: Core,
    stack: SipStack,
    registrar: Registrar,
    nonces: NonceStore,
    start: Instant,
    /// SIP user → agent id (config order).
    agents_by_user: HashMap<String, usize>,
    next_keep_alive: Option<Instant>,
}

/// What is alive inside a running daemon: every count returns to zero once
/// its calls have ended (tests wait for that).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Calls in call control, and their legs.
    pub calls: usize,
    pub legs: usize,
    /// Calls the engine still holds.
    pub engine_calls: usize,
    /// The adapter's view: legs, rsipstack dialogs, unanswered requests,
    /// running transactions.
    pub stack: StackCounts,
    pub registered_contacts: usize,
    /// Call-control errors so far (races absorbed or bugs).
    pub errors: usize,
}

impl Daemon {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            calls: self.core.call_count(),
            legs: self.core.leg_count(),
            engine_calls: self.core.engine().call_count(),
            stack: self.stack.counts(),
            registered_contacts: self.registrar.len(),
            errors: self.core.errors().len(),
        }
    }
}

/// A daemon on its own thread (current-thread runtime), for tests and
/// embedding: [`DaemonHandle::snapshot`] reads its counts.
pub struct DaemonHandle {
    snapshot: std::sync::Arc<std::sync::Mutex<Snapshot>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DaemonHandle {
    pub fn spawn(config: Config) -> Result<DaemonHandle, SipError> {
        let snapshot = std::sync::Arc::new(std::sync::Mutex::new(Snapshot::default()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), SipError>>();
        let snap = snapshot.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let (mut daemon, mut raw) = match Daemon::start(config).await {
                    Ok(x) => x,
                    Err(e) => {
                        ready_tx.send(Err(e)).ok();
                        return;
                    }
                };
                ready_tx.send(Ok(())).ok();
                let mut stop_rx = stop_rx;
                loop {
                    *snap.lock().expect("snapshot lock") = daemon.snapshot();
                    let deadline = daemon.deadline();
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        _ = tokio::time::sleep_until(deadline) => daemon.on_timer(),
                        // Wake at least every 100 ms so the snapshot stays fresh.
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        item = raw.recv() => match item {
                            Some(item) => daemon.on_raw(item),
                            None => break,
                        },
                    }
                }
                daemon.stack.shutdown();
            });
        });
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(DaemonHandle { snapshot, stop: Some(stop_tx), thread: Some(thread) }),
            Ok(Err(e)) => {
                thread.join().ok();
                Err(e)
            }
            Err(_) => Err(SipError::Stack("daemon thread ended during start-up".into())),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        *self.snapshot.lock().expect("snapshot lock")
    }
}

impl Drop for DaemonHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

/// Runs the daemon until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<(), SipError> {
    let (mut daemon, mut raw) = Daemon::start(config).await?;
    tokio::pin!(shutdown);
    loop {
        let deadline = daemon.deadline();
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep_until(deadline) => daemon.on_timer(),
            item = raw.recv() => match item {
                Some(item) => daemon.on_raw(item),
                None => break,
            },
        }
    }
    daemon.stack.shutdown();
    Ok(())
}

impl Daemon {
    pub async fn start(
        config: Config,
    ) -> Result<(Daemon, tokio::sync::mpsc::Receiver<crate::sip::adapter::Raw>), SipError> {
        let (stack, raw) = SipStack::start(&config.sip).await?;
        for a in &config.sip.listen_udp {
            info!("listening on udp {a}");
        }
        for a in &config.sip.listen_tcp {
            info!("listening on tcp {a}");
        }
        let start = Instant::now();
        let core = Core::new(&config, Time(0));
        let registrar = Registrar::new(RegistrarSettings {
            min_expires: config.sip.register_min_expires,
            max_expires: config.sip.register_max_expires,
            default_expires: config.sip.register_default_expires,
            max_contacts: config.sip.max_contacts_per_agent,
        });
        // Nonces must not be guessable: seed from the OS-random SipHash keys
        // and the clock, never from the routing seed in the config.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        let nonces = NonceStore::new(Duration::from_secs(config.sip.nonce_ttl_secs as u64), h.finish());
        let agents_by_user = config.agents.iter().enumerate().map(|(i, a)| (a.sip_user.clone(), i)).collect();
        let next_keep_alive = (config.sip.options_interval_secs > 0)
            .then(|| start + Duration::from_secs(config.sip.options_interval_secs as u64));
        let mut d = Daemon { core, stack, registrar, nonces, start, agents_by_user, next_keep_alive };
        d.flush();
        Ok((d, raw))
    }

    fn now(&self) -> Time {
        Time(self.start.elapsed().as_millis() as u64)
    }

    fn at(&self, t: Time) -> Instant {
        self.start + Duration::from_millis(t.0)
    }

    pub fn deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        [
            self.core.poll_timeout().map(|t| self.at(t)),
            self.registrar.poll_timeout().map(|t| self.at(t)),
            self.next_keep_alive,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(far)
    }

    pub fn core(&self) -> &Core {
        &self.core
    }
    pub fn counts(&self) -> StackCounts {
        self.stack.counts()
    }

    pub fn on_timer(&mut self) {
        let now = self.now();
        self.core.handle_timeout(now);
        for user in self.registrar.handle_timeout(now) {
            info!(%user, "registration expired");
            self.registration_changed(now, &user, false);
        }
        if let Some(at) = self.next_keep_alive {
            if Instant::now() >= at {
                self.keep_alive();
                self.next_keep_alive =
                    Some(Instant::now() + Duration::from_secs(self.core.config().sip.options_interval_secs as u64));
            }
        }
        self.flush();
    }

    pub fn on_raw(&mut self, raw: crate::sip::adapter::Raw) {
        match self.stack.absorb(raw) {
            None => {}
            Some(Inbound::Request(r)) => self.request(*r),
            Some(Inbound::Leg(ev)) => {
                let now = self.now();
                self.core.handle_sip(now, ev);
            }
            Some(Inbound::KeepAlive { reachable: true, .. }) => {}
            Some(Inbound::KeepAlive { user, contact, reachable: false }) => {
                warn!(%user, %contact, "phone did not answer OPTIONS; not ringing it until it registers again");
                let now = self.now();
                if self.registrar.remove_contact(now, &user, &contact) {
                    self.registration_changed(now, &user, false);
                }
            }
        }
        self.flush();
    }

    fn keep_alive(&mut self) {
        let timeout = Duration::from_secs(self.core.config().sip.options_timeout_secs as u64);
        let users: Vec<String> = self.agents_by_user.keys().cloned().collect();
        for user in users {
            for b in self.registrar.contacts(&user) {
                let t = match b.transport {
                    registrar::Transport::Udp => Transport::Udp,
                    registrar::Transport::Tcp => Transport::Tcp,
                };
                self.stack.keep_alive(user.clone(), b.contact.clone(), (b.source, t), timeout);
            }
        }
    }

    fn request(&mut self, r: Request) {
        match r.method {
            Method::Options => {
                self.stack.reply_ok_with(
                    r.tx,
                    vec![("Allow".into(), ALLOW.into()), ("Accept".into(), "application/sdp".into())],
                    None,
                );
            }
            Method::Register => self.register(r),
            Method::Invite => self.invite(r),
            Method::Other => {
                let status = if NOT_ALLOWED.contains(&r.method_name.as_str()) { 405 } else { 501 };
                self.stack.reply(r.tx, status, vec![("Allow".into(), ALLOW.into())]);
            }
        }
    }

    /// Digest check for an agent or a trunk. `Ok(())` when the request is
    /// authenticated; otherwise the request has been answered.
    fn authenticate(&mut self, r: &Request, user: &str, password: &str) -> Result<(), ()> {
        let realm = self.core.config().sip.realm.clone();
        let Some(auth) = &r.authorization else {
            self.challenge(r, false);
            return Err(());
        };
        let resp = match digest::parse_authorization(auth) {
            Ok(resp) => resp,
            Err(e) => {
                self.stack.reply(r.tx, 400, vec![("Warning".into(), format!("399 acd \"Authorization: {e}\""))]);
                return Err(());
            }
        };
        if resp.username != user {
            self.stack.reply(r.tx, 403, vec![("Warning".into(), "399 acd \"user name does not match\"".into())]);
            return Err(());
        }
        let now = self.now();
        match digest::verify(&mut self.nonces, now, &r.method_name, &resp, &realm, password) {
            Ok(()) => Ok(()),
            Err(AuthFailure::Stale) => {
                self.challenge(r, true);
                Err(())
            }
            Err(AuthFailure::UnknownNonce | AuthFailure::Replay | AuthFailure::WrongRealm) => {
                self.challenge(r, false);
                Err(())
            }
            Err(AuthFailure::BadResponse) => {
                info!(%user, source = %r.source, "wrong password");
                self.stack.reply(r.tx, 403, vec![("Warning".into(), "399 acd \"wrong password\"".into())]);
                Err(())
            }
        }
    }

    fn challenge(&mut self, r: &Request, stale: bool) {
        let now = self.now();
        let nonce = self.nonces.issue(now);
        let realm = self.core.config().sip.realm.clone();
        let headers = self
            .core
            .config()
            .sip
            .digest_algorithms
            .iter()
            .map(|a| {
                let alg = match a {
                    DigestAlgorithm::Md5 => Algorithm::Md5,
                    DigestAlgorithm::Sha256 => Algorithm::Sha256,
                };
                ("WWW-Authenticate".to_string(), digest::challenge_header(&realm, &nonce, alg, stale))
            })
            .collect();
        self.stack.reply(r.tx, 401, headers);
    }

    fn register(&mut self, r: Request) {
        let Some(&idx) = self.agents_by_user.get(&r.to_user) else {
            self.stack.reply(r.tx, 404, vec![]);
            return;
        };
        let agent = &self.core.config().agents[idx];
        let Some(password) = agent.password.clone() else {
            self.stack.reply(r.tx, 403, vec![("Warning".into(), "399 acd \"no password configured\"".into())]);
            return;
        };
        let user = agent.sip_user.clone();
        if self.authenticate(&r, &user, &password).is_err() {
            return;
        }
        let contacts = if r.contacts.contains(&ContactValue::Star) {
            if r.contacts.len() > 1 {
                self.stack.reply(
                    r.tx,
                    400,
                    vec![("Warning".into(), "399 acd \"'*' must be the only Contact\"".into())],
                );
                return;
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
        let now = self.now();
        match self.registrar.register(now, &user, contacts, r.expires, &r.call_id, r.cseq, r.source, transport) {
            Ok(out) => {
                let headers: Vec<(String, String)> = out
                    .bindings
                    .iter()
                    .map(|(c, secs)| ("Contact".to_string(), format!("<{c}>;expires={secs}")))
                    .collect();
                self.stack.reply(r.tx, 200, headers);
                if out.became_registered {
                    info!(%user, source = %r.source, "registered");
                    self.registration_changed(now, &user, true);
                }
                if out.became_unregistered {
                    info!(%user, "unregistered");
                    self.registration_changed(now, &user, false);
                }
            }
            Err(registrar::RegisterError::IntervalTooBrief { min_expires }) => {
                self.stack.reply(r.tx, 423, vec![("Min-Expires".into(), min_expires.to_string())]);
            }
            Err(e) => {
                let status = e.status_code();
                self.stack.reply(r.tx, status, vec![("Warning".into(), format!("399 acd \"{e}\""))]);
            }
        }
    }

    fn registration_changed(&mut self, now: Time, user: &str, registered: bool) {
        let Some(&idx) = self.agents_by_user.get(user) else { return };
        let id = self.core.config().agents[idx].id.clone();
        let Some(agent) = self.core.engine().agent_id(&id) else { return };
        let input = if registered { Input::AgentRegistered { agent } } else { Input::AgentUnregistered { agent } };
        if let Err(e) = self.core.handle_engine(now, input) {
            debug!(error = %e, "registration input");
        }
    }

    fn invite(&mut self, r: Request) {
        let config = self.core.config();
        // A feature code dialled by an agent's phone.
        let fc = &config.sip.feature_codes;
        let code = [(&fc.login, 0u8), (&fc.logout, 1), (&fc.pause, 2), (&fc.ready, 3)]
            .into_iter()
            .find(|(c, _)| **c == r.uri_user)
            .map(|(_, k)| k);
        if let (Some(kind), Some(&idx)) = (code, self.agents_by_user.get(&r.from_user)) {
            return self.feature_code(r, idx, kind);
        }
        let Some(trunk) = config.trunks.iter().find(|t| t.allows(r.source.ip())).cloned() else {
            info!(source = %r.source, to = %r.uri_user, "INVITE from an address that is not a trunk: 403");
            self.stack.reply(r.tx, 403, vec![("Warning".into(), "399 acd \"not a configured trunk\"".into())]);
            return;
        };
        if let Some((user, password)) = &trunk.credentials {
            if self.authenticate(&r, user, password).is_err() {
                return;
            }
        }
        let sip = &self.core.config().sip;
        let (priority_header, skills_header) = if trunk.trust_headers {
            (r.header(&sip.priority_header).map(str::to_string), r.header(&sip.skills_header).map(str::to_string))
        } else {
            (None, None)
        };
        let inc = IncomingCall {
            dialled: r.uri_user.clone(),
            caller: r.from_user.clone(),
            priority_header,
            skills_header,
            trunk: trunk.name.clone(),
        };
        let now = self.now();
        match self.core.incoming_call(now, inc) {
            Ok((call, leg)) => {
                info!(%call, caller = %r.from_user, dialled = %r.uri_user, trunk = %trunk.name, "call arrived");
                self.stack.bind_caller(r.tx, leg);
            }
            Err(refusal) => {
                info!(caller = %r.from_user, dialled = %r.uri_user, "refused: {refusal}");
                metrics::counter!("acd_calls_rejected_total", "status" => refusal.status().to_string()).increment(1);
                let headers =
                    refusal.retry_after().map(|s| vec![("Retry-After".to_string(), s.to_string())]).unwrap_or_default();
                self.stack.reply(r.tx, refusal.status(), headers);
            }
        }
    }

    fn feature_code(&mut self, r: Request, idx: usize, kind: u8) {
        let agent_cfg = &self.core.config().agents[idx];
        let (id, user) = (agent_cfg.id.clone(), agent_cfg.sip_user.clone());
        let Some(password) = agent_cfg.password.clone() else {
            self.stack.reply(r.tx, 403, vec![("Warning".into(), "399 acd \"no password configured\"".into())]);
            return;
        };
        if self.authenticate(&r, &user, &password).is_err() {
            return;
        }
        let Some(agent) = self.core.engine().agent_id(&id) else {
            self.stack.reply(r.tx, 404, vec![]);
            return;
        };
        let input = match kind {
            0 => Input::AgentLogin { agent },
            1 => Input::AgentLogout { agent },
            2 => Input::AgentPause { agent, reason: "paused from the phone".into() },
            _ => Input::AgentReady { agent },
        };
        let now = self.now();
        match self.core.handle_engine(now, input) {
            Ok(()) => {
                info!(agent = %id, code = %r.uri_user, "feature code");
                let sdp = self.sdp();
                self.stack.answer_and_hang_up(r.tx, sdp, Duration::from_millis(500));
            }
            Err(e) => {
                info!(agent = %id, code = %r.uri_user, "feature code refused: {e}");
                self.stack.reply(r.tx, 403, vec![("Warning".into(), format!("399 acd \"{e}\""))]);
            }
        }
    }

    /// Our SDP until the media layer lands: valid, PCMU/PCMA, and a
    /// placeholder port (nothing listens there yet).
    fn sdp(&self) -> Vec<u8> {
        let host = self
            .core
            .config()
            .sip
            .listen_udp
            .first()
            .or(self.core.config().sip.listen_tcp.first())
            .map(|a| a.ip())
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        let ip = if host.is_ipv6() { "IP6" } else { "IP4" };
        format!(
            "v=0\r\no=acd 1 1 IN {ip} {host}\r\ns=acd\r\nc=IN {ip} {host}\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
        )
        .into_bytes()
    }

    /// Carries out the core's commands and reports its events.
    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(cmd) = self.core.poll_command() {
                progressed = true;
                self.execute(cmd);
            }
            while let Some(ev) = self.core.poll_event() {
                progressed = true;
                self.report(ev);
            }
            if !progressed {
                break;
            }
        }
    }

    fn execute(&mut self, cmd: Command) {
        debug!(?cmd, "command");
        match cmd {
            Command::AnswerCaller { leg, .. } => {
                let sdp = self.sdp();
                self.stack.answer_caller(leg, sdp);
            }
            Command::RejectCaller { leg, status, retry_after, .. } => {
                metrics::counter!("acd_calls_rejected_total", "status" => status.to_string()).increment(1);
                self.stack.reject_caller(leg, status, retry_after);
            }
            Command::Invite { leg, target, caller, .. } => self.invite_leg(leg, target, &caller),
            Command::Cancel { leg, .. } => self.stack.cancel(leg),
            Command::Bye { leg, .. } => self.stack.bye(leg),
            // Media arrives with the media layer (#4).
            Command::Bridge { .. } | Command::Hold { .. } | Command::StopHold { .. } | Command::Announce { .. } => {}
        }
    }

    fn invite_leg(&mut self, leg: LegId, target: Target, caller: &str) {
        let sdp = self.sdp();
        match target {
            Target::Agent(agent) => {
                let name = self.core.engine().agent_name(agent).to_string();
                let user = self.core.config().agent(&name).map(|a| a.sip_user.clone()).unwrap_or(name);
                let binding = self.registrar.contacts(&user).next().map(|b| {
                    let t = match b.transport {
                        registrar::Transport::Udp => Transport::Udp,
                        registrar::Transport::Tcp => Transport::Tcp,
                    };
                    (b.contact.clone(), b.source, t)
                });
                match binding {
                    Some((contact, source, t)) => self.stack.invite(leg, &contact, Some((source, t)), caller, sdp),
                    None => {
                        let now = self.now();
                        self.core.handle_sip(now, SipEvent::Failed { leg, status: None });
                    }
                }
            }
            Target::Uri(uri) => self.stack.invite(leg, &uri, None, caller, sdp),
        }
    }

    fn report(&mut self, event: Event) {
        let engine = self.core.engine();
        match &event {
            Event::AgentStateChanged { agent, from, to, reason } => {
                info!(agent = engine.agent_name(*agent), "{from} => {to} ({reason})");
            }
            Event::CallFinished { queue, outcome, .. } => {
                metrics::counter!("acd_calls_finished_total",
                    "queue" => engine.queue_name(*queue).to_string(),
                    "outcome" => outcome.name())
                .increment(1);
                info!(?event, "call finished");
            }
            Event::Offered { call, decision, .. } => {
                debug!(%call, ?decision, "offered");
            }
            _ => info!(?event, "event"),
        }
    }
}
