//! From [`RawConfig`] to [`Config`]: resolve defaults, check everything.
//!
//! Keys in messages read like the file: `queue[billing].strategy`,
//! `agent[aino].skills.lang.fi`, `engine.backoff_secs.busy`. Checks run in
//! file order and the first problem is reported, so fixing errors one by one
//! converges.

use super::raw::{RawAgent, RawConfig, RawQueue, Tree};
use super::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub(crate) struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    pub(crate) fn err(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { file: self.file.to_string(), key: key.into(), reason: reason.into() }
    }
}

/// Validates `raw` read from `file`.
pub fn validate(file: &str, raw: RawConfig) -> Result<Config, ConfigError> {
    let cx = Ctx { file };
    let engine = engine_settings(&cx, &raw)?;

    let mut skills: Vec<(String, String)> = match &raw.skills {
        Some(tree) => tree.flatten(),
        None => Vec::new(),
    };
    skills.sort();
    let declared: BTreeSet<&str> = skills.iter().map(|(n, _)| n.as_str()).collect();
    for (name, _) in &skills {
        check_skill_name(&cx, &format!("skills.{name}"), name)?;
    }

    let mut agents = Vec::with_capacity(raw.agents.len());
    let mut agent_ids: HashMap<&str, usize> = HashMap::new();
    for (i, a) in raw.agents.iter().enumerate() {
        let key = format!("agent[{}]", label(&a.id, i));
        if a.id.trim().is_empty() {
            return Err(cx.err(format!("{key}.id"), "agent id must not be empty"));
        }
        if let Some(first) = agent_ids.insert(&a.id, i) {
            return Err(cx.err(
                format!("{key}.id"),
                format!("duplicate agent \"{}\" (also agent number {} in the file)", a.id, first + 1),
            ));
        }
        agents.push(agent(&cx, &key, a, &declared)?);
    }

    let schedules = super::schedule::schedules(&cx, &raw)?;
    let defaults = raw.defaults.clone().unwrap_or_default();
    if defaults.name.is_some() {
        return Err(cx.err("defaults.name", "defaults apply to every queue and cannot have a name"));
    }
    if defaults.members.is_some() {
        return Err(cx.err("defaults.members", "members belong to a queue, not to the defaults"));
    }

    let mut queues = Vec::with_capacity(raw.queues.len());
    let mut queue_names: HashMap<String, usize> = HashMap::new();
    let mut exit_targets: Vec<Option<String>> = Vec::with_capacity(raw.queues.len());
    for (i, q) in raw.queues.iter().enumerate() {
        let name = q.name.clone().unwrap_or_default();
        let key = format!("queue[{}]", label(&name, i));
        if name.trim().is_empty() {
            return Err(cx.err(format!("{key}.name"), "every queue needs a name"));
        }
        if let Some(first) = queue_names.insert(name.clone(), i) {
            return Err(cx.err(
                format!("{key}.name"),
                format!("duplicate queue \"{name}\" (also queue number {} in the file)", first + 1),
            ));
        }
        let known = Known { declared: &declared, agents: &agent_ids, schedules: &schedules };
        queues.push(queue(&cx, &key, name, q, &defaults, &known)?);
        let (pad, exit_target) = super::keypad::keypad(&cx, &key, q, &defaults)?;
        queues.last_mut().expect("just pushed").keypad = pad;
        exit_targets.push(exit_target);
    }

    check_overflow_targets(&cx, &queues)?;
    for q in &queues {
        if let OverflowTarget::Queue(t) = &q.when_closed {
            let key = format!("queue[{}].when_closed", q.name);
            if t == &q.name {
                return Err(cx.err(key, "a closed queue cannot send callers to itself"));
            }
            if !queues.iter().any(|x| &x.name == t) {
                return Err(cx.err(key, format!("queue \"{t}\" does not exist")));
            }
        }
    }

    let mut caller_rules = Vec::new();
    for (i, r) in raw.caller_rules.iter().enumerate() {
        let key = format!("caller_rule[{i}]");
        if r.callers.is_empty() {
            return Err(cx.err(format!("{key}.callers"), "list at least one number or prefix*"));
        }
        for (j, p) in r.callers.iter().enumerate() {
            let body = p.strip_suffix('*').unwrap_or(p);
            if body.is_empty() || body.contains('*') {
                return Err(cx.err(
                    format!("{key}.callers[{j}]"),
                    format!("\"{p}\" is not a number or a prefix ending in a single '*'"),
                ));
            }
        }
        if !(-100..=100).contains(&r.priority) {
            return Err(cx.err(format!("{key}.priority"), format!("{} is out of range -100..=100", r.priority)));
        }
        caller_rules.push(CallerRule {
            description: r.description.clone().unwrap_or_default(),
            callers: r.callers.clone(),
            priority: r.priority,
        });
    }

    let sip = super::sip::sip_settings(&cx, raw.sip.as_ref())?;
    let mut sip_users: HashMap<&str, &str> = HashMap::new();
    for a in &agents {
        if let Some(other) = sip_users.insert(&a.sip_user, &a.id) {
            return Err(cx.err(
                format!("agent[{}].sip_user", a.id),
                format!("\"{}\" is also the SIP user of agent \"{other}\"", a.sip_user),
            ));
        }
    }
    let trunks = super::sip::trunks(&cx, &raw.trunks)?;
    let numbers = super::sip::numbers(&cx, &raw.numbers, &queues, &declared)?;
    super::keypad::resolve_exit_targets(&cx, &mut queues, &exit_targets, &numbers)?;
    let ops = super::ops::ops_settings(&cx, &raw)?;
    let mut media = super::media::media_settings(&cx, file, &raw)?;
    for q in &mut queues {
        super::media::load_announcements(&cx, file, q, &mut media)?;
        super::media::load_closed_prompt(&cx, file, q, &mut media)?;
    }
    super::keypad::finish_callbacks(&cx, file, &mut queues, &mut media)?;
    for q in &queues {
        if media.class(&q.music).is_none() {
            let known: Vec<&str> = media.music.iter().map(|m| m.name.as_str()).collect();
            return Err(cx.err(
                format!("queue[{}].music", q.name),
                format!(
                    "no music class \"{}\" (classes: {}; add [music.{}] file = \"...\")",
                    q.music,
                    known.join(", "),
                    q.music
                ),
            ));
        }
    }

    Ok(Config {
        source: file.to_string(),
        engine,
        skills,
        queues,
        agents,
        caller_rules,
        sip,
        trunks,
        numbers,
        ops,
        media,
        schedules,
    })
}

