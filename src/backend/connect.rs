//! Opens a server connection: TCP, StartupMessage, authentication (SCRAM-SHA-256, md5,
//! cleartext, trust), then ParameterStatus/BackendKeyData up to the first ReadyForQuery.

use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BackendError;
use super::conn::{CancelTarget, ServerConn, SessionState};
use super::credentials::Credentials;
use super::scram;
use crate::auth::keys::ScramKeys;
use crate::config::Shard;
use crate::protocol::header::{Header, backend, tag_name};
use crate::protocol::messages::error_fields;

const AUTH_OK: i32 = 0;
const AUTH_CLEARTEXT: i32 = 3;
const AUTH_MD5: i32 = 5;
const AUTH_SASL: i32 = 10;
const AUTH_SASL_CONTINUE: i32 = 11;
const AUTH_SASL_FINAL: i32 = 12;

/// The server's `ParameterStatus` values, replayed to clients at login.
pub(crate) type ServerParams = Vec<(String, String)>;

/// Connects to `shard` as `role` on `database`, with the shard's password or, when it has none
/// and asks for SCRAM, with the keys `creds` remembered for `role`.
pub(crate) async fn connect(
    shard: &Shard,
    database: &str,
    role: &str,
    creds: &Credentials,
    timeout: Duration,
) -> Result<(ServerConn, ServerParams), BackendError> {
    match tokio::time::timeout(timeout, connect_inner(shard, database, role, creds)).await {
        Ok(r) => r,
        Err(_) => Err(BackendError::Unreachable {
            shard: shard.name.clone(),
            addr: format!("{}:{}", shard.host, shard.port),
            reason: format!("timed out after {:.1}s", timeout.as_secs_f64()),
        }),
    }
}

struct Upstream<'a> {
    shard: &'a Shard,
    role: &'a str,
    creds: &'a Credentials,
    stream: TcpStream,
    buf: BytesMut,
}

impl Upstream<'_> {
    fn lost(&self, e: impl std::fmt::Display) -> BackendError {
        BackendError::Lost {
            shard: self.shard.name.clone(),
            reason: e.to_string(),
        }
    }

    async fn send(&mut self, out: &BytesMut) -> Result<(), BackendError> {
        self.stream.write_all(out).await.map_err(|e| self.lost(e))
    }

    /// Reads one whole message (tag, body).
    async fn recv(&mut self) -> Result<(u8, BytesMut), BackendError> {
        loop {
            if let Some(h) = Header::parse(&self.buf) {
                if !h.is_valid() {
                    return Err(self.lost("invalid message length from server"));
                }
                if self.buf.len() >= h.total() {
                    let mut msg = self.buf.split_to(h.total());
                    if h.tag == backend::ERROR_RESPONSE {
                        let (code, message) = error_fields(&msg);
                        return Err(BackendError::Rejected {
                            shard: self.shard.name.clone(),
                            code,
                            message,
                            raw: msg.freeze(),
                        });
                    }
                    msg.advance(Header::SIZE);
                    return Ok((h.tag, msg));
                }
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| self.lost(e))?;
            if n == 0 {
                return Err(self.lost("server closed the connection during login"));
            }
        }
    }

    fn password(&self) -> Result<&str, BackendError> {
        self.shard
            .password
            .as_deref()
            .ok_or_else(|| self.no_password())
    }

    fn no_password(&self) -> BackendError {
        BackendError::NoPassword {
            shard: self.shard.name.clone(),
            role: self.role.to_owned(),
        }
    }

    /// The keys to answer the shard's SCRAM challenge with: the configured password's
    /// (derivation cached), else those of the client login of the user named like the role.
    async fn scram_keys(
        &self,
        server: &scram::ServerFirst,
    ) -> Result<std::sync::Arc<ScramKeys>, BackendError> {
        if let Some(password) = self.shard.password.as_deref() {
            return self
                .creds
                .derive(password, &server.salt, server.iterations)
                .await
                .map_err(|e| self.lost(e));
        }
        let keys = self
            .creds
            .passthrough(self.role)
            .ok_or_else(|| self.no_password())?;
        if keys.salt != server.salt || keys.iterations != server.iterations {
            return Err(BackendError::OtherVerifier {
                shard: self.shard.name.clone(),
                role: self.role.to_owned(),
            });
        }
        Ok(keys)
    }
}

