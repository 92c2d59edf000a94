//! Per (tenant, shard, database) statistics: what `SHOW STATS` prints and what the Prometheus
//! counters publish. Sessions add to them once per transaction.

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

/// Running totals since start.
pub(crate) struct TenantStats {
    pub(crate) transactions: AtomicU64,
    pub(crate) queries: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) prepared_hits: AtomicU64,
    pub(crate) prepared_misses: AtomicU64,
    pub(crate) prepared_evictions: AtomicU64,
    /// Microseconds spent in transactions.
    pub(crate) xact_micros: AtomicU64,
    /// Microseconds spent waiting for a server connection.
    pub(crate) wait_micros: AtomicU64,
    wait: Histogram,
    duration: Histogram,
}

/// What one session counted since it last added to its [`TenantStats`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    pub(crate) transactions: u64,
    pub(crate) queries: u64,
    pub(crate) bytes_received: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) prepared_hits: u64,
    pub(crate) prepared_misses: u64,
    pub(crate) prepared_evictions: u64,
    pub(crate) xact_micros: u64,
}

impl TenantStats {
    pub(super) fn new(wait: Histogram, duration: Histogram) -> TenantStats {
        TenantStats {
            transactions: AtomicU64::new(0),
            queries: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            prepared_hits: AtomicU64::new(0),
            prepared_misses: AtomicU64::new(0),
            prepared_evictions: AtomicU64::new(0),
            xact_micros: AtomicU64::new(0),
            wait_micros: AtomicU64::new(0),
            wait,
            duration,
        }
    }

    /// Adds a session's tally and clears it.
    pub(crate) fn add(&self, t: &mut Tally) {
        for (total, v) in [
            (&self.transactions, t.transactions),
            (&self.queries, t.queries),
            (&self.bytes_received, t.bytes_received),
            (&self.bytes_sent, t.bytes_sent),
            (&self.prepared_hits, t.prepared_hits),
            (&self.prepared_misses, t.prepared_misses),
            (&self.prepared_evictions, t.prepared_evictions),
            (&self.xact_micros, t.xact_micros),
        ] {
            if v != 0 {
                total.fetch_add(v, Ordering::Relaxed);
            }
        }
        *t = Tally::default();
    }

    /// A wait for a server connection.
    pub(crate) fn waited(&self, d: Duration) {
        self.wait_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.wait.record(d.as_secs_f64());
    }

    /// A finished transaction's duration.
    pub(crate) fn transaction(&self, d: Duration) {
        self.duration.record(d.as_secs_f64());
    }

    /// The counters published to Prometheus, in the order `Metrics::publish_stats` names them.
    pub(super) fn counters(&self) -> [u64; 6] {
        [
            self.transactions.load(Ordering::Relaxed),
            self.queries.load(Ordering::Relaxed),
            self.bytes_received.load(Ordering::Relaxed),
            self.bytes_sent.load(Ordering::Relaxed),
            self.prepared_hits.load(Ordering::Relaxed),
            self.prepared_misses.load(Ordering::Relaxed),
        ]
    }
}
