//! Prepared statements in transaction mode: a client's named statements live in its own name
//! map; on the server they are content-addressed (`pgt_<hash of query and parameter types>`),
//! so the same SQL is parsed once per server connection whichever client sent it, and re-Parsed
//! lazily on a server connection that lacks it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use bytes::{BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};

use crate::backend::conn::ServerConn;
use crate::fast_map::FastMap;
use crate::guard::Verdict;

/// A statement as the server knows it.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// `pgt_` + 24 hex digits.
    pub(crate) server_name: Box<str>,
    /// The client's name for it (each client Parse makes its own `Prepared`).
    pub(crate) client_name: Box<[u8]>,
    /// The complete Parse message under `server_name`, ready to inject.
    pub(crate) parse: Bytes,
    /// Executing it may change session settings (see `taint`).
    pub(crate) taints: bool,
    /// Executing it may drop prepared statements (`DEALLOCATE`, `DISCARD`).
    pub(crate) drops: bool,
    /// The shared-placement guard's verdict (always `Allowed`: refused Parses register nothing).
    pub(crate) verdict: Option<Arc<Verdict>>,
    /// The stale-plan log's epoch (`relay::stale`) up to which this statement is known fresh.
    pub(crate) checked: AtomicU64,
    /// Its plan went stale after the client prepared it (the client's result description is
    /// out of date): like on PostgreSQL, it fails until the client prepares it again.
    pub(crate) stale: AtomicBool,
}

/// Two statements are the same if the server knows them by the same name (same content).
impl PartialEq for Prepared {
    fn eq(&self, other: &Self) -> bool {
        self.server_name == other.server_name
    }
}

impl Eq for Prepared {}

/// The client's statement names.
#[derive(Debug, Default)]
pub(crate) struct Statements {
    map: FastMap<Box<[u8]>, Arc<Prepared>>,
}

/// Splits a C string off the front of `body`: (string, rest).
pub(crate) fn cstr(body: &[u8]) -> Option<(&[u8], &[u8])> {
    // memchr: a statement text is searched for its terminator on every Parse and Query.
    let end = memchr::memchr(0, body)?;
    Some((&body[..end], &body[end + 1..]))
}

impl Statements {
    /// Registers a named Parse (`body` is the message body) and returns the server statement;
    /// `epoch` is the stale-plan log's epoch now.
    pub(crate) fn parse(
        &mut self,
        name: &[u8],
        after_name: &[u8],
        taints: bool,
        drops: bool,
        verdict: Option<Arc<Verdict>>,
        epoch: u64,
    ) -> Arc<Prepared> {
        let digest = Sha256::digest(after_name);
        let server_name = format!("pgt_{}", hex::encode(&digest[..12]));
        let mut parse = BytesMut::with_capacity(1 + 4 + server_name.len() + 1 + after_name.len());
        parse_message(&mut parse, &server_name, after_name);
        let p = Arc::new(Prepared {
            server_name: server_name.into_boxed_str(),
            client_name: name.into(),
            parse: parse.freeze(),
            taints,
            drops,
            verdict,
            checked: AtomicU64::new(epoch),
            stale: AtomicBool::new(false),
        });
        self.map.insert(p.client_name.clone(), p.clone());
        p
    }

    pub(crate) fn get(&self, name: &[u8]) -> Option<&Arc<Prepared>> {
        self.map.get(name)
    }

    pub(crate) fn close(&mut self, name: &[u8]) {
        self.map.remove(name);
    }

    /// Puts back statement `p`, whose Close the server skipped, unless the client has
    /// registered another by that name since.
    pub(crate) fn reopen(&mut self, p: Arc<Prepared>) {
        if !self.map.contains_key(&p.client_name) {
            self.map.insert(p.client_name.clone(), p);
        }
    }

    /// Forgets the client's statement `p` registered, unless a later Parse of the name (even
    /// of the same text) registered another since: `p`'s Parse did not run.
    pub(crate) fn close_if(&mut self, p: &Arc<Prepared>) {
        if self
            .map
            .get(&p.client_name)
            .is_some_and(|q| Arc::ptr_eq(q, p))
        {
            self.map.remove(&p.client_name);
        }
    }
}

