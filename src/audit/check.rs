//! `pgtenant check`: connects to every shard that hosts a shared-placement database, as the
//! upstream role pgtenant uses, and reports what would let one tenant see another's rows:
//! tables with the tenant column but no row-level security, RLS not forced, permissive
//! policies that do not read the tenant setting, views that read tenant tables as an owner who
//! bypasses RLS, materialized views with the tenant column, upstream roles that are superusers,
//! have BYPASSRLS or own the tables; and, from the config alone, schema placements whose tenants
//! share one upstream role. One finding per line, each with a fix.
//!
//! Only reads catalogs; it never changes anything on a shard.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use thiserror::Error;
use tokio_postgres::NoTls;

use super::ident::{quote_ident, quote_qualified, shell_quote};
use super::plan::{Target, plan};
use super::rls::{DEFAULT_GUC, DEFAULT_TYPE};
use crate::config::Config;

/// How bad a finding is. Both kinds make `pgtenant check` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// A tenant can read or write another tenant's rows, or the proxy cannot work.
    Error,
    /// Safe today, but one statement or one config change away from a leak.
    Warning,
}

/// One thing a person should fix. Table names are quoted SQL (`public.items`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The table has the tenant column but row-level security is off: every tenant sees
    /// every row.
    RlsDisabled {
        table: String,
        column: String,
        column_type: String,
        guc: String,
        database: String,
    },
    /// RLS is on but not forced: the table's owner bypasses it.
    RlsNotForced { table: String },
    /// RLS is on without any policy: nobody but the owner sees a row.
    NoPolicy {
        table: String,
        column: String,
        column_type: String,
        guc: String,
        database: String,
    },
    /// A permissive policy that applies to the upstream role and does not read the tenant
    /// setting: the rows it allows are visible to every tenant.
    PolicyIgnoresGuc {
        table: String,
        policy: String,
        guc: String,
    },
    /// A view with the tenant column, readable by the upstream role, that reads its tables
    /// with the rights of an owner who bypasses RLS (superuser or BYPASSRLS).
    ViewBypassesRls { view: String, owner: String },
    /// A materialized view with the tenant column, readable by the upstream role: RLS cannot
    /// filter it.
    MaterializedView { view: String, roles: String },
    /// Signed mode: the upstream role can read or change the signing key, create objects in
    /// schema `pgtenant`, or owns `pgtenant.verified_tenant()`: it can forge any tenant.
    SigningExposed { role: String, what: String },
    /// The upstream role is a superuser: RLS never applies to it.
    Superuser { role: String },
    /// The upstream role has BYPASSRLS.
    BypassRls { role: String },
    /// The upstream role does not exist on the shard.
    RoleMissing { role: String },
    /// The tenant setting has a role or database default (`ALTER ROLE/DATABASE ... SET`):
    /// after a client's `RESET ALL`/`DISCARD ALL` the session falls back to that tenant.
    GucDefault { scope: String, setting: String },
    /// The upstream role owns the table (or inherits from its owner). Unforced, the owner
    /// bypasses RLS; forced, the owner can still switch RLS off or drop the policies.
    OwnsTable {
        role: String,
        table: String,
        forced: bool,
    },
    /// Several schema-placement tenants share one upstream role: only `search_path`, which a
    /// client can change, separates them (DESIGN §1).
    SchemaSharedRole {
        shard: String,
        database: String,
        role: String,
        tenants: String,
    },
}

impl Finding {
    pub fn severity(&self) -> Severity {
        match self {
            Finding::NoPolicy { .. }
            | Finding::SchemaSharedRole { .. }
            | Finding::OwnsTable { forced: true, .. } => Severity::Warning,
            _ => Severity::Error,
        }
    }
}

