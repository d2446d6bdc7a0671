//! A waiting caller's keypad, per queue: the exit key (Asterisk's queue
//! `context`) and the callback key (virtual hold, Amazon Connect's
//! `InitialCallDelaySeconds` / `MaximumConnectionAttempts` /
//! `RetryDelaySeconds` in spirit).
//!
//! What always holds after validation: a key is one of `0-9 * #`; a queue's
//! exit and callback keys differ; an exit key has a target that exists (a
//! queue other than this one, or a SIP URI the admin wrote); a callback key
//! has a trunk `host:port` to dial the customer through (what a callback
//! does: `engine/callback.rs`).

use super::raw::RawQueue;
use super::sip::{route_for, NumberRoute};
use super::validate::Ctx;
use super::{ConfigError, QueueConfig};

/// The keypad rules of one queue (all off by default).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Keypad {
    /// Pressing it leaves the queue to `exit_target`.
    pub exit_key: Option<char>,
    /// Set exactly when `exit_key` is.
    pub exit_target: Option<ExitTarget>,
    pub callback: Option<CallbackConfig>,
}

/// Where the exit key sends a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitTarget {
    /// Another queue: the caller re-enters it like a transfer, keeping its
    /// priority and its place by arrival (`queue:NAME`, `NAME`, or a number
    /// of `[[number]]` that routes to it).
    Queue(String),
    /// A SIP URI from the config (`sip:operator@pbx.example.com`).
    Uri(String),
}

impl std::fmt::Display for ExitTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitTarget::Queue(q) => write!(f, "queue:{q}"),
            ExitTarget::Uri(u) => write!(f, "{u}"),
        }
    }
}

/// Callback (virtual hold) for one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackConfig {
    /// The key a waiting caller presses to be called back; `None` only for
    /// a queue whose `when_closed = "callback"` is its only way in.
    pub key: Option<char>,
    /// Offer the callback (a prompt naming the key) to a caller whose
    /// estimated wait on joining, or whose wait so far, passes this
    /// (default 0 = only on the key, never offered).
    pub offer_after_secs: u32,
    /// `host:port` the customer is dialled through (`sip:<caller>@trunk`).
    pub trunk: String,
    /// Seconds after the key press before the callback is offered to an
    /// agent (default 0: as soon as its turn comes).
    pub initial_delay_secs: u32,
    /// Dials of the customer before giving up (default 3).
    pub max_attempts: u32,
    /// Seconds after a failed dial before the callback is offered again
    /// (default 60).
    pub retry_delay_secs: u32,
    /// The queue's own whisper (`callback_whisper`, resolved against the
    /// config file; its audio is in `media.announcements`), played to the
    /// agent after the generic "This is a callback" prompt.
    pub whisper: Option<std::path::PathBuf>,
    /// How long the agent's whisper lasts (generic prompt, the queue's
    /// file, a short pause): the customer is dialled when it is over. 0
    /// without prompts or file: dialled at once.
    pub whisper_ms: u32,
}

impl CallbackConfig {
    /// A callback on `key` through `trunk` with the documented defaults.
    pub fn new(key: Option<char>, trunk: &str) -> CallbackConfig {
        CallbackConfig {
            key,
            offer_after_secs: 0,
            trunk: trunk.to_string(),
            initial_delay_secs: 0,
            max_attempts: 3,
            retry_delay_secs: 60,
            whisper: None,
            whisper_ms: 0,
        }
    }
}

