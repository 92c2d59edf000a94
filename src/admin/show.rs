//! `SHOW ...`: one function per listing, each a [`Table`] with PgBouncer's column names where
//! the concept is the same.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::command::{COMMANDS, Show};
use crate::config::{Config, PlacementKind, PoolMode, TenantStatus};
use crate::pool::stats::ServerState;
use crate::protocol::messages::ColumnType::{self, Int8, Text};
use crate::routing::{PoolKey, route};
use crate::server::Shared;
use crate::session::registry::ClientState;
use crate::tenant::directory;

/// A result set of text-format values.
pub(crate) struct Table {
    pub(crate) columns: Vec<(&'static str, ColumnType)>,
    pub(crate) rows: Vec<Vec<Option<String>>>,
}

impl Table {
    fn new(columns: &[(&'static str, ColumnType)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, values: Vec<Option<String>>) {
        self.rows.push(values);
    }
}

fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

fn time(t: SystemTime) -> Option<String> {
    s(humantime::format_rfc3339_seconds(t))
}

fn mode(m: PoolMode) -> &'static str {
    match m {
        PoolMode::Session => "session",
        PoolMode::Transaction => "transaction",
    }
}

pub(crate) fn show(what: Show, shared: &Shared, config: &Config) -> Table {
    match what {
        Show::Pools => pools(shared, config),
        Show::Clients => clients(shared),
        Show::Servers => servers(shared),
        Show::Tenants => tenants(shared, config),
        Show::Shards => shards(shared),
        Show::Stats => stats(shared),
        Show::Config => config_table(config),
        Show::Version => {
            let mut t = Table::new(&[("version", Text)]);
            t.row(vec![s(format!("pgtenant {}", env!("CARGO_PKG_VERSION")))]);
            t
        }
        Show::Help => {
            let mut t = Table::new(&[("command", Text)]);
            for c in COMMANDS {
                t.row(vec![s(c)]);
            }
            t
        }
    }
}

#[derive(Default)]
struct ClientCounts {
    active: usize,
    waiting: usize,
    idle: usize,
    mode: Option<PoolMode>,
}

fn pools(shared: &Shared, config: &Config) -> Table {
    let mut by_pool: HashMap<PoolKey, ClientCounts> = HashMap::new();
    for c in shared.clients.all() {
        let n = by_pool.entry(c.pool()).or_default();
        n.mode = Some(c.who.mode);
        match c.state() {
            ClientState::Active => n.active += 1,
            ClientState::Waiting => n.waiting += 1,
            ClientState::Idle => n.idle += 1,
        }
    }
    let mut t = Table::new(&[
        ("database", Text),
        ("user", Text),
        ("shard", Text),
        ("cl_active", Int8),
        ("cl_waiting", Int8),
        ("cl_idle", Int8),
        ("sv_active", Int8),
        ("sv_idle", Int8),
        ("maxwait", Int8),
        ("maxwait_us", Int8),
        ("pool_mode", Text),
        ("pool_size", Int8),
        ("queued", Int8),
        ("checkouts", Int8),
        ("lane_moves", Int8),
    ]);
    let mut stats = shared.pools.pool_stats();
    stats.sort_by(|a, b| (&a.key.shard, &a.key.database).cmp(&(&b.key.shard, &b.key.database)));
    for p in stats {
        let n = by_pool.remove(&p.key).unwrap_or_default();
        t.row(vec![
            s(&p.key.database),
            s(&p.key.role),
            s(&p.key.shard),
            s(n.active),
            s(n.waiting),
            s(n.idle),
            s(p.active),
            s(p.idle),
            s(p.max_wait.as_secs()),
            s(p.max_wait.subsec_micros()),
            s(mode(n.mode.unwrap_or(config.pool.mode))),
            s(p.size),
            s(p.waiting),
            s(p.checkouts),
            s(p.lane_moves),
        ]);
    }
    t
}

fn clients(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("type", Text),
        ("user", Text),
        ("tenant", Text),
        ("database", Text),
        ("shard", Text),
        ("state", Text),
        ("addr", Text),
        ("port", Int8),
        ("tls", Text),
        ("connect_time", Text),
        ("pid", Int8),
        ("pool_mode", Text),
        ("lane", Int8),
    ]);
    let mut all = shared.clients.all();
    all.sort_by_key(|c| c.who.id);
    for c in all {
        let key = c.pool();
        t.row(vec![
            s("C"),
            s(&c.who.user),
            s(&c.who.tenant),
            s(&key.database),
            s(&key.shard),
            s(c.state().as_str()),
            s(c.who.peer.ip()),
            s(c.who.peer.port()),
            s(c.who.tls),
            time(c.connected_at),
            s(c.who.id),
            s(mode(c.who.mode)),
            s(c.who.lane),
        ]);
    }
    t
}

