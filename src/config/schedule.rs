//! `[schedule.<name>]`: business hours, checked into
//! [`crate::engine::schedule::Schedule`]s. Keys in messages read like the
//! file: `schedule.support.hours[1]`, `schedule.support.override[0].date`.

use super::raw::{RawConfig, RawSchedule};
use super::validate::Ctx;
use super::ConfigError;
use crate::engine::schedule::{add_weekly_line, parse_date, parse_span, DayRule, Schedule, Span};
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn schedules(cx: &Ctx, raw: &RawConfig) -> Result<Vec<Schedule>, ConfigError> {
    let mut out = Vec::new();
    for (name, r) in raw.schedules.iter().flatten() {
        out.push(schedule(cx, name, r)?);
    }
    Ok(out)
}

fn schedule(cx: &Ctx, name: &str, r: &RawSchedule) -> Result<Schedule, ConfigError> {
    let key = format!("schedule.{name}");
    if name.trim().is_empty() {
        return Err(cx.err(key, "a schedule needs a name"));
    }
    let zone = r.time_zone.as_deref().ok_or_else(|| {
        cx.err(format!("{key}.time_zone"), "say which zone the hours are in, e.g. \"Europe/Helsinki\" or \"UTC\"")
    })?;
    let mut weekly: [Vec<Span>; 7] = Default::default();
    let hours = r.hours.as_deref().unwrap_or_default();
    if hours.is_empty() {
        return Err(cx.err(
            format!("{key}.hours"),
            "list the opening hours, e.g. [\"mon-fri 08:00-17:00\"] (\"mon-sun 00:00-24:00\" for always)",
        ));
    }
    for (i, line) in hours.iter().enumerate() {
        add_weekly_line(&mut weekly, line).map_err(|e| cx.err(format!("{key}.hours[{i}]"), e))?;
    }
    for (d, spans) in weekly.iter().enumerate() {
        if let Some(w) = spans.windows(2).find(|w| w[1].0 < w[0].1) {
            let day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][d];
            return Err(
                cx.err(format!("{key}.hours"), format!("{day}: spans overlap ({:?} and {:?} minutes)", w[0], w[1]))
            );
        }
    }
    let mut holidays = BTreeSet::new();
    for (i, h) in r.holidays.iter().flatten().enumerate() {
        holidays.insert(parse_date(h).map_err(|e| cx.err(format!("{key}.holidays[{i}]"), e))?);
    }
    let mut overrides = BTreeMap::new();
    for (i, o) in r.overrides.iter().flatten().enumerate() {
        let ok = format!("{key}.override[{i}]");
        let date = parse_date(&o.date).map_err(|e| cx.err(format!("{ok}.date"), e))?;
        let rule = match (o.closed, o.hours.as_deref()) {
            (Some(true), Some(h)) if !h.is_empty() => {
                return Err(cx.err(ok, "an override is either `closed = true` or has `hours`, not both"));
            }
            (_, Some(h)) if !h.is_empty() => {
                let mut spans = Vec::new();
                for (j, s) in h.iter().enumerate() {
                    spans.push(parse_span(s).map_err(|e| cx.err(format!("{ok}.hours[{j}]"), e))?);
                }
                spans.sort_unstable();
                DayRule::Hours(spans)
            }
            _ => DayRule::Closed,
        };
        if overrides.insert(date, rule).is_some() {
            return Err(cx.err(format!("{ok}.date"), format!("{date} has two overrides")));
        }
        if holidays.contains(&date) {
            return Err(cx.err(format!("{ok}.date"), format!("{date} is also a holiday; the holiday would win")));
        }
    }
    Schedule::new(name, zone, weekly, holidays, overrides).map_err(|e| cx.err(format!("{key}.time_zone"), e))
}
