//! One shard as the pools share it: its connection target, its budget of server connections
//! (`max_shard_connections`, all pools together), the pools waiting for that budget (served
//! round-robin by pool), and its health: a shard that refuses or times out a connection is
//! marked down, its tenants fail fast with `08001` until a background check logs in again.
//!
//! Lock order: a pool's state, then a shard's `inner`; never a pool while `inner` is held.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use tokio::sync::oneshot;

use super::fair::{self, FairQueue};
use super::pooled::Pooled;
use super::stats::ShardStats;
use super::{Common, Pool, lock};
use crate::backend::BackendError;
use crate::backend::connect::connect;
use crate::config::Shard;
use crate::routing::PoolKey;

pub(super) struct ShardState {
    pub(super) name: String,
    /// Where to connect, and its generation: a changed target retires older connections.
    target: Mutex<(Arc<Shard>, u64)>,
    generation: AtomicU64,
    up: AtomicBool,
    inner: Mutex<Inner>,
    /// `inner.waiters.len()`, readable without the lock: a release (every transaction) looks
    /// at it, and takes the lock only when pools wait.
    queued: AtomicUsize,
    /// The pools of this shard, for LRU eviction and for dropping idle connections.
    pools: Mutex<HashMap<PoolKey, Weak<Pool>>>,
    common: Arc<Common>,
}

struct Inner {
    /// Server connections open or being opened, all pools together.
    conns: usize,
    waiters: FairQueue<PoolKey, Waiter>,
    last_error: Option<String>,
    /// Where the health check logs in: the pool whose connection failed.
    probe: Option<(String, String)>,
    /// A health check task is running.
    checking: bool,
    next_id: u64,
}

struct Waiter {
    id: u64,
    tx: oneshot::Sender<Grant>,
}

/// What a pool waiting for the shard's budget receives.
#[allow(
    clippy::large_enum_variant,
    reason = "moved once per handoff; boxing would allocate per checkout"
)]
pub(super) enum Grant {
    /// Room for one new connection.
    Budget(Budget),
    /// A clean connection of the waiter's own pool, released while it waited.
    Conn(Pooled),
}

/// One server connection's share of its shard's budget; dropping it hands the share to the
/// next pool waiting, or frees it.
pub(super) struct Budget {
    shard: Option<Arc<ShardState>>,
}

impl Budget {
    pub(super) fn none() -> Budget {
        Budget { shard: None }
    }

    /// Forgets the share without giving it back (it was moved elsewhere by the caller).
    fn disarm(mut self) {
        self.shard = None;
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        if let Some(s) = self.shard.take() {
            s.release_budget();
        }
    }
}

/// Why no budget came.
pub(super) enum AcquireError {
    Down(String),
    Timeout,
}

/// What a pool does with a connection just released, given the shard's waiters.
pub(super) enum Handoff {
    /// Nobody else needs it: keep it.
    Keep(Pooled),
    /// Given to a checkout of the same pool waiting for the shard's budget.
    Given,
    /// Another pool is waiting for the shard's budget: close it so that pool can connect.
    Close(Pooled),
}

impl ShardState {
    pub(super) fn new(shard: Arc<Shard>, common: Arc<Common>) -> Arc<ShardState> {
        Arc::new(ShardState {
            name: shard.name.clone(),
            target: Mutex::new((shard, 0)),
            generation: AtomicU64::new(0),
            up: AtomicBool::new(true),
            queued: AtomicUsize::new(0),
            inner: Mutex::new(Inner {
                conns: 0,
                waiters: FairQueue::new(),
                last_error: None,
                probe: None,
                checking: false,
                next_id: 0,
            }),
            pools: Mutex::new(HashMap::new()),
            common,
        })
    }

    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Where to connect now, and the generation connections made there belong to.
    pub(super) fn target(&self) -> (Arc<Shard>, u64) {
        lock(&self.target).clone()
    }

