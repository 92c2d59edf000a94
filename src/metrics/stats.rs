//! Per (tenant, shard, database) statistics: what `SHOW STATS` prints and what the Prometheus
//! counters publish. A session adds its tally once per transaction into one of several lanes
//! (padded apart), so sessions of one busy tenant on different cores do not fight over one
//! cache line; readers sum the lanes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::Histogram;

/// Whose statistics: a tenant on one pool's shard and database.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct StatsKey {
    pub(crate) tenant: Arc<str>,
    pub(crate) shard: String,
    pub(crate) database: String,
}

/// What a session counted since it last added to its [`TenantStats`]; also what
/// [`TenantStats::totals`] returns.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) transactions: u64,
    pub(crate) queries: u64,
    pub(crate) bytes_received: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) prepared_hits: u64,
    pub(crate) prepared_misses: u64,
    pub(crate) prepared_evictions: u64,
    /// Tenant setup statements (`SET search_path`, the tenant GUC) sent because the server
    /// connection was not set up for this tenant.
    pub(crate) setups: u64,
    /// Microseconds spent in transactions.
    pub(crate) xact_micros: u64,
    /// Microseconds spent waiting for a server connection.
    pub(crate) wait_micros: u64,
}

const FIELDS: usize = 10;

impl Tally {
    fn values(&self) -> [u64; FIELDS] {
        [
            self.transactions,
            self.queries,
            self.bytes_received,
            self.bytes_sent,
            self.prepared_hits,
            self.prepared_misses,
            self.prepared_evictions,
            self.setups,
            self.xact_micros,
            self.wait_micros,
        ]
    }

    fn from_values(v: [u64; FIELDS]) -> Tally {
        Tally {
            transactions: v[0],
            queries: v[1],
            bytes_received: v[2],
            bytes_sent: v[3],
            prepared_hits: v[4],
            prepared_misses: v[5],
            prepared_evictions: v[6],
            setups: v[7],
            xact_micros: v[8],
            wait_micros: v[9],
        }
    }
}

/// Lanes per tenant statistics.
const LANES: usize = 8;

/// One lane of counters, on a cache line (pair) of its own.
#[repr(align(128))]
#[derive(Default)]
struct Lane([AtomicU64; FIELDS]);

/// Running totals since start.
pub(crate) struct TenantStats {
    lanes: [Lane; LANES],
    wait: Histogram,
    duration: Histogram,
}

impl TenantStats {
    pub(super) fn new(wait: Histogram, duration: Histogram) -> TenantStats {
        TenantStats {
            lanes: Default::default(),
            wait,
            duration,
        }
    }

    /// Adds a session's tally (the session always uses the same `lane`, any number) and
    /// clears it.
    pub(crate) fn add(&self, lane: usize, t: &mut Tally) {
        let counters = &self.lanes[lane % LANES].0;
        for (c, v) in counters.iter().zip(t.values()) {
            if v != 0 {
                c.fetch_add(v, Ordering::Relaxed);
            }
        }
        *t = Tally::default();
    }

    /// A wait for a server connection (its time goes into the session's tally).
    pub(crate) fn waited(&self, t: &mut Tally, d: Duration) {
        t.wait_micros += d.as_micros() as u64;
        self.wait.record(d.as_secs_f64());
    }

    /// A finished transaction's duration.
    pub(crate) fn transaction(&self, d: Duration) {
        self.duration.record(d.as_secs_f64());
    }

    /// The sums over all lanes.
    pub(crate) fn totals(&self) -> Tally {
        let mut sum = [0u64; FIELDS];
        for lane in &self.lanes {
            for (s, c) in sum.iter_mut().zip(&lane.0) {
                *s += c.load(Ordering::Relaxed);
            }
        }
        Tally::from_values(sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_add_up() {
        let s = TenantStats::new(Histogram::noop(), Histogram::noop());
        for lane in 0..20 {
            let mut t = Tally {
                transactions: 1,
                queries: 2,
                wait_micros: 3,
                ..Tally::default()
            };
            s.add(lane, &mut t);
            assert_eq!(t, Tally::default(), "added and cleared");
        }
        let total = s.totals();
        assert_eq!(
            (total.transactions, total.queries, total.wait_micros),
            (20, 40, 60)
        );
    }
}
