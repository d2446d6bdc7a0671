//! The shell's outputs to people: the Prometheus exporter and the metrics
//! it publishes, the event log and the admin API's event feed, and the
//! file-descriptor count the admission policy reads.

use super::error::ShellError;
use crate::callctl::Core;
use crate::config::Config;
use crate::engine::{Engine, Event, Time};
use crate::ops::eventlog::{event_json, EventLog};
use crate::ops::metrics::{install_exporter, Metrics};
use crate::sip::adapter::StackCounts;
use crate::sip::front::{FrontCounters, Shortage};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

/// Engine events queued for each admin `/events` subscriber at most; a slow
/// one misses events (and is told so by the stream) rather than growing it.
const EVENT_FEED_CAPACITY: usize = 1024;

pub struct Ops {
    pub metrics: Metrics,
    event_log: Option<EventLog>,
    /// Engine events as JSON, for the admin API's `/events` stream.
    pub event_feed: broadcast::Sender<Arc<str>>,
    /// Wall clock at the daemon's start, for the event log's timestamps.
    start_unix_ms: u64,
}

impl Ops {
    pub fn start(config: &Config) -> Result<Ops, ShellError> {
        if let Some(addr) = config.ops.metrics_listen {
            match install_exporter(addr) {
                Ok(()) => {
                    info!("Prometheus metrics on http://{addr}/metrics");
                    describe();
                    for listen in &config.sip.listen_udp {
                        crate::sip::socket::TimedUdpSocket::register(*listen);
                    }
                }
                Err(e) => warn!("metrics exporter on {addr} not started: {e}"),
            }
        }
        let event_log = match &config.ops.event_log {
            Some(path) => {
                let log = EventLog::open(path, config.ops.event_log_max_bytes, config.ops.event_log_keep)
                    .map_err(|e| ShellError::EventLog { path: path.clone(), reason: e.to_string() })?;
                info!("event log: {}", path.display());
                Some(log)
            }
            None => None,
        };
        Ok(Ops {
            metrics: Metrics::new(config, Duration::from_secs(config.ops.metrics_window_secs as u64)),
            event_log,
            event_feed: broadcast::channel(EVENT_FEED_CAPACITY).0,
            start_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
        })
    }

    /// An engine event: metrics, the event log, the feed, the log.
    pub fn report(&mut self, now: Time, engine: &Engine, event: &Event) {
        self.metrics.observe(now, engine, event);
        if self.event_log.is_some() || self.event_feed.receiver_count() > 0 {
            let line = event_json(engine, self.start_unix_ms + now.0, event);
            if let Some(log) = &mut self.event_log {
                if let Err(e) = log.write(&line) {
                    warn!("event log write failed: {e}");
                }
            }
            if self.event_feed.receiver_count() > 0 {
                self.event_feed.send(Arc::from(line.to_string())).ok();
            }
        }
        match event {
            Event::AgentStateChanged { agent, from, to, reason } => {
                info!(agent = engine.agent_name(*agent), "{from} => {to} ({reason})");
            }
            Event::CallFinished { .. } => info!(?event, "call finished"),
            Event::Offered { call, decision, .. } => debug!(%call, ?decision, "offered"),
            _ => info!(?event, "event"),
        }
    }

    /// A line that is no engine event (e.g. a saved callback whose queue is
    /// gone at start-up): `fields` go next to `ts` and `event`.
    pub fn report_line(&mut self, now: Time, event: &str, fields: serde_json::Value) {
        let at = self.start_unix_ms + now.0;
        let mut line = serde_json::json!({
            "ts": crate::ops::eventlog::format_utc_ms(at),
            "ts_ms": at,
            "event": event,
        });
        if let (Some(m), serde_json::Value::Object(f)) = (line.as_object_mut(), fields) {
            m.extend(f);
        }
        if let Some(log) = &mut self.event_log {
            if let Err(e) = log.write(&line) {
                warn!("event log write failed: {e}");
            }
        }
        if self.event_feed.receiver_count() > 0 {
            self.event_feed.send(Arc::from(line.to_string())).ok();
        }
    }

