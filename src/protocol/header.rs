//! The 5-byte header of every typed message: one tag byte and a big-endian length that counts
//! itself but not the tag.

/// Largest message pgtenant accepts from a client (PostgreSQL's own limit is 1 GB).
pub(crate) const MAX_MESSAGE_LEN: usize = 1 << 30;

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
}
