//! Verdicts cached by statement text, shared by all sessions: applications send the same few
//! hundred statement texts over and over, so each is parsed once. The cache is bounded: when
//! it is full it is emptied and refills with what is in use.

use std::sync::Arc;

use dashmap::DashMap;

use super::{Policy, Source, Verdict, check};

/// Most distinct texts kept per source before the cache starts over.
const CAPACITY: usize = 20_000;

pub(crate) struct VerdictCache {
    policy: Policy,
    simple: DashMap<Box<[u8]>, Arc<Verdict>>,
    parse: DashMap<Box<[u8]>, Arc<Verdict>>,
}

impl VerdictCache {
    pub(crate) fn new(policy: Policy) -> Self {
        VerdictCache {
            policy,
            simple: DashMap::new(),
            parse: DashMap::new(),
        }
    }

    /// The verdict for `sql`, parsing it on first sight.
    pub(crate) fn verdict(&self, sql: &[u8], source: Source) -> Arc<Verdict> {
        let map = match source {
            Source::SimpleQuery => &self.simple,
            Source::Parse => &self.parse,
        };
        if let Some(v) = map.get(sql) {
            return v.clone();
        }
        let v = Arc::new(check(&self.policy, sql, source));
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(sql.into(), v.clone());
        v
    }
}
