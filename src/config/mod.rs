//! Configuration: the file format, its defaults, and validation.
//!
//! Owns the path from a TOML file (plus `ACD_`-prefixed environment
//! overrides, e.g. `ACD_ENGINE__SEED=7`) to a [`Config`] in which every
//! value is resolved and checked. What always holds for a `Config` that
//! [`load`] returned: names are unique, every member names a declared agent,
//! every skill is declared and every level is in `1..=10`, overflow targets
//! exist and queue overflow never loops back on itself. The engine can
//! therefore build from it without failing, and a reload (later) can apply it
//! all or nothing.
//!
//! Defaults and the reason for each are on the fields of [`QueueConfig`],
//! [`AgentConfig`] and [`EngineSettings`], and the shipped `config/acd.toml`
//! repeats them in comments.

mod keypad;
mod media;
mod ops;
pub mod raw;
mod schedule;
mod sip;
mod validate;

pub use keypad::{CallbackConfig, ExitTarget, Keypad};
pub use media::{MediaSettings, MusicClassConfig, RINGBACK};
pub use ops::OpsSettings;

pub use sip::{parse_skills_header, route_for, DigestAlgorithm, FeatureCodes, NumberRoute, SipSettings, TrunkConfig};

use std::path::Path;

pub use validate::validate;

/// Highest skill level; levels run `1..=MAX_SKILL_LEVEL`.
pub const MAX_SKILL_LEVEL: u8 = 10;

/// A config problem, always naming the file and, where there is one, the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{file}: cannot read the config: {reason}")]
    Unreadable { file: String, reason: String },
    /// TOML syntax or a value of the wrong type; the parser's message names
    /// the key when it knows it.
    #[error("{file}: {reason}")]
    Syntax { file: String, reason: String },
    #[error("{file}: {key}: {reason}")]
    Invalid { file: String, key: String, reason: String },
}

impl ConfigError {
    /// The key path the error is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// File it was read from, for messages.
    pub source: String,
    pub engine: EngineSettings,
    /// Declared skills `(name, description)`, sorted by name.
    pub skills: Vec<(String, String)>,
    pub queues: Vec<QueueConfig>,
    pub agents: Vec<AgentConfig>,
    /// Priority by caller number, e.g. VIP customers.
    pub caller_rules: Vec<CallerRule>,
    pub sip: SipSettings,
    /// Who may send calls; nobody when empty.
    pub trunks: Vec<TrunkConfig>,
    /// Dialled number → queue.
    pub numbers: Vec<NumberRoute>,
    /// Metrics, admin API, event log, shutdown.
    pub ops: OpsSettings,
    /// The RTP plane and its sounds (`[media]`, `[music.<class>]`).
    pub media: MediaSettings,
    /// Business hours by name (`[schedule.<name>]`), sorted by name.
    pub schedules: Vec<crate::engine::schedule::Schedule>,
}

/// Gives callers whose number matches a priority in every queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerRule {
    pub description: String,
    /// Exact numbers, or prefixes ending in `*` (`+35840*`).
    pub callers: Vec<String>,
    pub priority: i32,
}

impl CallerRule {
    pub fn matches(&self, caller: &str) -> bool {
        self.callers.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => caller.starts_with(prefix),
            None => caller == p,
        })
    }
}

impl Config {
    /// The priority a caller gets from the caller rules: the highest of the
    /// matching rules, 0 when none matches.
    pub fn caller_priority(&self, caller: &str) -> i32 {
        self.caller_rules.iter().filter(|r| r.matches(caller)).map(|r| r.priority).max().unwrap_or(0)
    }

    pub fn queue(&self, name: &str) -> Option<&QueueConfig> {
        self.queues.iter().find(|q| q.name == name)
    }
    pub fn agent(&self, id: &str) -> Option<&AgentConfig> {
        self.agents.iter().find(|a| a.id == id)
    }