/// The `pgtenant rls` command line (piped to psql) for a table.
fn rls_command(table: &str, column: &str, column_type: &str, guc: &str, database: &str) -> String {
    let mut cmd = format!(
        "pgtenant rls --table {} --column {}",
        shell_quote(table),
        shell_quote(column)
    );
    if guc != DEFAULT_GUC {
        cmd.push_str(&format!(" --guc {}", shell_quote(guc)));
    }
    if column_type != DEFAULT_TYPE {
        cmd.push_str(&format!(" --type {}", shell_quote(column_type)));
    }
    cmd.push_str(&format!(
        " | psql -v ON_ERROR_STOP=1 -d {}",
        shell_quote(database)
    ));
    cmd
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity() {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: ")?;
        match self {
            Finding::RlsDisabled {
                table,
                column,
                column_type,
                guc,
                database,
            } => write!(
                f,
                "{table} has the tenant column {column} but row-level security is not enabled: \
                 every tenant sees every row; fix: {}",
                rls_command(table, column, column_type, guc, database)
            ),
            Finding::RlsNotForced { table } => write!(
                f,
                "{table} has row-level security enabled but not forced: its owner bypasses it; \
                 fix: ALTER TABLE {table} FORCE ROW LEVEL SECURITY;"
            ),
            Finding::NoPolicy {
                table,
                column,
                column_type,
                guc,
                database,
            } => write!(
                f,
                "{table} has row-level security but no policy: no tenant sees any row; fix: {}",
                rls_command(table, column, column_type, guc, database)
            ),
            Finding::PolicyIgnoresGuc { table, policy, guc } => write!(
                f,
                "policy {policy} on {table} is permissive and does not read \
                 current_setting('{guc}') or pgtenant.verified_tenant(): the rows it allows are \
                 visible to every tenant; fix: DROP POLICY {policy} ON {table}; or make it \
                 compare the tenant column with the setting (pgtenant rls prints one)"
            ),
            Finding::ViewBypassesRls { view, owner } => write!(
                f,
                "view {view} has the tenant column and reads its tables as its owner {owner}, \
                 who bypasses row-level security: every tenant sees every row through it; fix: \
                 ALTER VIEW {view} SET (security_invoker = true); (PostgreSQL 15+) or give the \
                 view an owner without SUPERUSER and BYPASSRLS"
            ),
            Finding::MaterializedView { view, roles } => write!(
                f,
                "materialized view {view} has the tenant column and {roles} may read it, but \
                 row-level security cannot filter a materialized view: every tenant sees every \
                 row; fix: REVOKE SELECT ON {view} FROM {roles}; and read it through a view \
                 with security_invoker that filters on the tenant setting"
            ),
            Finding::SigningExposed { role, what } => write!(
                f,
                "upstream role {role} {what}: it can sign any tenant's context itself; fix: \
                 pgtenant rls --signed sets the privileges right (REVOKE ALL ON TABLE \
                 pgtenant.signing_key FROM {r}; REVOKE CREATE ON SCHEMA pgtenant FROM {r}; \
                 the function owned by another role)",
                r = quote_ident(role)
            ),
            Finding::Superuser { role } => write!(
                f,
                "upstream role {role} is a superuser: row-level security never applies to it; \
                 fix: ALTER ROLE {} NOSUPERUSER; (or log in as a role that is not)",
                quote_ident(role)
            ),
            Finding::BypassRls { role } => write!(
                f,
                "upstream role {role} has BYPASSRLS: row-level security never applies to it; \
                 fix: ALTER ROLE {} NOBYPASSRLS;",
                quote_ident(role)
            ),
            Finding::GucDefault { scope, setting } => write!(
                f,
                "{scope} sets a default {setting}: a session that resets its settings (RESET \
                 ALL, DISCARD ALL) falls back to that tenant instead of to no tenant; fix: ALTER \
                 ... RESET for that setting (ALTER ROLE ... IN DATABASE ... RESET <setting>;)"
            ),
            Finding::RoleMissing { role } => write!(
                f,
                "upstream role {role} does not exist: its tenants cannot connect; fix: CREATE \
                 ROLE {} LOGIN; and grant it the tables, or correct the role in the config",
                quote_ident(role)
            ),
            Finding::OwnsTable {
                role,
                table,
                forced,
            } => {
                let why = if *forced {
                    "RLS is forced, but an owner can switch it off (ALTER TABLE ... NO FORCE or \
                     DISABLE ROW LEVEL SECURITY, DROP POLICY)"
                } else {
                    "owners bypass row-level security that is not forced"
                };
                write!(
                    f,
                    "upstream role {role} owns {table} (or is a member of its owner): {why}; \
                     fix: ALTER TABLE {table} OWNER TO <a role pgtenant does not log in as>; \
                     GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {};",
                    quote_ident(role)
                )
            }
            Finding::SchemaSharedRole {
                shard,
                database,
                role,
                tenants,
            } => write!(
                f,
                "schema placement: {tenants} in database {database} on shard {shard} share the \
                 upstream role {role}, so search_path is the only separation and a client can \
                 change it; fix: give each tenant its own role that may use only its schema \
                 (role = \"tenant_{{tenant}}\")"
            ),
        }
    }
}

