//! Business hours: when a queue is open, in the wall-clock time of a named
//! IANA zone, with holidays, one-off overrides and an emergency switch.
//!
//! Sans-IO like the rest of the engine: a [`Schedule`] answers "open at this
//! instant?" and "when does that change next?" for a wall-clock instant it
//! is given ([`jiff::Timestamp`], from the engine's `now` plus the offset the
//! shell hands in). The zone database is jiff's bundled copy, so DST rules
//! do not depend on the host and a test can run a week, DST change
//! included, in milliseconds.
//!
//! Precedence, as Genesys schedule groups and Amazon Connect hours of
//! operation with overrides: emergency switch → holiday → the date's
//! override (closed, or its own hours) → the weekly hours.

use jiff::civil::{Date, Time as CivilTime, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};
use std::collections::{BTreeMap, BTreeSet};

/// Minutes since local midnight: `[start, end)`, `end` up to 24:00.
pub type Span = (u16, u16);

/// What a date does instead of its weekday's hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DayRule {
    Closed,
    Hours(Vec<Span>),
}

/// The admin's switch: forces a schedule closed or open until cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emergency {
    Closed,
    Open,
}

/// Why a schedule is in its state, for logs, metrics and check-config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Emergency,
    Holiday,
    Override,
    Hours,
}

impl Why {
    pub fn name(self) -> &'static str {
        match self {
            Why::Emergency => "emergency",
            Why::Holiday => "holiday",
            Why::Override => "override",
            Why::Hours => "hours",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub open: bool,
    pub why: Why,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub name: String,
    pub zone_name: String,
    zone: TimeZone,
    /// Monday first.
    weekly: [Vec<Span>; 7],
    holidays: BTreeSet<Date>,
    overrides: BTreeMap<Date, DayRule>,
}

/// How far [`Schedule::next_change`] looks ahead.
const HORIZON_DAYS: i32 = 400;

impl Schedule {
    /// `zone`: an IANA name. `weekly[0]` is Monday.
    pub fn new(
        name: &str,
        zone: &str,
        weekly: [Vec<Span>; 7],
        holidays: BTreeSet<Date>,
        overrides: BTreeMap<Date, DayRule>,
    ) -> Result<Schedule, String> {
        let tz = TimeZone::get(zone).map_err(|e| format!("unknown time zone {zone:?}: {e}"))?;
        Ok(Schedule { name: name.into(), zone_name: zone.into(), zone: tz, weekly, holidays, overrides })
    }

    fn spans_of(&self, date: Date) -> (&[Span], Why) {
        if self.holidays.contains(&date) {
            return (&[], Why::Holiday);
        }
        match self.overrides.get(&date) {
            Some(DayRule::Closed) => (&[], Why::Override),
            Some(DayRule::Hours(h)) => (h, Why::Override),
            None => (&self.weekly[weekday_index(date.weekday())], Why::Hours),
        }
    }

    /// Open or closed at `at`, and why.
    pub fn status(&self, at: Timestamp, emergency: Option<Emergency>) -> Status {
        if let Some(e) = emergency {
            return Status { open: e == Emergency::Open, why: Why::Emergency };
        }
        let local = at.to_zoned_datetime(self.zone.clone());
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let (spans, why) = self.spans_of(local.date());
        Status { open: spans.iter().any(|&(a, b)| a <= minute && minute < b), why }
    }

    /// The first instant after `at` at which [`Schedule::status`] flips
    /// (open ↔ closed), within a year and a bit; `None` if it never does
    /// (always open, always closed, or under an emergency switch).
    pub fn next_change(&self, at: Timestamp, emergency: Option<Emergency>) -> Option<Timestamp> {
        if emergency.is_some() {
            return None;
        }
        let now_open = self.status(at, None).open;
        let start = at.to_zoned_datetime(self.zone.clone()).date();
        for d in 0..HORIZON_DAYS {
            let date = start.checked_add(jiff::Span::new().days(d)).ok()?;
            // Candidate edges of this date: its spans' ends and starts, and
            // midnight (a holiday or override can flip the state there).
            let (spans, _) = self.spans_of(date);
            let mut edges: Vec<u16> = spans.iter().flat_map(|&(a, b)| [a, b]).collect();
            edges.push(0);
            edges.sort_unstable();
            edges.dedup();
            for m in edges {
                let Some(ts) = self.instant(date, m) else { continue };
                if ts > at && self.status(ts, None).open != now_open {
                    return Some(ts);
                }
            }
        }
        None
    }

