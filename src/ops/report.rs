//! `acd report`: per-queue KPIs from an event log written by
//! [`super::eventlog::EventLog`].
//!
//! The report reads the log once, builds one record per call from its events
//! and counts each call in the period by **the time it reached acd** (its
//! `call_arrived`, or its first event when the log starts mid-call): a call
//! arriving at 09:59 and answered at 10:01 is in the 09:00–10:00 report,
//! whole. Events before the period still count as history for repeat
//! callers. Lines must be in time order, as the log writes them; to report
//! over rotated files, concatenate them oldest first.
//!
//! What always holds: every figure comes from the log alone (no config), and
//! a line the report cannot read is an error naming its number, never
//! skipped in silence. Unknown event names are ignored, so a newer daemon's
//! log still reads.

use super::eventlog::{days_from_civil, format_utc_ms};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::BufRead;

/// A day in milliseconds, the window for repeat callers.
const DAY_MS: u64 = 24 * 3600 * 1000;

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("line {line}: cannot read: {source}")]
    Read {
        line: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line}: not an event log line: {source}")]
    Json {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("line {line}: {event} event without \"{field}\"")]
    MissingField { line: usize, event: String, field: &'static str },
    #[error("line {line}: unknown {field} \"{value}\"")]
    BadValue { line: usize, field: &'static str, value: String },
}

/// The figures of one queue (or of all of them: [`Report::total`]).
///
/// Per queue:
/// - `offered`: calls that entered the queue (its first `call_queued` there;
///   a call overflowing from A to B is offered in both). A call refused
///   before joining (e.g. `when_no_agents`) is not offered, only rejected.
/// - `answered`, `abandoned`, `rejected`: calls that ended that way in this
///   queue. `overflowed`: calls that left this queue for its overflow target
///   (another queue, a SIP URI, or a `reject:` status).
/// - `service_level` = `answered_within_sl` ÷ `offered`, where
///   `answered_within_sl` counts answers with `waited_ms` ≤ the threshold.
/// - `asa_secs`: mean `waited_ms` of the answered calls. The wait counts
///   from the call's arrival in acd, so a call that overflowed into this
///   queue brings its earlier wait along (the caller waited that long).
/// - `aht_secs`: mean handle time of the `handled` calls (answered calls
///   whose end is in the log): talk time (answered → call_finished) plus the
///   agent's wrap-up after it (the agent's `wrap-up` state, until it left
///   it) when the log has it; without that, talk time alone.
/// - `abandon_rate` = `abandoned` ÷ `offered`.
/// - `repeat_callers_24h`: calls (counted in the queue they arrived in)
///   whose caller had already called any queue in the 24 h before. Withheld
///   numbers (empty or `anonymous`) are never repeats.
/// - `first_contact_resolved` (counted in the queue the call arrived in):
///   answered calls whose first answer settled them: it ended the call (not
///   transferred on, so an escalation is not a resolution), and the caller
///   did not call any queue again within 24 h. `fcr_rate` = that ÷ the
///   calls answered that arrived in the queue. A call still up at the log's
///   end is not counted as resolved.
///
/// The total row counts each call once: `offered` = calls that entered any
/// queue; `overflowed` and `rejected` = calls whose final outcome that was
/// (overflow into another queue is not counted there). Ratios and means are
/// `None` when there is nothing to divide by.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueKpis {
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub overflowed: u64,
    pub rejected: u64,
    /// Calls transferred out of the queue (blind, by the agent or an admin).
    pub transferred: u64,
    pub answered_within_sl: u64,
    pub service_level: Option<f64>,
    pub asa_secs: Option<f64>,
    pub handled: u64,
    pub aht_secs: Option<f64>,
    pub abandon_rate: Option<f64>,
    pub repeat_callers_24h: u64,
    pub first_contact_resolved: u64,
    pub fcr_rate: Option<f64>,
}

/// KPIs per queue for the calls that arrived in `[from, to)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Unix ms; `None`: from the start of the log.
    pub from: Option<u64>,
    /// Unix ms, exclusive; `None`: to the end of the log.
    pub to: Option<u64>,
    pub sl_threshold_secs: u32,
    /// Calls that arrived in the period.
    pub calls: u64,
    /// By queue name; every queue one of the period's calls touched.
    pub queues: BTreeMap<String, QueueKpis>,
    pub total: QueueKpis,
}

