//! The daemon's loop: SIP in, core decisions out.

use super::admin::{AdminReply, AdminRequest, AgentAction};
use crate::callctl::{Command, Core, IncomingCall, LegId, SipEvent, Target};
use crate::config::{Config, DigestAlgorithm};
use crate::engine::{CallId, Event, Input, Time};
use crate::media::core::MusicClass;
use crate::media::g711::Codec;
use crate::media::plane::{MediaEvent, Plane, PlaneSettings};
use crate::media::sdp::{self, Negotiated, DTMF_PT};
use crate::ops::eventlog::{event_json, EventLog};
use crate::ops::metrics::{install_exporter, Metrics};
use crate::sip::adapter::Raw;
use crate::sip::adapter::{ContactValue, Inbound, Method, Request, SipError, SipStack, StackCounts, Transport};
use crate::sip::digest::{self, Algorithm, AuthFailure, NonceStore};
use crate::sip::registrar::{self, ContactReq, ContactsReq, Registrar, RegistrarSettings};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
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
    /// Wall clock at `start`, for the event log's timestamps.
    start_unix_ms: u64,
    /// SIP user → agent id (config order).
    agents_by_user: HashMap<String, usize>,
    next_keep_alive: Option<Instant>,
    /// Where the config came from (reloads read it again).
    config_path: Option<PathBuf>,
    metrics: Metrics,
    next_refresh: Instant,
    event_log: Option<EventLog>,
    /// Engine events as JSON, for the admin API's `/events` stream.
    event_feed: broadcast::Sender<Arc<str>>,
    /// Set once SIGTERM arrived: when the grace period ends.
    draining_until: Option<Instant>,
    /// Reloads applied, refused.
    reloads: (usize, usize),
    /// The grace period ended and the remaining calls were hung up.
    hung_up: bool,
    /// The RTP plane, and what it reports (media timeouts).
    plane: Plane,
    media_rx: Option<mpsc::UnboundedReceiver<MediaEvent>>,
    /// Callers' SDP offers, from the INVITE until acd answers.
    offers: HashMap<LegId, (Negotiated, Option<SocketAddr>, bool)>,
    /// The law each leg with media settled on (callers' is offered to agents).
    leg_codecs: HashMap<LegId, Negotiated>,
    next_media_sweep: Instant,
    /// The plane's lateness histogram at the previous sweep: the pacing
    /// gauge is the p99 of the frames sent since then, not since start-up.
    prev_lateness: crate::media::core::ShardStats,
    /// Announcements skipped for want of `media.prompts` (warned once).
    warned_no_prompts: bool,
    /// Announcement clips by their words: thousands of callers hear the same
    /// few sentences, built once each (cleared on reload and past 4096).
    announcements: HashMap<Vec<String>, crate::media::audio::Clip>,
    /// `o=` versions of the SDP acd sent on each leg, for re-INVITE answers.
    sdp_versions: HashMap<LegId, u64>,
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
    /// Reloads applied, and refused (bad file).
    pub reloads: usize,
    pub failed_reloads: usize,
    /// Legs with RTP sockets, and the port pairs they hold.
    pub media_legs: usize,
    pub rtp_ports_in_use: usize,
}

/// Requests into the daemon loop from other tasks and threads.
pub enum Control {
    /// Read the config file again; the reply says what happened.
    Reload(Option<oneshot::Sender<Result<(), String>>>),
    Admin(AdminRequest, oneshot::Sender<AdminReply>),
    /// SIGTERM: drain, then stop.
    Shutdown,
}

/// A daemon on its own thread (current-thread runtime), for tests and
/// embedding: [`DaemonHandle::snapshot`] reads its counts.
pub struct DaemonHandle {
    snapshot: Arc<Mutex<Snapshot>>,
    control: mpsc::Sender<Control>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Addresses the admin API and metrics exporter bound (port 0 resolved).
    pub admin_addr: Option<SocketAddr>,
}

impl DaemonHandle {
    pub fn spawn(config: Config) -> Result<DaemonHandle, SipError> {
        DaemonHandle::spawn_with_path(config, None)
    }

