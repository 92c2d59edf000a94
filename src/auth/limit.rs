//! Brute-force limits: failed logins (the ones answered `28P01`: wrong password, unknown user,
//! invalid token) are counted per client address; an address that reaches `auth.max_failures`
//! within `auth.failure_window` is refused at startup for `auth.lockout`, before any credential
//! is asked for.
//!
//! State only; the settings come from each session's config snapshot and the session stage
//! decides what counts as a failure. No I/O, no locks held across `.await`.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// `[auth]` limits, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LimitSettings {
    /// Failures within `window` that lock an address out; 0 turns the limit off.
    pub(crate) max_failures: u32,
    pub(crate) window: Duration,
    pub(crate) lockout: Duration,
}

/// Beyond this many tracked addresses, stale entries are dropped on the next failure.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug)]
struct Entry {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

/// Failed logins per client address, shared by all sessions.
#[derive(Debug, Default)]
pub(crate) struct FailureLimit {
    by_addr: DashMap<IpAddr, Entry>,
}

impl FailureLimit {
    /// `Err(remaining)` while `addr` is locked out.
    pub(crate) fn check(&self, s: &LimitSettings, addr: IpAddr) -> Result<(), Duration> {
        if s.max_failures == 0 {
            return Ok(());
        }
        let now = Instant::now();
        match self.by_addr.get(&addr).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts one failed login from `addr`; returns true if this failure locked it out.
    pub(crate) fn failed(&self, s: &LimitSettings, addr: IpAddr) -> bool {
        if s.max_failures == 0 {
            return false;
        }
        let now = Instant::now();
        if self.by_addr.len() > PRUNE_ABOVE {
            self.by_addr.retain(|_, e| {
                e.locked_until.is_some_and(|u| u > now) || now - e.window_start <= s.window
            });
        }
        let mut e = self.by_addr.entry(addr).or_insert(Entry {
            failures: 0,
            window_start: now,
            locked_until: None,
        });
        if now - e.window_start > s.window {
            e.failures = 0;
            e.window_start = now;
        }
        e.failures += 1;
        if e.failures >= s.max_failures {
            e.failures = 0;
            e.window_start = now;
            e.locked_until = Some(now + s.lockout);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max: u32) -> LimitSettings {
        LimitSettings {
            max_failures: max,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
        }
    }

    #[test]
    fn locks_after_max_failures_per_address() {
        let limit = FailureLimit::default();
        let s = settings(3);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(!limit.failed(&s, a));
        assert!(!limit.failed(&s, a));
        assert!(limit.check(&s, a).is_ok());
        assert!(limit.failed(&s, a));
        assert!(limit.check(&s, a).is_err());
        assert!(
            limit.check(&s, b).is_ok(),
            "other addresses are not affected"
        );
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let limit = FailureLimit::default();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..100 {
            assert!(!limit.failed(&settings(0), a));
        }
        assert!(limit.check(&settings(0), a).is_ok());
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let limit = FailureLimit::default();
        let s = LimitSettings {
            max_failures: 2,
            window: Duration::ZERO,
            lockout: Duration::from_secs(60),
        };
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        assert!(!limit.failed(&s, a));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!limit.failed(&s, a));
        assert!(limit.check(&s, a).is_ok());
    }
}
