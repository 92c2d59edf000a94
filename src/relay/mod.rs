//! The hot path: header-level forwarding between a client and the server connection serving
//! it, transaction boundaries from `ReadyForQuery`, and the tenant setup injected in the same
//! write as the client's first message of each server attachment.
//!
//! Bytes are forwarded as read; only the 5-byte headers are decoded, plus the status byte of
//! `ReadyForQuery` and the replies to pgtenant's own setup statements. No config lookups and no
//! locks across `.await` here.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

mod buffer;
mod cancelled;
mod deallocate;
mod expect;
mod listen;
pub(crate) mod params;
mod prepared;
pub(crate) mod stale;
mod taint;

use buffer::{BUF_CAPACITY, rewind};
use expect::{Expect, Expected};
use prepared::{Prepared, Statements, cstr};
use stale::StalePlans;
use taint::Words;

use crate::backend::conn::{ServerConn, SessionState};
use crate::config::PoolMode;
use crate::error::{
    ADMIN_SHUTDOWN, CONNECTION_FAILURE, ClientError, ClientFacing, FEATURE_NOT_SUPPORTED,
    IDLE_IN_TRANSACTION_TIMEOUT, IDLE_SESSION_TIMEOUT, INSUFFICIENT_PRIVILEGE,
    INVALID_STATEMENT_NAME, PROTOCOL_VIOLATION, SYNTAX_ERROR,
};
use crate::guard::{Effects, Guard, Rejection, Source, Verdict};
use crate::metrics::stats::Tally;
use crate::metrics::{StatsKey, TenantStats, kind};
use crate::pool::PoolError;
use crate::pool::{Checkout, Keeper, Kept};
use crate::protocol::header::{Header, backend, frontend, tag_name};
use crate::protocol::messages::{self, Severity};
use crate::routing::Route;
use crate::routing::signing::Signing;
use crate::server::Shared;
use crate::session::login::{self, LoggedIn};
use crate::session::registry::{ClientInfo, ClientState, Stop};
use crate::stream::ClientStream;
use crate::tenant::name::same_tenant;

/// Stop reading one side while this much is queued for the other (backpressure).
const HIGH_WATER: usize = 256 * 1024;

/// How a client's session ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Outcome {
    #[error("client left")]
    ClientLeft,
    #[error("server connection lost: {0}")]
    ServerLost(String),
    #[error("tenant setup statement failed: {0}")]
    SetupFailed(String),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("no server connection: {0}")]
    NoServer(String),
    #[error("client connection failed: {0}")]
    ClientIo(String),
    #[error("closed: {0}")]
    Stopped(String),
    #[error("idle too long: {0}")]
    IdleTimeout(&'static str),
}

impl Outcome {
    /// The `kind` of `pgtenant_errors_total` this ending counts as, if it is an error.
    fn error_kind(&self) -> Option<&'static str> {
        match self {
            Outcome::ClientLeft | Outcome::ClientIo(_) => None,
            Outcome::ServerLost(_) => Some(kind::SERVER_LOST),
            Outcome::SetupFailed(_) => Some(kind::SETUP_FAILED),
            Outcome::Protocol(_) => Some(kind::PROTOCOL),
            Outcome::NoServer(_) => None,
            Outcome::Stopped(_) => Some(kind::CLOSED_BY_ADMIN),
            Outcome::IdleTimeout(_) => Some(kind::IDLE_TIMEOUT),
        }
    }
}

/// What a session moved, for its disconnect log line.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Totals {
    pub(crate) bytes_received: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) transactions: u64,
}

/// Why an attachment ended.
enum Pump {
    /// At a transaction boundary in transaction mode: give the server back.
    Release,
    /// The client left; `clean` says whether the server is at an idle boundary.
    ClientGone {
        clean: bool,
    },
    ServerLost(String),
    SetupFailed(Bytes),
    Protocol(String),
    ClientIo(String),
    /// The operator (or shutdown) asked the session to end.
    Stopped,
    /// The client sat idle past a timeout; the error is queued in `cout`.
    IdleTimeout {
        in_transaction: bool,
    },
}

/// Buffers and protocol state of one client session.
///
/// `repr(C)`: the fields stay in the order written, those every transaction uses first, so
/// that a transaction touches a few cache lines of it rather than most of its 16. With the
/// state of every busy session cycling through the CPU caches, each line a transaction need
/// not touch is a miss saved, for the proxy and for the PostgreSQL backends beside it.
#[repr(C)]
struct Relay {
    /// Client bytes read but not yet scanned.
    cin: BytesMut,
    /// Bytes queued for the client.
    cout: BytesMut,
    /// Server bytes read but not yet scanned.
    sin: BytesMut,
    /// Bytes queued for the server.
    sout: BytesMut,
    /// Body bytes of the current client message still to pass through.
    c_rem: usize,
    /// Body bytes of the current server message still to pass through (or drop, if hidden).
    s_rem: usize,
    /// Replies the server still owes, in order.
    expected: Expected,
    /// When the running transaction's first client message was seen (for a message that
    /// waited for a server connection: when the connection was granted).
    xact_start: Option<Instant>,
    /// When the last transaction ended, if none has started since: the time its server
    /// connection was last used, for the release.
    ended_at: Option<Instant>,
    /// The tenant's statistics (transaction durations are recorded as they end).
    stats: Arc<TenantStats>,
    /// Statements whose plan went stale on some server connection.
    stale_plans: Arc<StalePlans>,
    /// Scratch list for statements whose Parse was skipped after an error.
    dropped: Vec<Box<str>>,
    /// The `params_key` of a server connection that carries this client's settings as the
    /// client left them: `params.key`, or a key of this session's own once the client changed
    /// a reported setting (so that its next transaction on that connection keeps the change,
    /// and any other client's gets its own parameters sent again).
    params_in_force: u64,
    /// Which lane of the tenant's statistics this session adds to.
    lane: usize,
    /// Statements the guard refused since the last flush.
    refused: u64,
    /// A request cancelled while it waited for a server connection, still being dropped.
    skip: Option<cancelled::Skip>,
    /// Shared placement: the statement guard, and the tenant setup statement to send again
    /// when a client reset it.
    guard: Option<Guard>,
    setup: Option<Arc<str>>,
    /// The last Parse scanned, and what the scans found.
    last_parse: taint::LastParse,
    /// Whole-session totals (for the disconnect log line).
    totals: Totals,
    /// The guard's verdict on the client's last unnamed Parse that reached the server.
    unnamed_verdict: Option<Arc<Verdict>>,
    /// `client_idle_timeout` and `idle_transaction_timeout` (zero: off).
    idle_timeout: Duration,
    idle_xact_timeout: Duration,
    /// Transaction status from the last ReadyForQuery.
    status: u8,
    /// The current server message is a reply to pgtenant's own request.
    s_hide: bool,
    /// Extended-protocol messages sent since the last Sync.
    unsynced: bool,
    /// The client sent Terminate or closed.
    client_gone: bool,
    /// The rest of the current client message is dropped, not forwarded (refused).
    c_drop: bool,
    /// This client Parsed the unnamed statement during the current attachment (otherwise
    /// the server's unnamed statement, if any, is someone else's).
    unnamed_here: bool,
    /// The client's last unnamed Parse may change settings.
    unnamed_taints: bool,
    /// The client's last unnamed Parse may drop prepared statements.
    unnamed_drops: bool,
    /// The route has a setup statement whose effect must be tracked (schema, shared).
    track_context: bool,
    /// The pool is in transaction mode (`LISTEN` is refused).
    transaction_mode: bool,
    /// The client was sent the server's FATAL (or PANIC) error: the server ends the session
    /// and has said why, so pgtenant adds no error of its own when the connection closes.
    server_said_fatal: bool,
    // Last of what every transaction uses: what it adds to its first lines (see `Tally`).
    /// Counted since the last flush into the tenant's statistics.
    tally: Tally,
    // Less used from here on.
    /// The client's named prepared statements.
    statements: Statements,
    /// The client's session parameters, put in force on each server connection it uses.
    params: params::SessionParams,
    /// `pool.max_prepared_statements` (zero: no limit).
    max_prepared: usize,
    signing: Option<Signing>,
}