/// One log line, as far as the report needs it; other keys are ignored.
#[derive(Debug, Deserialize)]
struct Line {
    ts_ms: u64,
    event: String,
    call: Option<u64>,
    queue: Option<String>,
    agent: Option<String>,
    caller: Option<String>,
    outcome: Option<String>,
    waited_ms: Option<u64>,
    from: Option<String>,
    to: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Answered,
    Abandoned,
    Overflowed,
    Rejected,
    /// A callback never connected (given up, or lost at shutdown): offered,
    /// but neither answered nor abandoned.
    CallbackFailed,
    /// An agent's consultation call (before an attended transfer): not a
    /// customer's call, so left out of every KPI.
    Consultation,
}

/// Everything the log says about one call.
#[derive(Debug, Default)]
struct CallRec {
    /// Arrival (or first event) time.
    start: u64,
    /// Queue it arrived in and caller, from `call_arrived`.
    arrived_in: Option<String>,
    caller: String,
    /// Queues entered, first time each, in order.
    entered: Vec<String>,
    /// (queue, answered at, waited ms), each answer: a call transferred to
    /// another queue can be answered in each.
    answers: Vec<(String, u64, u64)>,
    /// Queues it was transferred out of (by its agent or an admin).
    transferred_from: Vec<String>,
    /// (queue, how, finished at)
    finished: Option<(String, Ending, u64)>,
    overflowed_from: Vec<String>,
    wrap_ms: Option<u64>,
    repeat: bool,
    /// The same caller called again within 24 h after this call.
    called_again: bool,
}

impl CallRec {
    /// Answered once, ended in that answer, and no call again within 24 h.
    fn resolved_first_time(&self) -> bool {
        self.answers.len() == 1
            && self.transferred_from.is_empty()
            && matches!(self.finished, Some((_, Ending::Answered, _)))
            && !self.called_again
    }
}

/// Reads an event log and computes the KPIs of the calls that arrived in
/// `[from, to)` (Unix ms; `None` = open end). Blank lines are skipped.
pub fn report(
    lines: impl BufRead,
    from: Option<u64>,
    to: Option<u64>,
    sl_threshold_secs: u32,
) -> Result<Report, ReportError> {
    let recs = read_calls(lines)?;
    let in_period = |r: &CallRec| from.is_none_or(|f| r.start >= f) && to.is_none_or(|t| r.start < t);
    let sl_ms = u64::from(sl_threshold_secs) * 1000;

    let mut queues: BTreeMap<String, Acc> = BTreeMap::new();
    let mut total = Acc::default();
    let mut calls = 0;
    let customer = |r: &CallRec| !matches!(r.finished, Some((_, Ending::Consultation, _)));
    for r in recs.iter().filter(|r| in_period(r) && customer(r)) {
        calls += 1;
        let home = r.arrived_in.as_ref().or(r.entered.first());
        let (answered, resolved) = (u64::from(!r.answers.is_empty()), u64::from(r.resolved_first_time()));
        if let Some(q) = home {
            let acc = queues.entry(q.clone()).or_default();
            acc.repeat += u64::from(r.repeat);
            acc.answered_home += answered;
            acc.resolved += resolved;
        }
        total.repeat += u64::from(r.repeat);
        total.answered_home += answered;
        total.resolved += resolved;
        for q in &r.entered {
            queues.entry(q.clone()).or_default().offered += 1;
        }
        total.offered += u64::from(!r.entered.is_empty());
        for q in &r.overflowed_from {
            queues.entry(q.clone()).or_default().overflowed += 1;
        }
        for q in &r.transferred_from {
            queues.entry(q.clone()).or_default().transferred += 1;
        }
        total.transferred += r.transferred_from.len() as u64;
        let last = r.answers.len().saturating_sub(1);
        for (i, (q, answered_at, waited)) in r.answers.iter().enumerate() {
            // The handle time is the last answer's (talk up to the end, plus
            // wrap-up); the total counts the call's first answer only.
            let handle = match &r.finished {
                Some((_, Ending::Answered, end)) if i == last => {
                    Some(end.saturating_sub(*answered_at) + r.wrap_ms.unwrap_or(0))
                }
                _ => None,
            };
            let accs: Vec<&mut Acc> = if i == 0 {
                vec![queues.entry(q.clone()).or_default(), &mut total]
            } else {
                vec![queues.entry(q.clone()).or_default()]
            };
            for acc in accs {
                acc.answered += 1;
                acc.waited_ms += waited;
                acc.within_sl += u64::from(*waited <= sl_ms);
                if let Some(h) = handle {
                    acc.handled += 1;
                    acc.handle_ms += h;
                }
            }
        }
        if let Some((q, how, _)) = &r.finished {
            let acc = queues.entry(q.clone()).or_default();
            match how {
                Ending::Abandoned => {
                    acc.abandoned += 1;
                    total.abandoned += 1;
                }
                Ending::Rejected => {
                    acc.rejected += 1;
                    total.rejected += 1;
                }
                // Per queue this was already counted from `overflowed`.
                Ending::Overflowed => total.overflowed += 1,
                Ending::Answered | Ending::CallbackFailed | Ending::Consultation => {}
            }
        }
    }
    Ok(Report {
        from,
        to,
        sl_threshold_secs,
        calls,
        queues: queues.into_iter().map(|(q, acc)| (q, acc.kpis())).collect(),
        total: total.kpis(),
    })
}

