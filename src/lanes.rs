//! Worker threads: one single-threaded tokio runtime per thread (a "lane"), the accept loop
//! dealing client sessions out to them in turn. `server.workers` lanes in all: the runtime
//! the proxy is started on (`pgtenant run` starts it on a single-threaded one) is lane 0, and
//! each further lane gets a thread of its own.
//!
//! A session stays on its lane for its whole life: its client socket is registered with the
//! lane's event loop, and so is the server connection it works with. The pool keeps track of
//! the lane each server connection is registered with, prefers handing a connection to a
//! session of the same lane, and moves it to the session's lane when it cannot
//! ([`crate::pool`]). Compared with tokio's work-stealing scheduler this leaves out, per
//! transaction, the wake-ups of idle workers that a ready socket triggers and the scheduler's
//! own bookkeeping: on a machine that PostgreSQL and the clients keep busy, those cost a
//! proxy about as much CPU as its own protocol work.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::{Builder, Handle};
use tokio::sync::watch;

/// The lanes besides the one the proxy was started on; dropping it ends their threads (and
/// whatever still runs on them).
pub(crate) struct Lanes {
    /// Lanes 1 and up (lane 0 is the runtime the proxy was started on).
    others: Vec<Handle>,
    next: AtomicUsize,
    /// Dropped with the lanes: each thread's runtime then returns and drops its tasks.
    _stop: watch::Sender<()>,
}

/// Where the accept loop puts a session.
pub(crate) enum Lane<'a> {
    /// Lane 0: the runtime the proxy was started on.
    Own,
    /// Lane `index` (1 and up), run by `handle`.
    Other { index: usize, handle: &'a Handle },
}

impl Lane<'_> {
    /// Its number: 0 for the proxy's own runtime.
    pub(crate) fn index(&self) -> usize {
        match self {
            Lane::Own => 0,
            Lane::Other { index, .. } => *index,
        }
    }
}

impl Lanes {
    /// Starts `more` threads with a single-threaded runtime each.
    pub(crate) fn start(more: usize) -> std::io::Result<Lanes> {
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
        Ok(Lanes {
            others,
            next: AtomicUsize::new(0),
            _stop: stop,
        })
    }

    /// The next lane in turn.
    pub(crate) fn pick(&self) -> Lane<'_> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % (self.others.len() + 1);
        match n.checked_sub(1) {
            None => Lane::Own,
            Some(i) => Lane::Other {
                index: n,
                handle: &self.others[i],
            },
        }
    }
}
