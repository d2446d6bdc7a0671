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
    /// The key a waiting caller presses to be called back.
    pub key: char,
    /// Offer the callback (the prompt) once the estimated wait passes this
    /// (default 0 = only on the key).
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
    let callback = match callback_key {
        None => {
            for (set, f) in [
                (pick!(callback_trunk).map(|x| x.1), "callback_trunk"),
                (pick!(callback_offer_after_secs).map(|x| x.1), "callback_offer_after_secs"),
                (pick!(callback_max_attempts).map(|x| x.1), "callback_max_attempts"),
                (pick!(callback_retry_delay_secs).map(|x| x.1), "callback_retry_delay_secs"),
                (pick!(callback_initial_delay_secs).map(|x| x.1), "callback_initial_delay_secs"),
            ] {
                if let Some(k) = set.filter(|k| !k.starts_with("defaults.")) {
                    return Err(cx.err(k, format!("`{f}` needs a `callback_key` on this queue (or in [defaults])")));
                }
            }
            None
        }
        Some(c) => {
            if exit_key == Some(c) {
                let k = pick!(callback_key).map(|x| x.1).unwrap_or_default();
                return Err(cx.err(k, format!("'{c}' is also this queue's exit_key")));
            }
            let trunk = match pick!(callback_trunk) {
                Some((t, k)) => check_host_port(cx, &k, &t)?,
                None => {
                    return Err(cx.err(
                        format!("{key}.callback_trunk"),
                        "a callback key needs a `callback_trunk` (host:port the customer is dialled through)",
                    ))
                }
            };
            let num = |v: Option<(u32, String)>, default: u32, lo: u32, hi: u32| -> Result<u32, ConfigError> {
                match v {
                    Some((v, k)) if !(lo..=hi).contains(&v) => {
                        Err(cx.err(k, format!("{v} is out of range {lo}..={hi}")))
                    }
                    Some((v, _)) => Ok(v),
                    None => Ok(default),
                }
            };
            if let Some((v, k)) = pick!(callback_offer_after_secs).filter(|(v, _)| *v > 0) {
                // Offering callback past an estimated wait is not built: a
                // value here would do nothing.
                return Err(cx.err(
                    k,
                    format!(
                        "{v}: offering callback automatically past a wait is not available yet; only 0 (the key alone)"
                    ),
                ));
            }
            Some(CallbackConfig {
                key: c,
                offer_after_secs: num(pick!(callback_offer_after_secs), 0, 0, 86_400)?,
                trunk,
                initial_delay_secs: num(pick!(callback_initial_delay_secs), 0, 0, 3600)?,
                max_attempts: num(pick!(callback_max_attempts), 3, 1, 10)?,
                retry_delay_secs: num(pick!(callback_retry_delay_secs), 60, 1, 86_400)?,
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
        assert_eq!((cb.key, cb.trunk.as_str()), ('1', "127.0.0.1:5070"));
        assert_eq!((cb.initial_delay_secs, cb.max_attempts, cb.retry_delay_secs), (0, 3, 60));
        let (k, r) = err("callback_key = \"1\"");
        assert_eq!(k, "queue[sales].callback_trunk", "{r}");
        let (k, r) = err("callback_key = \"1\"\ncallback_trunk = \"127.0.0.1:5070\"\ncallback_offer_after_secs = 120");
        assert_eq!(k, "queue[sales].callback_offer_after_secs", "{r}");
        assert!(r.contains("not available"), "{r}");
    }
}
