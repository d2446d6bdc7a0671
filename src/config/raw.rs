//! The config file as written: serde types that mirror the TOML one to one.
//!
//! Everything here is optional or defaulted; [`super::validate`] turns a
//! [`RawConfig`] into the resolved [`super::Config`] and is the only place
//! that decides what a missing field means. Unknown keys are rejected
//! (`deny_unknown_fields`) so a typo such as `ring_timout_secs` is an error
//! naming the key instead of a silently ignored line.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub engine: RawEngine,
    /// Declared skills: `[skills] billing = "Invoices"`, nested tables give
    /// dotted names (`[skills.lang] fi = "Finnish"` declares `lang.fi`).
    #[serde(default)]
    pub skills: Option<Tree<String>>,
    /// Settings every queue inherits unless it sets its own.
    #[serde(default)]
    pub defaults: Option<RawQueue>,
    #[serde(default, rename = "queue")]
    pub queues: Vec<RawQueue>,
    #[serde(default, rename = "agent")]
    pub agents: Vec<RawAgent>,
    #[serde(default, rename = "caller_rule")]
    pub caller_rules: Vec<RawCallerRule>,
    #[serde(default)]
    pub sip: Option<RawSip>,
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<RawTrunk>,
    #[serde(default, rename = "number")]
    pub numbers: Vec<RawNumber>,
    #[serde(default)]
    pub metrics: Option<RawMetrics>,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub event_log: Option<RawEventLog>,
    #[serde(default)]
    pub shutdown: Option<RawShutdown>,
    #[serde(default)]
    pub media: Option<RawMedia>,
    /// `[music.<class>] file = "..."`.
    #[serde(default)]
    pub music: Option<BTreeMap<String, RawMusic>>,
    /// `[schedule.<name>]`: business hours a queue can follow.
    #[serde(default, rename = "schedule")]
    pub schedules: Option<BTreeMap<String, RawSchedule>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    pub time_zone: Option<String>,
    /// `"mon-fri 08:00-17:00"`, one line per span.
    pub hours: Option<Vec<String>>,
    /// Closed all day: `"2026-12-24"`.
    pub holidays: Option<Vec<String>>,
    #[serde(rename = "override")]
    pub overrides: Option<Vec<RawOverride>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOverride {
    pub date: String,
    /// That day's spans (`"08:00-12:00"`); none (or `closed = true`) = closed.
    pub hours: Option<Vec<String>>,
    pub closed: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMedia {
    pub rtp_address: Option<String>,
    pub rtp_port_min: Option<u32>,
    pub rtp_port_max: Option<u32>,
    pub threads: Option<u32>,
    pub timeout_secs: Option<u32>,
    pub rtcp: Option<bool>,
    pub prompts: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMusic {
    pub file: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<String>,
    pub window_secs: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub token: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEventLog {
    pub path: Option<String>,
    pub max_bytes: Option<u64>,
    pub keep: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    pub grace_secs: Option<u32>,
    pub reload_debounce_ms: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSip {
    pub listen_udp: Option<Vec<String>>,
    pub listen_tcp: Option<Vec<String>>,
    pub realm: Option<String>,
    pub digest_algorithms: Option<Vec<String>>,
    pub nonce_ttl_secs: Option<u32>,
    pub register_min_expires: Option<u32>,
    pub register_max_expires: Option<u32>,
    pub register_default_expires: Option<u32>,
    pub max_contacts_per_agent: Option<u32>,
    pub options_interval_secs: Option<u32>,
    pub options_timeout_secs: Option<u32>,
    pub session_min_se_secs: Option<u32>,
    pub session_interval_secs: Option<u32>,
    pub max_calls: Option<u32>,
    pub retry_after_secs: Option<u32>,
    pub retry_after_transient_secs: Option<u32>,
    pub priority_header: Option<String>,
    pub skills_header: Option<String>,
    pub feature_codes: Option<RawFeatureCodes>,
    pub auth_max_failures: Option<u32>,
    pub auth_failure_window_secs: Option<u32>,
    pub auth_lockout_secs: Option<u32>,
    pub max_unacked_invites_per_source: Option<u32>,
    pub overload_queue_delay_ms: Option<u32>,
    pub fd_headroom: Option<u32>,
    pub io_thread: Option<bool>,
    pub workers: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeatureCodes {
    pub login: Option<String>,
    pub logout: Option<String>,
    pub pause: Option<String>,
    pub ready: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrunk {
    pub name: String,
    pub description: Option<String>,
    pub sources: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub trust_headers: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNumber {
    pub number: String,
    pub description: Option<String>,
    pub queue: String,
    pub priority: Option<i32>,
    pub skills: Option<Tree<i64>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCallerRule {
    pub description: Option<String>,
    pub callers: Vec<String>,
    pub priority: i32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngine {
    pub seed: Option<u64>,
    pub cross_queue_policy: Option<String>,
    pub auto_pause_after_misses: Option<u32>,
    pub removed_queue_callers: Option<String>,
    pub callback_state_file: Option<String>,
    pub backoff_secs: Option<RawBackoff>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    pub no_answer: Option<u32>,
    pub busy: Option<u32>,
    pub unavailable: Option<u32>,
    pub declined: Option<u32>,
    pub unreachable: Option<u32>,
}

/// One `[[queue]]` (or the `[defaults]` table, which may not set `name` or
/// `members`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub name: Option<String>,
    pub description: Option<String>,
    pub strategy: Option<String>,
    pub tie_break: Option<String>,
    pub ring_timeout_secs: Option<u32>,
    pub wrap_up_secs: Option<u32>,
    pub max_wait_secs: Option<u32>,
    pub max_waiting: Option<u32>,
    pub overflow: Option<String>,
    pub when_no_agents: Option<String>,
    pub weight: Option<u32>,
    pub required_skills: Option<Tree<i64>>,
    pub aging_secs: Option<u32>,
    pub tiers: Option<Vec<RawTier>>,
    pub relax: Option<Vec<RawRelax>>,
    pub music: Option<String>,
    pub answer: Option<String>,
    pub early_media: Option<String>,
    pub announce_every_secs: Option<u32>,
    pub announce_position: Option<bool>,
    pub announce_wait: Option<bool>,
    pub periodic_announce: Option<Vec<String>>,
    pub periodic_announce_every_secs: Option<u32>,
    pub service_level_secs: Option<u32>,
    pub schedule: Option<String>,
    pub when_closed: Option<String>,
    pub closed_prompt: Option<String>,
    pub empty_when: Option<Vec<String>>,
    pub leave_when_empty: Option<bool>,
    pub at_close: Option<String>,
    pub exit_key: Option<String>,
    pub exit_target: Option<String>,
    pub callback_key: Option<String>,
    pub callback_offer_after_secs: Option<u32>,
    pub callback_trunk: Option<String>,
    pub callback_initial_delay_secs: Option<u32>,
    pub callback_max_attempts: Option<u32>,
    pub callback_retry_delay_secs: Option<u32>,
    pub callback_whisper: Option<String>,
    pub members: Option<Vec<RawMember>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    pub tier: u32,
    pub open_after_secs: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelax {
    pub after_secs: u32,
    /// Change the minimum level of skills the call already requires.
    pub set: Option<Tree<i64>>,
    /// Stop requiring these skills.
    pub drop: Option<Vec<String>>,
    /// Start requiring these skills (or change their level).
    pub add: Option<Tree<i64>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMember {
    pub agent: String,
    pub tier: Option<u32>,
    pub weight: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub id: String,
    pub display_name: Option<String>,
    pub skills: Option<Tree<i64>>,
    pub wrap_up_secs: Option<u32>,
    pub auto_login: Option<bool>,
    pub sip_user: Option<String>,
    pub password: Option<String>,
}

/// A TOML table whose leaves are `T` and whose nested tables make dotted
/// names: `{ lang = { fi = 5 } }`, `{ lang.fi = 5 }` and `{ "lang.fi" = 5 }`
/// all mean `lang.fi = 5`, so admins can write skills the way TOML reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Tree<T> {
    Leaf(T),
    Node(BTreeMap<String, Tree<T>>),
}

impl<T: Clone> Tree<T> {
    /// Flattens to `(dotted.name, leaf)` pairs in name order.
    pub fn flatten(&self) -> Vec<(String, T)> {
        let mut out = Vec::new();
        self.flatten_into("", &mut out);
        out
    }

    fn flatten_into(&self, prefix: &str, out: &mut Vec<(String, T)>) {
        match self {
            Tree::Leaf(v) => out.push((prefix.to_string(), v.clone())),
            Tree::Node(map) => {
                for (k, v) in map {
                    let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    v.flatten_into(&name, out);
                }
            }
        }
    }
}
