//! CPU affinity (`server.cpu_affinity`): the CPUs the process may run on, pinning a lane's
//! thread to one of them, and the CPU where a client connection's packets arrive
//! (`SO_INCOMING_CPU`), by which the accept loop picks the lane pinned to that CPU.
//!
//! Linux only: elsewhere the allowed set is unknown, so nothing is pinned.

use tokio::net::TcpStream;

/// A set of CPUs, by number, in increasing order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CpuSet(Vec<usize>);

impl CpuSet {
    /// The CPUs the calling thread may run on (`None`: unknown, or none).
    pub(crate) fn of_this_thread() -> Option<CpuSet> {
        let cpus = imp::allowed()?;
        (!cpus.is_empty()).then_some(CpuSet(cpus))
    }

    pub(crate) fn cpus(&self) -> &[usize] {
        &self.0
    }

    /// Lets the calling thread (and the threads it starts from now on) run on these CPUs
    /// only.
    pub(crate) fn apply(&self) -> std::io::Result<()> {
        imp::restrict(&self.0)
    }

    /// Lets the calling thread run on `cpu` only.
    pub(crate) fn pin_to(cpu: usize) -> std::io::Result<()> {
        imp::restrict(&[cpu])
    }
}

/// The CPU that received the connection's last packet (`None`: not known). For a client on
/// this machine that is the CPU its thread ran on when it wrote; for a remote one, the CPU
/// that serves the network card's queue the connection hashes to.
pub(crate) fn incoming_cpu(tcp: &TcpStream) -> Option<usize> {
    socket2::SockRef::from(tcp).cpu_affinity().ok()
}

#[cfg(target_os = "linux")]
mod imp {
    /// The thread's allowed CPUs (`sched_getaffinity`).
    pub(super) fn allowed() -> Option<Vec<usize>> {
        // SAFETY: a zeroed `cpu_set_t` is a valid empty set; `sched_getaffinity` writes at
        // most `size_of::<cpu_set_t>()` bytes into it, and `CPU_ISSET` reads it with indexes
        // below `CPU_SETSIZE`.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return None;
            }
            let size = libc::CPU_SETSIZE as usize;
            Some((0..size).filter(|&c| libc::CPU_ISSET(c, &set)).collect())
        }
    }

    /// Restricts the calling thread to `cpus` (`sched_setaffinity`).
    pub(super) fn restrict(cpus: &[usize]) -> std::io::Result<()> {
        let size = libc::CPU_SETSIZE as usize;
        if let Some(&c) = cpus.iter().find(|&&c| c >= size) {
            return Err(std::io::Error::other(format!(
                "CPU {c} is beyond the {size} a CPU set holds"
            )));
        }
        // SAFETY: a zeroed `cpu_set_t` is a valid empty set; `CPU_SET` is given indexes below
        // `CPU_SETSIZE` (checked above), and `sched_setaffinity` reads the set it is given.
        let rc = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &c in cpus {
                libc::CPU_SET(c, &mut set);
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub(super) fn allowed() -> Option<Vec<usize>> {
        None
    }

    pub(super) fn restrict(_cpus: &[usize]) -> std::io::Result<()> {
        Err(std::io::Error::other("CPU affinity is only set on Linux"))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_pinned_runs_on_that_cpu_alone_and_gets_its_set_back() {
        // In a thread of its own: the test harness's threads keep their affinity.
        std::thread::spawn(|| {
            let all = CpuSet::of_this_thread().expect("the allowed CPUs");
            let last = *all.cpus().last().expect("one CPU at least");
            CpuSet::pin_to(last).expect("pinned");
            assert_eq!(CpuSet::of_this_thread(), Some(CpuSet(vec![last])));
            all.apply().expect("restored");
            assert_eq!(CpuSet::of_this_thread(), Some(all));
        })
        .join()
        .expect("the thread ran");
    }

    #[test]
    fn a_cpu_beyond_the_set_size_is_refused_with_a_reason() {
        let e = CpuSet::pin_to(1 << 20).expect_err("refused");
        assert!(e.to_string().contains("beyond"), "{e}");
    }
}