fn label(name: &str, index: usize) -> String {
    if name.trim().is_empty() {
        format!("#{}", index + 1)
    } else {
        name.to_string()
    }
}

fn engine_settings(cx: &Ctx, raw: &RawConfig) -> Result<EngineSettings, ConfigError> {
    let d = EngineSettings::default();
    let e = &raw.engine;
    let cross_queue_policy = match e.cross_queue_policy.as_deref() {
        None => d.cross_queue_policy,
        Some("oldest-caller") => CrossQueuePolicy::OldestCaller,
        Some("queue-weight") => CrossQueuePolicy::QueueWeight,
        Some(other) => {
            return Err(cx.err(
                "engine.cross_queue_policy",
                format!("unknown policy \"{other}\"; expected \"oldest-caller\" or \"queue-weight\""),
            ))
        }
    };
    let b = e.backoff_secs.as_ref();
    let db = d.backoff;
    let backoff = Backoff {
        no_answer: b.and_then(|b| b.no_answer).unwrap_or(db.no_answer),
        busy: b.and_then(|b| b.busy).unwrap_or(db.busy),
        unavailable: b.and_then(|b| b.unavailable).unwrap_or(db.unavailable),
        declined: b.and_then(|b| b.declined).unwrap_or(db.declined),
        unreachable: b.and_then(|b| b.unreachable).unwrap_or(db.unreachable),
    };
    for (k, v) in [
        ("no_answer", backoff.no_answer),
        ("busy", backoff.busy),
        ("unavailable", backoff.unavailable),
        ("declined", backoff.declined),
        ("unreachable", backoff.unreachable),
    ] {
        if v > 3600 {
            return Err(cx.err(
                format!("engine.backoff_secs.{k}"),
                format!("{v} s is more than an hour; an agent skipped that long looks stuck"),
            ));
        }
    }
    let callback_state_file = match e.callback_state_file.as_deref() {
        None => None,
        Some(p) => Some(callback_state_file(cx, p)?),
    };
    Ok(EngineSettings {
        callback_state_file,
        seed: e.seed.unwrap_or(d.seed),
        cross_queue_policy,
        auto_pause_after_misses: e.auto_pause_after_misses.unwrap_or(d.auto_pause_after_misses),
        backoff,
        removed_queue_callers: match e.removed_queue_callers.as_deref() {
            None => d.removed_queue_callers,
            Some("overflow") => RemovedQueueCallers::Overflow,
            Some("stay") => RemovedQueueCallers::Stay,
            Some(other) => {
                return Err(cx.err(
                    "engine.removed_queue_callers",
                    format!("unknown choice \"{other}\"; expected \"overflow\" or \"stay\""),
                ))
            }
        },
    })
}