/// Reads the keypad keys of queue `key` (its own, else `[defaults]`).
/// Exit targets are checked later, by [`resolve_exit_targets`], once every
/// queue and number is known.
pub(super) fn keypad(cx: &Ctx, key: &str, q: &RawQueue, d: &RawQueue) -> Result<(Keypad, Option<String>), ConfigError> {
    macro_rules! pick {
        ($f:ident) => {
            match (&q.$f, &d.$f) {
                (Some(v), _) => Some((v.clone(), format!("{key}.{}", stringify!($f)))),
                (None, Some(v)) => Some((v.clone(), format!("defaults.{}", stringify!($f)))),
                (None, None) => None,
            }
        };
    }
    let digit = |v: Option<(String, String)>| -> Result<Option<char>, ConfigError> {
        let Some((s, k)) = v else { return Ok(None) };
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c @ ('0'..='9' | '*' | '#')), None) => Ok(Some(c)),
            _ => Err(cx.err(k, format!("\"{s}\" is not one key; write one of 0-9, * or #"))),
        }
    };
    let exit_key = digit(pick!(exit_key))?;
    let exit_target = pick!(exit_target);
    match (&exit_key, &exit_target) {
        (Some(_), None) => return Err(cx.err(format!("{key}.exit_target"), "an exit key needs an `exit_target`")),
        (None, Some((_, k))) => return Err(cx.err(k.clone(), "an exit target needs an `exit_key`")),
        _ => {}
    }
    let callback_key = digit(pick!(callback_key))?;
    let callback = match (callback_key, pick!(callback_trunk)) {
        (None, None) => {
            for (set, f) in [
                (pick!(callback_offer_after_secs).map(|x| x.1), "callback_offer_after_secs"),
                (pick!(callback_max_attempts).map(|x| x.1), "callback_max_attempts"),
                (pick!(callback_retry_delay_secs).map(|x| x.1), "callback_retry_delay_secs"),
                (pick!(callback_initial_delay_secs).map(|x| x.1), "callback_initial_delay_secs"),
                (pick!(callback_whisper).map(|x| x.1), "callback_whisper"),
            ] {
                if let Some(k) = set.filter(|k| !k.starts_with("defaults.")) {
                    return Err(cx.err(k, format!("`{f}` needs a `callback_key` on this queue (or in [defaults])")));
                }
            }
            None
        }
        (Some(_), None) => {
            return Err(cx.err(
                format!("{key}.callback_trunk"),
                "a callback key needs a `callback_trunk` (host:port the customer is dialled through)",
            ))
        }
        (c, Some((t, tk))) => {
            if c.is_some() && exit_key == c {
                let k = pick!(callback_key).map(|x| x.1).unwrap_or_default();
                return Err(cx.err(k, format!("'{}' is also this queue's exit_key", c.unwrap_or_default())));
            }
            let trunk = check_host_port(cx, &tk, &t)?;
            let num = |v: Option<(u32, String)>, default: u32, lo: u32, hi: u32| -> Result<u32, ConfigError> {
                match v {
                    Some((v, k)) if !(lo..=hi).contains(&v) => {
                        Err(cx.err(k, format!("{v} is out of range {lo}..={hi}")))
                    }
                    Some((v, _)) => Ok(v),
                    None => Ok(default),
                }
            };
            let offer_after_secs = num(pick!(callback_offer_after_secs), 0, 0, 86_400)?;
            if let (None, Some((_, k))) = (c, pick!(callback_offer_after_secs).filter(|(v, _)| *v > 0)) {
                return Err(cx.err(k, "offering a callback needs a `callback_key` for the caller to press"));
            }
            Some(CallbackConfig {
                key: c,
                offer_after_secs,
                trunk,
                initial_delay_secs: num(pick!(callback_initial_delay_secs), 0, 0, 3600)?,
                max_attempts: num(pick!(callback_max_attempts), 3, 1, 10)?,
                retry_delay_secs: num(pick!(callback_retry_delay_secs), 60, 1, 86_400)?,
                // Resolved and measured by `finish_callbacks` once media is read.
                whisper: pick!(callback_whisper).map(|(f, _)| std::path::PathBuf::from(f)),
                whisper_ms: 0,
            })
        }
    };
    let raw_target = exit_target.map(|(s, _)| s);
    Ok((Keypad { exit_key, exit_target: None, callback }, raw_target))
}

