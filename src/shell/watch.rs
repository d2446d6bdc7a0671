//! Watching the config file for changes.

use std::path::{Path, PathBuf};
use tokio::sync::mpsc;
use tracing::warn;

/// Watches the config file's directory (editors replace files rather than
/// writing them in place) and signals every change to that file.
pub fn watch(path: &Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let file_name = path.file_name()?.to_owned();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            let ours = ev.paths.iter().any(|p| p.file_name() == Some(file_name.as_os_str()));
            let changed = matches!(
                ev.kind,
                notify::EventKind::Modify(_) | notify::EventKind::Create(_) | notify::EventKind::Remove(_)
            );
            if ours && changed {
                // A full channel already has a change waiting: nothing lost.
                tx.try_send(()).ok();
            }
        }
    })
    .map_err(|e| warn!("cannot watch the config file: {e}; SIGHUP still reloads"))
    .ok()?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|e| warn!("cannot watch {}: {e}; SIGHUP still reloads", dir.display()))
        .ok()?;
    Some(watcher)
}
