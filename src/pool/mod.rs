//! Pools of server connections keyed by (shard, database, role): checkout with
//! `query_wait_timeout`, release, idle eviction. Waiters are served first come, first served.

mod checkout;
mod reaper;
pub(crate) mod stats;

pub(crate) use checkout::Checkout;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use thiserror::Error;
use tokio::sync::Semaphore;

use crate::backend::BackendError;
use crate::backend::conn::{ServerConn, SessionState};
use crate::backend::connect::{ServerParams, connect};
use crate::config::{PoolSettings, Shard};
use crate::error::{ClientError, ClientFacing, QUERY_CANCELED};
use crate::routing::{PoolKey, Route};

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
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl ClientFacing for PoolError {
    fn to_client(&self) -> ClientError {
        match self {
            PoolError::WaitTimeout { .. } => ClientError::new(QUERY_CANCELED, self.to_string()),
            PoolError::Backend(b) => b.to_client(),
        }
    }
}

/// All pools of the process.
pub(crate) struct Pools {
    map: DashMap<PoolKey, Arc<Pool>>,
    settings: PoolSettings,
}

impl Pools {
    pub(crate) fn new(settings: PoolSettings) -> Arc<Pools> {
        let pools = Arc::new(Pools {
            map: DashMap::new(),
            settings,
        });
        reaper::spawn(Arc::downgrade(&pools));
        pools
    }

    /// The pool serving `route`, created on first use.
    pub(crate) fn get(&self, route: &Route) -> Arc<Pool> {
        if let Some(p) = self.map.get(&route.key) {
            return p.clone();
        }
        self.map
            .entry(route.key.clone())
            .or_insert_with(|| {
                Arc::new(Pool {
                    key: route.key.clone(),
                    shard: route.shard.clone(),
                    permits: Arc::new(Semaphore::new(route.pool_size)),
                    size: route.pool_size,
                    idle: Mutex::new(Vec::new()),
                    params: OnceLock::new(),
                    settings: self.settings.clone(),
                })
            })
            .clone()
    }

    /// New pool settings (replaced by the pool branch's implementation at merge).
    pub(crate) fn reconfigure(&self, _settings: PoolSettings) {}

    fn all(&self) -> Vec<Arc<Pool>> {
        self.map.iter().map(|e| e.value().clone()).collect()
    }
}

/// One pool: at most `size` server connections to one (shard, database, role).
pub(crate) struct Pool {
    pub(crate) key: PoolKey,
    shard: Arc<Shard>,
    permits: Arc<Semaphore>,
    size: usize,
    idle: Mutex<Vec<ServerConn>>,
    params: OnceLock<ServerParams>,
    settings: PoolSettings,
}

impl Pool {
    /// Waits up to `query_wait_timeout` for a slot, then hands out an idle connection (one
    /// this tenant used last, if any: it needs no reset and no new tenant setup) or opens a new
    /// one.
    pub(crate) async fn checkout(self: &Arc<Self>, tenant: &str) -> Result<Checkout, PoolError> {
        let wait = self.settings.query_wait_timeout;
        let permit = match tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => {
                return Err(PoolError::WaitTimeout {
                    shard: self.key.shard.clone(),
                    database: self.key.database.clone(),
                    secs: wait.as_secs_f64(),
                });
            }
        };
        if let Some(conn) = self.take_idle(tenant) {
            return Ok(Checkout::new(self.clone(), conn, permit));
        }
        let (conn, params) = connect(
            &self.shard,
            &self.key.database,
            &self.key.role,
            self.settings.server_connect_timeout,
        )
        .await?;
        let _ = self.params.set(params);
        Ok(Checkout::new(self.clone(), conn, permit))
    }

    /// Takes the most recently used idle connection that `tenant` used last, else the most
    /// recently used one; skips connections that are no longer usable.
    fn take_idle(&self, tenant: &str) -> Option<ServerConn> {
        loop {
            let conn = {
                let mut idle = self.lock_idle();
                let own = idle
                    .iter()
                    .rposition(|c| matches!(&c.state, SessionState::UsedBy(t) if **t == *tenant));
                match own {
                    Some(i) => idle.remove(i),
                    None => idle.pop()?,
                }
            };
            let now = Instant::now();
            if self.expired(&conn, now) {
                continue;
            }
            // A connection back in the pool a moment ago is not worth a syscall to check.
            if now.duration_since(conn.last_used) >= LIVENESS_CHECK_AFTER && !still_open(&conn) {
                continue;
            }
            return Some(conn);
        }
    }

    fn expired(&self, conn: &ServerConn, now: Instant) -> bool {
        now.duration_since(conn.created) >= self.settings.server_lifetime
            || now.duration_since(conn.last_used) >= self.settings.server_idle_timeout
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<ServerConn>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put_idle(&self, mut conn: ServerConn) {
        conn.last_used = Instant::now();
        self.lock_idle().push(conn);
    }

    /// Closes idle connections past `server_idle_timeout` or `server_lifetime`.
    fn evict_expired(&self) {
        let now = Instant::now();
        self.lock_idle().retain(|c| !self.expired(c, now));
    }

    /// The server's `ParameterStatus` list, once any connection was made.
    pub(crate) fn params(&self) -> Option<&ServerParams> {
        self.params.get()
    }
}

/// A peek at an idle socket: closed (EOF) or holding unexpected bytes (e.g. a FATAL from
/// `pg_terminate_backend`) means the connection is not reusable.
fn still_open(conn: &ServerConn) -> bool {
    let mut byte = [0u8; 1];
    matches!(conn.stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Idle connections older than this are checked for a closed socket before reuse.
const LIVENESS_CHECK_AFTER: Duration = Duration::from_millis(250);

/// How long the reaper sleeps between passes.
pub(crate) const REAP_INTERVAL: Duration = Duration::from_secs(1);
