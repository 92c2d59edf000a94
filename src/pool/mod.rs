//! Pools of server connections keyed by (shard, database, role): fair checkout with
//! `query_wait_timeout`, per-tenant caps, release, idle eviction, and the shard-wide budget
//! and health the pools of one shard share (`shard.rs`).
//!
//! Waiters are grouped per tenant and served round-robin (first come, first served within a
//! tenant, except that a waiter on the lane of a released connection may go before older ones
//! of other lanes, by at most [`LANE_MAX_SKIP`]), so one tenant with many busy clients cannot
//! make another tenant's client wait behind all of them. A slot that comes free is handed
//! straight to the next waiter. A connection whose checkout is dropped without
//! [`Checkout::release`] is closed, never handed on. Must not do client I/O or know about the
//! relay's protocol state.

mod checkout;
mod fair;
mod keep;
mod pooled;
mod reaper;
mod shard;
pub(crate) mod stats;
#[cfg(test)]
mod tests;

pub(crate) use checkout::Checkout;
pub(crate) use keep::{Keeper, Kept};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use thiserror::Error;
use tokio::sync::oneshot;

use crate::backend::BackendError;
use crate::backend::conn::SessionState;
use crate::backend::connect::{ServerParams, connect};
use crate::backend::credentials::Credentials;
use crate::config::{Config, PoolSettings, Shard};
use crate::error::{ClientError, ClientFacing, QUERY_CANCELED, UNABLE_TO_CONNECT};
use crate::fast_map::FastMap;
use crate::routing::{PoolKey, Route};
use fair::{Choice, FairQueue};
use keep::Ticket;
use pooled::Pooled;
use shard::{AcquireError, Handoff, ShardState};
use stats::{PoolStats, Registry};

#[derive(Debug, Error)]
pub(crate) enum PoolError {
    #[error(
        "no server connection for database \"{database}\" on shard \"{shard}\" became free within query_wait_timeout ({secs:.1}s)"
    )]
    WaitTimeout {
        shard: String,
        database: String,
        secs: f64,
    },
    /// The shard failed a connection recently and has not answered a health check since.
    #[error("{reason}")]
    ShardDown { reason: String },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl ClientFacing for PoolError {
    fn to_client(&self) -> ClientError {
        match self {
            PoolError::WaitTimeout { .. } => ClientError::new(QUERY_CANCELED, self.to_string()),
            PoolError::ShardDown { .. } => ClientError::new(UNABLE_TO_CONNECT, self.to_string()),
            PoolError::Backend(b) => b.to_client(),
        }
    }
}

/// What every pool and shard reads: the settings in force and the server registry.
pub(super) struct Common {
    settings: RwLock<PoolSettings>,
    /// Bumped by each change of `settings`: a pool reads them again only then.
    version: AtomicU64,
    registry: Arc<Registry>,
    /// Passed-through client keys and cached password derivations for upstream SCRAM.
    credentials: Credentials,
}

impl Common {
    fn settings(&self) -> PoolSettings {
        *self.settings.read().unwrap_or_else(|p| p.into_inner())
    }

    /// `cached` (a pool's copy, with the version it was read at) brought up to date. A look
    /// at the version is a load; the lock every pool and session shares is taken only after
    /// a reload changed the settings.
    fn refresh(&self, cached: &mut (u64, PoolSettings)) -> PoolSettings {
        let version = self.version.load(Ordering::Acquire);
        if cached.0 != version {
            *cached = (version, self.settings());
        }
        cached.1
    }
}

/// All pools of the process, and the shards they connect to.
pub(crate) struct Pools {
    map: DashMap<PoolKey, Arc<Pool>>,
    shards: DashMap<String, Arc<ShardState>>,
    common: Arc<Common>,
}

impl Pools {
    /// Pools for `config`'s shards, with its `[pool]` settings; starts the reaper.
    pub(crate) fn new(config: &Config) -> Arc<Pools> {
        let common = Arc::new(Common {
            settings: RwLock::new(config.pool),
            version: AtomicU64::new(0),
            registry: Arc::new(Registry::default()),
            credentials: Credentials::default(),
        });
        let shards = config
            .shards
            .values()
            .map(|s| (s.name.clone(), ShardState::new(s.clone(), common.clone())))
            .collect();
        let pools = Arc::new(Pools {
            map: DashMap::new(),
            shards,
            common,
        });
        reaper::spawn(Arc::downgrade(&pools));
        pools
    }

    /// The SCRAM keys upstream logins use besides passwords (client logins add theirs).
    pub(crate) fn credentials(&self) -> &Credentials {
        &self.common.credentials
    }

