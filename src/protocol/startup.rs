//! The untyped packets a client may open with: SSLRequest, GSSENCRequest, CancelRequest and
//! StartupMessage (<https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP>).

use thiserror::Error;

/// Longest first packet accepted, as PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`.
pub(crate) const MAX_STARTUP_LEN: usize = 10_000;

const SSL_REQUEST_CODE: u32 = 80_877_103;
const GSSENC_REQUEST_CODE: u32 = 80_877_104;
const CANCEL_REQUEST_CODE: u32 = 80_877_102;
const PROTOCOL_MAJOR_3: u16 = 3;

/// First byte of a TLS handshake record: a client using PostgreSQL 17's direct TLS.
pub(crate) const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// One decoded first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FirstPacket {
    SslRequest,
    GssEncRequest,
    Cancel { pid: i32, secret: Vec<u8> },
    Startup(StartupParams),
}

/// A StartupMessage: protocol version and the parameters in the order the client sent them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct StartupParams {
    pub(crate) minor_version: u16,
    pub(crate) params: Vec<(String, String)>,
}

impl StartupParams {
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum StartupPacketError {
    #[error("invalid length of startup packet: {0}")]
    BadLength(usize),
    #[error("unsupported frontend protocol {0}.{1}: server supports 3.0 to 3.2")]
    UnsupportedProtocol(u16, u16),
    #[error("invalid startup packet layout: {0}")]
    Layout(&'static str),
}

/// Reads the length word of a first packet; checks it against the limits.
pub(crate) fn packet_len(word: [u8; 4]) -> Result<usize, StartupPacketError> {
    let len = u32::from_be_bytes(word) as usize;
    if !(8..=MAX_STARTUP_LEN).contains(&len) {
        return Err(StartupPacketError::BadLength(len));
    }
    Ok(len)
}

/// Decodes the body of a first packet (everything after its length word).
pub(crate) fn decode(body: &[u8]) -> Result<FirstPacket, StartupPacketError> {
    if body.len() < 4 {
        return Err(StartupPacketError::BadLength(body.len() + 4));
    }
    let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let rest = &body[4..];
    match code {
        SSL_REQUEST_CODE => Ok(FirstPacket::SslRequest),
        GSSENC_REQUEST_CODE => Ok(FirstPacket::GssEncRequest),
        CANCEL_REQUEST_CODE => {
            if rest.len() < 8 || rest.len() > 4 + 256 {
                return Err(StartupPacketError::Layout("cancel request key length"));
            }
            let pid = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
            Ok(FirstPacket::Cancel {
                pid,
                secret: rest[4..].to_vec(),
            })
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != PROTOCOL_MAJOR_3 {
                return Err(StartupPacketError::UnsupportedProtocol(major, minor));
            }
            Ok(FirstPacket::Startup(StartupParams {
                minor_version: minor,
                params: decode_params(rest)?,
            }))
        }
    }
}

fn decode_params(mut rest: &[u8]) -> Result<Vec<(String, String)>, StartupPacketError> {
    let mut params = Vec::new();
    loop {
        let key = take_cstr(&mut rest)?;
        if key.is_empty() {
            break;
        }
        let value = take_cstr(&mut rest)?;
        params.push((key, value));
    }
    if !rest.is_empty() {
        return Err(StartupPacketError::Layout(
            "bytes after the final terminator",
        ));
    }
    Ok(params)
}

fn take_cstr(rest: &mut &[u8]) -> Result<String, StartupPacketError> {
    let end = rest
        .iter()
        .position(|b| *b == 0)
        .ok_or(StartupPacketError::Layout("missing terminator"))?;
    let s = std::str::from_utf8(&rest[..end])
        .map_err(|_| StartupPacketError::Layout("parameter is not valid UTF-8"))?
        .to_owned();
    *rest = &rest[end + 1..];
    Ok(s)
}
