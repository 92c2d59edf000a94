//! Messages pgtenant generates itself. Backend messages are pgwire's types; the writers append
//! to the caller's buffer so a batch of them costs one write.

use bytes::{BufMut, BytesMut};
use pgwire::messages::Message;
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};
use pgwire::messages::response::{
    CommandComplete, ErrorResponse, NoticeResponse, ReadyForQuery, TransactionStatus,
};
use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey,
};

/// Severity of an error pgtenant sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    /// The session ends after this message.
    Fatal,
    /// The statement failed; the session goes on.
    Error,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "FATAL",
            Severity::Error => "ERROR",
        }
    }
}

fn put<M: Message>(msg: &M, buf: &mut BytesMut) {
    // Only oversized messages fail to encode; everything pgtenant generates is small.
    if let Err(e) = msg.encode(buf) {
        tracing::error!(error = %e, "could not encode a generated message");
    }
}

/// `ErrorResponse` with severity, SQLSTATE, message and optional detail.
pub(crate) fn error_response(
    buf: &mut BytesMut,
    severity: Severity,
    code: &str,
    message: &str,
    detail: Option<&str>,
) {
    // A field is a C string: a NUL inside one (a client's bytes quoted in a message) would
    // end it early and turn the rest into bogus fields.
    let text = |t: &str| t.replace('\0', "\\0");
    let mut fields = vec![
        (b'S', severity.as_str().to_owned()),
        (b'V', severity.as_str().to_owned()),
        (b'C', code.to_owned()),
        (b'M', text(message)),
    ];
    if let Some(d) = detail {
        fields.push((b'D', text(d)));
    }
    put(&ErrorResponse::new(fields), buf);
}

pub(crate) fn auth_ok(buf: &mut BytesMut) {
    put(&Authentication::Ok, buf);
}

/// `AuthenticationCleartextPassword`: asked only of JWT users, over TLS.
pub(crate) fn auth_cleartext_password(buf: &mut BytesMut) {
    put(&Authentication::CleartextPassword, buf);
}

pub(crate) fn auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    put(
        &Authentication::SASL(mechanisms.iter().map(|m| (*m).to_owned()).collect()),
        buf,
    );
}

pub(crate) fn auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    put(
        &Authentication::SASLContinue(bytes::Bytes::copy_from_slice(data)),
        buf,
    );
}

pub(crate) fn auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    put(
        &Authentication::SASLFinal(bytes::Bytes::copy_from_slice(data)),
        buf,
    );
}

pub(crate) fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    put(
        &ParameterStatus::new(name.to_owned(), value.to_owned()),
        buf,
    );
}

pub(crate) fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    put(&BackendKeyData::new(pid, SecretKey::I32(secret)), buf);
}

pub(crate) fn ready_for_query_idle(buf: &mut BytesMut) {
    put(&ReadyForQuery::new(TransactionStatus::Idle), buf);
}

/// Type of a column pgtenant returns itself (admin console).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnType {
    Text,
    Int8,
}

/// `RowDescription` for text-format columns.
pub(crate) fn row_description(buf: &mut BytesMut, columns: &[(&str, ColumnType)]) {
    let fields = columns
        .iter()
        .map(|(name, ty)| {
            let (oid, size) = match ty {
                ColumnType::Text => (25, -1),
                ColumnType::Int8 => (20, 8),
            };
            FieldDescription::new((*name).to_owned(), 0, 0, oid, size, -1, 0)
        })
        .collect();
    put(&RowDescription::new(fields), buf);
}

/// `DataRow` of text-format values (`None` is NULL).
pub(crate) fn data_row(buf: &mut BytesMut, values: &[Option<String>]) {
    let mut data = BytesMut::new();
    for v in values {
        match v {
            Some(s) => {
                data.put_i32(s.len() as i32);
                data.put_slice(s.as_bytes());
            }
            None => data.put_i32(-1),
        }
    }
    put(&DataRow::new(data, values.len() as i16), buf);
}

/// `EmptyQueryResponse`: the answer to an empty query string.
pub(crate) fn empty_query(buf: &mut BytesMut) {
    put(&pgwire::messages::response::EmptyQueryResponse::new(), buf);
}

pub(crate) fn command_complete(buf: &mut BytesMut, tag: &str) {
    put(&CommandComplete::new(tag.to_owned()), buf);
}

/// `NoticeResponse` (severity NOTICE) with a message.
pub(crate) fn notice(buf: &mut BytesMut, message: &str) {
    put(
        &NoticeResponse::new(vec![
            (b'S', "NOTICE".to_owned()),
            (b'V', "NOTICE".to_owned()),
            (b'C', "00000".to_owned()),
            (b'M', message.to_owned()),
        ]),
        buf,
    );
}

/// Tells a client asking for protocol 3.x (x > 0) that 3.0 is spoken, and which `_pq_`
/// options were not recognised.
pub(crate) fn negotiate_protocol_version(buf: &mut BytesMut, unsupported: Vec<String>) {
    put(&NegotiateProtocolVersion::new(0, unsupported), buf);
}

/// Frontend `Query` message, for the statements pgtenant injects upstream.
pub(crate) fn query(buf: &mut BytesMut, sql: &str) {
    buf.put_u8(b'Q');
    buf.put_u32((4 + sql.len() + 1) as u32);
    buf.put_slice(sql.as_bytes());
    buf.put_u8(0);
}

/// Quotes a string literal for SQL (`'` doubled); the result is safe with
/// `standard_conforming_strings = on`, which pgtenant's upstream sessions always have.
pub(crate) fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    if value.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Quotes an identifier for SQL (`"` doubled).
pub(crate) fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Reads the status byte of a complete `ReadyForQuery` message (`I`, `T` or `E`).
pub(crate) fn ready_status(msg: &[u8]) -> Option<u8> {
    (msg.len() == 6 && msg[0] == b'Z').then(|| msg[5])
}

/// The fields of a complete `ErrorResponse`/`NoticeResponse`: (field type, value).
fn fields(msg: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut body = msg.get(5..).unwrap_or_default();
    std::iter::from_fn(move || {
        let (&field, rest) = body.split_first()?;
        if field == 0 {
            return None;
        }
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        body = rest.get(end + 1..).unwrap_or_default();
        Some((field, &rest[..end]))
    })
}

/// Reads the SQLSTATE and message of a complete `ErrorResponse`/`NoticeResponse`.
pub(crate) fn error_fields(msg: &[u8]) -> (String, String) {
    let mut code = String::new();
    let mut message = String::new();
    for (field, value) in fields(msg) {
        match field {
            b'C' => code = String::from_utf8_lossy(value).into_owned(),
            b'M' => message = String::from_utf8_lossy(value).into_owned(),
            _ => {}
        }
    }
    (code, message)
}

/// A complete `ErrorResponse` whose severity ends the session (`FATAL` or `PANIC`): read
/// from the untranslated severity field, else the localized one.
pub(crate) fn ends_session(msg: &[u8]) -> bool {
    let mut severity = None;
    for (field, value) in fields(msg) {
        match field {
            b'V' => {
                severity = Some(value);
                break;
            }
            b'S' => severity = Some(value),
            _ => {}
        }
    }
    matches!(severity, Some(b"FATAL" | b"PANIC"))
}