    /// Like [`DaemonHandle::spawn`], with the file reloads read from.
    pub fn spawn_with_path(config: Config, path: Option<PathBuf>) -> Result<DaemonHandle, SipError> {
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        let (control_tx, control_rx) = mpsc::channel::<Control>(256);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Option<SocketAddr>, SipError>>();
        let snap = snapshot.clone();
        let ctl = control_tx.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let started = Daemon::start(config, path).await;
                let (daemon, raw) = match started {
                    Ok(x) => x,
                    Err(e) => {
                        ready_tx.send(Err(e)).ok();
                        return;
                    }
                };
                let admin = daemon.serve_admin(ctl).await;
                let admin = match admin {
                    Ok(a) => a,
                    Err(e) => {
                        ready_tx.send(Err(e)).ok();
                        return;
                    }
                };
                ready_tx.send(Ok(admin)).ok();
                drive(daemon, raw, control_rx, std::future::pending(), None, Some(snap)).await;
            });
        });
        match ready_rx.recv() {
            Ok(Ok(admin_addr)) => Ok(DaemonHandle { snapshot, control: control_tx, thread: Some(thread), admin_addr }),
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

    /// Reloads the config file, as SIGHUP does; `Err` carries the message
    /// an admin would see (file, key, reason).
    pub fn reload(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.control.blocking_send(Control::Reload(Some(tx))).map_err(|_| "daemon stopped".to_string())?;
        rx.blocking_recv().map_err(|_| "daemon stopped".to_string())?
    }

    /// Starts the SIGTERM sequence and waits for the daemon to exit.
    pub fn shutdown(mut self) {
        self.control.blocking_send(Control::Shutdown).ok();
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

impl Drop for DaemonHandle {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            // Immediate stop: no grace period in tests that just end.
            self.control.blocking_send(Control::Shutdown).ok();
            t.join().ok();
        }
    }
}

/// Runs the daemon until SIGTERM/SIGINT (`shutdown`) has been drained.
/// SIGHUP reloads the config and reopens the event log.
pub async fn run(
    config: Config,
    path: PathBuf,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SipError> {
    // SIGHUP's handler exists before "acd running" is logged: a reload sent
    // as soon as the daemon says it runs must not kill it (the default
    // action of SIGHUP).
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| SipError::Stack(format!("cannot handle SIGHUP: {e}")))?;
    let (daemon, raw) = Daemon::start(config, Some(path.clone())).await?;
    let (control_tx, control_rx) = mpsc::channel::<Control>(256);
    daemon.serve_admin(control_tx).await?;
    info!("acd running on {}; Ctrl-C to stop", path.display());
    drive(daemon, raw, control_rx, shutdown, Some(hup), None).await;
    Ok(())
}

/// The daemon loop: one select over SIP, timers, control requests, config
/// file changes and signals.
async fn drive(
    mut daemon: Daemon,
    mut raw: mpsc::Receiver<Raw>,
    mut control: mpsc::Receiver<Control>,
    shutdown: impl std::future::Future<Output = ()>,
    mut hup: Option<tokio::signal::unix::Signal>,
    snapshot: Option<Arc<Mutex<Snapshot>>>,
) {
    tokio::pin!(shutdown);
    let (file_tx, mut file_rx) = mpsc::channel::<()>(16);
    let _watcher = daemon.config_path.as_deref().and_then(|p| watch(p, file_tx));
    let debounce = Duration::from_millis(daemon.core.config().ops.reload_debounce_ms as u64);
    let mut reload_at: Option<Instant> = None;
    let mut shutdown_seen = false;
    let mut media_rx = daemon.media_rx.take().expect("media events");
    // With the admin API off nothing holds the control sender; a closed
    // channel is ready at once, so it must leave the select or the loop spins.
    let mut control_open = true;
    loop {
        if let Some(s) = &snapshot {
            *s.lock().expect("snapshot lock") = daemon.snapshot();
        }
        if daemon.drained() {
            break;
        }
        let mut deadline = daemon.deadline();
        if let Some(at) = reload_at {
            deadline = deadline.min(at);
        }
        // Tests read the snapshot: keep it fresh.
        if snapshot.is_some() {
            deadline = deadline.min(Instant::now() + Duration::from_millis(100));
        }
        tokio::select! {
            _ = &mut shutdown, if !shutdown_seen => {
                shutdown_seen = true;
                daemon.begin_shutdown();
            }
            _ = tokio::time::sleep_until(deadline) => {
                if reload_at.is_some_and(|at| Instant::now() >= at) {
                    reload_at = None;
                    info!("config file changed; reloading");
                    daemon.reload().ok();
                }
                daemon.on_timer();
            }
            item = raw.recv() => match item {
                Some(item) => daemon.on_raw(item),
                None => break,
            },
            Some(ev) = media_rx.recv() => daemon.on_media(ev),
            ctl = control.recv(), if control_open => match ctl {
                Some(Control::Reload(reply)) => {
                    let r = daemon.reload();
                    if let Some(reply) = reply {
                        reply.send(r).ok();
                    }
                }
                Some(Control::Admin(req, reply)) => {
                    let r = daemon.admin(req);
                    reply.send(r).ok();
                }
                Some(Control::Shutdown) => daemon.begin_shutdown(),
                None => control_open = false,
            },
            Some(()) = file_rx.recv() => {
                reload_at = Some(Instant::now() + debounce);
            }
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                info!("SIGHUP: reloading the config and reopening the event log");
                daemon.reopen_event_log();
                daemon.reload().ok();
            }
        }
    }
    if daemon.hung_up || daemon.draining_until.is_some() {
        // Let the last BYEs and final responses leave before the sockets close.
        let until = Instant::now() + Duration::from_millis(300);
        while let Ok(Some(item)) = tokio::time::timeout_at(until, raw.recv()).await {
            daemon.on_raw(item);
        }
    }
    daemon.stack.shutdown();
    daemon.plane.shutdown();
    info!("acd stopped");
}

