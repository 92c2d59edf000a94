//! Placement → where a session's traffic goes: shard, database, upstream role, pool settings
//! and the statement that scopes a server connection to the tenant (DESIGN §1).

pub(crate) mod hash;
pub(crate) mod signing;

use signing::Signing;

use std::sync::Arc;

use crate::config::template::TemplateVars;
use crate::config::{Config, PlacementKind, PoolMode, Shard};
use crate::protocol::messages::{quote_ident, quote_literal};
use crate::tenant::directory::Tenant;

/// Identity of a pool: the pools are keyed by (shard, database, role).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub(crate) shard: String,
    pub(crate) database: String,
    pub(crate) role: String,
}

/// Everything the session needs to serve one tenant.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) tenant: Arc<str>,
    pub(crate) shard: Arc<Shard>,
    pub(crate) key: PoolKey,
    pub(crate) mode: PoolMode,
    pub(crate) pool_size: usize,
    /// Server connections this tenant may hold at once in its pool; 0 means no cap.
    pub(crate) max_server_connections: usize,
    /// Sent before the client's first message on each server attachment (schema and shared
    /// placements): `SET search_path …` or `SET <guc> = …`.
    pub(crate) setup_sql: Option<Arc<str>>,
    /// Statements are checked by the shared-placement guard.
    pub(crate) guarded: bool,
    pub(crate) placement: PlacementKind,
    /// The tenant's context value (what the GUC, schema or database template receives).
    pub(crate) context: Arc<str>,
    /// Signed context mode (shared placement with `tenancy.signing_key_*`).
    pub(crate) signing: Option<Signing>,
}

/// Places `tenant` for the authenticated `user`; `None` only if a rule names no known shard,
/// which validation rules out.
pub(crate) fn route(config: &Config, tenant: &Tenant<'_>, user: &str) -> Option<Route> {
    let rule = tenant.rule;
    let shard_name = hash::choose(&rule.shards, &tenant.name);
    let shard = config.shards.get(shard_name).cloned()?;
    let vars = TemplateVars {
        tenant: &tenant.context,
        name: &tenant.name,
        user,
    };
    let database = rule.database.render(&vars);
    let role = rule
        .role
        .as_ref()
        .map(|r| r.render(&vars))
        .unwrap_or_else(|| shard.user.clone());
    let setup_sql = match rule.kind {
        PlacementKind::Database => None,
        PlacementKind::Schema => {
            let schema = rule
                .schema
                .as_ref()
                .map(|s| s.render(&vars))
                .unwrap_or_else(|| tenant.context.clone());
            Some(format!("SET search_path = {}", quote_ident(&schema)))
        }
        PlacementKind::Shared => Some(format!(
            "SET {} = {}",
            config.tenancy.guc,
            quote_literal(&tenant.context)
        )),
    };
    let setup_sql: Option<Arc<str>> = setup_sql.map(Arc::from);
    let signing = match (&config.tenancy.signing_key, rule.kind, &setup_sql) {
        (Some(key), PlacementKind::Shared, Some(base)) => Some(Signing {
            key: key.clone(),
            base_sql: base.clone(),
            sig_guc: Arc::from(format!("{}_sig", config.tenancy.guc)),
            context: Arc::from(tenant.context.as_str()),
        }),
        _ => None,
    };
    Some(Route {
        tenant: tenant.name.clone(),
        key: PoolKey {
            shard: shard.name.clone(),
            database,
            role,
        },
        shard,
        mode: rule.pool_mode.unwrap_or(config.pool.mode),
        pool_size: rule.pool_size.unwrap_or(config.pool.default_pool_size),
        max_server_connections: rule
            .max_server_connections
            .unwrap_or(config.pool.tenant_max_server_connections),
        setup_sql,
        signing,
        guarded: rule.kind == PlacementKind::Shared && config.tenancy.guard,
        placement: rule.kind,
        context: Arc::from(tenant.context.as_str()),
    })
}
