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
//!
//! With `server.cpu_affinity`, each lane's thread is pinned to a CPU of its own, and a new
//! client goes to the lane pinned to the CPU its packets arrive on (`SO_INCOMING_CPU`), unless
//! that lane already holds well over its share of sessions ([`choose`]). A client's packets,
//! the lane that relays them and (drawn by the scheduler to the CPU that wakes them) its
//! server connections' backends then share a CPU and its caches, and the kernel wakes fewer
//! threads on the other CPU: on a machine where PostgreSQL, the clients and pgtenant share
//! the CPUs, the measured difference in `benches/` is about a tenth of the throughput.
//! Threads a pinned lane starts (tokio's blocking pool: password hashing, JWT checks) get
//! the process's whole set of CPUs back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::runtime::{Builder, Handle};
use tokio::sync::watch;

use crate::affinity::{CpuSet, incoming_cpu};

/// The lanes besides the one the proxy was started on; dropping it ends their threads (and
/// whatever still runs on them).
pub(crate) struct Lanes {
    /// Lanes 1 and up (lane 0 is the runtime the proxy was started on).
    others: Vec<Handle>,
    next: AtomicUsize,
    /// Sessions on each lane, lane 0 first.
    load: Arc<[AtomicUsize]>,
    /// The CPU each lane is pinned to, lane 0 first; empty when the lanes are not pinned.
    cpus: Vec<usize>,
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

/// A session's place on its lane: counted in the lane's load until dropped.
pub(crate) struct Seat {
    load: Arc<[AtomicUsize]>,
    lane: usize,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.load[self.lane].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Lanes {
    /// Starts `more` threads with a single-threaded runtime each. `pin`: the CPUs to pin the
    /// lanes to, lane `i` to the `i`-th (in turn when there are more lanes than CPUs); lane
    /// 0, the caller's thread, is pinned by [`Lanes::pin_own_thread`].
    pub(crate) fn start(more: usize, pin: Option<&CpuSet>) -> std::io::Result<Lanes> {
        let (stop, _) = watch::channel(());
        let cpus: Vec<usize> = match pin {
            Some(set) => (0..=more)
                .map(|i| set.cpus()[i % set.cpus().len()])
                .collect(),
            None => Vec::new(),
        };
        let mut others = Vec::with_capacity(more);
        for i in 1..=more {
            let (tx, rx) = std::sync::mpsc::channel();
            let mut stopped = stop.subscribe();
            let cpu = cpus.get(i).copied();
            std::thread::Builder::new()
                .name(format!("pgtenant-lane-{i}"))
                .spawn(move || {
                    // Before the pin: its blocking pool gets the CPUs this thread has now.
                    let mut builder = runtime_builder();
                    if let Some(cpu) = cpu
                        && let Err(e) = CpuSet::pin_to(cpu)
                    {
                        tracing::warn!(lane = i, cpu, error = %e, "could not pin a worker thread");
                    }
                    let rt = match builder.enable_all().build() {
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
            load: (0..=more).map(|_| AtomicUsize::new(0)).collect(),
            others,
            next: AtomicUsize::new(0),
            cpus,
            _stop: stop,
        })
    }

    /// Pins the calling thread, lane 0, to its CPU (if the lanes are pinned). Only for a
    /// thread the proxy owns: the threads it starts from now on inherit the pin.
    pub(crate) fn pin_own_thread(&self) {
        if let Some(&cpu) = self.cpus.first()
            && let Err(e) = CpuSet::pin_to(cpu)
        {
            tracing::warn!(lane = 0, cpu, error = %e, "could not pin a worker thread");
        }
    }

    /// The lane for the new client `tcp`: with pinned lanes, the one pinned to the CPU its
    /// packets arrive on unless it holds well over its share ([`choose`]); otherwise the
    /// next lane in turn.
    pub(crate) fn pick(&self, tcp: &TcpStream) -> (Lane<'_>, Seat) {
        let preferred = if self.cpus.is_empty() {
            None
        } else {
            incoming_cpu(tcp).and_then(|c| self.cpus.iter().position(|&p| p == c))
        };
        let n = match preferred {
            Some(_) => {
                let loads: Vec<usize> = self
                    .load
                    .iter()
                    .map(|l| l.load(Ordering::Relaxed))
                    .collect();
                choose(&loads, preferred)
            }
            None => self.next.fetch_add(1, Ordering::Relaxed) % self.load.len(),
        };
        self.load[n].fetch_add(1, Ordering::Relaxed);
        let seat = Seat {
            load: self.load.clone(),
            lane: n,
        };
        let lane = match n.checked_sub(1) {
            None => Lane::Own,
            Some(i) => Lane::Other {
                index: n,
                handle: &self.others[i],
            },
        };
        (lane, seat)
    }
}

/// A single-threaded runtime for a lane. The threads of its blocking pool (password hashing,
/// JWT checks) may run on every CPU the calling thread may run on now, even once the lane's
/// thread is pinned to one (`server.cpu_affinity`).
pub(crate) fn runtime_builder() -> Builder {
    let mut builder = Builder::new_current_thread();
    if let Some(all) = CpuSet::of_this_thread() {
        builder.on_thread_start(move || {
            let _ = all.apply();
        });
    }
    builder
}

/// The lane for a new session, given each lane's sessions (`loads`) and the lane pinned to
/// the CPU the client's packets arrive on: that one, unless it holds more than half again
/// its share plus two; then (and with no preference) the least loaded. Clients of one
/// thread or queue then share a lane, and one busy queue cannot pile every client onto one
/// lane.
fn choose(loads: &[usize], preferred: Option<usize>) -> usize {
    let total: usize = loads.iter().sum();
    let lanes = loads.len().max(1);
    if let Some(p) = preferred
        && let Some(&load) = loads.get(p)
        && 2 * lanes * load <= 3 * total + 4 * lanes
    {
        return p;
    }
    (0..loads.len()).min_by_key(|&i| loads[i]).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::choose;

    #[test]
    fn a_client_goes_to_the_lane_of_its_cpu_while_that_lane_is_not_far_over_its_share() {
        assert_eq!(choose(&[0, 0], Some(1)), 1);
        assert_eq!(choose(&[8, 7], Some(0)), 0);
        // 14 of 20 on lane 0 (its share is 10, the limit 17): still taken.
        assert_eq!(choose(&[14, 6], Some(0)), 0);
        // 18 of 20: over the limit; the least loaded lane takes the client.
        assert_eq!(choose(&[18, 2], Some(0)), 1);
        assert_eq!(choose(&[3, 1, 0], Some(0)), 0);
        assert_eq!(choose(&[6, 1, 0], Some(0)), 2);
    }

    #[test]
    fn without_a_preference_the_least_loaded_lane_is_chosen() {
        assert_eq!(choose(&[3, 1, 2], None), 1);
        assert_eq!(choose(&[], None), 0);
        assert_eq!(choose(&[4, 4], Some(7)), 0);
    }
}