    /// Once a second: the engine's gauges, the front door's counters and
    /// call control's races and bugs.
    pub fn refresh(&mut self, now: Time, core: &Core, front: &FrontCounters, stack: &StackCounts) {
        self.metrics.refresh(now, core.engine());
        metrics::gauge!("acd_sip_transactions", "state" => "running").set(stack.running_transactions as f64);
        metrics::gauge!("acd_sip_transactions", "state" => "finished").set(stack.finished_transactions as f64);
        metrics::gauge!("acd_sip_dialogs").set(stack.dialogs as f64);
        metrics::counter!("acd_auth_failures_total").absolute(front.auth_failures);
        metrics::counter!("acd_auth_lockouts_total").absolute(front.auth_lockouts);
        metrics::counter!("acd_auth_locked_refusals_total").absolute(front.auth_locked_refusals);
        for s in Shortage::ALL {
            let n = front.shortages.get(&s).copied().unwrap_or(0);
            metrics::counter!("acd_admission_refusals_total", "reason" => s.name()).absolute(n);
        }
        let lag = front.shortages.get(&Shortage::LoopLag).copied().unwrap_or(0);
        metrics::counter!("acd_overload_refusals_total").absolute(lag);
        for (race, n) in core.races().by_kind() {
            metrics::counter!("acd_call_races_total", "kind" => race.name()).absolute(n);
        }
        metrics::counter!("acd_call_bugs_total").absolute(core.errors().total());
    }

    pub fn reopen_event_log(&mut self) {
        if let Some(log) = &mut self.event_log {
            if let Err(e) = log.reopen() {
                warn!("cannot reopen the event log: {e}");
            }
        }
    }
}

fn describe() {
    crate::sip::socket::describe();
    metrics::describe_gauge!(
        "acd_sip_transactions",
        "SIP transactions in the stack: running, or finished and kept for retransmissions (64*T1 on UDP)"
    );
    metrics::describe_gauge!("acd_sip_dialogs", "SIP dialogs the stack holds (each call has one per leg)");
    metrics::describe_counter!(
        "acd_calls_refused_total",
        "INVITEs refused before reaching a queue, by SIP status (404 unknown number, 403 not a trunk or failed auth, 488 no usable audio, 483/420 RFC checks, 503 admission)"
    );
    metrics::describe_counter!(
        "acd_overload_refusals_total",
        "New INVITEs answered 503 because they waited longer than sip.overload_queue_delay_ms for the daemon loop"
    );
    metrics::describe_counter!(
        "acd_admission_refusals_total",
        "New INVITEs answered 503 + Retry-After by the admission policy, by what was short"
    );
    metrics::describe_counter!(
        "acd_auth_failures_total",
        "Digest responses that failed (wrong password or unknown user)"
    );
    metrics::describe_counter!(
        "acd_auth_lockouts_total",
        "Lockouts started after sip.auth_max_failures failures from one address or for one user"
    );
    metrics::describe_counter!("acd_auth_locked_refusals_total", "Requests answered 403 during a lockout");
    metrics::describe_counter!(
        "acd_call_races_total",
        "Races with peers call control absorbed, by kind (a CANCEL crossing a 200, a BYE for a leg already ended, ...): normal on a real network"
    );
    metrics::describe_counter!(
        "acd_call_bugs_total",
        "Call-control invariant violations (events that cannot happen in the call's state), each logged at error"
    );
    metrics::describe_counter!("acd_unacked_answers_total", "Callers' 200 OKs never ACKed: released at Timer H");
    metrics::describe_counter!(
        "acd_session_timer_expiries_total",
        "Callers' calls ended because their RFC 4028 session was not refreshed in time"
    );
    metrics::describe_counter!("acd_config_reloads_total", "Config reloads applied");
    metrics::describe_counter!(
        "acd_config_reload_failures_total",
        "Config reloads refused because the file was invalid (nothing changed)"
    );
}

