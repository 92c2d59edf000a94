//! The accept loop, the client limit (`max_client_conn`), the services every session shares,
//! configuration reload, and shutdown fan-out. Public entry point: [`Proxy`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use pgwire::api::auth::sasl::scram::ScramServerAuth;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::auth::limit::FailureLimit;
use crate::auth::scram::{Verifier, hash_password};
use crate::cancel::CancelRegistry;
use crate::config::{Config, ConfigError};
use crate::error::{ADMIN_SHUTDOWN, ClientError};
use crate::guard::{Policy, VerdictCache};
use crate::lanes::{Lane, Lanes};
use crate::metrics::{self, GaugeSample, Metrics, StatsKey};
use crate::pool::Pools;
use crate::relay::stale::StalePlans;
use crate::session::registry::{ClientState, Clients, Stop};
use crate::session::{self, SessionCtx};
use crate::tenant::directory;
use crate::tenant::holds::Holds;

/// One configuration in force, with what is derived from it.
pub(crate) struct Snapshot {
    pub(crate) config: Arc<Config>,
    /// Shared-placement guard verdicts, by statement text (they depend on `tenancy.guc`).
    pub(crate) guard_cache: Arc<VerdictCache>,
    /// Counts reloads; sessions compare it at each transaction to pick up a new snapshot.
    pub(crate) generation: u64,
}

/// Services built once at start-up and shared by all sessions.
pub(crate) struct Shared {
    snapshot: RwLock<Arc<Snapshot>>,
    generation: AtomicU64,
    /// The file `RELOAD` and `SIGHUP` read again.
    config_path: Option<PathBuf>,
    pub(crate) pools: Arc<Pools>,
    pub(crate) cancels: Arc<CancelRegistry>,
    pub(crate) tls: Option<TlsAcceptor>,
    /// SCRAM-SHA-256-PLUS: SCRAM bound to the TLS certificate, offered to TLS clients.
    pub(crate) channel_binding: Option<ScramServerAuth>,
    /// Verifier used for unknown users, so failures look alike.
    pub(crate) dummy_verifier: Verifier,
    /// Failed logins per client address (brute-force limits).
    pub(crate) auth_failures: FailureLimit,
    tenant_clients: Arc<DashMap<Arc<str>, usize>>,
    /// Logged-in clients (admin console, metrics, stop requests).
    pub(crate) clients: Arc<Clients>,
    /// `PAUSE` and `SUSPEND TENANT` from the console.
    pub(crate) holds: Holds,
    pub(crate) metrics: Metrics,
    /// Prepared statements whose plan went stale on a server connection (all pools).
    pub(crate) stale_plans: Arc<StalePlans>,
    /// Becomes true when the proxy stops accepting.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Set by the console's `SHUTDOWN`; [`Proxy::shutdown_requested`] waits for it.
    shutdown_request: watch::Sender<bool>,
}

impl Shared {
    /// The configuration snapshot a new session starts with.
    pub(crate) fn config(&self) -> Arc<Config> {
        self.snapshot().config.clone()
    }

    /// The configuration in force with its guard cache.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The generation of the snapshot in force (an atomic load: cheap for every transaction).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
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

