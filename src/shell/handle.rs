//! Running a daemon on its own thread (tests and embedding), and what it
//! lets others see and ask: [`Snapshot`], [`Control`].

use super::admin::{AdminReply, AdminRequest};
use super::daemon::{drive, Daemon};
use super::error::{ReloadError, ShellError};
use crate::config::Config;
use crate::sip::adapter::StackCounts;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// What is alive inside a running daemon: every count returns to zero once
/// its calls have ended (tests wait for that).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Calls in call control, and their legs.
    pub calls: usize,
    pub legs: usize,
    /// Calls the engine still holds.
    pub engine_calls: usize,
    /// The adapter's view: legs, rsipstack dialogs, unanswered requests,
    /// running transactions.
    pub stack: StackCounts,
    pub registered_contacts: usize,
    /// Call-control bugs so far (events that cannot happen).
    pub errors: usize,
    /// Races with peers call control absorbed (a CANCEL crossing a 200, ...).
    pub races: u64,
    /// Reloads applied, and refused (bad file).
    pub reloads: usize,
    pub failed_reloads: usize,
    /// Legs with RTP sockets, and the port pairs they hold.
    pub media_legs: usize,
    pub rtp_ports_in_use: usize,
    /// Callers' dialogs with a running RFC 4028 session timer.
    pub session_timers: usize,
}

/// Requests into the daemon loop from other tasks and threads.
pub enum Control {
    /// Read the config file again; the reply says what happened.
    Reload(Option<oneshot::Sender<Result<(), ReloadError>>>),
    Admin(AdminRequest, oneshot::Sender<AdminReply>),
    /// SIGTERM: drain, then stop.
    Shutdown,
}

/// Control requests queued at most (admin API, reloads, shutdown).
pub(super) const CONTROL_CAPACITY: usize = 256;

/// A daemon on its own thread (current-thread runtime), for tests and
/// embedding: [`DaemonHandle::snapshot`] reads its counts.
pub struct DaemonHandle {
    snapshot: Arc<Mutex<Snapshot>>,
    control: mpsc::Sender<Control>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Addresses the admin API and metrics exporter bound (port 0 resolved).
    pub admin_addr: Option<SocketAddr>,
}

impl DaemonHandle {
    pub fn spawn(config: Config) -> Result<DaemonHandle, ShellError> {
        DaemonHandle::spawn_with_path(config, None)
    }

    /// Like [`DaemonHandle::spawn`], with the file reloads read from.
    pub fn spawn_with_path(config: Config, path: Option<PathBuf>) -> Result<DaemonHandle, ShellError> {
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        let (control_tx, control_rx) = mpsc::channel::<Control>(CONTROL_CAPACITY);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Option<SocketAddr>, ShellError>>();
        let snap = snapshot.clone();
        let ctl = control_tx.clone();
        let thread = std::thread::spawn(move || {
            let rt = super::runtime::build(config.sip.workers).expect("runtime");
            rt.block_on(async move {
                let started = async {
                    let (daemon, raw, media) = Daemon::start(config, path).await?;
                    let admin = daemon.serve_admin(ctl).await?;
                    Ok::<_, ShellError>((daemon, raw, media, admin))
                };
                match started.await {
                    Ok((daemon, raw, media, admin)) => {
                        ready_tx.send(Ok(admin)).ok();
                        drive(daemon, raw, media, control_rx, std::future::pending(), None, Some(snap)).await;
                    }
                    Err(e) => {
                        ready_tx.send(Err(e)).ok();
                    }
                }
            });
        });
        match ready_rx.recv() {
            Ok(Ok(admin_addr)) => Ok(DaemonHandle { snapshot, control: control_tx, thread: Some(thread), admin_addr }),
            Ok(Err(e)) => {
                thread.join().ok();
                Err(e)
            }
            Err(_) => Err(ShellError::ThreadEnded),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        *self.snapshot.lock().expect("snapshot lock")
    }

    /// Reloads the config file, as SIGHUP does; the error names the file,
    /// key and reason an admin would see.
    pub fn reload(&self) -> Result<(), ReloadError> {
        let (tx, rx) = oneshot::channel();
        self.control.blocking_send(Control::Reload(Some(tx))).map_err(|_| ReloadError::Stopped)?;
        rx.blocking_recv().map_err(|_| ReloadError::Stopped)?
    }

    /// Starts the SIGTERM sequence and waits for the daemon to exit.
    pub fn shutdown(mut self) {
        self.control.blocking_send(Control::Shutdown).ok();
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

impl Drop for DaemonHandle {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            // Immediate stop: no grace period in tests that just end.
            self.control.blocking_send(Control::Shutdown).ok();
            t.join().ok();
        }
    }
}
