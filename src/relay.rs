//! The hot path: header-level forwarding between a client and the server connection serving
//! it, transaction boundaries from `ReadyForQuery`, and the tenant setup injected in the same
//! write as the client's first message of each server attachment.
//!
//! Bytes are forwarded as read; only the 5-byte headers are decoded, plus the status byte of
//! `ReadyForQuery` and the replies to pgtenant's own setup statements. No config lookups and no
//! locks across `.await` here.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use crate::backend::conn::{ServerConn, SessionState};
use crate::config::PoolMode;
use crate::error::{ADMIN_SHUTDOWN, CONNECTION_FAILURE, ClientError, ClientFacing, PROTOCOL_VIOLATION};
use crate::pool::Checkout;
use crate::protocol::header::{Header, backend, frontend};
use crate::protocol::messages::{self, Severity};
use crate::routing::Route;
use crate::server::Shared;
use crate::session::login::LoggedIn;
use crate::stream::ClientStream;

/// Stop reading one side while this much is queued for the other (backpressure).
const HIGH_WATER: usize = 256 * 1024;

/// How a client's session ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The client sent Terminate or closed its socket.
    ClientLeft,
    /// The proxy is shutting down.
    Shutdown,
    /// The server connection failed; the client was told.
    ServerLost(String),
    /// pgtenant's setup statement failed on the server.
    SetupFailed(String),
    /// The client sent something that is not the PostgreSQL protocol.
    Protocol(String),
    /// No server connection could be had.
    NoServer(String),
    /// The client's socket failed.
    ClientIo(String),
}

/// Why an attachment ended.
enum Pump {
    /// At a transaction boundary in transaction mode: give the server back.
    Release,
    /// The client left; `clean` says whether the server is at an idle boundary.
    ClientGone { clean: bool },
    ServerLost(String),
    SetupFailed(Bytes),
    Protocol(String),
    ClientIo(String),
}

/// Buffers and protocol state of one client session.
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
    /// Body bytes of the current server message still to pass through.
    s_rem: usize,
    /// ReadyForQuery messages the server still owes (one per Query, Sync, FunctionCall).
    owed: usize,
    /// Extended-protocol messages sent since the last Sync.
    unsynced: bool,
    /// Transaction status from the last ReadyForQuery.
    status: u8,
    /// ReadyForQuery replies to pgtenant's setup statements still to swallow.
    swallow: usize,
    /// The client sent Terminate or closed.
    client_gone: bool,
}

impl Relay {
    fn new() -> Self {
        Relay {
            cin: BytesMut::with_capacity(16 * 1024),
            cout: BytesMut::with_capacity(16 * 1024),
            sin: BytesMut::with_capacity(16 * 1024),
            sout: BytesMut::with_capacity(16 * 1024),
            c_rem: 0,
            s_rem: 0,
            owed: 0,
            unsynced: false,
            status: b'I',
            swallow: 0,
            client_gone: false,
        }
    }

    /// Prepares a freshly checked-out server: reset if another tenant (or a session-mode
    /// client) used it, then the route's setup statement. Queued ahead of the client's bytes.
    fn attach(&mut self, conn: &mut ServerConn, route: &Route) {
        let foreign = match &conn.state {
            SessionState::Clean => false,
            SessionState::UsedBy(t) => **t != *route.tenant,
        };
        let mut setup = BytesMut::new();
        if conn.needs_reset || foreign {
            messages::query(&mut setup, "DISCARD ALL");
            self.swallow += 1;
        }
        if let Some(sql) = &route.setup_sql {
            messages::query(&mut setup, sql);
            self.swallow += 1;
        }
        conn.state = SessionState::UsedBy(route.tenant.clone());
        conn.needs_reset = false;
        if !setup.is_empty() {
            setup.extend_from_slice(&self.sout);
            self.sout = setup;
        }
        self.status = b'I';
    }

    /// True when the server may be handed to someone else.
    fn at_boundary(&self) -> bool {
        self.owed == 0
            && !self.unsynced
            && self.status == b'I'
            && self.swallow == 0
            && self.c_rem == 0
            && self.s_rem == 0
            && self.sin.is_empty()
            && self.sout.is_empty()
    }