    /// Reads the configuration file again and puts it in force, or leaves the old one in
    /// force and says why.
    pub(crate) fn reload(&self) -> Result<(), ConfigError> {
        let result = match &self.config_path {
            Some(path) => Config::load(path),
            None => Err(ConfigError::invalid(
                "reload",
                "pgtenant was started without a configuration file",
            )),
        };
        let new = match result {
            Ok(c) => Arc::new(c),
            Err(e) => {
                self.metrics.reload(false);
                tracing::error!(error = %e, "configuration reload refused; the configuration in force stays");
                return Err(e);
            }
        };
        let old = self.snapshot();
        warn_restart_only(&old.config, &new);
        let guard_cache = if new.tenancy.guc == old.config.tenancy.guc {
            old.guard_cache.clone()
        } else {
            Arc::new(VerdictCache::new(Policy::new(&new.tenancy.guc)))
        };
        self.pools.reconfigure(new.pool);
        // Passed-through keys only of users that still exist with the same verifier.
        self.pools
            .credentials()
            .retain(|user, keys| new.users.get(user).is_some_and(|u| u.verifier.holds(keys)));
        {
            let mut slot = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
            let generation = old.generation + 1;
            *slot = Arc::new(Snapshot {
                config: new.clone(),
                guard_cache,
                generation,
            });
            self.generation.store(generation, Ordering::Release);
        }
        // Clients whose tenant or user the new configuration no longer admits end after
        // their transaction; the others move to it at their next transaction.
        for c in self.clients.all() {
            let refused = match directory::lookup(&new, &c.who.tenant) {
                Err(e) => Some(e.to_string()),
                Ok(_) => match new.users.get(&c.who.user) {
                    None if new.jwt.is_none() => {
                        Some(format!("user \"{}\" was removed", c.who.user))
                    }
                    Some(u)
                        if u.tenants
                            .as_ref()
                            .is_some_and(|ts| !ts.iter().any(|t| **t == *c.who.tenant)) =>
                    {
                        Some(format!(
                            "user \"{}\" may no longer use tenant \"{}\"",
                            c.who.user, c.who.tenant
                        ))
                    }
                    _ => None,
                },
            };
            if let Some(why) = refused {
                c.request_stop(
                    Stop::AtBoundary,
                    ClientError::new(ADMIN_SHUTDOWN, format!("configuration reloaded: {why}")),
                );
            }
        }
        self.metrics.reload(true);
        tracing::info!(
            tenants = new.tenants.len(),
            shards = new.shards.len(),
            users = new.users.len(),
            "configuration reloaded"
        );
        Ok(())
    }

    /// The console's `SHUTDOWN`.
    pub(crate) fn request_shutdown(&self) {
        self.shutdown_request.send_replace(true);
    }

    /// `GET /metrics`: gauges from the client registry and the pools, then the exposition.
    pub(crate) fn render_metrics(&self) -> String {
        let mut gauges = Vec::new();
        // Every tenant with statistics shows its client gauges, zero when it has no client.
        let mut clients: std::collections::HashMap<StatsKey, [usize; 3]> = self
            .metrics
            .all_stats()
            .into_iter()
            .map(|(k, _)| (k, [0; 3]))
            .collect();
        for c in self.clients.all() {
            let key = c.pool();
            let n = clients
                .entry(StatsKey {
                    tenant: c.who.tenant.clone(),
                    shard: key.shard,
                    database: key.database,
                })
                .or_default();
            n[c.state() as usize] += 1;
        }
        for (k, n) in clients {
            for state in [ClientState::Idle, ClientState::Waiting, ClientState::Active] {
                gauges.push(GaugeSample {
                    name: metrics::CLIENT_CONNECTIONS,
                    labels: vec![
                        ("tenant", k.tenant.to_string()),
                        ("shard", k.shard.clone()),
                        ("database", k.database.clone()),
                        ("state", state.as_str().to_owned()),
                    ],
                    value: n[state as usize] as f64,
                });
            }
        }
        for p in self.pools.pool_stats() {
            for (state, v) in [("active", p.active), ("idle", p.idle)] {
                gauges.push(GaugeSample {
                    name: metrics::SERVER_CONNECTIONS,
                    labels: vec![
                        ("shard", p.key.shard.clone()),
                        ("database", p.key.database.clone()),
                        ("state", state.to_owned()),
                    ],
                    value: v as f64,
                });
            }
        }
        for sh in self.pools.shard_stats() {
            gauges.push(GaugeSample {
                name: metrics::SHARD_UP,
                labels: vec![("shard", sh.name.clone())],
                value: if sh.up { 1.0 } else { 0.0 },
            });
        }
        self.metrics.render(gauges)
    }
}