    /// The names of the queues agent `id` is a member of, in config order.
    pub fn queues_of(&self, id: &str) -> Vec<&str> {
        self.queues.iter().filter(|q| q.members.iter().any(|m| m.agent == id)).map(|q| q.name.as_str()).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    /// Seed of the routing RNG (default 1). Fixed rather than random so that
    /// replaying recorded traffic against a config gives the same choices.
    pub seed: u64,
    /// How an agent who serves several queues picks between their callers
    /// (default oldest caller first: nobody waits longer because of which
    /// number they dialled).
    pub cross_queue_policy: CrossQueuePolicy,
    /// Consecutive missed offers (no answer, unreachable, unavailable) after
    /// which an agent is paused with a visible reason (default 3; 0 = never).
    /// Stops a walked-away agent from eating every caller's ring timeout.
    pub auto_pause_after_misses: u32,
    /// How long an agent who did not take an offer is skipped, by cause.
    pub backoff: Backoff,
    /// What happens to the callers of a queue a reload removes (default
    /// `Overflow`: they go to its overflow target if it has one, else stay;
    /// `Stay`: they stay and are served by its last members). Never dropped.
    pub removed_queue_callers: RemovedQueueCallers,
    /// Where pending callbacks are kept across a restart (resolved against
    /// the config file's directory): written at shutdown, read back and
    /// removed at start-up. `None`: they are lost at shutdown.
    pub callback_state_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovedQueueCallers {
    Overflow,
    Stay,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            seed: 1,
            cross_queue_policy: CrossQueuePolicy::OldestCaller,
            auto_pause_after_misses: 3,
            backoff: Backoff::default(),
            removed_queue_callers: RemovedQueueCallers::Overflow,
            callback_state_file: None,
        }
    }
}

/// Seconds an agent is skipped after an offer ended with each cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Rang out the ring timeout (default 10 s: give the next caller a
    /// different agent, but do not sideline a briefly distracted one).
    pub no_answer: u32,
    /// 486 Busy Here (default 30 s: the phone is in use outside acd).
    pub busy: u32,
    /// 480 Temporarily Unavailable, e.g. do-not-disturb (default 30 s).
    pub unavailable: u32,
    /// 603 Decline: the agent pressed reject (default 5 s).
    pub declined: u32,
    /// 408 or no response at all: the phone is gone (default 60 s).
    pub unreachable: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { no_answer: 10, busy: 30, unavailable: 30, declined: 5, unreachable: 60 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrossQueuePolicy {
    /// The caller who has waited longest, whatever the queue.
    OldestCaller,
    /// Wait time multiplied by the queue's `weight`: a heavier queue goes
    /// first, yet a lighter queue's caller wins once they have waited long
    /// enough, so no queue starves.
    QueueWeight,
}

/// How a queue picks among the agents who may take a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Uniform among eligible agents.
    Random,
    /// Random, proportional to each member's `weight`.
    WeightedRandom,
    /// Agent tiers strictly (tier 1 before tier 2), then the tie-break.
    Priority,
    /// Skill-based: only agents meeting the call's skill levels, then the
    /// tie-break (longest idle, fewest skills, or best level).
    Skills,
    LongestIdle,
    /// Next member after the last one offered, in member order.
    RoundRobin,
    /// Member who answered the fewest calls from this queue.
    FewestCalls,
    /// Always the first eligible member in member order.
    Linear,
    /// Every eligible agent of the lowest open tier at once; first answer wins.
    RingAll,
}

impl Strategy {
    pub const ALL: [(&'static str, Strategy); 9] = [
        ("random", Strategy::Random),
        ("weighted-random", Strategy::WeightedRandom),
        ("priority", Strategy::Priority),
        ("skills", Strategy::Skills),
        ("longest-idle", Strategy::LongestIdle),
        ("round-robin", Strategy::RoundRobin),
        ("fewest-calls", Strategy::FewestCalls),
        ("linear", Strategy::Linear),
        ("ring-all", Strategy::RingAll),
    ];
    pub fn name(self) -> &'static str {
        Strategy::ALL.iter().find(|(_, s)| *s == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

/// Order among equally placed agents for `priority` and `skills` queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TieBreak {
    LongestIdle,
    /// Agents with fewer skills first, keeping generalists free for the
    /// calls only they can take; longest idle among equals.
    FewestSkills,
    /// Highest total level on the call's required skills; longest idle among
    /// equals.
    BestLevel,
}

impl TieBreak {
    pub const ALL: [(&'static str, TieBreak); 3] = [
        ("longest-idle", TieBreak::LongestIdle),
        ("fewest-skills", TieBreak::FewestSkills),
        ("best-level", TieBreak::BestLevel),
    ];
}

/// Where a call goes when it waited too long or the queue cannot take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverflowTarget {
    /// Another queue, by name (`queue:NAME`). The caller joins it behind
    /// callers of the same priority; their total wait keeps counting.
    Queue(String),
    /// A SIP URI outside acd (`sip:...`), e.g. a voicemail or another site.
    Uri(String),
    /// Answer the caller with this final status (`reject:486`).
    Reject(u16),
    /// `when_closed` only: answer, say "we will call you back when we
    /// open", hang up, and keep a callback in the queue, offered once it
    /// opens (`engine/callback/closed.rs`).
    Callback,
}

impl std::fmt::Display for OverflowTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OverflowTarget::Queue(q) => write!(f, "queue:{q}"),
            OverflowTarget::Uri(u) => write!(f, "{u}"),
            OverflowTarget::Reject(s) => write!(f, "reject:{s}"),
            OverflowTarget::Callback => write!(f, "callback"),
        }
    }
}