    /// The pool serving `route`, created on first use. A route whose shard differs (host,
    /// port, user, password) from what the pool connects to retires the shard's connections; a
    /// changed `pool_size` or tenant cap applies to later checkouts.
    pub(crate) fn get(&self, route: &Route) -> Arc<Pool> {
        let shard = self.shard(&route.shard);
        shard.retarget(&route.shard);
        let pool = match self.map.get(&route.key) {
            Some(p) => p.clone(),
            None => self
                .map
                .entry(route.key.clone())
                .or_insert_with(|| {
                    let pool = Arc::new(Pool::new(
                        route.key.clone(),
                        route.pool_size,
                        shard.clone(),
                        self.common.clone(),
                    ));
                    shard.add_pool(&pool);
                    pool
                })
                .clone(),
        };
        pool.configure(route.pool_size, &route.tenant, route.max_server_connections);
        pool
    }

    /// New `[pool]` settings (a reload): in force for later checkouts; a larger
    /// `max_shard_connections` lets waiting pools in at once.
    pub(crate) fn reconfigure(&self, settings: PoolSettings) {
        *self
            .common
            .settings
            .write()
            .unwrap_or_else(|p| p.into_inner()) = settings;
        self.common.version.fetch_add(1, Ordering::Release);
        let shards: Vec<_> = self.shards.iter().map(|e| e.value().clone()).collect();
        for s in shards {
            s.refill();
        }
    }

    fn shard(&self, shard: &Arc<Shard>) -> Arc<ShardState> {
        if let Some(s) = self.shards.get(&shard.name) {
            return s.clone();
        }
        self.shards
            .entry(shard.name.clone())
            .or_insert_with(|| ShardState::new(shard.clone(), self.common.clone()))
            .clone()
    }

    fn all(&self) -> Vec<Arc<Pool>> {
        self.map.iter().map(|e| e.value().clone()).collect()
    }

    /// Forgets pools that hold nothing and were not used for `server_idle_timeout`, unless a
    /// session still holds them.
    fn remove_unused(&self) {
        let idle_timeout = self.common.settings().server_idle_timeout;
        let now = Instant::now();
        let mut removed = Vec::new();
        self.map.retain(|key, pool| {
            // The map's own reference is the only one: no session can check out from it.
            let unused = Arc::strong_count(pool) == 1 && pool.unused(now, idle_timeout);
            if unused {
                removed.push((key.clone(), pool.shard.clone(), Arc::downgrade(pool)));
            }
            !unused
        });
        for (key, shard, pool) in removed {
            tracing::debug!(shard = %key.shard, database = %key.database, role = %key.role, "unused pool removed");
            shard.remove_pool(&key, &pool);
        }
    }
}

/// One pool: at most `size` server connections to one (shard, database, role).
pub(crate) struct Pool {
    pub(crate) key: PoolKey,
    shard: Arc<ShardState>,
    common: Arc<Common>,
    state: Mutex<State>,
    params: OnceLock<ServerParams>,
    checkouts: AtomicU64,
    /// Checkouts that moved their connection to another lane's event loop.
    lane_moves: AtomicU64,
    /// Checkouts that queued, ever: a session keeping its connection without the lock
    /// (`keep.rs`) looks whether it moved.
    queued: AtomicU64,
}

struct State {
    size: usize,
    /// Checkouts holding a slot: with a connection, or opening one (`pending`).
    slots: usize,
    /// Slots without a connection yet (waiting for the shard's budget or connecting), by
    /// checkout id, with the time their client started waiting.
    pending: FastMap<u64, Instant>,
    idle: Vec<Pooled>,
    /// Slots held per tenant.
    held: FastMap<Arc<str>, usize>,
    /// Per-tenant caps on slots (absent: no cap), as the tenants' routes say.
    caps: FastMap<Arc<str>, usize>,
    queue: FairQueue<Arc<str>, Waiter>,
    /// Sessions keeping their (clean, idle) connection between transactions, with the
    /// tenant each keeps it for: each holds a slot; a checkout that queues reclaims one
    /// (`keep.rs`).
    kept: Vec<(Arc<Keeper>, Arc<str>)>,
    /// When a checkout last had to queue: no connection is kept for a while after
    /// ([`keep::KEEP_AFTER_QUEUE`]).
    queued_at: Option<Instant>,
    /// The tenant whose turn it is, passed over for affinity.
    passes: Passes,
    /// A [`Pool::watch`] task is running.
    watching: bool,
    last_used: Instant,
    next_id: u64,
    /// The pool settings in force, as [`Common::refresh`] keeps them.
    settings: (u64, PoolSettings),
}

