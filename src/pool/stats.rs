//! What the pools look like right now, for the admin console (`SHOW POOLS`, `SHOW SERVERS`,
//! `SHOW SHARDS`) and Prometheus. Cheap enough to call once a second: every lock is taken
//! briefly and none is held across an `.await`.
//!
//! Owns the registry of server connections (idle ones sit in pools, active ones inside
//! [`super::Checkout`]s, so the pools alone cannot list them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;

use super::Pools;
use crate::routing::PoolKey;
use crate::tenant::name::same_tenant;

/// One pool (`SHOW POOLS`).
#[derive(Debug, Clone)]
pub(crate) struct PoolStats {
    pub(crate) key: PoolKey,
    /// Server connections the pool may hold.
    pub(crate) size: usize,
    /// Server connections checked out.
    pub(crate) active: usize,
    pub(crate) idle: usize,
    /// Clients waiting for a server connection (queued, waiting for the shard's budget, or
    /// while their connection is being opened).
    pub(crate) waiting: usize,
    /// How long the longest current waiter has waited.
    pub(crate) max_wait: Duration,
    /// Checkouts since the pool was created.
    pub(crate) checkouts: u64,
    /// Checkouts that moved their connection to their session's lane (`crate::lanes`).
    pub(crate) lane_moves: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerState {
    Active,
    Idle,
}

/// One server connection (`SHOW SERVERS`).
#[derive(Debug, Clone)]
pub(crate) struct ServerStats {
    pub(crate) id: u64,
    pub(crate) key: PoolKey,
    pub(crate) state: ServerState,
    /// The tenant using it now, or the last one that did.
    pub(crate) tenant: Option<Arc<str>>,
    pub(crate) backend_pid: i32,
    pub(crate) connected_at: SystemTime,
    /// Zero while active.
    pub(crate) idle_for: Duration,
}

/// One configured shard (`SHOW SHARDS`).
#[derive(Debug, Clone)]
pub(crate) struct ShardStats {
    pub(crate) name: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) up: bool,
    /// Server connections to it, all pools together (including ones being opened).
    pub(crate) connections: usize,
    /// `max_shard_connections`; 0 means no cap.
    pub(crate) max_connections: usize,
    pub(crate) pools: usize,
    pub(crate) last_error: Option<String>,
}

/// A server connection as the registry knows it: what never changes, and what checkouts and
/// releases change under a lock of its own, so marking one never touches the registry's map.
pub(super) struct ServerEntry {
    key: PoolKey,
    backend_pid: i32,
    connected_at: SystemTime,
    live: Mutex<Live>,
}

struct Live {
    state: ServerState,
    tenant: Option<Arc<str>>,
    /// When it last went idle.
    since: Instant,
}

impl ServerEntry {
    fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checked out by `tenant`.
    pub(super) fn mark_active(&self, tenant: &Arc<str>) {
        let mut live = self.live();
        live.state = ServerState::Active;
        let same = live.tenant.as_ref().is_some_and(|t| same_tenant(t, tenant));
        if !same {
            live.tenant = Some(tenant.clone());
        }
    }

    /// Back in the pool at `now`.
    pub(super) fn mark_idle(&self, now: Instant) {
        let mut live = self.live();
        live.state = ServerState::Idle;
        live.since = now;
    }
}

/// Every open server connection by id: an entry is made on connect and removed when the
/// connection is closed (`Pooled`'s drop); the connection itself holds its entry and marks it
/// on checkout and release.
#[derive(Default)]
pub(super) struct Registry {
    servers: DashMap<u64, Arc<ServerEntry>, foldhash::fast::RandomState>,
    ids: AtomicU64,
}

impl Registry {
    /// A new connection of pool `key`, active for `tenant`; returns its id and entry.
    pub(super) fn register(
        &self,
        key: &PoolKey,
        tenant: &Arc<str>,
        backend_pid: i32,
    ) -> (u64, Arc<ServerEntry>) {
        let id = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Arc::new(ServerEntry {
            key: key.clone(),
            backend_pid,
            connected_at: SystemTime::now(),
            live: Mutex::new(Live {
                state: ServerState::Active,
                tenant: Some(tenant.clone()),
                since: Instant::now(),
            }),
        });
        self.servers.insert(id, entry.clone());
        (id, entry)
    }

    pub(super) fn remove(&self, id: u64) {
        self.servers.remove(&id);
    }
}

impl Pools {
    /// Every pool, sorted by key.
    pub(crate) fn pool_stats(&self) -> Vec<PoolStats> {
        let pools: Vec<_> = self.map.iter().map(|e| e.value().clone()).collect();
        let now = Instant::now();
        let mut out: Vec<PoolStats> = pools.iter().map(|p| p.stats(now)).collect();
        out.sort_by(|a, b| key_order(&a.key, &b.key));
        out
    }

    /// Every open server connection, sorted by pool and id.
    pub(crate) fn server_stats(&self) -> Vec<ServerStats> {
        let now = Instant::now();
        let mut out: Vec<ServerStats> = self
            .common
            .registry
            .servers
            .iter()
            .map(|e| {
                let v = e.value();
                let live = v.live();
                ServerStats {
                    id: *e.key(),
                    key: v.key.clone(),
                    state: live.state,
                    tenant: live.tenant.clone(),
                    backend_pid: v.backend_pid,
                    connected_at: v.connected_at,
                    idle_for: match live.state {
                        ServerState::Active => Duration::ZERO,
                        ServerState::Idle => now.saturating_duration_since(live.since),
                    },
                }
            })
            .collect();
        out.sort_by(|a, b| key_order(&a.key, &b.key).then(a.id.cmp(&b.id)));
        out
    }

    /// Every shard, configured or routed to since, sorted by name.
    pub(crate) fn shard_stats(&self) -> Vec<ShardStats> {
        let shards: Vec<_> = self.shards.iter().map(|e| e.value().clone()).collect();
        let cap = self.common.settings().max_shard_connections;
        let mut out: Vec<ShardStats> = shards.iter().map(|s| s.stats(cap)).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

fn key_order(a: &PoolKey, b: &PoolKey) -> std::cmp::Ordering {
    (&a.shard, &a.database, &a.role).cmp(&(&b.shard, &b.database, &b.role))
}
