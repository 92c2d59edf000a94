//! The file format: serde structures exactly as written in `pgtenant.toml`, before validation.
//! Nothing outside `config` sees these types.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawConfig {
    pub(crate) server: RawServer,
    pub(crate) tls: Option<RawTls>,
    pub(crate) pool: RawPool,
    pub(crate) tenancy: RawTenancy,
    pub(crate) shards: BTreeMap<String, RawShard>,
    pub(crate) tenants: BTreeMap<String, RawTenant>,
    pub(crate) users: BTreeMap<String, RawUser>,
    pub(crate) jwt: Option<RawJwt>,
    pub(crate) auth: RawAuth,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawServer {
    pub(crate) listen: String,
    pub(crate) max_client_conn: u32,
    pub(crate) max_tenant_clients: u32,
    pub(crate) client_login_timeout: f64,
    pub(crate) shutdown_timeout: f64,
    pub(crate) fast_shutdown_timeout: f64,
    pub(crate) workers: u32,
    pub(crate) cpu_affinity: String,
    pub(crate) metrics_addr: String,
    pub(crate) tenant_labels: String,
    pub(crate) log_format: String,
    pub(crate) client_idle_timeout: f64,
    pub(crate) idle_transaction_timeout: f64,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:6432".into(),
            max_client_conn: 1000,
            max_tenant_clients: 0,
            client_login_timeout: 15.0,
            shutdown_timeout: 30.0,
            fast_shutdown_timeout: 3.0,
            workers: 0,
            cpu_affinity: "auto".into(),
            metrics_addr: "127.0.0.1:9930".into(),
            tenant_labels: "all".into(),
            log_format: "text".into(),
            client_idle_timeout: 0.0,
            idle_transaction_timeout: 0.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub(crate) cert_file: String,
    pub(crate) key_file: String,
    #[serde(default)]
    pub(crate) require: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawPool {
    pub(crate) mode: String,
    pub(crate) default_pool_size: u32,
    pub(crate) query_wait_timeout: f64,
    pub(crate) server_idle_timeout: f64,
    pub(crate) server_connect_timeout: f64,
    pub(crate) server_lifetime: f64,
    pub(crate) max_prepared_statements: u32,
    pub(crate) tenant_max_server_connections: u32,
    pub(crate) max_shard_connections: u32,
    pub(crate) health_check_interval: f64,
}

impl Default for RawPool {
    fn default() -> Self {
        Self {
            mode: "transaction".into(),
            default_pool_size: 20,
            query_wait_timeout: 120.0,
            server_idle_timeout: 600.0,
            server_connect_timeout: 5.0,
            server_lifetime: 3600.0,
            max_prepared_statements: 200,
            tenant_max_server_connections: 0,
            max_shard_connections: 0,
            health_check_interval: 2.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawTenancy {
    pub(crate) resolve: Vec<String>,
    pub(crate) user_separator: String,
    pub(crate) sni_suffix: Option<String>,
    pub(crate) guc: String,
    pub(crate) guard: bool,
    pub(crate) signing_key_env: Option<String>,
    pub(crate) signing_key_file: Option<String>,
    pub(crate) tenant_column: String,
    pub(crate) unlisted: String,
    pub(crate) default: Option<RawRule>,
}

impl Default for RawTenancy {
    fn default() -> Self {
        Self {
            resolve: vec![
                "sni".into(),
                "options".into(),
                "user".into(),
                "database".into(),
            ],
            user_separator: ".".into(),
            sni_suffix: None,
            guc: "app.current_tenant".into(),
            guard: true,
            signing_key_env: None,
            signing_key_file: None,
            tenant_column: "tenant_id".into(),
            unlisted: "refuse".into(),
            default: None,
        }
    }
}

/// Placement rule for tenants not listed under `[tenants]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub(crate) placement: String,
    pub(crate) database: Option<String>,
    pub(crate) schema: Option<String>,
    pub(crate) role: Option<String>,
    pub(crate) shards: Option<Vec<String>>,
    pub(crate) pool_mode: Option<String>,
    pub(crate) pool_size: Option<u32>,
    pub(crate) max_server_connections: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShard {
    #[serde(default = "default_host")]
    pub(crate) host: String,
    #[serde(default = "default_port")]
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: Option<String>,
    pub(crate) password_env: Option<String>,
    pub(crate) password_file: Option<String>,
}

fn default_host() -> String {
    "127.0.0.1".into()
}

fn default_port() -> u16 {
    5432
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTenant {
    pub(crate) placement: String,
    pub(crate) shard: Option<String>,
    pub(crate) database: Option<String>,
    pub(crate) schema: Option<String>,
    pub(crate) role: Option<String>,
    pub(crate) context: Option<String>,
    #[serde(default = "default_status")]
    pub(crate) status: String,
    pub(crate) pool_mode: Option<String>,
    pub(crate) pool_size: Option<u32>,
    /// Clients of this tenant at once (overrides `server.max_tenant_clients`).
    pub(crate) max_clients: Option<u32>,
    pub(crate) max_server_connections: Option<u32>,
}

fn default_status() -> String {
    "active".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    pub(crate) password: String,
    #[serde(default = "all_tenants")]
    pub(crate) tenants: Vec<String>,
    /// May use the admin console (database `pgtenant`).
    #[serde(default)]
    pub(crate) admin: bool,
}

fn all_tenants() -> Vec<String> {
    vec!["*".into()]
}

/// `[jwt]`: tokens as passwords (used when `tenancy.resolve` lists `jwt`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwt {
    pub(crate) secret_env: Option<String>,
    pub(crate) secret_file: Option<String>,
    #[serde(default)]
    pub(crate) public_key_files: Vec<String>,
    pub(crate) jwks_file: Option<String>,
    pub(crate) algorithms: Option<Vec<String>>,
    pub(crate) issuer: Option<String>,
    pub(crate) audience: Option<String>,
    #[serde(default = "default_leeway")]
    pub(crate) leeway_seconds: u64,
    #[serde(default = "default_tenant_claim")]
    pub(crate) tenant_claim: String,
    pub(crate) role_claim: Option<String>,
    #[serde(default)]
    pub(crate) roles: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) allow_plaintext_loopback: bool,
    #[serde(default = "default_max_token_bytes")]
    pub(crate) max_token_bytes: u32,
}

fn default_leeway() -> u64 {
    30
}

fn default_tenant_claim() -> String {
    "tenant".into()
}

fn default_max_token_bytes() -> u32 {
    16 * 1024
}

/// `[auth]`: brute-force limits on failed logins, per client address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAuth {
    pub(crate) max_failures: u32,
    pub(crate) failure_window: f64,
    pub(crate) lockout: f64,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            max_failures: 10,
            failure_window: 60.0,
            lockout: 60.0,
        }
    }
}
