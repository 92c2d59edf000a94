//! The 5-byte header of every typed message: one tag byte and a big-endian length that counts
//! itself but not the tag.

/// Largest message pgtenant accepts from a client (PostgreSQL's own limit is 1 GB).
pub(crate) const MAX_MESSAGE_LEN: usize = 1 << 30;

/// PostgreSQL's largest length field for a frontend message that carries no statement text,
/// parameters or data (`PQ_SMALL_MESSAGE_LIMIT`): a longer Sync, Flush, Describe, Execute,
/// Close, Terminate, CopyDone or CopyFail makes the server end its session.
pub(crate) const SMALL_MESSAGE_LIMIT: u32 = 10_000;

/// Frontend tags the relay acts on.
pub(crate) mod frontend {
    pub(crate) const QUERY: u8 = b'Q';
    pub(crate) const SYNC: u8 = b'S';
    pub(crate) const FUNCTION_CALL: u8 = b'F';
    pub(crate) const TERMINATE: u8 = b'X';
    pub(crate) const PARSE: u8 = b'P';
    pub(crate) const BIND: u8 = b'B';
    pub(crate) const DESCRIBE: u8 = b'D';
    pub(crate) const EXECUTE: u8 = b'E';
    pub(crate) const CLOSE: u8 = b'C';
    pub(crate) const FLUSH: u8 = b'H';
    pub(crate) const PASSWORD: u8 = b'p';
    pub(crate) const COPY_DATA: u8 = b'd';
    pub(crate) const COPY_DONE: u8 = b'c';
    pub(crate) const COPY_FAIL: u8 = b'f';

    /// A message type a client may send once logged in.
    pub(crate) fn is_known(tag: u8) -> bool {
        matches!(
            tag,
            QUERY
                | SYNC
                | FUNCTION_CALL
                | TERMINATE
                | PARSE
                | BIND
                | DESCRIBE
                | EXECUTE
                | CLOSE
                | FLUSH
                | COPY_DATA
                | COPY_DONE
                | COPY_FAIL
        )
    }
}

/// Backend tags the relay acts on.
pub(crate) mod backend {
    pub(crate) const READY_FOR_QUERY: u8 = b'Z';
    pub(crate) const ERROR_RESPONSE: u8 = b'E';
    pub(crate) const AUTHENTICATION: u8 = b'R';
    pub(crate) const PARAMETER_STATUS: u8 = b'S';
    pub(crate) const BACKEND_KEY_DATA: u8 = b'K';
    pub(crate) const NOTICE_RESPONSE: u8 = b'N';
    pub(crate) const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    pub(crate) const DATA_ROW: u8 = b'D';
}

/// A parsed message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) tag: u8,
    /// The length field: body length + 4.
    pub(crate) len: u32,
}

impl Header {
    pub(crate) const SIZE: usize = 5;

    /// Reads a header from the front of `buf`; `None` means fewer than 5 bytes are there.
    #[inline]
    pub(crate) fn parse(buf: &[u8]) -> Option<Header> {
        if buf.len() < Self::SIZE {
            return None;
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        Some(Header { tag: buf[0], len })
    }

    /// Total size of the message on the wire, tag included.
    #[inline]
    pub(crate) fn total(&self) -> usize {
        self.len as usize + 1
    }

    /// A length field below 4 cannot be valid; above the limit we refuse it.
    #[inline]
    pub(crate) fn is_valid(&self) -> bool {
        self.len >= 4 && (self.len as usize) <= MAX_MESSAGE_LEN
    }

    /// [`Header::is_valid`] for a message from a client, which PostgreSQL also holds to
    /// [`SMALL_MESSAGE_LIMIT`] unless it may carry a statement, parameters or COPY data.
    #[inline]
    pub(crate) fn is_valid_frontend(&self) -> bool {
        self.is_valid()
            && (self.len <= SMALL_MESSAGE_LIMIT
                || matches!(
                    self.tag,
                    frontend::QUERY
                        | frontend::FUNCTION_CALL
                        | frontend::PARSE
                        | frontend::BIND
                        | frontend::COPY_DATA
                ))
    }

    /// Why the relay refuses a client message with this header (an unknown type or an
    /// invalid length), in words for the client; `None` if it does not.
    pub(crate) fn refusal(&self) -> Option<String> {
        if !frontend::is_known(self.tag) {
            Some(format!("unexpected message type {}", tag_name(self.tag)))
        } else if !self.is_valid_frontend() {
            Some(self.invalid_reason())
        } else {
            None
        }
    }

    /// Why a client's header is not [`Header::is_valid_frontend`], in words for the client.
    pub(crate) fn invalid_reason(&self) -> String {
        format!(
            "invalid length {} in message {}",
            self.len as i32,
            tag_name(self.tag)
        )
    }
}

/// A message tag for an error message: `'Q'` when printable, else its byte value (`0x00`),
/// which keeps a NUL or control byte out of the text.
pub(crate) fn tag_name(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        format!("'{}'", tag as char)
    } else {
        format!("0x{tag:02x}")
    }
}
