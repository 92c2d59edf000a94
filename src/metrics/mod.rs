//! Prometheus metrics (DESIGN §6): metric names, the per-session statistics the relay counts
//! into, and rendering for `GET /metrics` on `server.metrics_addr`.
//!
//! The hot path never touches the exporter: a session counts into its tenant's
//! [`TenantStats`] (plain atomics, added once per transaction) and records two histograms.
//! Counters and gauges are copied into the exporter when Prometheus scrapes.

pub(crate) mod http;
mod names;
pub(crate) mod stats;

pub(crate) use names::*;
pub(crate) use stats::{StatsKey, TenantStats};

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;
use metrics::{Counter, Gauge, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Buckets of the pool wait histogram, in seconds.
const WAIT_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0,
];
/// Buckets of the transaction duration histogram, in seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// A gauge value to publish at scrape time.
pub(crate) struct GaugeSample {
    pub(crate) name: &'static str,
    pub(crate) labels: Vec<(&'static str, String)>,
    pub(crate) value: f64,
}

/// The process's metrics: the exporter's recorder and the per-tenant statistics.
pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Label by tenant (`server.tenant_labels = "all"`).
    tenant_labels: bool,
    stats: DashMap<StatsKey, Arc<TenantStats>>,
    /// Gauge label sets published at the last scrape (set to zero when they disappear).
    published: std::sync::Mutex<HashMap<(&'static str, Vec<Label>), Gauge>>,
}

impl Metrics {
    pub(crate) fn new(tenant_labels: bool) -> Metrics {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(POOL_WAIT.into()), WAIT_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(XACT_DURATION.into()), DURATION_BUCKETS)
            });
        // The bucket lists above are non-empty constants; the builder only refuses empty ones.
        let recorder = match builder {
            Ok(b) => b.build_recorder(),
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        for (name, help) in names::HELP {
            recorder.describe_counter((*name).into(), None, (*help).into());
            recorder.describe_gauge((*name).into(), None, (*help).into());
            recorder.describe_histogram((*name).into(), None, (*help).into());
        }
        let handle = recorder.handle();
        Metrics {
            recorder,
            handle,
            tenant_labels,
            stats: DashMap::new(),
            published: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The statistics a session of `key.tenant` counts into (created on first use).
    pub(crate) fn session(&self, key: StatsKey) -> Arc<TenantStats> {
        if let Some(s) = self.stats.get(&key) {
            return s.clone();
        }
        let labels = self.labels(Some(&key.tenant), Some((&key.shard, &key.database)));
        let wait = self
            .recorder
            .register_histogram(&Key::from_parts(POOL_WAIT, labels.clone()), &METADATA);
        let duration = self
            .recorder
            .register_histogram(&Key::from_parts(XACT_DURATION, labels), &METADATA);
        self.stats
            .entry(key)
            .or_insert_with(|| Arc::new(TenantStats::new(wait, duration)))
            .clone()
    }

    /// Every tenant's statistics (for `SHOW STATS`).
    pub(crate) fn all_stats(&self) -> Vec<(StatsKey, Arc<TenantStats>)> {
        self.stats
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }

    /// One more error of `kind`, for `tenant` when known.
    pub(crate) fn error(&self, tenant: Option<&str>, kind: &'static str) {
        self.errors(tenant, kind, 1);
    }

    /// `n` more errors of `kind`.
    pub(crate) fn errors(&self, tenant: Option<&str>, kind: &'static str, n: u64) {
        let mut labels = self.labels(tenant.or(Some("")), None);
        labels.push(Label::new("kind", kind));
        self.counter(ERRORS, labels).increment(n);
    }

    /// One more failed login, by reason.
    pub(crate) fn auth_failure(&self, reason: &'static str) {
        self.counter(AUTH_FAILURES, vec![Label::new("reason", reason)])
            .increment(1);
    }

    /// One more client refused while naming its tenant, by reason.
    pub(crate) fn tenant_rejection(&self, reason: &'static str) {
        self.counter(REJECTIONS, vec![Label::new("reason", reason)])
            .increment(1);
    }

    /// One more configuration reload, `ok` or `error`.
    pub(crate) fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.counter(RELOADS, vec![Label::new("result", result)])
            .increment(1);
    }

    /// The text exposition: the counters of every tenant's statistics and `gauges` are
    /// published first.
    pub(crate) fn render(&self, gauges: Vec<GaugeSample>) -> String {
        self.publish_stats();
        self.publish_gauges(gauges);
        self.handle.run_upkeep();
        self.handle.render()
    }

    /// Drains histogram samples into their buckets (also done by every scrape).
    pub(crate) fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    fn publish_stats(&self) {
        let mut sums: HashMap<Vec<Label>, [u64; 7]> = HashMap::new();
        let mut evictions: HashMap<Vec<Label>, u64> = HashMap::new();
        for e in self.stats.iter() {
            let k = e.key();
            let t = e.value().totals();
            let labels = self.labels(Some(&k.tenant), Some((&k.shard, &k.database)));
            let sum = sums.entry(labels).or_default();
            let values = [
                t.transactions,
                t.queries,
                t.bytes_received,
                t.bytes_sent,
                t.prepared_hits,
                t.prepared_misses,
                t.setups,
            ];
            for (total, v) in sum.iter_mut().zip(values) {
                *total += v;
            }
            // Evictions belong to server connections: by pool, never by tenant.
            if t.prepared_evictions > 0 {
                let labels = self.labels(None, Some((&k.shard, &k.database)));
                *evictions.entry(labels).or_default() += t.prepared_evictions;
            }
        }
        let names = [
            TRANSACTIONS,
            QUERIES,
            BYTES_RECEIVED,
            BYTES_SENT,
            PREPARED_HITS,
            PREPARED_MISSES,
            TENANT_SETUPS,
        ];
        for (labels, values) in sums {
            for (name, v) in names.iter().zip(values) {
                self.counter(name, labels.clone()).absolute(v);
            }
        }
        for (labels, n) in evictions {
            self.counter(PREPARED_EVICTIONS, labels).absolute(n);
        }
    }

    fn publish_gauges(&self, gauges: Vec<GaugeSample>) {
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = HashMap::with_capacity(gauges.len());
        for g in gauges {
            let labels: Vec<Label> = g
                .labels
                .into_iter()
                .filter(|(k, _)| self.tenant_labels || *k != "tenant")
                .map(|(k, v)| Label::new(k, v))
                .collect();
            *seen.entry((g.name, labels)).or_insert(0.0) += g.value;
        }
        for (key, gauge) in published.iter() {
            if !seen.contains_key(key) {
                gauge.set(0.0);
            }
        }
        for ((name, labels), value) in seen {
            let gauge = published.entry((name, labels.clone())).or_insert_with(|| {
                self.recorder
                    .register_gauge(&Key::from_parts(name, labels), &METADATA)
            });
            gauge.set(value);
        }
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    /// The label set for a tenant and a pool (shard, database); the tenant label only with
    /// `tenant_labels = "all"`.
    fn labels(&self, tenant: Option<&str>, pool: Option<(&str, &str)>) -> Vec<Label> {
        let mut labels = Vec::with_capacity(3);
        if self.tenant_labels
            && let Some(t) = tenant
        {
            labels.push(Label::new("tenant", t.to_owned()));
        }
        if let Some((shard, database)) = pool {
            labels.push(Label::new("shard", shard.to_owned()));
            labels.push(Label::new("database", database.to_owned()));
        }
        labels
    }
}
