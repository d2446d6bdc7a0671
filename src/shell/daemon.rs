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

use super::admin::{AdminReply, AdminRequest};
use super::error::ShellError;
use super::handle::{Control, Snapshot};
use super::media_legs::MediaLegs;
use super::ops::{FdBudget, Ops};
use super::sessions::{Due, Sessions};
use super::timers::{Timer, TimerTable};
use crate::callctl::Core;
use crate::config::Config;
use crate::engine::Time;
use crate::media::plane::MediaEvent;
use crate::sip::adapter::{Raw, SipStack};
use crate::sip::front::FrontDoor;
use crate::sip::session_timer::UasPolicy;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::info;

mod callback;
mod commands;
mod control;
mod early;
mod inbound;
mod state_file;

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
    /// When freed heap goes back to the OS after a peak.
    trim: super::ops::TrimPolicy,
    /// Callers hearing the callback confirmation, BYEd at the instant (callback.rs).
    confirming: Vec<(Instant, crate::callctl::LegId)>,
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
            trim: Default::default(),
            confirming: Vec::new(),
        };
        d.fds.sample(0);
        // Engine time 0 is `start`; business hours need the wall clock.
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let since_start = Instant::now().saturating_duration_since(start);
        d.core.set_wall_clock(wall.as_millis() as i64 - since_start.as_millis() as i64);
        d.flush(start);
        d.restore_callbacks(Instant::now());
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
                    self.ops.refresh(t, &self.core, self.front.counters(), &self.stack.counts());
                    self.fds.sample(self.media.plane().ports_in_use());
                    self.timers.set(Timer::Refresh, now + Duration::from_secs(1));
                }
                Timer::MediaSweep => {
                    self.stack.repeat_provisionals(now.into_std()); // early callers (RFC 3261 §13.3.1.1)
                    let core = &self.core;
                    let confirming = &self.confirming;
                    self.media.sweep(|leg| core.leg_call(leg).is_some() || confirming.iter().any(|(_, l)| *l == leg));
                    // What holds heap: calls, and the stack's transactions
                    // (finished ones stay 64*T1 after their calls ended).
                    let stack = self.stack.counts();
                    let held = self.core.call_count() + stack.running_transactions + stack.finished_transactions;
                    if self.trim.check(now, held) {
                        let t0 = Instant::now();
                        super::ops::trim_heap();
                        tracing::debug!(took = ?t0.elapsed(), "heap trimmed");
                    }
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
                Timer::CallbackBye => self.callback_byes(now),
            }
        }
        self.flush(now);
    }
}
