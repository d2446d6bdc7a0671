//! Callback (virtual hold) steps in the event log and in metrics.
//!
//! Event log: one line per [`CallbackStep`], named `callback_offered`, `callback_requested`,
//! `callback_attempt`, `callback_connected`, `callback_failed`,
//! `callback_given_up`, `callback_lost`, `callback_saved`, `callback_restored`
//! (the state file, across a restart), with `attempt`, `agent`, `reason`
//! where they apply. Metrics: `acd_callbacks_total{queue, step}` counts the
//! steps; `acd_callbacks_pending{queue}` is the callbacks not yet connected.

use crate::engine::{CallId, CallbackStep, Engine, QueueId};
use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};
use serde_json::{json, Value};

pub const CALLBACKS: &str = "acd_callbacks_total";
pub const CALLBACKS_PENDING: &str = "acd_callbacks_pending";

pub fn describe() {
    describe_counter!(CALLBACKS, Unit::Count, "Callback (virtual hold) steps of the queue, by step.");
    describe_gauge!(
        CALLBACKS_PENDING,
        Unit::Count,
        "Callbacks of the queue not connected yet (waiting or being dialled)."
    );
}

/// Refreshes `acd_callbacks_pending` of queue `name` (each second, with the
/// other queue gauges; a callback withdrawn by an admin has no step event).
pub fn set_pending(engine: &Engine, name: &str) {
    let pending = engine.queue_id(name).map_or(0, |q| engine.callbacks_pending(q));
    gauge!(CALLBACKS_PENDING, "queue" => name.to_string()).set(pending as f64);
}

/// The keys of one callback event line.
pub fn put_step(engine: &Engine, call: CallId, queue: QueueId, step: &CallbackStep, mut put: impl FnMut(&str, Value)) {
    put("call", json!(call.0));
    put("queue", json!(engine.queue_name(queue)));
    match *step {
        CallbackStep::Requested
        | CallbackStep::Offered
        | CallbackStep::Lost
        | CallbackStep::Saved
        | CallbackStep::Restored => {}
        CallbackStep::Attempt { agent, attempt } | CallbackStep::Connected { agent, attempt } => {
            put("agent", json!(engine.agent_name(agent)));
            put("attempt", json!(attempt));
        }
        CallbackStep::Failed { attempt, reason } => {
            put("attempt", json!(attempt));
            put("reason", json!(reason));
        }
        CallbackStep::GivenUp { attempts } => put("attempts", json!(attempts)),
    }
}

/// Counts a step and refreshes the queue's pending gauge.
pub fn count(engine: &Engine, queue: QueueId, step: &CallbackStep) {
    let name = engine.queue_name(queue).to_string();
    let step = step.name().trim_start_matches("callback_");
    counter!(CALLBACKS, "queue" => name.clone(), "step" => step).increment(1);
    gauge!(CALLBACKS_PENDING, "queue" => name).set(engine.callbacks_pending(queue) as f64);
}

/// Counts a saved callback that could not be restored (its queue is gone,
/// so there is no queue id and no step event).
pub fn count_lost_on_restore(queue: &str) {
    counter!(CALLBACKS, "queue" => queue.to_string(), "step" => "lost").increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_toml_str;
    use crate::engine::{AgentId, Time};

    #[test]
    fn a_failed_attempt_line_names_the_attempt_and_the_reason() {
        let cfg = from_toml_str(
            "t.toml",
            "[[agent]]\nid = \"anna\"\n[[queue]]\nname = \"sales\"\nmembers = [{ agent = \"anna\" }]\n",
        )
        .unwrap();
        let e = Engine::new(&cfg, Time::ZERO);
        let q = e.queue_id("sales").unwrap();
        let mut m = serde_json::Map::new();
        put_step(&e, CallId(7), q, &CallbackStep::Failed { attempt: 2, reason: "busy" }, |k, v| {
            m.insert(k.into(), v);
        });
        assert_eq!(Value::Object(m), json!({"call":7,"queue":"sales","attempt":2,"reason":"busy"}));
        let mut m = serde_json::Map::new();
        put_step(&e, CallId(7), q, &CallbackStep::Connected { agent: AgentId(0), attempt: 1 }, |k, v| {
            m.insert(k.into(), v);
        });
        assert_eq!(m["agent"], json!("anna"));
    }
}
