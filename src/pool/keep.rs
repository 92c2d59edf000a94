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
//!
//! A keeper stays on the pool's kept list across the transactions it runs on its connection,
//! so that a transaction starts and ends without the pool's lock: a state the session and
//! the pool change with compare-and-swap ([`Keeper`]) says whether the connection is free
//! to reclaim (between transactions) or in use. The session takes the locked way again when
//! a checkout queued since it last kept the connection, after a reload, when the shard or
//! the connection is no longer fit to keep, or after a pause long enough for a liveness
//! check.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;

use super::checkout::Checkout;
use super::pooled::Pooled;
use super::{Pool, Retirement, State, needs_liveness_check, still_open};

/// How long after a checkout had to queue no connection is kept: a pool where checkouts
/// queue now and then would mostly wake keepers only to take their connections back.
pub(super) const KEEP_AFTER_QUEUE: Duration = Duration::from_millis(100);

/// [`Keeper::state`]: not on the pool's kept list.
const FREE: u8 = 0;
/// On the list, between transactions: the pool may reclaim the connection.
const KEPT: u8 = 1;
/// On the list, running a transaction: the pool leaves it alone.
const IN_USE: u8 = 2;
/// Taken off the list by the pool, which wants the connection back.
const RECLAIMED: u8 = 3;

/// One session's side of keeping.
#[derive(Default)]
pub(crate) struct Keeper {
    /// [`FREE`], [`KEPT`], [`IN_USE`] or [`RECLAIMED`]. The pool's side changes it under
    /// the pool's lock, the session's side also without it.
    state: AtomicU8,
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
            if self.is(RECLAIMED) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            if self.is(RECLAIMED) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    fn is(&self, state: u8) -> bool {
        self.state.load(Ordering::SeqCst) == state
    }

    /// From `from` to `to` if it is in `from`.
    fn swap(&self, from: u8, to: u8) -> bool {
        self.state
            .compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

/// What held when a connection was last kept the locked way: while it still holds, the
/// session keeps the connection again without the lock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket {
    /// [`super::Common`]'s settings version.
    version: u64,
    /// [`Pool`]'s count of checkouts that queued.
    queued: u64,
    /// `server_lifetime` in force.
    lifetime: Duration,
}

impl Ticket {
    pub(super) fn new(version: u64, queued: u64, lifetime: Duration) -> Ticket {
        Ticket {
            version,
            queued,
            lifetime,
        }
    }
}

/// A checkout whose session is still on the pool's kept list ([`IN_USE`]).
pub(crate) struct Listed {
    keeper: Arc<Keeper>,
    ticket: Ticket,
}

impl Listed {
    pub(super) fn keeper(&self) -> &Arc<Keeper> {
        &self.keeper
    }
}

/// A connection kept by its client between transactions. Dropping it releases the
/// connection to the pool.
pub(crate) struct Kept {
    /// `None` only once resumed.
    checkout: Option<Checkout>,
    keeper: Arc<Keeper>,
    ticket: Ticket,
}

impl Checkout {
    /// Keeps this clean connection for the client's next transaction (`keeper`: the
    /// session's); or, if the pool cannot spare it, releases it and returns `None`.
    /// `last_used`: when its transaction ended.
    pub(crate) fn keep(mut self, keeper: &Arc<Keeper>, last_used: Instant) -> Option<Kept> {
        if let Some(Listed {
            keeper: listed,
            ticket,
        }) = self.listed.take()
        {
            debug_assert!(Arc::ptr_eq(&listed, keeper), "a session has one keeper");
            if self.keep_listed(&listed, &ticket, last_used) {
                return Some(Kept {
                    checkout: Some(self),
                    keeper: listed,
                    ticket,
                });
            }
        }
        // The locked way; it takes `keeper` off the kept list first if it is still on it.
        let conn = self.conn.take()?;
        let (conn, ticket) =
            self.pool
                .release_or_keep(conn, &self.tenant, last_used, Some(keeper))?;
        self.conn = Some(conn);
        Some(Kept {
            checkout: Some(self),
            keeper: keeper.clone(),
            ticket,
        })
    }