    /// The instant of local `date` at `minute` (24:00 = next midnight). A
    /// wall time skipped by DST resolves to the instant after the gap
    /// ("compatible" disambiguation), a repeated one to its first instance.
    fn instant(&self, date: Date, minute: u16) -> Option<Timestamp> {
        let (date, minute) = if minute >= 24 * 60 { (date.tomorrow().ok()?, minute - 24 * 60) } else { (date, minute) };
        let t = CivilTime::new((minute / 60) as i8, (minute % 60) as i8, 0, 0).ok()?;
        let z: ZonedDateTime = date.to_datetime(t).to_zoned_datetime(self.zone.clone()).ok()?;
        Some(z.timestamp())
    }

    /// `at` as local time in the schedule's zone, for messages.
    pub fn local(&self, at: Timestamp) -> String {
        at.to_zoned_datetime(self.zone.clone()).strftime("%Y-%m-%d %H:%M %Z (%a)").to_string()
    }
}

fn weekday_index(w: Weekday) -> usize {
    w.to_monday_zero_offset() as usize
}

/// Parses `"08:00-17:00"` (end may be `24:00`) into minutes.
pub fn parse_span(s: &str) -> Result<Span, String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("{s:?} is not HH:MM-HH:MM"))?;
    let m = |t: &str| -> Result<u16, String> {
        let (h, mm) = t.trim().split_once(':').ok_or_else(|| format!("{t:?} is not HH:MM"))?;
        let (h, mm): (u16, u16) = (
            h.parse().map_err(|_| format!("{t:?} is not HH:MM"))?,
            mm.parse().map_err(|_| format!("{t:?} is not HH:MM"))?,
        );
        if mm >= 60 || h > 24 || (h == 24 && mm != 0) {
            return Err(format!("{t:?} is not a time of day"));
        }
        Ok(h * 60 + mm)
    };
    let (a, b) = (m(a)?, m(b)?);
    if a >= b {
        return Err(format!("{s:?}: the end must be after the start (use 24:00 for midnight)"));
    }
    Ok((a, b))
}

/// Parses a weekly line: `"mon-fri 08:00-17:00"`, `"sat 10:00-14:00"`,
/// `"sun closed"` is not needed (a day without a line is closed). Adds the
/// span to each day named.
pub fn add_weekly_line(weekly: &mut [Vec<Span>; 7], line: &str) -> Result<(), String> {
    let (days, hours) = line.trim().split_once(' ').ok_or_else(|| format!("{line:?} is not \"DAYS HH:MM-HH:MM\""))?;
    let span = parse_span(hours.trim())?;
    let day = |d: &str| -> Result<usize, String> {
        const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(d.trim()))
            .ok_or_else(|| format!("{d:?} is not a day (mon, tue, wed, thu, fri, sat, sun)"))
    };
    for part in days.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (day(a)?, day(b)?),
            None => (day(part)?, day(part)?),
        };
        if a > b {
            return Err(format!("{part:?}: a day range runs forward, e.g. mon-fri"));
        }
        for spans in &mut weekly[a..=b] {
            spans.push(span);
            spans.sort_unstable();
        }
    }
    Ok(())
}