/// A statement the server is sure to reject (syntax error): sent in place of a refused one so
/// that the server's transaction state matches the error the client gets.
const REFUSED_SQL: &str = "pgtenant refused this statement";
/// Name used for the refused replacement Parse/Bind; never created on the server.
const REFUSED_NAME: &str = "pgtenant_refused";
/// Longest simple Query the guard reads whole; longer ones are refused.
const GUARD_QUERY_LIMIT: usize = 16 * 1024 * 1024;

/// Messages the relay must see whole (they are small): it rewrites or reads them.
fn needs_whole(tag: u8) -> bool {
    matches!(
        tag,
        frontend::PARSE | frontend::BIND | frontend::DESCRIBE | frontend::CLOSE
    )
}

/// Longest Query the relay reads whole to notice `DISCARD`/`DEALLOCATE` and settings changes;
/// longer ones are passed through and count as changing both.
const QUERY_SCAN_LIMIT: usize = 64 * 1024;

impl Relay {
    fn new(
        route: &Route,
        guard: Option<Guard>,
        stats: Arc<TenantStats>,
        params: params::SessionParams,
        stale_plans: Arc<StalePlans>,
    ) -> Self {
        let track_context = route.setup_sql.is_some();
        Relay {
            cin: BytesMut::with_capacity(BUF_CAPACITY),
            cout: BytesMut::with_capacity(BUF_CAPACITY),
            sin: BytesMut::with_capacity(BUF_CAPACITY),
            sout: BytesMut::with_capacity(BUF_CAPACITY),
            c_rem: 0,
            s_rem: 0,
            s_hide: false,
            server_said_fatal: false,
            expected: Expected::default(),
            unsynced: false,
            status: b'I',
            statements: Statements::default(),
            client_gone: false,
            unnamed_taints: false,
            unnamed_drops: false,
            track_context,
            dropped: Vec::new(),
            guard,
            setup: route.setup_sql.clone(),
            signing: route.signing.clone(),
            unnamed_verdict: None,
            unnamed_here: false,
            c_drop: false,
            tally: Tally::default(),
            refused: 0,
            xact_start: None,
            ended_at: None,
            stats,
            totals: Totals::default(),
            idle_timeout: Duration::ZERO,
            idle_xact_timeout: Duration::ZERO,
            max_prepared: 0,
            params_in_force: params.key,
            params,
            lane: 0,
            transaction_mode: route.mode == PoolMode::Transaction,
            stale_plans,
            skip: None,
            last_parse: taint::LastParse::default(),
        }
    }

    /// Moves to a new route after a reload (same tenant, possibly another place).
    fn set_route(&mut self, route: &Route, guard: Option<Guard>, stats: Arc<TenantStats>) {
        self.flush_stats();
        self.track_context = route.setup_sql.is_some();
        self.guard = guard;
        self.setup = route.setup_sql.clone();
        self.signing = route.signing.clone();
        self.stats = stats;
        self.transaction_mode = route.mode == PoolMode::Transaction;
    }

    /// The configuration values the relay reads per transaction, copied out of the snapshot
    /// (no config lookups on the hot path).
    fn take_settings(&mut self, config: &crate::config::Config) {
        self.idle_timeout = config.server.client_idle_timeout;
        self.idle_xact_timeout = config.server.idle_transaction_timeout;
        self.max_prepared = config.pool.max_prepared_statements;
    }

    /// Adds what was counted to the tenant's statistics.
    fn flush_stats(&mut self) {
        self.totals.bytes_received += self.tally.bytes_received;
        self.totals.bytes_sent += self.tally.bytes_sent;
        self.totals.transactions += self.tally.transactions;
        self.stats.add(self.lane, &mut self.tally);
    }

    /// Queues `reason` as the client's error in place of one request: the request is
    /// replaced by one the server rejects, and the server's error by this one.
    fn refuse(&mut self, tag: u8, code: &'static str, message: &str) {
        let mut error = BytesMut::new();
        messages::error_response(&mut error, Severity::Error, code, message, None);
        self.refuse_with(tag, error.freeze());
    }

    /// [`Relay::refuse`] with the client's error given whole (an ErrorResponse message).
    fn refuse_with(&mut self, tag: u8, error: Bytes) {
        let simple = matches!(tag, frontend::QUERY | frontend::FUNCTION_CALL);
        if simple {
            messages::query(&mut self.sout, REFUSED_SQL);
        } else {
            // Parse of a statement that cannot be parsed: every extended message in place
            // of which this is sent fails the same way and makes the server skip to Sync.
            // The body after the name: query, NUL, no parameter types.
            let body = [REFUSED_SQL.as_bytes(), b"\0\0\0"].concat();
            prepared::parse_message(&mut self.sout, REFUSED_NAME, &body);
        }
        self.expected.push(Expect::Refused { error, simple });
        match tag {
            frontend::QUERY => {
                self.expected.push(Expect::Query);
            }
            frontend::FUNCTION_CALL => {
                self.expected.push(Expect::FunctionCall);
            }
            _ => {}
        }
    }

    /// A statement refused by the guard.
    fn refuse_statement(&mut self, tag: u8, reason: &str) {
        self.reject(tag, &Rejection::Refused(reason.to_owned()));
    }

    /// A statement the guard did not forward: refused (`42501`), or one PostgreSQL's parser
    /// rejects (`42601`, with the parser's message, as the server would say it).
    fn reject(&mut self, tag: u8, rejection: &Rejection) {
        match rejection {
            Rejection::Refused(reason) => {
                self.refused += 1;
                if let Some(g) = &self.guard {
                    tracing::warn!(tenant = %g.tenant, %reason, "statement refused");
                }
                self.refuse(
                    tag,
                    INSUFFICIENT_PRIVILEGE,
                    &format!("pgtenant refused this statement: {reason}"),
                );
            }
            Rejection::Invalid(message) => self.refuse(tag, SYNTAX_ERROR, message),
        }
    }

    /// Queues a statement of pgtenant's own (reset, tenant setup); its replies are hidden.
    fn hidden_query(&mut self, sql: &str) {
        messages::query(&mut self.sout, sql);
        self.expected.push(Expect::HiddenQuery);
    }

    /// Records what an admitted statement may leave on the server connection.
    fn apply(conn: &mut ServerConn, e: Effects) {
        if e.resets_context {
            // RESET ALL and DISCARD ALL reset the client's startup parameters as well.
            conn.context = None;
            conn.params_key = params::UNKNOWN;
        }
        if e.session_state {
            conn.params_key = params::UNKNOWN;
        }
        if e.drops_statements {
            prepared::forget_all(conn);
        }
        conn.dirty_session |= e.session_state;
        conn.dirty_sequences |= e.sequences;
    }

    /// Sends the tenant setup again if a client reset it, before the client's next request
    /// (not inside a failed transaction, where nothing runs but its end).
    fn ensure_context(&mut self, conn: &mut ServerConn) {
        if conn.context.is_none()
            && !self.unsynced
            && self.status != b'E'
            && let Some(sql) = self.setup_for(conn)
        {
            self.hidden_query(&sql);
            conn.context = Some(sql);
        }
    }

    /// The tenant setup statement for this server connection (signed mode signs it for the
    /// connection's backend pid).
    fn setup_for(&self, conn: &ServerConn) -> Option<Arc<str>> {
        match &self.signing {
            Some(s) => Some(s.setup_for(conn.cancel.pid)),
            None => self.setup.clone(),
        }
    }