/// `engine.callback_state_file`: a file name in a directory acd can write
/// (checked by creating and removing a probe file next to it).
fn callback_state_file(cx: &Ctx, p: &str) -> Result<std::path::PathBuf, ConfigError> {
    const KEY: &str = "engine.callback_state_file";
    let path = super::media::resolve(cx.file, p);
    let (Some(name), Some(dir)) = (path.file_name(), path.parent()) else {
        return Err(cx.err(KEY, format!("\"{p}\" names no file")));
    };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    if !dir.is_dir() {
        return Err(cx.err(KEY, format!("{} is not a directory", dir.display())));
    }
    let probe = dir.join(format!(".{}.probe-{}", name.to_string_lossy(), std::process::id()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(path)
        }
        Err(e) => Err(cx.err(KEY, format!("directory {} is not writable: {e}", dir.display()))),
    }
}

fn check_skill_name(cx: &Ctx, key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .split('.')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    if ok {
        Ok(())
    } else {
        Err(cx.err(key, format!("skill name \"{name}\" may only use letters, digits, '-', '_' and '.' between parts")))
    }
}

/// Checks `(name, level)` pairs: declared skill, level in range.
pub(super) fn skill_levels(
    cx: &Ctx,
    key: &str,
    tree: Option<&Tree<i64>>,
    declared: &BTreeSet<&str>,
    min: i64,
) -> Result<Vec<(String, u8)>, ConfigError> {
    let Some(tree) = tree else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (name, level) in tree.flatten() {
        let k = format!("{key}.{name}");
        if !declared.contains(name.as_str()) {
            let hint = if declared.is_empty() {
                "; declare skills in the [skills] table".to_string()
            } else {
                format!("; declared skills are: {}", declared.iter().cloned().collect::<Vec<_>>().join(", "))
            };
            return Err(cx.err(k, format!("unknown skill \"{name}\"{hint}")));
        }
        if level < min || level > MAX_SKILL_LEVEL as i64 {
            return Err(cx.err(k, format!("skill level {level} is out of range {min}..={MAX_SKILL_LEVEL}")));
        }
        out.push((name, level as u8));
    }
    Ok(out)
}

fn agent(cx: &Ctx, key: &str, a: &RawAgent, declared: &BTreeSet<&str>) -> Result<AgentConfig, ConfigError> {
    let skills = skill_levels(cx, &format!("{key}.skills"), a.skills.as_ref(), declared, 1)?;
    if let Some(w) = a.wrap_up_secs {
        check_range(cx, &format!("{key}.wrap_up_secs"), w, 0, 3600)?;
    }
    Ok(AgentConfig {
        id: a.id.clone(),
        display_name: a.display_name.clone().unwrap_or_else(|| a.id.clone()),
        skills,
        wrap_up_secs: a.wrap_up_secs,
        auto_login: a.auto_login.unwrap_or(true),
        sip_user: match &a.sip_user {
            None => a.id.clone(),
            Some(u) if !u.is_empty() && u.chars().all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()+".contains(c)) => {
                u.clone()
            }
            Some(u) => return Err(cx.err(format!("{key}.sip_user"), format!("\"{u}\" is not a valid SIP user name"))),
        },
        password: match &a.password {
            Some(p) if p.is_empty() => {
                return Err(
                    cx.err(format!("{key}.password"), "an empty password would let anyone register as this agent")
                )
            }
            p => p.clone(),
        },
    })
}

