//! Operations settings: metrics exporter, admin API, event log, shutdown.
//!
//! Nothing here is reachable from outside the machine unless an admin says
//! so: the exporter and the admin API default to loopback, and the admin API
//! refuses a non-loopback address without a token.

use super::raw::RawConfig;
use super::validate::{check_range, Ctx};
use super::ConfigError;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsSettings {
    /// Prometheus scrape address (default `127.0.0.1:9464`, the exporter's
    /// registered default port); `None` when `metrics.listen = ""`.
    pub metrics_listen: Option<SocketAddr>,
    /// Sliding window of the live service level, speed of answer, abandon
    /// rate and handle time (default 900 s: a quarter hour, the usual
    /// call-center reporting interval).
    pub metrics_window_secs: u32,
    /// Admin HTTP API address (default `127.0.0.1:8080`); `None` when
    /// `admin.listen = ""`.
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token for the admin API. Without one the API only binds to a
    /// loopback address.
    pub admin_token: Option<String>,
    /// JSON-lines event log (default none: off).
    pub event_log: Option<PathBuf>,
    /// Rotate the event log past this size (default 100 MiB).
    pub event_log_max_bytes: u64,
    /// Rotated files kept (default 5).
    pub event_log_keep: usize,
    /// On SIGTERM: how long bridged calls may go on before acd hangs them up
    /// (default 30 s).
    pub shutdown_grace_secs: u32,
    /// How long a file change must settle before it is reloaded (default
    /// 500 ms; editors write in several steps).
    pub reload_debounce_ms: u32,
}

impl Default for OpsSettings {
    fn default() -> Self {
        OpsSettings {
            metrics_listen: Some("127.0.0.1:9464".parse().expect("literal")),
            metrics_window_secs: 900,
            admin_listen: Some("127.0.0.1:8080".parse().expect("literal")),
            admin_token: None,
            event_log: None,
            event_log_max_bytes: 100 * 1024 * 1024,
            event_log_keep: 5,
            shutdown_grace_secs: 30,
            reload_debounce_ms: 500,
        }
    }
}

fn listen(cx: &Ctx, key: &str, v: &Option<String>, d: Option<SocketAddr>) -> Result<Option<SocketAddr>, ConfigError> {
    match v.as_deref() {
        None => Ok(d),
        Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| cx.err(key, format!("\"{s}\" is not an IP:port address (\"\" turns it off)"))),
    }
}

pub(super) fn ops_settings(cx: &Ctx, raw: &RawConfig) -> Result<OpsSettings, ConfigError> {
    let d = OpsSettings::default();
    let m = raw.metrics.clone().unwrap_or_default();
    let a = raw.admin.clone().unwrap_or_default();
    let e = raw.event_log.clone().unwrap_or_default();
    let s = raw.shutdown.clone().unwrap_or_default();
    let metrics_listen = listen(cx, "metrics.listen", &m.listen, d.metrics_listen)?;
    let metrics_window_secs = m.window_secs.unwrap_or(d.metrics_window_secs);
    check_range(cx, "metrics.window_secs", metrics_window_secs, 60, 86_400)?;
    let admin_listen = listen(cx, "admin.listen", &a.listen, d.admin_listen)?;
    let admin_token = match a.token {
        Some(t) if t.len() < 16 => {
            return Err(cx.err("admin.token", "use at least 16 characters; anyone who guesses it controls the agents"))
        }
        t => t,
    };
    if let (Some(addr), None) = (admin_listen, &admin_token) {
        if !addr.ip().is_loopback() {
            return Err(cx.err(
                "admin.listen",
                format!("{addr} is reachable from other machines; set admin.token, or listen on 127.0.0.1"),
            ));
        }
    }
    if metrics_listen.is_some() && metrics_listen == admin_listen {
        return Err(cx.err("admin.listen", "the admin API and the metrics exporter need different ports"));
    }
    let event_log = match e.path.as_deref() {
        None | Some("") => None,
        Some(p) => Some(PathBuf::from(p)),
    };
    let event_log_max_bytes = e.max_bytes.unwrap_or(d.event_log_max_bytes);
    if event_log_max_bytes < 4096 {
        return Err(cx.err("event_log.max_bytes", format!("{event_log_max_bytes} is below 4096")));
    }
    let event_log_keep = e.keep.unwrap_or(d.event_log_keep as u32);
    check_range(cx, "event_log.keep", event_log_keep, 1, 100)?;
    let shutdown_grace_secs = s.grace_secs.unwrap_or(d.shutdown_grace_secs);
    check_range(cx, "shutdown.grace_secs", shutdown_grace_secs, 0, 3600)?;
    let reload_debounce_ms = s.reload_debounce_ms.unwrap_or(d.reload_debounce_ms);
    check_range(cx, "shutdown.reload_debounce_ms", reload_debounce_ms, 0, 60_000)?;
    Ok(OpsSettings {
        metrics_listen,
        metrics_window_secs,
        admin_listen,
        admin_token,
        event_log,
        event_log_max_bytes,
        event_log_keep: event_log_keep as usize,
        shutdown_grace_secs,
        reload_debounce_ms,
    })
}
