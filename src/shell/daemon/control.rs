//! The daemon's control side: SIGTERM's drain, the admin API's requests and
//! config reloads. Each runs in one wake-up with the instant it was read at.

use super::{Daemon, Drain};
use crate::engine::{CallId, Input};
use crate::shell::admin::{AdminReply, AdminRequest, AgentAction};
use crate::shell::error::ReloadError;
use crate::shell::timers::Timer;
use crate::shell::views;
use crate::sip::session_timer::UasPolicy;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

impl Daemon {
    /// SIGTERM: new calls get 503 + Retry-After, waiting callers go to their
    /// overflow targets, bridged calls have the grace period to finish.
    pub(super) fn begin_shutdown(&mut self, now: Instant) {
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
        self.save_callbacks(now);
        self.core.drain(self.time(now));
        self.flush(now);
    }

    /// Done draining: every call has ended, or they were hung up and their
    /// BYEs have had their moment. Orphan legs (cancelled INVITEs waiting for
    /// their final response) are no calls and are not waited for.
    pub(super) fn drained(&self, _now: Instant) -> bool {
        match self.drain {
            Drain::Running => false,
            _ if self.core.call_count() == 0 => true,
            Drain::Draining => false,
            Drain::HungUp => !self.timers.is_set(Timer::Drain),
        }
    }

    /// The drain timer: the grace period is over (hang up the rest, give
    /// their BYEs 2 s), or those 2 s are.
    pub(super) fn drain_timer(&mut self, now: Instant) {
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
    pub(super) fn admin(&mut self, now: Instant, req: AdminRequest) -> AdminReply {
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
            AdminRequest::Schedules => AdminReply::ok(views::schedules(&self.core)),
            AdminRequest::Emergency { schedule, state } => {
                match self.core.handle_engine(t, Input::SetEmergency { schedule: schedule.clone(), state }) {
                    Ok(()) => AdminReply::ok(views::schedules(&self.core)),
                    Err(e @ crate::engine::EngineError::UnknownSchedule(_)) => AdminReply::error(404, e.to_string()),
                    Err(e) => AdminReply::error(409, e.to_string()),
                }
            }
            AdminRequest::TransferCall { call, queue, agent } => {
                use crate::engine::TransferTarget;
                let engine = self.core.engine();
                let (to, name) = match (&queue, &agent) {
                    (Some(q), _) => match engine.queue_id(q) {
                        Some(id) => (TransferTarget::Queue(id), json!({ "call": call, "queue": q })),
                        None => return AdminReply::error(404, format!("no queue \"{q}\"")),
                    },
                    (None, Some(a)) => match engine.agent_id(a) {
                        Some(id) => (TransferTarget::Agent(id), json!({ "call": call, "agent": a, "ringing": true })),
                        None => return AdminReply::error(404, format!("no agent \"{a}\"")),
                    },
                    (None, None) => return AdminReply::error(400, "give either \"queue\" or \"agent\""),
                };
                match self.core.transfer(t, CallId(call), to) {
                    Ok(()) => AdminReply::ok(name),
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
    pub(super) fn reload(&mut self, now: Instant) -> Result<(), ReloadError> {
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
            (new.sip.io_thread != old.sip.io_thread, "sip.io_thread"),
            (new.sip.workers != old.sip.workers, "sip.workers"),
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
}
