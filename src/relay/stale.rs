//! Statements whose plan went stale: after DDL changes a table's columns, PostgreSQL refuses
//! a prepared `SELECT *` on it with `0A000` "cached plan must not change result type", once
//! per session, and a driver prepares the same SQL again. Through pgtenant the same SQL maps
//! to the same content-addressed `pgt_<hash>`, which the server connection still holds, so the
//! stale plan would fail forever. When a server connection answers a Bind or Describe of
//! `pgt_X` with that error, the relay marks `pgt_X` stale on that connection (its next Parse
//! is preceded by a Close) and records it here, so every other server connection that holds
//! `pgt_X` parses it again on its next use instead of failing once more.
//!
//! Statements clients prepared before the error keep failing, as on PostgreSQL, with the same
//! error (pgtenant's own, with PostgreSQL's routine name, which pgjdbc looks for): their result
//! descriptions are out of date, and a silently re-parsed statement would hand a driver rows of
//! another shape than the one it cached (pgjdbc then reports the old column count). Statements
//! prepared after it use the re-parsed server statement.
//!
//! Reading this costs one atomic load per extended-protocol message: connections and
//! statements compare their position in the log (an epoch) with the log's, and read the log
//! only when it moved.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::FEATURE_NOT_SUPPORTED;

/// How many stale statements are remembered: a connection further behind than this misses
/// the oldest, and (like a direct connection) gets the error once for it.
const LOG_LIMIT: usize = 1024;

/// The message PostgreSQL gives (in English; the routine name below is never translated).
const STALE_MESSAGE: &[u8] = b"cached plan must not change result type";
/// The server functions that raise it (pgjdbc recognises the error by these too).
const STALE_ROUTINES: [&[u8]; 2] = [b"RevalidateCachedQuery", b"RevalidateCachedPlan"];

/// The log of statements that went stale, shared by all sessions.
#[derive(Debug, Default)]
pub(crate) struct StalePlans {
    /// Number of entries ever logged.
    epoch: AtomicU64,
    /// (epoch at which it was logged, server statement name), oldest first.
    log: Mutex<Vec<(u64, Box<str>)>>,
}

impl StalePlans {
    /// The log's position (compare with a connection's before reading the log).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Logs `name` as stale; returns the epochs before and after.
    pub(crate) fn mark(&self, name: &str) -> (u64, u64) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let before = self.epoch.load(Ordering::Acquire);
        let after = before + 1;
        log.push((after, name.into()));
        if log.len() > LOG_LIMIT {
            let excess = log.len() - LOG_LIMIT;
            log.drain(..excess);
        }
        self.epoch.store(after, Ordering::Release);
        (before, after)
    }

    /// True if `name` was logged after epoch `since`.
    pub(crate) fn logged_since(&self, since: u64, name: &str) -> bool {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter().any(|(e, n)| *e > since && **n == *name)
    }

    /// Calls `f` with every name logged after epoch `since`; returns the epoch now.
    pub(crate) fn since(&self, since: u64, mut f: impl FnMut(&str)) -> u64 {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        for (_, name) in log.iter().filter(|(e, _)| *e > since) {
            f(name);
        }
        self.epoch.load(Ordering::Acquire)
    }
}

/// PostgreSQL's ErrorResponse for a statement whose plan went stale, with the routine name
/// drivers recognise it by (pgjdbc prepares the statement again and retries when it sees it).
pub(crate) fn error_response() -> Bytes {
    let mut body = BytesMut::new();
    for (field, value) in [
        (b'S', &b"ERROR"[..]),
        (b'V', b"ERROR"),
        (b'C', FEATURE_NOT_SUPPORTED.as_bytes()),
        (b'M', STALE_MESSAGE),
        (b'F', b"plancache.c"),
        (b'R', STALE_ROUTINES[0]),
    ] {
        body.put_u8(field);
        body.put_slice(value);
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut msg = BytesMut::with_capacity(5 + body.len());
    msg.put_u8(b'E');
    msg.put_u32(4 + body.len() as u32);
    msg.put_slice(&body);
    msg.freeze()
}

/// True if the ErrorResponse `msg` (whole message) is PostgreSQL's "cached plan must not
/// change result type".
pub(crate) fn is_stale_plan_error(msg: &[u8]) -> bool {
    let mut code = false;
    let mut stale = false;
    let mut body = msg.get(5..).unwrap_or_default();
    while let Some((&field, rest)) = body.split_first() {
        if field == 0 {
            break;
        }
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        let value = &rest[..end];
        match field {
            b'C' => code = value == FEATURE_NOT_SUPPORTED.as_bytes(),
            b'M' => stale |= value == STALE_MESSAGE,
            b'R' => stale |= STALE_ROUTINES.contains(&value),
            _ => {}
        }
        body = rest.get(end + 1..).unwrap_or_default();
    }
    code && stale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(fields: &[(u8, &str)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (f, v) in fields {
            body.push(*f);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = vec![b'E'];
        msg.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn recognises_the_error_by_code_and_message_or_routine() {
        let english = error(&[
            (b'S', "ERROR"),
            (b'C', "0A000"),
            (b'M', "cached plan must not change result type"),
            (b'R', "RevalidateCachedQuery"),
        ]);
        assert!(is_stale_plan_error(&english));
        let translated = error(&[
            (b'C', "0A000"),
            (b'M', "der gecachte Plan darf den Ergebnistyp nicht ändern"),
            (b'R', "RevalidateCachedQuery"),
        ]);
        assert!(is_stale_plan_error(&translated));
        let other = error(&[(b'C', "0A000"), (b'M', "cannot do that"), (b'R', "f")]);
        assert!(!is_stale_plan_error(&other));
        let code = error(&[(b'C', "42P01"), (b'R', "RevalidateCachedQuery")]);
        assert!(!is_stale_plan_error(&code));
        assert!(
            is_stale_plan_error(&error_response()),
            "pgtenant's own says the same"
        );
    }

    #[test]
    fn connections_read_only_what_was_logged_since() {
        let log = StalePlans::default();
        assert_eq!(log.epoch(), 0);
        assert_eq!(log.mark("pgt_a"), (0, 1));
        assert_eq!(log.mark("pgt_b"), (1, 2));
        assert!(log.logged_since(0, "pgt_a") && !log.logged_since(1, "pgt_a"));
        let mut seen = Vec::new();
        assert_eq!(log.since(1, |n| seen.push(n.to_owned())), 2);
        assert_eq!(seen, ["pgt_b"]);
        seen.clear();
        log.since(0, |n| seen.push(n.to_owned()));
        assert_eq!(seen, ["pgt_a", "pgt_b"]);
    }

    #[test]
    fn the_log_is_bounded() {
        let log = StalePlans::default();
        for i in 0..LOG_LIMIT + 10 {
            log.mark(&format!("pgt_{i}"));
        }
        let mut n = 0;
        log.since(0, |_| n += 1);
        assert_eq!(n, LOG_LIMIT);
    }
}
