//! Per-connection driver: runs the stages in order (startup → login → relay) and is the one
//! place that writes pgtenant's own errors to clients.

pub(crate) mod login;
pub(crate) mod registry;
pub(crate) mod startup;

use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::auth::AuthError;
use crate::error::{
    ClientError, ClientFacing, INTERNAL_ERROR, PROTOCOL_VIOLATION, TOO_MANY_CONNECTIONS,
};
use crate::pool::PoolError;
use crate::protocol::header::tag_name;
use crate::relay;
use crate::server::Shared;
use crate::tenant::TenantError;

/// What a session needs from the process.
pub(crate) struct SessionCtx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) peer: SocketAddr,
    /// The lane (`crate::lanes`) the session runs on.
    pub(crate) lane: usize,
    /// Counts the session in its lane's load while it lasts (`None`: a single lane).
    pub(crate) _seat: Option<crate::lanes::Seat>,
}

#[derive(Debug, Error)]
pub(crate) enum LoginError {
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("sorry, too many clients already (max_client_conn)")]
    TooManyClients,
    #[error("sorry, too many clients of tenant \"{0}\" already (max_tenant_clients)")]
    TenantFull(String),
    #[error("expected a password message, got {}", tag_name(*.0))]
    Unexpected(u8),
    #[error("tenant placement names no known shard")]
    NoShard,
    #[error("login timed out (client_login_timeout)")]
    Timeout,
    #[error("client connection lost during login: {0}")]
    Io(std::io::Error),
}

impl LoginError {
    /// Counts a refused login in the metrics: a failed credential, a refused tenant, or an
    /// error of another kind.
    fn count(&self, metrics: &crate::metrics::Metrics) {
        use crate::metrics::kind;
        match self {
            LoginError::Auth(a) => match a.failure_reason() {
                Some(reason) => metrics.auth_failure(reason),
                None => metrics.tenant_rejection("not_allowed"),
            },
            LoginError::Tenant(t) => metrics.tenant_rejection(t.reason()),
            LoginError::TenantFull(_) => metrics.tenant_rejection("too_many_clients"),
            LoginError::Pool(PoolError::WaitTimeout { .. }) => {
                metrics.error(None, kind::POOL_TIMEOUT)
            }
            LoginError::Pool(PoolError::Backend(_) | PoolError::ShardDown { .. })
            | LoginError::NoShard => metrics.error(None, kind::SHARD_UNAVAILABLE),
            LoginError::TooManyClients
            | LoginError::Unexpected(_)
            | LoginError::Timeout
            | LoginError::Io(_) => metrics.error(None, kind::LOGIN),
        }
    }
}

impl ClientFacing for LoginError {
    fn to_client(&self) -> ClientError {
        match self {
            LoginError::Tenant(e) => e.to_client(),
            LoginError::Auth(e) => e.to_client(),
            LoginError::Pool(e) => e.to_client(),
            LoginError::TooManyClients | LoginError::TenantFull(_) => {
                ClientError::new(TOO_MANY_CONNECTIONS, self.to_string())
            }
            LoginError::Unexpected(_) | LoginError::Timeout | LoginError::Io(_) => {
                ClientError::new(PROTOCOL_VIOLATION, self.to_string())
            }
            LoginError::NoShard => ClientError::new(INTERNAL_ERROR, self.to_string()),
        }
    }
}

/// A login stage bounded by `client_login_timeout`.
async fn within<T>(
    timeout: std::time::Duration,
    stage: impl std::future::Future<Output = Result<T, LoginError>>,
) -> Result<T, LoginError> {
    tokio::time::timeout(timeout, stage)
        .await
        .unwrap_or(Err(LoginError::Timeout))
}

/// A refused login: counted in the metrics and logged (never with the secret).
fn refused(
    ctx: &SessionCtx,
    params: &crate::protocol::startup::StartupParams,
    e: &LoginError,
    what: &str,
) {
    e.count(&ctx.shared.metrics);
    tracing::info!(peer = %ctx.peer, user = params.get("user").unwrap_or_default(), error = %e, "{what}");
}

