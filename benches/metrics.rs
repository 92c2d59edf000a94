//! The metrics work a session does per transaction (clock reads, two histogram samples, its
//! counts added to the tenant's statistics), alone and with two threads of one tenant at
//! once (the sessions of a busy tenant on both cores).
//!
//! `cargo bench --bench metrics`

use criterion::{Criterion, criterion_group, criterion_main};
use pgtenant::bench_support::MetricsPerTransaction;

fn per_transaction(c: &mut Criterion) {
    let mut m = MetricsPerTransaction::default();
    let mut n = 0usize;
    c.bench_function("metrics_per_transaction", |b| {
        b.iter(|| {
            n += 1;
            m.transaction(n);
            // Scrapes drain the histograms; do what one every 10,000 transactions would.
            if n.is_multiple_of(10_000) {
                m.scrape();
            }
        })
    });
    // Two threads of the same tenant: a second thread adds on another lane all along.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let other = {
        let stop = stop.clone();
        let mut m2 = m.another_session();
        std::thread::spawn(move || {
            let mut k = 1usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                k += 2;
                m2.transaction(k);
                if k.is_multiple_of(20_001) {
                    m2.scrape();
                }
            }
        })
    };
    c.bench_function("metrics_per_transaction_two_threads", |b| {
        b.iter(|| {
            n += 2;
            m.transaction(n);
            if n.is_multiple_of(10_000) {
                m.scrape();
            }
        })
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = other.join();
}

criterion_group!(benches, per_transaction);
criterion_main!(benches);
