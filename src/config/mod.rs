//! Configuration: one TOML file overridable by `PGTENANT__SECTION__KEY` environment variables,
//! validated into an immutable [`Config`]. Invalid input never starts the proxy: the error
//! names the key and the reason.
//!
//! Owns the vocabulary of the file (placements, sources, pool modes); it must not do I/O beyond
//! reading the file and the secrets it points to.

mod jwt;
mod model;
pub(crate) mod template;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::jwt::JwtPolicy;
use crate::auth::limit::LimitSettings;
use crate::auth::scram::Verifier;
use template::Template;
use thiserror::Error;

/// A configuration problem, naming the key.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config: {key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("config: could not read {path}: {reason}")]
    Load { path: PathBuf, reason: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Pooling mode of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolMode {
    /// A server connection is held from the client's login to its logout.
    Session,
    /// A server connection is held for one transaction (released on `ReadyForQuery` `I`).
    Transaction,
}

/// Where a tenant's rows live (DESIGN §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlacementKind {
    Database,
    Schema,
    Shared,
}

/// A source a client may name its tenant with (DESIGN §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The tenant claim of a verified JWT given as the password.
    Jwt,
    Sni,
    Options,
    User,
    Database,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Jwt => "jwt",
            Source::Sni => "sni",
            Source::Options => "options",
            Source::User => "user",
            Source::Database => "database",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TenantStatus {
    Active,
    Suspended,
}

/// Server-wide settings.
#[derive(Debug, Clone)]
pub(crate) struct ServerSettings {
    pub(crate) listen: SocketAddr,
    pub(crate) max_client_conn: usize,
    /// 0 means no per-tenant cap.
    pub(crate) max_tenant_clients: usize,
    pub(crate) client_login_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    /// SIGINT: how long running transactions get before clients are closed.
    pub(crate) fast_shutdown_timeout: Duration,
    /// Runtime worker threads; 0 means one per CPU.
    pub(crate) workers: usize,
    /// Whether the worker threads are pinned to CPUs.
    pub(crate) cpu_affinity: CpuAffinity,
    /// Where Prometheus scrapes `/metrics`; `None` turns the endpoint off.
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// Label metrics by tenant (`all`) or not (`none`, bounded cardinality).
    pub(crate) tenant_labels: bool,
    /// Log lines as JSON objects instead of text.
    pub(crate) log_json: bool,
    /// A client idle (outside a transaction) this long is closed; zero: never.
    pub(crate) client_idle_timeout: Duration,
    /// A client idle inside a transaction this long is closed and its transaction rolled
    /// back; zero: never.
    pub(crate) idle_transaction_timeout: Duration,
}

/// `server.cpu_affinity`: whether each worker thread (lane) is pinned to a CPU of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CpuAffinity {
    /// Pinned when there is one lane for each CPU the process may run on, and more than one.
    Auto,
    /// Pinned whenever there is more than one lane (in turn, if there are more lanes than
    /// CPUs).
    On,
    Off,
}

#[derive(Debug, Clone)]
pub(crate) struct TlsSettings {
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
    /// Refuse clients that do not use TLS.
    pub(crate) require: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PoolSettings {
    pub(crate) mode: PoolMode,
    pub(crate) default_pool_size: usize,
    pub(crate) query_wait_timeout: Duration,
    pub(crate) server_idle_timeout: Duration,
    pub(crate) server_connect_timeout: Duration,
    /// Each connection lives a random 0.9-1.1 times this, so connections made together do not
    /// all expire together.
    pub(crate) server_lifetime: Duration,
    /// Prepared statements pgtenant keeps on one server connection; the least recently used
    /// is closed to make room. Zero: no limit.
    pub(crate) max_prepared_statements: usize,
    /// Server connections one tenant may hold at once in one pool; 0 means no cap.
    pub(crate) tenant_max_server_connections: usize,
    /// Server connections of all pools of one shard together; 0 means no cap.
    pub(crate) max_shard_connections: usize,
    /// How often a shard marked down is tried again (connect + authenticate).
    pub(crate) health_check_interval: Duration,
}

#[derive(Debug, Clone)]
pub(crate) struct Tenancy {
    pub(crate) sources: Vec<Source>,
    pub(crate) user_separator: String,
    pub(crate) sni_suffix: Option<String>,
    pub(crate) guc: String,
    /// Check every statement of shared-placement sessions (DESIGN §4).
    pub(crate) guard: bool,
    /// Signed context mode: the key pgtenant signs `<guc>_sig` with (see `pgtenant rls --signed`).
    pub(crate) signing_key: Option<Arc<[u8]>>,
    /// The column shared-placement tables key rows on (what `pgtenant check` looks for).
    pub(crate) tenant_column: String,
    /// Placement of tenants not listed; `None` refuses them.
    pub(crate) unlisted: Option<Rule>,
}

/// A PostgreSQL server holding tenants. Compared by value: a reload that changes any field
/// retires the shard's server connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shard {
    pub(crate) name: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: Option<String>,
}

