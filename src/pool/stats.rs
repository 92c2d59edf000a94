//! What the admin console and the metrics read about pools, server connections and shards.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::Pools;
use crate::backend::conn::SessionState;
use crate::routing::PoolKey;

pub(crate) struct PoolStats {
    pub(crate) key: PoolKey,
    pub(crate) size: usize,
    pub(crate) active: usize,
    pub(crate) idle: usize,
    pub(crate) waiting: usize,
    /// Longest current waiter.
    pub(crate) max_wait: Duration,
    /// Checkouts since start.
    pub(crate) checkouts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerState {
    Active,
    Idle,
}

pub(crate) struct ServerStats {
    pub(crate) id: u64,
    pub(crate) key: PoolKey,
    pub(crate) state: ServerState,
    /// Current or last tenant.
    pub(crate) tenant: Option<Arc<str>>,
    pub(crate) backend_pid: i32,
    pub(crate) connected_at: SystemTime,
    pub(crate) idle_for: Duration,
}

pub(crate) struct ShardStats {
    pub(crate) name: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) up: bool,
    pub(crate) connections: usize,
    /// 0: no cap.
    pub(crate) max_connections: usize,
    pub(crate) pools: usize,
    pub(crate) last_error: Option<String>,
}

impl Pools {
    pub(crate) fn pool_stats(&self) -> Vec<PoolStats> {
        self.all()
            .iter()
            .map(|p| {
                let idle = p.lock_idle().len();
                let size = p.size;
                let free = p.permits.available_permits();
                PoolStats {
                    key: p.key.clone(),
                    size,
                    active: size.saturating_sub(free),
                    idle,
                    waiting: 0,
                    max_wait: Duration::ZERO,
                    checkouts: 0,
                }
            })
            .collect()
    }

    pub(crate) fn server_stats(&self) -> Vec<ServerStats> {
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut out = Vec::new();
        for p in self.all() {
            for (i, c) in p.lock_idle().iter().enumerate() {
                out.push(ServerStats {
                    id: i as u64,
                    key: p.key.clone(),
                    state: ServerState::Idle,
                    tenant: match &c.state {
                        SessionState::UsedBy(t) => Some(t.clone()),
                        SessionState::Clean => None,
                    },
                    backend_pid: c.cancel.pid,
                    connected_at: wall - now.duration_since(c.created),
                    idle_for: now.duration_since(c.last_used),
                });
            }
        }
        out
    }

    pub(crate) fn shard_stats(&self) -> Vec<ShardStats> {
        let mut out: Vec<ShardStats> = Vec::new();
        for p in self.all() {
            let conns = p.lock_idle().len() + p.size.saturating_sub(p.permits.available_permits());
            match out.iter_mut().find(|s| s.name == p.shard.name) {
                Some(s) => {
                    s.connections += conns;
                    s.pools += 1;
                }
                None => out.push(ShardStats {
                    name: p.shard.name.clone(),
                    host: p.shard.host.clone(),
                    port: p.shard.port,
                    up: true,
                    connections: conns,
                    max_connections: 0,
                    pools: 1,
                    last_error: None,
                }),
            }
        }
        out
    }
}
