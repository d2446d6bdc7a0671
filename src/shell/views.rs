//! The admin API's read-only views: plain functions from the core, the
//! registrar and the metrics to JSON. No state of their own.

use crate::callctl::Core;
use crate::engine::Time;
use crate::ops::metrics::Metrics;
use crate::sip::registrar::Registrar;
use serde_json::{json, Value};
use std::time::Duration;

fn secs(d: Duration) -> f64 {
    d.as_millis() as f64 / 1000.0
}

/// `/queues`: each queue's strategy, waiting callers, agents by state and
/// live figures.
pub fn queues(core: &Core, metrics: &Metrics) -> Value {
    let engine = core.engine();
    let queues: Vec<_> = core
        .config()
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
            Some(json!({
                "name": q.name,
                "strategy": q.strategy.name(),
                "waiting": engine.waiting_count(id),
                "longest_wait_secs": secs(engine.longest_wait(id)),
                "members": q.members.len(),
                "agents": by_state,
                "service_level_secs": q.service_level_secs,
                "open": hours_json(engine, id),
                "live": metrics.queue_figures(&q.name),
            }))
        })
        .collect();
    json!({ "queues": queues })
}

/// `/agents`: state, pause reason, registration and queues of each agent.
pub fn agents(core: &Core, registrar: &Registrar) -> Value {
    let engine = core.engine();
    let config = core.config();
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
            let queues = config.queues_of(&a.id);
            Some(json!({
                "id": a.id,
                "name": a.display_name,
                "state": state.name(),
                "reason": reason,
                "registered": engine.agent_registered(id),
                "contacts": registrar.contacts(&a.sip_user).map(|b| b.contact.clone()).collect::<Vec<_>>(),
                "queues": queues,
            }))
        })
        .collect();
    json!({ "agents": agents })
}

/// `/calls`: every waiting caller, by queue and position.
pub fn calls(core: &Core, now: Time) -> Value {
    let engine = core.engine();
    let mut calls = Vec::new();
    for q in engine.all_queue_ids() {
        for (i, c) in engine.waiting(q).into_iter().enumerate() {
            let Some(view) = engine.call(c) else { continue };
            calls.push(json!({
                "call": c.0,
                "queue": engine.queue_name(q),
                "queue_closed": engine.queue_closed(q),
                "position": i + 1,
                "caller": core.caller_of(c),
                "priority": view.priority,
                "state": view.state,
                "wait_secs": secs(now.since(view.arrived)),
                "ringing": view.ringing.iter().map(|a| engine.agent_name(*a)).collect::<Vec<_>>(),
            }));
        }
    }
    json!({ "calls": calls })
}

/// A queue's business hours now: `null` without a schedule.
fn hours_json(engine: &crate::engine::Engine, q: crate::engine::QueueId) -> Value {
    match engine.queue_hours(q) {
        None => Value::Null,
        Some((status, next)) => json!({
            "open": status.open,
            "why": status.why.name(),
            "next_change": next.map(|t| t.to_string()),
        }),
    }
}

/// `/schedules`: each schedule, its emergency switch and the queues on it.
pub fn schedules(core: &Core) -> Value {
    let engine = core.engine();
    let emergencies: std::collections::BTreeMap<&str, _> = engine.emergencies().collect();
    let list: Vec<Value> = core
        .config()
        .schedules
        .iter()
        .map(|s| {
            let queues: Vec<Value> = core
                .config()
                .queues
                .iter()
                .filter(|q| q.schedule.as_deref() == Some(s.name.as_str()))
                .filter_map(|q| {
                    let id = engine.queue_id(&q.name)?;
                    Some(json!({ "queue": q.name, "hours": hours_json(engine, id) }))
                })
                .collect();
            json!({
                "name": s.name,
                "time_zone": s.zone_name,
                "emergency": emergencies.get(s.name.as_str()).map(|e| format!("{e:?}").to_lowercase()),
                "queues": queues,
            })
        })
        .collect();
    json!({ "schedules": list })
}