/// Settings a reload cannot change in a running process.
fn warn_restart_only(old: &Config, new: &Config) {
    let changed = [
        ("server.listen", old.server.listen != new.server.listen),
        (
            "server.metrics_addr",
            old.server.metrics_addr != new.server.metrics_addr,
        ),
        (
            "server.tenant_labels",
            old.server.tenant_labels != new.server.tenant_labels,
        ),
        (
            "server.log_format",
            old.server.log_json != new.server.log_json,
        ),
        ("server.workers", old.server.workers != new.server.workers),
        (
            "server.cpu_affinity",
            old.server.cpu_affinity != new.server.cpu_affinity,
        ),
        ("tls", old.tls.is_some() != new.tls.is_some()),
    ];
    for (key, differs) in changed {
        if differs {
            tracing::warn!(
                key,
                "this setting changed but takes effect only after a restart"
            );
        }
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
    #[error("could not start the worker threads (server.workers): {0}")]
    Workers(std::io::Error),
}

/// A running proxy.
pub struct Proxy {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    accept: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    slots: Arc<Semaphore>,
    max_clients: usize,
    /// The worker threads besides the current runtime's: they end when the proxy is dropped
    /// (or shut down) and its accept loop is gone.
    lanes: Option<Arc<Lanes>>,
}

/// How long clients asked to stop now get to go before shutdown returns anyway.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How often histogram samples are folded into buckets between scrapes.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

impl Proxy {
    /// Binds the configured address (port 0 picks a free port) and starts accepting.
    /// `RELOAD` is refused: there is no file to read again (see [`Proxy::start_from_file`]).
    pub async fn start(config: Config) -> Result<Proxy, StartError> {
        Self::start_with(config, None).await
    }

    /// Loads `path` and starts; `RELOAD` and [`Proxy::reload`] read `path` again.
    pub async fn start_from_file(path: &Path) -> Result<Proxy, StartError> {
        let config = Config::load(path)?;
        Self::start_with(config, Some(path.to_owned())).await
    }

    async fn start_with(config: Config, config_path: Option<PathBuf>) -> Result<Proxy, StartError> {
        let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
        let channel_binding = match &config.tls {
            Some(t) => {
                let pem = std::fs::read(&t.cert_file)
                    .map_err(|e| ConfigError::invalid("tls.cert_file", e.to_string()))?;
                Some(
                    crate::auth::scram::channel_binding(&pem)
                        .map_err(|e| ConfigError::invalid("tls.cert_file", e))?,
                )
            }
            None => None,
        };
        let workers = config.workers();
        let lane_cpus = config.lane_cpus();
        let listen = config.server.listen;
        let listener = bind(listen).await?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: listen,
            source,
        })?;
        let metrics_listener = match config.server.metrics_addr {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
        let (tx, rx) = watch::channel(false);
        let max_clients = config.server.max_client_conn;
        let dummy_verifier =
            Verifier::parse(&hash_password(&format!("{:x}", rand::random::<u128>())))
                .map_err(|e| ConfigError::invalid("users", e))?;
        let shared = Arc::new(Shared {
            pools: Pools::new(&config),
            metrics: Metrics::new(config.server.tenant_labels),
            snapshot: RwLock::new(Arc::new(Snapshot {
                guard_cache: Arc::new(VerdictCache::new(Policy::new(&config.tenancy.guc))),
                config: Arc::new(config),
                generation: 0,
            })),
            generation: AtomicU64::new(0),
            config_path,
            cancels: Arc::new(CancelRegistry::default()),
            tls,
            channel_binding,
            dummy_verifier,
            auth_failures: FailureLimit::default(),
            tenant_clients: Arc::new(DashMap::new()),
            clients: Arc::new(Clients::default()),
            holds: Holds::default(),
            stale_plans: Arc::new(StalePlans::default()),
            shutdown: rx,
            shutdown_request: watch::Sender::new(false),
        });
        let slots = Arc::new(Semaphore::new(max_clients));
        let lanes = match workers {
            0 | 1 => None,
            n => Some(Arc::new(
                Lanes::start(n - 1, lane_cpus.as_ref()).map_err(StartError::Workers)?,
            )),
        };
        let accept = tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            slots.clone(),
            lanes.clone(),
        ));
        let mut background = Vec::new();
        if let Some(l) = metrics_listener {
            background.push(tokio::spawn(metrics::http::serve(
                l,
                Arc::downgrade(&shared),
            )));
        }
        let weak = Arc::downgrade(&shared);
        background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(METRICS_UPKEEP);
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                shared.metrics.upkeep();
            }
        }));
        tracing::info!(%addr, metrics = ?metrics_addr, "pgtenant listening");
        Ok(Proxy {
            addr,
            metrics_addr,
            shared,
            shutdown: tx,
            accept,
            background,
            slots,
            max_clients,
            lanes,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// `SIGHUP`: reads the configuration file again; an invalid one is refused and the old
    /// one stays in force.
    pub fn reload(&self) -> Result<(), ConfigError> {
        self.shared.reload()
    }

    /// Resolves when an admin runs `SHUTDOWN` on the console.
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shared.shutdown_request.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// `SIGTERM`: stops accepting, lets running transactions finish (up to
    /// `shutdown_timeout`), then closes the clients still connected with `57P01`.
    pub async fn shutdown(self) {
        let timeout = self.shared.config().server.shutdown_timeout;
        self.shutdown_within(timeout).await;
    }

    /// `SIGINT`: the same, within `fast_shutdown_timeout`.
    pub async fn shutdown_fast(self) {
        let timeout = self.shared.config().server.fast_shutdown_timeout;
        self.shutdown_within(timeout).await;
    }

    async fn shutdown_within(self, timeout: Duration) {
        let _ = self.shutdown.send(true);
        self.accept.abort();
        let reason = ClientError::new(ADMIN_SHUTDOWN, "pgtenant is shutting down");
        let n = self
            .shared
            .clients
            .stop_where(|_| true, Stop::AtBoundary, &reason);
        tracing::info!(
            clients = n,
            timeout_s = timeout.as_secs_f64(),
            "shutting down: waiting for running transactions"
        );
        let all = u32::try_from(self.max_clients).unwrap_or(u32::MAX);
        if tokio::time::timeout(timeout, self.slots.acquire_many(all))
            .await
            .is_err()
        {
            let n = self.shared.clients.stop_where(|_| true, Stop::Now, &reason);
            tracing::warn!(
                clients = n,
                "shutdown timeout reached: closing clients still in a transaction"
            );
            let _ = tokio::time::timeout(STOP_GRACE, self.slots.acquire_many(all)).await;
        }
        for task in &self.background {
            task.abort();
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    lanes: Option<Arc<Lanes>>,
) {
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
        let (lane, seat) = match &lanes {
            Some(l) => {
                let (lane, seat) = l.pick(&tcp);
                (lane, Some(seat))
            }
            None => (Lane::Own, None),
        };
        let ctx = SessionCtx {
            shared: shared.clone(),
            peer,
            lane: lane.index(),
            _seat: seat,
        };
        match lane {
            Lane::Own => {
                tokio::spawn(session::run(ctx, tcp, slot));
            }
            Lane::Other { handle, .. } => {
                // The socket moves to the other lane's event loop: off this one's, onto that.
                let std = match tcp.into_std() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, %peer, "could not hand a client to a worker thread");
                        continue;
                    }
                };
                handle.spawn(async move {
                    match TcpStream::from_std(std) {
                        Ok(tcp) => session::run(ctx, tcp, slot).await,
                        Err(e) => {
                            tracing::warn!(error = %e, %peer, "could not take a client on a worker thread");
                        }
                    }
                });
            }
        }
    }
}

