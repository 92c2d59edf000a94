//! Every logged-in client: what the admin console and the metrics show about it, and the
//! handle through which the operator (KILL, SUSPEND, SHUTDOWN, RELOAD) asks its session to end.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Instant, SystemTime};

use atomic_waker::AtomicWaker;
use dashmap::DashMap;

use crate::config::PoolMode;
use crate::error::ClientError;
use crate::routing::PoolKey;

/// What a client is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ClientState {
    /// Between transactions (transaction mode) with no server connection.
    Idle = 0,
    /// Waiting for a server connection (or for `RESUME`).
    Waiting = 1,
    /// Holds a server connection.
    Active = 2,
}

impl ClientState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ClientState::Idle => "idle",
            ClientState::Waiting => "waiting",
            ClientState::Active => "active",
        }
    }
}

/// How soon a session is asked to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Stop {
    No = 0,
    /// At the end of the running transaction (or now, if none runs).
    AtBoundary = 1,
    /// Now, even inside a transaction (which the server then rolls back).
    Now = 2,
}

/// Who a client is; fixed for its whole session.
pub(crate) struct Identity {
    /// pgtenant's BackendKeyData pid for this client.
    pub(crate) id: i32,
    pub(crate) user: String,
    pub(crate) tenant: Arc<str>,
    pub(crate) peer: SocketAddr,
    pub(crate) tls: bool,
    pub(crate) mode: PoolMode,
    /// The worker thread (`crate::lanes`) its session runs on.
    pub(crate) lane: usize,
}

/// One client, as the rest of the process sees it.
pub(crate) struct ClientInfo {
    pub(crate) who: Identity,
    pub(crate) connected_at: SystemTime,
    pub(crate) started: Instant,
    pool: Mutex<PoolKey>,
    state: AtomicU8,
    stop: AtomicU8,
    reason: Mutex<Option<ClientError>>,
    /// The session task, woken when a stop is requested.
    waker: AtomicWaker,
}

impl ClientInfo {
    pub(crate) fn state(&self) -> ClientState {
        match self.state.load(Ordering::Relaxed) {
            1 => ClientState::Waiting,
            2 => ClientState::Active,
            _ => ClientState::Idle,
        }
    }

    pub(crate) fn set_state(&self, s: ClientState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    pub(crate) fn pool(&self) -> PoolKey {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_pool(&self, key: PoolKey) {
        *self.pool.lock().unwrap_or_else(|p| p.into_inner()) = key;
    }

    /// The stop asked for, if any.
    pub(crate) fn stop(&self) -> Stop {
        match self.stop.load(Ordering::Acquire) {
            1 => Stop::AtBoundary,
            2 => Stop::Now,
            _ => Stop::No,
        }
    }

    /// Resolves once a stop has been asked for.
    pub(crate) fn stop_requested(&self) -> impl Future<Output = ()> + '_ {
        self.stop_beyond(Stop::No)
    }

    /// Resolves once the stop asked for goes beyond `seen`. Only the session's own task waits
    /// on this (one waker); polling it costs two atomic loads and a waker comparison, so the
    /// relay can keep it in every `select!`.
    pub(crate) fn stop_beyond(&self, seen: Stop) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.stop() > seen {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // A request between the check and the registration is not missed.
            if self.stop() > seen {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    /// What the client is told when its session is ended.
    pub(crate) fn stop_reason(&self) -> Option<ClientError> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Asks the session to end (`at` never lowers an earlier request) and tell the client
    /// `reason`.
    pub(crate) fn request_stop(&self, at: Stop, reason: ClientError) {
        {
            let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
            if self.stop() < at || r.is_none() {
                *r = Some(reason);
            }
        }
        self.stop.fetch_max(at as u8, Ordering::AcqRel);
        self.waker.wake();
    }
}

/// All logged-in clients.
#[derive(Default)]
pub(crate) struct Clients {
    map: DashMap<i32, Arc<ClientInfo>>,
}

/// A client's registration; removed on drop.
pub(crate) struct Registered {
    clients: Arc<Clients>,
    pub(crate) info: Arc<ClientInfo>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.clients.map.remove(&self.info.who.id);
    }
}

impl Clients {
    /// Registers a client that is served from `pool`.
    pub(crate) fn register(self: &Arc<Self>, who: Identity, pool: PoolKey) -> Registered {
        let id = who.id;
        let info = Arc::new(ClientInfo {
            who,
            connected_at: SystemTime::now(),
            started: Instant::now(),
            pool: Mutex::new(pool),
            state: AtomicU8::new(ClientState::Idle as u8),
            stop: AtomicU8::new(Stop::No as u8),
            reason: Mutex::new(None),
            waker: AtomicWaker::new(),
        });
        self.map.insert(id, info.clone());
        Registered {
            clients: self.clone(),
            info,
        }
    }

    /// A snapshot of all clients.
    pub(crate) fn all(&self) -> Vec<Arc<ClientInfo>> {
        self.map.iter().map(|e| e.value().clone()).collect()
    }

    /// Asks every client matching `filter` to stop.
    pub(crate) fn stop_where(
        &self,
        filter: impl Fn(&ClientInfo) -> bool,
        at: Stop,
        reason: &ClientError,
    ) -> usize {
        let mut n = 0;
        for c in self.map.iter() {
            if filter(c.value()) {
                c.value().request_stop(at, reason.clone());
                n += 1;
            }
        }
        n
    }
}
