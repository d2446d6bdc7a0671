//! The event log: every engine event as one JSON line in a file, acd's
//! equivalent of Asterisk's `queue_log`.
//!
//! This module owns the line format ([`event_json`]) and the file
//! ([`EventLog`]: append, size rotation, reopen after an external
//! logrotate). `acd report` ([`super::report`]) reads the same lines back.
//! What always holds: one event is one line, written with one `write` call,
//! so a reader (`tail -f`, the report) never sees half a line; the log never
//! panics, it returns `io::Error`s for the caller to log.
//!
//! # Schema
//! Every line is a flat JSON object. Names, not ids, for queues and agents;
//! durations in milliseconds (`*_ms`). Common keys:
//!
//! | key | meaning |
//! |---|---|
//! | `ts` | UTC time, RFC 3339 with milliseconds: `"2026-11-23T21:35:27.123Z"` |
//! | `ts_ms` | the same instant in Unix milliseconds |
//! | `event` | one of the names below |
//! | `call` | the call's number (the shell's `CallId`), on every call event |
//! | `queue` | the queue the event happened in (for a move or overflow: the queue left) |
//! | `agent` | the agent's id from the config |
//!
//! Per event:
//!
//! | `event` | further keys |
//! |---|---|
//! | `call_arrived` | `caller`, `priority`, `attributes` (object, e.g. `{"dialled":"100","trunk":"local-pbx"}`) |
//! | `call_queued` | `priority`, `position` (1 = first among its priority) |
//! | `offered` | `strategy`, `chosen` (agents rung), `skipped` (agent → why, see [`skip_text`]) |
//! | `ring_no_answer` | `cause`: `no-answer`, `busy`, `unavailable`, `declined`, `unreachable` |
//! | `ring_cancelled` | (call and agent only: withdrawn without fault of the agent) |
//! | `answered` | `waited_ms` (since the call reached acd) |
//! | `call_moved` | `to` (queue) |
//! | `overflowed` | `to` (`queue:NAME`, a SIP URI or `reject:STATUS`), `reason`: `max-wait`, `queue-full`, `no-agents`, `queue-removed`, `shutdown`, `closed` |
//! | `call_finished` | `outcome`: `answered` (+ `agent`), `abandoned`, `overflowed` (+ `uri`), `rejected` (+ `status`); `waited_ms` (until answer, or until the end) |
//! | `agent_state` | `from`, `to` (`logged-out`, `available`, `ringing`, `on-call`, `wrap-up`, `paused`), `reason` |
//! | `config_applied` | `queues`, `agents` (counts) |
//!
//! [`EventLog::write`] (and [`format_line`]) puts `ts`, `ts_ms`, `event`,
//! `call`, `queue` and `agent` first and the other keys after them in
//! alphabetical order, so lines read well in a terminal. Readers must not
//! rely on key order.

use crate::engine::{Engine, Event, OverflowReason, Skip};
use serde_json::{json, Map, Value};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The name of an event in the log's `event` key.
pub fn event_name(event: &Event) -> &'static str {
    match event {
        Event::CallArrived { .. } => "call_arrived",
        Event::CallMoved { .. } => "call_moved",
        Event::Exited { .. } => "exited",
        Event::Transferred { .. } => "transferred",
        Event::CallQueued { .. } => "call_queued",
        Event::Offered { .. } => "offered",
        Event::RingNoAnswer { .. } => "ring_no_answer",
        Event::RingCancelled { .. } => "ring_cancelled",
        Event::Answered { .. } => "answered",
        Event::Overflowed { .. } => "overflowed",
        Event::CallFinished { .. } => "call_finished",
        Event::AgentStateChanged { .. } => "agent_state",
        Event::ConfigApplied { .. } => "config_applied",
        Event::Callback { step, .. } => step.name(),
    }
}