    /// Prepares a freshly checked-out server: reset if another tenant (or a session-mode
    /// client) used it, then the route's setup statement. Queued ahead of the client's bytes,
    /// so it costs no round trip.
    /// `started`: when the client message waiting for this connection started its
    /// transaction (`None`: no message waits).
    fn attach(&mut self, conn: &mut ServerConn, route: &Route, started: Option<Instant>) {
        if started.is_some() && self.xact_start.is_none() {
            self.xact_start = started;
            self.ended_at = None;
        }
        let foreign = match &conn.state {
            SessionState::Clean => false,
            SessionState::UsedBy(t) => !same_tenant(t, &route.tenant),
        };
        // Guarded sessions say what they left behind; others may have left anything.
        if conn.needs_reset || (foreign && conn.dirty_session) {
            // DISCARD ALL leaves random()'s seed as the last client set it (setseed): the
            // next tenant gets a fresh one, not numbers the last one can predict.
            // (Two messages: DISCARD ALL cannot run in the implicit transaction of one.)
            self.hidden_query("DISCARD ALL");
            let seed = rand::random::<f64>() * 2.0 - 1.0;
            self.hidden_query(&format!(
                "SELECT pg_catalog.setseed({seed:.15}::pg_catalog.float8)"
            ));
            conn.prepared.clear();
            conn.prepared_unknown = false;
            conn.context = None;
            conn.params_key = params::UNKNOWN;
            conn.dirty_session = false;
            conn.dirty_sequences = false;
        } else {
            let sequences = foreign && conn.dirty_sequences;
            let sql = match (sequences, conn.prepared_unknown) {
                (true, true) => Some("DISCARD SEQUENCES; DEALLOCATE ALL"),
                (true, false) => Some("DISCARD SEQUENCES"),
                (false, true) => Some("DEALLOCATE ALL"),
                (false, false) => None,
            };
            if let Some(sql) = sql {
                self.hidden_query(sql);
            }
            if conn.prepared_unknown {
                conn.prepared.clear();
                conn.prepared_unknown = false;
            }
            if sequences {
                conn.dirty_sequences = false;
            }
        }
        if self.guard.is_none() {
            conn.dirty_session = true;
        }
        self.sync_stale(conn);
        self.unnamed_here = false;
        if conn.params_key != self.params_in_force {
            self.params_in_force = self.params.key;
            let sql = self.params.sql.clone();
            self.hidden_query(&sql);
            conn.params_key = self.params.key;
        }
        if let Some(sql) = self.setup_for(conn) {
            // Sent unless this very statement is in force and nothing since could undo it.
            if conn.context.as_deref() != Some(&*sql) {
                self.hidden_query(&sql);
                conn.context = Some(sql);
                self.tally.setups += 1;
            }
        }
        // Left as it is when it names this tenant already (`foreign` false): swapping one
        // session's copy of the name for another's writes to both their reference counts.
        if foreign || conn.state == SessionState::Clean {
            conn.state = SessionState::UsedBy(route.tenant.clone());
        }
        conn.needs_reset = false;
        self.status = b'I';
    }

    /// True when the server may be handed to someone else.
    fn at_boundary(&self) -> bool {
        self.expected.is_empty()
            && !self.unsynced
            && self.status == b'I'
            && self.c_rem == 0
            && self.cin.is_empty()
            && self.s_rem == 0
            && self.sin.is_empty()
            && self.sout.is_empty()
    }

    /// Makes sure the server has `p` prepared, injecting its Parse (reply hidden) if not.
    fn ensure_prepared(&mut self, conn: &mut ServerConn, p: &Prepared) {
        if conn.prepared.touch(&p.server_name) {
            self.tally.prepared_hits += 1;
        } else {
            self.tally.prepared_misses += 1;
            self.close_if_unknown(conn, p);
            self.make_room(conn, &p.server_name);
            self.sout.extend_from_slice(&p.parse);
            if self.expected.push(Expect::HiddenParse {
                prepared: p.server_name.clone(),
            }) {
                conn.prepared.insert(p.server_name.clone());
            }
        }
    }

    /// Before pgtenant prepares `name` on a connection holding `max_prepared_statements`:
    /// Close the least recently used other one (reply hidden).
    fn make_room(&mut self, conn: &mut ServerConn, name: &str) {
        if self.max_prepared == 0 || conn.prepared.len() < self.max_prepared {
            return;
        }
        if let Some(victim) = conn.prepared.least_recent(name) {
            prepared::close_statement(&mut self.sout, &victim);
            // Skipped by a server discarding messages until Sync: then it stays prepared.
            if self.expected.push(Expect::HiddenClose) {
                conn.prepared.remove(&victim);
                self.tally.prepared_evictions += 1;
            }
        }
    }

    /// After a client may have dropped statements the server may still hold `p` though
    /// `conn.prepared` does not list it, and when the server holds `p` with a stale plan:
    /// Close it (no error if absent) before Parsing it.
    fn close_if_unknown(&mut self, conn: &mut ServerConn, p: &Prepared) {
        let stale = conn.prepared.is_stale(&p.server_name);
        if conn.prepared_unknown || stale {
            prepared::close_statement(&mut self.sout, &p.server_name);
            // Skipped by a server discarding messages until Sync: then it stays stale.
            if self.expected.push(Expect::HiddenClose) && stale {
                conn.prepared.closed_stale(&p.server_name);
            }
        }
    }

    /// Marks on `conn` the statements that went stale on other server connections since it
    /// last looked (one atomic load when nothing did).
    fn sync_stale(&self, conn: &mut ServerConn) {
        let seen = conn.prepared.stale_epoch;
        if self.stale_plans.epoch() != seen {
            let prepared = &mut conn.prepared;
            prepared.stale_epoch = self.stale_plans.since(seen, |n| prepared.mark_stale(n));
        }
    }

    /// The server answered a Bind or Describe of `p` with "cached plan must not change result
    /// type": the client gets that error, and `p` is parsed again before its next use here and
    /// on every other server connection that holds it.
    fn plan_went_stale(&self, conn: &mut ServerConn, p: &Prepared) {
        tracing::info!(statement = %p.server_name, "prepared statement's plan went stale; it is parsed again on its next use");
        p.stale.store(true, Ordering::Relaxed);
        conn.prepared.mark_stale(&p.server_name);
        let (before, after) = self.stale_plans.mark(&p.server_name);
        if conn.prepared.stale_epoch == before {
            conn.prepared.stale_epoch = after;
        }
    }

    /// True if the client's statement `p` went stale after the client prepared it (here or,
    /// as the log says, on another server connection): like on PostgreSQL, using it fails with
    /// "cached plan must not change result type" until the client prepares it again, since the
    /// result description the client holds is out of date.
    fn went_stale(&self, p: &Prepared) -> bool {
        if p.stale.load(Ordering::Relaxed) {
            return true;
        }
        let checked = p.checked.load(Ordering::Relaxed);
        let now = self.stale_plans.epoch();
        if now != checked {
            if self.stale_plans.logged_since(checked, &p.server_name) {
                p.stale.store(true, Ordering::Relaxed);
                return true;
            }
            p.checked.store(now, Ordering::Relaxed);
        }
        false
    }

    /// Fake replies at the head of the queue go to the client (see `Expected::drain_fakes`).
    fn drain_fakes(&mut self) {
        if self.expected.drain_fakes(&mut self.cout, self.status) {
            self.transaction_ended();
        }
    }

    /// A simple Query that is exactly `DEALLOCATE [PREPARE] name` (`name` as
    /// `deallocate::statement_name` found it) of one of the client's own statements: the name
    /// leaves the client's map and pgtenant answers as PostgreSQL would. True if it did;
    /// anything else goes to the server unchanged.
    fn deallocate_own(&mut self, name: Option<String>) -> bool {
        let Some(name) = name else {
            return false;
        };
        if self.statements.get(name.as_bytes()).is_none() {
            return false;
        }
        if self.expected.is_empty() && !self.unsynced {
            // In a failed transaction PostgreSQL refuses it (25P02) and keeps the statement:
            // the server gives that answer itself.
            if self.status == b'E' {
                return false;
            }
            self.statements.close(name.as_bytes());
            deallocate::write_done(&mut self.cout, self.status);
            if self.status == b'I' {
                self.transaction_ended();
            }
        } else {
            // Behind replies still owed: answered with the status they leave.
            self.statements.close(name.as_bytes());
            self.expected.push(Expect::FakeDeallocate);
        }
        true
    }

