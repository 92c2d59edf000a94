//! `pgtenant rls`: the SQL that makes one table tenant-safe under shared placement (DESIGN §4):
//! row-level security enabled and forced, one policy for reads and writes on the tenant
//! setting, the tenant column defaulting to it, and an index hint. With `signed`, the policy
//! trusts the setting only when pgtenant's HMAC signature of it verifies.
//!
//! A pure text generator: it validates and quotes its inputs and never connects anywhere.

use std::fmt::Write;

use thiserror::Error;

use super::ident::{IdentError, parse_name, quote_ident, quote_qualified};

/// The tenant setting when none is given (the proxy's default `tenancy.guc`).
pub const DEFAULT_GUC: &str = "app.current_tenant";
/// The SQL type of the tenant column when none is given.
pub const DEFAULT_TYPE: &str = "text";
/// The policy name when none is given.
pub const DEFAULT_POLICY: &str = "tenant_isolation";

/// What to generate, as given on the command line (`pgtenant rls`'s arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct RlsOptions {
    /// The table, optionally schema-qualified, as SQL spells it: items, app."Orders".
    #[arg(long)]
    pub table: String,
    /// The tenant column.
    #[arg(long)]
    pub column: String,
    /// The setting pgtenant sets to the tenant's context value (tenancy.guc).
    #[arg(long, default_value = DEFAULT_GUC)]
    pub guc: String,
    /// The SQL type of the tenant column, e.g. uuid or bigint.
    #[arg(long = "type", default_value = DEFAULT_TYPE)]
    pub sql_type: String,
    /// Trust the setting only when pgtenant's HMAC signature (<guc>_sig) verifies.
    #[arg(long)]
    pub signed: bool,
    /// The policy's name.
    #[arg(long, default_value = DEFAULT_POLICY)]
    pub policy_name: String,
}

impl RlsOptions {
    /// Options for `table` and `column` with every default.
    pub fn new(table: &str, column: &str) -> Self {
        Self {
            table: table.to_owned(),
            column: column.to_owned(),
            guc: DEFAULT_GUC.to_owned(),
            sql_type: DEFAULT_TYPE.to_owned(),
            signed: false,
            policy_name: DEFAULT_POLICY.to_owned(),
        }
    }
}

/// An argument that cannot be turned into safe SQL.
#[derive(Debug, Error)]
pub enum RlsError {
    #[error("--table {value:?}: {source}")]
    Table { value: String, source: IdentError },
    #[error("--column {value:?}: {source}")]
    Column { value: String, source: IdentError },
    #[error("--policy-name {value:?}: {source}")]
    PolicyName { value: String, source: IdentError },
    #[error(
        "--guc {0:?}: a custom setting name is two or more dotted words of letters, digits and _, e.g. app.current_tenant"
    )]
    Guc(String),
    #[error(
        "--type {0:?}: a SQL type name of letters, digits, _, spaces, dots and a parenthesised modifier, e.g. uuid, bigint, varchar(64)"
    )]
    Type(String),
}

/// Generates the script for `opts`.
pub fn generate(opts: &RlsOptions) -> Result<String, RlsError> {
    let table_parts = parse_name(&opts.table, 2).map_err(|source| RlsError::Table {
        value: opts.table.clone(),
        source,
    })?;
    let column_parts = parse_name(&opts.column, 1).map_err(|source| RlsError::Column {
        value: opts.column.clone(),
        source,
    })?;
    let index = index_name(&table_parts, &column_parts);
    let table = quote_qualified(&table_parts);
    let column = quote_qualified(&column_parts);
    let policy = parse_name(&opts.policy_name, 1)
        .map(|p| quote_qualified(&p))
        .map_err(|source| RlsError::PolicyName {
            value: opts.policy_name.clone(),
            source,
        })?;
    let guc = valid_guc(&opts.guc).ok_or_else(|| RlsError::Guc(opts.guc.clone()))?;
    let ty = valid_type(&opts.sql_type).ok_or_else(|| RlsError::Type(opts.sql_type.clone()))?;
    let script = Script {
        table,
        column,
        policy,
        index,
        guc,
        ty,
        signed: opts.signed,
    };
    Ok(script.render())
}

