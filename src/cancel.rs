//! Cancel routing: each client gets pgtenant's own BackendKeyData; a CancelRequest carrying it
//! is forwarded only to the server connection serving that client at that moment, so one
//! tenant can never cancel another's query.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, BytesMut};
use dashmap::DashMap;
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::backend::conn::CancelTarget;

type Slot = Arc<Mutex<Option<Arc<CancelTarget>>>>;

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
        let target: Slot = Arc::new(Mutex::new(None));
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

    /// Forwards a client's CancelRequest if the key matches a live client with a query running.
    pub(crate) async fn cancel(&self, pid: i32, secret: &[u8]) {
        let target = {
            let Some(entry) = self.map.get(&pid) else {
                tracing::debug!(pid, "cancel request for an unknown key");
                return;
            };
            if secret != entry.secret.to_be_bytes() {
                tracing::warn!(pid, "cancel request with a wrong secret ignored");
                return;
            }
            let guard = entry.target.lock().unwrap_or_else(|p| p.into_inner());
            guard.clone()
        };
        let Some(t) = target else { return };
        if let Err(e) = send_cancel(&t).await {
            tracing::warn!(error = %e, host = %t.host, port = t.port, "could not forward cancel request");
        }
    }
}

impl CancelHandle {
    /// Records which server connection serves this client now (`None` when it has none).
    pub(crate) fn set(&self, target: Option<&Arc<CancelTarget>>) {
        let mut guard = self.target.lock().unwrap_or_else(|p| p.into_inner());
        *guard = target.cloned();
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