/// The client may have dropped statements (`DEALLOCATE`, `DISCARD`) on `conn`: from here on
/// `conn.prepared` lists only what pgtenant Parses again, and every re-Parse is preceded by a
/// Close, until the next attachment resets the connection with `DEALLOCATE ALL`.
pub(crate) fn forget_all(conn: &mut ServerConn) {
    conn.prepared.clear();
    conn.prepared_unknown = true;
}

/// Writes a Parse of statement `name`; `after_name` is the rest of the body (query, NUL,
/// parameter types).
pub(crate) fn parse_message(out: &mut BytesMut, name: &str, after_name: &[u8]) {
    out.put_u8(b'P');
    out.put_u32((4 + name.len() + 1 + after_name.len()) as u32);
    out.put_slice(name.as_bytes());
    out.put_u8(0);
    out.put_slice(after_name);
}

/// Writes a Close of server statement `name` (closing one that does not exist is no error).
pub(crate) fn close_statement(out: &mut BytesMut, name: &str) {
    out.put_u8(b'C');
    out.put_u32((4 + 1 + name.len() + 1) as u32);
    out.put_u8(b'S');
    out.put_slice(name.as_bytes());
    out.put_u8(0);
}

/// Rewrites a message `tag` + `prefix` + `name`\0 + `rest` with a new statement name.
pub(crate) fn rewrite(out: &mut BytesMut, tag: u8, prefix: &[u8], name: &str, rest: &[u8]) {
    out.put_u8(tag);
    out.put_u32((4 + prefix.len() + name.len() + 1 + rest.len()) as u32);
    out.put_slice(prefix);
    out.put_slice(name.as_bytes());
    out.put_u8(0);
    out.put_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_sql_same_server_name() {
        let mut a = Statements::default();
        let mut b = Statements::default();
        let p1 = a.parse(b"s1", b"SELECT 1\0\0\0", false, false, None, 0);
        let p2 = b.parse(b"other", b"SELECT 1\0\0\0", false, false, None, 0);
        let p3 = b.parse(b"s1", b"SELECT 2\0\0\0", false, false, None, 0);
        assert_eq!(p1.server_name, p2.server_name);
        assert_ne!(p1.server_name, p3.server_name);
        assert!(p1.server_name.starts_with("pgt_"));
        assert_eq!(p1.server_name.len(), 28);
        // The injected Parse is a well-formed message.
        assert_eq!(p1.parse[0], b'P');
        let len = u32::from_be_bytes([p1.parse[1], p1.parse[2], p1.parse[3], p1.parse[4]]);
        assert_eq!(len as usize + 1, p1.parse.len());
        assert_eq!(
            b.get(b"s1").map(|p| p.server_name.clone()),
            Some(p3.server_name.clone())
        );
        b.close(b"s1");
        assert!(b.get(b"s1").is_none());
    }

    #[test]
    fn close_statement_frames() {
        let mut out = BytesMut::new();
        close_statement(&mut out, "pgt_x");
        assert_eq!(&out[..], b"C\0\0\0\x0bSpgt_x\0");
    }

    #[test]
    fn rewrite_frames() {
        let mut out = BytesMut::new();
        rewrite(&mut out, b'B', b"\0", "pgt_x", b"\0\0\0\0\0\0");
        assert_eq!(&out[..], b"B\0\0\0\x11\0pgt_x\0\0\0\0\0\0\0");
    }

    /// A Parse that did not run forgets its own registration only: a later Parse of the same
    /// name and text (the same server statement) stays.
    #[test]
    fn close_if_leaves_a_later_parse_of_the_same_text() {
        let mut st = Statements::default();
        let first = st.parse(b"s1", b"SELECT 1\0\0\0", false, false, None, 0);
        let second = st.parse(b"s1", b"SELECT 1\0\0\0", false, false, None, 0);
        assert_eq!(first.server_name, second.server_name);
        st.close_if(&first);
        assert!(st.get(b"s1").is_some_and(|p| Arc::ptr_eq(p, &second)));
        st.close_if(&second);
        assert!(st.get(b"s1").is_none());
    }
}