    /// Handles a whole Parse/Bind/Describe/Close: statement names are mapped to the
    /// server's content-addressed names, and in shared placement the guard checks each Parse
    /// (and the parameters a Bind gives the tenant GUC).
    fn client_extended(&mut self, conn: &mut ServerConn, msg: &[u8]) -> Result<(), String> {
        let tag = msg[0];
        let body = &msg[Header::SIZE..];
        let malformed = || format!("malformed {} message", tag_name(tag));
        self.sync_stale(conn);
        match tag {
            frontend::PARSE => {
                let (name, after) = cstr(body).ok_or_else(malformed)?;
                let verdict = match &self.guard {
                    Some(g) => {
                        let (query, _) = cstr(after).ok_or_else(malformed)?;
                        match g.admit(query, Source::Parse) {
                            Ok(v) => Some(v),
                            Err(rejection) => {
                                self.reject(tag, &rejection);
                                return Ok(());
                            }
                        }
                    }
                    None => None,
                };
                // A statement text without its terminator is refused here, whatever the
                // mode: forwarded, it would cost the server connection (PostgreSQL ends a
                // session on a malformed message).
                // `taints`: may change settings, in a session whose setup the relay tracks.
                let (words, taints) = match self.guard {
                    None => {
                        let (text, _) = cstr(after).ok_or_else(malformed)?;
                        let (words, taints) = self.last_parse.scan(after, text, self.track_context);
                        (Some(words), taints)
                    }
                    Some(_) => (None, false),
                };
                if self.transaction_mode
                    && words.is_some_and(|w| w.listen)
                    && listen::is_listen(cstr(after).ok_or_else(malformed)?.0)
                {
                    self.refuse(tag, FEATURE_NOT_SUPPORTED, listen::REFUSAL);
                    return Ok(());
                }
                if taints {
                    conn.context = None;
                }
                // Guarded sessions apply the verdict's effects (drops included) at Bind.
                let drops = words.is_some_and(Words::drops);
                if words.is_some_and(resets_params) {
                    conn.params_key = params::UNKNOWN;
                }
                if name.is_empty() {
                    self.unnamed_taints = taints;
                    self.unnamed_drops = drops;
                    self.unnamed_verdict = verdict;
                    self.unnamed_here = true;
                    self.sout.extend_from_slice(msg);
                    self.expected.push(Expect::Parse { statement: None });
                } else {
                    let epoch = self.stale_plans.epoch();
                    let p = self
                        .statements
                        .parse(name, after, taints, drops, verdict, epoch);
                    let queued = if conn.prepared.touch(&p.server_name) {
                        self.expected.push(Expect::FakeParseComplete {
                            statement: p.clone(),
                        })
                    } else {
                        self.close_if_unknown(conn, &p);
                        self.make_room(conn, &p.server_name);
                        self.sout.extend_from_slice(&p.parse);
                        let queued = self.expected.push(Expect::Parse {
                            statement: Some(p.clone()),
                        });
                        if queued {
                            conn.prepared.insert(p.server_name.clone());
                        }
                        queued
                    };
                    // Sent while the server skips to the next Sync (after an error): like
                    // PostgreSQL, the statement does not come to exist.
                    if !queued {
                        self.statements.close_if(&p);
                    }
                }
            }
            frontend::BIND => {
                let (portal, rest) = cstr(body).ok_or_else(malformed)?;
                let (stmt, rest) = cstr(rest).ok_or_else(malformed)?;
                let named = if stmt.is_empty() {
                    None
                } else {
                    match self.statements.get(stmt) {
                        Some(p) if self.went_stale(p) => {
                            self.refuse_with(tag, stale::error_response());
                            return Ok(());
                        }
                        Some(p) => Some(p.clone()),
                        None => {
                            self.unknown_statement(tag, stmt);
                            return Ok(());
                        }
                    }
                };
                if named.is_none() && !self.unnamed_here {
                    self.unknown_statement(tag, stmt);
                    return Ok(());
                }
                let mut effects = Effects::default();
                if let Some(g) = &self.guard {
                    let verdict = match &named {
                        Some(p) => p.verdict.clone(),
                        None => self.unnamed_verdict.clone(),
                    };
                    if let Some(v) = verdict
                        && let Verdict::Allowed(a) = &*v
                    {
                        if let Err(reason) = g.bind(a, rest) {
                            self.refuse_statement(tag, &reason);
                            return Ok(());
                        }
                        effects = a.effects;
                    }
                }
                let (taints, drops) = match &named {
                    Some(p) => (p.taints, p.drops),
                    None => (self.unnamed_taints, self.unnamed_drops),
                };
                if taints {
                    conn.context = None;
                }
                match &named {
                    Some(p) => {
                        self.ensure_prepared(conn, p);
                        let prefix_len = portal.len() + 1;
                        prepared::rewrite(
                            &mut self.sout,
                            tag,
                            &body[..prefix_len],
                            &p.server_name,
                            rest,
                        );
                    }
                    _ => self.sout.extend_from_slice(msg),
                }
                self.expected.push(Expect::Bind { statement: named });
                // Everything after this Bind runs after what it executes.
                Self::apply(conn, effects);
                if drops {
                    prepared::forget_all(conn);
                }
            }
            frontend::DESCRIBE | frontend::CLOSE => {
                let (&kind, rest) = body.split_first().ok_or_else(malformed)?;
                let (name, rest) = cstr(rest).ok_or_else(malformed)?;
                let statement = kind == b'S' && !name.is_empty();
                if tag == frontend::CLOSE {
                    if statement {
                        // The server keeps the statement for other clients. (Skipped after
                        // an error, the Close closes nothing, as on PostgreSQL.)
                        let closed = self.statements.get(name).cloned();
                        if self
                            .expected
                            .push(Expect::FakeCloseComplete { statement: closed })
                        {
                            self.statements.close(name);
                        }
                    } else {
                        self.sout.extend_from_slice(msg);
                        self.expected.push(Expect::Close);
                    }
                } else if statement {
                    match self.statements.get(name).cloned() {
                        Some(p) if self.went_stale(&p) => {
                            self.refuse_with(tag, stale::error_response());
                        }
                        Some(p) => {
                            self.ensure_prepared(conn, &p);
                            prepared::rewrite(&mut self.sout, tag, b"S", &p.server_name, rest);
                            self.expected.push(Expect::Describe { statement: Some(p) });
                        }
                        None => self.unknown_statement(tag, name),
                    }
                } else if kind == b'S' && !self.unnamed_here {
                    self.unknown_statement(tag, name);
                } else {
                    self.sout.extend_from_slice(msg);
                    self.expected.push(Expect::Describe { statement: None });
                }
            }
            _ => return Err(malformed()),
        }
        Ok(())
    }

    /// A Bind or Describe of a statement this client has not prepared here: the server
    /// connection may hold one by that name for another client, so it is never forwarded.
    fn unknown_statement(&mut self, tag: u8, name: &[u8]) {
        self.refuse(tag, INVALID_STATEMENT_NAME, &no_such_statement(name));
    }

