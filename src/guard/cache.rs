//! Verdicts cached by statement text, shared by all sessions: applications send the same few
//! hundred statement texts over and over, so each is parsed once. The cache is bounded: when
//! it is full it is emptied and refills with what is in use.

use std::sync::Arc;

use dashmap::DashMap;

use super::normalize::shape;
use super::{Policy, Source, Verdict, check};

/// Most distinct texts kept per source before the cache starts over.
const CAPACITY: usize = 20_000;

pub(crate) struct VerdictCache {
    policy: Policy,
    simple: DashMap<Box<[u8]>, Arc<Verdict>>,
    parse: DashMap<Box<[u8]>, Arc<Verdict>>,
    /// Simple-query shapes (constants replaced by parameters).
    shapes: DashMap<Box<[u8]>, Arc<Verdict>>,
}

impl VerdictCache {
    pub(crate) fn new(policy: Policy) -> Self {
        VerdictCache {
            policy,
            simple: DashMap::new(),
            parse: DashMap::new(),
            shapes: DashMap::new(),
        }
    }

    /// The verdict for `sql`, parsing it on first sight. A simple query seen for the first
    /// time is first looked up by its shape (constants replaced by parameters, see
    /// [`normalize`](super::normalize)): an admitted shape without per-tenant obligations
    /// admits the text without parsing it.
    pub(crate) fn verdict(&self, sql: &[u8], source: Source) -> Arc<Verdict> {
        let map = match source {
            Source::SimpleQuery => &self.simple,
            Source::Parse => &self.parse,
        };
        if let Some(v) = map.get(sql) {
            return v.clone();
        }
        if source == Source::SimpleQuery
            && let Ok(text) = std::str::from_utf8(sql)
            && let Some(shape) = shape(text)
        {
            let v = self.lookup(&self.shapes, shape.as_bytes(), Source::SimpleQuery);
            if let Verdict::Allowed(a) = &*v
                && a.context_literals.is_empty()
                && a.context_params.is_empty()
            {
                return v;
            }
        }
        self.lookup(map, sql, source)
    }

    fn lookup(
        &self,
        map: &DashMap<Box<[u8]>, Arc<Verdict>>,
        sql: &[u8],
        source: Source,
    ) -> Arc<Verdict> {
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
