//! Login stage: tenant hint → authentication (SCRAM for `[users]`, a JWT as cleartext password
//! over TLS for everyone else when `tenancy.resolve` lists `jwt`) → tenant resolution → route →
//! greeting (AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery).

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{LoginError, SessionCtx};
use crate::auth::AuthError;
use crate::auth::jwt::{JwtError, JwtIdentity, JwtPolicy};
use crate::auth::scram::{Exchange, MECHANISM, MECHANISM_PLUS};
use crate::cancel::CancelHandle;
use crate::config::{Config, Source};
use crate::error::{ClientFacing, INVALID_PASSWORD};
use crate::pool::{Checkout, Pool};
use crate::protocol::header::{Header, frontend};
use crate::protocol::messages;
use crate::protocol::startup::StartupParams;
use crate::relay::params::SessionParams;
use crate::routing::{Route, route};
use crate::server::{Shared, TenantSlot};
use crate::stream::ClientStream;
use crate::tenant::{TenantError, directory, hint};

/// Largest authentication message accepted from a client.
const MAX_AUTH_MESSAGE: usize = 16 * 1024;

/// A logged-in client, ready for the relay.
pub(crate) struct LoggedIn {
    pub(crate) user: String,
    /// The tenant's name, as the client gave it (a reload places it again by this name).
    pub(crate) tenant: String,
    /// The upstream role a JWT chose (kept when a reload places the tenant again).
    pub(crate) jwt_role: Option<String>,
    /// Session parameters from the startup packet, applied on every server connection.
    pub(crate) params: SessionParams,
    pub(crate) route: Route,
    pub(crate) pool: Arc<Pool>,
    pub(crate) cancel: CancelHandle,
    /// The connection made at login to learn the server's parameters; kept in session mode.
    pub(crate) first: Option<Checkout>,
    /// The lane (`crate::lanes`) the session runs on: its server connections are moved there.
    pub(crate) lane: usize,
    pub(crate) _tenant_slot: TenantSlot,
}

/// Who authenticated, and how.
enum Identity {
    /// SCRAM-SHA-256 against a `[users]` verifier.
    Scram,
    /// A verified JWT.
    Jwt(JwtIdentity),
}

pub(crate) async fn login(
    ctx: &SessionCtx,
    config: &Config,
    stream: &mut ClientStream,
    params: &StartupParams,
    sni: Option<&str>,
) -> Result<LoggedIn, LoginError> {
    let hint = hint::read(&config.tenancy, params, sni)?;
    let mut out = BytesMut::new();
    if params.minor_version > 0 || params.params.iter().any(|(k, _)| k.starts_with("_pq_.")) {
        let unsupported = params
            .params
            .iter()
            .filter(|(k, _)| k.starts_with("_pq_."))
            .map(|(k, _)| k.clone())
            .collect();
        messages::negotiate_protocol_version(&mut out, unsupported);
    }

    let identity = within_failure_limit(
        ctx,
        config,
        &hint.user,
        authenticate(ctx, config, stream, &hint.user, &mut out),
    )
    .await?;
    let (hint, jwt_role) = match identity {
        Identity::Scram => (hint, None),
        Identity::Jwt(id) => (
            hint.with_verified(&config.tenancy, Source::Jwt, id.tenant)?,
            id.role,
        ),
    };

    let tenant_name = hint.tenant.clone().ok_or_else(|| {
        let names: Vec<&str> = config.tenancy.sources.iter().map(|s| s.as_str()).collect();
        TenantError::Missing(names.join(", "))
    })?;
    let route = place(
        &ctx.shared,
        config,
        &hint.user,
        &tenant_name,
        jwt_role.as_deref(),
    )?;
    let max_clients = config
        .tenants
        .get(&tenant_name)
        .and_then(|t| t.max_clients)
        .unwrap_or(config.server.max_tenant_clients);
    let session_params = SessionParams::from_startup(params, route.placement)?;
    let tenant_slot = ctx
        .shared
        .tenant_slot(&route.tenant, max_clients)
        .ok_or_else(|| LoginError::TenantFull(route.tenant.to_string()))?;
    let pool = ctx.shared.pools.get(&route);
    let first = if pool.params().is_none() {
        Some(pool.checkout(&route.tenant, ctx.lane).await?)
    } else {
        None
    };
    let cancel = ctx.shared.cancels.register();

    messages::auth_ok(&mut out);
    for (name, value) in pool.params().map(Vec::as_slice).unwrap_or_default() {
        // What the client asked for, as a direct connection would report it.
        let value = match session_params.given.iter().find(|(n, _)| n == name) {
            Some((_, v)) => v.as_str(),
            None if name == "application_name" => "",
            None => value.as_str(),
        };
        messages::parameter_status(&mut out, name, value);
    }
    messages::backend_key_data(&mut out, cancel.pid, cancel.secret);
    messages::ready_for_query_idle(&mut out);
    stream.write_all(&out).await.map_err(LoginError::Io)?;

    let first = match (first, route.mode) {
        (Some(c), crate::config::PoolMode::Session) => Some(c),
        (Some(c), crate::config::PoolMode::Transaction) => {
            c.release();
            None
        }
        (None, _) => None,
    };
    Ok(LoggedIn {
        user: hint.user,
        tenant: tenant_name,
        jwt_role,
        params: session_params,
        route,
        pool,
        cancel,
        first,
        lane: ctx.lane,
        _tenant_slot: tenant_slot,
    })
}