/// Which member states make a queue "empty" (Asterisk's joinempty /
/// leavewhenempty distinctions). A logged-out member always counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EmptyWhen {
    /// Logged in but its phone is not registered (default true).
    pub unregistered: bool,
    pub paused: bool,
    pub wrap_up: bool,
    /// On a call or ringing.
    pub in_use: bool,
}

impl EmptyWhen {
    pub const NAMES: [&'static str; 4] = ["unregistered", "paused", "wrap-up", "in-use"];
}

/// When a queue answers a caller's INVITE (`answer`, `early_media`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 OK on arrival, the queue's music until an agent answers (default:
    /// every trunk and phone handles it).
    OnArrival,
    /// `answer = "on_agent"`, `early_media = "music"`: 183 Session Progress
    /// with SDP and the queue's music as early media; 200 OK only when an
    /// agent answers, so the carrier does not bill the wait.
    EarlyMusic,
    /// `answer = "on_agent"`, `early_media = "ringing"`: 180 Ringing without
    /// media (the caller's network plays ringback); 200 OK when an agent answers.
    EarlyRinging,
}

/// Callers waiting when a queue's schedule closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtClose {
    /// They stay and are served (default): they called while it was open.
    Serve,
    /// They go to the queue's `when_closed` target.
    Send,
}

/// What a queue does with a new caller when none of its members is logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenNoAgents {
    /// Queue the caller anyway (someone may log in).
    Join,
    /// Answer 480 Temporarily Unavailable.
    Reject,
    /// Send the caller to the queue's overflow target.
    Overflow,
}

/// A required skill with its minimum level.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SkillReq {
    pub skill: String,
    pub min_level: u8,
}

