//! A server connection as a pool holds it: the connection, its share of the shard's
//! connection budget, its place in the stats registry and its jittered lifetime. Dropping it
//! closes the connection, gives the budget back and removes the registry entry, whichever path
//! drops it.

use std::sync::Arc;
use std::time::Duration;

use super::shard::Budget;
use super::stats::Registry;
use crate::backend::conn::ServerConn;
use crate::routing::PoolKey;

pub(super) struct Pooled {
    // Field order is drop order: the socket is closed before the budget goes to a waiter.
    pub(super) conn: ServerConn,
    budget: Budget,
    /// Its id in the registry.
    pub(super) id: u64,
    /// The shard target's generation when it was opened; another one means it is retired.
    pub(super) generation: u64,
    /// Drawn once in [0.9, 1.1]: the connection lives this many `server_lifetime`s.
    lifetime_factor: f64,
    registry: Arc<Registry>,
}

impl Pooled {
    /// Registers a freshly opened connection of pool `key`, active for `tenant`.
    pub(super) fn new(
        conn: ServerConn,
        budget: Budget,
        generation: u64,
        registry: &Arc<Registry>,
        key: &PoolKey,
        tenant: &Arc<str>,
    ) -> Pooled {
        let id = registry.register(key, tenant, conn.cancel.pid);
        Pooled {
            conn,
            budget,
            id,
            generation,
            lifetime_factor: lifetime_factor(),
            registry: registry.clone(),
        }
    }

    /// This connection's `server_lifetime`, jittered.
    pub(super) fn lifetime(&self, server_lifetime: Duration) -> Duration {
        server_lifetime.mul_f64(self.lifetime_factor)
    }

    /// Closes the connection, keeping its share of the shard's budget for a new one.
    pub(super) fn into_budget(mut self) -> Budget {
        std::mem::replace(&mut self.budget, Budget::none())
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

/// A random factor in [0.9, 1.1], so that connections opened together (a burst at start-up)
/// do not all expire, and get reopened, together.
pub(super) fn lifetime_factor() -> f64 {
    rand::random_range(0.9..=1.1)
}
