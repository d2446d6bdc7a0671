//! The engine's side of business hours: which queues are open now, what a
//! closed queue does with a caller, and the timers at each open/close edge.
//!
//! The engine's [`Time`] is a monotonic clock; schedules are wall-clock. The
//! shell hands in the offset once ([`Engine::set_wall_clock`]: the Unix time
//! in ms at engine time 0), so a test can put the engine on any date and run
//! a week in milliseconds. Until it is set, every queue is open.

use super::schedule::{Emergency, Status};
use super::*;
use crate::config::{AtClose, OverflowTarget};
use jiff::Timestamp;

impl Engine {
    /// Engine time 0 is `unix_ms` on the wall clock. Re-arms the schedule
    /// timers (call again after the wall clock was stepped).
    pub fn set_wall_clock(&mut self, unix_ms: i64) {
        self.wall_offset_ms = Some(unix_ms);
        self.arm_schedule_edges();
    }

    fn wall(&self, t: Time) -> Option<Timestamp> {
        Timestamp::from_millisecond(self.wall_offset_ms? + t.0 as i64).ok()
    }

    fn engine_time(&self, ts: Timestamp) -> Option<Time> {
        let ms = ts.as_millisecond() - self.wall_offset_ms?;
        Some(Time(ms.max(0) as u64))
    }

    /// The queue's schedule status now; `None` when it has no schedule (or
    /// the wall clock is not known).
    pub fn queue_hours(&self, q: QueueId) -> Option<(Status, Option<Timestamp>)> {
        let queue = self.queues.get(q.0 as usize)?;
        let name = queue.cfg.schedule.as_deref()?;
        let schedule = self.schedules.get(name)?;
        let at = self.wall(self.now)?;
        let emergency = self.emergency.get(name).copied();
        Some((schedule.status(at, emergency), schedule.next_change(at, emergency)))
    }

    /// Open now (always, without a schedule). On the join path: the status
    /// only, not the next change [`Engine::queue_hours`] also looks up.
    pub fn queue_open(&self, q: QueueId) -> bool {
        let Some(name) = self.queues.get(q.0 as usize).and_then(|x| x.cfg.schedule.as_deref()) else { return true };
        match (self.schedules.get(name), self.wall(self.now)) {
            (Some(s), Some(at)) => s.status(at, self.emergency.get(name).copied()).open,
            _ => true,
        }
    }

    /// Sets (or with `None` clears) the emergency switch of schedule `name`
    /// (every queue following it). It survives reloads.
    pub(super) fn set_emergency(&mut self, name: &str, state: Option<Emergency>) -> Result<(), EngineError> {
        if !self.schedules.contains_key(name) {
            return Err(EngineError::UnknownSchedule(name.to_string()));
        }
        tracing::info!(schedule = name, ?state, "emergency switch");
        match state {
            Some(e) => self.emergency.insert(name.to_string(), e),
            None => self.emergency.remove(name),
        };
        self.arm_schedule_edges();
        // Closing may send waiting callers on; opening changes nothing for them.
        for q in self.queues_following(name) {
            self.fire_schedule_edge(q);
        }
        Ok(())
    }