    /// Moves scanned client bytes to `sout`, recording what the server will owe.
    fn scan_client(&mut self, conn: &mut ServerConn) -> Result<(), String> {
        loop {
            if self.c_rem > 0 {
                let n = self.c_rem.min(self.cin.len());
                if n == 0 {
                    break;
                }
                if !self.c_drop {
                    self.sout.extend_from_slice(&self.cin[..n]);
                }
                self.cin.advance(n);
                self.c_rem -= n;
                continue;
            }
            let Some(h) = Header::parse(&self.cin) else {
                break;
            };
            if !h.is_valid_frontend() {
                return Err(h.invalid_reason());
            }
            if self.xact_start.is_none() {
                self.xact_start = Some(Instant::now());
                self.ended_at = None;
            }
            if self.guard.is_some()
                && matches!(
                    h.tag,
                    frontend::QUERY | frontend::PARSE | frontend::BIND | frontend::FUNCTION_CALL
                )
            {
                self.ensure_context(conn);
            }
            if needs_whole(h.tag) {
                if self.cin.len() < h.total() {
                    break;
                }
                // Read in place: `cin` is lent out for the call (a `split_to` would make the
                // buffer shared and count references on every message).
                let cin = std::mem::take(&mut self.cin);
                let handled = self.client_extended(conn, &cin[..h.total()]);
                self.cin = cin;
                self.cin.advance(h.total());
                handled?;
                self.unsynced = true;
                continue;
            }
            let mut forward = true;
            match h.tag {
                frontend::QUERY => {
                    // The relay reads the text whole unless it is too long to.
                    let limit = if self.guard.is_some() {
                        GUARD_QUERY_LIMIT
                    } else {
                        QUERY_SCAN_LIMIT
                    };
                    let whole = h.total() <= limit;
                    if whole && self.cin.len() < h.total() {
                        break;
                    }
                    self.tally.queries += 1;
                    self.unnamed_here = false;
                    let (own_statement, listen, words) = if whole {
                        let body = &self.cin[Header::SIZE..h.total()];
                        let text = cstr(body).map_or(body, |(t, _)| t);
                        let words = Words::of(text);
                        let listen = words.listen
                            && self.guard.is_none()
                            && self.transaction_mode
                            && listen::is_listen(text);
                        let own = words.deallocate.then(|| deallocate::named(text)).flatten();
                        (own, listen, Some(words))
                    } else {
                        (None, false, None)
                    };
                    if self.deallocate_own(own_statement) {
                        forward = false;
                    } else if listen {
                        forward = false;
                        self.refuse(h.tag, FEATURE_NOT_SUPPORTED, listen::REFUSAL);
                    } else {
                        match &self.guard {
                            Some(_) if !whole => {
                                forward = false;
                                self.refuse_statement(
                                    h.tag,
                                    &format!(
                                        "it is {} bytes long; pgtenant checks statements of up to \
                                         {} bytes (use the extended protocol with parameters, or \
                                         COPY)",
                                        h.len, GUARD_QUERY_LIMIT
                                    ),
                                );
                            }
                            Some(g) => {
                                let body = &self.cin[Header::SIZE..h.total()];
                                let text = cstr(body).map_or(body, |(t, _)| t);
                                let admitted = g.admit(text, Source::SimpleQuery);
                                match admitted {
                                    Ok(v) => {
                                        if let Verdict::Allowed(a) = &*v {
                                            Self::apply(conn, a.effects);
                                        }
                                        self.expected.push(Expect::Query);
                                    }
                                    Err(rejection) => {
                                        forward = false;
                                        self.reject(h.tag, &rejection);
                                    }
                                }
                            }
                            None => {
                                if let Some(words) = words {
                                    let text = &self.cin[Header::SIZE..h.total()];
                                    if words.drops() {
                                        prepared::forget_all(conn);
                                    }
                                    if resets_params(words) {
                                        conn.params_key = params::UNKNOWN;
                                    }
                                    if self.track_context && taint::may_change_settings(text) {
                                        conn.context = None;
                                    }
                                } else {
                                    prepared::forget_all(conn);
                                    conn.context = None;
                                }
                                self.expected.push(Expect::Query);
                            }
                        }
                    }
                }
                frontend::FUNCTION_CALL => {
                    if self.guard.is_some() {
                        forward = false;
                        self.refuse_statement(
                            h.tag,
                            "the fast-path function call protocol calls functions by number, \
                             which pgtenant cannot check",
                        );
                    } else {
                        conn.context = None;
                        self.expected.push(Expect::FunctionCall);
                    }
                }
                frontend::SYNC => {
                    self.expected.push(Expect::Sync);
                    self.unsynced = false;
                }
                frontend::EXECUTE => {
                    self.tally.queries += 1;
                    self.expected.push(Expect::Execute);
                    self.unsynced = true;
                }
                frontend::TERMINATE => {
                    self.client_gone = true;
                    self.cin.clear();
                    break;
                }
                frontend::COPY_DONE | frontend::COPY_FAIL => {
                    self.expected.push(Expect::CopyEnd);
                }
                frontend::FLUSH | frontend::COPY_DATA => {}
                other => {
                    return Err(format!("unexpected message type {}", tag_name(other)));
                }
            }
            let n = h.total().min(self.cin.len());
            if forward {
                self.sout.extend_from_slice(&self.cin[..n]);
            }
            self.cin.advance(n);
            self.c_rem = h.total() - n;
            self.c_drop = !forward;
        }
        self.drain_fakes();
        rewind(&mut self.cin);
        Ok(())
    }

    /// Moves scanned server bytes to `cout`, hiding replies to pgtenant's own requests and
    /// placing replies pgtenant gives itself. Forwarded messages that follow each other go
    /// to `cout` in one copy: `sin[from..pos]` is scanned and still to be forwarded.
    fn scan_server(&mut self, conn: &mut ServerConn) -> Result<(), Pump> {
        let mut from = 0;
        let mut pos = 0;
        let result = loop {
            if self.s_rem > 0 {
                let n = self.s_rem.min(self.sin.len() - pos);
                if n == 0 {
                    break Ok(());
                }
                if self.s_hide {
                    self.forward_span(&mut from, pos);
                    from += n;
                }
                pos += n;
                self.s_rem -= n;
                if self.s_rem == 0 {
                    self.drain_fakes_after(&mut from, pos);
                }
                continue;
            }
            let Some(h) = Header::parse(&self.sin[pos..]) else {
                break Ok(());
            };
            if !h.is_valid() {
                break Err(Pump::ServerLost(format!(
                    "invalid message length {} from server",
                    h.len
                )));
            }
            let available = self.sin.len() - pos;
            // A row of a result the client is getting (the message before it was forwarded:
            // a hidden reply starts with a RowDescription or CommandComplete, which take the
            // way below), or a reply to a client request that the relay does not act on
            // (`Expected::pass`), changes nothing else the relay keeps: forwarded as it is.
            if !self.s_hide && (h.tag == backend::DATA_ROW || self.expected.pass(h.tag)) {
                let n = h.total().min(available);
                pos += n;
                self.s_rem = h.total() - n;
                if self.s_rem == 0 && h.tag != backend::DATA_ROW {
                    // A reply that completed its request: fake replies queued after it
                    // follow.
                    self.drain_fakes_after(&mut from, pos);
                }
                continue;
            }
            let whole = matches!(h.tag, backend::READY_FOR_QUERY | backend::ERROR_RESPONSE);
            // A Query after extended-protocol messages without a Sync ends their batch when
            // it has run (its ReadyForQuery), as a Sync would.
            let ends_batch = h.tag == backend::READY_FOR_QUERY
                && self.unsynced
                && self.expected.ready_ends_batch();
            if whole && available < h.total() {
                break Ok(());
            }
            let mut renamed = None;
            if h.tag == backend::ERROR_RESPONSE
                && let Some(p) = self.expected.head_statement()
            {
                let error = &self.sin[pos..pos + h.total()];
                if stale::is_stale_plan_error(error) {
                    let p = p.clone();
                    self.plan_went_stale(conn, &p);
                } else {
                    renamed = missing_statement(error, p);
                }
            }
            let route = match self.expected.on_server_message(h.tag, &mut self.dropped) {
                expect::Route::Forward if renamed.is_some() => {
                    expect::Route::Replace(renamed.take().unwrap_or_default())
                }
                route => route,
            };
            match route {
                expect::Route::SetupFailed => {
                    let error = Bytes::copy_from_slice(&self.sin[pos..pos + h.total()]);
                    break Err(Pump::SetupFailed(error));
                }
                expect::Route::Replace(error) => {
                    self.forward_span(&mut from, pos);
                    self.cout.extend_from_slice(&error);
                    self.s_hide = true;
                }
                expect::Route::Hide => self.s_hide = true,
                expect::Route::Forward => {
                    self.s_hide = false;
                    // The client changed a reported setting (`SET TimeZone`,
                    // `application_name`...): the connection carries this client's settings
                    // and no other's. Unless they are due again anyway (UNKNOWN: after a
                    // RESET ALL or DISCARD ALL, the client's own are due as well).
                    if h.tag == backend::PARAMETER_STATUS && conn.params_key != params::UNKNOWN {
                        if self.params_in_force == self.params.key {
                            self.params_in_force = params::session_key();
                        }
                        conn.params_key = self.params_in_force;
                    }
                    if h.tag == backend::ERROR_RESPONSE
                        && messages::ends_session(&self.sin[pos..pos + h.total()])
                    {
                        self.server_said_fatal = true;
                    }
                }
            }
            for name in self.dropped.drain(..) {
                conn.prepared.remove(&name);
            }
            if let Some(failed) = self.expected.take_unprepared() {
                for p in failed {
                    self.statements.close_if(&p);
                }
            }
            if let Some(not_closed) = self.expected.take_not_closed() {
                for p in not_closed {
                    self.statements.reopen(p);
                }
            }
            if ends_batch {
                self.unsynced = false;
            }
            if h.tag == backend::READY_FOR_QUERY
                && let Some(status) = messages::ready_status(&self.sin[pos..pos + h.total()])
            {
                self.status = status;
                if status == b'I' && !self.s_hide {
                    self.transaction_ended();
                }
            }
            let n = h.total().min(available);
            if self.s_hide {
                self.forward_span(&mut from, pos);
                from += n;
            }
            pos += n;
            self.s_rem = h.total() - n;
            if self.s_rem == 0 {
                self.drain_fakes_after(&mut from, pos);
            }
        };
        self.forward_span(&mut from, pos);
        self.sin.advance(pos);
        rewind(&mut self.sin);
        result
    }

