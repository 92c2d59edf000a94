//! A checked-out server connection. Dropping it without [`Checkout::release`] closes the
//! connection: a connection in an unknown state is never handed on.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::Pool;
use crate::backend::conn::ServerConn;

pub(crate) struct Checkout {
    pool: Arc<Pool>,
    conn: Option<ServerConn>,
    _permit: OwnedSemaphorePermit,
}

impl Checkout {
    pub(super) fn new(pool: Arc<Pool>, conn: ServerConn, permit: OwnedSemaphorePermit) -> Self {
        Self {
            pool,
            conn: Some(conn),
            _permit: permit,
        }
    }

    pub(crate) fn conn(&mut self) -> &mut ServerConn {
        // `conn` is only taken by `release`, which consumes `self`.
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }

    /// Returns a clean, idle connection to the pool.
    pub(crate) fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.put_idle(conn);
        }
    }
}
