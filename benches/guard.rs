//! The shared-placement guard's cost per statement: parsing and checking a statement text
//! the first time (`pg_query` + the checks), the cached verdict every later time, and a
//! text never seen whose shape was (a new literal).
//!
//! `cargo bench --bench guard`

use criterion::{Criterion, criterion_group, criterion_main};
use pgtenant::bench_support::{CachedGuard, check_uncached};
use std::hint::black_box;

const STATEMENTS: [(&str, &str); 4] = [
    (
        "pgbench_select",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
    ),
    (
        "tpcb_update",
        "UPDATE pgbench_accounts SET abalance = abalance + -2150 WHERE aid = 48213;",
    ),
    (
        "join_with_functions",
        "SELECT o.id, c.name, sum(l.qty * l.price) FROM orders o JOIN customers c ON c.id = \
         o.customer_id JOIN lines l ON l.order_id = o.id WHERE o.created_at > now() - interval \
         '7 days' GROUP BY o.id, c.name ORDER BY 3 DESC LIMIT 20",
    ),
    (
        "do_block",
        "DO $$ DECLARE n int; BEGIN SELECT count(*) INTO n FROM items; IF n > 10 THEN \
         PERFORM set_config('app.current_tenant', 'acme', true); END IF; END $$",
    ),
];

fn guard(c: &mut Criterion) {
    // pgbench -M simple: every statement carries a new literal, so the exact text is never
    // seen twice; its shape (literal replaced by a parameter) is.
    let g = CachedGuard::default();
    let mut aid = 0u32;
    c.bench_function("new_literal_same_shape/pgbench_select", |b| {
        b.iter_batched(
            || {
                aid = aid.wrapping_add(7919);
                format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};")
            },
            |sql| g.admit(black_box(&sql)),
            criterion::BatchSize::SmallInput,
        )
    });
    for (name, sql) in STATEMENTS {
        assert!(check_uncached(sql), "{name} is admitted");
        c.bench_function(&format!("parse_and_check/{name}"), |b| {
            b.iter(|| check_uncached(black_box(sql)))
        });
        let g = CachedGuard::default();
        c.bench_function(&format!("cached/{name}"), |b| {
            b.iter(|| g.admit(black_box(sql)))
        });
    }
}

criterion_group!(benches, guard);
criterion_main!(benches);
