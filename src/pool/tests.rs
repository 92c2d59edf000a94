//! Pool tests against a real PostgreSQL cluster (started once for the lib's tests): the stats
//! API, per-tenant caps, retiring connections when a shard's target changes, reconfiguring,
//! removing unused pools, and the jittered lifetime.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::stats::ServerState;
use super::{Keeper, PoolError, Pools, pooled};
use crate::config::{Config, PoolMode, Shard};
use crate::routing::{PoolKey, Route};
use crate::testing::{Cluster, PgBinaries, free_port, shard_toml};

const PASSWORD: &str = "pool-unit-pw";

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The cluster, with role `pgtenant` and one or two databases per test (they run in
/// parallel).
fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let bins = PgBinaries::find().expect("PostgreSQL binaries");
        let c = Cluster::start(&bins, "pool-unit").expect("cluster starts");
        c.psql(
            "postgres",
            &format!("CREATE ROLE pgtenant LOGIN PASSWORD '{PASSWORD}'"),
        )
        .expect("role");
        for db in [
            "pool_stats",
            "pool_cap",
            "pool_leave",
            "pool_moved",
            "pool_re_a",
            "pool_re_b",
            "pool_un_a",
            "pool_un_b",
            "pool_jitter",
            "pool_keep",
            "pool_reclaim",
            "pool_keepers",
            "pool_own",
            "pool_listed",
            "pool_lane_move",
            "pool_lane_pick",
        ] {
            c.psql("postgres", &format!("CREATE DATABASE {db} OWNER pgtenant"))
                .expect("database");
        }
        c
    })
}

/// Shards `main` (the cluster) and `spare` (nothing listens there); `pool` adds `[pool]` lines.
fn config(pool: &str) -> Config {
    let spare = free_port().expect("port");
    Config::from_toml_str(&format!(
        "[pool]\n{pool}\n{}{}",
        shard_toml("main", cluster().port(), "pgtenant", PASSWORD),
        shard_toml("spare", spare, "pgtenant", PASSWORD)
    ))
    .expect("config")
}

fn route(config: &Config, tenant: &str, database: &str, size: usize, cap: usize) -> Route {
    let shard = config.shards["main"].clone();
    Route {
        tenant: Arc::from(tenant),
        key: PoolKey {
            shard: shard.name.clone(),
            database: database.into(),
            role: "pgtenant".into(),
        },
        shard,
        mode: PoolMode::Transaction,
        pool_size: size,
        max_server_connections: cap,
        setup_sql: None,
        guarded: false,
        placement: crate::config::PlacementKind::Database,
        context: Arc::from(tenant),
        signing: None,
    }
}

