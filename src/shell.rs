//! The thin async shell around the engine: one task, one sleep.
//!
//! Until the SIP layer lands, the shell builds the engine from the config,
//! logs the queues and agents it built, turns engine events into log lines
//! and `metrics` counters, and waits for Ctrl-C / SIGTERM. The clock lives
//! here: engine [`Time`] is milliseconds since the shell started.

use crate::config::Config;
use crate::engine::{Action, Engine, Event, Input, Time};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A one-line human summary of a config, shared by `acd check-config` and
/// the daemon's start-up log.
pub fn summary(config: &Config) -> Vec<String> {
    let mut lines = vec![format!(
        "{} queues, {} agents, {} skills, routing seed {}",
        config.queues.len(),
        config.agents.len(),
        config.skills.len(),
        config.engine.seed
    )];
    for r in &config.caller_rules {
        lines.push(format!("caller rule: priority {:+} for {} ({})", r.priority, r.callers.join(" "), r.description));
    }
    for q in &config.queues {
        let reqs: Vec<String> = q.required_skills.iter().map(|r| format!("{}>={}", r.skill, r.min_level)).collect();
        let mut line = format!(
            "queue {:<14} strategy {:<15} {:>2} members, ring {} s, wrap-up {} s",
            q.name,
            q.strategy.name(),
            q.members.len(),
            q.ring_timeout_secs,
            q.wrap_up_secs
        );
        if !reqs.is_empty() {
            line.push_str(&format!(", requires {}", reqs.join(" ")));
        }
        if let Some(o) = &q.overflow {
            if q.max_wait_secs > 0 {
                line.push_str(&format!(", after {} s -> {}", q.max_wait_secs, o));
            } else {
                line.push_str(&format!(", overflow -> {o}"));
            }
        }
        lines.push(line);
    }
    for a in &config.agents {
        let skills: Vec<String> = a.skills.iter().map(|(s, l)| format!("{s}={l}")).collect();
        let queues: Vec<&str> = config
            .queues
            .iter()
            .filter(|q| q.members.iter().any(|m| m.agent == a.id))
            .map(|q| q.name.as_str())
            .collect();
        lines.push(format!(
            "agent {:<10} {:<22} skills [{}] queues [{}]",
            a.id,
            a.display_name,
            skills.join(" "),
            queues.join(" ")
        ));
    }
    lines
}

/// Commands into the engine task from other parts of the shell.
pub type Command = Input;

/// Runs the engine until `shutdown` resolves. Inputs arrive on `inputs`
/// (bounded: producers wait rather than queue without limit).
pub async fn run_engine(
    config: Config,
    mut inputs: mpsc::Receiver<Command>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let start = Instant::now();
    let clock = move || Time(start.elapsed().as_millis() as u64);
    let mut engine = Engine::new(&config, clock());
    drain(&mut engine);
    tokio::pin!(shutdown);
    loop {
        let deadline = engine
            .poll_timeout()
            .map(|t| start + Duration::from_millis(t.0))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep_until(deadline) => {
                let _ = engine.handle_timeout(clock());
            }
            input = inputs.recv() => match input {
                Some(input) => {
                    if let Err(e) = engine.handle(clock(), input) {
                        tracing::warn!("engine refused an input: {e}");
                    }
                }
                None => break,
            },
        }
        drain(&mut engine);
    }
}

fn drain(engine: &mut Engine) {
    while let Some(action) = engine.poll_action() {
        // No SIP layer yet: actions are logged so the routing is visible.
        tracing::info!(?action, "action");
        if let Action::Reject { status, .. } = action {
            metrics::counter!("acd_calls_rejected_total", "status" => status.to_string()).increment(1);
        }
    }
    while let Some(event) = engine.poll_event() {
        match &event {
            Event::AgentStateChanged { agent, from, to, reason } => {
                tracing::info!(agent = engine.agent_name(*agent), "{from} => {to} ({reason})");
            }
            Event::CallFinished { queue, outcome, .. } => {
                metrics::counter!("acd_calls_finished_total",
                    "queue" => engine.queue_name(*queue).to_string(),
                    "outcome" => outcome.name())
                .increment(1);
                tracing::info!(?event, "event");
            }
            _ => tracing::debug!(?event, "event"),
        }
    }
}
