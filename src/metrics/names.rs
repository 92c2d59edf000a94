//! Metric names (all prefixed `pgtenant_`), their help texts, and the label values of the
//! `kind` and `reason` labels. `docker/grafana/metrics.txt` lists the same names.

pub(crate) const CLIENT_CONNECTIONS: &str = "pgtenant_client_connections";
pub(crate) const SERVER_CONNECTIONS: &str = "pgtenant_server_connections";
pub(crate) const POOL_WAIT: &str = "pgtenant_pool_wait_seconds";
pub(crate) const TRANSACTIONS: &str = "pgtenant_transactions_total";
pub(crate) const QUERIES: &str = "pgtenant_queries_total";
pub(crate) const XACT_DURATION: &str = "pgtenant_transaction_duration_seconds";
pub(crate) const BYTES_RECEIVED: &str = "pgtenant_client_bytes_received_total";
pub(crate) const BYTES_SENT: &str = "pgtenant_client_bytes_sent_total";
pub(crate) const ERRORS: &str = "pgtenant_errors_total";
pub(crate) const AUTH_FAILURES: &str = "pgtenant_auth_failures_total";
pub(crate) const REJECTIONS: &str = "pgtenant_tenant_rejections_total";
pub(crate) const PREPARED_HITS: &str = "pgtenant_prepared_cache_hits_total";
pub(crate) const PREPARED_MISSES: &str = "pgtenant_prepared_cache_misses_total";
pub(crate) const PREPARED_EVICTIONS: &str = "pgtenant_prepared_cache_evictions_total";
pub(crate) const TENANT_SETUPS: &str = "pgtenant_tenant_setups_total";
pub(crate) const SHARD_UP: &str = "pgtenant_shard_up";
pub(crate) const RELOADS: &str = "pgtenant_config_reloads_total";

pub(super) const HELP: &[(&str, &str)] = &[
    (
        CLIENT_CONNECTIONS,
        "Client connections by state (active: holds a server connection; waiting: for one; idle).",
    ),
    (
        SERVER_CONNECTIONS,
        "Server connections by state (active, idle).",
    ),
    (POOL_WAIT, "Time clients waited for a server connection."),
    (TRANSACTIONS, "Transactions completed."),
    (
        QUERIES,
        "Queries (simple Query and extended Execute messages).",
    ),
    (
        XACT_DURATION,
        "Transaction duration, first client message to ReadyForQuery idle.",
    ),
    (BYTES_RECEIVED, "Bytes received from clients."),
    (BYTES_SENT, "Bytes sent to clients."),
    (
        ERRORS,
        "Errors pgtenant reported to clients or met, by kind.",
    ),
    (AUTH_FAILURES, "Failed logins, by reason."),
    (
        REJECTIONS,
        "Clients refused while naming their tenant, by reason.",
    ),
    (
        PREPARED_HITS,
        "Binds and Describes of a prepared statement the server connection already had.",
    ),
    (
        PREPARED_MISSES,
        "Prepared statements pgtenant had to Parse again on a server connection.",
    ),
    (
        PREPARED_EVICTIONS,
        "Prepared statements closed on a server connection to stay under its limit.",
    ),
    (
        TENANT_SETUPS,
        "Tenant setup statements (search_path or the tenant GUC) sent because a server connection was set up for another tenant or reset.",
    ),
    (
        SHARD_UP,
        "1 when the shard accepts connections, 0 when it is down.",
    ),
    (RELOADS, "Configuration reloads, by result."),
];

/// `kind` values of `pgtenant_errors_total`.
pub(crate) mod kind {
    pub(crate) const PROTOCOL: &str = "protocol";
    pub(crate) const LOGIN: &str = "login";
    pub(crate) const GUARD: &str = "guard_refused";
    pub(crate) const POOL_TIMEOUT: &str = "pool_timeout";
    pub(crate) const SHARD_UNAVAILABLE: &str = "shard_unavailable";
    pub(crate) const SERVER_LOST: &str = "server_lost";
    pub(crate) const SETUP_FAILED: &str = "setup_failed";
    pub(crate) const IDLE_TIMEOUT: &str = "idle_timeout";
    pub(crate) const CLOSED_BY_ADMIN: &str = "closed_by_admin";
}
