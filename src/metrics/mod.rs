//! Prometheus metrics (DESIGN §6): metric names, the per-session statistics the relay counts
//! into, and rendering for `GET /metrics` on `server.metrics_addr`.
//!
//! The hot path never touches the exporter: a session counts into its tenant's
//! [`TenantStats`] (plain atomics, added once per transaction), histogram buckets included.
//! Counters and gauges are copied into the exporter when Prometheus scrapes; the two
//! histograms are written out from the bucket counts after the exporter's text.

pub(crate) mod http;
mod names;
pub(crate) mod stats;

pub(crate) use names::*;
pub(crate) use stats::{StatsKey, TenantStats};

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use dashmap::DashMap;
use metrics::{Counter, Gauge, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use stats::{DURATION_BOUNDS, Tally, WAIT_BOUNDS};

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
        let recorder = PrometheusBuilder::new().build_recorder();
        for (name, help) in names::HELP {
            recorder.describe_counter((*name).into(), None, (*help).into());
            recorder.describe_gauge((*name).into(), None, (*help).into());
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
        self.stats.entry(key).or_default().clone()
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
    /// published first; the histograms follow the exporter's text.
    pub(crate) fn render(&self, gauges: Vec<GaugeSample>) -> String {
        let histograms = self.publish_stats();
        self.publish_gauges(gauges);
        self.handle.run_upkeep();
        let mut text = self.handle.render();
        write_histograms(&mut text, &histograms);
        text
    }

    /// Drains the exporter's buffers (also done by every scrape).
    pub(crate) fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Publishes the counters; returns the summed tallies by label set (for the histograms).
    fn publish_stats(&self) -> Vec<(Vec<Label>, Tally)> {
        let mut sums: HashMap<Vec<Label>, Tally> = HashMap::new();
        let mut evictions: HashMap<Vec<Label>, u64> = HashMap::new();
        for e in self.stats.iter() {
            let k = e.key();
            let t = e.value().totals();
            let labels = self.labels(Some(&k.tenant), Some((&k.shard, &k.database)));
            sums.entry(labels).or_default().add(&t);
            // Evictions belong to server connections: by pool, never by tenant.
            if t.prepared_evictions > 0 {
                let labels = self.labels(None, Some((&k.shard, &k.database)));
                *evictions.entry(labels).or_default() += t.prepared_evictions;
            }
        }
        for (labels, t) in &sums {
            for (name, v) in [
                (TRANSACTIONS, t.transactions),
                (QUERIES, t.queries),
                (BYTES_RECEIVED, t.bytes_received),
                (BYTES_SENT, t.bytes_sent),
                (PREPARED_HITS, t.prepared_hits),
                (PREPARED_MISSES, t.prepared_misses),
                (TENANT_SETUPS, t.setups),
            ] {
                self.counter(name, labels.clone()).absolute(v);
            }
        }
        for (labels, n) in evictions {
            self.counter(PREPARED_EVICTIONS, labels).absolute(n);
        }
        let mut sums: Vec<_> = sums.into_iter().collect();
        sums.sort_by(|a, b| a.0.cmp(&b.0));
        sums
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

/// Appends both histograms in the text format: `# HELP`, `# TYPE`, then per label set the
/// cumulative `_bucket` counts (bounds in seconds, `+Inf` last), `_sum` and `_count`.
fn write_histograms(out: &mut String, by_labels: &[(Vec<Label>, Tally)]) {
    if by_labels.is_empty() {
        return;
    }
    // Per histogram: name, bucket bounds, and its buckets and microsecond sum in a tally.
    type Pick = fn(&Tally) -> (&[u64], u64);
    let kinds: [(&str, &[u64], Pick); 2] = [
        (POOL_WAIT, &WAIT_BOUNDS, |t| {
            (&t.wait_buckets, t.wait_micros)
        }),
        (XACT_DURATION, &DURATION_BOUNDS, |t| {
            (&t.duration_buckets, t.xact_micros)
        }),
    ];
    for (name, bounds, pick) in kinds {
        let help = names::HELP
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, h)| h);
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (labels, tally) in by_labels {
            let (counts, micros) = pick(tally);
            let labels: String = labels
                .iter()
                .map(|l| format!("{}=\"{}\",", l.key(), escape(l.value())))
                .collect();
            let mut cumulative = 0;
            for (i, n) in counts.iter().enumerate() {
                cumulative += n;
                let le = bounds
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |b| (*b as f64 / 1e6).to_string());
                let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}");
            }
            let labels = labels.trim_end_matches(',');
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", micros as f64 / 1e6);
            let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
        }
        out.push('\n');
    }
}

/// A label value in the text format: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_count_and_escaped_labels() {
        let metrics = Metrics::new(true);
        let stats = metrics.session(StatsKey {
            tenant: "a\"b".into(),
            shard: "s1".into(),
            database: "d1".into(),
        });
        let mut t = Tally::default();
        TenantStats::waited(&mut t, Duration::from_micros(50));
        TenantStats::waited(&mut t, Duration::from_millis(2));
        TenantStats::transaction(&mut t, Duration::from_secs(60));
        stats.add(0, &mut t);
        let text = metrics.render(Vec::new());
        let labels = r#"tenant="a\"b",shard="s1",database="d1""#;
        for line in [
            "# TYPE pgtenant_pool_wait_seconds histogram".to_owned(),
            format!("pgtenant_pool_wait_seconds_bucket{{{labels},le=\"0.0001\"}} 1"),
            format!("pgtenant_pool_wait_seconds_bucket{{{labels},le=\"0.001\"}} 1"),
            format!("pgtenant_pool_wait_seconds_bucket{{{labels},le=\"0.005\"}} 2"),
            format!("pgtenant_pool_wait_seconds_bucket{{{labels},le=\"+Inf\"}} 2"),
            format!("pgtenant_pool_wait_seconds_sum{{{labels}}} 0.00205"),
            format!("pgtenant_pool_wait_seconds_count{{{labels}}} 2"),
            format!("pgtenant_transaction_duration_seconds_bucket{{{labels},le=\"30\"}} 0"),
            format!("pgtenant_transaction_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 1"),
            format!("pgtenant_transaction_duration_seconds_count{{{labels}}} 1"),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
