//! The thin async shell: one task, one sleep, around the deterministic
//! cores (the [`crate::sip::front::FrontDoor`] and the [`crate::callctl::Core`]).
//!
//! It owns the clock (core time is milliseconds since start, read once per
//! wake-up), the SIP adapter, the media plane and the outputs (metrics, event
//! log, admin API). Decisions are the cores'; the shell carries them out.
//!
//! - `daemon.rs`: the loop and its dispatch;
//! - `handle.rs`: a daemon on its own thread, its [`Snapshot`] and [`Control`];
//! - `media_legs.rs`: per-leg media sessions (SDP answers, re-INVITEs) over the RTP plane;
//! - `views.rs`: the admin API's JSON views; `admin.rs`: its HTTP side;
//! - `ops.rs`: metrics, event log, file-descriptor budget; `timers.rs`: the shell's deadlines;
//! - `sessions.rs`: the callers' RFC 4028 session timers, by deadline;
//! - `runtime.rs`: the tokio runtime for `sip.workers`;
//! - `error.rs`: [`ShellError`], [`ReloadError`]; `watch.rs`: the config file watcher.

mod admin;
mod callback_state;
mod daemon;
mod error;
mod handle;
mod media_legs;
mod ops;
pub mod runtime;
mod sessions;
mod timers;
mod views;
mod watch;

pub use admin::{AdminReply, AdminRequest, AgentAction};
pub use daemon::{run, Daemon};
pub use error::{ReloadError, ShellError};
pub use handle::{Control, DaemonHandle, Snapshot};

use crate::config::Config;

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
    let m = &config.media;
    lines.push(format!(
        "media: RTP ports {}..{} ({} legs), timeout {}, prompts {}",
        m.rtp_port_min,
        m.rtp_port_max,
        (m.rtp_port_max as usize - m.rtp_port_min as usize) / 2,
        if m.timeout_secs == 0 { "off".to_string() } else { format!("{} s", m.timeout_secs) },
        match &m.prompts_dir {
            Some(d) => d.display().to_string(),
            None => "none (position announcements are skipped)".to_string(),
        }
    ));
    for c in &m.music {
        let secs = c.clip.duration_ms() as f64 / 1000.0;
        match &c.file {
            Some(f) => lines.push(format!("music {}: {} ({secs:.1} s)", c.name, f.display())),
            None => lines.push(format!("music {}: built-in ringback tone", c.name)),
        }
    }
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
        if q.music != "default" {
            line.push_str(&format!(", music {}", q.music));
        }
        if q.announce_every_secs > 0 {
            line.push_str(&format!(", announce every {} s", q.announce_every_secs));
        }
        if let Some(o) = &q.overflow {
            if q.max_wait_secs > 0 {
                line.push_str(&format!(", after {} s -> {}", q.max_wait_secs, o));
            } else {
                line.push_str(&format!(", overflow -> {o}"));
            }
        }
        lines.push(line);
        if let Some(name) = &q.schedule {
            if let Some(s) = config.schedules.iter().find(|s| &s.name == name) {
                lines.push(format!("  hours {}", hours_line(s, q, jiff::Timestamp::now())));
            }
        }
    }
    for a in &config.agents {
        let skills: Vec<String> = a.skills.iter().map(|(s, l)| format!("{s}={l}")).collect();
        let queues = config.queues_of(&a.id);
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

/// `check-config`'s line for a queue with business hours at `now`: open or
/// closed (and why), the next change in the schedule's local time, and what
/// closed means for callers.
pub fn hours_line(
    s: &crate::engine::schedule::Schedule,
    q: &crate::config::QueueConfig,
    now: jiff::Timestamp,
) -> String {
    let st = s.status(now, None);
    let next = match s.next_change(now, None) {
        Some(t) => format!("{} {}", if st.open { "closes" } else { "opens" }, s.local(t)),
        None => "never changes".to_string(),
    };
    let at_close = match q.at_close {
        crate::config::AtClose::Serve => "callers waiting at closing are served",
        crate::config::AtClose::Send => "callers waiting at closing are sent on",
    };
    format!(
        "{} ({}): {} now ({}), {next}; closed -> {}, {at_close}",
        s.name,
        s.zone_name,
        if st.open { "open" } else { "closed" },
        st.why.name(),
        q.when_closed
    )
}
