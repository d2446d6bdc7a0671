//! The tokio runtime the shell runs on, chosen by `sip.workers`.
//!
//! With 0 workers everything (the daemon loop, rsipstack's transport and
//! transaction tasks, the adapter's dialog tasks, admin and metrics) shares
//! one current-thread runtime on the calling thread. With N workers the
//! runtime is multi-threaded: the daemon loop is still the one future given
//! to `block_on`, polled on the calling thread and owning the engine and
//! call control alone (single owner, deterministic: nothing in the core
//! sees more than one thread), while every spawned task (socket receive
//! loops, SIP parsing, transaction matching, retransmission timers, dialog
//! tasks) runs on the N workers.

use tokio::runtime::{Builder, Runtime};

/// Builds the runtime for `workers` (see the module doc).
pub fn build(workers: u32) -> std::io::Result<Runtime> {
    if workers == 0 {
        Builder::new_current_thread().enable_all().build()
    } else {
        Builder::new_multi_thread().worker_threads(workers as usize).thread_name("acd-sip").enable_all().build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With workers, a spawned task (as rsipstack's receive loop is) runs on
    /// a worker thread, not on the thread that polls the daemon loop; with
    /// none, on the same thread.
    #[test]
    fn spawned_tasks_run_on_workers_only_when_there_are_workers() {
        for (workers, same_thread) in [(0, true), (2, false)] {
            let rt = build(workers).expect("runtime");
            let here = std::thread::current().id();
            let there = rt.block_on(async { tokio::spawn(async { std::thread::current().id() }).await.unwrap() });
            assert_eq!(there == here, same_thread, "workers = {workers}");
            if workers > 0 {
                let name = rt.block_on(async {
                    tokio::spawn(async { std::thread::current().name().map(String::from) }).await.unwrap()
                });
                assert_eq!(name.as_deref(), Some("acd-sip"));
            }
        }
    }
}
