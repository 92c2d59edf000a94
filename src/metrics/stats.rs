//! Per (tenant, shard, database) statistics: what `SHOW STATS` prints and what the Prometheus
//! counters and histograms publish. A session adds its tally once per transaction into one of
//! several lanes (padded apart), so sessions of one busy tenant on different cores do not
//! fight over one cache line; readers sum the lanes.
//!
//! The two histograms (pool wait, transaction duration) are bucket counts in the same tally:
//! recording a sample is one comparison per bucket and one add, and their `_sum`s are the
//! tally's microsecond totals.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Whose statistics: a tenant on one pool's shard and database.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct StatsKey {
    pub(crate) tenant: Arc<str>,
    pub(crate) shard: String,
    pub(crate) database: String,
}

/// What a session counted since it last added to its [`TenantStats`]; also what
/// [`TenantStats::totals`] returns.
///
/// `repr(C)`: in the order written, so that what a transaction adds to (the counts, `touched`,
/// the low buckets of the duration histogram) sits together at its start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
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
    /// Which buckets may be non-zero: bit `k` for `wait_buckets[k]`, bit
    /// [`DURATION_BIT`]` + k` for `duration_buckets[k]`. [`TenantStats::add`] visits only
    /// these instead of every bucket of both histograms.
    touched: u32,
    /// Transactions by [`DURATION_BOUNDS`] bucket (the last: beyond them all).
    pub(crate) duration_buckets: [u64; DURATION_BUCKETS],
    /// Waits for a server connection by [`WAIT_BOUNDS`] bucket (the last: beyond them all).
    pub(crate) wait_buckets: [u64; WAIT_BUCKETS],
}

/// The bit of `duration_buckets[0]` in [`Tally::touched`].
const DURATION_BIT: usize = 16;

/// Upper bounds (inclusive, microseconds) of the pool wait histogram's buckets.
pub(crate) const WAIT_BOUNDS: [u64; 12] = [
    100,
    500,
    1_000,
    5_000,
    10_000,
    50_000,
    100_000,
    500_000,
    1_000_000,
    5_000_000,
    30_000_000,
    120_000_000,
];
/// Upper bounds (inclusive, microseconds) of the transaction duration histogram's buckets.
pub(crate) const DURATION_BOUNDS: [u64; 13] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    5_000_000, 30_000_000,
];
const WAIT_BUCKETS: usize = WAIT_BOUNDS.len() + 1;
const DURATION_BUCKETS: usize = DURATION_BOUNDS.len() + 1;

/// The bucket of `micros`: the first bound it does not exceed, else the last (`+Inf`) one.
fn bucket(bounds: &[u64], micros: u64) -> usize {
    bounds
        .iter()
        .position(|&b| micros <= b)
        .unwrap_or(bounds.len())
}

const SCALARS: usize = 10;
const FIELDS: usize = SCALARS + WAIT_BUCKETS + DURATION_BUCKETS;
const _: () = assert!(WAIT_BUCKETS <= DURATION_BIT && DURATION_BIT + DURATION_BUCKETS <= 32);

impl Tally {
    /// Adds every count of `other` to this one's.
    pub(crate) fn add(&mut self, other: &Tally) {
        let mut v = self.values();
        for (a, b) in v.iter_mut().zip(other.values()) {
            *a += b;
        }
        *self = Tally::from_values(v);
    }

    /// The counts that are not histogram buckets, in the order of [`Tally::values`].
    fn scalars(&self) -> [u64; SCALARS] {
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

    /// Zeroes the counts of [`Tally::scalars`], leaving the histograms as they are.
    fn clear_scalars(&mut self) {
        for v in [
            &mut self.transactions,
            &mut self.queries,
            &mut self.bytes_received,
            &mut self.bytes_sent,
            &mut self.prepared_hits,
            &mut self.prepared_misses,
            &mut self.prepared_evictions,
            &mut self.setups,
            &mut self.xact_micros,
            &mut self.wait_micros,
        ] {
            *v = 0;
        }
    }

    fn values(&self) -> [u64; FIELDS] {
        let mut v = [0; FIELDS];
        v[..SCALARS].copy_from_slice(&self.scalars());
        v[SCALARS..SCALARS + WAIT_BUCKETS].copy_from_slice(&self.wait_buckets);
        v[SCALARS + WAIT_BUCKETS..].copy_from_slice(&self.duration_buckets);
        v
    }

    fn from_values(v: [u64; FIELDS]) -> Tally {
        let mut wait_buckets = [0; WAIT_BUCKETS];
        wait_buckets.copy_from_slice(&v[SCALARS..SCALARS + WAIT_BUCKETS]);
        let mut duration_buckets = [0; DURATION_BUCKETS];
        duration_buckets.copy_from_slice(&v[SCALARS + WAIT_BUCKETS..]);
        let bits = |buckets: &[u64], first: usize| {
            buckets
                .iter()
                .enumerate()
                .filter(|&(_, &n)| n != 0)
                .fold(0u32, |m, (k, _)| m | 1 << (first + k))
        };
        let touched = bits(&wait_buckets, 0) | bits(&duration_buckets, DURATION_BIT);
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
            wait_buckets,
            duration_buckets,
            touched,
        }
    }
}