/// Drives one client connection to its end.
pub(crate) async fn run(ctx: SessionCtx, tcp: TcpStream, slot: Option<OwnedSemaphorePermit>) {
    let _ = tcp.set_nodelay(true);
    let shared = ctx.shared.clone();
    let config = shared.config();
    let tls_required = config.tls.as_ref().is_some_and(|t| t.require);
    // Each stage's future is boxed: the spawned future stays small (cheap to move into its
    // task), and a stage's state is freed when the stage ends instead of sizing the whole
    // session for the largest one.
    let negotiated = tokio::time::timeout(
        config.server.client_login_timeout,
        Box::pin(startup::negotiate(tcp, shared.tls.as_ref(), tls_required)),
    )
    .await;
    let (mut stream, params, sni) = match negotiated {
        Err(_) => return,
        Ok(Err(failed)) => {
            tracing::debug!(peer = %ctx.peer, error = %failed.error, "startup failed");
            if let Some(mut s) = failed.stream {
                startup::refuse(&mut s, &failed.error.to_client()).await;
            }
            return;
        }
        Ok(Ok(startup::Negotiated::Cancel { pid, secret })) => {
            shared.cancels.cancel(pid, &secret).await;
            return;
        }
        Ok(Ok(startup::Negotiated::Client {
            stream,
            params,
            sni,
        })) => (stream, params, sni),
    };
    if slot.is_none() {
        shared.metrics.error(None, crate::metrics::kind::LOGIN);
        startup::refuse(&mut stream, &LoginError::TooManyClients.to_client()).await;
        return;
    }
    let login_timeout = config.server.client_login_timeout;
    if params.get("database") == Some(crate::admin::DATABASE) {
        let login = within(
            login_timeout,
            Box::pin(login::login_admin(&ctx, &config, &mut stream, &params)),
        )
        .await;
        match login {
            Ok(user) => {
                tracing::info!(peer = %ctx.peer, %user, "admin console login");
                Box::pin(crate::admin::run(&shared, stream, &user)).await;
                tracing::info!(peer = %ctx.peer, %user, "admin console logout");
            }
            Err(e) => {
                refused(&ctx, &params, &e, "admin login refused");
                startup::refuse(&mut stream, &e.to_client()).await;
            }
        }
        return;
    }
    let login = within(
        login_timeout,
        Box::pin(login::login(
            &ctx,
            &config,
            &mut stream,
            &params,
            sni.as_deref(),
        )),
    )
    .await;
    let logged_in = match login {
        Ok(l) => l,
        Err(e) => {
            refused(&ctx, &params, &e, "login refused");
            if let LoginError::Pool(PoolError::Backend(b)) = &e
                && let Some(raw) = b.upstream_raw()
            {
                use tokio::io::AsyncWriteExt;
                let _ = stream.write_all(raw).await;
                let _ = stream.shutdown().await;
                return;
            }
            startup::refuse(&mut stream, &e.to_client()).await;
            return;
        }
    };
    let route = &logged_in.route;
    let tls = stream.is_tls();
    tracing::info!(
        peer = %ctx.peer,
        user = %logged_in.user,
        tenant = %route.tenant,
        shard = %route.key.shard,
        database = %route.key.database,
        tls,
        "client logged in"
    );
    let registered = shared.clients.register(
        registry::Identity {
            id: logged_in.cancel.pid,
            user: logged_in.user.clone(),
            tenant: route.tenant.clone(),
            peer: ctx.peer,
            tls,
            mode: route.mode,
            lane: ctx.lane,
        },
        route.key.clone(),
    );
    let info = registered.info.clone();
    if *shared.shutdown.borrow() {
        // Logged in while shutdown began: it ends like every other client.
        info.request_stop(
            registry::Stop::AtBoundary,
            ClientError::new(crate::error::ADMIN_SHUTDOWN, "pgtenant is shutting down"),
        );
    }
    let (outcome, totals) = Box::pin(relay::run(&shared, stream, logged_in, &info)).await;
    let key = info.pool();
    tracing::info!(
        peer = %ctx.peer,
        user = %info.who.user,
        tenant = %info.who.tenant,
        shard = %key.shard,
        database = %key.database,
        duration_s = info.started.elapsed().as_secs_f64(),
        bytes_received = totals.bytes_received,
        bytes_sent = totals.bytes_sent,
        transactions = totals.transactions,
        %outcome,
        "client disconnected"
    );
}