/// Why a database could not be audited.
#[derive(Debug, Error)]
pub enum CheckError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("catalog query failed: {0}")]
    Query(String),
}

/// The audit of one shared database.
#[derive(Debug)]
pub struct DatabaseReport {
    pub shard: String,
    pub addr: String,
    pub database: String,
    pub login_role: String,
    pub tenants: Vec<String>,
    /// Tables with the tenant column.
    pub tables: usize,
    pub result: Result<Vec<Finding>, CheckError>,
}

/// Everything `pgtenant check` found.
#[derive(Debug)]
pub struct Report {
    pub guc: String,
    pub column: String,
    pub databases: Vec<DatabaseReport>,
    /// Findings from the config alone.
    pub config_findings: Vec<Finding>,
    /// What could not be audited, and why (not findings).
    pub notes: Vec<String>,
}

impl Report {
    fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.config_findings.iter().chain(
            self.databases
                .iter()
                .filter_map(|d| d.result.as_ref().ok())
                .flatten(),
        )
    }

    fn unreachable(&self) -> usize {
        self.databases.iter().filter(|d| d.result.is_err()).count()
    }

    /// 0: no findings; 1: findings; 2: a database could not be audited.
    pub fn exit_code(&self) -> u8 {
        if self.unreachable() > 0 {
            2
        } else if self.findings().next().is_some() {
            1
        } else {
            0
        }
    }

    /// The report as printed: a block per database, one finding per line, a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.databases {
            out.push_str(&format!(
                "shard {} ({}), database {} (as {}; tenants: {}):\n",
                d.shard,
                d.addr,
                d.database,
                d.login_role,
                d.tenants.join(", ")
            ));
            match &d.result {
                Err(e) => out.push_str(&format!(
                    "  unreachable: shard {} ({}), database {} as {}: {e}\n",
                    d.shard, d.addr, d.database, d.login_role
                )),
                Ok(findings) if findings.is_empty() => out.push_str(&format!(
                    "  ok: {} table(s) with column {}, row-level security forced, policies \
                     reading {}\n",
                    d.tables, self.column, self.guc
                )),
                Ok(findings) => {
                    for f in findings {
                        out.push_str(&format!("  {f}\n"));
                    }
                }
            }
        }
        if !self.config_findings.is_empty() {
            out.push_str("config:\n");
            for f in &self.config_findings {
                out.push_str(&format!("  {f}\n"));
            }
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        let (errors, warnings) = self
            .findings()
            .fold((0, 0), |(e, w), f| match f.severity() {
                Severity::Error => (e + 1, w),
                Severity::Warning => (e, w + 1),
            });
        let shards: BTreeSet<&str> = self.databases.iter().map(|d| d.shard.as_str()).collect();
        out.push_str(&format!(
            "pgtenant check: {} finding(s) ({errors} error(s), {warnings} warning(s)) in {} \
             shared database(s) on {} shard(s); {} unreachable\n",
            errors + warnings,
            self.databases.len(),
            shards.len(),
            self.unreachable()
        ));
        if self.databases.is_empty() {
            out.push_str("pgtenant check: the config places no tenant in a shared database\n");
        }
        out
    }
}