struct Waiter {
    id: u64,
    since: Instant,
    /// The lane (`crate::lanes`) its session runs on.
    lane: usize,
    /// When it gives up (`query_wait_timeout` after `since`): [`Pool::watch`] drops its
    /// sender then.
    deadline: Instant,
    tx: oneshot::Sender<Slot>,
}

/// What a waiter is given.
#[allow(
    clippy::large_enum_variant,
    reason = "moved once per handoff; boxing would allocate per checkout"
)]
enum Slot {
    /// A connection from the idle list.
    Idle(Pooled),
    /// Room to open a new connection.
    New,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The tenant whose turn it is, passed over for affinity: how many times in a row, and when
/// the first of them was.
#[derive(Debug, Clone, Copy)]
struct Passes {
    count: u32,
    first: Instant,
}

/// Should the next hand-off go to `warm` (the tenant a released connection is set up for)
/// rather than to the tenant whose turn it is? See [`Pool::dispatch`].
fn affinity(
    queue: &FairQueue<Arc<str>, Waiter>,
    held: &FastMap<Arc<str>, usize>,
    caps: &FastMap<Arc<str>, usize>,
    warm: &Arc<str>,
    passes: Passes,
    now: Instant,
) -> bool {
    let Some(head) = queue.next_key() else {
        return false;
    };
    // Cheapest first: with one tenant waiting, its turn is the warm tenant's.
    !same_tenant(head, warm)
        && passes.count < AFFINITY_PASSES
        && (passes.count == 0 || now.duration_since(passes.first) < AFFINITY_PASS_TIME)
        && queue
            .front(&**head)
            .is_some_and(|w| now.duration_since(w.since) < AFFINITY_MAX_WAIT)
        && queue.front(&**warm).is_some()
        && eligible(held, caps, warm)
}

/// The same tenant name: most often the same allocation (every session of a tenant shares its
/// route's name), compared by address before by bytes.
fn same_tenant(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

fn eligible(held: &FastMap<Arc<str>, usize>, caps: &FastMap<Arc<str>, usize>, t: &str) -> bool {
    match caps.get(t) {
        Some(&cap) => held.get(t).copied().unwrap_or(0) < cap,
        None => true,
    }
}

impl State {
    fn eligible(&self, tenant: &str) -> bool {
        eligible(&self.held, &self.caps, tenant)
    }

    fn hold(&mut self, tenant: &Arc<str>) {
        self.slots += 1;
        match self.held.get_mut(&**tenant) {
            Some(n) => *n += 1,
            None => {
                self.held.insert(tenant.clone(), 1);
            }
        }
    }

    fn unhold(&mut self, tenant: &str) {
        self.slots = self.slots.saturating_sub(1);
        if let Some(n) = self.held.get_mut(tenant) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(tenant);
            }
        }
    }

    /// Room for one more connection without going over `size`.
    fn room_for_idle(&self) -> bool {
        self.slots + self.idle.len() < self.size
    }
}

