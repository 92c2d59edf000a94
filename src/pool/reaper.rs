//! Background eviction: expired idle server connections, and pools that hold nothing and
//! were not used for `server_idle_timeout` (thousands of database-per-tenant pools must not
//! accumulate).

use std::sync::Weak;

use super::{Pools, REAP_INTERVAL};

pub(super) fn spawn(pools: Weak<Pools>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REAP_INTERVAL);
        loop {
            tick.tick().await;
            let Some(pools) = pools.upgrade() else { return };
            for pool in pools.all() {
                pool.evict_expired();
            }
            pools.remove_unused();
        }
    });
}
