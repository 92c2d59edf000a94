//! Cancel routing: each client gets pgtenant's own BackendKeyData; a CancelRequest carrying it
//! is forwarded only to the server connection serving that client at that moment, so one
//! tenant can never cancel another's query. A client whose request still waits for a server
//! connection (pool queue, `PAUSE`) has it cancelled by pgtenant itself.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use atomic_waker::AtomicWaker;
use bytes::{BufMut, BytesMut};
use dashmap::DashMap;
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::backend::conn::CancelTarget;

/// Where a client's cancel goes: the server connection serving it, or the session itself
/// while its request waits for one.
#[derive(Default)]
struct Target {
    server: Mutex<Option<Arc<CancelTarget>>>,
    /// The session waits for a server connection: a cancel sets `cancelled` and wakes
    /// `waker`.
    waiting: AtomicBool,
    cancelled: AtomicBool,
    waker: AtomicWaker,
}

type Slot = Arc<Target>;

struct Entry {
    secret: i32,
    target: Slot,
}

#[derive(Default)]
pub(crate) struct CancelRegistry {
    map: DashMap<i32, Entry>,
    next_pid: AtomicI32,
}

/// A client's registration; unregisters on drop.
pub(crate) struct CancelHandle {
    registry: Arc<CancelRegistry>,
    pub(crate) pid: i32,
    pub(crate) secret: i32,
    target: Slot,
}

impl CancelRegistry {
    pub(crate) fn register(self: &Arc<Self>) -> CancelHandle {
        let secret: i32 = rand::rng().random();
        let target: Slot = Arc::default();
        loop {
            // Positive pids, as clients may print them; wraps after 2^31 clients.
            let pid = self
                .next_pid
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1)
                & i32::MAX;
            if pid == 0 || self.map.contains_key(&pid) {
                continue;
            }
            self.map.insert(
                pid,
                Entry {
                    secret,
                    target: target.clone(),
                },
            );
            return CancelHandle {
                registry: self.clone(),
                pid,
                secret,
                target,
            };
        }
    }

    /// Forwards a client's CancelRequest if the key matches a live client with a query running,
    /// or tells the client's session if its request is waiting for a server connection.
    pub(crate) async fn cancel(&self, pid: i32, secret: &[u8]) {
        let t = {
            let Some(entry) = self.map.get(&pid) else {
                tracing::debug!(pid, "cancel request for an unknown key");
                return;
            };
            if secret != entry.secret.to_be_bytes() {
                tracing::warn!(pid, "cancel request with a wrong secret ignored");
                return;
            }
            let server = entry
                .target
                .server
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match &*server {
                Some(t) => t.clone(),
                None => {
                    if entry.target.waiting.load(Ordering::Acquire) {
                        entry.target.cancelled.store(true, Ordering::Release);
                        entry.target.waker.wake();
                    }
                    return;
                }
            }
        };
        if let Err(e) = send_cancel(&t).await {
            tracing::warn!(error = %e, host = %t.host, port = t.port, "could not forward cancel request");
        }
    }
}

impl CancelHandle {
    /// Records which server connection serves this client now (`None` when it has none).
    pub(crate) fn set(&self, target: Option<&Arc<CancelTarget>>) {
        let mut guard = self.target.server.lock().unwrap_or_else(|p| p.into_inner());
        *guard = target.cloned();
    }

    /// Completes when a cancel for this client arrives; meant to race the wait for a server
    /// connection. Only a cancel sent after its first poll counts: one sent while the client
    /// waited for nothing is gone, as PostgreSQL ignores a cancel with no query running.
    pub(crate) async fn requested(&self) {
        let target = &*self.target;
        // A cancel left over from an earlier wait (it came as that one ended) is forgotten
        // before the flag goes up.
        target.cancelled.store(false, Ordering::Release);
        let _waiting = Waiting::raise(&target.waiting);
        std::future::poll_fn(|cx| {
            if target.cancelled.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            target.waker.register(cx.waker());
            if target.cancelled.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

/// The `waiting` flag of a [`Target`], up while the guard lives.
struct Waiting<'a>(&'a AtomicBool);

impl<'a> Waiting<'a> {
    fn raise(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::Release);
        Waiting(flag)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        self.registry.map.remove(&self.pid);
    }
}

async fn send_cancel(t: &CancelTarget) -> std::io::Result<()> {
    let mut stream = TcpStream::connect((t.host.as_str(), t.port)).await?;
    let mut buf = BytesMut::with_capacity(12 + t.secret.len());
    buf.put_u32((12 + t.secret.len()) as u32);
    buf.put_u32(80_877_102);
    buf.put_i32(t.pid);
    buf.put_slice(&t.secret);
    stream.write_all(&buf).await?;
    stream.shutdown().await
}
