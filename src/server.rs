//! The accept loop, the client limit (`max_client_conn`), the services every session shares,
//! and shutdown fan-out. Public entry point: [`Proxy`].

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::auth::limit::FailureLimit;
use crate::auth::scram::{Verifier, hash_password};
use crate::cancel::CancelRegistry;
use crate::config::{Config, ConfigError};
use crate::guard::{Policy, VerdictCache};
use crate::pool::Pools;
use crate::session::{self, SessionCtx};

/// Services built once at start-up and shared by all sessions.
pub(crate) struct Shared {
    config: RwLock<Arc<Config>>,
    pub(crate) pools: Arc<Pools>,
    pub(crate) cancels: Arc<CancelRegistry>,
    /// Shared-placement guard verdicts, by statement text.
    pub(crate) guard_cache: Arc<VerdictCache>,
    pub(crate) tls: Option<TlsAcceptor>,
    /// Verifier used for unknown users, so failures look alike.
    pub(crate) dummy_verifier: Verifier,
    /// Failed logins per client address (brute-force limits).
    pub(crate) auth_failures: FailureLimit,
    tenant_clients: Arc<DashMap<Arc<str>, usize>>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Shared {
    /// The configuration snapshot a new session starts with.
    pub(crate) fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes one of the tenant's client slots (`max == 0`: unlimited).
    pub(crate) fn tenant_slot(&self, tenant: &Arc<str>, max: usize) -> Option<TenantSlot> {
        let mut count = self.tenant_clients.entry(tenant.clone()).or_insert(0);
        if max > 0 && *count >= max {
            return None;
        }
        *count += 1;
        Some(TenantSlot {
            counts: self.tenant_clients.clone(),
            tenant: tenant.clone(),
        })
    }
}

/// One client of a tenant; gives the slot back on drop.
pub(crate) struct TenantSlot {
    counts: Arc<DashMap<Arc<str>, usize>>,
    tenant: Arc<str>,
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        if let Some(mut c) = self.counts.get_mut(&self.tenant) {
            *c = c.saturating_sub(1);
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("could not listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running proxy.
pub struct Proxy {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    accept: JoinHandle<()>,
    slots: Arc<Semaphore>,
    max_clients: usize,
    shutdown_timeout: Duration,
}

impl Proxy {
    /// Binds the configured address (port 0 picks a free port) and starts accepting.
    pub async fn start(config: Config) -> Result<Proxy, StartError> {
        let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
        let listen = config.server.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: listen,
            source,
        })?;
        let (tx, rx) = watch::channel(false);
        let max_clients = config.server.max_client_conn;
        let shutdown_timeout = config.server.shutdown_timeout;
        let dummy_verifier =
            Verifier::parse(&hash_password(&format!("{:x}", rand::random::<u128>())))
                .map_err(|e| ConfigError::invalid("users", e))?;
        let shared = Arc::new(Shared {
            pools: Pools::new(&config),
            guard_cache: Arc::new(VerdictCache::new(Policy::new(&config.tenancy.guc))),
            config: RwLock::new(Arc::new(config)),
            cancels: Arc::new(CancelRegistry::default()),
            tls,
            dummy_verifier,
            auth_failures: FailureLimit::default(),
            tenant_clients: Arc::new(DashMap::new()),
            shutdown: rx,
        });
        let slots = Arc::new(Semaphore::new(max_clients));
        let accept = tokio::spawn(accept_loop(listener, shared, slots.clone()));
        tracing::info!(%addr, "pgtenant listening");
        Ok(Proxy {
            addr,
            shutdown: tx,
            accept,
            slots,
            max_clients,
            shutdown_timeout,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets running transactions finish (up to `shutdown_timeout`), then
    /// returns; clients still connected get `57P01`.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.accept.abort();
        let all = u32::try_from(self.max_clients).unwrap_or(u32::MAX);
        let drained =
            tokio::time::timeout(self.shutdown_timeout, self.slots.acquire_many(all)).await;
        if drained.is_err() {
            tracing::warn!("shutdown_timeout reached with clients still connected");
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, slots: Arc<Semaphore>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = slots.clone().try_acquire_owned().ok();
        let ctx = SessionCtx {
            shared: shared.clone(),
            peer,
        };
        tokio::spawn(session::run(ctx, tcp, slot));
    }
}

/// Runs the proxy until SIGINT or SIGTERM.
pub async fn run_until_signal(config: Config) -> Result<(), StartError> {
    let proxy = Proxy::start(config).await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    proxy.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