/// Builds the call records, in order of arrival, and marks repeat callers.
fn read_calls(lines: impl BufRead) -> Result<Vec<CallRec>, ReportError> {
    let mut recs: Vec<CallRec> = Vec::new();
    // Call number → its current record. A `call_arrived` always starts a new
    // record, so numbers reused after a daemon restart do not mix.
    let mut current: HashMap<u64, usize> = HashMap::new();
    // Agent → the answered call it last finished, then its wrap-up start.
    let mut last_call: HashMap<String, usize> = HashMap::new();
    let mut wrap_start: HashMap<String, (usize, u64)> = HashMap::new();

    for (i, text) in lines.lines().enumerate() {
        let line = i + 1;
        let text = text.map_err(|source| ReportError::Read { line, source })?;
        if text.trim().is_empty() {
            continue;
        }
        let ev: Line = serde_json::from_str(&text).map_err(|source| ReportError::Json { line, source })?;
        let need = |v: &Option<String>, field: &'static str| -> Result<String, ReportError> {
            v.clone().ok_or_else(|| ReportError::MissingField { line, event: ev.event.clone(), field })
        };
        let call = || ev.call.ok_or_else(|| ReportError::MissingField { line, event: ev.event.clone(), field: "call" });
        let mut rec_of = |call: u64, fresh: bool| -> usize {
            match current.get(&call) {
                Some(&idx) if !fresh => idx,
                _ => {
                    recs.push(CallRec { start: ev.ts_ms, ..CallRec::default() });
                    current.insert(call, recs.len() - 1);
                    recs.len() - 1
                }
            }
        };
        match ev.event.as_str() {
            "call_arrived" => {
                let (c, q) = (call()?, need(&ev.queue, "queue")?);
                let idx = rec_of(c, true);
                recs[idx].arrived_in = Some(q);
                recs[idx].caller = ev.caller.clone().unwrap_or_default();
            }
            "call_queued" => {
                let (c, q) = (call()?, need(&ev.queue, "queue")?);
                let idx = rec_of(c, false);
                if !recs[idx].entered.contains(&q) {
                    recs[idx].entered.push(q);
                }
            }
            "answered" => {
                let (c, q) = (call()?, need(&ev.queue, "queue")?);
                let waited = ev.waited_ms.ok_or(ReportError::MissingField {
                    line,
                    event: ev.event.clone(),
                    field: "waited_ms",
                })?;
                let idx = rec_of(c, false);
                recs[idx].answers.push((q, ev.ts_ms, waited));
            }
            "overflowed" => {
                let (c, q) = (call()?, need(&ev.queue, "queue")?);
                let idx = rec_of(c, false);
                recs[idx].overflowed_from.push(q);
            }
            "transferred" => {
                let (c, q) = (call()?, need(&ev.queue, "queue")?);
                let idx = rec_of(c, false);
                recs[idx].transferred_from.push(q);
            }
            "call_finished" => {
                let (c, q) = (call()?, need(&ev.queue, "queue")?);
                let how = match need(&ev.outcome, "outcome")?.as_str() {
                    "answered" => Ending::Answered,
                    "abandoned" => Ending::Abandoned,
                    "overflowed" => Ending::Overflowed,
                    "rejected" => Ending::Rejected,
                    "callback-failed" => Ending::CallbackFailed,
                    "consultation" => Ending::Consultation,
                    other => return Err(ReportError::BadValue { line, field: "outcome", value: other.to_string() }),
                };
                let idx = rec_of(c, false);
                recs[idx].finished = Some((q, how, ev.ts_ms));
                current.remove(&c);
                if how == Ending::Answered {
                    if let Some(agent) = &ev.agent {
                        last_call.insert(agent.clone(), idx);
                    }
                }
            }
            "agent_state" => {
                let agent = need(&ev.agent, "agent")?;
                let (from, to) = (need(&ev.from, "from")?, need(&ev.to, "to")?);
                if from == "wrap-up" {
                    if let Some((idx, start)) = wrap_start.remove(&agent) {
                        recs[idx].wrap_ms = Some(ev.ts_ms.saturating_sub(start));
                    }
                }
                if to == "wrap-up" {
                    if let Some(idx) = last_call.remove(&agent) {
                        wrap_start.insert(agent, (idx, ev.ts_ms));
                    }
                }
            }
            // call_moved is followed by call_queued in the new queue; the
            // others do not change a KPI; unknown names are from newer logs.
            _ => {}
        }
    }

    let mut last_seen: HashMap<&str, (u64, usize)> = HashMap::new();
    let mut repeats = Vec::new();
    for (idx, r) in recs.iter().enumerate() {
        let caller = r.caller.as_str();
        if r.arrived_in.is_none() || caller.is_empty() || caller.eq_ignore_ascii_case("anonymous") {
            continue;
        }
        if let Some((prev, prev_idx)) = last_seen.insert(caller, (r.start, idx)) {
            if r.start.saturating_sub(prev) <= DAY_MS {
                repeats.push((idx, prev_idx));
            }
        }
    }
    for (idx, prev_idx) in repeats {
        recs[idx].repeat = true;
        recs[prev_idx].called_again = true;
    }
    Ok(recs)
}