/// Audits every shared database of `config`.
pub async fn run(config: &Config) -> Report {
    let plan = plan(config);
    let mut databases = Vec::new();
    for target in &plan.targets {
        let (tables, result) = match audit(config, target).await {
            Ok((tables, findings)) => (tables, Ok(findings)),
            Err(e) => (0, Err(e)),
        };
        databases.push(DatabaseReport {
            shard: target.shard.name.clone(),
            addr: format!("{}:{}", target.shard.host, target.shard.port),
            database: target.database.clone(),
            login_role: target.login_role().to_owned(),
            tenants: target.tenants.iter().cloned().collect(),
            tables,
            result,
        });
    }
    Report {
        guc: config.tenancy.guc.clone(),
        column: config.tenancy.tenant_column.clone(),
        databases,
        config_findings: plan.findings,
        notes: plan.notes,
    }
}

/// An error with its causes, e.g. `db error: FATAL: password authentication failed ...`.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Tables (plain or partitioned) outside the system schemas having the column `$1`.
const TENANT_TABLES: &str = "
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE c.relkind IN ('r', 'p')
      AND a.attname::text = $1
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname !~ '^pg_(toast|temp_)'";

/// Views and materialized views outside the system schemas having the column `$1` that one
/// of the roles `$2` may read.
const TENANT_VIEWS: &str = "
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN pg_roles o ON o.oid = c.relowner
    WHERE c.relkind IN ('v', 'm')
      AND a.attname::text = $1
      AND EXISTS (SELECT FROM unnest($2::text[]) u
                  WHERE has_table_privilege(u::name, c.oid, 'SELECT'))
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname !~ '^pg_(toast|temp_)'";

struct TableRow {
    table: String,
    key: (String, String),
    rls: bool,
    forced: bool,
    column_type: String,
}

/// A policy as deparsed with only `pg_catalog` on the search path.
struct PolicyRow {
    name: String,
    /// USING, or "" when none.
    qual: String,
    /// WITH CHECK, or "" when none.
    with_check: String,
    /// Permissive and applying to PUBLIC or to a role an upstream role is a member of.
    applies: bool,
}

async fn audit(config: &Config, target: &Target) -> Result<(usize, Vec<Finding>), CheckError> {
    let shard = &target.shard;
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&shard.host)
        .port(shard.port)
        .user(target.login_role())
        .dbname(&target.database)
        .application_name("pgtenant check")
        .connect_timeout(config.pool.server_connect_timeout);
    if let Some(p) = &shard.password {
        cfg.password(p);
    }
    let (client, conn) = cfg
        .connect(NoTls)
        .await
        .map_err(|e| CheckError::Connect(describe(&e)))?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = audit_catalogs(config, target, &client).await;
    drop(client);
    let _ = conn.await;
    result.map_err(|e| CheckError::Query(describe(&e)))
}