/// Backend pids of `pgtenant` in `database`, as the server sees them.
fn backends(database: &str) -> Vec<i32> {
    let out = cluster()
        .psql(
            "postgres",
            &format!(
                "SELECT pid FROM pg_stat_activity WHERE usename = 'pgtenant' AND datname = '{database}' ORDER BY pid"
            ),
        )
        .expect("activity");
    out.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Polls `f` for up to 3 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(3), "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_follow_checkouts_waiters_and_releases() {
    let config = config("");
    let pools = Pools::new(&config);
    let shards = pools.shard_stats();
    assert_eq!(
        shards.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["main", "spare"],
        "every configured shard is listed, with a pool or not"
    );
    assert!(
        shards
            .iter()
            .all(|s| s.up && s.connections == 0 && s.pools == 0)
    );
    assert_eq!(shards[0].port, cluster().port());
    assert_eq!(shards[0].max_connections, 0);

    let acme = route(&config, "acme", "pool_stats", 1, 0);
    let pool = pools.get(&acme);
    let first = pool.checkout(&acme.tenant, 0).await.expect("checkout");
    let p = &pools.pool_stats()[0];
    assert_eq!(
        (p.size, p.active, p.idle, p.waiting, p.checkouts),
        (1, 1, 0, 0, 1)
    );
    let servers = pools.server_stats();
    assert_eq!(servers.len(), 1);
    let s = &servers[0];
    assert_eq!(s.state, ServerState::Active);
    assert_eq!(s.tenant.as_deref(), Some("acme"));
    assert_eq!(s.key, acme.key);
    assert_eq!(s.idle_for, Duration::ZERO);
    assert_eq!(
        backends("pool_stats"),
        [s.backend_pid],
        "backend_pid is the server's"
    );
    assert!(s.connected_at <= std::time::SystemTime::now());
    let main = &pools.shard_stats()[0];
    assert_eq!((main.connections, main.pools), (1, 1));

    // A second tenant waits for the pool's only connection.
    let beta = route(&config, "beta", "pool_stats", 1, 0);
    let pool_b = pools.get(&beta);
    let waiter = tokio::spawn({
        let (pool, tenant) = (pool_b.clone(), beta.tenant.clone());
        async move { pool.checkout(&tenant, 0).await.map(|c| (c, Instant::now())) }
    });
    eventually("a waiter shows", || pools.pool_stats()[0].waiting == 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(pools.pool_stats()[0].max_wait >= Duration::from_millis(50));
    let released = Instant::now();
    first.release();
    let (second, got) = waiter.await.expect("join").expect("checkout");
    assert!(got >= released);
    let p = &pools.pool_stats()[0];
    assert_eq!((p.active, p.waiting, p.checkouts), (1, 0, 2));
    assert_eq!(p.max_wait, Duration::ZERO);
    let servers = pools.server_stats();
    assert_eq!(servers.len(), 1, "handed over, not reopened");
    assert_eq!(servers[0].tenant.as_deref(), Some("beta"));

    second.release();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let s = &pools.server_stats()[0];
    assert_eq!(s.state, ServerState::Idle);
    assert_eq!(s.tenant.as_deref(), Some("beta"), "the last tenant");
    assert!(s.idle_for >= Duration::from_millis(30));
    let p = &pools.pool_stats()[0];
    assert_eq!((p.active, p.idle), (0, 1));

    // Dropped without release: closed, gone from the registry, budget back once it is.
    let dirty = pool.checkout(&acme.tenant, 0).await.expect("checkout");
    drop(dirty);
    assert!(pools.server_stats().is_empty());
    eventually("the shard's count drops", || {
        pools.shard_stats()[0].connections == 0
    })
    .await;
    eventually("the server lets go", || backends("pool_stats").is_empty()).await;
    let p = &pools.pool_stats()[0];
    assert_eq!((p.active, p.idle), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_cap_waits_while_others_are_served() {
    let config = config("");
    let pools = Pools::new(&config);
    let capped = route(&config, "capped", "pool_cap", 3, 1);
    let other = route(&config, "other", "pool_cap", 3, 0);
    let pool = pools.get(&capped);
    assert!(Arc::ptr_eq(&pool, &pools.get(&other)), "one pool for both");
    let held = pool.checkout(&capped.tenant, 0).await.expect("checkout");
    let blocked = tokio::spawn({
        let (pool, tenant) = (pool.clone(), capped.tenant.clone());
        async move { pool.checkout(&tenant, 0).await }
    });
    eventually("the capped tenant waits", || {
        pools.pool_stats()[0].waiting == 1
    })
    .await;
    // A free slot, but not for the capped tenant: another tenant gets it at once.
    let a = pool.checkout(&other.tenant, 0).await.expect("other tenant");
    let b = pool.checkout(&other.tenant, 0).await.expect("other tenant");
    assert_eq!(pools.pool_stats()[0].active, 3);
    assert!(!blocked.is_finished());
    held.release();
    let again = blocked
        .await
        .expect("join")
        .expect("served after its own release");
    assert_eq!(pools.pool_stats()[0].active, 3);
    drop((a, b, again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_leaves_takes_no_slot_with_it() {
    let config = config("");
    let pools = Pools::new(&config);
    let r = route(&config, "acme", "pool_leave", 1, 0);
    let pool = pools.get(&r);
    let held = pool.checkout(&r.tenant, 0).await.expect("checkout");
    for _ in 0..3 {
        let gone = tokio::spawn({
            let (pool, tenant) = (pool.clone(), r.tenant.clone());
            async move { pool.checkout(&tenant, 0).await.map(drop) }
        });
        eventually("queued", || pools.pool_stats()[0].waiting == 1).await;
        gone.abort();
        assert!(gone.await.is_err());
        assert_eq!(pools.pool_stats()[0].waiting, 0);
    }
    held.release();
    let again = tokio::time::timeout(Duration::from_secs(1), pool.checkout(&r.tenant, 0))
        .await
        .expect("the slot is free")
        .expect("checkout");
    let p = &pools.pool_stats()[0];
    assert_eq!((p.active, p.idle, p.waiting), (1, 0, 0));
    drop(again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_shard_retires_its_connections() {
    let config = config("");
    let pools = Pools::new(&config);
    let old = route(&config, "acme", "pool_moved", 2, 0);
    let pool = pools.get(&old);
    let kept = pool.checkout(&old.tenant, 0).await.expect("checkout");
    let idle = pool.checkout(&old.tenant, 0).await.expect("checkout");
    idle.release();
    assert_eq!(pools.server_stats().len(), 2);

    // Same route, same shard by value: nothing happens.
    let same = Route {
        shard: Arc::new(Shard {
            name: "main".into(),
            host: "127.0.0.1".into(),
            port: cluster().port(),
            user: "pgtenant".into(),
            password: Some(PASSWORD.into()),
        }),
        ..old.clone()
    };
    assert!(Arc::ptr_eq(&pool, &pools.get(&same)));
    assert_eq!(pools.server_stats().len(), 2);

    // The shard moved (here: the same server under another name).
    let moved = Route {
        shard: Arc::new(Shard {
            host: "localhost".into(),
            ..Shard::clone(&same.shard)
        }),
        pool_size: 3,
        ..old.clone()
    };
    assert!(Arc::ptr_eq(&pool, &pools.get(&moved)));
    assert_eq!(pools.server_stats().len(), 1, "the idle one is closed now");
    assert_eq!(pools.pool_stats()[0].size, 3, "the new size applies");
    assert_eq!(pools.shard_stats()[0].host, "localhost");
    kept.release();
    assert!(
        pools.server_stats().is_empty(),
        "the checked-out one is closed when released"
    );
    let fresh = pool.checkout(&old.tenant, 0).await.expect("checkout");
    fresh.release();
    assert_eq!(pools.server_stats().len(), 1);
    assert_eq!(pools.pool_stats()[0].idle, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_applies_to_later_checkouts() {
    let config = config("max_shard_connections = 1");
    let pools = Pools::new(&config);
    let a = route(&config, "acme", "pool_re_a", 2, 0);
    let b = route(&config, "beta", "pool_re_b", 2, 0);
    let held = pools
        .get(&a)
        .checkout(&a.tenant, 0)
        .await
        .expect("checkout");
    // pool_re_b needs a connection, the shard is at its cap of 1 and nothing is idle: it waits.
    let waiting = tokio::spawn({
        let (pool, tenant) = (pools.get(&b), b.tenant.clone());
        async move { pool.checkout(&tenant, 0).await }
    });
    eventually("pool_re_b waits", || {
        pools
            .pool_stats()
            .iter()
            .any(|p| p.key.database == "pool_re_b" && p.waiting == 1)
    })
    .await;
    let mut settings = config.pool;
    settings.max_shard_connections = 2;
    settings.query_wait_timeout = Duration::from_millis(200);
    pools.reconfigure(settings);
    let got = waiting
        .await
        .expect("join")
        .expect("a larger cap lets it in");
    assert_eq!(pools.shard_stats()[0].connections, 2);
    assert_eq!(pools.shard_stats()[0].max_connections, 2);

    // The shorter query_wait_timeout applies to the next waiter.
    let t = Instant::now();
    let e = match pools.get(&a).checkout(&a.tenant, 0).await {
        Err(e) => e,
        Ok(_) => panic!("the shard is at its cap"),
    };
    assert!(matches!(e, PoolError::WaitTimeout { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    drop((held, got));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_pools_are_removed() {
    let config = config("server_idle_timeout = 0.3");
    let pools = Pools::new(&config);
    for (tenant, db) in [("acme", "pool_un_a"), ("beta", "pool_un_b")] {
        let r = route(&config, tenant, db, 1, 0);
        let c = pools
            .get(&r)
            .checkout(&r.tenant, 0)
            .await
            .expect("checkout");
        c.release();
    }
    // A session still holding its pool keeps it.
    let r = route(&config, "beta", "pool_un_b", 1, 0);
    let kept = pools.get(&r);
    assert_eq!(pools.shard_stats()[0].pools, 2);
    eventually("the unused pool is removed", || {
        pools.pool_stats().len() == 1
    })
    .await;
    assert_eq!(pools.pool_stats()[0].key.database, "pool_un_b");
    assert_eq!(pools.shard_stats()[0].pools, 1);
    assert!(pools.server_stats().is_empty(), "idle connections expired");
    drop(kept);
    eventually("the last one too", || pools.pool_stats().is_empty()).await;
    assert_eq!(pools.shard_stats()[0].pools, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetimes_are_jittered() {
    let draws: Vec<f64> = (0..2000).map(|_| pooled::lifetime_factor()).collect();
    let (lo, hi) = draws
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &d| (lo.min(d), hi.max(d)));
    assert!(lo >= 0.9 && hi <= 1.1, "{lo}..{hi}");
    assert!(lo < 0.92 && hi > 1.08, "spread over the range: {lo}..{hi}");

    // Connections opened together get different lifetimes within ±10%.
    let config = config("");
    let pools = Pools::new(&config);
    let r = route(&config, "acme", "pool_jitter", 4, 0);
    let pool = pools.get(&r);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.checkout(&r.tenant, 0).await.expect("checkout"));
    }
    let hour = Duration::from_secs(3600);
    let lifetimes: Vec<Duration> = held.iter().map(|c| c.pooled().lifetime(hour)).collect();
    assert!(
        lifetimes
            .iter()
            .all(|l| *l >= hour.mul_f64(0.9) && *l <= hour.mul_f64(1.1)),
        "{lifetimes:?}"
    );
    assert!(lifetimes.windows(2).any(|w| w[0] != w[1]), "{lifetimes:?}");

    // Expiry follows the jittered lifetime, and a reloaded `server_lifetime` is taken up.
    let c = held[0].pooled();
    let created = c.conn().created;
    let lifetime = lifetimes[0];
    assert!(!c.expired(created + lifetime - Duration::from_millis(1), hour));
    assert!(c.expired(created + lifetime, hour));
    assert!(
        !c.expired(created + lifetime, hour * 2),
        "a longer lifetime after reload"
    );
    let past_half = created + lifetime / 2 + Duration::from_millis(1);
    assert!(c.expired(past_half, hour / 2), "a shorter one");
    assert!(!c.expired(past_half, hour), "and back");
}

/// The affinity rule of `dispatch`: a released connection goes to a waiter of the tenant it
/// is set up for instead of the tenant whose turn it is, at most `AFFINITY_PASSES` times in a
/// row, within `AFFINITY_PASS_TIME` of the first, never past `AFFINITY_MAX_WAIT` of the
/// passed-over tenant's oldest waiter, and never to a tenant at its cap or without waiters.
#[test]
fn affinity_passes_over_the_next_tenant_only_briefly() {
    use super::fair::FairQueue;
    use super::{AFFINITY_MAX_WAIT, AFFINITY_PASS_TIME, AFFINITY_PASSES, Passes, Waiter, affinity};
    use crate::fast_map::FastMap;

    let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
    let now = Instant::now();
    let waiter = |id, since| Waiter {
        id,
        since,
        lane: 0,
        deadline: since + Duration::from_secs(10),
        tx: tokio::sync::oneshot::channel().0,
    };
    let mut queue = FairQueue::new();
    queue.push(b.clone(), waiter(1, now));
    queue.push(a.clone(), waiter(2, now));
    let (held, mut caps) = (FastMap::default(), FastMap::default());
    let passes = |count| Passes { count, first: now };
    let none = passes(0);

    // b's turn, a's connection came back, a waits too: a gets it, up to the limit.
    for count in 0..AFFINITY_PASSES {
        assert!(affinity(&queue, &held, &caps, &a, passes(count), now));
    }
    assert!(!affinity(
        &queue,
        &held,
        &caps,
        &a,
        passes(AFFINITY_PASSES),
        now
    ));
    // Not once the first pass is AFFINITY_PASS_TIME ago (slow transactions), but a new turn
    // may start passing again.
    let later = now + AFFINITY_PASS_TIME;
    assert!(!affinity(&queue, &held, &caps, &a, passes(1), later));
    assert!(affinity(&queue, &held, &caps, &a, none, later));
    // Not once b's oldest waiter has waited long enough.
    assert!(!affinity(
        &queue,
        &held,
        &caps,
        &a,
        none,
        now + AFFINITY_MAX_WAIT
    ));
    // Nothing to gain when it is the warm tenant's turn, or it has no waiter (c).
    assert!(!affinity(&queue, &held, &caps, &b, none, now));
    assert!(!affinity(&queue, &held, &caps, &c, none, now));
    // A tenant at its cap is not served out of turn.
    caps.insert(a.clone(), 0);
    assert!(!affinity(&queue, &held, &caps, &a, none, now));
}

/// A checkout of `tenant` in the background (it may have to wait).
fn checkout_later(
    pool: &Arc<super::Pool>,
    tenant: &Arc<str>,
) -> tokio::task::JoinHandle<Result<super::Checkout, PoolError>> {
    let (pool, tenant) = (pool.clone(), tenant.clone());
    tokio::spawn(async move { pool.checkout(&tenant, 0).await })
}

/// The backend pid of `checkout`'s connection.
fn pid(checkout: &mut super::Checkout) -> i32 {
    checkout.conn().cancel.pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_comes_back_to_its_client_and_counts_as_idle() {
    let config = config("");
    let pools = Pools::new(&config);
    let acme = route(&config, "acme", "pool_keep", 2, 0);
    let pool = pools.get(&acme);
    let keeper = Keeper::new();
    let mut first = pool.checkout(&acme.tenant, 0).await.expect("checkout");
    let backend = pid(&mut first);
    let kept = first
        .keep(&keeper, Instant::now())
        .expect("kept: nobody waits");
    let p = &pools.pool_stats()[0];
    assert_eq!(
        (p.active, p.idle, p.checkouts),
        (0, 1, 1),
        "kept counts as idle"
    );
    assert_eq!(pools.server_stats()[0].state, ServerState::Idle);

    let mut again = kept.resume(Instant::now()).expect("resumed");
    assert_eq!(pid(&mut again), backend, "the same server connection");
    let p = &pools.pool_stats()[0];
    assert_eq!((p.active, p.idle, p.checkouts), (1, 0, 2));
    assert_eq!(pools.server_stats()[0].state, ServerState::Active);

    // Dropping a kept connection releases it to the idle list; it is not closed.
    drop(again.keep(&keeper, Instant::now()).expect("kept again"));
    let p = &pools.pool_stats()[0];
    assert_eq!((p.active, p.idle), (0, 1));
    assert_eq!(backends("pool_keep"), [backend]);
    let mut next = pool.checkout(&acme.tenant, 0).await.expect("checkout");
    assert_eq!(pid(&mut next), backend, "from the idle list");
    next.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_reclaims_kept_connections_instead_of_opening_one() {
    let config = config("");
    let pools = Pools::new(&config);
    let acme = route(&config, "acme", "pool_reclaim", 3, 0);
    let beta = route(&config, "beta", "pool_reclaim", 3, 0);
    let pool = pools.get(&acme);
    let keeper = Keeper::new();
    let mut first = pool.checkout(&acme.tenant, 0).await.expect("checkout");
    let backend = pid(&mut first);
    let kept = first.keep(&keeper, Instant::now()).expect("kept");

    // Another tenant's checkout queues (a slot is free, but no connection is idle) and
    // wakes the keeper; the keeper lets go and the waiter gets that connection.
    let before_queueing = Instant::now();
    let waiter = checkout_later(&pool, &beta.tenant);
    tokio::time::timeout(Duration::from_secs(3), keeper.reclaimed())
        .await
        .expect("the keeper is woken");
    drop(kept);
    let mut second = waiter.await.expect("join").expect("checkout");
    assert_eq!(
        pid(&mut second),
        backend,
        "handed over, not a new connection"
    );
    assert_eq!(backends("pool_reclaim"), [backend]);

    // Not kept right after a checkout queued (the waiter above: its transaction ending when
    // the waiter queued, whatever the test's own pace); kept again a moment later.
    let mut second = match second.keep(&keeper, before_queueing) {
        None => pool
            .checkout(&beta.tenant, 0)
            .await
            .expect("from the idle list"),
        Some(_) => panic!("kept right after a checkout queued"),
    };
    assert_eq!(pid(&mut second), backend);
    tokio::time::sleep(super::keep::KEEP_AFTER_QUEUE).await;

    // A keeper reclaimed before its client came back gets nothing back: the connection
    // went to the queue.
    let kept = second.keep(&keeper, Instant::now()).expect("kept");
    let waiter = checkout_later(&pool, &beta.tenant);
    eventually("a waiter shows", || pools.pool_stats()[0].waiting == 1).await;
    assert!(kept.resume(Instant::now()).is_none(), "reclaimed first");
    let mut third = waiter.await.expect("join").expect("checkout");
    assert_eq!(pid(&mut third), backend);

    // Not kept once every slot is held: the next checkout would reclaim it at once.
    let fourth = pool.checkout(&acme.tenant, 0).await.expect("second slot");
    let fifth = pool.checkout(&beta.tenant, 0).await.expect("third slot");
    tokio::time::sleep(super::keep::KEEP_AFTER_QUEUE).await;
    assert!(third.keep(&keeper, Instant::now()).is_none(), "pool full");
    let p = &pools.pool_stats()[0];
    assert_eq!((p.active, p.idle), (2, 1), "released to the idle list");
    fourth.release();
    fifth.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepers_leave_the_kept_list_in_any_order() {
    let config = config("");
    let pools = Pools::new(&config);
    let acme = route(&config, "acme", "pool_keepers", 4, 0);
    let pool = pools.get(&acme);
    let keepers = [Keeper::new(), Keeper::new(), Keeper::new()];
    // All three checked out first: a checkout while connections are kept would reclaim them.
    let mut checkouts = Vec::new();
    for _ in &keepers {
        checkouts.push(pool.checkout(&acme.tenant, 0).await.expect("checkout"));
    }
    let mut kept: Vec<_> = checkouts
        .into_iter()
        .zip(&keepers)
        .map(|(c, k)| c.keep(k, Instant::now()))
        .collect();
    let counts = || {
        let p = &pools.pool_stats()[0];
        (p.active, p.idle)
    };
    assert_eq!(counts(), (0, 3));
    // The middle one first: the last takes its place in the list.
    let middle = kept[1].take().expect("kept").resume(Instant::now());
    assert_eq!(counts(), (1, 2));
    let last = kept[2].take().expect("kept").resume(Instant::now());
    assert_eq!(counts(), (2, 1));
    let first = kept[0].take().expect("kept").resume(Instant::now());
    assert_eq!(counts(), (3, 0));
    for c in [middle, last, first] {
        c.expect("resumed").release();
    }
    assert_eq!(counts(), (0, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_checkout_reclaims_its_own_tenants_connection_first() {
    let config = config("");
    let pools = Pools::new(&config);
    let acme = route(&config, "acme", "pool_own", 3, 0);
    let beta = route(&config, "beta", "pool_own", 3, 0);
    let pool = pools.get(&acme);
    let mut a = pool.checkout(&acme.tenant, 0).await.expect("checkout");
    let mut b = pool.checkout(&beta.tenant, 0).await.expect("checkout");
    let beta_backend = pid(&mut b);
    let (acme_keeper, beta_keeper) = (Keeper::new(), Keeper::new());
    let acme_backend = pid(&mut a);
    let acme_kept = a.keep(&acme_keeper, Instant::now()).expect("kept");
    let beta_kept = b.keep(&beta_keeper, Instant::now()).expect("kept");
    let waiter = checkout_later(&pool, &beta.tenant);
    tokio::time::timeout(Duration::from_secs(3), beta_keeper.reclaimed())
        .await
        .expect("beta's keeper is woken");
    drop(beta_kept);
    let mut got = waiter.await.expect("join").expect("checkout");
    assert_eq!(pid(&mut got), beta_backend, "beta's own connection");
    // acme keeps its connection: nobody needed it.
    let mut again = acme_kept.resume(Instant::now()).expect("still kept");
    assert_eq!(pid(&mut again), acme_backend);
    got.release();
    again.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_goes_and_comes_back_without_the_lock_until_a_checkout_queues() {
    let config = config("");
    let pools = Pools::new(&config);
    let acme = route(&config, "acme", "pool_listed", 2, 0);
    let pool = pools.get(&acme);
    let keeper = Keeper::new();
    let mut first = pool.checkout(&acme.tenant, 0).await.expect("checkout");
    let backend = pid(&mut first);
    let counts = || {
        let p = &pools.pool_stats()[0];
        (p.active, p.idle, p.waiting)
    };
    // Kept the locked way first; from then on the session stays on the kept list.
    let kept = first.keep(&keeper, Instant::now()).expect("kept");
    let resumed = kept.resume(Instant::now()).expect("resumed");
    assert!(resumed.listed.is_some(), "resumed without the lock");
    assert_eq!(counts(), (1, 0, 0), "in use counts as active");
    let kept = resumed.keep(&keeper, Instant::now()).expect("kept again");
    assert_eq!(counts(), (0, 1, 0), "kept counts as idle");
    let mut resumed = kept.resume(Instant::now()).expect("resumed again");
    assert!(resumed.listed.is_some());
    assert_eq!(pid(&mut resumed), backend);

    // In use, it is not free to reclaim: a checkout gets the free slot (a new connection).
    let mut other = pool.checkout(&acme.tenant, 0).await.expect("second slot");
    assert_ne!(pid(&mut other), backend);
    // The pool is full: the next checkout queues, passes the connection in use over, and
    // its keeper gives it back when its transaction ends.
    let waiter = checkout_later(&pool, &acme.tenant);
    eventually("a waiter shows", || counts().2 == 1).await;
    assert!(
        resumed.keep(&keeper, Instant::now()).is_none(),
        "released to the waiter"
    );
    let mut third = tokio::time::timeout(Duration::from_secs(3), waiter)
        .await
        .expect("the waiter is served")
        .expect("join")
        .expect("checkout");
    assert_eq!(pid(&mut third), backend);
    assert_eq!(counts(), (2, 0, 0));
    third.release();
    other.release();
    assert_eq!(counts(), (0, 2, 0));
}

/// Runs `SELECT 1` on `checkout`'s connection, as a session's relay would: the reply is read
/// through the connection's registration with the runtime this runs on.
async fn select_one(checkout: &mut super::Checkout) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = &mut checkout.conn().stream;
    let sql = b"SELECT 1\0";
    let mut query = vec![b'Q'];
    query.extend_from_slice(&(4 + sql.len() as u32).to_be_bytes());
    query.extend_from_slice(sql);
    stream.write_all(&query).await?;
    let mut reply = Vec::new();
    while !reply.ends_with(&[b'Z', 0, 0, 0, 5, b'I']) {
        let mut buf = [0u8; 512];
        match stream.read(&mut buf).await? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => reply.extend_from_slice(&buf[..n]),
        }
    }
    Ok(())
}

/// Runs `f` on a single-threaded runtime of a thread of its own (a lane), which ends with it.
fn on_own_runtime<T: Send + 'static>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    })
    .join()
    .expect("lane thread")
}

/// A connection opened on one lane and checked out on another is moved to the second lane's
/// event loop: it keeps working after the first lane's runtime is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_moves_to_the_lane_of_its_next_checkout() {
    let config = config("");
    let pools = Pools::new(&config);
    let acme = route(&config, "acme", "pool_lane_move", 1, 0);
    let pool = pools.get(&acme);
    let (p, t) = (pool.clone(), acme.tenant.clone());
    let first = on_own_runtime(async move {
        let mut c = p.checkout(&t, 1).await.expect("checkout on lane 1");
        select_one(&mut c).await.expect("query on lane 1");
        let backend = pid(&mut c);
        c.release();
        backend
    });
    // Lane 1's runtime is gone; lane 2 takes the connection over.
    let (p, t) = (pool.clone(), acme.tenant.clone());
    let second = on_own_runtime(async move {
        let mut c = p.checkout(&t, 2).await.expect("checkout on lane 2");
        let backend = pid(&mut c);
        let answered = select_one(&mut c).await;
        c.release();
        (backend, answered)
    });
    assert_eq!(second.0, first, "the same server connection");
    second
        .1
        .expect("the connection answers on the lane it moved to");
}

/// A released connection goes to a waiter of its own lane before an older waiter of another
/// lane, if that one began waiting less than `LANE_MAX_SKIP` before; otherwise the oldest
/// waiter is served first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_connection_goes_to_a_waiter_of_its_lane_if_it_came_soon_enough() {
    let config = config("");
    let pools = Pools::new(&config);
    let acme = route(&config, "acme", "pool_lane_pick", 1, 0);
    let pool = pools.get(&acme);
    let waiting = || pools.pool_stats()[0].waiting;
    let wait_at = |since: Instant, lane: usize| {
        let (pool, tenant) = (pool.clone(), acme.tenant.clone());
        tokio::spawn(async move { pool.checkout_at(&tenant, since, lane).await })
    };
    for (gap, lane_first) in [
        (super::LANE_MAX_SKIP / 2, true),
        (super::LANE_MAX_SKIP * 3, false),
    ] {
        // The connection is opened, and released, on lane 0.
        let held = pool.checkout(&acme.tenant, 0).await.expect("checkout");
        let since = Instant::now();
        let other_lane = wait_at(since, 1);
        eventually("the lane 1 waiter queues", || waiting() == 1).await;
        let same_lane = wait_at(since + gap, 0);
        eventually("the lane 0 waiter queues", || waiting() == 2).await;
        held.release();
        let (first, second) = if lane_first {
            (same_lane, other_lane)
        } else {
            (other_lane, same_lane)
        };
        eventually("the first waiter is served", || first.is_finished()).await;
        assert!(
            !second.is_finished(),
            "gap {gap:?}: one connection, one waiter served"
        );
        first.await.expect("join").expect("checkout").release();
        second.await.expect("join").expect("checkout").release();
    }
}