/// Places `tenant` for `user` under `config`: the user's tenant list, console suspensions,
/// the directory, the route (with the role a JWT chose). Login and reload both use it.
pub(crate) fn place(
    shared: &Shared,
    config: &Config,
    user: &str,
    tenant: &str,
    jwt_role: Option<&str>,
) -> Result<Route, LoginError> {
    if let Some(u) = config.users.get(user)
        && let Some(allowed) = &u.tenants
        && !allowed.iter().any(|t| t == tenant)
    {
        return Err(AuthError::TenantNotAllowed {
            user: user.to_owned(),
            tenant: tenant.to_owned(),
        }
        .into());
    }
    if shared.holds.is_suspended(tenant) {
        return Err(TenantError::Suspended(tenant.to_owned()).into());
    }
    let found = directory::lookup(config, tenant)?;
    let mut route = route(config, &found, user).ok_or(LoginError::NoShard)?;
    if let Some(role) = jwt_role {
        // Only ever a value of the configured jwt.roles allowlist.
        role.clone_into(&mut route.key.role);
    }
    Ok(route)
}

/// Admin console login: SCRAM for a `[users]` entry marked `admin = true`. Returns the user.
pub(crate) async fn login_admin(
    ctx: &SessionCtx,
    config: &Config,
    stream: &mut ClientStream,
    params: &StartupParams,
) -> Result<String, LoginError> {
    let user = params.get("user").unwrap_or_default().to_owned();
    let mut out = BytesMut::new();
    within_failure_limit(
        ctx,
        config,
        &user,
        authenticate_scram(ctx, config, stream, &user, &mut out),
    )
    .await?;
    if !config.users.get(&user).is_some_and(|u| u.admin) {
        return Err(AuthError::NotAdmin(user).into());
    }
    messages::auth_ok(&mut out);
    for (name, value) in [
        ("server_version", "15.0 (pgtenant admin console)"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        (
            "application_name",
            params.get("application_name").unwrap_or_default(),
        ),
    ] {
        messages::parameter_status(&mut out, name, value);
    }
    messages::backend_key_data(&mut out, 0, 0);
    messages::ready_for_query_idle(&mut out);
    stream.write_all(&out).await.map_err(LoginError::Io)?;
    Ok(user)
}

/// Runs an authentication under the brute-force limits: refused at once while the client's
/// address is locked out; a failed credential (what the client is told 28P01) counts against it.
async fn within_failure_limit<T>(
    ctx: &SessionCtx,
    config: &Config,
    user: &str,
    authentication: impl std::future::Future<Output = Result<T, LoginError>>,
) -> Result<T, LoginError> {
    let addr = ctx.peer.ip().to_canonical();
    if let Err(remaining) = ctx.shared.auth_failures.check(&config.auth_limit, addr) {
        return Err(AuthError::LockedOut(remaining.as_secs().max(1)).into());
    }
    let result = authentication.await;
    if let Err(e) = &result
        && e.to_client().code == INVALID_PASSWORD
        && ctx.shared.auth_failures.failed(&config.auth_limit, addr)
    {
        tracing::warn!(peer = %ctx.peer, %user, "too many failed logins: address locked out (auth.lockout)");
    }
    result
}

/// Users listed under `[users]` use SCRAM; with `jwt` enabled everyone else gives a JWT.
async fn authenticate(
    ctx: &SessionCtx,
    config: &Config,
    stream: &mut ClientStream,
    user: &str,
    out: &mut BytesMut,
) -> Result<Identity, LoginError> {
    match &config.jwt {
        Some(jwt) if !config.users.contains_key(user) => {
            authenticate_jwt(ctx, jwt, stream, user, out)
                .await
                .map(Identity::Jwt)
        }
        _ => authenticate_scram(ctx, config, stream, user, out)
            .await
            .map(|()| Identity::Scram),
    }
}

/// A JWT as the cleartext password. Asked for only over TLS (or loopback when
/// `jwt.allow_plaintext_loopback`); verified on a blocking thread. The token is never logged.
async fn authenticate_jwt(
    ctx: &SessionCtx,
    jwt: &Arc<JwtPolicy>,
    stream: &mut ClientStream,
    user: &str,
    out: &mut BytesMut,
) -> Result<JwtIdentity, LoginError> {
    let loopback_ok = jwt.allow_plaintext_loopback && ctx.peer.ip().to_canonical().is_loopback();
    if !stream.is_tls() && !loopback_ok {
        return Err(AuthError::from(JwtError::NeedsTls(user.to_owned())).into());
    }
    messages::auth_cleartext_password(out);
    stream.write_all(out).await.map_err(LoginError::Io)?;
    out.clear();

    let len = read_password_header(stream).await?;
    // The body is the token and its NUL terminator.
    if len > jwt.max_token_bytes + 1 {
        return Err(AuthError::from(JwtError::TooLarge(jwt.max_token_bytes)).into());
    }
    let body = read_body(stream, len).await?;
    let token = body.strip_suffix(&[0]).unwrap_or(&body);
    let token = std::str::from_utf8(token)
        .map_err(|_| AuthError::from(JwtError::Malformed))?
        .to_owned();
    let policy = jwt.clone();
    let verified = tokio::task::spawn_blocking(move || policy.verify(&token))
        .await
        .map_err(|_| AuthError::from(JwtError::Internal))?;
    Ok(verified.map_err(AuthError::from)?)
}

/// SCRAM-SHA-256 against the user's verifier. Unknown users go through the same exchange
/// against a dummy verifier, so the answer does not tell which users exist.
async fn authenticate_scram(
    ctx: &SessionCtx,
    config: &Config,
    stream: &mut ClientStream,
    user: &str,
    out: &mut BytesMut,
) -> Result<(), LoginError> {
    let verifier = config
        .users
        .get(user)
        .map(|u| &u.verifier)
        .unwrap_or(&ctx.shared.dummy_verifier);
    let binding = if stream.is_tls() {
        ctx.shared.channel_binding.as_ref()
    } else {
        None
    };
    let offered: &[&str] = match binding {
        Some(_) => &[MECHANISM_PLUS, MECHANISM],
        None => &[MECHANISM],
    };
    messages::auth_sasl(out, offered);
    stream.write_all(out).await.map_err(LoginError::Io)?;
    out.clear();

    let mut initial = read_password_message(stream).await?;
    let mechanism = take_cstr(&mut initial)
        .ok_or_else(|| AuthError::Protocol("SASLInitialResponse without mechanism".into()))?;
    if !offered.contains(&mechanism.as_str()) {
        return Err(AuthError::Mechanism(mechanism).into());
    }
    if initial.len() < 4 {
        return Err(AuthError::Protocol("SASLInitialResponse too short".into()).into());
    }
    let data_len = initial.get_i32();
    if data_len < 0 || data_len as usize != initial.len() {
        return Err(AuthError::Protocol("SASLInitialResponse length mismatch".into()).into());
    }
    // -PLUS means binding: the gs2 header must name a channel binding type.
    if mechanism == MECHANISM_PLUS && !initial.starts_with(b"p=") {
        return Err(
            AuthError::Protocol(format!("{MECHANISM_PLUS} without channel binding")).into(),
        );
    }
    let (exchange, server_first) = Exchange::start(user, verifier, &initial, binding)?;
    messages::auth_sasl_continue(out, server_first.as_bytes());
    stream.write_all(out).await.map_err(LoginError::Io)?;
    out.clear();

    let client_final = read_password_message(stream).await?;
    let server_final = exchange.finish(&client_final);
    let server_final = match (server_final, config.users.contains_key(user)) {
        (Ok((s, keys)), true) => {
            // For shards without a password: the role named like this user logs in with them.
            if let Some(keys) = keys {
                ctx.shared.pools.credentials().remember(user, keys);
            }
            s
        }
        (Ok(_), false) | (Err(AuthError::Failed(_)), _) => {
            return Err(AuthError::Failed(user.to_owned()).into());
        }
        (Err(e), _) => return Err(e.into()),
    };
    messages::auth_sasl_final(out, server_final.as_bytes());
    Ok(())
}

/// Reads one `p` message (password / SASL response) and returns its body.
async fn read_password_message(stream: &mut ClientStream) -> Result<BytesMut, LoginError> {
    let len = read_password_header(stream).await?;
    if len + 4 > MAX_AUTH_MESSAGE {
        return Err(AuthError::Protocol(format!("invalid message length {}", len + 4)).into());
    }
    read_body(stream, len).await
}

/// Reads the header of a `p` message; returns the length of its body.
async fn read_password_header(stream: &mut ClientStream) -> Result<usize, LoginError> {
    let mut head = [0u8; Header::SIZE];
    stream.read_exact(&mut head).await.map_err(LoginError::Io)?;
    let h = Header::parse(&head).ok_or(LoginError::Unexpected(0))?;
    if h.tag != frontend::PASSWORD {
        return Err(LoginError::Unexpected(h.tag));
    }
    if !h.is_valid() {
        return Err(AuthError::Protocol(format!("invalid message length {}", h.len)).into());
    }
    Ok(h.len as usize - 4)
}

async fn read_body(stream: &mut ClientStream, len: usize) -> Result<BytesMut, LoginError> {
    let mut body = BytesMut::zeroed(len);
    stream.read_exact(&mut body).await.map_err(LoginError::Io)?;
    Ok(body)
}

fn take_cstr(buf: &mut BytesMut) -> Option<String> {
    let end = buf.iter().position(|b| *b == 0)?;
    let s = String::from_utf8(buf.split_to(end).to_vec()).ok()?;
    buf.advance(1);
    Some(s)
}