fn servers(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("type", Text),
        ("user", Text),
        ("database", Text),
        ("shard", Text),
        ("state", Text),
        ("tenant", Text),
        ("connect_time", Text),
        ("idle_s", Int8),
        ("remote_pid", Int8),
    ]);
    let mut all = shared.pools.server_stats();
    all.sort_by_key(|s| s.id);
    for sv in all {
        t.row(vec![
            s("S"),
            s(&sv.key.role),
            s(&sv.key.database),
            s(&sv.key.shard),
            s(match sv.state {
                ServerState::Active => "active",
                ServerState::Idle => "idle",
            }),
            sv.tenant.as_deref().map(str::to_owned),
            time(sv.connected_at),
            s(sv.idle_for.as_secs()),
            s(sv.backend_pid),
        ]);
    }
    t
}

fn tenants(shared: &Shared, config: &Config) -> Table {
    let mut clients: HashMap<String, usize> = HashMap::new();
    for c in shared.clients.all() {
        *clients.entry(c.who.tenant.to_string()).or_default() += 1;
    }
    let mut names: Vec<String> = config.tenants.keys().cloned().collect();
    names.extend(
        clients
            .keys()
            .filter(|n| !config.tenants.contains_key(*n))
            .cloned(),
    );
    names.sort();
    names.dedup();
    let mut t = Table::new(&[
        ("tenant", Text),
        ("placement", Text),
        ("shard", Text),
        ("database", Text),
        ("status", Text),
        ("clients", Int8),
        ("pool_mode", Text),
        ("listed", Text),
    ]);
    for name in names {
        let listed = config.tenants.get(&name);
        let configured_suspended = listed.is_some_and(|e| e.status == TenantStatus::Suspended);
        let status = if configured_suspended || shared.holds.is_suspended(&name) {
            "suspended"
        } else if shared.holds.is_paused(&name) {
            "paused"
        } else {
            "active"
        };
        let (placement, shard, database, pool_mode) = match listed {
            Some(e) => placed(config, &name, &e.context, &e.rule),
            None => match directory::lookup(config, &name) {
                Ok(tenant) => placed(config, &name, &tenant.context, tenant.rule),
                Err(_) => (None, None, None, None),
            },
        };
        t.row(vec![
            s(&name),
            placement,
            shard,
            database,
            s(status),
            s(clients.get(&name).copied().unwrap_or(0)),
            pool_mode,
            s(listed.is_some()),
        ]);
    }
    t
}

type Placed = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn placed(config: &Config, name: &str, context: &str, rule: &crate::config::Rule) -> Placed {
    let tenant = directory::Tenant {
        name: Arc::from(name),
        context: context.to_owned(),
        rule,
    };
    let kind = match rule.kind {
        PlacementKind::Database => "database",
        PlacementKind::Schema => "schema",
        PlacementKind::Shared => "shared",
    };
    match route(config, &tenant, "") {
        Some(r) => (
            s(kind),
            s(&r.key.shard),
            s(&r.key.database),
            s(mode(r.mode)),
        ),
        None => (s(kind), None, None, None),
    }
}