async fn connect_inner(
    shard: &Shard,
    database: &str,
    role: &str,
    creds: &Credentials,
) -> Result<(ServerConn, ServerParams), BackendError> {
    let addr = format!("{}:{}", shard.host, shard.port);
    let stream = TcpStream::connect(&addr)
        .await
        .map_err(|e| BackendError::Unreachable {
            shard: shard.name.clone(),
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    let _ = stream.set_nodelay(true);
    let mut up = Upstream {
        shard,
        role,
        creds,
        stream,
        buf: BytesMut::with_capacity(8192),
    };
    let mut out = BytesMut::new();
    frontend::startup_message(
        [
            ("user", role),
            ("database", database),
            ("application_name", "pgtenant"),
            ("client_encoding", "UTF8"),
        ],
        &mut out,
    )
    .map_err(|e| up.lost(e))?;
    up.send(&out).await?;
    authenticate(&mut up).await?;

    let mut params = Vec::new();
    let mut cancel = None;
    loop {
        let (tag, mut body) = up.recv().await?;
        match tag {
            backend::PARAMETER_STATUS => {
                let mut parts = body[..].split(|b| *b == 0);
                let name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                let value = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                params.push((name, value));
            }
            backend::BACKEND_KEY_DATA if body.len() >= 8 => {
                let pid = body.get_i32();
                cancel = Some(std::sync::Arc::new(CancelTarget {
                    host: shard.host.clone(),
                    port: shard.port,
                    pid,
                    secret: body.to_vec(),
                }));
            }
            backend::READY_FOR_QUERY => break,
            backend::NOTICE_RESPONSE | backend::NEGOTIATE_PROTOCOL_VERSION => {}
            other => {
                return Err(up.lost(format!(
                    "unexpected message {} during login",
                    tag_name(other)
                )));
            }
        }
    }
    let cancel = cancel.ok_or_else(|| up.lost("server sent no BackendKeyData"))?;
    let now = Instant::now();
    Ok((
        ServerConn {
            stream: up.stream,
            cancel,
            created: now,
            last_used: now,
            state: SessionState::Clean,
            needs_reset: false,
            prepared: Default::default(),
            prepared_unknown: false,
            params_key: crate::relay::params::UNKNOWN,
            context: None,
            dirty_session: false,
            dirty_sequences: false,
        },
        params,
    ))
}

async fn authenticate(up: &mut Upstream<'_>) -> Result<(), BackendError> {
    let mut exchange = Scram::Idle;
    loop {
        let (tag, mut body) = up.recv().await?;
        if tag != backend::AUTHENTICATION || body.len() < 4 {
            return Err(up.lost(format!(
                "expected an authentication request, got {}",
                tag_name(tag)
            )));
        }
        let code = body.get_i32();
        let mut out = BytesMut::new();
        match code {
            AUTH_OK => return Ok(()),
            AUTH_CLEARTEXT => {
                let pw = up.password()?.to_owned();
                frontend::password_message(pw.as_bytes(), &mut out).map_err(|e| up.lost(e))?;
            }
            AUTH_MD5 if body.len() >= 4 => {
                let salt = [body[0], body[1], body[2], body[3]];
                let hash = md5_hash(up.role.as_bytes(), up.password()?.as_bytes(), salt);
                frontend::password_message(hash.as_bytes(), &mut out).map_err(|e| up.lost(e))?;
            }
            AUTH_SASL => {
                let offers_scram = body[..]
                    .split(|b| *b == 0)
                    .any(|m| m == crate::auth::scram::MECHANISM.as_bytes());
                if !offers_scram {
                    return Err(BackendError::AuthMethod {
                        shard: up.shard.name.clone(),
                        method: String::from_utf8_lossy(&body).replace('\0', " "),
                    });
                }
                let (started, first) = scram::Started::new();
                frontend::sasl_initial_response(
                    crate::auth::scram::MECHANISM,
                    first.as_bytes(),
                    &mut out,
                )
                .map_err(|e| up.lost(e))?;
                exchange = Scram::Started(started);
            }
            AUTH_SASL_CONTINUE => {
                let Scram::Started(started) = std::mem::replace(&mut exchange, Scram::Idle) else {
                    return Err(up.lost("SASL continue out of turn"));
                };
                let server = started.server_first(&body).map_err(|e| up.lost(e))?;
                let keys = up.scram_keys(&server).await?;
                let (finishing, last) = started.finish(&server, &keys);
                frontend::sasl_response(last.as_bytes(), &mut out).map_err(|e| up.lost(e))?;
                exchange = Scram::Finishing(finishing);
            }
            AUTH_SASL_FINAL => {
                let Scram::Finishing(finishing) = std::mem::replace(&mut exchange, Scram::Idle)
                else {
                    return Err(up.lost("SASL final out of turn"));
                };
                finishing
                    .check(&body)
                    .map_err(|e| up.lost(format!("SCRAM: {e}")))?;
                continue;
            }
            other => {
                return Err(BackendError::AuthMethod {
                    shard: up.shard.name.clone(),
                    method: format!("authentication request code {other}"),
                });
            }
        }
        up.send(&out).await?;
    }
}

/// Where an upstream SCRAM exchange stands.
enum Scram {
    Idle,
    Started(scram::Started),
    Finishing(scram::Finishing),
}
