//! The callback state file (`engine.callback_state_file`): pending
//! callbacks written at shutdown and read back, once, at start-up.
//!
//! ```text
//!   SIGTERM drain ── write(path): <path>.tmp, fsync, rename onto path
//!   start-up ── take(path): absent → nothing; read and parse →
//!        the file is removed (a crash loop does not restore them twice)
//!        and the callbacks returned; unreadable or corrupt → moved aside
//!        to <path>.bad, an error naming the file, nothing restored
//! ```
//!
//! The wall clock of the save is kept: the time acd was down counts as
//! waited, and comes off the delay left.

use crate::engine::SavedCallback;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    /// Wall clock at the save (ms since the Unix epoch).
    saved_unix_ms: u64,
    callbacks: Vec<SavedCallback>,
}

/// Why the state file was not read.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("callback state file {path}: {reason}; moved aside to {moved}")]
    Corrupt { path: PathBuf, reason: String, moved: PathBuf },
    #[error("callback state file {path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes `callbacks` to `path` atomically (a temporary file renamed onto it).
pub fn write(path: &Path, callbacks: &[SavedCallback]) -> std::io::Result<()> {
    write_at(path, callbacks, unix_ms())
}

fn write_at(path: &Path, callbacks: &[SavedCallback], saved_unix_ms: u64) -> std::io::Result<()> {
    let state = StateFile { version: VERSION, saved_unix_ms, callbacks: callbacks.to_vec() };
    let text = serde_json::to_vec_pretty(&state).map_err(std::io::Error::other)?;
    let tmp = with_suffix(path, ".tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Reads and removes the state file: `Ok(None)` when there is none. The
/// downtime since the save is added to each callback's wait and taken off
/// its delay left.
pub fn take(path: &Path) -> Result<Option<Vec<SavedCallback>>, StateFileError> {
    take_at(path, unix_ms())
}

fn take_at(path: &Path, now_unix_ms: u64) -> Result<Option<Vec<SavedCallback>>, StateFileError> {
    let io = |e: std::io::Error| StateFileError::Io { path: path.to_path_buf(), reason: e.to_string() };
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let parsed = serde_json::from_slice::<StateFile>(&text).map_err(|e| e.to_string()).and_then(|s| {
        if s.version == VERSION {
            Ok(s)
        } else {
            Err(format!("version {} is not {VERSION}", s.version))
        }
    });
    match parsed {
        Ok(state) => {
            std::fs::remove_file(path).map_err(io)?;
            let down = now_unix_ms.saturating_sub(state.saved_unix_ms);
            let callbacks = state
                .callbacks
                .into_iter()
                .map(|mut c| {
                    c.waited_ms += down;
                    c.retry_in_ms = c.retry_in_ms.saturating_sub(down);
                    c
                })
                .collect();
            Ok(Some(callbacks))
        }
        Err(reason) => {
            let moved = with_suffix(path, ".bad");
            std::fs::rename(path, &moved).map_err(io)?;
            Err(StateFileError::Corrupt { path: path.to_path_buf(), reason, moved })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("acd-cbstate-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn saved(caller: &str, attempts: u32) -> SavedCallback {
        SavedCallback {
            queue: "sales".into(),
            caller: caller.into(),
            priority: 3,
            skills: vec![("lang.fi".into(), 2)],
            attempts,
            waited_ms: 40_000,
            retry_in_ms: 10_000,
            when_closed: attempts == 0,
        }
    }

    #[test]
    fn a_written_file_reads_back_once_with_the_downtime_counted() {
        let path = dir("roundtrip").join("callbacks.json");
        let cbs = vec![saved("+358401", 0), saved("+358402", 2)];
        write_at(&path, &cbs, 1_000_000).unwrap();
        assert!(!with_suffix(&path, ".tmp").exists());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"caller\": \"+358401\"") && text.contains("\"queue\": \"sales\""), "{text}");
        let back = take_at(&path, 1_004_000).unwrap().unwrap();
        let mut want = cbs.clone();
        for c in &mut want {
            c.waited_ms = 44_000;
            c.retry_in_ms = 6_000;
        }
        assert_eq!(back, want);
        assert!(!path.exists(), "taken once");
        assert!(take_at(&path, 1_004_000).unwrap().is_none());
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_with_an_error_naming_it() {
        let path = dir("corrupt").join("callbacks.json");
        std::fs::write(&path, b"{\"version\": 1, \"callbacks\": [").unwrap();
        let e = take_at(&path, 0).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()) && msg.contains("callbacks.json.bad"), "{msg}");
        assert!(!path.exists());
        assert!(with_suffix(&path, ".bad").exists());
        // A file of another version is not guessed at either.
        std::fs::write(&path, b"{\"version\": 9, \"saved_unix_ms\": 0, \"callbacks\": []}").unwrap();
        assert!(matches!(take_at(&path, 0), Err(StateFileError::Corrupt { .. })));
    }
}