pub(super) fn check_range(cx: &Ctx, key: &str, v: u32, lo: u32, hi: u32) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        Err(cx.err(key, format!("{v} is out of range {lo}..={hi}")))
    } else {
        Ok(())
    }
}

fn parse_choice<T: Copy>(cx: &Ctx, key: &str, value: &str, what: &str, all: &[(&str, T)]) -> Result<T, ConfigError> {
    all.iter().find(|(n, _)| *n == value).map(|(_, v)| *v).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
        cx.err(key, format!("unknown {what} \"{value}\"; expected one of: {}", names.join(", ")))
    })
}

fn req_list(v: Vec<(String, u8)>) -> Vec<SkillReq> {
    v.into_iter().map(|(skill, min_level)| SkillReq { skill, min_level }).collect()
}

/// What a queue may refer to: declared skills, agents, schedules.
struct Known<'a> {
    declared: &'a BTreeSet<&'a str>,
    agents: &'a HashMap<&'a str, usize>,
    schedules: &'a [crate::engine::schedule::Schedule],
}

fn queue(
    cx: &Ctx,
    key: &str,
    name: String,
    q: &RawQueue,
    d: &RawQueue,
    known: &Known,
) -> Result<QueueConfig, ConfigError> {
    let Known { declared, agents, schedules } = known;
    // A field set on the queue wins; otherwise [defaults]; otherwise built in.
    // The key in a message is the queue's own when the queue set it.
    macro_rules! pick {
        ($f:ident) => {
            match (&q.$f, &d.$f) {
                (Some(v), _) => Some((v.clone(), format!("{key}.{}", stringify!($f)))),
                (None, Some(v)) => Some((v.clone(), format!("defaults.{}", stringify!($f)))),
                (None, None) => None,
            }
        };
    }
    let strategy = match pick!(strategy) {
        Some((s, k)) => parse_choice(cx, &k, &s, "strategy", &Strategy::ALL)?,
        None => Strategy::LongestIdle,
    };
    let tie_break = match pick!(tie_break) {
        Some((s, k)) => parse_choice(cx, &k, &s, "tie-break", &TieBreak::ALL)?,
        None => TieBreak::LongestIdle,
    };
    let num = |v: Option<(u32, String)>, default: u32, lo: u32, hi: u32| -> Result<u32, ConfigError> {
        match v {
            Some((v, k)) => check_range(cx, &k, v, lo, hi).map(|_| v),
            None => Ok(default),
        }
    };
    let ring_timeout_secs = num(pick!(ring_timeout_secs), 15, 1, 600)?;
    let wrap_up_secs = num(pick!(wrap_up_secs), 10, 0, 3600)?;
    let max_wait_secs = num(pick!(max_wait_secs), 0, 0, 86_400)?;
    let max_waiting = num(pick!(max_waiting), 200, 1, 1_000_000)?;
    let weight = num(pick!(weight), 1, 1, 1000)?;
    let aging_secs = num(pick!(aging_secs), 0, 0, 86_400)?;
    let announce_every_secs = num(pick!(announce_every_secs), 0, 0, 3600)?;
    if announce_every_secs != 0 && announce_every_secs < 10 {
        let k = pick!(announce_every_secs).map(|(_, k)| k).unwrap_or_default();
        return Err(cx.err(k, "announcements more often than every 10 s talk over each other"));
    }
    let announce_position = pick!(announce_position).map_or(true, |(v, _)| v);
    let announce_wait = pick!(announce_wait).map_or(true, |(v, _)| v);
    if announce_every_secs != 0 && !announce_position && !announce_wait {
        let k = pick!(announce_wait).map(|(_, k)| k).unwrap_or_default();
        return Err(cx.err(
            k,
            "with announce_position and announce_wait both false a position announcement says nothing \
             (set announce_every_secs = 0 to turn them off)",
        ));
    }
    let periodic_announce_every_secs = num(pick!(periodic_announce_every_secs), 0, 0, 3600)?;
    let periodic: Vec<String> = pick!(periodic_announce).map(|(v, _)| v).unwrap_or_default();
    if periodic_announce_every_secs != 0 {
        let k = pick!(periodic_announce_every_secs).map(|(_, k)| k).unwrap_or_default();
        if periodic_announce_every_secs < 10 {
            return Err(cx.err(k, "announcements more often than every 10 s talk over each other"));
        }
        if periodic.is_empty() {
            return Err(cx.err(k, "periodic announcements need periodic_announce = [\"file.wav\", ...]"));
        }
    }
    if let Some((files, k)) = pick!(periodic_announce) {
        if files.iter().any(|f| f.is_empty()) {
            return Err(cx.err(k, "an empty file name"));
        }
    }
    // Resolved and read with the media settings (they need the file's directory).
    let periodic_announce = periodic.into_iter().map(std::path::PathBuf::from).collect();
    let service_level_secs = num(pick!(service_level_secs), 20, 1, 3600)?;

    let overflow = match pick!(overflow) {
        None => None,
        Some((s, k)) => Some(parse_overflow(cx, &k, &s)?),
    };
    let when_no_agents = match pick!(when_no_agents) {
        None => WhenNoAgents::Join,
        Some((s, k)) => parse_choice(
            cx,
            &k,
            &s,
            "when_no_agents choice",
            &[("join", WhenNoAgents::Join), ("reject", WhenNoAgents::Reject), ("overflow", WhenNoAgents::Overflow)],
        )?,
    };
    if when_no_agents == WhenNoAgents::Overflow && overflow.is_none() {
        let k = pick!(when_no_agents).map(|(_, k)| k).unwrap_or_default();
        return Err(cx.err(k, "\"overflow\" needs an overflow target; set `overflow` on this queue or in [defaults]"));
    }

    if max_wait_secs > 0 && overflow.is_none() {
        let k = pick!(max_wait_secs).map(|(_, k)| k).unwrap_or_default();
        return Err(cx.err(
            k,
            "a maximum wait needs somewhere to send the caller; set `overflow` (queue:NAME, sip:URI or reject:STATUS)",
        ));
    }

    let required_skills = match pick!(required_skills) {
        None => Vec::new(),
        Some((t, k)) => req_list(skill_levels(cx, &k, Some(&t), declared, 1)?),
    };

    let mut tiers: Vec<(u32, u32)> = Vec::new();
    if let Some((list, k)) = pick!(tiers) {
        for (i, t) in list.iter().enumerate() {
            let tk = format!("{k}[{i}]");
            if t.tier < 2 {
                return Err(cx.err(format!("{tk}.tier"), "tier 1 is always open; rules start at tier 2"));
            }
            check_range(cx, &format!("{tk}.open_after_secs"), t.open_after_secs, 0, 86_400)?;
            if tiers.iter().any(|(n, _)| *n == t.tier) {
                return Err(cx.err(format!("{tk}.tier"), format!("tier {} has two rules", t.tier)));
            }
            tiers.push((t.tier, t.open_after_secs));
        }
        tiers.sort();
        // A higher tier opening before a lower one would ring backup agents
        // while the primary ones are still closed: almost surely a typo.
        for w in tiers.windows(2) {
            if w[1].1 < w[0].1 {
                return Err(cx.err(
                    k.clone(),
                    format!(
                        "tier {} opens after {} s, before tier {} ({} s); higher tiers must open later",
                        w[1].0, w[1].1, w[0].0, w[0].1
                    ),
                ));
            }
        }
    }

    let mut relax = Vec::new();
    if let Some((list, k)) = pick!(relax) {
        let mut last = 0;
        for (i, r) in list.iter().enumerate() {
            let rk = format!("{k}[{i}]");
            if r.after_secs < last {
                return Err(cx.err(format!("{rk}.after_secs"), "relaxation steps must be in order of after_secs"));
            }
            last = r.after_secs;
            let set = req_list(skill_levels(cx, &format!("{rk}.set"), r.set.as_ref(), declared, 1)?);
            let add = req_list(skill_levels(cx, &format!("{rk}.add"), r.add.as_ref(), declared, 1)?);
            let drop = r.drop.clone().unwrap_or_default();
            for (j, s) in drop.iter().enumerate() {
                if !declared.contains(s.as_str()) {
                    return Err(cx.err(format!("{rk}.drop[{j}]"), format!("unknown skill \"{s}\"")));
                }
            }
            if set.is_empty() && add.is_empty() && drop.is_empty() {
                return Err(cx.err(rk, "a relaxation step needs `set`, `drop` or `add`"));
            }
            relax.push(RelaxStep { after_secs: r.after_secs, set, drop, add });
        }
    }

    let music = pick!(music).map(|(m, _)| m).unwrap_or_else(|| "default".to_string());
    let on_agent = match pick!(answer) {
        Some((s, k)) => parse_choice(cx, &k, &s, "answer choice", &[("on_arrival", false), ("on_agent", true)])?,
        None => false,
    };
    let answer = match pick!(early_media) {
        Some((s, k)) if !on_agent && !k.starts_with("defaults.") => {
            return Err(cx.err(k, format!("early_media = \"{s}\" needs answer = \"on_agent\" on this queue")));
        }
        _ if !on_agent => Answer::OnArrival,
        Some((s, k)) => parse_choice(
            cx,
            &k,
            &s,
            "early_media choice",
            &[("music", Answer::EarlyMusic), ("ringing", Answer::EarlyRinging)],
        )?,
        None => Answer::EarlyMusic,
    };

    let mut members: Vec<MemberConfig> = Vec::new();
    for (i, m) in q.members.iter().flatten().enumerate() {
        let mk = format!("{key}.members[{i}]");
        if !agents.contains_key(m.agent.as_str()) {
            return Err(cx.err(format!("{mk}.agent"), format!("no agent with id \"{}\"", m.agent)));
        }
        if members.iter().any(|x| x.agent == m.agent) {
            return Err(cx.err(format!("{mk}.agent"), format!("agent \"{}\" is listed twice", m.agent)));
        }
        let tier = m.tier.unwrap_or(1);
        check_range(cx, &format!("{mk}.tier"), tier, 1, 9)?;
        let weight = m.weight.unwrap_or(1);
        check_range(cx, &format!("{mk}.weight"), weight, 1, 1000)?;
        members.push(MemberConfig { agent: m.agent.clone(), tier, weight });
    }

    let empty_when = match pick!(empty_when) {
        None => EmptyWhen { unregistered: true, ..Default::default() },
        Some((list, k)) => {
            let mut e = EmptyWhen::default();
            for (i, name) in list.iter().enumerate() {
                match name.as_str() {
                    "unregistered" => e.unregistered = true,
                    "paused" => e.paused = true,
                    "wrap-up" => e.wrap_up = true,
                    "in-use" => e.in_use = true,
                    "logged-out" => {}
                    other => {
                        return Err(cx.err(
                            format!("{k}[{i}]"),
                            format!(
                                "unknown member state \"{other}\"; expected one of: {}",
                                EmptyWhen::NAMES.join(", ")
                            ),
                        ))
                    }
                }
            }
            e
        }
    };
    let leave_when_empty = pick!(leave_when_empty).map(|(v, _)| v).unwrap_or(false);
    let schedule = match pick!(schedule) {
        Some((s, k)) => {
            if !schedules.iter().any(|x| x.name == s) {
                let known: Vec<&str> = schedules.iter().map(|x| x.name.as_str()).collect();
                let known = if known.is_empty() {
                    "none is defined".to_string()
                } else {
                    format!("defined: {}", known.join(", "))
                };
                return Err(cx.err(k, format!("no [schedule.{s}] ({known})")));
            }
            Some(s)
        }
        None => None,
    };
    let when_closed = match pick!(when_closed) {
        Some((s, _)) if s == "callback" => OverflowTarget::Callback,
        Some((s, k)) => parse_overflow(cx, &k, &s)?,
        None => OverflowTarget::Reject(480),
    };
    let at_close = match pick!(at_close) {
        Some((s, k)) => {
            parse_choice(cx, &k, &s, "at_close choice", &[("serve", AtClose::Serve), ("send", AtClose::Send)])?
        }
        None => AtClose::Serve,
    };
    if let (Some((_, k)), OverflowTarget::Callback) = (pick!(closed_prompt), &when_closed) {
        return Err(cx.err(k, "`when_closed = \"callback\"` plays its own prompt: no `closed_prompt` with it"));
    }
    if schedule.is_none() {
        for (set, f) in [
            (pick!(when_closed).map(|x| x.1), "when_closed"),
            (pick!(at_close).map(|x| x.1), "at_close"),
            (pick!(closed_prompt).map(|x| x.1), "closed_prompt"),
        ] {
            if let Some(k) = set.filter(|k| !k.starts_with("defaults.")) {
                return Err(cx.err(k, format!("`{f}` needs a `schedule` on this queue (or in [defaults])")));
            }
        }
    }

    Ok(QueueConfig {
        name,
        description: q.description.clone().unwrap_or_default(),
        strategy,
        tie_break,
        ring_timeout_secs,
        wrap_up_secs,
        max_wait_secs,
        max_waiting,
        overflow,
        when_no_agents,
        empty_when,
        leave_when_empty,
        weight,
        required_skills,
        aging_secs,
        tiers,
        relax,
        music,
        answer,
        announce_every_secs,
        announce_position,
        announce_wait,
        periodic_announce,
        periodic_announce_every_secs,
        service_level_secs,
        schedule,
        when_closed,
        // Resolved, read and measured by `load_closed_prompt` once media is read.
        closed_prompt: pick!(closed_prompt).map(|(f, _)| std::path::PathBuf::from(f)),
        closed_prompt_ms: 0,
        at_close,
        keypad: Keypad::default(),
        members,
    })
}