/// One event as a log line (see the module docs for the schema).
/// `at_unix_ms` is the wall-clock time of the event: the engine's clock only
/// counts from start-up, so the shell maps it.
pub fn event_json(engine: &Engine, at_unix_ms: u64, event: &Event) -> Value {
    let mut m = Map::new();
    m.insert("ts".into(), Value::String(format_utc_ms(at_unix_ms)));
    m.insert("ts_ms".into(), json!(at_unix_ms));
    m.insert("event".into(), json!(event_name(event)));
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    match event {
        Event::CallArrived { call, queue, caller, priority, attributes } => {
            put("call", json!(call.0));
            put("queue", json!(engine.queue_name(*queue)));
            put("caller", json!(caller));
            put("priority", json!(priority));
            let attrs: Map<String, Value> = attributes.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            put("attributes", Value::Object(attrs));
        }
        Event::Exited { call, from, to } => {
            put("call", json!(call.0));
            put("queue", json!(engine.queue_name(*from)));
            put("to", json!(to));
        }
        Event::CallMoved { call, from, to } => {
            put("call", json!(call.0));
            put("queue", json!(engine.queue_name(*from)));
            put("to", json!(engine.queue_name(*to)));
        }
        Event::Transferred { call, from, agent, to, kind } => {
            put("call", json!(call.0));
            put("queue", json!(engine.queue_name(*from)));
            put("agent", json!(engine.agent_name(*agent)));
            match to {
                crate::engine::TransferTarget::Queue(q) => {
                    put("to", json!(engine.queue_name(*q)));
                    put("target", json!("queue"));
                }
                crate::engine::TransferTarget::Agent(a) => {
                    put("to", json!(engine.agent_name(*a)));
                    put("target", json!("agent"));
                }
            }
            put("kind", json!(kind.name()));
        }
        Event::CallQueued { call, queue, priority, position } => {
            put("call", json!(call.0));
            put("queue", json!(engine.queue_name(*queue)));
            put("priority", json!(priority));
            put("position", json!(position));
        }
        Event::Offered { call, queue, decision } => {
            put("call", json!(call.0));
            put("queue", json!(engine.queue_name(*queue)));
            put("strategy", json!(decision.strategy.name()));
            let chosen: Vec<Value> = decision.chosen().map(|a| json!(engine.agent_name(a))).collect();
            put("chosen", Value::Array(chosen));
            let skipped: Map<String, Value> = decision
                .candidates
                .iter()
                .filter_map(|c| {
                    c.skipped.as_ref().map(|s| (engine.agent_name(c.agent).to_string(), json!(skip_text(s))))
                })
                .collect();
            put("skipped", Value::Object(skipped));
            if decision.omitted > 0 {
                put("skipped_not_listed", json!(decision.omitted));
            }
        }
        Event::RingNoAnswer { call, agent, cause } => {
            put("call", json!(call.0));
            put("agent", json!(engine.agent_name(*agent)));
            put("cause", json!(cause.name()));
        }
        Event::RingCancelled { call, agent } => {
            put("call", json!(call.0));
            put("agent", json!(engine.agent_name(*agent)));
        }
        Event::Answered { call, queue, agent, waited } => {
            put("call", json!(call.0));
            put("queue", json!(engine.queue_name(*queue)));
            put("agent", json!(engine.agent_name(*agent)));
            put("waited_ms", json!(waited.as_millis() as u64));
        }
        Event::Overflowed { call, from, to, reason } => {
            put("call", json!(call.0));
            put("queue", json!(engine.queue_name(*from)));
            put("to", json!(to));
            put("reason", json!(overflow_reason_name(*reason)));
        }
        Event::CallFinished { call, queue, outcome, waited } => {
            put("call", json!(call.0));
            put("queue", json!(engine.queue_name(*queue)));
            put("outcome", json!(outcome.name()));
            put("waited_ms", json!(waited.as_millis() as u64));
            match outcome {
                crate::engine::Outcome::Answered { agent } => put("agent", json!(engine.agent_name(*agent))),
                crate::engine::Outcome::Overflowed { uri } => put("uri", json!(uri)),
                crate::engine::Outcome::Rejected { status } => put("status", json!(status)),
                crate::engine::Outcome::Abandoned => {}
                crate::engine::Outcome::CallbackFailed { attempts } => put("attempts", json!(attempts)),
                crate::engine::Outcome::Consultation { by, answered_by, transferred } => {
                    put("agent", json!(engine.agent_name(*by)));
                    if let Some(b) = answered_by {
                        put("consulted", json!(engine.agent_name(*b)));
                    }
                    put("transferred", json!(transferred));
                }
            }
        }
        Event::AgentStateChanged { agent, from, to, reason } => {
            put("agent", json!(engine.agent_name(*agent)));
            put("from", json!(from));
            put("to", json!(to));
            put("reason", json!(reason));
        }
        Event::ConfigApplied { queues, agents } => {
            put("queues", json!(queues));
            put("agents", json!(agents));
        }
        Event::Callback { call, queue, step } => crate::ops::callback_log::put_step(engine, *call, *queue, step, put),
    }
    Value::Object(m)
}

