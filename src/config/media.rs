//! `[media]` and `[music.<class>]`: the RTP plane's settings and the sound
//! it plays. Sound files are read, checked and encoded here, once per load
//! or reload, so `acd check-config` catches a wrong format before a reload
//! and a running daemon never opens a file while a call waits.
//!
//! Relative paths are relative to the config file's directory.

use super::raw::RawConfig;
use super::validate::{check_range, Ctx};
use super::ConfigError;
use crate::media::audio::{self, Clip};
use crate::media::prompts::PromptSet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Built-in class: a North American ringback tone (440 + 480 Hz, 2 s on,
/// 4 s off), for queues that should sound like ringing, not music.
pub const RINGBACK: &str = "ringback";

#[derive(Debug, Clone, PartialEq)]
pub struct MusicClassConfig {
    pub name: String,
    /// `None` for the built-in tone.
    pub file: Option<PathBuf>,
    pub clip: Clip,
}

#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// Address RTP is bound to and written into SDP (default: the first SIP
    /// listen address; a wildcard there needs this set).
    pub rtp_address: Option<IpAddr>,
    /// Port range for RTP (even) and RTCP (odd) pairs (default 20000..30000:
    /// 5,000 legs).
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    /// Media threads (default: one per CPU, at most 4).
    pub threads: usize,
    /// A bridged leg with no RTP for this long ends the call (default 30 s;
    /// 0 = never).
    pub timeout_secs: u32,
    /// Bind and drain each leg's RTCP port (default true). False halves the
    /// descriptors per leg (for hosts with a low open-file limit); the
    /// phones' RTCP then gets ICMP port-unreachable.
    pub rtcp: bool,
    /// Position announcements' prompt set (default none: announcements are
    /// skipped, with a warning).
    pub prompts_dir: Option<PathBuf>,
    pub prompts: Option<Arc<PromptSet>>,
    /// Music classes by name, `default` and `ringback` always among them.
    pub music: Vec<MusicClassConfig>,
    /// The queues' periodic announcements, by resolved path.
    pub announcements: HashMap<PathBuf, Clip>,
}

impl PartialEq for MediaSettings {
    fn eq(&self, o: &Self) -> bool {
        // Prompt sets are equal when read from the same directory.
        self.rtp_address == o.rtp_address
            && self.rtp_port_min == o.rtp_port_min
            && self.rtp_port_max == o.rtp_port_max
            && self.threads == o.threads
            && self.timeout_secs == o.timeout_secs
            && self.rtcp == o.rtcp
            && self.prompts_dir == o.prompts_dir
            && self.music == o.music
            && self.announcements == o.announcements
    }
}

impl Default for MediaSettings {
    fn default() -> Self {
        MediaSettings {
            rtp_address: None,
            rtp_port_min: 20000,
            rtp_port_max: 30000,
            threads: default_threads(),
            timeout_secs: 30,
            rtcp: true,
            prompts_dir: None,
            prompts: None,
            music: builtin_classes(),
            announcements: HashMap::new(),
        }
    }
}