fn parse_overflow(cx: &Ctx, key: &str, s: &str) -> Result<OverflowTarget, ConfigError> {
    if let Some(q) = s.strip_prefix("queue:") {
        if q.is_empty() {
            return Err(cx.err(key, "\"queue:\" needs a queue name"));
        }
        return Ok(OverflowTarget::Queue(q.to_string()));
    }
    if let Some(code) = s.strip_prefix("reject:") {
        return match code.parse::<u16>() {
            Ok(c) if (400..700).contains(&c) => Ok(OverflowTarget::Reject(c)),
            _ => Err(cx.err(key, format!("\"{code}\" is not a SIP final error status (400-699)"))),
        };
    }
    if s.starts_with("sip:") || s.starts_with("sips:") {
        if !s.contains('@') && s.len() < 6 {
            return Err(cx.err(key, format!("\"{s}\" is not a usable SIP URI")));
        }
        return Ok(OverflowTarget::Uri(s.to_string()));
    }
    Err(cx.err(
        key,
        format!("\"{s}\" is not an overflow target; write \"queue:NAME\", \"sip:user@host\" or \"reject:STATUS\""),
    ))
}

/// Every `queue:` target exists and following queue overflow never returns
/// to a queue already visited (a full queue overflowing into a full queue
/// would otherwise bounce a caller forever at one instant).
fn check_overflow_targets(cx: &Ctx, queues: &[QueueConfig]) -> Result<(), ConfigError> {
    let next: BTreeMap<&str, &str> = queues
        .iter()
        .filter_map(|q| match &q.overflow {
            Some(OverflowTarget::Queue(t)) => Some((q.name.as_str(), t.as_str())),
            _ => None,
        })
        .collect();
    for q in queues {
        if let Some(OverflowTarget::Queue(t)) = &q.overflow {
            let key = format!("queue[{}].overflow", q.name);
            if !queues.iter().any(|x| &x.name == t) {
                return Err(cx.err(key, format!("overflow to queue \"{t}\", which does not exist")));
            }
            let mut path = vec![q.name.as_str()];
            let mut at = t.as_str();
            loop {
                if path.contains(&at) {
                    path.push(at);
                    return Err(cx.err(key, format!("overflow loops: {}", path.join(" -> "))));
                }
                path.push(at);
                match next.get(at) {
                    Some(n) => at = n,
                    None => break,
                }
            }
        }
    }
    Ok(())
}