    /// Moves scanned client bytes to `sout`, counting what the server will owe.
    fn scan_client(&mut self) -> Result<(), String> {
        loop {
            if self.c_rem > 0 {
                let n = self.c_rem.min(self.cin.len());
                if n == 0 {
                    return Ok(());
                }
                self.sout.extend_from_slice(&self.cin[..n]);
                self.cin.advance(n);
                self.c_rem -= n;
                continue;
            }
            let Some(h) = Header::parse(&self.cin) else {
                return Ok(());
            };
            if !h.is_valid() {
                return Err(format!(
                    "invalid length {} in message '{}'",
                    h.len,
                    h.tag as char
                ));
            }
            match h.tag {
                frontend::QUERY | frontend::FUNCTION_CALL => self.owed += 1,
                frontend::SYNC => {
                    self.owed += 1;
                    self.unsynced = false;
                }
                frontend::PARSE
                | frontend::BIND
                | frontend::DESCRIBE
                | frontend::EXECUTE
                | frontend::CLOSE => self.unsynced = true,
                frontend::TERMINATE => {
                    self.client_gone = true;
                    self.cin.clear();
                    return Ok(());
                }
                frontend::FLUSH
                | frontend::COPY_DATA
                | frontend::COPY_DONE
                | frontend::COPY_FAIL => {}
                other => {
                    return Err(format!("unexpected message type '{}'", other as char));
                }
            }
            let n = h.total().min(self.cin.len());
            self.sout.extend_from_slice(&self.cin[..n]);
            self.cin.advance(n);
            self.c_rem = h.total() - n;
        }
    }

    /// Moves scanned server bytes to `cout`, swallowing the replies to setup statements.
    fn scan_server(&mut self) -> Result<(), Pump> {
        loop {
            if self.s_rem > 0 {
                let n = self.s_rem.min(self.sin.len());
                if n == 0 {
                    return Ok(());
                }
                self.cout.extend_from_slice(&self.sin[..n]);
                self.sin.advance(n);
                self.s_rem -= n;
                continue;
            }
            let Some(h) = Header::parse(&self.sin) else {
                return Ok(());
            };
            if !h.is_valid() {
                return Err(Pump::ServerLost(format!(
                    "invalid message length {} from server",
                    h.len
                )));
            }
            if self.swallow > 0 {
                if self.sin.len() < h.total() {
                    return Ok(());
                }
                let msg = self.sin.split_to(h.total());
                match h.tag {
                    backend::ERROR_RESPONSE => return Err(Pump::SetupFailed(msg.freeze())),
                    backend::READY_FOR_QUERY => self.swallow -= 1,
                    _ => {}
                }
                continue;
            }
            if h.tag == backend::READY_FOR_QUERY {
                if self.sin.len() < h.total() {
                    return Ok(());
                }
                if let Some(status) = messages::ready_status(&self.sin[..h.total()]) {
                    self.status = status;
                }
                self.owed = self.owed.saturating_sub(1);
            }
            let n = h.total().min(self.sin.len());
            self.cout.extend_from_slice(&self.sin[..n]);
            self.sin.advance(n);
            self.s_rem = h.total() - n;
        }
    }