impl MediaSettings {
    pub fn class(&self, name: &str) -> Option<&MusicClassConfig> {
        self.music.iter().find(|m| m.name == name)
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(4)
}

fn ringback_clip() -> Clip {
    Clip::from_pcm(&audio::tone(&[440.0, 480.0], 2000, 4000, 6000, 6000))
}

fn builtin_classes() -> Vec<MusicClassConfig> {
    let rb = ringback_clip();
    vec![
        MusicClassConfig { name: "default".into(), file: None, clip: rb.clone() },
        MusicClassConfig { name: RINGBACK.into(), file: None, clip: rb },
    ]
}

pub(super) fn resolve(config_file: &str, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match Path::new(config_file).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

pub(super) fn media_settings(cx: &Ctx, file: &str, raw: &RawConfig) -> Result<MediaSettings, ConfigError> {
    let d = MediaSettings::default();
    let m = raw.media.clone().unwrap_or_default();
    let rtp_address = match m.rtp_address.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<IpAddr>().map_err(|_| cx.err("media.rtp_address", format!("\"{s}\" is not an IP address")))?,
        ),
    };
    if rtp_address.is_some_and(|a| a.is_unspecified()) {
        return Err(cx.err("media.rtp_address", "a wildcard cannot go into SDP: name the address phones reach"));
    }
    let min = m.rtp_port_min.unwrap_or(d.rtp_port_min as u32);
    let max = m.rtp_port_max.unwrap_or(d.rtp_port_max as u32);
    check_range(cx, "media.rtp_port_min", min, 1024, 65534)?;
    check_range(cx, "media.rtp_port_max", max, 1025, 65535)?;
    if max < min + 2 {
        return Err(cx.err("media.rtp_port_max", format!("{max} leaves no RTP/RTCP pair above rtp_port_min {min}")));
    }
    let threads = m.threads.unwrap_or(d.threads as u32);
    check_range(cx, "media.threads", threads, 1, 64)?;
    let timeout_secs = m.timeout_secs.unwrap_or(d.timeout_secs);
    check_range(cx, "media.timeout_secs", timeout_secs, 0, 3600)?;
    if (1..5).contains(&timeout_secs) {
        return Err(cx.err("media.timeout_secs", "under 5 s, a short network hiccup would end calls (0 turns it off)"));
    }
    let prompts_dir = m.prompts.as_deref().filter(|s| !s.is_empty()).map(|p| resolve(file, p));
    let prompts = match &prompts_dir {
        Some(dir) => Some(Arc::new(PromptSet::load(dir).map_err(|e| cx.err("media.prompts", e.to_string()))?)),
        None => None,
    };
    let mut music = builtin_classes();
    if let Some(classes) = &raw.music {
        for (name, c) in classes {
            let key = format!("music.{name}.file");
            let Some(f) = c.file.as_deref().filter(|f| !f.is_empty()) else {
                return Err(cx.err(key, "a music class needs a file (8000 Hz mono 16-bit WAV)"));
            };
            let path = resolve(file, f);
            let pcm = audio::load_wav(&path).map_err(|e| cx.err(&key, e.to_string()))?;
            let class = MusicClassConfig { name: name.clone(), file: Some(path), clip: Clip::from_pcm(&pcm) };
            match music.iter_mut().find(|m| m.name == *name) {
                Some(slot) => *slot = class,
                None => music.push(class),
            }
        }
    }
    Ok(MediaSettings {
        rtp_address,
        rtp_port_min: min as u16,
        rtp_port_max: max as u16,
        threads: threads as usize,
        timeout_secs,
        rtcp: m.rtcp.unwrap_or(d.rtcp),
        prompts_dir,
        prompts,
        music,
        announcements: HashMap::new(),
    })
}

/// Reads one WAV named by config key `key` (relative to the config file)
/// into `media.announcements`, once; returns its resolved path.
pub(super) fn load_clip(
    cx: &Ctx,
    file: &str,
    key: &str,
    p: &str,
    media: &mut MediaSettings,
) -> Result<PathBuf, ConfigError> {
    let path = resolve(file, p);
    if !media.announcements.contains_key(&path) {
        let pcm = audio::load_wav(&path).map_err(|e| cx.err(key, e.to_string()))?;
        media.announcements.insert(path.clone(), Clip::from_pcm(&pcm));
    }
    Ok(path)
}

/// What plays after a queue's `closed_prompt` before its `when_closed` is
/// carried out: the last packets reach the caller first.
pub const AFTER_CLOSED_PROMPT_MS: u32 = 300;