    /// Copies the scanned server bytes `sin[from..to]` to `cout`; `from` moves to `to`.
    fn forward_span(&mut self, from: &mut usize, to: usize) {
        if *from < to {
            self.cout.extend_from_slice(&self.sin[*from..to]);
        }
        *from = to;
    }

    /// [`Relay::drain_fakes`] after a server message ends at `sin[pos]`: the forwarded bytes
    /// before it go first.
    fn drain_fakes_after(&mut self, from: &mut usize, pos: usize) {
        if self.expected.fake_at_head() {
            self.forward_span(from, pos);
            self.drain_fakes();
        }
    }

    /// A ReadyForQuery `I` reached the client: one more transaction, and its duration.
    fn transaction_ended(&mut self) {
        self.tally.transactions += 1;
        if let Some(start) = self.xact_start.take() {
            let now = Instant::now();
            TenantStats::transaction(&mut self.tally, now.saturating_duration_since(start));
            self.ended_at = Some(now);
        }
    }

    /// The client owes the next message: nothing is queued either way and no reply is due.
    fn waiting_for_client(&self) -> bool {
        self.expected.is_empty()
            && self.sout.is_empty()
            && self.cout.is_empty()
            && self.c_rem == 0
            && self.s_rem == 0
    }

    /// How long the client may now stay silent (`None`: no limit).
    fn idle_limit(&self) -> Option<(Duration, bool)> {
        if !self.waiting_for_client() {
            return None;
        }
        let in_transaction = self.status != b'I' || self.unsynced;
        let limit = if in_transaction {
            self.idle_xact_timeout
        } else {
            self.idle_timeout
        };
        (!limit.is_zero()).then_some((limit, in_transaction))
    }

    /// Accounts for a write of `sout` to the server.
    fn sent_to_server(&mut self, written: std::io::Result<usize>) -> Result<(), Pump> {
        match written {
            Ok(0) => Err(Pump::ServerLost("server closed the connection".into())),
            Ok(n) => {
                self.sout.advance(n);
                rewind(&mut self.sout);
                Ok(())
            }
            Err(e) => Err(Pump::ServerLost(e.to_string())),
        }
    }

    /// Accounts for a write of `cout` to the client.
    fn sent_to_client(&mut self, written: std::io::Result<usize>) -> Result<(), Pump> {
        match written {
            Ok(0) => Err(Pump::ClientGone { clean: false }),
            Ok(n) => {
                self.cout.advance(n);
                rewind(&mut self.cout);
                self.tally.bytes_sent += n as u64;
                Ok(())
            }
            Err(e) => Err(Pump::ClientIo(e.to_string())),
        }
    }

