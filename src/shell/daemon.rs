//! The daemon loop: SIP in, core decisions out.
//!
//! One tokio task selects over SIP, media events, control requests, config
//! file changes, signals and one sleep. After each wake-up it reads the clock
//! once and hands that instant to whatever woke it and to every timer that is
//! due: the core's, the front door's, the adapter's ACK wait and the shell's
//! own [`TimerTable`].
//!
//! Who decides what: the [`FrontDoor`] answers or admits every out-of-dialog
//! request; the [`Core`] decides calls; this module only carries the core's
//! commands to the SIP adapter and the media plane, and the core's events to
//! the metrics and logs.

use super::admin::{AdminReply, AdminRequest, AgentAction};
use super::error::{ReloadError, ShellError};
use super::handle::{Control, Snapshot};
use super::media_legs::MediaLegs;
use super::ops::{FdBudget, Ops};
use super::sessions::{Due, Sessions};
use super::timers::{Timer, TimerTable};
use super::views;
use crate::callctl::{Command, Core, LegId, SipEvent, Target};
use crate::config::Config;
use crate::engine::{CallId, Input, Time};
use crate::media::plane::MediaEvent;
use crate::sip::adapter::{Inbound, Method, Raw, Request, SipStack, Transport};
use crate::sip::front::{Capacity, FeatureCode, FrontDoor, Verdict};
use crate::sip::registrar;
use crate::sip::session_timer::UasPolicy;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Everything the daemon holds. Public so tests can drive it in-process.
pub struct Daemon {
    core: Core,
    front: FrontDoor,
    stack: SipStack,
    media: MediaLegs,
    /// RFC 4028 session timers of the callers' dialogs.
    sessions: Sessions,
    ops: Ops,
    timers: TimerTable,
    /// Core time 0.
    start: Instant,
    /// Where the config came from (reloads read it again).
    config_path: Option<PathBuf>,
    drain: Drain,
    /// Reloads applied, refused.
    reloads: (usize, usize),
    fds: FdBudget,
}

/// SIGTERM's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    Running,
    /// No new calls; the rest have until `Timer::Drain` to finish.
    Draining,
    /// The grace period ended and the remaining calls were hung up; their
    /// BYEs have until `Timer::Drain` to leave.
    HungUp,
}

/// What woke the loop.
enum Wake {
    Shutdown,
    Timer,
    Raw(Raw),
    Media(MediaEvent),
    Control(Option<Control>),
    FileChanged,
    Hangup,
}