/// Resolves a queue's `closed_prompt` against the config file's directory,
/// reads it into `media.announcements` and measures it.
pub(super) fn load_closed_prompt(
    cx: &Ctx,
    file: &str,
    q: &mut super::QueueConfig,
    media: &mut MediaSettings,
) -> Result<(), ConfigError> {
    let Some(p) = q.closed_prompt.take() else { return Ok(()) };
    let key = format!("queue[{}].closed_prompt", q.name);
    let path = load_clip(cx, file, &key, &p.to_string_lossy(), media)?;
    q.closed_prompt_ms = media.announcements[&path].duration_ms() as u32 + AFTER_CLOSED_PROMPT_MS;
    q.closed_prompt = Some(path);
    Ok(())
}

/// Resolves a queue's `periodic_announce` files against the config file's
/// directory and reads each once (queues may share them).
pub(super) fn load_announcements(
    cx: &Ctx,
    file: &str,
    q: &mut super::QueueConfig,
    media: &mut MediaSettings,
) -> Result<(), ConfigError> {
    for (i, p) in q.periodic_announce.iter_mut().enumerate() {
        let path = resolve(file, &p.to_string_lossy());
        if !media.announcements.contains_key(&path) {
            let key = format!("queue[{}].periodic_announce[{i}]", q.name);
            let pcm = audio::load_wav(&path).map_err(|e| cx.err(&key, e.to_string()))?;
            media.announcements.insert(path.clone(), Clip::from_pcm(&pcm));
        }
        *p = path;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{from_toml_str, ConfigError, OverflowTarget};

    fn with(front: &str) -> Result<crate::config::Config, ConfigError> {
        from_toml_str(
            "/etc/acd/acd.toml",
            &format!(
                "[schedule.office]\ntime_zone = \"UTC\"\nhours = [\"mon-fri 08:00-17:00\"]\n\
                 [[agent]]\nid = \"anna\"\n[[queue]]\nname = \"front\"\nmembers = [{{ agent = \"anna\" }}]\n{front}\n"
            ),
        )
    }

    fn err(front: &str) -> (String, String) {
        match with(front) {
            Err(ConfigError::Invalid { key, reason, .. }) => (key, reason),
            other => panic!("{front}: {other:?}"),
        }
    }

    #[test]
    fn a_closed_prompt_is_read_and_measured_and_a_bad_one_is_an_error_naming_its_key() {
        let own = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sounds/prompts/en/callback-offer.wav");
        let cfg =
            with(&format!("schedule = \"office\"\nwhen_closed = \"reject:486\"\nclosed_prompt = \"{own}\"")).unwrap();
        let q = &cfg.queues[0];
        assert_eq!(q.when_closed, OverflowTarget::Reject(486));
        let path = q.closed_prompt.clone().unwrap();
        let clip = &cfg.media.announcements[&path];
        assert_eq!(q.closed_prompt_ms as u64, clip.duration_ms() + super::AFTER_CLOSED_PROMPT_MS as u64);
        assert!(clip.duration_ms() > 0);
        // Without the key: nothing to play.
        let cfg = with("schedule = \"office\"").unwrap();
        assert_eq!((cfg.queues[0].closed_prompt.clone(), cfg.queues[0].closed_prompt_ms), (None, 0));

        let not_wav = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let cases = [
            ("schedule = \"office\"\nclosed_prompt = \"sounds/nope.wav\"".to_string(), "/etc/acd/sounds/nope.wav"),
            (format!("schedule = \"office\"\nclosed_prompt = \"{not_wav}\""), "Cargo.toml"),
            (format!("closed_prompt = \"{own}\""), "needs a `schedule`"),
            (
                format!(
                    "schedule = \"office\"\nwhen_closed = \"callback\"\ncallback_trunk = \"t:5060\"\nclosed_prompt = \"{own}\""
                ),
                "its own prompt",
            ),
        ];
        for (toml, reason) in cases {
            let (k, r) = err(&toml);
            assert_eq!(k, "queue[front].closed_prompt", "{toml}: {r}");
            assert!(r.contains(reason), "{toml}: {r}");
        }
    }
}