    /// Relays between the client and one server connection until the attachment ends.
    async fn pump<R, W>(
        &mut self,
        cr: &mut R,
        cw: &mut W,
        conn: &mut ServerConn,
        mode: PoolMode,
    ) -> Pump
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let (mut sr, mut sw) = conn.stream.split();
        if let Err(e) = self.scan_client() {
            return Pump::Protocol(e);
        }
        loop {
            if self.at_boundary() {
                if self.client_gone {
                    return Pump::ClientGone { clean: true };
                }
                if mode == PoolMode::Transaction {
                    return Pump::Release;
                }
            } else if self.client_gone && self.sout.is_empty() && self.owed == 0 {
                // Left inside a transaction or mid-message: the server is not clean.
                return Pump::ClientGone { clean: false };
            }
            tokio::select! {
                biased;
                r = sw.write_buf(&mut self.sout), if !self.sout.is_empty() => {
                    match r {
                        Ok(0) => return Pump::ServerLost("server closed the connection".into()),
                        Ok(_) => {}
                        Err(e) => return Pump::ServerLost(e.to_string()),
                    }
                }
                r = cw.write_buf(&mut self.cout), if !self.cout.is_empty() => {
                    match r {
                        Ok(0) => return Pump::ClientGone { clean: false },
                        Ok(_) => {}
                        Err(e) => return Pump::ClientIo(e.to_string()),
                    }
                }
                r = sr.read_buf(&mut self.sin), if self.cout.len() < HIGH_WATER => {
                    match r {
                        Ok(0) => return Pump::ServerLost("server closed the connection".into()),
                        Ok(_) => {
                            if let Err(p) = self.scan_server() {
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
                        Ok(_) => {
                            if let Err(e) = self.scan_client() {
                                return Pump::Protocol(e);
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

/// Runs a logged-in client until it leaves.
pub(crate) async fn run(shared: &Shared, stream: ClientStream, login: LoggedIn) -> Outcome {
    let LoggedIn {
        route,
        pool,
        cancel,
        first,
        ..
    } = login;
    let mut shutdown = shared.shutdown.clone();
    let (mut cr, mut cw): (ReadHalf<ClientStream>, WriteHalf<ClientStream>) = tokio::io::split(stream);
    let mut relay = Relay::new();
    let mut attached: Option<Checkout> = first;
    if let Some(c) = attached.as_mut() {
        relay.attach(c.conn(), &route);
        cancel.set(Some(&c.conn().cancel));
    }
    loop {
        let mut checkout = match attached.take() {
            Some(c) => c,
            None => {
                // Detached: flush, then wait for the client's next message (or shutdown).
                if !relay.cout.is_empty() {
                    if let Err(e) = cw.write_all(&relay.cout).await {
                        return Outcome::ClientIo(e.to_string());
                    }
                    relay.cout.clear();
                }
                while Header::parse(&relay.cin).is_none() {
                    if *shutdown.borrow() {
                        let err = ClientError::new(ADMIN_SHUTDOWN, "pgtenant is shutting down");
                        send_error(&mut cw, &mut relay.cout, &err).await;
                        return Outcome::Shutdown;
                    }
                    tokio::select! {
                        r = cr.read_buf(&mut relay.cin) => match r {
                            Ok(0) | Err(_) => return Outcome::ClientLeft,
                            Ok(_) => {}
                        },
                        r = shutdown.changed() => {
                            if r.is_err() {
                                return Outcome::Shutdown;
                            }
                        }
                    }
                }
                if relay.cin[0] == frontend::TERMINATE {
                    return Outcome::ClientLeft;
                }
                let mut c = match pool.checkout().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(tenant = %route.tenant, error = %e, "no server connection");
                        send_error(&mut cw, &mut relay.cout, &e.to_client()).await;
                        return Outcome::NoServer(e.to_string());
                    }
                };
                relay.attach(c.conn(), &route);
                cancel.set(Some(&c.conn().cancel));
                c
            }
        };
        let result = relay.pump(&mut cr, &mut cw, checkout.conn(), route.mode).await;
        cancel.set(None);
        match result {
            Pump::Release => checkout.release(),
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
            Pump::ServerLost(reason) => {
                let shard = &route.key.shard;
                tracing::warn!(tenant = %route.tenant, %shard, %reason, "server connection lost");
                if relay.s_rem == 0 {
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
                    format!("could not scope the server connection to tenant \"{}\": {message}", route.tenant),
                );
                send_error(&mut cw, &mut relay.cout, &err).await;
                return Outcome::SetupFailed(message);
            }
            Pump::Protocol(reason) => {
                let err = ClientError::new(PROTOCOL_VIOLATION, format!("protocol violation: {reason}"));
                send_error(&mut cw, &mut relay.cout, &err).await;
                return Outcome::Protocol(reason);
            }
            Pump::ClientIo(reason) => return Outcome::ClientIo(reason),
        }
    }
}