impl Pool {
    fn new(key: PoolKey, size: usize, shard: Arc<ShardState>, common: Arc<Common>) -> Pool {
        let now = Instant::now();
        let settings = (common.version.load(Ordering::Acquire), common.settings());
        Pool {
            key,
            shard,
            common,
            state: Mutex::new(State {
                size,
                slots: 0,
                pending: FastMap::default(),
                idle: Vec::new(),
                held: FastMap::default(),
                caps: FastMap::default(),
                queue: FairQueue::new(),
                kept: Vec::new(),
                queued_at: None,
                passes: Passes {
                    count: 0,
                    first: now,
                },
                watching: false,
                last_used: now,
                next_id: 0,
                settings,
            }),
            params: OnceLock::new(),
            checkouts: AtomicU64::new(0),
            lane_moves: AtomicU64::new(0),
            queued: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Waits up to `query_wait_timeout` for a slot (served round-robin by tenant; a tenant at
    /// its cap waits while others are served), then hands out an idle connection (one this
    /// tenant used last, if any: it needs no reset and no new tenant setup) or opens a new one
    /// within the shard's budget.
    ///
    /// `lane`: the lane (`crate::lanes`) the session runs on; the connection is moved to its
    /// event loop if it was registered with another's.
    pub(crate) async fn checkout(
        self: &Arc<Self>,
        tenant: &Arc<str>,
        lane: usize,
    ) -> Result<Checkout, PoolError> {
        self.checkout_at(tenant, Instant::now(), lane).await
    }

    /// [`Pool::checkout`] for a client that read the clock when it began waiting (`since`):
    /// the checkout reads it again only if it has to wait or connect.
    pub(crate) async fn checkout_at(
        self: &Arc<Self>,
        tenant: &Arc<str>,
        since: Instant,
        lane: usize,
    ) -> Result<Checkout, PoolError> {
        let (id, granted, settings, deadline) = {
            let mut st = self.lock();
            let settings = self.common.refresh(&mut st.settings);
            let deadline = since + settings.query_wait_timeout;
            st.last_used = since;
            st.next_id += 1;
            let id = st.next_id;
            // Free slots and an eligible tenant mean nobody eligible is queued. While
            // connections are kept, a checkout that finds none idle queues and reclaims one
            // rather than open one more.
            let granted = if st.slots < st.size
                && st.eligible(tenant)
                && (st.kept_now() == 0 || !st.idle.is_empty())
            {
                Ok(self.grant(&mut st, tenant, id, lane, since, since, &settings))
            } else {
                let (tx, rx) = oneshot::channel();
                let waiter = Waiter {
                    id,
                    since,
                    lane,
                    deadline,
                    tx,
                };
                st.queue.push(tenant.clone(), waiter);
                st.queued_at = Some(since);
                // Counted before looking for a kept connection (see `Checkout::keep_listed`).
                self.queued.fetch_add(1, Ordering::SeqCst);
                st.reclaim_kept(tenant);
                if !st.watching {
                    st.watching = true;
                    Pool::watch(Arc::downgrade(self));
                }
                Err(rx)
            };
            (id, granted, settings, deadline)
        };
        let mut granted_at = None;
        let slot = match granted {
            Ok(slot) => slot,
            Err(rx) => {
                let mut wait = Wait {
                    pool: self,
                    tenant,
                    id,
                    rx,
                    received: false,
                };
                // No timer of its own: the pool's watcher drops the sender at the deadline.
                match (&mut wait.rx).await {
                    Ok(slot) => {
                        wait.received = true;
                        granted_at = Some(Instant::now());
                        slot
                    }
                    Err(_) => return Err(self.wait_timeout(&settings)),
                }
            }
        };
        let conn = match slot {
            Slot::Idle(mut conn) => {
                conn.entry.mark_active(tenant);
                self.move_to_lane(&mut conn, lane);
                conn
            }
            Slot::New => {
                let pending = Pending {
                    pool: self,
                    tenant,
                    id,
                    settled: false,
                };
                let conn = self.open(tenant, lane, deadline, &settings).await?;
                pending.settle();
                granted_at = Some(Instant::now());
                conn
            }
        };
        self.checkouts.fetch_add(1, Ordering::Relaxed);
        Ok(Checkout::new(
            self.clone(),
            tenant.clone(),
            conn,
            granted_at.unwrap_or(since),
        ))
    }

    /// Times out waiters: one task per pool while anyone waits, asleep until the earliest
    /// deadline, instead of a timer per waiting checkout (registering and cancelling one costs
    /// more than the rest of a hand-off). It drops the senders of waiters whose deadline has
    /// passed, which their checkouts take as `query_wait_timeout`, and ends when nobody waits.
    fn watch(pool: Weak<Pool>) {
        tokio::spawn(async move {
            loop {
                let next = {
                    let Some(pool) = pool.upgrade() else { return };
                    let mut st = pool.lock();
                    let now = Instant::now();
                    // Dropping them wakes their checkouts.
                    drop(st.queue.remove_all(|w| w.deadline <= now));
                    match st.queue.iter().map(|w| w.deadline).min() {
                        Some(next) => next,
                        None => {
                            st.watching = false;
                            return;
                        }
                    }
                };
                tokio::time::sleep_until(next.into()).await;
            }
        });
    }

    fn wait_timeout(&self, settings: &PoolSettings) -> PoolError {
        PoolError::WaitTimeout {
            shard: self.key.shard.clone(),
            database: self.key.database.clone(),
            secs: settings.query_wait_timeout.as_secs_f64(),
        }
    }

    /// Gives `tenant` a slot: an idle connection if there is one, else room for a new one.
    /// `since`: when the checkout began; `now`: the time now.
    /// `lane`: the waiter's lane, whose connections it is given first.
    #[allow(
        clippy::too_many_arguments,
        reason = "one waiter's fields and the moment, taken apart where the waiter is"
    )]
    fn grant(
        &self,
        st: &mut State,
        tenant: &Arc<str>,
        id: u64,
        lane: usize,
        since: Instant,
        now: Instant,
        settings: &PoolSettings,
    ) -> Slot {
        st.hold(tenant);
        match self.take_idle(st, tenant, lane, now, settings) {
            Some(conn) => Slot::Idle(conn),
            None => {
                st.pending.insert(id, since);
                Slot::New
            }
        }
    }

    /// Gives free slots to waiters, round-robin by tenant, skipping tenants at their cap.
    ///
    /// Affinity: the connection just released still carries its tenant's setup (`search_path`
    /// or the tenant GUC). When that tenant has waiters too, one of them gets it rather than
    /// the tenant whose turn it is, which saves a `SET` on the server; the tenant whose turn
    /// it is keeps its place, and is passed over at most [`AFFINITY_PASSES`] times in a row,
    /// within [`AFFINITY_PASS_TIME`] of the first time, and never once its oldest waiter has
    /// waited [`AFFINITY_MAX_WAIT`].
    fn dispatch(&self, st: &mut State) {
        if st.queue.is_empty() || st.slots >= st.size {
            return;
        }
        self.dispatch_at(st, Instant::now());
    }

    /// [`Pool::dispatch`] with the time now read already.
    fn dispatch_at(&self, st: &mut State, now: Instant) {
        if st.queue.is_empty() || st.slots >= st.size {
            return;
        }
        let settings = self.common.refresh(&mut st.settings);
        while st.slots < st.size {
            let next = {
                let State {
                    queue,
                    held,
                    caps,
                    idle,
                    passes,
                    ..
                } = &mut *st;
                let last = idle.last();
                let warm = last.and_then(|c| match &c.conn().state {
                    SessionState::UsedBy(t) => Some(t.clone()),
                    SessionState::Clean => None,
                });
                // A waiter on the lane of the connection just released, if one came soon
                // enough after the oldest: the connection then stays on its event loop.
                let lane = last.map(|c| c.lane);
                let choose = |front: &Waiter, w: &Waiter| match lane {
                    None => Choice::Take,
                    Some(_) if w.since > front.since + LANE_MAX_SKIP => Choice::Stop,
                    Some(l) if w.lane == l => Choice::Take,
                    Some(_) => Choice::Skip,
                };
                match warm.filter(|t| affinity(queue, held, caps, t, *passes, now)) {
                    Some(t) => {
                        if passes.count == 0 {
                            passes.first = now;
                        }
                        passes.count += 1;
                        queue.pop_key(&*t, choose).map(|w| (t, w))
                    }
                    None => {
                        passes.count = 0;
                        queue.pop(|t| eligible(held, caps, t), choose)
                    }
                }
            };
            let Some((tenant, w)) = next else { break };
            let slot = self.grant(st, &tenant, w.id, w.lane, w.since, now, &settings);
            if let Err(slot) = w.tx.send(slot) {
                // Gone already (cannot happen while `Wait` removes itself first).
                self.ungrant(st, &tenant, w.id, slot);
            }
        }
    }

    /// Takes back a slot its waiter never used.
    fn ungrant(&self, st: &mut State, tenant: &str, id: u64, slot: Slot) {
        st.unhold(tenant);
        match slot {
            Slot::Idle(conn) if st.room_for_idle() => st.idle.push(conn),
            Slot::Idle(conn) => drop(conn),
            Slot::New => {
                st.pending.remove(&id);
            }
        }
    }

    /// Opens a connection within the shard's budget (failing fast while the shard is down).
    async fn open(
        &self,
        tenant: &Arc<str>,
        lane: usize,
        deadline: Instant,
        settings: &PoolSettings,
    ) -> Result<Pooled, PoolError> {
        let grant = self
            .shard
            .acquire(&self.key, deadline)
            .await
            .map_err(|e| match e {
                AcquireError::Down(reason) => PoolError::ShardDown { reason },
                AcquireError::Timeout => self.wait_timeout(settings),
            })?;
        let budget = match grant {
            shard::Grant::Conn(mut conn) => {
                conn.entry.mark_active(tenant);
                self.move_to_lane(&mut conn, lane);
                return Ok(conn);
            }
            shard::Grant::Budget(b) => b,
        };
        let (target, generation) = self.shard.target();
        match connect(
            &target,
            &self.key.database,
            &self.key.role,
            &self.common.credentials,
            settings.server_connect_timeout,
        )
        .await
        {
            Ok((conn, params)) => {
                let _ = self.params.set(params);
                Ok(Pooled::new(
                    conn,
                    budget,
                    generation,
                    &self.common.registry,
                    &self.key,
                    tenant,
                    lane,
                ))
            }
            Err(e) => {
                drop(budget);
                self.shard.failed(&e, &self.key);
                Err(e.into())
            }
        }
    }

    /// Registers `conn` with `lane`'s event loop if it is on another's ([`Pooled::move_to_lane`]),
    /// and counts the move.
    fn move_to_lane(&self, conn: &mut Pooled, lane: usize) {
        if conn.move_to_lane(lane) {
            self.lane_moves.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes the most recently used idle connection that `tenant` used last, else the most
    /// recently used one; of those, one registered with `lane` first. Closes connections
    /// that are retired or no longer usable.
    fn take_idle(
        &self,
        st: &mut State,
        tenant: &str,
        lane: usize,
        now: Instant,
        settings: &PoolSettings,
    ) -> Option<Pooled> {
        let retirement = Retirement::new(now, settings, self.shard.generation());
        loop {
            let conn = st.idle.remove(pick_idle(&st.idle, tenant, lane)?);
            if retirement.retires(&conn) {
                continue;
            }
            let check = needs_liveness_check(&conn, now) || left_to_reset(&conn, tenant);
            if check && !still_open(&conn) {
                continue;
            }
            return Some(conn);
        }
    }

    /// Returns a clean connection: to a checkout of this pool waiting for the shard's budget
    /// or to the idle list (and from there to the next waiter); closed instead if it is
    /// retired, the pool shrank, the shard is down, or another pool of the shard waits for
    /// room. `now`: when the connection was last used (its last transaction ended).
    fn release(&self, conn: Pooled, tenant: &Arc<str>, now: Instant) {
        drop(self.release_or_keep(conn, tenant, now, None));
    }

    /// [`Pool::release`], unless `keeper` may keep the connection for its client's next
    /// transaction (`keep.rs`): then it is listed and the connection comes back, with what
    /// held when it was kept. A `keeper` still on the kept list (its session took the
    /// connection back without the lock) comes off it first, under the same lock.
    fn release_or_keep(
        &self,
        mut conn: Pooled,
        tenant: &Arc<str>,
        now: Instant,
        keeper: Option<&Arc<Keeper>>,
    ) -> Option<(Pooled, Ticket)> {
        conn.conn_mut().last_used = now;
        conn.entry.mark_idle(now);
        let mut close = None;
        {
            let mut st = self.lock();
            if let Some(keeper) = keeper {
                st.unlist(keeper);
            }
            let settings = self.common.refresh(&mut st.settings);
            let retirement = Retirement::new(now, &settings, self.shard.generation());
            if let Some(keeper) = keeper
                && st.may_keep(now)
                && settings.max_shard_connections == 0
                && self.shard.is_up()
                && !retirement.retires(&conn)
            {
                st.list(keeper, tenant);
                st.last_used = now;
                let ticket = Ticket::new(
                    st.settings.0,
                    self.queued.load(Ordering::SeqCst),
                    settings.server_lifetime,
                );
                return Some((conn, ticket));
            }
            st.unhold(tenant);
            st.last_used = now;
            if retirement.retires(&conn) || !self.shard.is_up() || !st.room_for_idle() {
                close = Some(conn);
            } else {
                match self.shard.handoff(&self.key, conn) {
                    Handoff::Keep(conn) => st.idle.push(conn),
                    Handoff::Given => {}
                    Handoff::Close(conn) => close = Some(conn),
                }
            }
            self.dispatch_at(&mut st, now);
        }
        drop(close);
        None
    }

    /// A checkout ended without a clean release: its connection is closed already.
    fn forfeit(&self, tenant: &str) {
        let mut st = self.lock();
        st.unhold(tenant);
        st.last_used = Instant::now();
        self.dispatch(&mut st);
    }

    /// Applies a route's pool size and tenant cap.
    fn configure(&self, size: usize, tenant: &Arc<str>, cap: usize) {
        let mut st = self.lock();
        let mut changed = false;
        if st.size != size {
            st.size = size;
            changed = true;
        }
        let current = st.caps.get(&**tenant).copied();
        match (current, cap) {
            (None, 0) => {}
            (Some(_), 0) => {
                st.caps.remove(&**tenant);
                changed = true;
            }
            (Some(c), n) if c == n => {}
            (_, n) => {
                st.caps.insert(tenant.clone(), n);
                changed = true;
            }
        }
        if changed {
            let mut surplus = Vec::new();
            while st.slots + st.idle.len() > st.size && !st.idle.is_empty() {
                surplus.push(st.idle.remove(0));
            }
            self.dispatch(&mut st);
            drop(st);
            drop(surplus);
        }
    }

    /// Closes every idle connection (the shard went down or moved).
    fn drop_idle(&self) {
        let idle = std::mem::take(&mut self.lock().idle);
        drop(idle);
    }

    /// When the pool was last used, if it has an idle connection to spare.
    fn idle_since(&self) -> Option<Instant> {
        let st = self.lock();
        (!st.idle.is_empty()).then_some(st.last_used)
    }

    /// The most recently used usable idle connection, for a checkout of this pool that was
    /// given room for a new one.
    fn take_any_idle(&self) -> Option<Pooled> {
        let settings = self.common.settings();
        let mut st = self.lock();
        if st.idle.is_empty() {
            return None;
        }
        self.take_idle(&mut st, "", ANY_LANE, Instant::now(), &settings)
    }

    /// The least recently used idle connection, for another pool of the shard.
    fn take_oldest_idle(&self) -> Option<Pooled> {
        let mut st = self.lock();
        (!st.idle.is_empty()).then(|| st.idle.remove(0))
    }

    /// Closes idle connections past `server_idle_timeout` or their `server_lifetime`.
    fn evict_expired(&self) {
        let settings = self.common.settings();
        let retirement = Retirement::new(Instant::now(), &settings, self.shard.generation());
        let expired: Vec<Pooled> = {
            let mut st = self.lock();
            let (keep, expired) = std::mem::take(&mut st.idle)
                .into_iter()
                .partition(|c| !retirement.retires(c));
            st.idle = keep;
            expired
        };
        drop(expired);
    }

    /// Holds nothing, nobody waits, and unused for `idle_timeout`.
    fn unused(&self, now: Instant, idle_timeout: Duration) -> bool {
        let st = self.lock();
        st.slots == 0
            && st.idle.is_empty()
            && st.queue.is_empty()
            && now.duration_since(st.last_used) >= idle_timeout
    }

    fn stats(&self, now: Instant) -> PoolStats {
        let st = self.lock();
        let oldest = st
            .queue
            .fronts()
            .map(|w| w.since)
            .chain(st.pending.values().copied())
            .min();
        let kept = st.kept_now();
        PoolStats {
            key: self.key.clone(),
            size: st.size,
            active: st.slots.saturating_sub(st.pending.len() + kept),
            idle: st.idle.len() + kept,
            waiting: st.queue.len() + st.pending.len(),
            max_wait: oldest.map_or(Duration::ZERO, |t| now.duration_since(t)),
            checkouts: self.checkouts.load(Ordering::Relaxed),
            lane_moves: self.lane_moves.load(Ordering::Relaxed),
        }
    }

    /// The server's `ParameterStatus` list, once any connection was made.
    pub(crate) fn params(&self) -> Option<&ServerParams> {
        self.params.get()
    }
}

/// What retires a connection at one moment, worked out once for a pass over connections:
/// past its (jittered) lifetime, idle too long, or opened to a shard target since replaced.
struct Retirement {
    now: Instant,
    lifetime: Duration,
    /// Idle since this time or earlier is too long (`None`: nothing is, yet).
    idle_before: Option<Instant>,
    generation: u64,
}

impl Retirement {
    fn new(now: Instant, settings: &PoolSettings, generation: u64) -> Retirement {
        Retirement {
            now,
            lifetime: settings.server_lifetime,
            idle_before: now.checked_sub(settings.server_idle_timeout),
            generation,
        }
    }

    fn retires(&self, conn: &Pooled) -> bool {
        conn.generation != self.generation
            || conn.expired(self.now, self.lifetime)
            || self.idle_before.is_some_and(|t| conn.conn().last_used <= t)
    }
}

/// A checkout queued for a slot; dropping it (timeout, client gone) leaves the queue, and
/// passes on a slot that arrived meanwhile.
struct Wait<'a> {
    pool: &'a Pool,
    tenant: &'a Arc<str>,
    id: u64,
    rx: oneshot::Receiver<Slot>,
    /// The slot arrived: nothing to undo (and no lock to take).
    received: bool,
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if self.received {
            return;
        }
        let mut st = self.pool.lock();
        if st
            .queue
            .remove(&**self.tenant, |w| w.id == self.id)
            .is_some()
        {
            return;
        }
        // Sent under the same lock: it is in the channel by now, or was received.
        if let Ok(slot) = self.rx.try_recv() {
            self.pool.ungrant(&mut st, self.tenant, self.id, slot);
            self.pool.dispatch(&mut st);
        }
    }
}

/// A slot without a connection yet; dropping it (connect failed, client gone) frees the slot.
struct Pending<'a> {
    pool: &'a Pool,
    tenant: &'a Arc<str>,
    id: u64,
    settled: bool,
}

