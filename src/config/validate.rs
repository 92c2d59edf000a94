//! Raw file structures → validated [`Config`]. Every error names its key.

use super::model::{RawConfig, RawPool, RawRule, RawShard, RawTenancy, RawTenant, RawUser};
use super::template::Template;
use super::{
    Config, ConfigError, CpuAffinity, PlacementKind, PoolMode, PoolSettings, Rule, ServerSettings,
    Shard, Source, Tenancy, TenantEntry, TenantStatus, TlsSettings, User,
};
use crate::auth::scram::Verifier;
use crate::tenant::name::valid_tenant_name;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(super) fn validate(raw: RawConfig, base: Option<&Path>) -> Result<Config, ConfigError> {
    let server = ServerSettings {
        listen: raw
            .server
            .listen
            .parse()
            .map_err(|e| ConfigError::invalid("server.listen", format!("{e}")))?,
        max_client_conn: positive("server.max_client_conn", raw.server.max_client_conn)?,
        max_tenant_clients: raw.server.max_tenant_clients as usize,
        client_login_timeout: seconds(
            "server.client_login_timeout",
            raw.server.client_login_timeout,
        )?,
        shutdown_timeout: seconds("server.shutdown_timeout", raw.server.shutdown_timeout)?,
        fast_shutdown_timeout: seconds(
            "server.fast_shutdown_timeout",
            raw.server.fast_shutdown_timeout,
        )?,
        workers: raw.server.workers as usize,
        cpu_affinity: match raw.server.cpu_affinity.as_str() {
            "auto" => CpuAffinity::Auto,
            "on" => CpuAffinity::On,
            "off" => CpuAffinity::Off,
            other => {
                return Err(ConfigError::invalid(
                    "server.cpu_affinity",
                    format!("{other:?}: use \"auto\", \"on\" or \"off\""),
                ));
            }
        },
        metrics_addr: match raw.server.metrics_addr.as_str() {
            "" | "off" => None,
            addr => Some(addr.parse().map_err(|e| {
                ConfigError::invalid(
                    "server.metrics_addr",
                    format!("{e}: give host:port, or \"off\""),
                )
            })?),
        },
        tenant_labels: match raw.server.tenant_labels.as_str() {
            "all" => true,
            "none" => false,
            other => {
                return Err(ConfigError::invalid(
                    "server.tenant_labels",
                    format!("{other:?}: use \"all\" or \"none\""),
                ));
            }
        },
        log_json: match raw.server.log_format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(ConfigError::invalid(
                    "server.log_format",
                    format!("{other:?}: use \"text\" or \"json\""),
                ));
            }
        },
        client_idle_timeout: seconds("server.client_idle_timeout", raw.server.client_idle_timeout)?,
        idle_transaction_timeout: seconds(
            "server.idle_transaction_timeout",
            raw.server.idle_transaction_timeout,
        )?,
    };
    let tls = raw.tls.map(|t| TlsSettings {
        cert_file: resolve_path(base, &t.cert_file),
        key_file: resolve_path(base, &t.key_file),
        require: t.require,
    });
    if let Some(t) = &tls {
        for (key, path) in [
            ("tls.cert_file", &t.cert_file),
            ("tls.key_file", &t.key_file),
        ] {
            if !path.is_file() {
                return Err(ConfigError::invalid(
                    key,
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
    }
    let pool = pool(&raw.pool)?;
    let shards = shards(raw.shards, base)?;
    if shards.is_empty() {
        return Err(ConfigError::invalid(
            "shards",
            "at least one shard is required, e.g. [shards.main] host = \"127.0.0.1\" port = 5432 user = \"pgtenant\"",
        ));
    }
    let tenancy = tenancy(raw.tenancy, &shards, base)?;
    let tenants = tenants(raw.tenants, &shards)?;
    let users = users(raw.users)?;
    let auth_limit = crate::auth::limit::LimitSettings {
        max_failures: raw.auth.max_failures,
        window: seconds("auth.failure_window", raw.auth.failure_window)?,
        lockout: seconds("auth.lockout", raw.auth.lockout)?,
    };
    let jwt = super::jwt::policy(raw.jwt, tenancy.sources.contains(&Source::Jwt), base)?;
    Ok(Config {
        server,
        tls,
        pool,
        tenancy,
        shards,
        tenants,
        users,
        jwt,
        auth_limit,
    })
}

fn positive(key: &str, v: u32) -> Result<usize, ConfigError> {
    if v == 0 {
        return Err(ConfigError::invalid(key, "must be at least 1"));
    }
    Ok(v as usize)
}

fn seconds(key: &str, v: f64) -> Result<Duration, ConfigError> {
    if !v.is_finite() || v < 0.0 {
        return Err(ConfigError::invalid(
            key,
            format!("must be a number of seconds >= 0, got {v}"),
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

fn positive_seconds(key: &str, v: f64) -> Result<Duration, ConfigError> {
    if !v.is_finite() || v <= 0.0 {
        return Err(ConfigError::invalid(
            key,
            format!("must be a number of seconds > 0, got {v}"),
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

pub(super) fn resolve_path(base: Option<&Path>, p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    match base {
        Some(b) if path.is_relative() && !b.as_os_str().is_empty() => b.join(path),
        _ => path,
    }
}

fn pool_mode(key: &str, s: &str) -> Result<PoolMode, ConfigError> {
    match s {
        "session" => Ok(PoolMode::Session),
        "transaction" => Ok(PoolMode::Transaction),
        other => Err(ConfigError::invalid(
            key,
            format!("{other:?} is not a pool mode: use \"session\" or \"transaction\""),
        )),
    }
}

fn pool(raw: &RawPool) -> Result<PoolSettings, ConfigError> {
    Ok(PoolSettings {
        mode: pool_mode("pool.mode", &raw.mode)?,
        default_pool_size: positive("pool.default_pool_size", raw.default_pool_size)?,
        query_wait_timeout: seconds("pool.query_wait_timeout", raw.query_wait_timeout)?,
        server_idle_timeout: seconds("pool.server_idle_timeout", raw.server_idle_timeout)?,
        server_connect_timeout: seconds("pool.server_connect_timeout", raw.server_connect_timeout)?,
        server_lifetime: seconds("pool.server_lifetime", raw.server_lifetime)?,
        max_prepared_statements: raw.max_prepared_statements as usize,
        tenant_max_server_connections: raw.tenant_max_server_connections as usize,
        max_shard_connections: raw.max_shard_connections as usize,
        health_check_interval: positive_seconds(
            "pool.health_check_interval",
            raw.health_check_interval,
        )?,
    })
}

fn shards(
    raw: BTreeMap<String, RawShard>,
    base: Option<&Path>,
) -> Result<BTreeMap<String, Arc<Shard>>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, s) in raw {
        let key = format!("shards.{name}");
        let set = [&s.password, &s.password_env, &s.password_file]
            .iter()
            .filter(|p| p.is_some())
            .count();
        if set > 1 {
            return Err(ConfigError::invalid(
                &key,
                "set only one of password, password_env, password_file",
            ));
        }
        let password = if let Some(var) = &s.password_env {
            Some(std::env::var(var).map_err(|_| {
                ConfigError::invalid(
                    format!("{key}.password_env"),
                    format!("environment variable {var} is not set"),
                )
            })?)
        } else if let Some(file) = &s.password_file {
            let path = resolve_path(base, file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::invalid(
                    format!("{key}.password_file"),
                    format!("{}: {e}", path.display()),
                )
            })?;
            Some(text.trim_end_matches(['\n', '\r']).to_owned())
        } else {
            s.password.clone()
        };
        if s.user.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.user"),
                "must not be empty",
            ));
        }
        out.insert(
            name.clone(),
            Arc::new(Shard {
                name,
                host: s.host,
                port: s.port,
                user: s.user,
                password,
            }),
        );
    }
    Ok(out)
}

fn known_shard(
    key: &str,
    name: &str,
    shards: &BTreeMap<String, Arc<Shard>>,
) -> Result<String, ConfigError> {
    if shards.contains_key(name) {
        return Ok(name.to_owned());
    }
    let known: Vec<&str> = shards.keys().map(String::as_str).collect();
    Err(ConfigError::invalid(
        key,
        format!("unknown shard {name:?} (known: {})", known.join(", ")),
    ))
}

fn template(key: String, s: &str) -> Result<Template, ConfigError> {
    Template::parse(s).map_err(|reason| ConfigError::invalid(key, reason))
}

fn placement(key: &str, s: &str) -> Result<PlacementKind, ConfigError> {
    match s {
        "database" => Ok(PlacementKind::Database),
        "schema" => Ok(PlacementKind::Schema),
        "shared" => Ok(PlacementKind::Shared),
        other => Err(ConfigError::invalid(
            key,
            format!("{other:?} is not a placement: use \"database\", \"schema\" or \"shared\""),
        )),
    }
}

/// Fields shared by a listed tenant and the rule for unlisted tenants.
struct RuleFields<'a> {
    placement: &'a str,
    database: Option<&'a str>,
    schema: Option<&'a str>,
    role: Option<&'a str>,
    pool_mode: Option<&'a str>,
    pool_size: Option<u32>,
    max_server_connections: Option<u32>,
}

fn rule(prefix: &str, f: RuleFields<'_>, shards: Vec<String>) -> Result<Rule, ConfigError> {
    let kind = placement(&format!("{prefix}.placement"), f.placement)?;
    let database = match (kind, f.database) {
        (_, Some(d)) => template(format!("{prefix}.database"), d)?,
        (PlacementKind::Database, None) => template(format!("{prefix}.database"), "{tenant}")?,
        (_, None) => {
            return Err(ConfigError::invalid(
                format!("{prefix}.database"),
                "required for schema and shared placements (the shared database's name)",
            ));
        }
    };
    let schema = match (kind, f.schema) {
        (PlacementKind::Schema, s) => Some(template(
            format!("{prefix}.schema"),
            s.unwrap_or("{tenant}"),
        )?),
        (_, Some(_)) => {
            return Err(ConfigError::invalid(
                format!("{prefix}.schema"),
                "only a schema placement has a schema",
            ));
        }
        (_, None) => None,
    };
    let role = f
        .role
        .map(|r| template(format!("{prefix}.role"), r))
        .transpose()?;
    let pool_mode = f
        .pool_mode
        .map(|m| pool_mode(&format!("{prefix}.pool_mode"), m))
        .transpose()?;
    let pool_size = f
        .pool_size
        .map(|s| positive(&format!("{prefix}.pool_size"), s))
        .transpose()?;
    Ok(Rule {
        kind,
        database,
        schema,
        role,
        shards,
        pool_mode,
        pool_size,
        max_server_connections: f.max_server_connections.map(|n| n as usize),
    })
}

fn source(key: &str, s: &str) -> Result<Source, ConfigError> {
    match s {
        "jwt" => Ok(Source::Jwt),
        "sni" => Ok(Source::Sni),
        "options" => Ok(Source::Options),
        "user" => Ok(Source::User),
        "database" => Ok(Source::Database),
        other => Err(ConfigError::invalid(
            key,
            format!("{other:?} is not a tenant source: use jwt, sni, options, user or database"),
        )),
    }
}

fn tenancy(
    raw: RawTenancy,
    shards: &BTreeMap<String, Arc<Shard>>,
    base: Option<&Path>,
) -> Result<Tenancy, ConfigError> {
    let signing_key = signing_key(&raw, base)?;
    let mut sources = Vec::new();
    for (i, s) in raw.resolve.iter().enumerate() {
        let src = source(&format!("tenancy.resolve[{i}]"), s)?;
        if sources.contains(&src) {
            return Err(ConfigError::invalid(
                format!("tenancy.resolve[{i}]"),
                format!("{s} is listed twice"),
            ));
        }
        sources.push(src);
    }
    if sources.is_empty() {
        return Err(ConfigError::invalid(
            "tenancy.resolve",
            "list at least one tenant source",
        ));
    }
    if raw.user_separator.is_empty() {
        return Err(ConfigError::invalid(
            "tenancy.user_separator",
            "must not be empty",
        ));
    }
    if sources.contains(&Source::Sni) && raw.sni_suffix.is_none() {
        // SNI is simply never present without a suffix; that is allowed but worth saying.
        tracing::debug!("tenancy.resolve lists sni but tenancy.sni_suffix is not set");
    }
    if raw.guc.is_empty() || !raw.guc.contains('.') {
        return Err(ConfigError::invalid(
            "tenancy.guc",
            format!(
                "{:?} is not a custom setting name: it must contain a dot, e.g. app.current_tenant",
                raw.guc
            ),
        ));
    }
    if raw.tenant_column.is_empty()
        || raw.tenant_column.len() > 63
        || raw.tenant_column.contains('\0')
    {
        return Err(ConfigError::invalid(
            "tenancy.tenant_column",
            "must be a column name of 1-63 bytes without NUL, e.g. tenant_id",
        ));
    }
    let unlisted = match (raw.unlisted.as_str(), raw.default) {
        ("refuse", _) => None,
        ("place", Some(d)) => Some(default_rule(d, shards)?),
        ("place", None) => {
            return Err(ConfigError::invalid(
                "tenancy.default",
                "tenancy.unlisted = \"place\" needs a [tenancy.default] rule",
            ));
        }
        (other, _) => {
            return Err(ConfigError::invalid(
                "tenancy.unlisted",
                format!("{other:?}: use \"refuse\" or \"place\""),
            ));
        }
    };
    Ok(Tenancy {
        sources,
        user_separator: raw.user_separator,
        sni_suffix: raw
            .sni_suffix
            .map(|s| s.trim_start_matches('.').to_ascii_lowercase()),
        guc: raw.guc,
        guard: raw.guard,
        signing_key,
        tenant_column: raw.tenant_column,
        unlisted,
    })
}

/// The signed-mode key: hex (at least 16 bytes) from `signing_key_env` or `signing_key_file`.
fn signing_key(raw: &RawTenancy, base: Option<&Path>) -> Result<Option<Arc<[u8]>>, ConfigError> {
    let (key, text) = match (&raw.signing_key_env, &raw.signing_key_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                "tenancy",
                "set only one of signing_key_env, signing_key_file",
            ));
        }
        (Some(var), None) => (
            "tenancy.signing_key_env",
            std::env::var(var).map_err(|_| {
                ConfigError::invalid(
                    "tenancy.signing_key_env",
                    format!("environment variable {var} is not set"),
                )
            })?,
        ),
        (None, Some(file)) => {
            let path = resolve_path(base, file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::invalid(
                    "tenancy.signing_key_file",
                    format!("{}: {e}", path.display()),
                )
            })?;
            ("tenancy.signing_key_file", text)
        }
        (None, None) => return Ok(None),
    };
    match hex::decode(text.trim()) {
        Ok(b) if b.len() >= 16 => Ok(Some(Arc::from(b))),
        _ => Err(ConfigError::invalid(
            key,
            "the signing key must be at least 16 bytes written as hex (e.g. openssl rand -hex 32)",
        )),
    }
}

