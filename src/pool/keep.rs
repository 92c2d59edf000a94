//! Transaction mode between transactions: a client's server connection stays with it while no
//! other checkout of the pool needs one ("kept"), so that the client's next transaction
//! starts without a checkout and a release.
//!
//! A kept connection is clean (its transaction ended with ReadyForQuery `I`) and counts as
//! idle in the pool's statistics. The first checkout that would otherwise wait or open a new
//! connection while connections are kept queues and reclaims all of them at once: each
//! keeper's session is woken ([`Kept::reclaimed`]) and releases its connection, which goes
//! to the waiter as any released connection does. No connection is kept while anyone is
//! queued, while the shard is down, on a shard with `max_shard_connections` (other pools may
//! wait for its budget), or past the connection's retirement.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Instant;

use atomic_waker::AtomicWaker;

use super::checkout::Checkout;
use super::pooled::Pooled;
use super::{LIVENESS_CHECK_AFTER, Pool, Retirement, State, still_open};

/// One session's side of keeping: set when the pool wants the connection back.
#[derive(Default)]
pub(crate) struct Keeper {
    reclaim: AtomicBool,
    waker: AtomicWaker,
    /// Its place in the pool's kept list while listed (read and written under the pool's
    /// lock): taking it off the list is one swap, not a search.
    index: AtomicUsize,
}

impl Keeper {
    pub(crate) fn new() -> Arc<Keeper> {
        Arc::new(Keeper::default())
    }

    /// Resolves once the pool wants the connection this session keeps back (the session
    /// then drops its [`Kept`]).
    pub(crate) fn reclaimed(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.reclaim.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            if self.reclaim.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// A connection kept by its client between transactions. Dropping it releases the
/// connection to the pool.
pub(crate) struct Kept {
    /// `None` only once resumed.
    checkout: Option<Checkout>,
    keeper: Arc<Keeper>,
}

impl Checkout {
    /// Keeps this clean connection for the client's next transaction (`keeper`: the
    /// session's); or, if the pool cannot spare it, releases it and returns `None`.
    /// `last_used`: when its transaction ended.
    pub(crate) fn keep(mut self, keeper: &Arc<Keeper>, last_used: Instant) -> Option<Kept> {
        let kept = match self.conn.as_mut() {
            Some(conn) => self.pool.keep(conn, keeper, last_used),
            None => false,
        };
        if kept {
            Some(Kept {
                checkout: Some(self),
                keeper: keeper.clone(),
            })
        } else {
            self.release_at(last_used);
            None
        }
    }
}

impl Kept {
    /// The connection back for the client's next transaction, starting `now`; `None` if the
    /// pool reclaimed it meanwhile or it is no longer usable (then it is released, or closed).
    pub(crate) fn resume(mut self, now: Instant) -> Option<Checkout> {
        let mut checkout = self.checkout.take()?;
        let usable = match checkout.conn.as_ref() {
            Some(conn) => checkout
                .pool
                .resume(conn, &checkout.tenant, &self.keeper, now),
            None => false,
        };
        if usable {
            checkout.granted_at = now;
            Some(checkout)
        } else {
            checkout.release_at(now);
            None
        }
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        if let Some(checkout) = self.checkout.take() {
            checkout.pool.unkeep(&self.keeper);
            checkout.release();
        }
    }
}

impl Pool {
    /// Whether `conn` (a clean connection of a checkout) may stay with its client; if so,
    /// `keeper` is listed for reclaiming.
    fn keep(&self, conn: &mut Pooled, keeper: &Arc<Keeper>, now: Instant) -> bool {
        let settings = self.common.settings();
        if settings.max_shard_connections != 0 || !self.shard.is_up() {
            return false;
        }
        if Retirement::new(now, &settings, self.shard.generation()).retires(conn) {
            return false;
        }
        {
            let mut st = self.lock();
            if !st.queue.is_empty() || st.slots > st.size {
                return false;
            }
            keeper.reclaim.store(false, Ordering::Release);
            keeper.index.store(st.kept.len(), Ordering::Relaxed);
            st.kept.push(keeper.clone());
            st.last_used = now;
        }
        conn.conn_mut().last_used = now;
        conn.entry.mark_idle(now);
        true
    }

    /// Takes `keeper` off the kept list for its client's next transaction: false if the pool
    /// reclaimed it already, the shard is down or its target changed, or the connection was
    /// kept long enough to be looked at again and is retired (lifetime, `server_idle_timeout`)
    /// or closed. (Its retirement was checked when it was kept.)
    fn resume(&self, conn: &Pooled, tenant: &Arc<str>, keeper: &Arc<Keeper>, now: Instant) -> bool {
        {
            let mut st = self.lock();
            if keeper.reclaim.load(Ordering::Acquire) {
                return false;
            }
            st.unlist(keeper);
        }
        let generation = self.shard.generation();
        let mut usable = conn.generation == generation && self.shard.is_up();
        if usable
            && now
                .checked_sub(LIVENESS_CHECK_AFTER)
                .is_some_and(|t| conn.conn().last_used <= t)
        {
            let settings = self.common.settings();
            usable = !Retirement::new(now, &settings, generation).retires(conn) && still_open(conn);
        }
        if usable {
            conn.entry.mark_active(tenant);
            self.checkouts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        usable
    }

    /// A kept connection's client left or gave it up: off the kept list.
    fn unkeep(&self, keeper: &Arc<Keeper>) {
        self.lock().unlist(keeper);
    }
}

impl State {
    /// Wakes every keeper: their connections come back to the pool (a checkout queued).
    pub(super) fn reclaim_kept(&mut self) {
        for keeper in self.kept.drain(..) {
            keeper.reclaim.store(true, Ordering::Release);
            keeper.waker.wake();
        }
    }

    fn unlist(&mut self, keeper: &Arc<Keeper>) {
        let i = keeper.index.load(Ordering::Relaxed);
        if self.kept.get(i).is_some_and(|k| Arc::ptr_eq(k, keeper)) {
            self.kept.swap_remove(i);
            if let Some(moved) = self.kept.get(i) {
                moved.index.store(i, Ordering::Relaxed);
            }
        }
    }
}