/// A custom setting name: `word.word[.word...]`, words of ASCII letters, digits, `_` (first not
/// a digit). Nothing else can reach the generated string literals.
fn valid_guc(s: &str) -> Option<String> {
    let words: Vec<&str> = s.split('.').collect();
    let ok = words.len() >= 2
        && s.len() <= 63
        && words.iter().all(|w| {
            w.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    ok.then(|| s.to_owned())
}

/// A type name such as `uuid`, `bigint`, `character varying(64)`, `public.tenant_key`: it goes
/// into the SQL unquoted, so only characters that cannot end a statement, open a comment or a
/// string are allowed, and parentheses must balance.
fn valid_type(s: &str) -> Option<String> {
    let s = s.trim();
    let mut depth = 0i32;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            c if c.is_ascii_alphanumeric() || " _.,".contains(c) => {}
            _ => return None,
        }
        if depth < 0 {
            return None;
        }
    }
    let starts_well = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    (starts_well && depth == 0 && s.len() <= 100).then(|| s.to_owned())
}

/// Validated, quoted pieces of the script.
struct Script {
    table: String,
    column: String,
    policy: String,
    /// Suggested index name, quoted.
    index: String,
    guc: String,
    ty: String,
    signed: bool,
}

impl Script {
    fn sig_guc(&self) -> String {
        format!("{}_sig", self.guc)
    }

    /// The tenant the session may see, as an expression usable in a policy.
    fn policy_ctx(&self) -> String {
        if self.signed {
            // A scalar subquery runs the HMAC once per statement, not once per row.
            format!("(SELECT pgtenant.verified_tenant())::{}", self.ty)
        } else {
            self.default_ctx()
        }
    }

