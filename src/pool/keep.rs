//! Transaction mode between transactions: a client's server connection stays with it while no
//! other checkout of the pool needs one ("kept"), so that the client's next transaction
//! starts without a checkout and a release.
//!
//! A kept connection is clean (its transaction ended with ReadyForQuery `I`) and counts as
//! idle in the pool's statistics. A checkout that would otherwise wait or open a new
//! connection while connections are kept queues and reclaims one of them (one its own
//! tenant keeps if there is one, which needs no new tenant setup and is the only kind that
//! helps a tenant at its cap): that keeper's session is woken ([`Keeper::reclaimed`]) and
//! releases its connection, which goes to the queue as any released connection does. No
//! connection is kept while anyone is queued or every slot of the pool is held, for a moment
//! after a checkout queued, while the shard is down, on a shard with
//! `max_shard_connections` (other pools may wait for its budget), or past the connection's
//! retirement.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;

use super::checkout::Checkout;
use super::pooled::Pooled;
use super::{Pool, Retirement, State, needs_liveness_check, still_open};

/// How long after a checkout had to queue no connection is kept: a pool where checkouts
/// queue now and then would mostly wake keepers only to take their connections back.
pub(super) const KEEP_AFTER_QUEUE: Duration = Duration::from_millis(100);

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
        let conn = self.conn.take()?;
        self.conn = self
            .pool
            .release_or_keep(conn, &self.tenant, last_used, Some(keeper));
        self.conn.is_some().then(|| Kept {
            checkout: Some(self),
            keeper: keeper.clone(),
        })
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
    /// Takes `keeper` off the kept list for its client's next transaction: false if the pool
    /// reclaimed it already, the shard is down or its target changed, or the connection was
    /// kept long enough to be looked at again and is retired (lifetime, `server_idle_timeout`)
    /// or closed. (Its retirement was checked when it was kept.)
    fn resume(&self, conn: &Pooled, tenant: &Arc<str>, keeper: &Arc<Keeper>, now: Instant) -> bool {
        let settings = {
            let mut st = self.lock();
            if keeper.reclaim.load(Ordering::Acquire) {
                return false;
            }
            st.unlist(keeper);
            self.common.refresh(&mut st.settings)
        };
        let generation = self.shard.generation();
        let mut usable = conn.generation == generation && self.shard.is_up();
        if usable && needs_liveness_check(conn, now) {
            usable = !Retirement::new(now, &settings, generation).retires(conn) && still_open(conn);
        }
        if usable {
            conn.entry.mark_active(tenant);
            self.checkouts.fetch_add(1, Ordering::Relaxed);
        }
        usable
    }

    /// A kept connection's client left or gave it up: off the kept list.
    fn unkeep(&self, keeper: &Arc<Keeper>) {
        self.lock().unlist(keeper);
    }
}

impl State {
    /// No checkout waits or queued a moment ago, and a slot is free: a connection may be kept.
    /// (A pool with every slot held is busy: the next checkout would reclaim the connection
    /// at once, at the cost of waking its session only to release it.)
    pub(super) fn may_keep(&self, now: Instant) -> bool {
        let queued_lately = self
            .queued_at
            .is_some_and(|t| now.saturating_duration_since(t) < KEEP_AFTER_QUEUE);
        self.queue.is_empty() && self.slots < self.size && !queued_lately
    }

    /// Lists `keeper` as keeping a connection for `tenant`.
    pub(super) fn list(&mut self, keeper: &Arc<Keeper>, tenant: &Arc<str>) {
        keeper.reclaim.store(false, Ordering::Release);
        keeper.index.store(self.kept.len(), Ordering::Relaxed);
        self.kept.push((keeper.clone(), tenant.clone()));
    }

    /// A checkout of `tenant` queued: wakes a keeper of a connection kept for `tenant`, else
    /// (unless `tenant` is at its cap, which only its own connections can help) any keeper;
    /// its connection comes back to the pool.
    pub(super) fn reclaim_kept(&mut self, tenant: &str) {
        let own = self.kept.iter().position(|(_, t)| **t == *tenant);
        let i = match own {
            Some(i) => i,
            None if !self.kept.is_empty() && self.eligible(tenant) => 0,
            None => return,
        };
        let (keeper, _) = self.take_kept(i);
        keeper.reclaim.store(true, Ordering::Release);
        keeper.waker.wake();
    }

    fn unlist(&mut self, keeper: &Arc<Keeper>) {
        let i = keeper.index.load(Ordering::Relaxed);
        if self
            .kept
            .get(i)
            .is_some_and(|(k, _)| Arc::ptr_eq(k, keeper))
        {
            self.take_kept(i);
        }
    }

    /// Takes entry `i` off the kept list; the last entry takes its place.
    fn take_kept(&mut self, i: usize) -> (Arc<Keeper>, Arc<str>) {
        let taken = self.kept.swap_remove(i);
        if let Some((moved, _)) = self.kept.get(i) {
            moved.index.store(i, Ordering::Relaxed);
        }
        taken
    }
}