async fn audit_catalogs(
    config: &Config,
    target: &Target,
    client: &tokio_postgres::Client,
) -> Result<(usize, Vec<Finding>), tokio_postgres::Error> {
    let guc = &config.tenancy.guc;
    let column = &config.tenancy.tenant_column;
    // With only pg_catalog on the path, policy expressions come back schema-qualified.
    client
        .batch_execute("SET search_path = pg_catalog; SET default_transaction_read_only = on")
        .await?;
    let mut findings = Vec::new();

    // Upstream roles.
    let wanted: Vec<String> = target.roles.iter().cloned().collect();
    let rows = client
        .query(
            "SELECT rolname::text, rolsuper, rolbypassrls FROM pg_roles
             WHERE rolname::text = ANY($1::text[]) ORDER BY 1",
            &[&wanted],
        )
        .await?;
    let mut existing = Vec::new();
    let mut plain = Vec::new();
    for r in &rows {
        let role: String = r.get(0);
        if r.get::<_, bool>(1) {
            findings.push(Finding::Superuser { role: role.clone() });
        } else {
            plain.push(role.clone());
        }
        if r.get::<_, bool>(2) {
            findings.push(Finding::BypassRls { role: role.clone() });
        }
        existing.push(role);
    }
    for role in &wanted {
        if !existing.contains(role) {
            findings.push(Finding::RoleMissing { role: role.clone() });
        }
    }

    // Defaults for the tenant setting that apply to the upstream roles in this database.
    let rows = client
        .query(
            "SELECT CASE WHEN s.setrole = 0 THEN 'every role' ELSE 'role ' || r.rolname END
                    || CASE WHEN s.setdatabase = 0 THEN ' in every database'
                            ELSE ' in database ' || d.datname END,
                    c
             FROM pg_db_role_setting s
             LEFT JOIN pg_roles r ON r.oid = s.setrole
             LEFT JOIN pg_database d ON d.oid = s.setdatabase,
                  unnest(s.setconfig) AS c
             WHERE lower(split_part(c, '=', 1)) = lower($1)
               AND (s.setdatabase = 0 OR d.datname = current_database())
               AND (s.setrole = 0 OR r.rolname::text = ANY($2::text[]))
             ORDER BY 1",
            &[guc, &wanted],
        )
        .await?;
    for r in &rows {
        findings.push(Finding::GucDefault {
            scope: r.get(0),
            setting: r.get(1),
        });
    }

    // Tables with the tenant column.
    let rows = client
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
                        format_type(a.atttypid, a.atttypmod) {TENANT_TABLES} ORDER BY 1, 2"
            ),
            &[column],
        )
        .await?;
    let tables: Vec<TableRow> = rows
        .iter()
        .map(|r| {
            let schema: String = r.get(0);
            let name: String = r.get(1);
            TableRow {
                table: quote_qualified(&[schema.clone(), name.clone()]),
                key: (schema, name),
                rls: r.get(2),
                forced: r.get(3),
                column_type: r.get(4),
            }
        })
        .collect();

    // Permissive policies that apply to an upstream role (or PUBLIC), per table.
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, p.polname::text,
                    coalesce(pg_get_expr(p.polqual, p.polrelid), ''),
                    coalesce(pg_get_expr(p.polwithcheck, p.polrelid), ''),
                    p.polpermissive
                      AND (p.polroles = '{0}'
                           OR EXISTS (SELECT FROM unnest(p.polroles) pr, unnest($1::text[]) u
                                      WHERE pg_has_role(u::name, pr, 'MEMBER')))
             FROM pg_policy p
             JOIN pg_class c ON c.oid = p.polrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             ORDER BY 1, 2, 3",
            &[&existing],
        )
        .await?;
    let mut policies: BTreeMap<(String, String), Vec<PolicyRow>> = BTreeMap::new();
    for r in &rows {
        policies
            .entry((r.get(0), r.get(1)))
            .or_default()
            .push(PolicyRow {
                name: r.get(2),
                qual: r.get(3),
                with_check: r.get(4),
                applies: r.get(5),
            });
    }

    let reads_setting = |expr: &str| {
        let expr = expr.to_lowercase();
        expr.contains(&format!("'{}'", guc.to_lowercase()))
            || expr.contains("pgtenant.verified_tenant(")
    };
    for t in &tables {
        let table = t.table.clone();
        if !t.rls {
            findings.push(Finding::RlsDisabled {
                table,
                column: quote_ident(column),
                column_type: t.column_type.clone(),
                guc: guc.clone(),
                database: target.database.clone(),
            });
            continue;
        }
        if !t.forced {
            findings.push(Finding::RlsNotForced {
                table: table.clone(),
            });
        }
        let table_policies = policies.get(&t.key).map(Vec::as_slice).unwrap_or_default();
        if table_policies.is_empty() {
            findings.push(Finding::NoPolicy {
                table: table.clone(),
                column: quote_ident(column),
                column_type: t.column_type.clone(),
                guc: guc.clone(),
                database: target.database.clone(),
            });
        }
        for p in table_policies {
            let exprs = [&p.qual, &p.with_check];
            let ignores = exprs.iter().any(|e| !e.is_empty() && !reads_setting(e));
            if p.applies && ignores {
                findings.push(Finding::PolicyIgnoresGuc {
                    table: table.clone(),
                    policy: quote_ident(&p.name),
                    guc: guc.clone(),
                });
            }
        }
    }

    // Views that read their tables as an owner who bypasses RLS; materialized views, which
    // RLS cannot filter.
    let rows = client
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text, c.relkind = 'm', o.rolname::text,
                        o.rolsuper OR o.rolbypassrls,
                        coalesce((SELECT option_value::bool FROM pg_options_to_table(c.reloptions)
                                  WHERE option_name = 'security_invoker'), false)
                 {TENANT_VIEWS} ORDER BY 1, 2"
            ),
            &[column, &existing],
        )
        .await?;
    for r in &rows {
        let name = quote_qualified(&[r.get(0), r.get(1)]);
        let (materialized, owner_bypasses, invoker): (bool, bool, bool) =
            (r.get(2), r.get(4), r.get(5));
        if materialized {
            findings.push(Finding::MaterializedView {
                view: name,
                roles: existing.join(", "),
            });
        } else if owner_bypasses && !invoker {
            findings.push(Finding::ViewBypassesRls {
                view: name,
                owner: r.get(3),
            });
        }
    }

    // Signed mode's key, schema and function, when they exist.
    for role in &plain {
        let row = client
            .query_one(
                "SELECT
                   CASE WHEN to_regclass('pgtenant.signing_key') IS NOT NULL THEN
                     has_table_privilege($1::text::name, 'pgtenant.signing_key',
                                         'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
                   END,
                   CASE WHEN to_regnamespace('pgtenant') IS NOT NULL THEN
                     has_schema_privilege($1::text::name, 'pgtenant', 'CREATE')
                   END,
                   (SELECT bool_or(pg_has_role($1::text::name, p.proowner, 'USAGE'))
                      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname = 'pgtenant' AND p.proname = 'verified_tenant')",
                &[role],
            )
            .await?;
        let exposures = [
            (0, "can read or change pgtenant.signing_key"),
            (1, "may create objects in schema pgtenant"),
            (2, "owns pgtenant.verified_tenant()"),
        ];
        for (i, what) in exposures {
            if row.get::<_, Option<bool>>(i) == Some(true) {
                findings.push(Finding::SigningExposed {
                    role: role.clone(),
                    what: what.into(),
                });
            }
        }
    }

    // Upstream roles owning tenant tables (superusers are reported above).
    for role in &plain {
        let rows = client
            .query(
                &format!(
                    "SELECT n.nspname::text, c.relname::text, c.relforcerowsecurity {TENANT_TABLES}
                       AND pg_has_role($2::text::name, c.relowner, 'USAGE') ORDER BY 1, 2"
                ),
                &[column, role],
            )
            .await?;
        for r in &rows {
            findings.push(Finding::OwnsTable {
                role: role.clone(),
                table: quote_qualified(&[r.get(0), r.get(1)]),
                forced: r.get(2),
            });
        }
    }
    Ok((tables.len(), findings))
}

#[cfg(test)]
mod tests;