    /// The emergency switches set now, by schedule name.
    pub fn emergencies(&self) -> impl Iterator<Item = (&str, Emergency)> + '_ {
        self.emergency.iter().map(|(k, v)| (k.as_str(), *v))
    }

    fn queues_following(&self, schedule: &str) -> Vec<QueueId> {
        (0..self.queues.len())
            .filter(|&i| self.queues[i].cfg.schedule.as_deref() == Some(schedule))
            .map(|i| QueueId(i as u32))
            .collect()
    }

    /// One timer per scheduled queue at its next open/close instant.
    pub(super) fn arm_schedule_edges(&mut self) {
        for i in 0..self.queues.len() {
            self.arm_schedule_edge(QueueId(i as u32));
        }
    }

    fn arm_schedule_edge(&mut self, q: QueueId) {
        let next = if self.queues[q.0 as usize].closed {
            None
        } else {
            self.queue_hours(q).and_then(|(_, next)| next).and_then(|ts| self.engine_time(ts))
        };
        match next {
            Some(at) => self.timers.set(TimerKind::ScheduleEdge(q), at.max(self.now)),
            None => self.timers.cancel(TimerKind::ScheduleEdge(q)),
        }
    }

    /// At an edge: a queue that just closed with `at_close = "send"` sends
    /// its waiting callers (not those being rung) to `when_closed`.
    pub(super) fn fire_schedule_edge(&mut self, q: QueueId) {
        let open = self.queue_open(q);
        debug!(queue = %self.queues[q.0 as usize].cfg.name, open, "schedule edge");
        if !open && self.queues[q.0 as usize].cfg.at_close == AtClose::Send {
            for c in self.waiting_in(q) {
                self.leave_line(c);
                self.send_closed(c, q, 0);
            }
        }
        self.dirty.insert(q);
        self.arm_schedule_edge(q);
    }

    /// A caller (in no line) for closed queue `q`: its `when_closed` target.
    /// A target queue that is closed too sends the caller on by its own
    /// target, at most a few hops (validation forbids a queue naming
    /// itself; a longer cycle ends in 480).
    pub(super) fn send_closed(&mut self, c: CallId, q: QueueId, hops: u32) {
        let target = self.queues[q.0 as usize].cfg.when_closed.clone();
        self.calls.get_mut(&c).expect("closed-queue call exists").queue = q;
        self.events.push_back(Event::Overflowed {
            call: c,
            from: q,
            to: target.to_string(),
            reason: OverflowReason::Closed,
        });
        debug!(call = c.0, queue = %self.queues[q.0 as usize].cfg.name, %target, "Queued => Closed");
        if target != OverflowTarget::Callback && self.start_closed_prompt(c, q, hops) {
            return;
        }
        self.closed_target(c, q, hops);
    }

    /// Carries out closed queue `q`'s `when_closed` for `c` (in no line).
    pub(super) fn closed_target(&mut self, c: CallId, q: QueueId, hops: u32) {
        match self.queues[q.0 as usize].cfg.when_closed.clone() {
            OverflowTarget::Callback => self.closed_callback(c, q),
            OverflowTarget::Reject(status) => self.reject(c, status),
            OverflowTarget::Uri(uri) => {
                self.withdraw_all_rings(c);
                self.stop_hold(c);
                self.actions.push_back(Action::Transfer { call: c, uri: uri.clone() });
                self.finish(c, Outcome::Overflowed { uri });
            }
            OverflowTarget::Queue(name) => match self.queue_ids.get(&name).copied() {
                Some(tq) if !self.queues[tq.0 as usize].closed && self.queue_open(tq) => self.join_queue(c, tq),
                Some(tq) if !self.queues[tq.0 as usize].closed && hops < 4 => self.send_closed(c, tq, hops + 1),
                _ => self.reject(c, 480),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    //! A week of business hours on the virtual clock: engine time 0 is Fri
    //! 2026-10-23 07:00 in Helsinki (04:00Z, EEST); DST ends on Sunday, so
    //! Monday's 08:00 is 06:00Z; Wednesday the 28th is a holiday.
    use super::super::schedule::Emergency;
    use super::*;
    use crate::config::from_toml_str;

    /// Fri 2026-10-23T04:00:00Z.
    const T0_UNIX_MS: i64 = 1_792_728_000_000;
    const H: u64 = 3600;
    const DAY: u64 = 24 * H;

    fn config(at_close: &str, extra: &str) -> String {
        format!(
            r#"
[schedule.office]
time_zone = "Europe/Helsinki"
hours = ["mon-fri 08:00-17:00"]
holidays = ["2026-10-28"]

[[queue]]
name = "front"
schedule = "office"
when_closed = "queue:night"
at_close = "{at_close}"
members = [{{ agent = "anna" }}]

[[queue]]
name = "night"
members = [{{ agent = "nick" }}]

[[agent]]
id = "anna"

[[agent]]
id = "nick"
{extra}
"#
        )
    }

    struct W {
        e: Engine,
        events: Vec<Event>,
        actions: Vec<Action>,
    }

    impl W {
        fn new(toml: &str) -> W {
            let cfg = from_toml_str("hours.toml", toml).unwrap_or_else(|e| panic!("{e}"));
            let mut e = Engine::new(&cfg, Time::ZERO);
            e.set_wall_clock(T0_UNIX_MS);
            let mut w = W { e, events: vec![], actions: vec![] };
            for a in ["anna", "nick"] {
                let agent = w.e.agent_id(a).unwrap();
                w.input(0, Input::AgentRegistered { agent });
            }
            w.take();
            w
        }
        fn input(&mut self, secs: u64, i: Input) {
            self.e.handle(Time::from_secs(secs), i).unwrap();
            self.pump();
        }
        fn at(&mut self, secs: u64) {
            self.e.handle_timeout(Time::from_secs(secs)).unwrap();
            self.pump();
        }
        fn pump(&mut self) {
            while let Some(a) = self.e.poll_action() {
                self.actions.push(a);
            }
            while let Some(ev) = self.e.poll_event() {
                self.events.push(ev);
            }
        }
        fn take(&mut self) -> (Vec<Action>, Vec<Event>) {
            (std::mem::take(&mut self.actions), std::mem::take(&mut self.events))
        }
        fn call(&mut self, secs: u64, id: u64) {
            let nc = NewCall {
                id: CallId(id),
                queue: self.e.queue_id("front").unwrap(),
                caller: format!("+35840{id}"),
                priority: 0,
                skills: vec![],
                attributes: vec![],
            };
            self.input(secs, Input::CallArrived(nc));
        }
        /// Which agent the call rang, if any, since the last `take`.
        fn rang(&mut self, id: u64) -> Option<String> {
            let (actions, _) = self.take();
            actions.iter().find_map(|a| match a {
                Action::Ring { call, agent, .. } if call.0 == id => Some(self.e.agent_name(*agent).to_string()),
                _ => None,
            })
        }
        fn open(&self) -> bool {
            self.e.queue_open(self.e.queue_id("front").unwrap())
        }
    }

    #[test]
    fn a_week_of_hours_with_the_dst_change_a_holiday_and_callers_sent_on_at_closing() {
        let mut w = W::new(&config("send", ""));
        // Fri 07:00: closed, the caller goes to the night queue.
        assert!(!w.open());
        w.call(0, 1);
        assert_eq!(w.rang(1).as_deref(), Some("nick"));
        let nick = w.e.agent_id("nick").unwrap();
        w.input(1, Input::OfferAnswered { call: CallId(1), agent: nick });
        // 08:00: open (the edge timer fires), a caller reaches anna.
        w.at(H);
        assert!(w.open());
        w.call(H, 2);
        assert_eq!(w.rang(2).as_deref(), Some("anna"));
        let anna = w.e.agent_id("anna").unwrap();
        w.input(H + 5, Input::OfferAnswered { call: CallId(2), agent: anna });
        // 16:59 a caller waits (anna is busy); 17:00 closes and, with
        // at_close = "send", it goes on to the night queue.
        w.call(10 * H - 60, 3);
        assert_eq!(w.rang(3), None);
        w.at(10 * H);
        assert!(!w.open());
        let (_, events) = w.take();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Overflowed { call, reason: OverflowReason::Closed, .. } if call.0 == 3)),
            "{events:?}"
        );
        // nick is on call 1 still: call 3 waits in night until his call
        // and wrap-up (10 s by default) are over.
        w.input(10 * H + 1, Input::CallEnded { call: CallId(1) });
        w.at(10 * H + 11);
        assert_eq!(w.rang(3).as_deref(), Some("nick"));
        // Monday 2026-10-26, after DST: 08:00 EET is 06:00Z = t0 + 3 d 2 h.
        let mon_8 = 3 * DAY + 2 * H;
        w.at(mon_8 - 60);
        assert!(!w.open(), "07:59 local on Monday (EET) is closed");
        w.at(mon_8);
        assert!(w.open(), "08:00 local on Monday (EET) is open");
        // Wednesday the 28th is a holiday: closed at 10:00 local (08:00Z).
        w.at(5 * DAY + 4 * H);
        assert!(!w.open());
        assert_eq!(
            w.e.queue_hours(w.e.queue_id("front").unwrap()).unwrap().0.why,
            super::super::schedule::Why::Holiday
        );
        // Thursday 10:00 open again.
        w.at(6 * DAY + 4 * H);
        assert!(w.open());
    }

    #[test]
    fn a_transfer_into_a_closed_queue_is_refused_and_the_call_stays_bridged() {
        let mut w = W::new(&config("send", ""));
        // Fri 07:00, front closed: caller 1 reaches nick in the night queue.
        w.call(0, 1);
        assert_eq!(w.rang(1).as_deref(), Some("nick"));
        let nick = w.e.agent_id("nick").unwrap();
        w.input(1, Input::OfferAnswered { call: CallId(1), agent: nick });
        let front = w.e.queue_id("front").unwrap();
        let r = w.e.handle(Time::from_secs(2), Input::TransferCall { call: CallId(1), queue: front });
        assert!(matches!(r, Err(EngineError::QueueClosed(_))), "{r:?}");
        assert_eq!(w.e.call(CallId(1)).map(|c| c.queue), Some(w.e.queue_id("night").unwrap()));
        // At 08:00 the same transfer is taken.
        w.at(H);
        w.take();
        w.input(H, Input::TransferCall { call: CallId(1), queue: front });
        assert_eq!(w.rang(1).as_deref(), Some("anna"));
    }

    #[test]
    fn callers_waiting_at_closing_are_served_by_default() {
        let mut w = W::new(&config("serve", ""));
        w.at(H);
        let anna = w.e.agent_id("anna").unwrap();
        w.call(H, 1);
        w.input(H + 1, Input::OfferAnswered { call: CallId(1), agent: anna });
        w.call(10 * H - 60, 2);
        w.at(10 * H);
        assert!(!w.open());
        w.take();
        // Still in front's line: anna gets it when she is free.
        w.input(10 * H + 30, Input::CallEnded { call: CallId(1) });
        let wrap = 10; // default wrap-up
        w.at(10 * H + 30 + wrap);
        assert_eq!(w.rang(2).as_deref(), Some("anna"));
        // A new caller after closing is sent to the night queue.
        w.call(10 * H + 60, 3);
        assert_eq!(w.rang(3).as_deref(), Some("nick"));
    }

    #[test]
    fn the_emergency_switch_closes_and_opens_over_the_hours_and_survives_a_reload() {
        let mut w = W::new(&config("send", ""));
        w.at(2 * H); // Fri 09:00, open
        assert!(w.open());
        w.input(2 * H, Input::SetEmergency { schedule: "office".into(), state: Some(Emergency::Closed) });
        assert!(!w.open());
        w.call(2 * H + 1, 1);
        assert_eq!(w.rang(1).as_deref(), Some("nick"));
        // A reload keeps the switch.
        let cfg = from_toml_str("hours.toml", &config("send", "")).unwrap();
        w.input(2 * H + 2, Input::ConfigReplaced(Box::new(cfg)));
        assert!(!w.open());
        // Cleared: back to the hours (open on a Friday at 09:00).
        w.input(2 * H + 3, Input::SetEmergency { schedule: "office".into(), state: None });
        assert!(w.open());
        // Forced open at night (a fire drill the other way round).
        w.at(12 * H);
        assert!(!w.open());
        w.input(12 * H, Input::SetEmergency { schedule: "office".into(), state: Some(Emergency::Open) });
        assert!(w.open());
        // An unknown schedule is an error, nothing changes.
        let r = w.e.handle(Time::from_secs(12 * H), Input::SetEmergency { schedule: "nope".into(), state: None });
        assert!(matches!(r, Err(EngineError::UnknownSchedule(_))), "{r:?}");
        assert!(w.open());
    }
}
