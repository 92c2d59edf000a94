//! The statements pgtenant prepared on one server connection, with their last use, so the
//! least recently used can be closed when the connection holds `max_prepared_statements`; and
//! those the server still holds with a stale plan (closed before they are parsed again).

use crate::fast_map::FastMap;

#[derive(Debug, Default)]
pub(crate) struct ServerStatements {
    last_use: FastMap<Box<str>, u64>,
    clock: u64,
    /// Held by the server with a plan that went stale (`relay::stale`): not usable, and to be
    /// closed before they are parsed again. Almost always empty.
    stale: Vec<Box<str>>,
    /// How far this connection has read the log of stale statements (`relay::stale`).
    pub(crate) stale_epoch: u64,
}

impl ServerStatements {
    /// Records a use of `name` (if it is there); true if it is.
    pub(crate) fn touch(&mut self, name: &str) -> bool {
        self.clock += 1;
        match self.last_use.get_mut(name) {
            Some(t) => {
                *t = self.clock;
                true
            }
            None => false,
        }
    }

    pub(crate) fn insert(&mut self, name: Box<str>) {
        self.clock += 1;
        self.last_use.insert(name, self.clock);
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.last_use.remove(name);
    }

    /// The server holds no statement of pgtenant's any more (`DISCARD ALL`, `DEALLOCATE ALL`).
    pub(crate) fn clear(&mut self) {
        self.last_use.clear();
        self.stale.clear();
    }

    /// The server's `name` has a stale plan: it is no longer listed as usable, and must be
    /// closed before it is parsed again. Nothing happens if pgtenant has not prepared it here.
    pub(crate) fn mark_stale(&mut self, name: &str) {
        if self.last_use.remove(name).is_some() {
            self.stale.push(name.into());
        }
    }

    /// True if the server holds `name` with a stale plan.
    pub(crate) fn is_stale(&self, name: &str) -> bool {
        !self.stale.is_empty() && self.stale.iter().any(|n| &**n == name)
    }

    /// A Close of the stale `name` is on its way to the server.
    pub(crate) fn closed_stale(&mut self, name: &str) {
        self.stale.retain(|n| &**n != name);
    }

    pub(crate) fn len(&self) -> usize {
        self.last_use.len()
    }

    /// The least recently used statement other than `keep`.
    pub(crate) fn least_recent(&self, keep: &str) -> Option<Box<str>> {
        self.last_use
            .iter()
            .filter(|(n, _)| &***n != keep)
            .min_by_key(|(_, t)| **t)
            .map(|(n, _)| n.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_first() {
        let mut s = ServerStatements::default();
        for n in ["a", "b", "c"] {
            s.insert(n.into());
        }
        assert_eq!(s.least_recent("x").as_deref(), Some("a"));
        assert!(s.touch("a"));
        assert_eq!(s.least_recent("x").as_deref(), Some("b"));
        assert_eq!(s.least_recent("b").as_deref(), Some("c"));
        s.remove("b");
        assert!(!s.touch("b"));
        assert_eq!(s.len(), 2);
        s.clear();
        assert_eq!(s.least_recent("x"), None);
    }

    #[test]
    fn stale_statements_are_not_usable_until_closed() {
        let mut s = ServerStatements::default();
        s.insert("a".into());
        s.mark_stale("a");
        s.mark_stale("never-prepared-here");
        assert!(!s.touch("a"));
        assert!(s.is_stale("a"));
        assert!(!s.is_stale("never-prepared-here"));
        s.closed_stale("a");
        assert!(!s.is_stale("a"));
        s.insert("a".into());
        s.mark_stale("a");
        s.clear();
        assert!(!s.is_stale("a"), "nothing is held after a reset");
    }
}