    /// The same, usable in a column default (no subqueries there).
    fn default_ctx(&self) -> String {
        if self.signed {
            format!("pgtenant.verified_tenant()::{}", self.ty)
        } else {
            format!(
                "NULLIF(current_setting('{}', true), '')::{}",
                self.guc, self.ty
            )
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        self.header(&mut out);
        out.push_str("BEGIN;\n\n");
        if self.signed {
            self.signed_setup(&mut out);
        }
        self.table_part(&mut out);
        out
    }

    fn header(&self, out: &mut String) {
        let Script {
            table,
            column,
            policy,
            guc,
            ty,
            ..
        } = self;
        let _ = writeln!(
            out,
            "-- pgtenant rls: tenant isolation for a shared-placement table.\n\
             --   table:          {table}\n\
             --   tenant column:  {column} ({ty})\n\
             --   tenant setting: {guc}\n\
             --   policy:         {policy}"
        );
        if self.signed {
            let _ = writeln!(out, "--   signature:      {} (signed mode)", self.sig_guc());
        }
        out.push_str(
            "--\n\
             -- Each row belongs to the tenant in its tenant column. pgtenant sets the tenant\n\
             -- setting to the tenant's context value before each transaction; the policy below\n\
             -- lets a session read and write only that tenant's rows. With the setting unset or\n\
             -- empty, no row is visible and none can be written.\n\
             --\n\
             -- Run it as the table's owner or a superuser. The role pgtenant logs in as must not\n\
             -- own the table, be a superuser or have BYPASSRLS (`pgtenant check` reports these).\n\
             -- Every run replaces the policy, so running it twice is harmless.\n",
        );
        if self.signed {
            out.push_str(
                "--\n\
                 -- Signed mode: the tenant setting counts only when the signature setting holds\n\
                 -- pgtenant's signature of it, lower-case hex of\n\
                 --   HMAC-SHA256(key, <tenant setting> || '/' || pg_backend_pid()).\n\
                 -- A session that sets the tenant setting itself (SET, set_config, a function...)\n\
                 -- cannot sign it and sees nothing. Give the key pgtenant signs with, in hex:\n\
                 --\n\
                 --   psql -v ON_ERROR_STOP=1 -v pgtenant_key=<hex key> -d <database> -f rls.sql\n\
                 --\n\
                 -- The key is stored once in pgtenant.signing_key, which only its owner can read;\n\
                 -- later runs (e.g. for other tables) keep it and may leave out -v pgtenant_key.\n\
                 -- Signed mode needs psql (\\if, :'pgtenant_key') and the pgcrypto extension.\n",
            );
        } else {
            out.push_str(
                "--\n\
                 --   psql -v ON_ERROR_STOP=1 -d <database> -f rls.sql\n",
            );
        }
        out.push('\n');
    }

    fn signed_setup(&self, out: &mut String) {
        let guc = &self.guc;
        let sig = self.sig_guc();
        let _ = write!(
            out,
            r#"-- Signed-mode setup, shared by every table (idempotent).
CREATE SCHEMA IF NOT EXISTS pgtenant;
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA pgtenant;
-- Nobody but the owner may create objects in pgtenant; every role may use the function.
REVOKE ALL ON SCHEMA pgtenant FROM PUBLIC;
GRANT USAGE ON SCHEMA pgtenant TO PUBLIC;

-- The signing key: one row, at least 16 bytes, readable only by its owner.
CREATE TABLE IF NOT EXISTS pgtenant.signing_key (key bytea NOT NULL CHECK (octet_length(key) >= 16));
CREATE UNIQUE INDEX IF NOT EXISTS signing_key_one_row ON pgtenant.signing_key ((true));
REVOKE ALL ON TABLE pgtenant.signing_key FROM PUBLIC;
\if :{{?pgtenant_key}}
INSERT INTO pgtenant.signing_key (key)
    SELECT decode(:'pgtenant_key', 'hex')
    WHERE NOT EXISTS (SELECT FROM pgtenant.signing_key);
\endif
DO $check$
BEGIN
    IF NOT EXISTS (SELECT FROM pgtenant.signing_key) THEN
        RAISE EXCEPTION 'pgtenant.signing_key is empty: run this script with psql -v pgtenant_key=<hex key>';
    END IF;
END
$check$;

-- pgtenant.verified_tenant(): {guc} when {sig} is its valid signature for this
-- server connection, else NULL. Created through format() only to name the schema pgcrypto
-- lives in (pgtenant, or wherever it was installed before).
DO $setup$
DECLARE
    crypto name := (SELECT n.nspname FROM pg_catalog.pg_extension e
                    JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                    WHERE e.extname = 'pgcrypto');
BEGIN
    EXECUTE format($create$
CREATE OR REPLACE FUNCTION pgtenant.verified_tenant() RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pgtenant, pg_temp
AS $fn$
DECLARE
    ctx text := NULLIF(current_setting('{guc}', true), '');
    sig text := current_setting('{sig}', true);
    k bytea;
BEGIN
    IF ctx IS NULL OR sig IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT key INTO k FROM pgtenant.signing_key;
    IF k IS NOT NULL
       AND sig = encode(%I.hmac(convert_to(ctx || '/' || pg_backend_pid()::text, 'UTF8'), k, 'sha256'), 'hex')
    THEN
        RETURN ctx;
    END IF;
    RETURN NULL;
END
$fn$$create$, crypto);
END
$setup$;
GRANT EXECUTE ON FUNCTION pgtenant.verified_tenant() TO PUBLIC;

"#
        );
    }

    fn table_part(&self, out: &mut String) {
        let Script {
            table,
            column,
            policy,
            index,
            ..
        } = self;
        let ctx = self.policy_ctx();
        let default = self.default_ctx();
        let _ = write!(
            out,
            r#"-- 1. Row-level security, for the table owner too.
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {table} FORCE ROW LEVEL SECURITY;

-- 2. One policy for reads (USING) and writes (WITH CHECK). Other permissive policies on the
--    table are OR-ed with it: each of them must read the tenant setting too.
DROP POLICY IF EXISTS {policy} ON {table};
CREATE POLICY {policy} ON {table}
    USING ({column} = {ctx})
    WITH CHECK ({column} = {ctx});

-- 3. Rows inserted without {column} get the session's tenant.
ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT {default};

COMMIT;

-- 4. Every query now filters on {column}. If no index starts with it, create one
--    (CONCURRENTLY does not block writes; it cannot run inside a transaction):
-- CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} ON {table} ({column});
"#
        );
    }
}

/// `<table>_<column>_idx`, quoted, cut to the 63 bytes PostgreSQL keeps.
fn index_name(table: &[String], column: &[String]) -> String {
    let table = table.last().map_or("", String::as_str);
    let column = column.last().map_or("", String::as_str);
    let mut name = String::new();
    for c in format!("{table}_{column}_idx").chars() {
        if name.len() + c.len_utf8() > 63 {
            break;
        }
        name.push(c);
    }
    quote_ident(&name)
}

#[cfg(test)]
mod tests;