/// The single-threaded runtime `pgtenant run` starts the proxy on (lane 0): a lane's
/// runtime, whose blocking pool is not held to the CPU this thread is pinned to later.
pub fn runtime_builder() -> tokio::runtime::Builder {
    crate::lanes::runtime_builder()
}

/// Runs the proxy from a configuration file until SIGTERM (graceful), SIGINT (fast) or the
/// console's `SHUTDOWN`; `SIGHUP` reloads the file.
pub async fn run_until_signal(path: &Path) -> Result<(), StartError> {
    let proxy = Proxy::start_from_file(path).await?;
    // This thread is the process's own: lane 0, pinned like the others if they are.
    if let Some(lanes) = &proxy.lanes {
        lanes.pin_own_thread();
    }
    let fast = wait_for_stop(&proxy).await;
    tracing::info!(fast, "shutting down");
    if fast {
        proxy.shutdown_fast().await;
    } else {
        proxy.shutdown().await;
    }
    Ok(())
}

/// Waits for a reason to stop, reloading on SIGHUP; true for the fast (SIGINT) kind.
#[cfg(unix)]
async fn wait_for_stop(proxy: &Proxy) -> bool {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return true;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return true,
            _ = term.recv() => return false,
            _ = proxy.shutdown_requested() => return false,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                // Failures are logged and counted by reload itself.
                let _ = proxy.reload();
            }
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_stop(proxy: &Proxy) -> bool {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => true,
        _ = proxy.shutdown_requested() => false,
    }
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