impl Pending<'_> {
    /// The connection is there: the slot is now the checkout's.
    fn settle(mut self) {
        self.pool.lock().pending.remove(&self.id);
        self.settled = true;
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut st = self.pool.lock();
        st.pending.remove(&self.id);
        st.unhold(self.tenant);
        self.pool.dispatch(&mut st);
    }
}

/// Where in `idle` (oldest first) the connection for a checkout of `tenant` on `lane` is: the
/// last one `tenant` used on `lane`, else the last one `tenant` used (it needs no new tenant
/// setup, which costs a round trip; moving lanes costs a few system calls), else the last one
/// on `lane`, else the last one.
fn pick_idle(idle: &[Pooled], tenant: &str, lane: usize) -> Option<usize> {
    let mut own = None;
    let mut near = None;
    for (i, c) in idle.iter().enumerate().rev() {
        let used_by_tenant =
            matches!(&c.conn().state, SessionState::UsedBy(t) if same_tenant(t, tenant));
        match (used_by_tenant, c.lane == lane) {
            (true, true) => return Some(i),
            (true, false) => {
                own.get_or_insert(i);
            }
            (false, true) => {
                near.get_or_insert(i);
            }
            (false, false) => {}
        }
    }
    own.or(near).or(idle.len().checked_sub(1))
}