fn check_host_port(cx: &Ctx, key: &str, s: &str) -> Result<String, ConfigError> {
    let ok = match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !host.contains(['@', ';', '<', ' ']) && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    };
    if ok {
        Ok(s.to_string())
    } else {
        Err(cx.err(key, format!("\"{s}\" is not host:port (e.g. \"trunk.example.com:5060\")")))
    }
}

/// Once media settings are read: loads each queue's `callback_whisper`
/// (relative to the config file) into `media.announcements`, measures the
/// agent's whisper, and checks what needs the callback settings: a
/// `when_closed = "callback"` needs a `callback_trunk`, and a trunk without
/// a key is only for that.
pub(super) fn finish_callbacks(
    cx: &Ctx,
    file: &str,
    queues: &mut [QueueConfig],
    media: &mut super::MediaSettings,
) -> Result<(), ConfigError> {
    for q in queues.iter_mut() {
        let closed_callback = q.when_closed == super::OverflowTarget::Callback;
        let Some(cb) = q.keypad.callback.as_mut() else {
            if closed_callback {
                return Err(cx.err(
                    format!("queue[{}].when_closed", q.name),
                    "\"callback\" needs a `callback_trunk` on this queue (host:port the customer is dialled through)",
                ));
            }
            continue;
        };
        if cb.key.is_none() && !closed_callback {
            return Err(cx.err(
                format!("queue[{}].callback_trunk", q.name),
                "`callback_trunk` needs a `callback_key` on this queue (or `when_closed = \"callback\"`)",
            ));
        }
        let file_clip = match cb.whisper.take() {
            Some(p) => {
                let key = format!("queue[{}].callback_whisper", q.name);
                let path = super::media::load_clip(cx, file, &key, &p.to_string_lossy(), media)?;
                cb.whisper = Some(path.clone());
                media.announcements.get(&path).cloned()
            }
            None => None,
        };
        let whisper = crate::media::prompts::callback_whisper(media.prompts.as_deref(), file_clip.as_ref());
        cb.whisper_ms = whisper.map_or(0, |c| c.duration_ms() as u32 + crate::media::prompts::AFTER_WHISPER_MS);
    }
    Ok(())
}