/// Watches the config file's directory (editors replace files rather than
/// writing them in place) and signals every change to that file.
fn watch(path: &std::path::Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let file_name = path.file_name()?.to_owned();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            let ours = ev.paths.iter().any(|p| p.file_name() == Some(file_name.as_os_str()));
            let changed = matches!(
                ev.kind,
                notify::EventKind::Modify(_) | notify::EventKind::Create(_) | notify::EventKind::Remove(_)
            );
            if ours && changed {
                tx.try_send(()).ok();
            }
        }
    })
    .map_err(|e| warn!("cannot watch the config file: {e}; SIGHUP still reloads"))
    .ok()?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|e| warn!("cannot watch {}: {e}; SIGHUP still reloads", dir.display()))
        .ok()?;
    Some(watcher)
}

impl Daemon {
    pub async fn start(
        config: Config,
        config_path: Option<PathBuf>,
    ) -> Result<(Daemon, mpsc::Receiver<Raw>), SipError> {
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
        if let Some(addr) = config.ops.metrics_listen {
            match install_exporter(addr) {
                Ok(()) => {
                    info!("Prometheus metrics on http://{addr}/metrics");
                    metrics::describe_counter!(
                        "acd_calls_refused_total",
                        "INVITEs refused before reaching a queue, by SIP status (404 unknown number, 403 not a trunk, 503 over sip.max_calls, overloaded or shutting down)"
                    );
                    metrics::describe_counter!(
                        "acd_overload_refusals_total",
                        "New INVITEs answered 503 because they waited over 100 ms for the daemon loop (overload)"
                    );
                    metrics::describe_counter!("acd_config_reloads_total", "Config reloads applied");
                    metrics::describe_counter!(
                        "acd_config_reload_failures_total",
                        "Config reloads refused because the file was invalid (nothing changed)"
                    );
                }
                Err(e) => warn!("metrics exporter on {addr} not started: {e}"),
            }
        }
        let metrics = Metrics::new(&config, Duration::from_secs(config.ops.metrics_window_secs as u64));
        let event_log = match &config.ops.event_log {
            Some(path) => match EventLog::open(path, config.ops.event_log_max_bytes, config.ops.event_log_keep) {
                Ok(log) => {
                    info!("event log: {}", path.display());
                    Some(log)
                }
                Err(e) => {
                    return Err(SipError::Stack(format!("cannot open the event log {}: {e}", path.display())));
                }
            },
            None => None,
        };
        let start_unix_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let (event_feed, _) = broadcast::channel(1024);
        let (media_tx, media_rx) = mpsc::unbounded_channel();
        let rtp_ip = rtp_ip(&config);
        let plane = Plane::start(
            PlaneSettings {
                rtp_ip,
                port_min: config.media.rtp_port_min,
                port_max: config.media.rtp_port_max,
                threads: config.media.threads,
                media_timeout_secs: config.media.timeout_secs,
                rtcp: config.media.rtcp,
            },
            music_classes(&config),
            media_tx,
        )
        .map_err(|e| SipError::Stack(e.to_string()))?;
        info!(
            "RTP on {rtp_ip} ports {}..{}, {} media thread(s)",
            config.media.rtp_port_min, config.media.rtp_port_max, config.media.threads
        );
        let mut d = Daemon {
            core,
            stack,
            registrar,
            nonces,
            start,
            start_unix_ms,
            agents_by_user,
            next_keep_alive,
            config_path,
            metrics,
            next_refresh: start,
            event_log,
            event_feed,
            draining_until: None,
            reloads: (0, 0),
            hung_up: false,
            plane,
            media_rx: Some(media_rx),
            offers: HashMap::new(),
            leg_codecs: HashMap::new(),
            next_media_sweep: start,
            prev_lateness: Default::default(),
            warned_no_prompts: false,
            announcements: HashMap::new(),
            sdp_versions: HashMap::new(),
        };
        d.flush();
        Ok((d, raw))
    }