/// One step of a queue's relaxation timeline, applied to a caller who has
/// waited `after_secs`: steps apply in order, each on the result of the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaxStep {
    pub after_secs: u32,
    /// Change the level of a skill the call requires (no effect otherwise).
    pub set: Vec<SkillReq>,
    pub drop: Vec<String>,
    /// Require (or re-level) a skill.
    pub add: Vec<SkillReq>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberConfig {
    pub agent: String,
    /// 1 is rung first; higher tiers are backup (default 1).
    pub tier: u32,
    /// Share for `weighted-random` (default 1).
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    pub name: String,
    pub description: String,
    /// Default `longest-idle`: the fairest classic strategy, and what agents
    /// expect when nobody configured anything.
    pub strategy: Strategy,
    /// Default `longest-idle`.
    pub tie_break: TieBreak,
    /// Seconds an agent's phone rings before the call rolls over (default 15:
    /// about four rings, long enough to pick up a headset).
    pub ring_timeout_secs: u32,
    /// Seconds of wrap-up after each call (default 10), overridable per agent.
    pub wrap_up_secs: u32,
    /// Seconds a caller may wait before overflow (default 0 = no limit).
    pub max_wait_secs: u32,
    /// Callers the queue holds; the next one overflows, or gets 503 without
    /// an overflow target (default 200: bounded so overload is answered, not
    /// queued without end).
    pub max_waiting: u32,
    pub overflow: Option<OverflowTarget>,
    /// Default `join`.
    pub when_no_agents: WhenNoAgents,
    /// Member states that count as "nobody there" for `when_no_agents` and
    /// `leave_when_empty`, besides logged out (default: unregistered).
    pub empty_when: EmptyWhen,
    /// Callers already waiting leave (by `when_no_agents`' overflow, else
    /// 480) once the queue is empty by `empty_when` (default false).
    pub leave_when_empty: bool,
    /// Weight for the `queue-weight` cross-queue policy (default 1).
    pub weight: u32,
    pub required_skills: Vec<SkillReq>,
    /// A waiting caller's priority rises by 1 every `aging_secs` (default 0 =
    /// off), so low-priority callers are not starved by a stream of VIPs.
    pub aging_secs: u32,
    /// `(tier, open_after_secs)`: agents of a tier are offered a call only
    /// once it has waited that long. Tier 1 is always open; unlisted tiers
    /// open at once but still after every lower tier.
    pub tiers: Vec<(u32, u32)>,
    pub relax: Vec<RelaxStep>,
    /// Music-on-hold class (default `default`).
    pub music: String,
    /// When the caller is answered (default: on arrival).
    pub answer: Answer,
    /// Business hours (`[schedule.<name>]`); none = always open.
    pub schedule: Option<String>,
    /// Where a caller goes while the queue is closed (default `reject:480`).
    pub when_closed: OverflowTarget,
    /// A recorded message the caller hears before `when_closed` is carried
    /// out (`closed_prompt`, resolved against the config file's directory;
    /// its audio is in [`MediaSettings::announcements`]). Not with
    /// `when_closed = "callback"`, which has its own prompt.
    pub closed_prompt: Option<std::path::PathBuf>,
    /// How long it plays (the clip's length plus a short tail); 0 without.
    pub closed_prompt_ms: u32,
    /// What happens to callers already waiting when the queue closes.
    pub at_close: AtClose,
    /// Seconds between position announcements (default 0 = none).
    pub announce_every_secs: u32,
    /// What a position announcement says: the caller's place (default true)
    /// and the estimated wait (default true); at least one.
    pub announce_position: bool,
    pub announce_wait: bool,
    /// Recorded messages played in turn to a waiting caller (Asterisk's
    /// `periodic-announce`), resolved against the config file's directory;
    /// their audio is in [`MediaSettings::announcements`].
    pub periodic_announce: Vec<std::path::PathBuf>,
    /// Seconds between them (default 0 = none; at least 10).
    pub periodic_announce_every_secs: u32,
    /// Answer threshold for the service level (default 20 s, the 80/20 norm).
    pub service_level_secs: u32,
    /// Exit and callback keys for waiting callers (default: none).
    pub keypad: Keypad,
    /// In member order (used by `linear` and `round-robin`).
    pub members: Vec<MemberConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub id: String,
    pub display_name: String,
    /// Sorted by skill name.
    pub skills: Vec<(String, u8)>,
    /// Overrides the queue's wrap-up for this agent.
    pub wrap_up_secs: Option<u32>,
    /// Logged in from start-up, like a static queue member (default true);
    /// false means the agent logs in from the phone or admin API.
    pub auto_login: bool,
    /// The user name the agent's phone registers with (default: the id).
    pub sip_user: String,
    /// Digest password; an agent without one cannot register.
    pub password: Option<String>,
}

/// Reads, parses and validates the config at `path`, with `ACD_` environment
/// overrides (`ACD_ENGINE__SEED=7` sets `engine.seed`).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    if let Err(e) = std::fs::metadata(path) {
        return Err(ConfigError::Unreadable { file, reason: e.to_string() });
    }
    let built = ::config::Config::builder()
        .add_source(::config::File::from(path).format(::config::FileFormat::Toml))
        .add_source(
            ::config::Environment::with_prefix("ACD")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(env_overrides())),
        )
        .build()
        .and_then(|c| c.try_deserialize::<raw::RawConfig>())
        .map_err(|e| ConfigError::Syntax { file: file.clone(), reason: e.to_string() })?;
    validate(&file, built)
}

/// The `ACD_SECTION__KEY` variables of the environment. Every top-level key
/// of the file is a table, so a variable without `__` (such as `ACD_LOG`,
/// the log filter) cannot be an override and is left alone.
fn env_overrides() -> ::config::Map<String, String> {
    std::env::vars().filter(|(k, _)| k.strip_prefix("ACD_").is_some_and(|rest| rest.contains("__"))).collect()
}

/// Parses and validates TOML text directly, without environment overrides.
/// Used by tests and by anything that already holds the text.
pub fn from_toml_str(file: &str, text: &str) -> Result<Config, ConfigError> {
    let raw = ::config::Config::builder()
        .add_source(::config::File::from_str(text, ::config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize::<raw::RawConfig>())
        .map_err(|e| ConfigError::Syntax { file: file.to_string(), reason: e.to_string() })?;
    validate(file, raw)
}
