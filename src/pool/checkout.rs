//! A checked-out server connection. Dropping it without [`Checkout::release`] closes the
//! connection (a connection in an unknown state is never handed on) and gives its slot to the
//! next waiter.
//!
//! Its parts live in one allocation: a checkout moves from the pool to the session, into the
//! kept state between transactions and back on every transaction, and a pointer moves in
//! one register where the parts would be copied (about two hundred bytes) at each step.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Instant;

use super::Pool;
use super::keep::Listed;
use super::pooled::Pooled;
use crate::backend::conn::ServerConn;

pub(crate) struct Checkout(Box<Parts>);

/// What a [`Checkout`] holds; its fields are the pool's alone.
pub(crate) struct Parts {
    pub(super) pool: Arc<Pool>,
    pub(super) tenant: Arc<str>,
    /// `None` only once released.
    pub(super) conn: Option<Pooled>,
    pub(super) granted_at: Instant,
    /// Resumed from being kept without the pool's lock: its session is still on the kept
    /// list (`keep.rs`), and comes off it unless the connection is kept again.
    pub(super) listed: Option<Listed>,
}

impl Checkout {
    pub(super) fn new(
        pool: Arc<Pool>,
        tenant: Arc<str>,
        conn: Pooled,
        granted_at: Instant,
    ) -> Self {
        Self(Box::new(Parts {
            pool,
            tenant,
            conn: Some(conn),
            granted_at,
            listed: None,
        }))
    }

    /// When the connection was handed over: the time the checkout began unless it had to
    /// wait or connect.
    pub(crate) fn granted_at(&self) -> Instant {
        self.granted_at
    }

    pub(crate) fn conn(&mut self) -> &mut ServerConn {
        // `conn` is only taken by `release`, which consumes `self`.
        match self.conn.as_mut() {
            Some(c) => c.conn_mut(),
            None => unreachable!(),
        }
    }

    #[cfg(test)]
    pub(super) fn pooled(&self) -> &Pooled {
        match self.conn.as_ref() {
            Some(c) => c,
            None => unreachable!(),
        }
    }

    /// Returns a clean, idle connection to the pool.
    pub(crate) fn release(self) {
        self.release_at(Instant::now());
    }

    /// [`Checkout::release`] of a connection last used at `last_used` (a time read already).
    pub(crate) fn release_at(mut self, last_used: Instant) {
        self.unlist();
        if let Some(conn) = self.conn.take() {
            self.pool.release(conn, &self.tenant, last_used);
        }
    }

    /// Off the pool's kept list, if its session is still on it.
    fn unlist(&mut self) {
        if let Some(listed) = self.listed.take() {
            self.pool.unkeep(listed.keeper());
        }
    }
}

impl Deref for Checkout {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl DerefMut for Checkout {
    fn deref_mut(&mut self) -> &mut Parts {
        &mut self.0
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        self.unlist();
        if let Some(conn) = self.conn.take() {
            // Closed (in the background) before the slot goes to the next waiter.
            drop(conn);
            self.pool.forfeit(&self.tenant);
        }
    }
}