/// Lanes per tenant statistics.
const LANES: usize = 8;

/// One lane of counters, on a cache line (pair) of its own.
#[repr(align(128))]
struct Lane([AtomicU64; FIELDS]);

impl Default for Lane {
    fn default() -> Self {
        Lane(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// Running totals since start.
#[derive(Default)]
pub(crate) struct TenantStats {
    lanes: [Lane; LANES],
}

impl TenantStats {
    /// Adds a session's tally (the session always uses the same `lane`, any number) and
    /// clears it.
    pub(crate) fn add(&self, lane: usize, t: &mut Tally) {
        let counters = &self.lanes[lane % LANES].0;
        let add = |i: usize, v: u64| {
            if v != 0 {
                counters[i].fetch_add(v, Ordering::Relaxed);
            }
        };
        for (i, v) in t.scalars().into_iter().enumerate() {
            add(i, v);
        }
        // Cleared as it goes: the buckets it visits, then the ten counts, not the whole tally
        // (five cache lines written back per transaction for the two or three in use).
        let mut touched = std::mem::take(&mut t.touched);
        while touched != 0 {
            let k = touched.trailing_zeros() as usize;
            touched &= touched - 1;
            match k.checked_sub(DURATION_BIT) {
                None => add(SCALARS + k, std::mem::take(&mut t.wait_buckets[k])),
                Some(d) => add(
                    SCALARS + WAIT_BUCKETS + d,
                    std::mem::take(&mut t.duration_buckets[d]),
                ),
            }
        }
        t.clear_scalars();
    }

    /// A wait for a server connection, into the session's tally.
    pub(crate) fn waited(t: &mut Tally, d: Duration) {
        let micros = d.as_micros() as u64;
        let k = bucket(&WAIT_BOUNDS, micros);
        t.wait_micros += micros;
        t.wait_buckets[k] += 1;
        t.touched |= 1 << k;
    }

    /// A finished transaction's duration, into the session's tally.
    pub(crate) fn transaction(t: &mut Tally, d: Duration) {
        let micros = d.as_micros() as u64;
        let k = bucket(&DURATION_BOUNDS, micros);
        t.xact_micros += micros;
        t.duration_buckets[k] += 1;
        t.touched |= 1 << (DURATION_BIT + k);
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
    fn adding_a_tally_clears_every_count() {
        let s = TenantStats::default();
        let mut t = Tally::from_values([1; FIELDS]);
        s.add(0, &mut t);
        assert_eq!(t, Tally::default());
    }

    #[test]
    fn lanes_add_up() {
        let s = TenantStats::default();
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

    #[test]
    fn every_bucket_reaches_the_totals() {
        let s = TenantStats::default();
        let mut expected = Tally::default();
        fn beyond(bounds: &[u64]) -> impl Iterator<Item = u64> + '_ {
            bounds.iter().copied().chain([bounds[bounds.len() - 1] + 1])
        }
        for (n, micros) in beyond(&WAIT_BOUNDS).enumerate() {
            let mut t = Tally::default();
            for _ in 0..=n {
                TenantStats::waited(&mut t, Duration::from_micros(micros));
            }
            expected.add(&t);
            s.add(n, &mut t);
            assert_eq!(t, Tally::default(), "added and cleared, buckets too");
        }
        for (n, micros) in beyond(&DURATION_BOUNDS).enumerate() {
            let mut t = Tally::default();
            TenantStats::transaction(&mut t, Duration::from_micros(micros));
            expected.add(&t);
            s.add(n, &mut t);
            assert_eq!(t, Tally::default(), "added and cleared, buckets too");
        }
        let total = s.totals();
        assert_eq!(total, expected);
        let waits: Vec<u64> = (1..=WAIT_BUCKETS as u64).collect();
        assert_eq!(total.wait_buckets.as_slice(), waits.as_slice());
        assert_eq!(total.duration_buckets, [1; DURATION_BUCKETS]);
    }

    #[test]
    fn samples_land_in_the_first_bucket_they_do_not_exceed() {
        let mut t = Tally::default();
        TenantStats::waited(&mut t, Duration::from_micros(100));
        TenantStats::waited(&mut t, Duration::from_micros(101));
        TenantStats::waited(&mut t, Duration::from_secs(600));
        TenantStats::transaction(&mut t, Duration::from_micros(2_000));
        assert_eq!(t.wait_micros, 600_000_201);
        assert_eq!(&t.wait_buckets[..2], [1, 1]);
        assert_eq!(t.wait_buckets[WAIT_BUCKETS - 1], 1, "+Inf");
        assert_eq!(t.wait_buckets.iter().sum::<u64>(), 3);
        assert_eq!(t.duration_buckets[2], 1, "2 ms is within 2.5 ms");
        let s = TenantStats::default();
        s.add(3, &mut t);
        assert_eq!(s.totals().wait_buckets[WAIT_BUCKETS - 1], 1);
        assert_eq!(s.totals().duration_buckets.iter().sum::<u64>(), 1);
    }
}
