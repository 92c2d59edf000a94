//! A server connection as a pool holds it: the connection, its share of the shard's
//! connection budget, its place in the stats registry and its jittered lifetime.
//!
//! Dropping it removes the registry entry and closes the connection politely (Terminate, then
//! wait for the server to hang up) before its budget share goes to whoever waits for one: the
//! server has let go of the backend by then, so a shard never sees more connections than
//! `max_shard_connections`, not even for the moment a backend takes to exit.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::shard::Budget;
use super::stats::{Registry, ServerEntry};
use crate::backend::conn::ServerConn;
use crate::routing::PoolKey;

pub(super) struct Pooled {
    /// `None` only while being dropped. Boxed: a `Pooled` moves through the idle list, the
    /// hand-off channel and the checkout on every transaction, and a pointer moves cheaply.
    conn: Option<Box<ServerConn>>,
    budget: Budget,
    /// Its id in the registry.
    pub(super) id: u64,
    /// Its registry entry, marked on checkout and release.
    pub(super) entry: Arc<ServerEntry>,
    /// The shard target's generation when it was opened; another one means it is retired.
    pub(super) generation: u64,
    /// Drawn once in [0.9, 1.1]: the connection lives this many `server_lifetime`s.
    lifetime_factor: f64,
    /// The `server_lifetime` its expiry was last worked out for, and that expiry (`None`:
    /// never): the setting changes only on reload, the check runs on every checkout.
    expiry: Cell<Option<(Duration, Option<Instant>)>>,
    registry: Arc<Registry>,
    /// The lane (`crate::lanes`) whose event loop its socket is registered with.
    pub(super) lane: usize,
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
        lane: usize,
    ) -> Pooled {
        let (id, entry) = registry.register(key, tenant, conn.cancel.pid);
        Pooled {
            conn: Some(Box::new(conn)),
            budget,
            id,
            entry,
            generation,
            lifetime_factor: lifetime_factor(),
            expiry: Cell::new(None),
            registry: registry.clone(),
            lane,
        }
    }

    /// Registers the socket with the event loop of the runtime this runs on, lane `lane`,
    /// instead of the one it was registered with, if that was another lane's: the session of
    /// `lane` that uses it is then woken by its own event loop, not by another thread's.
    /// Done with a duplicate of the descriptor, so that if any step fails the connection
    /// stays as it was (registered elsewhere, which works, at the cost of a wake-up across
    /// threads per readiness event). True if it moved.
    pub(super) fn move_to_lane(&mut self, lane: usize) -> bool {
        if self.lane == lane {
            return false;
        }
        let stream = &mut self.conn_mut().stream;
        let moved = std::os::fd::AsFd::as_fd(stream)
            .try_clone_to_owned()
            .and_then(|fd| TcpStream::from_std(std::net::TcpStream::from(fd)));
        match moved {
            Ok(new) => {
                // Dropping the old one takes its registration off the other lane's loop
                // and closes its descriptor; the socket stays open through the duplicate.
                drop(std::mem::replace(stream, new));
                self.lane = lane;
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "server connection kept on its lane");
                false
            }
        }
    }

    pub(super) fn conn(&self) -> &ServerConn {
        match &self.conn {
            Some(c) => c,
            None => unreachable!("taken only by drop"),
        }
    }

    pub(super) fn conn_mut(&mut self) -> &mut ServerConn {
        match &mut self.conn {
            Some(c) => c,
            None => unreachable!("taken only by drop"),
        }
    }

    /// This connection's `server_lifetime`, jittered.
    pub(super) fn lifetime(&self, server_lifetime: Duration) -> Duration {
        server_lifetime.mul_f64(self.lifetime_factor)
    }

    /// True once it has lived its jittered `server_lifetime`.
    pub(super) fn expired(&self, now: Instant, server_lifetime: Duration) -> bool {
        let at = match self.expiry.get() {
            Some((lifetime, at)) if lifetime == server_lifetime => at,
            _ => {
                let at = self
                    .conn()
                    .created
                    .checked_add(self.lifetime(server_lifetime));
                self.expiry.set(Some((server_lifetime, at)));
                at
            }
        };
        at.is_some_and(|at| now >= at)
    }

    /// Closes the connection and waits until the server has, keeping the budget share for a
    /// new connection.
    pub(super) async fn close_keeping_budget(mut self) -> Budget {
        self.registry.remove(self.id);
        let budget = std::mem::replace(&mut self.budget, Budget::none());
        if let Some(conn) = self.conn.take() {
            terminate(conn.stream).await;
        }
        budget
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.registry.remove(self.id);
        let budget = std::mem::replace(&mut self.budget, Budget::none());
        let Some(conn) = self.conn.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    terminate(conn.stream).await;
                    drop(budget);
                });
            }
            // No runtime (the process is ending): close at once.
            Err(_) => {
                drop(conn);
                drop(budget);
            }
        }
    }
}

/// Sends Terminate and waits (at most [`CLOSE_WAIT`]) for the server to close the socket,
/// which a backend does only after leaving `pg_stat_activity` and freeing its slot.
async fn terminate(mut stream: TcpStream) {
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        stream.write_all(&TERMINATE).await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// `Terminate`: tag `X`, length 4.
const TERMINATE: [u8; 5] = [b'X', 0, 0, 0, 4];

/// How long a closing connection may take before its budget share is given back anyway (a
/// backend busy with a query reads the Terminate only when the query ends).
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A random factor in [0.9, 1.1], so that connections opened together (a burst at start-up)
/// do not all expire, and get reopened, together.
pub(super) fn lifetime_factor() -> f64 {
    rand::random_range(0.9..=1.1)
}