pub fn parse_date(s: &str) -> Result<Date, String> {
    s.trim().parse::<Date>().map_err(|e| format!("{s:?} is not a date YYYY-MM-DD: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helsinki() -> Schedule {
        let mut weekly: [Vec<Span>; 7] = Default::default();
        add_weekly_line(&mut weekly, "mon-fri 08:00-17:00").unwrap();
        add_weekly_line(&mut weekly, "sat 10:00-14:00").unwrap();
        let holidays = [parse_date("2026-12-24").unwrap()].into_iter().collect();
        let overrides = [(parse_date("2026-12-31").unwrap(), DayRule::Hours(vec![parse_span("08:00-12:00").unwrap()]))]
            .into_iter()
            .collect();
        Schedule::new("support", "Europe/Helsinki", weekly, holidays, overrides).unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn weekly_hours_are_local_time_on_both_sides_of_the_dst_change() {
        let s = helsinki();
        // Fri 2026-10-23, 07:30 EEST (UTC+3) = 04:30Z: closed; 08:00 opens.
        assert!(!s.status(ts("2026-10-23T04:30:00Z"), None).open);
        assert_eq!(s.next_change(ts("2026-10-23T04:30:00Z"), None), Some(ts("2026-10-23T05:00:00Z")));
        // Sat 10:00-14:00; Sun closed; DST ends Sun 2026-10-25 04:00 EEST.
        assert_eq!(s.next_change(ts("2026-10-23T16:00:00Z"), None), Some(ts("2026-10-24T07:00:00Z")));
        // Mon 2026-10-26 08:00 is now EET (UTC+2) = 06:00Z.
        assert_eq!(s.next_change(ts("2026-10-24T11:00:00Z"), None), Some(ts("2026-10-26T06:00:00Z")));
        assert!(s.status(ts("2026-10-26T06:00:00Z"), None).open);
        assert!(!s.status(ts("2026-10-26T05:59:00Z"), None).open);
    }

    #[test]
    fn holiday_then_override_then_weekly_and_the_emergency_switch_over_all() {
        let s = helsinki();
        // Thu 2026-12-24 is a holiday: closed at noon, all day.
        let noon_24 = ts("2026-12-24T10:00:00Z");
        assert_eq!(s.status(noon_24, None), Status { open: false, why: Why::Holiday });
        // Next open: Fri 25th 08:00 EET.
        assert_eq!(s.next_change(noon_24, None), Some(ts("2026-12-25T06:00:00Z")));
        // Thu 31st: override 08:00-12:00, so 13:00 is closed.
        assert_eq!(s.status(ts("2026-12-31T11:00:00Z"), None), Status { open: false, why: Why::Override });
        assert_eq!(s.status(ts("2026-12-31T09:00:00Z"), None), Status { open: true, why: Why::Override });
        assert_eq!(s.next_change(ts("2026-12-31T09:00:00Z"), None), Some(ts("2026-12-31T10:00:00Z")));
        // Emergency beats everything, and has no next change.
        assert_eq!(s.status(noon_24, Some(Emergency::Open)), Status { open: true, why: Why::Emergency });
        assert!(!s.status(ts("2026-12-28T10:00:00Z"), Some(Emergency::Closed)).open);
        assert_eq!(s.next_change(noon_24, Some(Emergency::Open)), None);
    }

    #[test]
    fn bad_lines_name_what_is_wrong() {
        let mut w: [Vec<Span>; 7] = Default::default();
        assert!(add_weekly_line(&mut w, "mon-fri 17:00-08:00").unwrap_err().contains("end must be after"));
        assert!(add_weekly_line(&mut w, "mondays 08:00-17:00").unwrap_err().contains("not a day"));
        assert!(add_weekly_line(&mut w, "fri-mon 08:00-17:00").unwrap_err().contains("runs forward"));
        assert!(add_weekly_line(&mut w, "mon 8-17").unwrap_err().contains("HH:MM"));
        assert!(parse_span("00:00-24:00").is_ok());
        assert!(parse_span("00:00-24:30").is_err());
        assert!(parse_date("2026-02-30").is_err());
        let e = Schedule::new("x", "Europe/Helsinky", Default::default(), Default::default(), Default::default());
        assert!(e.unwrap_err().contains("unknown time zone"));
        // Always open: no next change.
        let mut all: [Vec<Span>; 7] = Default::default();
        add_weekly_line(&mut all, "mon-sun 00:00-24:00").unwrap();
        let s = Schedule::new("24/7", "UTC", all, Default::default(), Default::default()).unwrap();
        assert!(s.status(ts("2026-12-07T00:00:00Z"), None).open);
        assert_eq!(s.next_change(ts("2026-12-07T00:00:00Z"), None), None);
    }
}