/// Why a member was skipped, in the words of the decision record:
/// `logged out`, `paused: lunch`, `wrap-up`, `ringing`, `on call`,
/// `unregistered`, `back-off: 7500 ms left`, `skill missing: lang.fi`,
/// `skill too low: lang.fi 2 < 3`, `tier 2 closed: opens in 15000 ms`,
/// `lower tier first (tier 2)`, `not chosen`.
pub fn skip_text(skip: &Skip) -> String {
    match skip {
        Skip::LoggedOut => "logged out".into(),
        Skip::Paused(reason) if reason.is_empty() => "paused".into(),
        Skip::Paused(reason) => format!("paused: {reason}"),
        Skip::WrapUp => "wrap-up".into(),
        Skip::Ringing => "ringing".into(),
        Skip::OnCall => "on call".into(),
        Skip::Unregistered => "unregistered".into(),
        Skip::BackOff { remaining_ms } => format!("back-off: {remaining_ms} ms left"),
        Skip::SkillMissing { skill } => format!("skill missing: {skill}"),
        Skip::SkillTooLow { skill, has, needs } => format!("skill too low: {skill} {has} < {needs}"),
        Skip::TierClosed { tier, opens_in_ms } => format!("tier {tier} closed: opens in {opens_in_ms} ms"),
        Skip::LowerTierFirst { tier } => format!("lower tier first (tier {tier})"),
        Skip::NotChosen => "not chosen".into(),
    }
}

/// The log's name for an overflow reason.
pub fn overflow_reason_name(reason: OverflowReason) -> &'static str {
    match reason {
        OverflowReason::MaxWait => "max-wait",
        OverflowReason::QueueFull => "queue-full",
        OverflowReason::NoAgents => "no-agents",
        OverflowReason::QueueRemoved => "queue-removed",
        OverflowReason::Shutdown => "shutdown",
        OverflowReason::Closed => "closed",
    }
}

// ----------------------------------------------------------------- UTC time

/// Unix milliseconds as RFC 3339 UTC with milliseconds,
/// e.g. `1_700_000_000_000` → `2023-11-14T22:13:20.000Z`.
pub fn format_utc_ms(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, sod) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", sod / 3600, sod / 60 % 60, sod % 60, unix_ms % 1000)
}

/// (year, month 1..=12, day 1..=31) of a day counted from 1970-01-01, in the
/// proleptic Gregorian calendar (H. Hinnant's `civil_from_days`: eras of
/// 400 years, years starting in March so the leap day comes last).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of (March-based) year
    let mp = (5 * doy + 2) / 153; // March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a civil date; the inverse of [`civil_from_days`].
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ----------------------------------------------------------------- the file

/// An append-only JSON-lines file with size rotation.
///
/// Rotation (when a line would take the file past `max_bytes`): `path.N-1`
/// → `path.N` … `path` → `path.1`, keeping `keep` old files, then a new
/// `path`. With an external logrotate instead, set `max_bytes` to 0 (never
/// rotate by size) and call [`EventLog::reopen`] on SIGHUP after it moved
/// the file.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: File,
    /// Bytes in the current file, as far as this process knows (another
    /// writer appending to the same file is not counted).
    size: u64,
}

impl EventLog {
    /// Opens `path` for appending, creating the file but not its directory
    /// (a missing directory is a config mistake to report, not to paper
    /// over). `max_bytes` 0 = no size rotation; `keep` 0 = a rotation just
    /// starts the file afresh.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<EventLog> {
        let (file, size) = open_append(path)?;
        Ok(EventLog { path: path.to_path_buf(), max_bytes, keep, file, size })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `line` and a newline in one write, rotating first if the file
    /// would grow past `max_bytes` (a single line longer than that still goes
    /// into a file of its own). If the rotation fails the line is still
    /// written, to the file open until then, and the rotation's error is
    /// returned; the next write tries again.
    pub fn write(&mut self, line: &Value) -> io::Result<()> {
        let mut buf = encode_line(line);
        buf.push(b'\n');
        let len = buf.len() as u64;
        let rotation = if self.max_bytes > 0 && self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()
        } else {
            Ok(())
        };
        self.file.write_all(&buf)?;
        self.size += len;
        rotation
    }

    /// Lines go to the file with each [`EventLog::write`] (no user-space
    /// buffer: a crash loses nothing already written); this asks the OS to
    /// flush its own buffers as well.
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.sync_data()
    }

    /// Opens `path` again (after logrotate renamed it: we would otherwise go
    /// on writing into the renamed file). On error the old file stays in use.
    pub fn reopen(&mut self) -> io::Result<()> {
        let (file, size) = open_append(&self.path)?;
        self.file = file;
        self.size = size;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            ignore_missing(fs::remove_file(&self.path))?;
        } else {
            for n in (1..self.keep).rev() {
                ignore_missing(fs::rename(numbered(&self.path, n), numbered(&self.path, n + 1)))?;
            }
            ignore_missing(fs::rename(&self.path, numbered(&self.path, 1)))?;
        }
        self.reopen()
    }
}