    /// Binds the admin API (if configured) and serves it on this runtime.
    async fn serve_admin(&self, control: mpsc::Sender<Control>) -> Result<Option<SocketAddr>, SipError> {
        let ops = &self.core.config().ops;
        let Some(addr) = ops.admin_listen else { return Ok(None) };
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| SipError::Listen {
            addr,
            transport: "admin http",
            reason: e.to_string(),
        })?;
        let bound = listener.local_addr().unwrap_or(addr);
        let (tx, mut rx) = mpsc::channel::<(AdminRequest, oneshot::Sender<AdminReply>)>(64);
        // Forward admin requests into the daemon loop's control channel.
        tokio::spawn(async move {
            while let Some((req, reply)) = rx.recv().await {
                if control.send(Control::Admin(req, reply)).await.is_err() {
                    break;
                }
            }
        });
        let router = super::admin::router(tx, self.event_feed.clone(), ops.admin_token.clone());
        tokio::spawn(super::admin::serve(listener, router));
        info!("admin API on http://{bound}");
        Ok(Some(bound))
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            calls: self.core.call_count(),
            legs: self.core.leg_count(),
            engine_calls: self.core.engine().call_count(),
            stack: self.stack.counts(),
            registered_contacts: self.registrar.len(),
            errors: self.core.errors().len(),
            reloads: self.reloads.0,
            failed_reloads: self.reloads.1,
            media_legs: self.plane.leg_count(),
            rtp_ports_in_use: self.plane.ports_in_use(),
        }
    }

    /// SIGTERM: new calls get 503 + Retry-After, waiting callers go to their
    /// overflow targets, bridged calls have the grace period to finish.
    fn begin_shutdown(&mut self) {
        if self.draining_until.is_some() {
            return;
        }
        let grace = self.core.config().ops.shutdown_grace_secs;
        info!(
            "shutting down: no new calls, waiting callers to overflow, {} call(s) have {grace} s to finish",
            self.core.call_count()
        );
        self.draining_until = Some(Instant::now() + Duration::from_secs(grace as u64));
        let now = self.now();
        self.core.drain(now);
        self.flush();
    }

    /// Done draining: every call has ended, or the grace period is over (then
    /// the rest are hung up, and their BYEs get a moment to leave).
    fn drained(&mut self) -> bool {
        let Some(until) = self.draining_until else { return false };
        if self.core.call_count() == 0 {
            return true;
        }
        if Instant::now() < until {
            return false;
        }
        if self.hung_up {
            return true;
        }
        warn!("grace period over: hanging up {} call(s)", self.core.call_count());
        let now = self.now();
        self.core.hang_up_all(now);
        self.flush();
        self.hung_up = true;
        // Legs still waiting for a final response get a moment to end.
        self.draining_until = Some(Instant::now() + Duration::from_secs(2));
        self.core.call_count() == 0
    }

    /// Answers an admin API request from the core's state.
    fn admin(&mut self, req: AdminRequest) -> AdminReply {
        use serde_json::json;
        let now = self.now();
        let secs = |d: Duration| d.as_millis() as f64 / 1000.0;
        match req {
            AdminRequest::Ready => {
                if self.draining_until.is_some() {
                    AdminReply::error(503, "shutting down")
                } else {
                    AdminReply::ok(json!({ "status": "ready" }))
                }
            }
            AdminRequest::Queues => {
                let engine = self.core.engine();
                let config = self.core.config();
                let queues: Vec<_> = config
                    .queues
                    .iter()
                    .filter_map(|q| {
                        let id = engine.queue_id(&q.name)?;
                        let mut by_state: std::collections::BTreeMap<&str, usize> =
                            ["logged-out", "available", "ringing", "on-call", "wrap-up", "paused"]
                                .into_iter()
                                .map(|s| (s, 0))
                                .collect();
                        for m in &q.members {
                            if let Some(st) = engine.agent_id(&m.agent).and_then(|a| engine.agent_state(a)) {
                                *by_state.entry(st.name()).or_default() += 1;
                            }
                        }
                        let live = self.metrics.queue_figures(&q.name);
                        Some(json!({
                            "name": q.name,
                            "strategy": q.strategy.name(),
                            "waiting": engine.waiting_count(id),
                            "longest_wait_secs": secs(engine.longest_wait(id)),
                            "members": q.members.len(),
                            "agents": by_state,
                            "service_level_secs": q.service_level_secs,
                            "live": live,
                        }))
                    })
                    .collect();
                AdminReply::ok(json!({ "queues": queues }))
            }
            AdminRequest::Agents => {
                let engine = self.core.engine();
                let config = self.core.config();
                let agents: Vec<_> = config
                    .agents
                    .iter()
                    .filter_map(|a| {
                        let id = engine.agent_id(&a.id)?;
                        let state = engine.agent_state(id)?;
                        let reason = match state {
                            crate::engine::AgentState::Paused { reason, .. } => Some(reason.clone()),
                            _ => None,
                        };
                        let queues: Vec<&str> = config
                            .queues
                            .iter()
                            .filter(|q| q.members.iter().any(|m| m.agent == a.id))
                            .map(|q| q.name.as_str())
                            .collect();
                        Some(json!({
                            "id": a.id,
                            "name": a.display_name,
                            "state": state.name(),
                            "reason": reason,
                            "registered": engine.agent_registered(id),
                            "contacts": self.registrar.contacts(&a.sip_user).map(|b| b.contact.clone()).collect::<Vec<_>>(),
                            "queues": queues,
                        }))
                    })
                    .collect();
                AdminReply::ok(json!({ "agents": agents }))
            }
            AdminRequest::Calls => {
                let engine = self.core.engine();
                let mut calls = Vec::new();
                for q in engine.all_queue_ids() {
                    for (i, c) in engine.waiting(q).into_iter().enumerate() {
                        let Some(view) = engine.call(c) else { continue };
                        calls.push(json!({
                            "call": c.0,
                            "queue": engine.queue_name(q),
                            "queue_closed": engine.queue_closed(q),
                            "position": i + 1,
                            "caller": self.core.caller_of(c),
                            "priority": view.priority,
                            "state": view.state,
                            "wait_secs": secs(now.since(view.arrived)),
                            "ringing": view.ringing.iter().map(|a| engine.agent_name(*a)).collect::<Vec<_>>(),
                        }));
                    }
                }
                AdminReply::ok(json!({ "calls": calls }))
            }
            AdminRequest::Agent { agent, action } => {
                let Some(id) = self.core.engine().agent_id(&agent) else {
                    return AdminReply::error(404, format!("no agent \"{agent}\""));
                };
                let input = match action {
                    AgentAction::Login => Input::AgentLogin { agent: id },
                    AgentAction::Logout => Input::AgentLogout { agent: id },
                    AgentAction::Pause { reason } => Input::AgentPause { agent: id, reason },
                    AgentAction::Ready => Input::AgentReady { agent: id },
                };
                let r = self.core.handle_engine(now, input);
                self.flush();
                match r {
                    Ok(()) => {
                        let state = self.core.engine().agent_state(id).map(|s| s.name()).unwrap_or("?");
                        AdminReply::ok(json!({ "agent": agent, "state": state }))
                    }
                    Err(e) => AdminReply::error(409, e.to_string()),
                }
            }
            AdminRequest::MoveCall { call, queue } => {
                let Some(q) = self.core.engine().queue_id(&queue) else {
                    return AdminReply::error(404, format!("no queue \"{queue}\""));
                };
                let r = self.core.handle_engine(now, Input::MoveCall { call: crate::engine::CallId(call), queue: q });
                self.flush();
                match r {
                    Ok(()) => AdminReply::ok(json!({ "call": call, "queue": queue })),
                    Err(crate::engine::EngineError::UnknownCall(_)) => {
                        AdminReply::error(404, format!("no call {call}"))
                    }
                    Err(e) => AdminReply::error(409, e.to_string()),
                }
            }
            AdminRequest::WithdrawCall { call, status } => {
                let r = self.core.handle_engine(now, Input::WithdrawCall { call: crate::engine::CallId(call), status });
                self.flush();
                match r {
                    Ok(()) => AdminReply::ok(json!({ "call": call, "withdrawn": true, "status": status })),
                    Err(crate::engine::EngineError::UnknownCall(_)) => {
                        AdminReply::error(404, format!("no call {call}"))
                    }
                    Err(e) => AdminReply::error(409, e.to_string()),
                }
            }
        }
    }

    fn reopen_event_log(&mut self) {
        if let Some(log) = &mut self.event_log {
            if let Err(e) = log.reopen() {
                warn!("cannot reopen the event log: {e}");
            }
        }
    }

    /// Reads the config file again and applies it whole, or changes nothing.
    fn reload(&mut self) -> Result<(), String> {
        let Some(path) = self.config_path.clone() else {
            return Err("acd was started without a config file".into());
        };
        let new = match crate::config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                self.reloads.1 += 1;
                metrics::counter!("acd_config_reload_failures_total").increment(1);
                warn!("reload refused, nothing changed: {e}");
                return Err(e.to_string());
            }
        };
        let old = self.core.config();
        let mut restart = Vec::new();
        if new.sip.listen_udp != old.sip.listen_udp || new.sip.listen_tcp != old.sip.listen_tcp {
            restart.push("sip.listen_udp / sip.listen_tcp");
        }
        if new.ops.metrics_listen != old.ops.metrics_listen {
            restart.push("metrics.listen");
        }
        if new.ops.admin_listen != old.ops.admin_listen || new.ops.admin_token != old.ops.admin_token {
            restart.push("admin.listen / admin.token");
        }
        if new.ops.event_log != old.ops.event_log {
            restart.push("event_log.path");
        }
        for key in &restart {
            warn!("{key} changed: takes effect after a restart (the running value stays)");
        }
        let now = self.now();
        self.agents_by_user = new.agents.iter().enumerate().map(|(i, a)| (a.sip_user.clone(), i)).collect();
        self.metrics.reload(&new);
        if new.media.rtp_port_min != old.media.rtp_port_min
            || new.media.rtp_port_max != old.media.rtp_port_max
            || new.media.rtp_address != old.media.rtp_address
            || new.media.threads != old.media.threads
        {
            warn!("media.rtp_address / rtp_port_min / rtp_port_max / threads changed: take effect after a restart");
        }
        self.plane.reload(music_classes(&new), new.media.timeout_secs);
        self.announcements.clear();
        self.core.reload(now, new);
        self.reloads.0 += 1;
        metrics::counter!("acd_config_reloads_total").increment(1);
        info!("config reloaded from {}", path.display());
        self.flush();
        Ok(())
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
            Some(self.next_refresh),
            Some(self.next_media_sweep),
            self.draining_until,
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
        if Instant::now() >= self.next_refresh {
            self.metrics.refresh(now, self.core.engine());
            self.next_refresh = Instant::now() + Duration::from_secs(1);
        }
        if Instant::now() >= self.next_media_sweep {
            self.sweep_media();
            self.next_media_sweep = Instant::now() + Duration::from_secs(5);
        }
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
                let leg = ev.leg();
                self.core.handle_sip(now, ev);
                if self.core.leg_call(leg).is_none() {
                    self.close_media(leg);
                }
            }
            Some(Inbound::Reinvite { leg, sdp: body, reply }) => self.reinvite(leg, &body, reply),
            Some(Inbound::Answered { leg, sdp: body }) => {
                if !body.is_empty() {
                    match sdp::parse(&body) {
                        Ok(answer) => {
                            let offered = self.leg_codecs.get(&leg).map(|n| n.codec).unwrap_or(Codec::Pcmu);
                            let codec = answer.codecs.first().copied().unwrap_or(offered);
                            let n = Negotiated { codec, dtmf_pt: answer.dtmf_pt };
                            self.leg_codecs.insert(leg, n);
                            self.plane.set_remote(leg.0, answer.addr, codec, answer.dtmf_pt);
                        }
                        Err(e) => warn!(%leg, "SDP answer: {e}; sending RTP where the far end's packets come from"),
                    }
                }
                let now = self.now();
                self.core.handle_sip(now, SipEvent::Answered { leg });
                if self.core.leg_call(leg).is_none() {
                    self.close_media(leg);
                }
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
            metrics::counter!("acd_calls_refused_total", "status" => "403").increment(1);
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
        // The caller's SDP offer: no G.711 is 488 before anything else.
        let offer = if r.has_body {
            match sdp::parse(&r.body).and_then(|o| sdp::negotiate(&o).map(|n| (n, o.addr, false))) {
                Ok(x) => x,
                Err(e) => {
                    info!(caller = %r.from_user, "488: {e}");
                    metrics::counter!("acd_calls_refused_total", "status" => "488").increment(1);
                    self.stack.reply(r.tx, 488, vec![("Warning".into(), format!("305 acd \"{e}\""))]);
                    return;
                }
            }
        } else {
            // No offer in the INVITE: acd offers in its 200 and learns the
            // address from the caller's first RTP packet.
            (Negotiated { codec: Codec::Pcmu, dtmf_pt: Some(DTMF_PT) }, None, true)
        };
        if !self.plane.has_capacity() {
            let retry = self.core.config().sip.retry_after_secs;
            warn!("no free RTP port pair: 503");
            metrics::counter!("acd_calls_refused_total", "status" => "503").increment(1);
            self.stack.reply(r.tx, 503, vec![("Retry-After".into(), retry.to_string())]);
            return;
        }
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
                self.offers.insert(leg, offer);
                self.stack.bind_caller(r.tx, leg);
            }
            Err(refusal) => {
                info!(caller = %r.from_user, dialled = %r.uri_user, "refused: {refusal}");
                metrics::counter!("acd_calls_refused_total", "status" => refusal.status().to_string()).increment(1);
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
            Command::AnswerCaller { call, leg } => {
                let sdp = self.answer_sdp(call, leg);
                self.stack.answer_caller(leg, sdp);
            }
            Command::RejectCaller { leg, status, retry_after, .. } => {
                self.close_media(leg);
                self.stack.reject_caller(leg, status, retry_after);
            }
            Command::Invite { call, leg, target, caller } => self.invite_leg(call, leg, target, &caller),
            Command::Cancel { leg, .. } => self.stack.cancel(leg),
            Command::Bye { leg, .. } => {
                self.close_media(leg);
                self.stack.bye(leg);
            }
            Command::Hold { leg, music, .. } => self.plane.hold(leg.0, &music),
            Command::StopHold { leg, .. } => self.plane.stop_hold(leg.0),
            Command::Bridge { caller, other, .. } => self.plane.bridge(caller.0, other.0),
            Command::Announce { leg, position, estimated_wait_secs, .. } => match &self.core.config().media.prompts {
                Some(p) => {
                    let words = crate::media::prompts::words(position, estimated_wait_secs);
                    if self.announcements.len() >= 4096 {
                        self.announcements.clear();
                    }
                    let clip = self
                        .announcements
                        .entry(words)
                        .or_insert_with(|| p.announcement(position, estimated_wait_secs))
                        .clone();
                    self.plane.announce(leg.0, clip);
                }
                None if !self.warned_no_prompts => {
                    self.warned_no_prompts = true;
                    warn!("position announcements are on but media.prompts is not set: skipped");
                }
                None => {}
            },
        }
    }

    fn invite_leg(&mut self, call: CallId, leg: LegId, target: Target, caller: &str) {
        // Offer the agent the caller's law only, so the bridge relays
        // payloads as they are.
        let caller_n = self
            .core
            .caller_leg(call)
            .and_then(|c| self.leg_codecs.get(&c).copied())
            .unwrap_or(Negotiated { codec: Codec::Pcmu, dtmf_pt: Some(DTMF_PT) });
        let dtmf = caller_n.dtmf_pt.map(|_| DTMF_PT);
        let sdp = match self.plane.open(leg.0, call.0, caller_n.codec, dtmf, None) {
            Ok(local) => {
                self.leg_codecs.insert(leg, Negotiated { codec: caller_n.codec, dtmf_pt: dtmf });
                sdp::build(local, leg.0, &[caller_n.codec], dtmf).into_bytes()
            }
            Err(e) => {
                warn!(%call, %leg, "cannot ring: {e}");
                let now = self.now();
                self.core.handle_sip(now, SipEvent::Failed { leg, status: None });
                return;
            }
        };
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
                        self.close_media(leg);
                    }
                }
            }
            Target::Uri(uri) => self.stack.invite(leg, &uri, None, caller, sdp),
        }
    }

    /// acd's SDP answer to a caller, with the leg's RTP ports opened.
    fn answer_sdp(&mut self, call: CallId, leg: LegId) -> Vec<u8> {
        let (n, remote, late) =
            self.offers.remove(&leg).unwrap_or((Negotiated { codec: Codec::Pcmu, dtmf_pt: Some(DTMF_PT) }, None, true));
        match self.plane.open(leg.0, call.0, n.codec, n.dtmf_pt, remote) {
            Ok(local) => {
                self.leg_codecs.insert(leg, n);
                let codecs: &[Codec] = if late { &[Codec::Pcmu, Codec::Pcma] } else { &[n.codec] };
                sdp::build(local, leg.0, codecs, n.dtmf_pt).into_bytes()
            }
            Err(e) => {
                // Checked before taking the call; only a bind race gets here.
                warn!(%call, %leg, "answering without media: {e}");
                let local = SocketAddr::new(self.plane_ip(), 0);
                sdp::build(local, leg.0, &[n.codec], n.dtmf_pt).into_bytes()
            }
        }
    }

    /// A re-INVITE on a leg (hold, resume, new address): answered here,
    /// leg by leg; the other side of the bridge is not asked. A held leg is
    /// exempt from the media timeout until it resumes.
    fn reinvite(&mut self, leg: LegId, body: &[u8], reply: crate::sip::adapter::Reinvite) {
        let (Some(port), Some(n)) = (self.plane.port_of(leg.0), self.leg_codecs.get(&leg).copied()) else {
            reply.reject(488, "399 acd \"no media on this leg\"".into());
            return;
        };
        let mut direction = sdp::Direction::SendRecv;
        if !body.is_empty() {
            match sdp::parse(body) {
                Ok(offer) => {
                    let codec = if offer.codecs.contains(&n.codec) {
                        n.codec
                    } else if let Some(&c) = offer.codecs.first() {
                        c
                    } else {
                        reply.reject(488, format!("305 acd \"no common codec: offered {}\"", offer.offered.join(", ")));
                        return;
                    };
                    let n = Negotiated { codec, dtmf_pt: offer.dtmf_pt.or(n.dtmf_pt) };
                    self.leg_codecs.insert(leg, n);
                    self.plane.set_remote(leg.0, offer.addr, codec, n.dtmf_pt);
                    direction = offer.direction;
                }
                Err(e) => {
                    reply.reject(488, format!("399 acd \"{e}\""));
                    return;
                }
            }
        }
        let held = direction != sdp::Direction::SendRecv;
        info!(%leg, held, "re-INVITE");
        self.plane.set_held(leg.0, held);
        let n = self.leg_codecs[&leg];
        let local = SocketAddr::new(self.plane_ip(), port);
        let version = self.sdp_versions.entry(leg).or_insert(leg.0);
        *version += 1;
        reply.answer(sdp::build_with(local, leg.0, *version, &[n.codec], n.dtmf_pt, direction.answer()).into_bytes());
    }

    fn plane_ip(&self) -> std::net::IpAddr {
        rtp_ip(self.core.config())
    }

    /// A leg ended: its RTP ports go back to the pool.
    fn close_media(&mut self, leg: LegId) {
        self.offers.remove(&leg);
        self.leg_codecs.remove(&leg);
        self.sdp_versions.remove(&leg);
        self.plane.close(leg.0);
    }

    /// Media for legs call control no longer knows (a path that ended a leg
    /// without passing through `close_media`): closed and counted.
    fn sweep_media(&mut self) {
        for key in self.plane.leg_keys() {
            let leg = LegId(key);
            if self.core.leg_call(leg).is_none() {
                warn!(%leg, "media outlived its leg; closed");
                metrics::counter!("acd_media_orphans_total").increment(1);
                self.close_media(leg);
            }
        }
        let p = self.plane.published();
        metrics::gauge!("acd_media_legs").set(self.plane.leg_count() as f64);
        metrics::gauge!("acd_media_listeners").set(p.listeners as f64);
        metrics::gauge!("acd_rtp_ports_in_use").set(self.plane.ports_in_use() as f64);
        let window = p.stats.since(&self.prev_lateness);
        metrics::gauge!("acd_media_pacing_p99_seconds").set(window.lateness_quantile_us(0.99) as f64 / 1e6);
        self.prev_lateness = p.stats.clone();
    }

    pub fn on_media(&mut self, ev: MediaEvent) {
        match ev {
            MediaEvent::Timeout { leg } => {
                let leg = LegId(leg);
                let secs = self.core.config().media.timeout_secs;
                info!(%leg, "no RTP for {secs} s: ending the call");
                metrics::counter!("acd_media_timeouts_total").increment(1);
                let now = self.now();
                self.core.media_lost(now, leg);
                self.flush();
            }
        }
    }

    fn report(&mut self, event: Event) {
        let now = self.now();
        let engine = self.core.engine();
        self.metrics.observe(now, engine, &event);
        if self.event_log.is_some() || self.event_feed.receiver_count() > 0 {
            let line = event_json(engine, self.start_unix_ms + now.0, &event);
            if let Some(log) = &mut self.event_log {
                if let Err(e) = log.write(&line) {
                    warn!("event log write failed: {e}");
                }
            }
            if self.event_feed.receiver_count() > 0 {
                self.event_feed.send(Arc::from(line.to_string())).ok();
            }
        }
        match &event {
            Event::AgentStateChanged { agent, from, to, reason } => {
                info!(agent = engine.agent_name(*agent), "{from} => {to} ({reason})");
            }
            Event::CallFinished { .. } => info!(?event, "call finished"),
            Event::Offered { call, decision, .. } => {
                debug!(%call, ?decision, "offered");
            }
            _ => info!(?event, "event"),
        }
    }
}

/// Where RTP binds and what SDP names: `media.rtp_address`, else the first
/// SIP listen address (loopback if that is a wildcard).
fn rtp_ip(config: &Config) -> std::net::IpAddr {
    if let Some(ip) = config.media.rtp_address {
        return ip;
    }
    match config.sip.listen_udp.first().or(config.sip.listen_tcp.first()).map(|a| a.ip()) {
        Some(ip) if !ip.is_unspecified() => ip,
        _ => std::net::IpAddr::from([127, 0, 0, 1]),
    }
}

fn music_classes(config: &Config) -> Vec<MusicClass> {
    config.media.music.iter().map(|m| MusicClass { name: m.name.clone(), clip: m.clip.clone() }).collect()
}