#[derive(Debug, Default)]
struct Acc {
    offered: u64,
    answered: u64,
    abandoned: u64,
    overflowed: u64,
    rejected: u64,
    transferred: u64,
    within_sl: u64,
    waited_ms: u64,
    handled: u64,
    handle_ms: u64,
    repeat: u64,
    /// Answered calls that arrived here, and those resolved at first contact.
    answered_home: u64,
    resolved: u64,
}

impl Acc {
    fn kpis(&self) -> QueueKpis {
        let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        QueueKpis {
            offered: self.offered,
            answered: self.answered,
            abandoned: self.abandoned,
            overflowed: self.overflowed,
            rejected: self.rejected,
            transferred: self.transferred,
            answered_within_sl: self.within_sl,
            service_level: ratio(self.within_sl, self.offered),
            asa_secs: ratio(self.waited_ms, self.answered).map(|ms| ms / 1000.0),
            handled: self.handled,
            aht_secs: ratio(self.handle_ms, self.handled).map(|ms| ms / 1000.0),
            abandon_rate: ratio(self.abandoned, self.offered),
            repeat_callers_24h: self.repeat,
            first_contact_resolved: self.resolved,
            fcr_rate: ratio(self.resolved, self.answered_home),
        }
    }
}

impl fmt::Display for Report {
    /// A header line, then an aligned table: one row per queue, then `total`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = self.from.map_or("start of log".to_string(), format_utc_ms);
        let to = self.to.map_or("end of log".to_string(), format_utc_ms);
        writeln!(
            f,
            "calls arriving {from} .. {to}: {}; service level = answered within {} s / offered",
            self.calls, self.sl_threshold_secs
        )?;
        let header = [
            "queue".to_string(),
            "offered".into(),
            "answered".into(),
            "abandoned".into(),
            "overflowed".into(),
            "rejected".into(),
            "transferred".into(),
            format!("SL {}s", self.sl_threshold_secs),
            "ASA s".into(),
            "AHT s".into(),
            "abandon".into(),
            "repeat 24h".into(),
            "FCR".into(),
        ];
        let mut rows = vec![header];
        for (name, k) in self.queues.iter().map(|(n, k)| (n.as_str(), k)).chain([("total", &self.total)]) {
            let pct = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{:.1}%", x * 100.0));
            let secs = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.1}"));
            rows.push([
                name.to_string(),
                k.offered.to_string(),
                k.answered.to_string(),
                k.abandoned.to_string(),
                k.overflowed.to_string(),
                k.rejected.to_string(),
                k.transferred.to_string(),
                pct(k.service_level),
                secs(k.asa_secs),
                secs(k.aht_secs),
                pct(k.abandon_rate),
                k.repeat_callers_24h.to_string(),
                pct(k.fcr_rate),
            ]);
        }
        let mut widths = [0usize; 13];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in &rows {
            let mut out = format!("{:<w$}", row[0], w = widths[0]);
            for (cell, w) in row.iter().zip(widths).skip(1) {
                out.push_str(&format!("  {cell:>w$}"));
            }
            writeln!(f, "{}", out.trim_end())?;
        }
        Ok(())
    }
}