/// How to place a tenant: the placement kind with its templates and candidate shards.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) kind: PlacementKind,
    pub(crate) database: Template,
    pub(crate) schema: Option<Template>,
    /// Upstream role; the shard's `user` when not set.
    pub(crate) role: Option<Template>,
    /// Shards to choose from by rendezvous hashing (one entry: fixed placement).
    pub(crate) shards: Vec<String>,
    pub(crate) pool_mode: Option<PoolMode>,
    pub(crate) pool_size: Option<usize>,
    /// Overrides `pool.tenant_max_server_connections` (0: no cap).
    pub(crate) max_server_connections: Option<usize>,
}

/// A tenant listed in the directory.
#[derive(Debug, Clone)]
pub(crate) struct TenantEntry {
    /// One allocation for all of the tenant's sessions: comparing two sessions' names is
    /// then a pointer comparison, and their routes share the name's cache line.
    pub(crate) name: Arc<str>,
    pub(crate) context: String,
    pub(crate) status: TenantStatus,
    pub(crate) rule: Rule,
    /// Clients at once; `None`: `server.max_tenant_clients`.
    pub(crate) max_clients: Option<usize>,
}

/// A pgtenant user (client side).
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(crate) verifier: Verifier,
    /// `None` means all tenants (`"*"`).
    pub(crate) tenants: Option<Vec<String>>,
    /// May use the admin console.
    pub(crate) admin: bool,
}

/// The validated, immutable configuration.
#[derive(Debug)]
pub struct Config {
    pub(crate) server: ServerSettings,
    pub(crate) tls: Option<TlsSettings>,
    pub(crate) pool: PoolSettings,
    pub(crate) tenancy: Tenancy,
    pub(crate) shards: BTreeMap<String, Arc<Shard>>,
    pub(crate) tenants: HashMap<String, TenantEntry>,
    pub(crate) users: HashMap<String, User>,
    /// JWT authentication; `Some` exactly when `tenancy.resolve` lists `jwt`. Users not listed
    /// under `[users]` then authenticate with a token.
    pub(crate) jwt: Option<Arc<JwtPolicy>>,
    /// Brute-force limits on failed logins (`[auth]`).
    pub(crate) auth_limit: LimitSettings,
}

impl Config {
    /// Reads `path`, applies `PGTENANT__SECTION__KEY` overrides, validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let built = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("PGTENANT")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()
            .map_err(|e| ConfigError::Load {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        let raw: model::RawConfig = built
            .try_deserialize()
            .map_err(|e| ConfigError::invalid(path.display().to_string(), e.to_string()))?;
        validate::validate(raw, path.parent())
    }

    /// Parses TOML text (no environment overrides); relative paths resolve from the cwd.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let built = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(|e| ConfigError::invalid("<toml>", e.to_string()))?;
        let raw: model::RawConfig = built
            .try_deserialize()
            .map_err(|e| ConfigError::invalid("<toml>", e.to_string()))?;
        validate::validate(raw, None)
    }

    /// Worker threads, one event loop each (`crate::lanes`): one per CPU unless
    /// `server.workers` says otherwise.
    pub fn workers(&self) -> usize {
        match self.server.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The CPUs to pin the lanes to (`server.cpu_affinity`), or `None` to leave them to the
    /// scheduler.
    pub(crate) fn lane_cpus(&self) -> Option<crate::affinity::CpuSet> {
        let workers = self.workers();
        if workers < 2 || self.server.cpu_affinity == CpuAffinity::Off {
            return None;
        }
        let allowed = crate::affinity::CpuSet::of_this_thread()?;
        match self.server.cpu_affinity {
            CpuAffinity::On => Some(allowed),
            _ => (allowed.cpus().len() == workers).then_some(allowed),
        }
    }

    /// The address clients connect to.
    pub fn listen(&self) -> SocketAddr {
        self.server.listen
    }

    /// Logs as JSON lines (`server.log_format = "json"`).
    pub fn log_json(&self) -> bool {
        self.server.log_json
    }
}

#[cfg(test)]
mod tests;