fn shards(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("shard", Text),
        ("host", Text),
        ("port", Int8),
        ("up", Text),
        ("connections", Int8),
        ("max_connections", Int8),
        ("pools", Int8),
        ("last_error", Text),
    ]);
    let mut all = shared.pools.shard_stats();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    for sh in all {
        t.row(vec![
            s(&sh.name),
            s(&sh.host),
            s(sh.port),
            s(sh.up),
            s(sh.connections),
            s(sh.max_connections),
            s(sh.pools),
            sh.last_error,
        ]);
    }
    t
}

fn stats(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        ("tenant", Text),
        ("shard", Text),
        ("database", Text),
        ("total_xact_count", Int8),
        ("total_query_count", Int8),
        ("total_received", Int8),
        ("total_sent", Int8),
        ("total_xact_time", Int8),
        ("total_wait_time", Int8),
        ("avg_xact_time", Int8),
        ("prepared_hits", Int8),
        ("prepared_misses", Int8),
        ("tenant_setups", Int8),
    ]);
    let mut all = shared.metrics.all_stats();
    all.sort_by(|a, b| {
        (&a.0.tenant, &a.0.shard, &a.0.database).cmp(&(&b.0.tenant, &b.0.shard, &b.0.database))
    });
    for (k, st) in all {
        let tot = st.totals();
        let (xacts, xact_us) = (tot.transactions, tot.xact_micros);
        t.row(vec![
            s(&k.tenant),
            s(&k.shard),
            s(&k.database),
            s(xacts),
            s(tot.queries),
            s(tot.bytes_received),
            s(tot.bytes_sent),
            s(xact_us),
            s(tot.wait_micros),
            s(xact_us.checked_div(xacts).unwrap_or(0)),
            s(tot.prepared_hits),
            s(tot.prepared_misses),
            s(tot.setups),
        ]);
    }
    t
}

fn config_table(config: &Config) -> Table {
    let sv = &config.server;
    let pool = &config.pool;
    let secs = |d: std::time::Duration| s(d.as_secs_f64());
    let rows: Vec<(&str, Option<String>)> = vec![
        ("listen", s(sv.listen)),
        ("max_client_conn", s(sv.max_client_conn)),
        ("max_tenant_clients", s(sv.max_tenant_clients)),
        ("client_login_timeout", secs(sv.client_login_timeout)),
        ("client_idle_timeout", secs(sv.client_idle_timeout)),
        (
            "idle_transaction_timeout",
            secs(sv.idle_transaction_timeout),
        ),
        ("shutdown_timeout", secs(sv.shutdown_timeout)),
        ("fast_shutdown_timeout", secs(sv.fast_shutdown_timeout)),
        (
            "metrics_addr",
            s(sv.metrics_addr.map_or("off".to_owned(), |a| a.to_string())),
        ),
        (
            "tenant_labels",
            s(if sv.tenant_labels { "all" } else { "none" }),
        ),
        ("pool_mode", s(mode(pool.mode))),
        ("default_pool_size", s(pool.default_pool_size)),
        ("query_wait_timeout", secs(pool.query_wait_timeout)),
        ("server_idle_timeout", secs(pool.server_idle_timeout)),
        ("server_connect_timeout", secs(pool.server_connect_timeout)),
        ("server_lifetime", secs(pool.server_lifetime)),
        (
            "resolve",
            s(config
                .tenancy
                .sources
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")),
        ),
        ("guc", s(&config.tenancy.guc)),
        ("guard", s(config.tenancy.guard)),
        ("shards", s(config.shards.len())),
        ("tenants", s(config.tenants.len())),
        ("users", s(config.users.len())),
        ("tls", s(config.tls.is_some())),
        ("jwt", s(config.jwt.is_some())),
    ];
    let mut t = Table::new(&[("key", Text), ("value", Text)]);
    for (k, v) in rows {
        t.row(vec![s(k), v]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times_print_as_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(time(t).as_deref(), Some("2023-11-14T22:13:20Z"));
    }
}