/// Resolves each queue's raw `exit_target` (in `raw`, by queue index) now
/// that every queue and `[[number]]` is known.
pub(super) fn resolve_exit_targets(
    cx: &Ctx,
    queues: &mut [QueueConfig],
    raw: &[Option<String>],
    numbers: &[NumberRoute],
) -> Result<(), ConfigError> {
    let names: Vec<String> = queues.iter().map(|q| q.name.clone()).collect();
    for (q, t) in queues.iter_mut().zip(raw) {
        let Some(t) = t else { continue };
        let key = format!("queue[{}].exit_target", q.name);
        let target = if t.starts_with("sip:") || t.starts_with("sips:") {
            if !t.contains('@') {
                return Err(cx.err(key, format!("\"{t}\" is not a usable SIP URI (sip:user@host)")));
            }
            ExitTarget::Uri(t.clone())
        } else {
            let name = t.strip_prefix("queue:").unwrap_or(t);
            let queue = if names.iter().any(|n| n == name) {
                name.to_string()
            } else if let Some(r) = route_for(numbers, t) {
                r.queue.clone()
            } else {
                return Err(
                    cx.err(key, format!("\"{t}\" is neither a queue nor a number of [[number]] (nor a sip: URI)"))
                );
            };
            if queue == q.name {
                return Err(cx.err(key, format!("\"{t}\" is this queue itself")));
            }
            ExitTarget::Queue(queue)
        };
        q.keypad.exit_target = Some(target);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{from_toml_str, ConfigError, ExitTarget};

    const BASE: &str = r#"
[[agent]]
id = "anna"
[[number]]
number = "2000"
queue = "tech"
[[queue]]
name = "tech"
members = [{ agent = "anna" }]
"#;

    fn with(sales: &str) -> Result<crate::config::Config, ConfigError> {
        from_toml_str(
            "acd.toml",
            &format!("{BASE}\n[[queue]]\nname = \"sales\"\nmembers = [{{ agent = \"anna\" }}]\n{sales}\n"),
        )
    }

    fn err(sales: &str) -> (String, String) {
        match with(sales) {
            Err(ConfigError::Invalid { file, key, reason }) => {
                assert_eq!(file, "acd.toml");
                (key, reason)
            }
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn exit_targets_by_queue_name_number_or_uri() {
        for (t, want) in [
            ("tech", ExitTarget::Queue("tech".into())),
            ("queue:tech", ExitTarget::Queue("tech".into())),
            ("2000", ExitTarget::Queue("tech".into())),
            ("sip:op@pbx.example.com", ExitTarget::Uri("sip:op@pbx.example.com".into())),
        ] {
            let c = with(&format!("exit_key = \"0\"\nexit_target = \"{t}\"")).unwrap();
            let q = c.queues.iter().find(|q| q.name == "sales").unwrap();
            assert_eq!(q.keypad.exit_key, Some('0'));
            assert_eq!(q.keypad.exit_target, Some(want), "{t}");
        }
    }

    #[test]
    fn bad_keys_and_targets_name_the_key() {
        let cases = [
            ("exit_key = \"12\"\nexit_target = \"tech\"", "queue[sales].exit_key", "not one key"),
            ("exit_key = \"x\"\nexit_target = \"tech\"", "queue[sales].exit_key", "not one key"),
            ("exit_key = \"0\"", "queue[sales].exit_target", "needs an `exit_target`"),
            ("exit_target = \"tech\"", "queue[sales].exit_target", "needs an `exit_key`"),
            ("exit_key = \"0\"\nexit_target = \"nowhere\"", "queue[sales].exit_target", "neither a queue nor a number"),
            ("exit_key = \"0\"\nexit_target = \"sales\"", "queue[sales].exit_target", "this queue itself"),
            ("callback_key = \"1\"", "queue[sales].callback_trunk", "needs a `callback_trunk`"),
            ("callback_key = \"1\"\ncallback_trunk = \"trunk\"", "queue[sales].callback_trunk", "not host:port"),
            (
                "callback_key = \"0\"\ncallback_trunk = \"t:5060\"\nexit_key = \"0\"\nexit_target = \"tech\"",
                "queue[sales].callback_key",
                "also this queue's exit_key",
            ),
            ("callback_trunk = \"t:5060\"", "queue[sales].callback_trunk", "needs a `callback_key`"),
            (
                "callback_key = \"1\"\ncallback_trunk = \"t:5060\"\ncallback_max_attempts = 0",
                "queue[sales].callback_max_attempts",
                "out of range",
            ),
        ];
        for (toml, key, reason) in cases {
            let (k, r) = err(toml);
            assert_eq!(k, key, "{toml}");
            assert!(r.contains(reason), "{toml}: {r}");
        }
    }

    #[test]
    fn a_callback_key_with_a_trunk_is_accepted_with_the_documented_defaults() {
        let cfg = with("callback_key = \"1\"\ncallback_trunk = \"127.0.0.1:5070\"").unwrap();
        let q = cfg.queues.iter().find(|q| q.name == "sales").unwrap();
        let cb = q.keypad.callback.as_ref().expect("callback on");
        assert_eq!((cb.key, cb.trunk.as_str()), (Some('1'), "127.0.0.1:5070"));
        assert_eq!((cb.initial_delay_secs, cb.max_attempts, cb.retry_delay_secs), (0, 3, 60));
        let (k, r) = err("callback_key = \"1\"");
        assert_eq!(k, "queue[sales].callback_trunk", "{r}");
        let cfg =
            with("callback_key = \"1\"\ncallback_trunk = \"127.0.0.1:5070\"\ncallback_offer_after_secs = 120").unwrap();
        let q = cfg.queues.iter().find(|q| q.name == "sales").unwrap();
        assert_eq!(q.keypad.callback.as_ref().unwrap().offer_after_secs, 120);
        // No prompts, no file: no whisper, the customer is dialled at once.
        assert_eq!(q.keypad.callback.as_ref().unwrap().whisper_ms, 0);
    }

    #[test]
    fn whisper_offer_and_closed_callback_settings_are_checked() {
        let prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sounds/prompts/en");
        let own = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sounds/prompts/en/callback-offer.wav");
        let cfg = from_toml_str(
            "acd.toml",
            &format!(
                "[media]\nprompts = \"{prompts}\"\n{BASE}\n[[queue]]\nname = \"sales\"\nmembers = [{{ agent = \"anna\" }}]\n\
                 callback_key = \"1\"\ncallback_trunk = \"t:5060\"\ncallback_whisper = \"{own}\"\n"
            ),
        )
        .unwrap();
        let tech = cfg.queues.iter().find(|q| q.name == "tech").unwrap();
        assert!(tech.keypad.callback.is_none());
        let cb = cfg.queues.iter().find(|q| q.name == "sales").unwrap().keypad.callback.clone().unwrap();
        let set = cfg.media.prompts.as_ref().unwrap();
        let generic = set.clip(crate::media::prompts::CALLBACK_WHISPER).unwrap().duration_ms();
        let file = set.clip(crate::media::prompts::CALLBACK_OFFER).unwrap().duration_ms();
        // The generic prompt, a 200 ms pause, the queue's file, 300 ms.
        assert_eq!(cb.whisper_ms as u64, generic + 200 + file + 300);
        assert!(cfg.media.announcements.contains_key(cb.whisper.as_ref().unwrap()));

        let cases = [
            (
                "callback_key = \"1\"\ncallback_trunk = \"t:5060\"\ncallback_whisper = \"nope.wav\"",
                "queue[sales].callback_whisper",
                "nope.wav",
            ),
            ("callback_whisper = \"x.wav\"", "queue[sales].callback_whisper", "needs a `callback_key`"),
            (
                "callback_trunk = \"t:5060\"\ncallback_offer_after_secs = 30",
                "queue[sales].callback_offer_after_secs",
                "needs a `callback_key`",
            ),
            ("callback_trunk = \"t:5060\"", "queue[sales].callback_trunk", "when_closed = \"callback\""),
            ("overflow = \"callback\"", "queue[sales].overflow", "not an overflow target"),
        ];
        for (toml, key, reason) in cases {
            let (k, r) = err(toml);
            assert_eq!(k, key, "{toml}");
            assert!(r.contains(reason), "{toml}: {r}");
        }
    }

    #[test]
    fn when_closed_callback_needs_a_trunk_and_may_go_without_a_key() {
        const SCHED: &str = "[schedule.office]\ntime_zone = \"Europe/Helsinki\"\nhours = [\"mon-fri 08:00-18:00\"]\n";
        let text = |q: &str| {
            format!("{SCHED}{BASE}\n[[queue]]\nname = \"sales\"\nmembers = [{{ agent = \"anna\" }}]\nschedule = \"office\"\nwhen_closed = \"callback\"\n{q}")
        };
        let cfg = from_toml_str("acd.toml", &text("callback_trunk = \"t:5060\"")).unwrap();
        let q = cfg.queues.iter().find(|q| q.name == "sales").unwrap();
        assert_eq!(q.when_closed, crate::config::OverflowTarget::Callback);
        assert_eq!(q.keypad.callback.as_ref().unwrap().key, None);
        match from_toml_str("acd.toml", &text("")) {
            Err(ConfigError::Invalid { key, reason, .. }) => {
                assert_eq!(key, "queue[sales].when_closed");
                assert!(reason.contains("callback_trunk"), "{reason}");
            }
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }
}