fn default_rule(d: RawRule, shards: &BTreeMap<String, Arc<Shard>>) -> Result<Rule, ConfigError> {
    let candidates = match &d.shards {
        Some(list) if list.is_empty() => {
            return Err(ConfigError::invalid(
                "tenancy.default.shards",
                "list at least one shard, or leave it out for all shards",
            ));
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, s)| known_shard(&format!("tenancy.default.shards[{i}]"), s, shards))
            .collect::<Result<Vec<_>, _>>()?,
        None => shards.keys().cloned().collect(),
    };
    rule(
        "tenancy.default",
        RuleFields {
            placement: &d.placement,
            database: d.database.as_deref(),
            schema: d.schema.as_deref(),
            role: d.role.as_deref(),
            pool_mode: d.pool_mode.as_deref(),
            pool_size: d.pool_size,
            max_server_connections: d.max_server_connections,
        },
        candidates,
    )
}

fn tenants(
    raw: BTreeMap<String, RawTenant>,
    shards: &BTreeMap<String, Arc<Shard>>,
) -> Result<HashMap<String, TenantEntry>, ConfigError> {
    let mut out = HashMap::new();
    for (name, t) in raw {
        let key = format!("tenants.{name}");
        if !valid_tenant_name(&name) {
            return Err(ConfigError::invalid(
                &key,
                "a tenant name is 1-63 characters of a-z, A-Z, 0-9, _ and -",
            ));
        }
        if name == crate::admin::DATABASE {
            return Err(ConfigError::invalid(
                &key,
                "this name is the admin console's database; choose another",
            ));
        }
        let candidates = match &t.shard {
            Some(s) => vec![known_shard(&format!("{key}.shard"), s, shards)?],
            None => shards.keys().cloned().collect(),
        };
        let status = match t.status.as_str() {
            "active" => TenantStatus::Active,
            "suspended" => TenantStatus::Suspended,
            other => {
                return Err(ConfigError::invalid(
                    format!("{key}.status"),
                    format!("{other:?}: use \"active\" or \"suspended\""),
                ));
            }
        };
        let context = t.context.clone().unwrap_or_else(|| name.clone());
        if context.is_empty() || context.contains('\0') {
            return Err(ConfigError::invalid(
                format!("{key}.context"),
                "must be a non-empty string without NUL",
            ));
        }
        let rule = rule(
            &key,
            RuleFields {
                placement: &t.placement,
                database: t.database.as_deref(),
                schema: t.schema.as_deref(),
                role: t.role.as_deref(),
                pool_mode: t.pool_mode.as_deref(),
                pool_size: t.pool_size,
                max_server_connections: t.max_server_connections,
            },
            candidates,
        )?;
        out.insert(
            name.clone(),
            TenantEntry {
                name: Arc::from(name),
                context,
                status,
                rule,
                max_clients: t.max_clients.map(|m| m as usize),
            },
        );
    }
    Ok(out)
}

fn users(raw: BTreeMap<String, RawUser>) -> Result<HashMap<String, User>, ConfigError> {
    let mut out = HashMap::new();
    for (name, u) in raw {
        let key = format!("users.{name}");
        let verifier = Verifier::parse(&u.password).map_err(|reason| {
            ConfigError::invalid(
                format!("{key}.password"),
                format!(
                    "{reason}; store a SCRAM-SHA-256 verifier (print one with `pgtenant hash-password`), never a plaintext password"
                ),
            )
        })?;
        let tenants = if u.tenants.iter().any(|t| t == "*") {
            None
        } else {
            Some(u.tenants)
        };
        out.insert(
            name,
            User {
                verifier,
                tenants,
                admin: u.admin,
            },
        );
    }
    Ok(out)
}