/// Runs the daemon until SIGTERM/SIGINT (`shutdown`) has been drained.
/// SIGHUP reloads the config and reopens the event log.
pub async fn run(
    config: Config,
    path: PathBuf,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ShellError> {
    // SIGHUP's handler exists before "acd running" is logged: a reload sent
    // as soon as the daemon says it runs must not kill it (the default
    // action of SIGHUP).
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map_err(ShellError::Signal)?;
    let (daemon, raw, media) = Daemon::start(config, Some(path.clone())).await?;
    let (control_tx, control_rx) = mpsc::channel::<Control>(super::handle::CONTROL_CAPACITY);
    daemon.serve_admin(control_tx).await?;
    info!("acd running on {}; Ctrl-C to stop", path.display());
    drive(daemon, raw, media, control_rx, shutdown, Some(hup), None).await;
    Ok(())
}

/// The daemon loop.
pub(super) async fn drive(
    mut daemon: Daemon,
    mut raw: mpsc::Receiver<Raw>,
    mut media: mpsc::Receiver<MediaEvent>,
    mut control: mpsc::Receiver<Control>,
    shutdown: impl std::future::Future<Output = ()>,
    mut hup: Option<tokio::signal::unix::Signal>,
    snapshot: Option<Arc<Mutex<Snapshot>>>,
) {
    tokio::pin!(shutdown);
    let (file_tx, mut file_rx) = mpsc::channel::<()>(16);
    let _watcher = daemon.config_path.as_deref().and_then(|p| super::watch::watch(p, file_tx));
    let debounce = Duration::from_millis(daemon.core.config().ops.reload_debounce_ms as u64);
    let mut shutdown_seen = false;
    // With the admin API off nothing holds the control sender; a closed
    // channel is ready at once, so it must leave the select or the loop spins.
    let mut control_open = true;
    let mut now = Instant::now();
    loop {
        if let Some(s) = &snapshot {
            *s.lock().expect("snapshot lock") = daemon.snapshot();
        }
        if daemon.drained(now) {
            break;
        }
        let mut deadline = daemon.deadline(now);
        // Tests read the snapshot: keep it fresh.
        if snapshot.is_some() {
            deadline = deadline.min(now + Duration::from_millis(100));
        }
        let wake = tokio::select! {
            _ = &mut shutdown, if !shutdown_seen => Wake::Shutdown,
            _ = tokio::time::sleep_until(deadline) => Wake::Timer,
            item = raw.recv() => match item {
                Some(item) => Wake::Raw(item),
                None => break,
            },
            Some(ev) = media.recv() => Wake::Media(ev),
            ctl = control.recv(), if control_open => Wake::Control(ctl),
            Some(()) = file_rx.recv() => Wake::FileChanged,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => Wake::Hangup,
        };
        now = Instant::now();
        match wake {
            Wake::Shutdown => {
                shutdown_seen = true;
                daemon.begin_shutdown(now);
            }
            Wake::Timer => {}
            Wake::Raw(item) => daemon.on_raw(now, item),
            Wake::Media(ev) => daemon.on_media(now, ev),
            Wake::Control(Some(Control::Reload(reply))) => {
                let r = daemon.reload(now);
                if let Some(reply) = reply {
                    reply.send(r).ok();
                }
            }
            Wake::Control(Some(Control::Admin(req, reply))) => {
                reply.send(daemon.admin(now, req)).ok();
            }
            Wake::Control(Some(Control::Shutdown)) => daemon.begin_shutdown(now),
            Wake::Control(None) => control_open = false,
            Wake::FileChanged => daemon.timers.set(Timer::Reload, now + debounce),
            Wake::Hangup => {
                info!("SIGHUP: reloading the config and reopening the event log");
                daemon.ops.reopen_event_log();
                daemon.reload(now).ok();
            }
        }
        daemon.on_timers(now);
        daemon.drain_reports(now);
    }
    if daemon.drain != Drain::Running {
        // Let the last BYEs and final responses leave before the sockets close.
        let until = Instant::now() + Duration::from_millis(300);
        while let Ok(Some(item)) = tokio::time::timeout_at(until, raw.recv()).await {
            daemon.on_raw(Instant::now(), item);
            daemon.drain_reports(Instant::now());
        }
    }
    daemon.stack.shutdown();
    daemon.media.shutdown();
    info!("acd stopped");
}

impl Daemon {
    pub async fn start(
        config: Config,
        config_path: Option<PathBuf>,
    ) -> Result<(Daemon, mpsc::Receiver<Raw>, mpsc::Receiver<MediaEvent>), ShellError> {
        let (stack, raw) = SipStack::start(&config.sip).await?;
        for a in &config.sip.listen_udp {
            info!("listening on udp {a}");
        }
        for a in &config.sip.listen_tcp {
            info!("listening on tcp {a}");
        }
        let start = Instant::now();
        // Nonces must not be guessable: seed from the OS-random SipHash keys
        // and the clock, never from the routing seed in the config.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        let front = FrontDoor::new(&config, h.finish());
        let ops = Ops::start(&config)?;
        let (media, media_rx) = MediaLegs::start(&config)?;
        let mut timers = TimerTable::default();
        if config.sip.options_interval_secs > 0 {
            timers.set(Timer::KeepAlive, start + Duration::from_secs(config.sip.options_interval_secs as u64));
        }
        timers.set(Timer::Refresh, start);
        timers.set(Timer::MediaSweep, start);
        let mut d = Daemon {
            core: Core::new(&config, Time(0)),
            front,
            stack,
            media,
            sessions: Sessions::new(UasPolicy::from(&config.sip)),
            ops,
            timers,
            start,
            config_path,
            drain: Drain::Running,
            reloads: (0, 0),
            fds: FdBudget::new(),
        };
        d.fds.sample(0);
        d.flush(start);
        Ok((d, raw, media_rx))
    }

    /// Binds the admin API (if configured) and serves it on this runtime.
    pub(super) async fn serve_admin(&self, control: mpsc::Sender<Control>) -> Result<Option<SocketAddr>, ShellError> {
        let ops = &self.core.config().ops;
        let Some(addr) = ops.admin_listen else { return Ok(None) };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ShellError::AdminListen { addr, reason: e.to_string() })?;
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
        let router = super::admin::router(tx, self.ops.event_feed.clone(), ops.admin_token.clone());
        tokio::spawn(super::admin::serve(listener, router));
        info!("admin API on http://{bound}");
        Ok(Some(bound))
    }

    pub fn snapshot(&self) -> Snapshot {
        let plane = self.media.plane();
        Snapshot {
            calls: self.core.call_count(),
            legs: self.core.leg_count(),
            engine_calls: self.core.engine().call_count(),
            stack: self.stack.counts(),
            registered_contacts: self.front.registrar().len(),
            errors: self.core.errors().total() as usize,
            races: self.core.races().total(),
            reloads: self.reloads.0,
            failed_reloads: self.reloads.1,
            media_legs: plane.leg_count(),
            rtp_ports_in_use: plane.ports_in_use(),
            session_timers: self.sessions.len(),
        }
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    fn time(&self, now: Instant) -> Time {
        Time(now.saturating_duration_since(self.start).as_millis() as u64)
    }

    fn at(&self, t: Time) -> Instant {
        self.start + Duration::from_millis(t.0)
    }

    /// The earliest of every deadline: the shell's table, the core's, the
    /// front door's (registrations) and the adapter's (ACK waits).
    fn deadline(&self, now: Instant) -> Instant {
        [
            self.timers.next(),
            self.core.poll_timeout().map(|t| self.at(t)),
            self.front.poll_timeout().map(|t| self.at(t)),
            self.stack.next_ack_deadline().map(Instant::from_std),
            self.sessions.poll_timeout().map(|t| self.at(t)),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now + Duration::from_secs(3600))
    }

    /// The adapter's own final reports (a leg it could not start): handled
    /// in the same wake-up, never dropped.
    fn drain_reports(&mut self, now: Instant) {
        // Each report may start another leg that fails at once (the next
        // agent): bounded by the legs the core can start, but cap it anyway.
        for _ in 0..10_000 {
            let Some(report) = self.stack.poll_report() else { return };
            self.on_raw(now, report);
        }
    }

    /// Everything due at `now`.
    fn on_timers(&mut self, now: Instant) {
        let t = self.time(now);
        if self.core.poll_timeout().is_some_and(|at| at <= t) {
            self.core.handle_timeout(t);
        }
        if self.front.poll_timeout().is_some_and(|at| at <= t) {
            self.front.handle_timeout(t);
            self.presence(t);
        }
        for leg in self.stack.expire_unacked(now.into_std()) {
            // RFC 3261 §13.3.1.4: a 200 never ACKed ends the session.
            info!(%leg, "caller never ACKed acd's 200: ending the call");
            metrics::counter!("acd_unacked_answers_total").increment(1);
            self.end_caller(t, leg);
        }
        for due in self.sessions.handle_timeout(t) {
            match due {
                Due::Expired(leg) => {
                    // RFC 4028 §10: no refresh in time, the trunk is gone.
                    info!(%leg, "session timer expired without a refresh: ending the call");
                    metrics::counter!("acd_session_timer_expiries_total").increment(1);
                    self.end_caller(t, leg);
                }
                Due::Refresh(leg) => {
                    let headers = self.sessions.refresh_request(leg);
                    self.stack.refresh(leg, headers);
                }
            }
        }
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Refresh => {
                    self.ops.refresh(t, &self.core, self.front.counters());
                    self.fds.sample(self.media.plane().ports_in_use());
                    self.timers.set(Timer::Refresh, now + Duration::from_secs(1));
                }
                Timer::MediaSweep => {
                    let core = &self.core;
                    self.media.sweep(|leg| core.leg_call(leg).is_some());
                    self.timers.set(Timer::MediaSweep, now + Duration::from_secs(5));
                }
                Timer::KeepAlive => {
                    self.keep_alive();
                    let every = self.core.config().sip.options_interval_secs as u64;
                    if every > 0 {
                        self.timers.set(Timer::KeepAlive, now + Duration::from_secs(every));
                    }
                }
                Timer::Reload => {
                    info!("config file changed; reloading");
                    self.reload(now).ok();
                }
                Timer::Drain => self.drain_timer(now),
            }
        }
        self.flush(now);
    }

    /// SIGTERM: new calls get 503 + Retry-After, waiting callers go to their
    /// overflow targets, bridged calls have the grace period to finish.
    fn begin_shutdown(&mut self, now: Instant) {
        if self.drain != Drain::Running {
            return;
        }
        let grace = self.core.config().ops.shutdown_grace_secs;
        info!(
            "shutting down: no new calls, waiting callers to overflow, {} call(s) have {grace} s to finish",
            self.core.call_count()
        );
        self.drain = Drain::Draining;
        self.timers.set(Timer::Drain, now + Duration::from_secs(grace as u64));
        self.core.drain(self.time(now));
        self.flush(now);
    }

    /// Done draining: every call has ended, or they were hung up and their
    /// BYEs have had their moment. Orphan legs (cancelled INVITEs waiting for
    /// their final response) are no calls and are not waited for.
    fn drained(&self, _now: Instant) -> bool {
        match self.drain {
            Drain::Running => false,
            _ if self.core.call_count() == 0 => true,
            Drain::Draining => false,
            Drain::HungUp => !self.timers.is_set(Timer::Drain),
        }
    }

    /// The drain timer: the grace period is over (hang up the rest, give
    /// their BYEs 2 s), or those 2 s are.
    fn drain_timer(&mut self, now: Instant) {
        if self.drain != Drain::Draining {
            return;
        }
        warn!("grace period over: hanging up {} call(s)", self.core.call_count());
        self.core.hang_up_all(self.time(now));
        self.flush(now);
        self.drain = Drain::HungUp;
        self.timers.set(Timer::Drain, now + Duration::from_secs(2));
    }

    /// Answers an admin API request from the core's state.
    fn admin(&mut self, now: Instant, req: AdminRequest) -> AdminReply {
        use serde_json::json;
        let t = self.time(now);
        let unknown_call = |call: u64| AdminReply::error(404, format!("no call {call}"));
        let reply = match req {
            AdminRequest::Ready if self.drain != Drain::Running => AdminReply::error(503, "shutting down"),
            AdminRequest::Ready => AdminReply::ok(json!({ "status": "ready" })),
            AdminRequest::Queues => AdminReply::ok(views::queues(&self.core, &self.ops.metrics)),
            AdminRequest::Agents => AdminReply::ok(views::agents(&self.core, self.front.registrar())),
            AdminRequest::Calls => AdminReply::ok(views::calls(&self.core, t)),
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
                match self.core.handle_engine(t, input) {
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
                match self.core.handle_engine(t, Input::MoveCall { call: CallId(call), queue: q }) {
                    Ok(()) => AdminReply::ok(json!({ "call": call, "queue": queue })),
                    Err(crate::engine::EngineError::UnknownCall(_)) => unknown_call(call),
                    Err(e) => AdminReply::error(409, e.to_string()),
                }
            }
            AdminRequest::WithdrawCall { call, status } => {
                match self.core.handle_engine(t, Input::WithdrawCall { call: CallId(call), status }) {
                    Ok(()) => AdminReply::ok(json!({ "call": call, "withdrawn": true, "status": status })),
                    Err(crate::engine::EngineError::UnknownCall(_)) => unknown_call(call),
                    Err(e) => AdminReply::error(409, e.to_string()),
                }
            }
        };
        self.flush(now);
        reply
    }

    /// Reads the config file again and applies it whole, or changes nothing.
    fn reload(&mut self, now: Instant) -> Result<(), ReloadError> {
        let path = self.config_path.clone().ok_or(ReloadError::NoFile)?;
        let new = match crate::config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                self.reloads.1 += 1;
                metrics::counter!("acd_config_reload_failures_total").increment(1);
                warn!("reload refused, nothing changed: {e}");
                return Err(e.into());
            }
        };
        let old = self.core.config();
        let restart = [
            (
                new.sip.listen_udp != old.sip.listen_udp || new.sip.listen_tcp != old.sip.listen_tcp,
                "sip.listen_udp / sip.listen_tcp",
            ),
            (new.ops.metrics_listen != old.ops.metrics_listen, "metrics.listen"),
            (
                new.ops.admin_listen != old.ops.admin_listen || new.ops.admin_token != old.ops.admin_token,
                "admin.listen / admin.token",
            ),
            (new.ops.event_log != old.ops.event_log, "event_log.path"),
        ];
        for (_, key) in restart.iter().filter(|(changed, _)| *changed) {
            warn!("{key} changed: takes effect after a restart (the running value stays)");
        }
        self.media.reload(old, &new);
        self.front.reload(&new);
        self.sessions.reconfigure(UasPolicy::from(&new.sip));
        self.ops.metrics.reload(&new);
        self.core.reload(self.time(now), new);
        self.reloads.0 += 1;
        metrics::counter!("acd_config_reloads_total").increment(1);
        info!("config reloaded from {}", path.display());
        self.flush(now);
        Ok(())
    }

    pub fn on_raw(&mut self, now: Instant, raw: Raw) {
        let t = self.time(now);
        match self.stack.absorb(raw) {
            None => {}
            Some(Inbound::Request(r)) => self.request(now, *r),
            Some(Inbound::Leg(ev)) => self.leg_event(t, ev),
            Some(Inbound::Reinvite { leg, update, sdp, headers, reply }) => {
                match self.in_dialog_update(t, leg, update, &sdp, &headers) {
                    Ok((answer, extra)) => reply.answer(answer, extra),
                    Err((status, extra)) => reply.reject(status, extra),
                }
            }
            Some(Inbound::RefreshDone { leg, status, headers }) => {
                if self.sessions.own_refresh_done(t, leg, status, &headers) {
                    info!(%leg, ?status, "session refresh failed: ending the call");
                    metrics::counter!("acd_session_timer_expiries_total").increment(1);
                    self.end_caller(t, leg);
                }
            }
            Some(Inbound::Answered { leg, sdp }) => {
                self.media.answered(leg, &sdp);
                self.leg_event(t, SipEvent::Answered { leg });
            }
            Some(Inbound::KeepAlive { reachable: true, .. }) => {}
            Some(Inbound::KeepAlive { user, contact, reachable: false }) => {
                warn!(%user, %contact, "phone did not answer OPTIONS; not ringing it until it registers again");
                self.front.remove_contact(t, &user, &contact);
                self.presence(t);
            }
        }
        self.flush(now);
    }

    /// acd ends a caller's leg itself (no ACK, no session refresh): BYE, and
    /// the core hears it as a hang-up.
    fn end_caller(&mut self, t: Time, leg: LegId) {
        self.drop_leg(leg);
        self.stack.bye(leg);
        self.core.handle_sip(t, SipEvent::CallerHungUp { leg });
    }

    /// A leg is over for acd: its media and its session timer go.
    fn drop_leg(&mut self, leg: LegId) {
        self.media.close(leg);
        self.sessions.remove(leg);
    }

    /// A re-INVITE or UPDATE in a leg's dialog: media first (an offer acd
    /// cannot take is 488 whatever the timer says), then the session timer
    /// of a caller's leg.
    fn in_dialog_update(
        &mut self,
        t: Time,
        leg: LegId,
        update: bool,
        sdp: &[u8],
        headers: &[(String, String)],
    ) -> Result<(Vec<u8>, Vec<(String, String)>), (u16, Vec<(String, String)>)> {
        let answer = if update && sdp.is_empty() {
            Vec::new()
        } else {
            self.media.reinvite(leg, sdp).map_err(|r| (r.status, vec![("Warning".to_string(), r.warning)]))?
        };
        let is_caller = self.core.leg_call(leg).is_some_and(|call| self.core.caller_leg(call) == Some(leg));
        let extra = if is_caller {
            self.sessions.refresh(t, leg, headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))?
        } else {
            Vec::new()
        };
        Ok((answer, extra))
    }

    /// A leg's event to the core; a leg the core let go of loses its media.
    fn leg_event(&mut self, t: Time, ev: SipEvent) {
        let leg = ev.leg();
        self.core.handle_sip(t, ev);
        if self.core.leg_call(leg).is_none() {
            self.drop_leg(leg);
        }
    }

    pub fn on_media(&mut self, now: Instant, ev: MediaEvent) {
        match ev {
            MediaEvent::Timeout { leg } => {
                let leg = LegId(leg);
                info!(%leg, "no RTP for {} s: ending the call", self.core.config().media.timeout_secs);
                metrics::counter!("acd_media_timeouts_total").increment(1);
                self.core.media_lost(self.time(now), leg);
                self.flush(now);
            }
        }
    }

    fn keep_alive(&mut self) {
        let timeout = Duration::from_secs(self.core.config().sip.options_timeout_secs as u64);
        for a in &self.core.config().agents {
            for b in self.front.registrar().contacts(&a.sip_user) {
                let dest = (b.source, transport(b.transport));
                self.stack.keep_alive(a.sip_user.clone(), b.contact.clone(), dest, timeout);
            }
        }
    }

    /// An out-of-dialog request: the front door decides.
    fn request(&mut self, now: Instant, r: Request) {
        let t = self.time(now);
        let plane = self.media.plane();
        let capacity = Capacity {
            calls: self.core.call_count(),
            rtp_pairs_free: plane.free_pairs(),
            fds_free: self.fds.free(plane.ports_in_use(), plane.sockets_per_leg()),
            unacked_from_source: self.stack.unacked_from(r.source.ip()),
            draining: self.drain != Drain::Running,
        };
        let verdict = self.front.handle(t, &r, &capacity);
        self.presence(t);
        match verdict {
            Verdict::Reply(reply) => {
                if r.method == Method::Invite && reply.status >= 300 && !matches!(reply.status, 401 | 407) {
                    metrics::counter!("acd_calls_refused_total", "status" => reply.status.to_string()).increment(1);
                }
                self.stack.reply(r.tx, reply.status, reply.headers);
            }
            Verdict::Call { call, offer, session } => {
                let (caller, dialled, trunk) = (call.caller.clone(), call.dialled.clone(), call.trunk.clone());
                match self.core.incoming_call(t, call) {
                    Ok((call, leg)) => {
                        info!(%call, %caller, %dialled, %trunk, "call arrived");
                        self.media.offered(leg, offer);
                        self.sessions.admitted(leg, session);
                        self.stack.bind_caller(r.tx, leg);
                    }
                    Err(refusal) => {
                        info!(%caller, %dialled, "refused: {refusal}");
                        let status = refusal.status();
                        metrics::counter!("acd_calls_refused_total", "status" => status.to_string()).increment(1);
                        let retry = refusal.retry_after().map(|s| ("Retry-After".to_string(), s.to_string()));
                        self.stack.reply(r.tx, status, retry.into_iter().collect());
                    }
                }
            }
            Verdict::FeatureCode { agent, code } => self.feature_code(t, r, &agent, code),
        }
    }

    fn feature_code(&mut self, t: Time, r: Request, agent: &str, code: FeatureCode) {
        let Some(id) = self.core.engine().agent_id(agent) else {
            self.stack.reply(r.tx, 404, vec![]);
            return;
        };
        let input = match code {
            FeatureCode::Login => Input::AgentLogin { agent: id },
            FeatureCode::Logout => Input::AgentLogout { agent: id },
            FeatureCode::Pause => Input::AgentPause { agent: id, reason: "paused from the phone".into() },
            FeatureCode::Ready => Input::AgentReady { agent: id },
        };
        match self.core.handle_engine(t, input) {
            Ok(()) => {
                info!(%agent, code = %r.uri_user, "feature code");
                let sdp = self.media.feature_code_sdp();
                self.stack.answer_and_hang_up(r.tx, sdp, Duration::from_millis(500));
            }
            Err(e) => {
                info!(%agent, code = %r.uri_user, "feature code refused: {e}");
                self.stack.reply(r.tx, 403, vec![("Warning".into(), format!("399 acd \"{e}\""))]);
            }
        }
    }

    /// Registration changes the front door reported, to the engine.
    fn presence(&mut self, t: Time) {
        while let Some(p) = self.front.poll_presence() {
            let Some(agent) = self.core.engine().agent_id(&p.agent) else { continue };
            let input =
                if p.registered { Input::AgentRegistered { agent } } else { Input::AgentUnregistered { agent } };
            if let Err(e) = self.core.handle_engine(t, input) {
                debug!(error = %e, "registration input");
            }
        }
    }

    /// Carries out the core's commands and reports its events.
    fn flush(&mut self, now: Instant) {
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

    fn execute(&mut self, t: Time, cmd: Command) {
        debug!(?cmd, "command");
        match cmd {
            Command::AnswerCaller { call, leg } => {
                let sdp = self.media.answer_caller(call, leg);
                let headers = self.sessions.answered(t, leg);
                self.stack.answer_caller(leg, sdp, headers);
            }
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
            Command::Hold { leg, music, .. } => self.media.hold(leg, &music),
            Command::StopHold { leg, .. } => self.media.stop_hold(leg),
            Command::Bridge { caller, other, .. } => self.media.bridge(caller, other),
            Command::Announce { leg, position, estimated_wait_secs, .. } => {
                self.media.announce(self.core.config(), leg, position, estimated_wait_secs)
            }
        }
    }

    /// acd's INVITE to an agent's phone or an overflow target.
    fn invite_leg(&mut self, t: Time, call: CallId, leg: LegId, target: Target, caller: &str) {
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
                let binding = self.front.registrar().contacts(&user).next().map(|b| {
                    let dest = crate::sip::front::agent_destination(&b.contact, b.source, b.transport);
                    (b.contact.clone(), dest.map(|a| (a, transport(b.transport))))
                });
                match binding {
                    Some((contact, dest)) => self.stack.invite(leg, &contact, dest, caller, sdp),
                    None => {
                        self.core.handle_sip(t, SipEvent::Failed { leg, status: None });
                        self.drop_leg(leg);
                    }
                }
            }
            Target::Uri(uri) => self.stack.invite(leg, &uri, None, caller, sdp),
        }
    }
}

fn transport(t: registrar::Transport) -> Transport {
    match t {
        registrar::Transport::Udp => Transport::Udp,
        registrar::Transport::Tcp => Transport::Tcp,
    }
}