    pub(super) fn add_pool(&self, pool: &Arc<Pool>) {
        lock(&self.pools).insert(pool.key.clone(), Arc::downgrade(pool));
    }

    /// Forgets `pool`, unless a new pool took its key meanwhile.
    pub(super) fn remove_pool(&self, key: &PoolKey, pool: &Weak<Pool>) {
        let mut pools = lock(&self.pools);
        if pools.get(key).is_some_and(|p| p.ptr_eq(pool)) {
            pools.remove(key);
        }
    }

    fn pools(&self) -> Vec<Arc<Pool>> {
        lock(&self.pools)
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// A reload changed where the shard is (host, port, user or password): connections to
    /// the old target are retired (idle ones now, checked-out ones when released), and the
    /// new target starts as up.
    pub(super) fn retarget(self: &Arc<Self>, shard: &Arc<Shard>) {
        {
            let mut t = lock(&self.target);
            if *t.0 == **shard {
                return;
            }
            t.0 = shard.clone();
            t.1 += 1;
            self.generation.store(t.1, Ordering::Release);
        }
        tracing::info!(shard = %self.name, "shard target changed: retiring its server connections");
        self.up.store(true, Ordering::Release);
        for pool in self.pools() {
            pool.drop_idle();
        }
    }

    /// Room for one new server connection of pool `key`: at once if the shard is under
    /// `max_shard_connections`, else by closing an idle connection of the least recently used
    /// other pool, else by waiting (round-robin by pool) until `deadline`. A connection of the
    /// pool itself, released meanwhile, is taken instead.
    pub(super) async fn acquire(
        self: &Arc<Self>,
        key: &PoolKey,
        deadline: Instant,
    ) -> Result<Grant, AcquireError> {
        loop {
            if !self.is_up() {
                return Err(AcquireError::Down(self.down_reason()));
            }
            if let Some(own) = self.own_idle(key) {
                return Ok(Grant::Conn(own));
            }
            let queue_empty = {
                let mut inner = lock(&self.inner);
                if self.has_room(&inner) {
                    inner.conns += 1;
                    return Ok(Grant::Budget(self.budget()));
                }
                inner.waiters.is_empty()
            };
            if queue_empty && let Some(idle) = self.evict_idle(key) {
                return Ok(Grant::Budget(idle.close_keeping_budget().await));
            }
            let (tx, rx) = oneshot::channel();
            let id = {
                let mut inner = lock(&self.inner);
                if !self.is_up() {
                    continue;
                }
                if self.has_room(&inner) {
                    inner.conns += 1;
                    return Ok(Grant::Budget(self.budget()));
                }
                inner.next_id += 1;
                let id = inner.next_id;
                inner.waiters.push(key.clone(), Waiter { id, tx });
                self.count_waiters(&inner);
                id
            };
            let mut wait = Wait {
                shard: self,
                key,
                id,
                rx,
            };
            // A connection put back just before this pool queued: its own is taken (leaving
            // the queue), another pool's is closed so its budget goes to the first in line.
            if let Some(own) = self.own_idle(key) {
                return Ok(Grant::Conn(own));
            }
            drop(self.evict_idle(key));
            match tokio::time::timeout_at(deadline.into(), &mut wait.rx).await {
                Ok(Ok(grant)) => return Ok(grant),
                // The shard went down and dropped its waiters.
                Ok(Err(_)) => continue,
                Err(_) => return Err(AcquireError::Timeout),
            }
        }
    }

    fn count_waiters(&self, inner: &Inner) {
        self.queued.store(inner.waiters.len(), Ordering::SeqCst);
    }

    fn has_room(&self, inner: &Inner) -> bool {
        let cap = self.common.settings().max_shard_connections;
        cap == 0 || (inner.conns < cap && inner.waiters.is_empty())
    }

    fn budget(self: &Arc<Self>) -> Budget {
        Budget {
            shard: Some(self.clone()),
        }
    }

    /// A connection's share came back: it goes to the next pool waiting, or is freed.
    fn release_budget(self: &Arc<Self>) {
        let mut inner = lock(&self.inner);
        while let Some((_, w)) = inner.waiters.pop(|_| true, fair::oldest) {
            self.count_waiters(&inner);
            match w.tx.send(Grant::Budget(self.budget())) {
                Ok(()) => return,
                Err(grant) => disarm(grant),
            }
        }
        inner.conns = inner.conns.saturating_sub(1);
    }

    /// `max_shard_connections` may have grown: lets waiting pools in.
    pub(super) fn refill(self: &Arc<Self>) {
        let mut inner = lock(&self.inner);
        let cap = self.common.settings().max_shard_connections;
        while cap == 0 || inner.conns < cap {
            let Some((_, w)) = inner.waiters.pop(|_| true, fair::oldest) else {
                break;
            };
            self.count_waiters(&inner);
            inner.conns += 1;
            if let Err(grant) = w.tx.send(Grant::Budget(self.budget())) {
                disarm(grant);
                inner.conns -= 1;
            }
        }
    }

    /// Decides what happens to a clean connection pool `key` releases: if pools wait for the
    /// shard's budget, the next one in turn gets it (directly if it is `key`'s own checkout,
    /// by closing it otherwise).
    pub(super) fn handoff(&self, key: &PoolKey, mut conn: Pooled) -> Handoff {
        // A pool that queues after this reads 0 looks for idle connections after queueing,
        // and finds this one: the caller holds its pool's lock until it is in the idle list.
        if self.queued.load(Ordering::SeqCst) == 0 {
            return Handoff::Keep(conn);
        }
        let mut inner = lock(&self.inner);
        loop {
            match inner.waiters.next_key() {
                None => return Handoff::Keep(conn),
                Some(next) if next != key => return Handoff::Close(conn),
                Some(_) => {}
            }
            let Some(w) = inner.waiters.pop_key(key, fair::oldest) else {
                return Handoff::Keep(conn);
            };
            self.count_waiters(&inner);
            match w.tx.send(Grant::Conn(conn)) {
                Ok(()) => return Handoff::Given,
                Err(Grant::Conn(back)) => conn = back,
                Err(Grant::Budget(_)) => unreachable!("only a connection was sent"),
            }
        }
    }

    /// An idle connection of pool `key` itself.
    fn own_idle(&self, key: &PoolKey) -> Option<Pooled> {
        let pool = lock(&self.pools).get(key).and_then(Weak::upgrade)?;
        pool.take_any_idle()
    }

    /// Takes an idle connection from the least recently used pool of this shard other than
    /// `except`, if any has one.
    fn evict_idle(&self, except: &PoolKey) -> Option<Pooled> {
        let mut candidates: Vec<(Instant, Arc<Pool>)> = self
            .pools()
            .into_iter()
            .filter(|p| p.key != *except)
            .filter_map(|p| Some((p.idle_since()?, p)))
            .collect();
        candidates.sort_by_key(|(t, _)| *t);
        candidates.into_iter().find_map(|(_, p)| {
            let conn = p.take_oldest_idle()?;
            tracing::debug!(shard = %self.name, database = %p.key.database, "closing an idle server connection of the least recently used pool (max_shard_connections)");
            Some(conn)
        })
    }

    /// A connection to the shard failed with `err`: if that means the shard is down, mark it
    /// so (its tenants then fail fast), drop its idle connections, and start checking it.
    pub(super) fn failed(self: &Arc<Self>, err: &BackendError, key: &PoolKey) {
        if !marks_down(err) {
            return;
        }
        let (waiters, spawn) = {
            let mut inner = lock(&self.inner);
            inner.last_error = Some(err.to_string());
            inner.probe = Some((key.database.clone(), key.role.clone()));
            if !self.up.swap(false, Ordering::AcqRel) {
                return;
            }
            let spawn = !inner.checking;
            inner.checking = true;
            let drained = inner.waiters.drain();
            self.count_waiters(&inner);
            (drained, spawn)
        };
        tracing::warn!(shard = %self.name, error = %err, "shard marked down");
        drop(waiters);
        for pool in self.pools() {
            pool.drop_idle();
        }
        if spawn {
            tokio::spawn(health_check(Arc::downgrade(self)));
        }
    }

    fn down_reason(&self) -> String {
        let interval = self.common.settings().health_check_interval;
        let inner = lock(&self.inner);
        format!(
            "shard \"{}\" is down ({}); pgtenant checks it again every {:.1}s",
            self.name,
            inner.last_error.as_deref().unwrap_or("unreachable"),
            interval.as_secs_f64()
        )
    }

    pub(super) fn stats(&self, max_connections: usize) -> ShardStats {
        let (shard, _) = self.target();
        let pools = lock(&self.pools).len();
        let inner = lock(&self.inner);
        ShardStats {
            name: self.name.clone(),
            host: shard.host.clone(),
            port: shard.port,
            up: self.is_up(),
            connections: inner.conns,
            max_connections,
            pools,
            last_error: inner.last_error.clone(),
        }
    }
}

/// A failed send gives the grant back; its budget share stays with whoever sent it.
fn disarm(grant: Grant) {
    match grant {
        Grant::Budget(b) => b.disarm(),
        // Only `handoff` sends connections, and takes them back itself.
        Grant::Conn(c) => drop(c),
    }
}

/// Does this failure mean the shard is down, rather than one tenant's login being refused?
fn marks_down(err: &BackendError) -> bool {
    match err {
        BackendError::Unreachable { .. } | BackendError::Lost { .. } => true,
        // 57P01-57P03: shutting down, crashed, starting up.
        BackendError::Rejected { code, .. } => code.starts_with("57P"),
        BackendError::AuthMethod { .. }
        | BackendError::NoPassword { .. }
        | BackendError::OtherVerifier { .. } => false,
    }
}

/// A checkout waiting for the shard's budget; dropping it (timeout, client gone) leaves the
/// queue, and passes on a grant that arrived meanwhile.
struct Wait<'a> {
    shard: &'a Arc<ShardState>,
    key: &'a PoolKey,
    id: u64,
    rx: oneshot::Receiver<Grant>,
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        let late = {
            let mut inner = lock(&self.shard.inner);
            match inner.waiters.remove(self.key, |w| w.id == self.id) {
                Some(_) => {
                    self.shard.count_waiters(&inner);
                    None
                }
                // Sent under the same lock: it is in the channel by now, if at all.
                None => self.rx.try_recv().ok(),
            }
        };
        // Dropped outside the lock: a budget goes to the next pool, a connection is closed.
        drop(late);
    }
}

/// Logs in to a shard marked down every `health_check_interval` until it answers, then marks
/// it up. Any answer from PostgreSQL counts, even a refused login (that is a tenant's problem,
/// not the shard's).
async fn health_check(shard: Weak<ShardState>) {
    loop {
        let Some(interval) = shard
            .upgrade()
            .map(|s| s.common.settings().health_check_interval)
        else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some(s) = shard.upgrade() else { return };
        let probe = {
            let mut inner = lock(&s.inner);
            if s.is_up() {
                inner.checking = false;
                return;
            }
            inner.probe.clone()
        };
        let (target, _) = s.target();
        let (database, role) = probe.unwrap_or_else(|| ("postgres".into(), target.user.clone()));
        let timeout = s.common.settings().server_connect_timeout;
        let result = connect(&target, &database, &role, &s.common.credentials, timeout).await;
        let mut inner = lock(&s.inner);
        match result {
            Err(e) if marks_down(&e) => {
                tracing::debug!(shard = %s.name, error = %e, "shard still down");
                inner.last_error = Some(e.to_string());
            }
            _ => {
                inner.checking = false;
                s.up.store(true, Ordering::Release);
                tracing::info!(shard = %s.name, "shard is up again");
                return;
            }
        }
    }
}
