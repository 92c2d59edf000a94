//! pgtenant: a tenant-aware PostgreSQL wire-protocol proxy and connection pooler.
//!
//! Data flows one way through the modules; each stage consumes the previous stage's value:
//!
//! ```text
//! server (accept) → session::startup (SSL/TLS, SNI, StartupParams) → tenant::hint (unverified)
//!   → auth (SCRAM or JWT) → tenant::resolve (hint + identity → Tenant) → routing (→ Route)
//!   → pool (checkout) → relay (hot path; shared placement: guard) → pool (release / reset)
//! ```
//!
//! - [`config`]: TOML + environment → validated, immutable [`config::Config`].
//! - `protocol`: pure codec, no I/O.
//! - `stream`, `tls`: client transport (plain TCP or TLS).
//! - `session`: per-connection driver; the one place that writes errors to clients.
//! - `auth`, `tenant`, `routing`, `pool`, `backend`, `relay`, `cancel`: the stages.
//! - `guard`: the shared-placement statement guard the relay consults for every statement.
//! - [`server`]: accept loop, client limit, reload, shutdown fan-out.
//! - `admin`: the console (database `pgtenant`); `metrics`: Prometheus `/metrics`.
//! - [`testing`]: throwaway real PostgreSQL clusters for tests and `demo`.
//! - [`audit`]: the `rls` and `check` commands (SQL for row-level security, shard audit); not
//!   part of the proxy's path.
#![deny(clippy::unwrap_used, clippy::todo, clippy::dbg_macro)]

pub(crate) mod admin;
pub(crate) mod affinity;
pub mod audit;
pub(crate) mod auth;
pub(crate) mod backend;
pub(crate) mod cancel;
pub mod config;
pub mod demo;
pub(crate) mod error;
pub(crate) mod fast_map;
pub(crate) mod guard;
pub(crate) mod lanes;
pub(crate) mod metrics;
pub(crate) mod pool;
pub(crate) mod protocol;
pub(crate) mod relay;
pub(crate) mod routing;
pub mod server;
pub(crate) mod session;
pub(crate) mod stream;
pub(crate) mod tenant;
pub mod testing;
pub(crate) mod tls;

pub use auth::scram::hash_password;

/// Entry points for `benches/` only; not an API.
#[doc(hidden)]
pub mod bench_support {
    use std::sync::Arc;

    use crate::guard::{Guard, Policy, Source, Verdict, VerdictCache, check};

    /// Parses and checks `sql` as a simple query, without the cache: true if admitted.
    pub fn check_uncached(sql: &str) -> bool {
        matches!(
            check(
                &Policy::new("app.current_tenant"),
                sql.as_bytes(),
                Source::SimpleQuery
            ),
            Verdict::Allowed(_)
        )
    }

    /// A session guard with its own verdict cache.
    pub struct CachedGuard(Guard);

    impl Default for CachedGuard {
        fn default() -> Self {
            CachedGuard(Guard {
                cache: Arc::new(VerdictCache::new(Policy::new("app.current_tenant"))),
                context: Arc::from("acme"),
                tenant: Arc::from("acme"),
            })
        }
    }

    /// What a session does for metrics per transaction: two clock reads, a pool wait and a
    /// transaction duration recorded in the tenant's histograms, and its tally added to the
    /// tenant's statistics.
    pub struct MetricsPerTransaction {
        metrics: Arc<crate::metrics::Metrics>,
        stats: Arc<crate::metrics::TenantStats>,
        tally: crate::metrics::stats::Tally,
    }

    impl Default for MetricsPerTransaction {
        fn default() -> Self {
            let metrics = Arc::new(crate::metrics::Metrics::new(true));
            let stats = metrics.session(crate::metrics::StatsKey {
                tenant: Arc::from("acme"),
                shard: "main".into(),
                database: "erp_acme".into(),
            });
            MetricsPerTransaction {
                metrics,
                stats,
                tally: Default::default(),
            }
        }
    }

    impl MetricsPerTransaction {
        /// Another session of the same tenant (same statistics and histograms).
        pub fn another_session(&self) -> MetricsPerTransaction {
            MetricsPerTransaction {
                metrics: self.metrics.clone(),
                stats: self.stats.clone(),
                tally: Default::default(),
            }
        }

        /// One transaction's worth of metrics work, on `lane`.
        pub fn transaction(&mut self, lane: usize) {
            let start = std::time::Instant::now();
            crate::metrics::TenantStats::waited(&mut self.tally, start.elapsed());
            self.tally.queries += 1;
            self.tally.bytes_received += 60;
            self.tally.bytes_sent += 120;
            self.tally.transactions += 1;
            crate::metrics::TenantStats::transaction(&mut self.tally, start.elapsed());
            self.stats.add(lane, &mut self.tally);
        }

        /// What a scrape does.
        pub fn scrape(&self) -> usize {
            self.metrics.render(Vec::new()).len()
        }
    }

    impl CachedGuard {
        /// What the relay does per simple query: cached verdict plus the per-tenant check.
        pub fn admit(&self, sql: &str) -> bool {
            self.0.admit(sql.as_bytes(), Source::SimpleQuery).is_ok()
        }
    }
}
