//! The statements pgtenant prepared on one server connection, with their last use, so the
//! least recently used can be closed when the connection holds `max_prepared_statements`.

use std::collections::HashMap;

#[derive(Debug, Default)]
pub(crate) struct ServerStatements {
    last_use: HashMap<Box<str>, u64>,
    clock: u64,
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

    pub(crate) fn clear(&mut self) {
        self.last_use.clear();
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
}