    /// Keeps the connection of a session still on the kept list without the pool's lock,
    /// if `ticket` still holds and the connection is fit to keep. False: the session takes it
    /// off the list and keeps or releases it the locked way.
    fn keep_listed(&mut self, keeper: &Keeper, ticket: &Ticket, last_used: Instant) -> bool {
        // The parts themselves: borrowed apart, not each through the box.
        let parts = &mut **self;
        let pool = &parts.pool;
        let Some(conn) = parts.conn.as_mut() else {
            return false;
        };
        if pool.common.version.load(Ordering::Acquire) != ticket.version
            || conn.generation != pool.shard.generation()
            || !pool.shard.is_up()
            || conn.expired(last_used, ticket.lifetime)
        {
            return false;
        }
        conn.conn_mut().last_used = last_used;
        conn.entry.mark_idle(last_used);
        keeper.state.store(KEPT, Ordering::SeqCst);
        // A checkout that queues counts itself, then looks for a kept connection to reclaim:
        // either it sees this one kept, or this sees its count (the pool's lock orders the
        // counts, SeqCst orders this store and that load).
        if pool.queued.load(Ordering::SeqCst) == ticket.queued {
            return true;
        }
        // Someone queued since: give the connection back the locked way, unless the pool
        // reclaimed it already (then the session sees `reclaimed` and lets it go).
        !keeper.swap(KEPT, IN_USE)
    }
}

impl Kept {
    /// The connection back for the client's next transaction, starting `now`; `None` if the
    /// pool reclaimed it meanwhile or it is no longer usable (then it is released, or closed).
    pub(crate) fn resume(mut self, now: Instant) -> Option<Checkout> {
        let mut checkout = self.checkout.take()?;
        if !self.keeper.swap(KEPT, IN_USE) {
            // Reclaimed: off the list already.
            checkout.release_at(now);
            return None;
        }
        let usable = match checkout.conn.as_ref() {
            // Used a moment ago, on a shard still up and unchanged: still on the list.
            Some(conn)
                if conn.generation == checkout.pool.shard.generation()
                    && checkout.pool.shard.is_up()
                    && !needs_liveness_check(conn, now) =>
            {
                conn.entry.mark_active(&checkout.tenant);
                checkout.pool.checkouts.fetch_add(1, Ordering::Relaxed);
                checkout.listed = Some(Listed {
                    keeper: self.keeper.clone(),
                    ticket: self.ticket,
                });
                true
            }
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
    /// Takes `keeper` ([`IN_USE`]) off the kept list for its client's next transaction: false
    /// if the shard is down or its target changed, or the connection was kept long enough to
    /// be looked at again and is retired (lifetime, `server_idle_timeout`) or closed. (Its
    /// retirement was checked when it was kept.)
    fn resume(&self, conn: &Pooled, tenant: &Arc<str>, keeper: &Arc<Keeper>, now: Instant) -> bool {
        let settings = {
            let mut st = self.lock();
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
    pub(super) fn unkeep(&self, keeper: &Arc<Keeper>) {
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
        keeper.state.store(KEPT, Ordering::SeqCst);
        keeper.index.store(self.kept.len(), Ordering::Relaxed);
        self.kept.push((keeper.clone(), tenant.clone()));
    }

    /// Connections kept between transactions, free to reclaim.
    pub(super) fn kept_now(&self) -> usize {
        self.kept.iter().filter(|(k, _)| k.is(KEPT)).count()
    }

    /// A checkout of `tenant` queued (and counted itself): wakes a keeper of a connection
    /// kept for `tenant`, else (unless `tenant` is at its cap, which only its own connections
    /// can help) any keeper; its connection comes back to the pool. Keepers running a
    /// transaction are passed over: they see the count when it ends.
    pub(super) fn reclaim_kept(&mut self, tenant: &str) {
        let own = (0..self.kept.len())
            .filter(|&i| *self.kept[i].1 == *tenant)
            .find(|&i| self.kept[i].0.swap(KEPT, RECLAIMED));
        let i = match own {
            Some(i) => i,
            None if self.eligible(tenant) => {
                match (0..self.kept.len()).find(|&i| self.kept[i].0.swap(KEPT, RECLAIMED)) {
                    Some(i) => i,
                    None => return,
                }
            }
            None => return,
        };
        let (keeper, _) = self.take_kept(i);
        keeper.waker.wake();
    }

    /// Off the kept list, if on it.
    pub(super) fn unlist(&mut self, keeper: &Arc<Keeper>) {
        let i = keeper.index.load(Ordering::Relaxed);
        if self
            .kept
            .get(i)
            .is_some_and(|(k, _)| Arc::ptr_eq(k, keeper))
        {
            self.take_kept(i);
            keeper.state.store(FREE, Ordering::SeqCst);
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