    /// Writes what is queued for the server at once if its socket takes it, which saves a
    /// turn of the relay's `select!`; what it does not take waits for that loop.
    fn send_to_server(&mut self, conn: &ServerConn) -> Result<(), Pump> {
        if self.sout.is_empty() {
            return Ok(());
        }
        match conn.stream.try_write(&self.sout) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            written => self.sent_to_server(written),
        }
    }

    /// [`Relay::send_to_server`] for the client: one write attempt, no waiting.
    async fn send_to_client<W: AsyncWrite + Unpin>(&mut self, cw: &mut W) -> Result<(), Pump> {
        if self.cout.is_empty() {
            return Ok(());
        }
        let cout = &self.cout;
        let attempt =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *cw).poll_write(cx, cout))).await;
        match attempt {
            Poll::Pending => Ok(()),
            Poll::Ready(written) => self.sent_to_client(written),
        }
    }

    /// Relays between the client and one server connection until the attachment ends.
    async fn pump<R, W>(
        &mut self,
        cr: &mut R,
        cw: &mut W,
        conn: &mut ServerConn,
        mode: PoolMode,
        control: &ClientInfo,
    ) -> Pump
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if let Err(e) = self.scan_client(conn) {
            return Pump::Protocol(e);
        }
        if let Err(p) = self.send_to_server(conn) {
            return p;
        }
        loop {
            let stop = control.stop();
            if self.at_boundary() {
                if self.client_gone {
                    return Pump::ClientGone { clean: true };
                }
                if mode == PoolMode::Transaction || stop != Stop::No {
                    return Pump::Release;
                }
            } else if self.client_gone && self.sout.is_empty() {
                // Left inside a transaction or mid-request: the server is not clean.
                return Pump::ClientGone { clean: false };
            }
            if stop == Stop::Now {
                return Pump::Stopped;
            }
            let idle = self.idle_limit();
            let (mut sr, mut sw) = conn.stream.split();
            // Futures of disabled branches are still built: the timer only inside an async
            // block, which costs nothing until polled.
            tokio::select! {
                biased;
                () = control.stop_beyond(stop) => {}
                () = async { if let Some((d, _)) = idle { tokio::time::sleep(d).await } }, if idle.is_some() => {
                    let in_transaction = idle.is_some_and(|(_, t)| t);
                    return Pump::IdleTimeout { in_transaction };
                }
                // `write`, not `write_buf`: one contiguous buffer goes out with send(2), which
                // costs the kernel less than the writev(2) a vectored write makes.
                r = sw.write(&self.sout), if !self.sout.is_empty() => {
                    if let Err(p) = self.sent_to_server(r) {
                        return p;
                    }
                }
                r = cw.write(&self.cout), if !self.cout.is_empty() => {
                    if let Err(p) = self.sent_to_client(r) {
                        return p;
                    }
                }
                r = sr.read_buf(&mut self.sin), if self.cout.len() < HIGH_WATER => {
                    match r {
                        Ok(0) => return Pump::ServerLost("server closed the connection".into()),
                        Ok(_) => {
                            if let Err(p) = self.scan_server(conn) {
                                return p;
                            }
                            // At the end of a transaction in transaction mode the server
                            // connection goes back to the pool first: the session writes
                            // the reply after the release.
                            let releasing = mode == PoolMode::Transaction && self.at_boundary();
                            if !releasing && let Err(p) = self.send_to_client(cw).await {
                                return p;
                            }
                        }
                        Err(e) => return Pump::ServerLost(e.to_string()),
                    }
                }
                r = cr.read_buf(&mut self.cin), if !self.client_gone && self.sout.len() < HIGH_WATER => {
                    match r {
                        Ok(0) | Err(_) => {
                            self.client_gone = true;
                            if self.c_rem > 0 || !self.cin.is_empty() {
                                return Pump::ClientGone { clean: false };
                            }
                        }
                        Ok(n) => {
                            self.tally.bytes_received += n as u64;
                            if let Err(e) = self.scan_client(conn) {
                                return Pump::Protocol(e);
                            }
                            if let Err(p) = self.send_to_server(conn) {
                                return p;
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn send_error<W: AsyncWrite + Unpin>(cw: &mut W, pending: &mut BytesMut, err: &ClientError) {
    messages::error_response(
        pending,
        Severity::Fatal,
        err.code,
        &err.message,
        err.detail.as_deref(),
    );
    let _ = cw.write_all(pending).await;
    let _ = cw.shutdown().await;
}

/// The statistics of `route`'s tenant on `route`'s pool.
fn stats_for(shared: &Shared, route: &Route) -> Arc<TenantStats> {
    shared.metrics.session(StatsKey {
        tenant: route.tenant.clone(),
        shard: route.key.shard.clone(),
        database: route.key.database.clone(),
    })
}

/// The shared-placement guard for `route`, if it is guarded.
fn guard_for(shared: &Shared, route: &Route) -> Option<Guard> {
    route.guarded.then(|| Guard {
        cache: shared.snapshot().guard_cache.clone(),
        context: route.context.clone(),
        tenant: route.tenant.clone(),
    })
}

/// What the client is told when the operator ends its session.
fn stop_error(control: &ClientInfo) -> ClientError {
    control
        .stop_reason()
        .unwrap_or_else(|| ClientError::new(ADMIN_SHUTDOWN, "pgtenant closed this connection"))
}

/// Ends a session the operator asked to stop: the client gets the reason as a FATAL error.
async fn stopped<W: AsyncWrite + Unpin>(
    cw: &mut W,
    pending: &mut BytesMut,
    control: &ClientInfo,
) -> Outcome {
    let err = stop_error(control);
    send_error(cw, pending, &err).await;
    Outcome::Stopped(err.message)
}

/// Runs a logged-in client until it leaves.
pub(crate) async fn run(
    shared: &Shared,
    stream: ClientStream,
    login: LoggedIn,
    control: &ClientInfo,
) -> (Outcome, Totals) {
    let mut relay = Relay::new(
        &login.route,
        guard_for(shared, &login.route),
        stats_for(shared, &login.route),
        login.params.clone(),
        shared.stale_plans.clone(),
    );
    let outcome = split_session(shared, stream, login, control, &mut relay).await;
    relay.flush_stats();
    if let Some(kind) = outcome.error_kind() {
        shared.metrics.error(Some(&control.who.tenant), kind);
    }
    (outcome, relay.totals)
}

/// An unguarded statement text that may be `RESET ALL` or `DISCARD ALL`, which take the
/// client's startup parameters back to the server's defaults: they are sent again before its
/// next transaction.
fn resets_params(words: Words) -> bool {
    words.discard || words.reset
}

/// The server's "prepared statement does not exist" for statement `p` (its Parse failed or
/// was skipped earlier in the client's pipeline), reworded with the client's name for it, as
/// PostgreSQL would say it to the client; `None` for any other error.
fn missing_statement(error: &[u8], p: &Prepared) -> Option<Bytes> {
    let (code, message) = messages::error_fields(error);
    if code != INVALID_STATEMENT_NAME || !message.contains(&*p.server_name) {
        return None;
    }
    let mut out = BytesMut::new();
    messages::error_response(
        &mut out,
        Severity::Error,
        INVALID_STATEMENT_NAME,
        &no_such_statement(&p.client_name),
        None,
    );
    Some(out.freeze())
}

/// PostgreSQL's message for a Bind or Describe of client statement `name` that does not
/// exist (the empty name is the unnamed statement).
fn no_such_statement(name: &[u8]) -> String {
    if name.is_empty() {
        "unnamed prepared statement does not exist".to_string()
    } else {
        format!(
            "prepared statement \"{}\" does not exist",
            String::from_utf8_lossy(name)
        )
    }
}

/// Splits the client's stream for [`session`]: a plain TCP stream into borrowed halves,
/// which read and write without the lock that `tokio::io::split` takes on every call.
async fn split_session(
    shared: &Shared,
    stream: ClientStream,
    login: LoggedIn,
    control: &ClientInfo,
    relay: &mut Relay,
) -> Outcome {
    match stream {
        ClientStream::Plain(mut tcp) => {
            let (cr, cw) = tcp.split();
            session(shared, cr, cw, login, control, relay).await
        }
        ClientStream::Tls(tls) => {
            let (cr, cw) = tokio::io::split(tls);
            session(shared, cr, cw, login, control, relay).await
        }
    }
}

async fn session<R, W>(
    shared: &Shared,
    mut cr: R,
    mut cw: W,
    login: LoggedIn,
    control: &ClientInfo,
    relay: &mut Relay,
) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let LoggedIn {
        mut route,
        mut pool,
        cancel,
        first,
        user,
        tenant,
        jwt_role,
        lane,
        ..
    } = login;
    let mut snapshot = shared.snapshot();
    relay.lane = control.who.id as usize;
    relay.take_settings(&snapshot.config);
    let mut paused = shared.holds.subscribe();
    let mut attached: Option<Checkout> = first;
    // Transaction mode: the server connection kept between transactions while the pool can
    // spare it (`pool::keep`); dropping it releases it.
    let keeper = Keeper::new();
    let mut kept: Option<Kept> = None;
    if let Some(c) = attached.as_mut() {
        relay.attach(c.conn(), &route, None);
        cancel.set(Some(&c.conn().cancel));
        control.set_state(ClientState::Active);
    }
    loop {
        let mut checkout = match attached.take() {
            Some(c) => c,
            None => {
                control.set_state(ClientState::Idle);
                if relay.refused > 0 {
                    shared
                        .metrics
                        .errors(Some(&route.tenant), kind::GUARD, relay.refused);
                    relay.refused = 0;
                }
                // Detached: flush, then wait for the client's next message. A kept
                // connection goes back as soon as the pool reclaims it, even while a slow
                // client is still taking the reply.
                loop {
                    // What is left of a cancelled request is dropped (its ReadyForQuery
                    // queued once it is all gone).
                    relay.skip_cancelled();
                    while !relay.cout.is_empty() {
                        tokio::select! {
                            biased;
                            r = cw.write(&relay.cout) => match relay.sent_to_client(r) {
                                Ok(()) => {}
                                Err(Pump::ClientIo(e)) => return Outcome::ClientIo(e),
                                Err(_) => return Outcome::ClientIo("client closed the connection".into()),
                            },
                            () = keeper.reclaimed(), if kept.is_some() => kept = None,
                        }
                    }
                    if relay.request_ready() {
                        break;
                    }
                    if control.stop() != Stop::No {
                        // Back to the pool before the client is told (it may read slowly).
                        drop(kept.take());
                        return stopped(&mut cw, &mut relay.cout, control).await;
                    }
                    let idle = relay.idle_timeout;
                    // Biased: polled in order, without drawing a random start each time.
                    tokio::select! {
                        biased;
                        r = cr.read_buf(&mut relay.cin) => match r {
                            Ok(0) | Err(_) => return Outcome::ClientLeft,
                            Ok(n) => relay.tally.bytes_received += n as u64,
                        },
                        () = control.stop_requested() => {}
                        () = keeper.reclaimed(), if kept.is_some() => kept = None,
                        () = async { tokio::time::sleep(idle).await }, if !idle.is_zero() => {
                            drop(kept.take());
                            let err = ClientError::new(
                                IDLE_SESSION_TIMEOUT,
                                "terminating connection due to idle timeout (client_idle_timeout)",
                            );
                            send_error(&mut cw, &mut relay.cout, &err).await;
                            return Outcome::IdleTimeout("client_idle_timeout");
                        }
                    }
                }
                if relay.cin[0] == frontend::TERMINATE {
                    return Outcome::ClientLeft;
                }
                // A malformed first message is answered before any server connection is
                // taken for it: a client does not wait for a busy pool to hear of it.
                if let Some(reason) = Header::parse(&relay.cin).and_then(|h| h.refusal()) {
                    // Back to the pool first: the client may be slow to take the error.
                    drop(kept.take());
                    let err = ClientError::new(
                        PROTOCOL_VIOLATION,
                        format!("protocol violation: {reason}"),
                    );
                    send_error(&mut cw, &mut relay.cout, &err).await;
                    return Outcome::Protocol(reason);
                }
                // A reload since the last transaction: place the tenant again.
                if shared.generation() != snapshot.generation {
                    kept = None;
                    snapshot = shared.snapshot();
                    let config = &snapshot.config;
                    match login::place(shared, config, &user, &tenant, jwt_role.as_deref()) {
                        Ok(r) => {
                            if r.key != route.key {
                                tracing::info!(tenant = %r.tenant, shard = %r.key.shard, database = %r.key.database, "tenant moved by reload");
                            }
                            route = r;
                            pool = shared.pools.get(&route);
                            control.set_pool(route.key.clone());
                            relay.set_route(
                                &route,
                                guard_for(shared, &route),
                                stats_for(shared, &route),
                            );
                            relay.take_settings(config);
                        }
                        Err(e) => {
                            let err = e.to_client();
                            send_error(&mut cw, &mut relay.cout, &err).await;
                            return Outcome::Stopped(err.message);
                        }
                    }
                }
                control.set_state(ClientState::Waiting);
                let waited = Instant::now();
                // A cancel from the client while its request waits for a server connection
                // (`PAUSE`, pool queue) cancels it here: no server has seen it.
                if paused.holds(&route.tenant) {
                    kept = None;
                    tokio::select! {
                        () = paused.until_resumed(&route.tenant) => {}
                        () = control.stop_requested() => {
                            return stopped(&mut cw, &mut relay.cout, control).await;
                        }
                        () = cancel.requested() => {
                            relay.cancel_waiting();
                            continue;
                        }
                    }
                }
                let resumed = kept.take().and_then(|k| k.resume(waited));
                let checked_out = match resumed {
                    Some(c) => Ok(c),
                    None => tokio::select! {
                        biased;
                        r = pool.checkout_at(&route.tenant, waited, lane) => r,
                        () = control.stop_requested() => {
                            return stopped(&mut cw, &mut relay.cout, control).await;
                        }
                        () = cancel.requested() => {
                            relay.cancel_waiting();
                            continue;
                        }
                    },
                };
                let mut c = match checked_out {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(tenant = %route.tenant, error = %e, "no server connection");
                        let kind = match e {
                            PoolError::WaitTimeout { .. } => kind::POOL_TIMEOUT,
                            PoolError::Backend(_) | PoolError::ShardDown { .. } => {
                                kind::SHARD_UNAVAILABLE
                            }
                        };
                        shared.metrics.error(Some(&route.tenant), kind);
                        send_error(&mut cw, &mut relay.cout, &e.to_client()).await;
                        return Outcome::NoServer(e.to_string());
                    }
                };
                let granted = c.granted_at();
                TenantStats::waited(&mut relay.tally, granted.saturating_duration_since(waited));
                control.set_state(ClientState::Active);
                relay.attach(c.conn(), &route, Some(granted));
                cancel.set(Some(&c.conn().cancel));
                c
            }
        };
        let result = relay
            .pump(&mut cr, &mut cw, checkout.conn(), route.mode, control)
            .await;
        cancel.set(None);
        match result {
            Pump::Release => {
                let ended = relay.ended_at.take().unwrap_or_else(Instant::now);
                if route.mode == PoolMode::Transaction && control.stop() == Stop::No {
                    kept = checkout.keep(&keeper, ended);
                } else {
                    if route.mode == PoolMode::Session {
                        checkout.conn().needs_reset = true;
                    }
                    checkout.release_at(ended);
                }
                relay.flush_stats();
            }
            Pump::ClientGone { clean } => {
                if clean {
                    if route.mode == PoolMode::Session {
                        checkout.conn().needs_reset = true;
                    }
                    checkout.release();
                }
                // Unclean: dropping the checkout closes the server connection, which rolls
                // back whatever the client left open.
                let _ = cw.write_all(&relay.cout).await;
                return Outcome::ClientLeft;
            }
            Pump::Stopped => {
                // Inside a transaction: dropping the checkout closes the server connection,
                // which rolls it back.
                drop(checkout);
                if relay.s_rem != 0 {
                    // Mid-message to the client: an error now would garble it.
                    let _ = cw.shutdown().await;
                    return Outcome::Stopped(stop_error(control).message);
                }
                return stopped(&mut cw, &mut relay.cout, control).await;
            }
            Pump::IdleTimeout { in_transaction } => {
                let (code, message, which) = if in_transaction {
                    (
                        IDLE_IN_TRANSACTION_TIMEOUT,
                        "terminating connection due to idle-in-transaction timeout (idle_transaction_timeout)",
                        "idle_transaction_timeout",
                    )
                } else {
                    checkout.conn().needs_reset = true;
                    checkout.release();
                    (
                        IDLE_SESSION_TIMEOUT,
                        "terminating connection due to idle timeout (client_idle_timeout)",
                        "client_idle_timeout",
                    )
                };
                send_error(&mut cw, &mut relay.cout, &ClientError::new(code, message)).await;
                return Outcome::IdleTimeout(which);
            }
            Pump::ServerLost(reason) => {
                let shard = &route.key.shard;
                tracing::warn!(tenant = %route.tenant, %shard, %reason, "server connection lost");
                if relay.server_said_fatal {
                    // The client has the server's own FATAL (perhaps still in `cout`, behind
                    // rows a slow client has not taken yet): deliver it and close.
                    let _ = cw.write_all(&relay.cout).await;
                    let _ = cw.shutdown().await;
                } else if relay.s_rem == 0 {
                    let err = ClientError::new(
                        CONNECTION_FAILURE,
                        format!("server connection to shard \"{shard}\" lost: {reason}"),
                    );
                    send_error(&mut cw, &mut relay.cout, &err).await;
                }
                return Outcome::ServerLost(reason);
            }
            Pump::SetupFailed(raw) => {
                let (code, message) = messages::error_fields(&raw);
                tracing::error!(tenant = %route.tenant, %code, %message, "tenant setup statement failed");
                let err = ClientError::new(
                    CONNECTION_FAILURE,
                    format!(
                        "could not scope the server connection to tenant \"{}\": {message}",
                        route.tenant
                    ),
                );
                send_error(&mut cw, &mut relay.cout, &err).await;
                return Outcome::SetupFailed(message);
            }
            Pump::Protocol(reason) => {
                let err =
                    ClientError::new(PROTOCOL_VIOLATION, format!("protocol violation: {reason}"));
                send_error(&mut cw, &mut relay.cout, &err).await;
                return Outcome::Protocol(reason);
            }
            Pump::ClientIo(reason) => return Outcome::ClientIo(reason),
        }
    }
}