/// A time for `--from` / `--to`: Unix milliseconds (digits only), or RFC
/// 3339 in UTC, `2026-11-23T21:00:00Z` with an optional fraction
/// (`.5`, `.123456`; kept to the millisecond). Other offsets are refused,
/// so a report never silently shifts by a time zone.
pub fn parse_timestamp(s: &str) -> Option<u64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let b = s.as_bytes();
    let digits = |from: usize, to: usize| -> Option<u32> {
        let t = s.get(from..to)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 7)?, digits(8, 10)?);
    let (hour, minute, second) = (digits(11, 13)?, digits(14, 16)?, digits(17, 19)?);
    let mut rest = &s[19..];
    let mut millis = 0u64;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return None;
        }
        let ms3 = format!("{:0<3}", &frac[..n.min(3)]);
        millis = ms3.parse().ok()?;
        rest = &frac[n..];
    }
    if !matches!(rest, "Z" | "z") {
        return None;
    }
    if year < 1970 || !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let (y, m) = (i64::from(year), month);
    let month_days = days_from_civil(if m == 12 { y + 1 } else { y }, m % 12 + 1, 1) - days_from_civil(y, m, 1);
    if day == 0 || i64::from(day) > month_days {
        return None;
    }
    let days = days_from_civil(y, m, day) as u64;
    Some(((days * 24 + u64::from(hour)) * 60 + u64::from(minute)) * 60_000 + u64::from(second) * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: u64 = 1_795_467_600_000; // 2026-11-23T21:00:00Z
    const S: u64 = 1000;

    fn log(events: &[serde_json::Value]) -> String {
        events.iter().map(|e| format!("{e}\n")).collect()
    }

    fn ev(t: u64, event: &str, rest: serde_json::Value) -> serde_json::Value {
        let mut v = rest;
        v["ts_ms"] = json!(T0 + t);
        v["event"] = json!(event);
        v
    }

    /// Call `c` from `caller` arrives in `q` at `t` and is queued.
    fn arrive(c: u64, q: &str, caller: &str, t: u64) -> Vec<serde_json::Value> {
        vec![
            ev(t, "call_arrived", json!({"call": c, "queue": q, "caller": caller, "priority": 0, "attributes": {}})),
            ev(t, "call_queued", json!({"call": c, "queue": q, "priority": 0, "position": 1})),
        ]
    }

    fn answered_call(
        c: u64,
        q: &str,
        caller: &str,
        t: u64,
        wait: u64,
        talk: u64,
        agent: &str,
    ) -> Vec<serde_json::Value> {
        let mut v = arrive(c, q, caller, t);
        v.push(ev(t + wait, "answered", json!({"call": c, "queue": q, "agent": agent, "waited_ms": wait})));
        v.push(ev(
            t + wait + talk,
            "call_finished",
            json!({"call": c, "queue": q, "outcome": "answered", "agent": agent, "waited_ms": wait}),
        ));
        v
    }

    #[test]
    fn an_attended_transfer_counts_for_the_queue_it_left_and_its_consultation_counts_nowhere() {
        // Customer 1 answered by anna in front; anna's consultation 2 to tech,
        // answered by ben; anna hands the customer over; ben ends the call.
        let mut e = arrive(1, "front", "+1", 0);
        e.push(ev(2 * S, "answered", json!({"call": 1, "queue": "front", "agent": "anna", "waited_ms": 2000})));
        e.extend(arrive(2, "tech", "anna", 30 * S));
        e.push(ev(32 * S, "answered", json!({"call": 2, "queue": "tech", "agent": "ben", "waited_ms": 2000})));
        e.push(ev(
            60 * S,
            "transferred",
            json!({"call": 1, "queue": "front", "agent": "anna", "to": "ben", "target": "agent", "kind": "attended"}),
        ));
        e.push(ev(
            60 * S,
            "call_finished",
            json!({"call": 2, "queue": "tech", "outcome": "consultation", "agent": "anna", "consulted": "ben",
                   "transferred": true, "waited_ms": 2000}),
        ));
        e.push(ev(
            200 * S,
            "call_finished",
            json!({"call": 1, "queue": "front", "outcome": "answered", "agent": "ben", "waited_ms": 2000}),
        ));
        let r = report(log(&e).as_bytes(), None, None, 20).unwrap();
        assert_eq!(r.calls, 1, "the consultation is not a customer's call");
        let front = &r.queues["front"];
        assert_eq!((front.offered, front.answered, front.transferred, front.abandoned), (1, 1, 1, 0));
        assert!(!r.queues.contains_key("tech"), "{:?}", r.queues);
        assert_eq!((r.total.answered, r.total.transferred, r.total.abandoned), (1, 1, 0));
    }

    #[test]
    fn a_callback_given_up_is_offered_but_neither_answered_nor_abandoned() {
        let mut e = arrive(1, "sales", "+1", 0);
        e.push(ev(5 * S, "callback_requested", json!({"call": 1, "queue": "sales"})));
        e.push(ev(90 * S, "callback_given_up", json!({"call": 1, "queue": "sales", "attempts": 3})));
        e.push(ev(
            90 * S,
            "call_finished",
            json!({"call": 1, "queue": "sales", "outcome": "callback-failed", "attempts": 3, "waited_ms": 90_000}),
        ));
        let r = report(log(&e).as_bytes(), None, None, 20).unwrap();
        let q = &r.queues["sales"];
        assert_eq!((q.offered, q.answered, q.abandoned, q.rejected), (1, 0, 0, 0));
    }

    #[test]
    fn kpis_by_hand() {
        let mut e = Vec::new();
        e.extend(answered_call(1, "billing", "+1", 0, 10 * S, 100 * S, "aino"));
        // aino's wrap-up after call 1: 30 s, ended by the timer.
        e.push(ev(
            110 * S,
            "agent_state",
            json!({"agent":"aino","from":"on-call","to":"wrap-up","reason":"call ended"}),
        ));
        e.push(ev(
            140 * S,
            "agent_state",
            json!({"agent":"aino","from":"wrap-up","to":"available","reason":"wrap-up over"}),
        ));
        e.extend(answered_call(2, "billing", "+2", 200 * S, 30 * S, 60 * S, "eero"));
        e.extend(arrive(3, "billing", "+1", 300 * S)); // repeat of call 1
        e.push(ev(
            305 * S,
            "call_finished",
            json!({"call":3,"queue":"billing","outcome":"abandoned","waited_ms":5000}),
        ));
        e.extend(arrive(4, "billing", "+4", 400 * S));
        e.push(ev(
            820 * S,
            "overflowed",
            json!({"call":4,"queue":"billing","to":"queue:support-en","reason":"max-wait"}),
        ));
        e.push(ev(820 * S, "call_queued", json!({"call":4,"queue":"support-en","priority":0,"position":1})));
        e.push(ev(830 * S, "answered", json!({"call":4,"queue":"support-en","agent":"james","waited_ms":430_000})));
        // Call 4 is still talking when the log ends: answered, not handled.
        e.push(ev(900 * S, "call_arrived", json!({"call":5,"queue":"sales","caller":"","priority":0})));
        e.push(ev(900 * S, "overflowed", json!({"call":5,"queue":"sales","to":"reject:486","reason":"no-agents"})));
        e.push(ev(
            900 * S,
            "call_finished",
            json!({"call":5,"queue":"sales","outcome":"rejected","status":486,"waited_ms":0}),
        ));
        let text = log(&e) + "\n   \n"; // blank lines are fine
        let r = report(text.as_bytes(), None, None, 20).unwrap();
        assert_eq!(r.calls, 5);
        let billing = &r.queues["billing"];
        assert_eq!(
            (billing.offered, billing.answered, billing.abandoned, billing.overflowed, billing.rejected),
            (4, 2, 1, 1, 0)
        );
        assert_eq!(billing.answered_within_sl, 1);
        assert_eq!(billing.service_level, Some(0.25));
        assert_eq!(billing.asa_secs, Some(20.0));
        assert_eq!(billing.handled, 2);
        assert_eq!(billing.aht_secs, Some((130.0 + 60.0) / 2.0)); // talk + wrap-up, talk only
        assert_eq!(billing.abandon_rate, Some(0.25));
        assert_eq!(billing.repeat_callers_24h, 1);
        let en = &r.queues["support-en"];
        assert_eq!((en.offered, en.answered, en.answered_within_sl, en.handled), (1, 1, 0, 0));
        assert_eq!((en.asa_secs, en.aht_secs), (Some(430.0), None));
        let sales = &r.queues["sales"];
        assert_eq!((sales.offered, sales.overflowed, sales.rejected, sales.service_level), (0, 1, 1, None));
        let t = &r.total;
        assert_eq!((t.offered, t.answered, t.abandoned, t.overflowed, t.rejected), (4, 3, 1, 0, 1));
        assert_eq!((t.answered_within_sl, t.service_level), (1, Some(0.25)));
        assert_eq!(t.repeat_callers_24h, 1);

        // The period counts calls by arrival; earlier calls are history.
        let r = report(text.as_bytes(), Some(T0 + 250 * S), Some(T0 + 500 * S), 20).unwrap();
        assert_eq!(r.calls, 2);
        assert_eq!(r.queues["billing"].offered, 2);
        assert_eq!(r.queues["billing"].repeat_callers_24h, 1, "call 1 is before the period but still history");
        assert_eq!(r.queues["support-en"].answered, 1, "call 4 arrived in the period; answered after it");
        assert!(!r.queues.contains_key("sales"));

        let shown = report(text.as_bytes(), None, None, 20).unwrap().to_string();
        let want = "\
calls arriving start of log .. end of log: 5; service level = answered within 20 s / offered
queue       offered  answered  abandoned  overflowed  rejected  transferred  SL 20s  ASA s  AHT s  abandon  repeat 24h    FCR
billing           4         2          1           1         0            0   25.0%   20.0   95.0    25.0%           1  33.3%
sales             0         0          0           1         1            0       -      -      -        -           0      -
support-en        1         1          0           0         0            0    0.0%  430.0      -     0.0%           0      -
total             4         3          1           0         1            0   25.0%  156.7   95.0    25.0%           1  33.3%
";
        assert_eq!(shown, want);
        // FCR by hand: of billing's three answered arrivals, call 1's caller
        // called again (call 3), call 4 is still up; only call 2 settled.
        assert_eq!((billing.first_contact_resolved, billing.fcr_rate), (1, Some(1.0 / 3.0)));
    }

    #[test]
    fn repeat_window_is_24_hours_and_ignores_withheld_numbers() {
        let day = 24 * 3600 * S;
        let mut e = Vec::new();
        e.extend(arrive(1, "q", "+1", 0));
        e.extend(arrive(2, "q", "+1", day)); // exactly 24 h later: repeat
        e.extend(arrive(3, "q", "+1", 3 * day)); // 48 h after call 2: not
        e.extend(arrive(4, "q", "anonymous", 3 * day));
        e.extend(arrive(5, "q", "Anonymous", 3 * day + S));
        let r = report(log(&e).as_bytes(), None, None, 20).unwrap();
        assert_eq!(r.queues["q"].repeat_callers_24h, 1);
    }

    #[test]
    fn reused_call_numbers_after_a_restart_stay_apart() {
        let mut e = answered_call(1, "q", "+1", 0, 5 * S, 10 * S, "a");
        e.extend(answered_call(1, "q", "+2", 100 * S, 25 * S, 10 * S, "a"));
        let r = report(log(&e).as_bytes(), None, None, 20).unwrap();
        let q = &r.queues["q"];
        assert_eq!((q.offered, q.answered, q.answered_within_sl), (2, 2, 1));
    }

    #[test]
    fn bad_lines_name_their_number() {
        let good = log(&arrive(1, "q", "+1", 0));
        let err = report(format!("{good}\nnot json\n").as_bytes(), None, None, 20).unwrap_err();
        assert!(matches!(err, ReportError::Json { line: 4, .. }), "{err}");
        assert!(err.to_string().starts_with("line 4: not an event log line"), "{err}");

        let err =
            report(format!("{good}{{\"ts_ms\":1,\"event\":\"answered\",\"call\":1}}\n").as_bytes(), None, None, 20)
                .unwrap_err();
        assert_eq!(err.to_string(), "line 3: answered event without \"queue\"");

        let line = r#"{"ts_ms":1,"event":"call_finished","call":1,"queue":"q","outcome":"vanished"}"#;
        let err = report(format!("{good}{line}\n").as_bytes(), None, None, 20).unwrap_err();
        assert_eq!(err.to_string(), "line 3: unknown outcome \"vanished\"");

        let err = report(r#"{"event":"answered"}"#.as_bytes(), None, None, 20).unwrap_err();
        assert!(err.to_string().contains("ts_ms"), "{err}");

        // Unknown events are from newer logs: ignored.
        let r = report(r#"{"ts_ms":1,"event":"call_teleported","call":1}"#.as_bytes(), None, None, 20).unwrap();
        assert_eq!(r.calls, 0);
    }

    #[test]
    fn a_transferred_call_counts_as_a_transfer_out_of_one_queue_and_an_answer_in_each() {
        let mut e = arrive(1, "front", "+1", 0);
        e.push(ev(5 * S, "answered", json!({"call":1,"queue":"front","agent":"anna","waited_ms":5_000})));
        e.push(ev(
            60 * S,
            "transferred",
            json!({"call":1,"queue":"front","agent":"anna","to":"tech","target":"queue","kind":"blind"}),
        ));
        e.push(ev(60 * S, "call_queued", json!({"call":1,"queue":"tech","priority":0,"position":1})));
        e.push(ev(70 * S, "answered", json!({"call":1,"queue":"tech","agent":"ben","waited_ms":70_000})));
        e.push(ev(
            100 * S,
            "call_finished",
            json!({"call":1,"queue":"tech","outcome":"answered","agent":"ben","waited_ms":70_000}),
        ));
        let r = report(log(&e).as_bytes(), None, None, 20).unwrap();
        let (front, tech) = (&r.queues["front"], &r.queues["tech"]);
        assert_eq!((front.offered, front.answered, front.transferred), (1, 1, 1));
        assert_eq!((tech.offered, tech.answered, tech.transferred), (1, 1, 0));
        assert_eq!((r.total.offered, r.total.answered, r.total.transferred), (1, 1, 1));
        assert_eq!(r.total.asa_secs, Some(5.0), "the call's first answer");
        assert_eq!((tech.handled, r.total.handled), (1, 0), "handle time is the last answer's, in its queue");
        // The escalation is not a first-contact resolution, in either queue.
        assert_eq!((front.first_contact_resolved, front.fcr_rate), (0, Some(0.0)));
        assert_eq!((tech.first_contact_resolved, tech.fcr_rate), (0, None), "no call arrived in tech");
    }

    #[test]
    fn first_contact_resolution_excludes_escalations_and_callers_who_call_again() {
        let answered = |c: u64, q: &str, caller: &str, at: u64| {
            let mut e = arrive(c, q, caller, at);
            e.push(ev(at + 5 * S, "answered", json!({"call":c,"queue":q,"agent":"anna","waited_ms":5_000})));
            e.push(ev(
                at + 60 * S,
                "call_finished",
                json!({"call":c,"queue":q,"outcome":"answered","agent":"anna","waited_ms":5_000}),
            ));
            e
        };
        let mut e = answered(1, "billing", "+1", 0); // resolved
        e.extend(answered(2, "billing", "+2", 100 * S)); // +2 calls again 2 h later: not resolved
        e.extend(answered(3, "billing", "+2", 2 * 3600 * S)); // resolved (nothing after)
        e.extend(answered(4, "billing", "+4", 200 * S)); // +4 again after 25 h: resolved
        e.extend(answered(5, "sales", "+4", 200 * S + 25 * 3600 * S));
        e.extend(arrive(6, "billing", "+6", 300 * S)); // abandoned: not answered, not counted
        e.push(ev(
            310 * S,
            "call_finished",
            json!({"call":6,"queue":"billing","outcome":"abandoned","waited_ms":10_000}),
        ));
        e.sort_by_key(|l| l["ts_ms"].as_u64());
        let r = report(log(&e).as_bytes(), None, None, 20).unwrap();
        let b = &r.queues["billing"];
        assert_eq!((b.first_contact_resolved, b.fcr_rate), (3, Some(0.75)));
        assert_eq!((r.total.first_contact_resolved, r.total.fcr_rate), (4, Some(0.8)));
        assert!(r.to_string().lines().next_back().unwrap().ends_with("80.0%"), "{r}");
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("2026-11-23T21:00:00Z"), Some(T0));
        assert_eq!(parse_timestamp("2026-11-23t21:00:00.5z"), Some(T0 + 500));
        assert_eq!(parse_timestamp("2026-11-23T21:00:00.123456789Z"), Some(T0 + 123));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("2023-11-14T22:13:20.000Z"), Some(1_700_000_000_000));
        assert_eq!(parse_timestamp("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
        assert_eq!(parse_timestamp("1795467600000"), Some(T0));
        for bad in [
            "",
            "2026-11-23",
            "2026-11-23T21:00:00",
            "2026-11-23T21:00:00+02:00",
            "2026-11-23T21:00:00.Z",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-23T24:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-11-23T21:00:00Zjunk",
            "-5",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        // Round trip with the log's formatting.
        for ms in [0, 951_782_400_999, T0 + 12_345, 4_107_542_399_999] {
            assert_eq!(parse_timestamp(&format_utc_ms(ms)), Some(ms));
        }
    }
}