fn open_append(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new().append(true).create(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// `path.n`, e.g. `events.jsonl.2`.
fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// A rotated file that is not there yet (fewer than `keep` so far) or a log
/// that someone removed is not an error.
fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Keys written first, in this order; the rest follow alphabetically.
const LEADING_KEYS: [&str; 6] = ["ts", "ts_ms", "event", "call", "queue", "agent"];

/// A log line as text (without the newline): what [`EventLog::write`]
/// writes, for other consumers of the same lines (e.g. a live feed).
pub fn format_line(v: &Value) -> String {
    // The encoder only emits JSON text, which is UTF-8.
    String::from_utf8(encode_line(v)).unwrap_or_default()
}

/// Serializes `v` on one line, an object's leading keys first.
fn encode_line(v: &Value) -> Vec<u8> {
    let Value::Object(m) = v else {
        return serde_json::to_vec(v).unwrap_or_default();
    };
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    let lead = LEADING_KEYS.iter().filter_map(|k| m.get_key_value(*k));
    let rest = m.iter().filter(|(k, _)| !LEADING_KEYS.contains(&k.as_str()));
    for (i, (k, v)) in lead.chain(rest).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Serializing a string or a `Value` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, k);
        out.push(b':');
        let _ = serde_json::to_writer(&mut out, v);
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{AgentId, CallId, Candidate, Decision, Outcome, QueueId, RejectCause, Skip, Time};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[test]
    fn utc_formatting_known_values() {
        assert_eq!(format_utc_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_utc_ms(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(format_utc_ms(951_782_400_000), "2000-02-29T00:00:00.000Z"); // leap day of a 400-year
        assert_eq!(format_utc_ms(4_107_542_399_999), "2100-02-28T23:59:59.999Z"); // 2100 is no leap year
        assert_eq!(format_utc_ms(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(format_utc_ms(1_795_469_727_123), "2026-11-23T21:35:27.123Z");
    }

    #[test]
    fn civil_days_round_trip() {
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 11, 23), 20_780);
    }

    fn engine() -> Engine {
        let cfg = crate::config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/acd.toml"))
            .expect("example config");
        Engine::new(&cfg, Time::ZERO)
    }

    #[test]
    fn offered_decision_is_compact() {
        let e = engine();
        let (aino, eero, liisa) =
            (e.agent_id("aino").unwrap(), e.agent_id("eero").unwrap(), e.agent_id("liisa").unwrap());
        let ev = Event::Offered {
            call: CallId(7),
            queue: e.queue_id("support-fi").unwrap(),
            decision: Decision {
                strategy: crate::config::Strategy::Skills,
                candidates: vec![
                    Candidate { agent: aino, skipped: None },
                    Candidate { agent: eero, skipped: Some(Skip::Paused("lunch".into())) },
                    Candidate {
                        agent: liisa,
                        skipped: Some(Skip::SkillTooLow { skill: "lang.fi".into(), has: 2, needs: 3 }),
                    },
                ],
                omitted: 0,
            },
        };
        let v = event_json(&e, 1_795_469_727_123, &ev);
        assert_eq!(
            v,
            json!({
                "ts": "2026-11-23T21:35:27.123Z", "ts_ms": 1_795_469_727_123u64, "event": "offered",
                "call": 7, "queue": "support-fi", "strategy": "skills", "chosen": ["aino"],
                "skipped": {"eero": "paused: lunch", "liisa": "skill too low: lang.fi 2 < 3"},
            })
        );
        let line = format_line(&v);
        assert!(line.starts_with(r#"{"ts":"2026-11-23T21:35:27.123Z","ts_ms":1795469727123,"event":"offered","call":7,"queue":"support-fi","chosen":["aino"],"#), "{line}");
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), v);
    }

    #[test]
    fn every_event_names_things() {
        let e = engine();
        let q = e.queue_id("billing").unwrap();
        let a = e.agent_id("aino").unwrap();
        let c = CallId(3);
        let cases: Vec<(Event, Value)> = vec![
            (
                Event::CallArrived {
                    call: c,
                    queue: q,
                    caller: "+358401234567".into(),
                    priority: 10,
                    attributes: vec![("dialled".into(), "200".into()), ("trunk".into(), "local-pbx".into())],
                },
                json!({"call":3,"queue":"billing","caller":"+358401234567","priority":10,
                       "attributes":{"dialled":"200","trunk":"local-pbx"}}),
            ),
            (
                Event::CallQueued { call: c, queue: q, priority: 10, position: 1 },
                json!({"call":3,"queue":"billing","priority":10,"position":1}),
            ),
            (
                Event::RingNoAnswer { call: c, agent: a, cause: RejectCause::Busy },
                json!({"call":3,"agent":"aino","cause":"busy"}),
            ),
            (Event::RingCancelled { call: c, agent: a }, json!({"call":3,"agent":"aino"})),
            (
                Event::Answered { call: c, queue: q, agent: a, waited: Duration::from_millis(12_345) },
                json!({"call":3,"queue":"billing","agent":"aino","waited_ms":12345}),
            ),
            (
                Event::Exited { call: c, from: q, to: "queue:tech".into() },
                json!({"call":3,"queue":"billing","to":"queue:tech"}),
            ),
            (
                Event::CallMoved { call: c, from: q, to: e.queue_id("tech").unwrap() },
                json!({"call":3,"queue":"billing","to":"tech"}),
            ),
            (
                Event::Transferred {
                    call: c,
                    from: q,
                    agent: a,
                    to: crate::engine::TransferTarget::Queue(e.queue_id("tech").unwrap()),
                    kind: crate::engine::TransferKind::Blind,
                },
                json!({"call":3,"queue":"billing","agent":"aino","to":"tech","target":"queue","kind":"blind"}),
            ),
            (
                Event::Transferred {
                    call: c,
                    from: q,
                    agent: a,
                    to: crate::engine::TransferTarget::Agent(a),
                    kind: crate::engine::TransferKind::Attended,
                },
                json!({"call":3,"queue":"billing","agent":"aino","to":"aino","target":"agent","kind":"attended"}),
            ),
            (
                Event::CallFinished {
                    call: c,
                    queue: q,
                    outcome: Outcome::Consultation { by: a, answered_by: Some(a), transferred: true },
                    waited: Duration::from_secs(2),
                },
                json!({"call":3,"queue":"billing","outcome":"consultation","agent":"aino","consulted":"aino",
                       "transferred":true,"waited_ms":2000}),
            ),
            (
                Event::Overflowed { call: c, from: q, to: "queue:support-en".into(), reason: OverflowReason::MaxWait },
                json!({"call":3,"queue":"billing","to":"queue:support-en","reason":"max-wait"}),
            ),
            (
                Event::CallFinished {
                    call: c,
                    queue: q,
                    outcome: Outcome::Answered { agent: a },
                    waited: Duration::from_secs(5),
                },
                json!({"call":3,"queue":"billing","outcome":"answered","agent":"aino","waited_ms":5000}),
            ),
            (
                Event::CallFinished {
                    call: c,
                    queue: q,
                    outcome: Outcome::Overflowed { uri: "sip:vm@pbx".into() },
                    waited: Duration::from_secs(600),
                },
                json!({"call":3,"queue":"billing","outcome":"overflowed","uri":"sip:vm@pbx","waited_ms":600000}),
            ),
            (
                Event::CallFinished {
                    call: c,
                    queue: q,
                    outcome: Outcome::Rejected { status: 486 },
                    waited: Duration::ZERO,
                },
                json!({"call":3,"queue":"billing","outcome":"rejected","status":486,"waited_ms":0}),
            ),
            (
                Event::CallFinished { call: c, queue: q, outcome: Outcome::Abandoned, waited: Duration::from_secs(9) },
                json!({"call":3,"queue":"billing","outcome":"abandoned","waited_ms":9000}),
            ),
            (
                Event::AgentStateChanged { agent: a, from: "on-call", to: "wrap-up", reason: "call ended".into() },
                json!({"agent":"aino","from":"on-call","to":"wrap-up","reason":"call ended"}),
            ),
            (Event::ConfigApplied { queues: 9, agents: 15 }, json!({"queues":9,"agents":15})),
        ];
        for (ev, mut want) in cases {
            let got = event_json(&e, 0, &ev);
            let w = want.as_object_mut().unwrap();
            w.insert("ts".into(), json!("1970-01-01T00:00:00.000Z"));
            w.insert("ts_ms".into(), json!(0));
            w.insert("event".into(), json!(event_name(&ev)));
            assert_eq!(got, want, "{ev:?}");
        }
        let _ = (QueueId(0), AgentId(0));
    }

    #[test]
    fn skip_words() {
        assert_eq!(skip_text(&Skip::Paused(String::new())), "paused");
        assert_eq!(skip_text(&Skip::BackOff { remaining_ms: 7500 }), "back-off: 7500 ms left");
        assert_eq!(skip_text(&Skip::TierClosed { tier: 2, opens_in_ms: 15_000 }), "tier 2 closed: opens in 15000 ms");
        assert_eq!(skip_text(&Skip::SkillMissing { skill: "tech".into() }), "skill missing: tech");
        assert_eq!(skip_text(&Skip::LowerTierFirst { tier: 2 }), "lower tier first (tier 2)");
    }

    /// A fresh directory under the system temp dir, unique per test and run.
    fn temp_dir(tag: &str) -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "acd-eventlog-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn lines(path: &Path) -> Vec<Value> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let dir = temp_dir("rotate");
        let path = dir.join("events.jsonl");
        // Each line is {"n":K}\n = 8 bytes; 20 bytes hold two lines.
        let mut log = EventLog::open(&path, 20, 2).unwrap();
        for n in 0..7 {
            log.write(&json!({ "n": n })).unwrap();
        }
        log.flush().unwrap();
        let n = |p: &Path| lines(p).iter().map(|v| v["n"].as_u64().unwrap()).collect::<Vec<_>>();
        assert_eq!(n(&path), vec![6]);
        assert_eq!(n(&numbered(&path, 1)), vec![4, 5]);
        assert_eq!(n(&numbered(&path, 2)), vec![2, 3]);
        assert!(!numbered(&path, 3).exists(), "only `keep` old files");
        assert!(fs::metadata(&path).unwrap().len() <= 20);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keep_zero_starts_afresh_and_huge_line_fits_alone() {
        let dir = temp_dir("keep0");
        let path = dir.join("e.jsonl");
        let mut log = EventLog::open(&path, 10, 0).unwrap();
        log.write(&json!({ "n": 1 })).unwrap();
        log.write(&json!({ "long": "xxxxxxxxxxxxxxxxxxxx" })).unwrap();
        assert_eq!(lines(&path), vec![json!({ "long": "xxxxxxxxxxxxxxxxxxxx" })]);
        assert!(!numbered(&path, 1).exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn appends_to_an_existing_file_and_counts_its_size() {
        let dir = temp_dir("append");
        let path = dir.join("e.jsonl");
        fs::write(&path, "{\"n\":0}\n").unwrap();
        let mut log = EventLog::open(&path, 16, 1).unwrap();
        log.write(&json!({ "n": 1 })).unwrap();
        log.write(&json!({ "n": 2 })).unwrap(); // 8 + 8 + 8 > 16: rotate first
        assert_eq!(lines(&numbered(&path, 1)), vec![json!({"n":0}), json!({"n":1})]);
        assert_eq!(lines(&path), vec![json!({"n":2})]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reopen_after_external_rename() {
        let dir = temp_dir("reopen");
        let path = dir.join("events.jsonl");
        let moved = dir.join("events.jsonl-20261123");
        let mut log = EventLog::open(&path, 0, 0).unwrap();
        log.write(&json!({ "n": 1 })).unwrap();
        fs::rename(&path, &moved).unwrap(); // logrotate
        log.write(&json!({ "n": 2 })).unwrap(); // still the old inode
        log.reopen().unwrap(); // SIGHUP
        log.write(&json!({ "n": 3 })).unwrap();
        assert_eq!(lines(&moved), vec![json!({"n":1}), json!({"n":2})]);
        assert_eq!(lines(&path), vec![json!({"n":3})]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_instead_of_panics() {
        let dir = temp_dir("errors");
        let missing = dir.join("no-such-dir").join("events.jsonl");
        let err = EventLog::open(&missing, 0, 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        // Reopen fails once the directory is gone; the old handle stays.
        let path = dir.join("sub");
        fs::create_dir(&path).unwrap();
        let file = path.join("e.jsonl");
        let mut log = EventLog::open(&file, 0, 0).unwrap();
        fs::remove_dir_all(&path).unwrap();
        assert!(log.reopen().is_err());
        assert!(log.write(&json!({ "n": 1 })).is_ok(), "still writes into the unlinked file");
        fs::remove_dir_all(&dir).unwrap();
    }
}