/// `conn` has not been used for [`LIVENESS_CHECK_AFTER`] at `now`: worth a syscall to see that
/// it is still open (one back in the pool a moment ago is not).
fn needs_liveness_check(conn: &Pooled, now: Instant) -> bool {
    now.checked_sub(LIVENESS_CHECK_AFTER)
        .is_some_and(|t| conn.conn().last_used <= t)
}

/// `conn` is reset before `tenant` uses it: its last client may have left a setting that ends
/// the server session while it is idle (`idle_session_timeout`), however briefly it sat in
/// the pool, so it is checked whatever its age; the check is small beside the reset.
fn left_to_reset(conn: &Pooled, tenant: &str) -> bool {
    let c = conn.conn();
    c.needs_reset
        || (c.dirty_session && !matches!(&c.state, SessionState::UsedBy(t) if **t == *tenant))
}

/// A peek at an idle socket: closed (EOF) or holding unexpected bytes (e.g. a FATAL from
/// `pg_terminate_backend` or `idle_session_timeout`) means the connection is not reusable.
/// Asks the kernel (`recv` with `MSG_PEEK`), not the runtime's readiness, which may not have
/// seen bytes that arrived a moment ago.
fn still_open(conn: &Pooled) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    let fd = conn.conn().stream.as_raw_fd();
    // SAFETY: `fd` is the open socket `conn` owns for the duration of the call, and the
    // buffer is one valid, writable byte; MSG_PEEK leaves the byte in the socket.
    let n = unsafe {
        libc::recv(
            fd,
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}

/// Idle connections older than this are checked for a closed socket before reuse.
const LIVENESS_CHECK_AFTER: Duration = Duration::from_millis(250);

/// Hand-offs in a row that may go to the tenant a released connection is set up for instead
/// of the tenant whose turn it is.
const AFFINITY_PASSES: u32 = 16;

/// How long after the first of such hand-offs in a row more may follow: the delay affinity
/// adds to a turn stays this small whether transactions take microseconds or seconds.
const AFFINITY_PASS_TIME: Duration = Duration::from_millis(1);

/// A tenant whose oldest waiter has waited this long is never passed over for affinity.
const AFFINITY_MAX_WAIT: Duration = Duration::from_millis(50);

/// A waiter on the lane of a released connection is served before the tenant's older
/// waiters on other lanes if it began waiting at most this much later than the oldest of
/// them: a wait longer by at most this, for a hand-off without a move between lanes (and
/// without waking another thread). Longer than the few milliseconds a lane's thread may wait
/// for a CPU on a busy machine, during which its waiters age while the other lanes' do not:
/// with a 1 ms bound, 30 % of the transactions of 100 pgbench clients on two lanes moved a
/// connection, and the proxy served 12 % fewer of them than with 20 ms, where none moved. A
/// lane short of connections gets them from the others once its waiters wait this much
/// longer.
const LANE_MAX_SKIP: Duration = Duration::from_millis(10);

/// No lane's connections first: a lane number no connection has.
const ANY_LANE: usize = usize::MAX;

/// How long the reaper sleeps between passes.
pub(crate) const REAP_INTERVAL: Duration = Duration::from_secs(1);
