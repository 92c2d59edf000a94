//! Startup stage: TLS negotiation (SSLRequest or PostgreSQL 17 direct TLS), GSSENC refusal,
//! CancelRequest hand-off, and the StartupMessage.

use bytes::BytesMut;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::error::{ClientError, ClientFacing, INVALID_AUTHORIZATION, PROTOCOL_VIOLATION};
use crate::protocol::startup::{
    self, FirstPacket, StartupPacketError, StartupParams, TLS_HANDSHAKE_BYTE,
};
use crate::stream::ClientStream;
use crate::tls::ALPN_POSTGRESQL;

/// Bound on SSLRequest/GSSENCRequest rounds before the real StartupMessage.
const MAX_NEGOTIATION_ROUNDS: usize = 3;

#[derive(Debug, Error)]
pub(crate) enum StartupError {
    #[error("{0}")]
    Packet(#[from] StartupPacketError),
    #[error("client closed the connection during startup: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("this server requires TLS: connect with sslmode=require")]
    TlsRequired,
    #[error("direct TLS connections must negotiate ALPN \"postgresql\"")]
    NoAlpn,
    #[error("too many SSL/GSS negotiation requests")]
    TooManyRounds,
}

impl ClientFacing for StartupError {
    fn to_client(&self) -> ClientError {
        let code = match self {
            StartupError::TlsRequired => INVALID_AUTHORIZATION,
            _ => PROTOCOL_VIOLATION,
        };
        ClientError::new(code, self.to_string())
    }
}

/// What the first packets asked for.
pub(crate) enum Negotiated {
    Cancel {
        pid: i32,
        secret: Vec<u8>,
    },
    Client {
        stream: ClientStream,
        params: StartupParams,
        sni: Option<String>,
    },
}

/// A startup failure with the stream it happened on, so the session can tell the client.
pub(crate) struct Failed {
    pub(crate) stream: Option<ClientStream>,
    pub(crate) error: StartupError,
}

pub(crate) async fn negotiate(
    tcp: TcpStream,
    tls: Option<&TlsAcceptor>,
    tls_required: bool,
) -> Result<Negotiated, Failed> {
    let mut stream = ClientStream::Plain(tcp);
    let mut sni = None;
    macro_rules! fail {
        ($stream:expr, $e:expr) => {
            return Err(Failed {
                stream: $stream,
                error: $e.into(),
            })
        };
    }
    for _ in 0..MAX_NEGOTIATION_ROUNDS {
        // PostgreSQL 17 direct TLS: the first byte is a TLS handshake record.
        if let (ClientStream::Plain(tcp), Some(acceptor)) = (&stream, tls) {
            let mut first = [0u8; 1];
            match tcp.peek(&mut first).await {
                Ok(1) if first[0] == TLS_HANDSHAKE_BYTE => {
                    let ClientStream::Plain(tcp) = stream else {
                        unreachable!()
                    };
                    let (s, name) = match handshake(acceptor, tcp).await {
                        Ok(r) => r,
                        Err(e) => fail!(None, e),
                    };
                    let alpn_ok = s
                        .get_ref()
                        .1
                        .alpn_protocol()
                        .is_some_and(|p| p == ALPN_POSTGRESQL);
                    stream = ClientStream::Tls(Box::new(s));
                    if !alpn_ok {
                        fail!(Some(stream), StartupError::NoAlpn);
                    }
                    sni = name;
                }
                Ok(_) => {}
                Err(e) => fail!(None, e),
            }
        }
        let mut len_word = [0u8; 4];
        if let Err(e) = stream.read_exact(&mut len_word).await {
            fail!(None, e);
        }
        let len = match startup::packet_len(len_word) {
            Ok(l) => l,
            Err(e) => fail!(Some(stream), e),
        };
        let mut body = vec![0u8; len - 4];
        if let Err(e) = stream.read_exact(&mut body).await {
            fail!(None, e);
        }
        match startup::decode(&body) {
            Err(e) => fail!(Some(stream), e),
            Ok(FirstPacket::SslRequest) => match (stream, tls) {
                (ClientStream::Plain(mut tcp), Some(acceptor)) => {
                    if let Err(e) = tcp.write_all(b"S").await {
                        fail!(None, e);
                    }
                    let (s, name) = match handshake(acceptor, tcp).await {
                        Ok(r) => r,
                        Err(e) => fail!(None, e),
                    };
                    stream = ClientStream::Tls(Box::new(s));
                    sni = name;
                }
                (mut other, _) => {
                    if let Err(e) = other.write_all(b"N").await {
                        fail!(None, e);
                    }
                    stream = other;
                }
            },
            Ok(FirstPacket::GssEncRequest) => {
                if let Err(e) = stream.write_all(b"N").await {
                    fail!(None, e);
                }
            }
            Ok(FirstPacket::Cancel { pid, secret }) => {
                return Ok(Negotiated::Cancel { pid, secret });
            }
            Ok(FirstPacket::Startup(params)) => {
                if tls_required && !stream.is_tls() {
                    fail!(Some(stream), StartupError::TlsRequired);
                }
                return Ok(Negotiated::Client {
                    stream,
                    params,
                    sni,
                });
            }
        }
    }
    Err(Failed {
        stream: Some(stream),
        error: StartupError::TooManyRounds,
    })
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
) -> Result<(tokio_rustls::server::TlsStream<TcpStream>, Option<String>), StartupError> {
    let s = acceptor
        .accept(tcp)
        .await
        .map_err(|e| StartupError::Tls(e.to_string()))?;
    let name = s.get_ref().1.server_name().map(str::to_owned);
    Ok((s, name))
}

/// Writes a FATAL error to a client that has not logged in yet.
pub(crate) async fn refuse(stream: &mut ClientStream, err: &ClientError) {
    let mut buf = BytesMut::new();
    crate::protocol::messages::error_response(
        &mut buf,
        crate::protocol::messages::Severity::Fatal,
        err.code,
        &err.message,
        err.detail.as_deref(),
    );
    let _ = stream.write_all(&buf).await;
    let _ = stream.shutdown().await;
}
