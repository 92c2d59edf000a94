//! Worker threads: one single-threaded tokio runtime per thread (a "lane"), the accept loop
//! dealing client sessions out to them in turn. `server.workers` lanes in all: the runtime
//! the proxy is started on (`pgtenant run` starts it on a single-threaded one) and one
//! thread for each further lane.
//!
//! A session stays on its lane for its whole life, and so do the server connections it
//! opens; timers and I/O readiness are handled by the lane's own event loop. Compared with
//! tokio's work-stealing scheduler this leaves out, per transaction, the wake-ups of idle
//! workers that a burst of ready sockets triggers and the scheduler's own bookkeeping (poll
//! time averages, steal checks): on a machine that PostgreSQL and the clients keep busy,
//! those cost a proxy about as much CPU as its own relaying does. A server connection handed
//! to a session on another lane still works: its readiness is delivered by the lane that
//! registered it, which wakes the session's lane.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::{Builder, Handle};
use tokio::sync::watch;

/// The lanes besides the one the proxy was started on; dropping it ends their threads (and
/// whatever still runs on them).
pub(crate) struct Lanes {
    /// Lane 0 is the runtime the proxy was started on; these are lanes 1 and up.
    others: Vec<Handle>,
    next: AtomicUsize,
    /// Dropped with the lanes: each thread's runtime then returns and drops its tasks.
    _stop: watch::Sender<()>,
}

/// Where the accept loop puts a session.
pub(crate) enum Lane<'a> {
    /// The runtime the proxy was started on.
    Own,
    Other(&'a Handle),
}

impl Lanes {
    /// Starts `more` threads with a single-threaded runtime each.
    pub(crate) fn start(more: usize) -> std::io::Result<Arc<Lanes>> {
        let (stop, _) = watch::channel(());
        let mut others = Vec::with_capacity(more);
        for i in 1..=more {
            let (tx, rx) = std::sync::mpsc::channel();
            let mut stopped = stop.subscribe();
            std::thread::Builder::new()
                .name(format!("pgtenant-lane-{i}"))
                .spawn(move || {
                    let rt = match Builder::new_current_thread().enable_all().build() {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = tx.send(Ok(rt.handle().clone()));
                    // Err once the sender is dropped: the lanes are.
                    rt.block_on(async move { while stopped.changed().await.is_ok() {} });
                })?;
            let handle = rx
                .recv()
                .map_err(|_| std::io::Error::other("a worker thread ended while starting"))??;
            others.push(handle);
        }
        Ok(Arc::new(Lanes {
            others,
            next: AtomicUsize::new(0),
            _stop: stop,
        }))
    }

    /// The next lane in turn.
    pub(crate) fn pick(&self) -> Lane<'_> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % (self.others.len() + 1);
        match n.checked_sub(1) {
            None => Lane::Own,
            Some(i) => Lane::Other(&self.others[i]),
        }
    }
}