/// File descriptors free below the soft RLIMIT_NOFILE: the open count is
/// read from /proc once a second, and RTP sockets opened or closed since are
/// added or taken off (they are the only descriptors that come and go by
/// the thousand between samples).
pub struct FdBudget {
    limit: usize,
    sampled: usize,
    ports_at_sample: usize,
}

impl FdBudget {
    pub fn new() -> FdBudget {
        let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft as usize).unwrap_or(1024);
        FdBudget { limit, sampled: 0, ports_at_sample: 0 }
    }

    pub fn sample(&mut self, ports_in_use: usize) {
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.sampled = dir.count();
            self.ports_at_sample = ports_in_use;
        }
    }

    pub fn free(&self, ports_in_use: usize, sockets_per_leg: usize) -> usize {
        let opened = ports_in_use.saturating_sub(self.ports_at_sample) * sockets_per_leg;
        let closed = self.ports_at_sample.saturating_sub(ports_in_use) * sockets_per_leg;
        self.limit.saturating_sub((self.sampled + opened).saturating_sub(closed))
    }
}

/// When to hand freed heap back to the OS. glibc keeps what a load peak
/// freed (RSS stayed at 500 MB after a flood); `malloc_trim` returns it but
/// walks every arena, so it runs only after what holds the heap (live calls
/// and the SIP stack's transactions, which it frees 32 s after their calls
/// ended) fell to half a peak of at least `MIN_PEAK`, and then on every
/// check for a minute. Measured (README "Memory"): without the transactions
/// in the count the minute ran out before they were freed, and RSS stayed
/// at 5x its idle size.
#[derive(Debug, Default)]
pub struct TrimPolicy {
    peak: usize,
    until: Option<Instant>,
}

impl TrimPolicy {
    const MIN_PEAK: usize = 64;
    const WINDOW: Duration = Duration::from_secs(60);

    /// Called every few seconds with what holds heap now (calls plus the
    /// stack's transactions): whether to trim.
    pub fn check(&mut self, now: impl Into<Instant>, held: usize) -> bool {
        let now = now.into();
        self.peak = self.peak.max(held);
        if self.peak >= Self::MIN_PEAK && held * 2 <= self.peak {
            self.until = Some(now + Self::WINDOW);
            self.peak = held;
        }
        match self.until {
            Some(until) if now <= until => true,
            Some(_) => {
                self.until = None;
                false
            }
            None => false,
        }
    }
}

/// Returns freed heap to the OS (glibc only; other allocators decay on
/// their own). How much it released shows in RSS, not here.
#[allow(unsafe_code)]
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases the allocator's own free
    // memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod trim_tests {
    use super::*;

    #[test]
    fn trims_for_a_minute_after_calls_fall_to_half_a_peak_and_not_in_calm() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut p = TrimPolicy::default();
        // Small numbers never trim.
        assert!(!p.check(at(0), 10));
        assert!(!p.check(at(5), 2));
        // A peak of 1,000, still up: no trim.
        assert!(!p.check(at(10), 1000));
        assert!(!p.check(at(15), 900));
        // Down to half: trim now and on every check for 60 s.
        assert!(p.check(at(20), 500));
        assert!(p.check(at(50), 300));
        assert!(p.check(at(80), 300));
        assert!(!p.check(at(81), 300));
        // Falling further (to half of 300) opens another minute.
        assert!(p.check(at(90), 150));
        assert!(p.check(at(150), 150));
        assert!(!p.check(at(151), 100));
        // From 150 to nothing: one more minute, then calm.
        assert!(p.check(at(200), 0));
        assert!(!p.check(at(261), 0));
        assert!(!p.check(at(300), 0));
        // A new peak and fall starts it again.
        assert!(!p.check(at(210), 200));
        assert!(p.check(at(215), 40));
    }
}
