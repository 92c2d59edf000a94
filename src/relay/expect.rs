//! What the server owes, in order: one entry per request sent upstream, so that replies to
//! pgtenant's own messages can be hidden and replies to messages pgtenant answered itself
//! can be put in the right place of the client's stream.
//!
//! Responses per request (protocol docs, "Extended Query"): Parse → `1`, Bind → `2`,
//! Close → `3`, Describe → [`t`] then `T`/`n`, Execute → rows then `C`/`I`/`s`,
//! Sync, Query and FunctionCall → everything up to `Z`. After an ErrorResponse in the
//! extended protocol the server skips to the next Sync. In COPY FROM STDIN mode the server
//! ignores Syncs until the client's CopyDone or CopyFail (drivers such as tokio-postgres send
//! Bind, Execute and Sync before they know the statement is a COPY): those owe nothing.

use std::collections::VecDeque;
use std::sync::Arc;

use super::prepared::Prepared;
use crate::error::IN_FAILED_TRANSACTION;

/// A request whose answer is still to come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Client Parse, forwarded; `statement` is the client's named statement it registered
    /// (and the server statement it creates), if any.
    Parse {
        statement: Option<Arc<Prepared>>,
    },
    /// Client Bind; `statement` is the client's named statement it binds, if any.
    Bind {
        statement: Option<Arc<Prepared>>,
    },
    /// Client Describe; `statement` is the client's named statement it describes, if any.
    Describe {
        statement: Option<Arc<Prepared>>,
    },
    Execute,
    /// Client Close of a portal, forwarded.
    Close,
    Sync,
    Query,
    FunctionCall,
    /// A Parse pgtenant injected before a Bind/Describe: its ParseComplete is hidden.
    HiddenParse {
        prepared: Box<str>,
    },
    /// A Close pgtenant injected before re-Parsing a statement the server may still hold.
    HiddenClose,
    /// A Query pgtenant injected (reset, tenant setup): all its replies are hidden.
    HiddenQuery,
    /// Not a request: the client's CopyDone or CopyFail, where a COPY FROM STDIN ends. It marks
    /// which queued Syncs the server ignored once it says it entered copy-in mode.
    CopyEnd,
    /// A client Parse of a statement the server already has (`statement`, as registered for
    /// the client): pgtenant answers ParseComplete.
    FakeParseComplete {
        statement: Arc<Prepared>,
    },
    /// A client Close of a statement: pgtenant answers CloseComplete (the server keeps it).
    /// `statement`: the client's statement it closed, if the client had one by that name
    /// (back in the client's map if the server skips the Close after an error).
    FakeCloseComplete {
        statement: Option<Arc<Prepared>>,
    },
    /// A client's SQL `DEALLOCATE` of its own statement, sent while replies were still owed:
    /// pgtenant answers it (`relay::deallocate`) once they have arrived, with the transaction
    /// status they leave (in a failed transaction: `25P02`, as PostgreSQL).
    FakeDeallocate,
    /// A message the guard refused, replaced by one the server is sure to reject: the
    /// server's ErrorResponse is swapped for pgtenant's own (`error`, a whole message), so
    /// that the server's transaction state matches what the client is told.
    Refused {
        error: bytes::Bytes,
        /// In place of a Query or FunctionCall (else an extended-protocol message).
        simple: bool,
    },
}

impl Expect {
    /// Requests answered by everything up to a ReadyForQuery.
    fn ends_with_ready(&self) -> bool {
        matches!(
            self,
            Expect::Sync | Expect::Query | Expect::FunctionCall | Expect::HiddenQuery
        )
    }

    /// Requests of the extended protocol, forwarded or injected: a Sync ends what they begin.
    fn is_extended(&self) -> bool {
        match self {
            Expect::Parse { .. }
            | Expect::Bind { .. }
            | Expect::Describe { .. }
            | Expect::Execute
            | Expect::Close
            | Expect::HiddenParse { .. }
            | Expect::HiddenClose => true,
            Expect::Refused { simple, .. } => !simple,
            _ => false,
        }
    }

    /// Entries no server reply answers: [`Expected::drain_fakes`] takes them off the queue.
    fn is_fake(&self) -> bool {
        matches!(
            self,
            Expect::FakeParseComplete { .. }
                | Expect::FakeCloseComplete { .. }
                | Expect::FakeDeallocate
                | Expect::CopyEnd
        )
    }
}

/// What to do with one server message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Forward,
    Hide,
    /// An error in pgtenant's own setup statement.
    SetupFailed,
    /// Hide this ErrorResponse and send the client this one instead.
    Replace(bytes::Bytes),
}

/// The queue of expected replies.
#[derive(Debug, Default)]
pub(crate) struct Expected {
    queue: VecDeque<Expect>,
    /// An extended-protocol error arrived before the client's next Sync was queued: the server
    /// discards every request up to that Sync and owes nothing for them.
    skipping: bool,
    /// The server is in COPY FROM STDIN mode and the client has not ended it yet: its Syncs
    /// are ignored.
    copy_in: bool,
    /// Client statements, as their Parse registered them, that the server did not create:
    /// the Parse failed or was skipped after an error. The relay takes them off the client's
    /// map.
    unprepared: Vec<Arc<Prepared>>,
    /// Client statements whose Close the server skipped after an error: they were not
    /// closed. The relay puts them back in the client's map.
    not_closed: Vec<Arc<Prepared>>,
}

/// Messages pgtenant must write to the client in place of a fake entry.
pub(crate) const PARSE_COMPLETE: &[u8] = b"1\0\0\0\x04";
pub(crate) const CLOSE_COMPLETE: &[u8] = b"3\0\0\0\x04";

/// PostgreSQL's words for a statement other than `COMMIT`/`ROLLBACK` in a failed transaction.
const ABORTED_MESSAGE: &str =
    "current transaction is aborted, commands ignored until end of transaction block";

impl Expected {
    /// Queues what the server owes for a request. False if the server will discard the request
    /// unanswered (it is skipping to the next Sync after an error): then nothing is owed, and a
    /// Parse in it prepares nothing.
    pub(crate) fn push(&mut self, e: Expect) -> bool {
        if self.copy_in {
            match e {
                Expect::Sync => return false,
                Expect::CopyEnd => {
                    self.copy_in = false;
                    return false;
                }
                _ => {}
            }
        }
        if self.skipping {
            if e != Expect::Sync {
                return false;
            }
            self.skipping = false;
        }
        self.queue.push_back(e);
        true
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The server discards requests until the client's next Sync, which is not queued yet.
    #[cfg(test)]
    pub(crate) fn skipping(&self) -> bool {
        self.skipping
    }

    /// Takes the client statements whose Parse the server did not run (see `unprepared`).
    pub(crate) fn take_unprepared(&mut self) -> Option<Vec<Arc<Prepared>>> {
        (!self.unprepared.is_empty()).then(|| std::mem::take(&mut self.unprepared))
    }

    /// Takes the client statements whose Close the server skipped (see `not_closed`).
    pub(crate) fn take_not_closed(&mut self) -> Option<Vec<Arc<Prepared>>> {
        (!self.not_closed.is_empty()).then(|| std::mem::take(&mut self.not_closed))
    }

    /// A ReadyForQuery arriving now answers a client's Query or FunctionCall, and no
    /// extended-protocol request is queued behind it: PostgreSQL has ended the implicit
    /// transaction that extended-protocol messages before it began, as a Sync would.
    pub(crate) fn ready_ends_batch(&self) -> bool {
        let mut owed = self.queue.iter().filter(|e| !e.is_fake());
        matches!(owed.next(), Some(Expect::Query | Expect::FunctionCall))
            && !owed.any(Expect::is_extended)
    }

    /// Pops fake entries at the head (all before them is answered) and writes their replies;
    /// `status` is the transaction status the last ReadyForQuery reported. True if a reply
    /// written ends a transaction (a ReadyForQuery `I`).
    pub(crate) fn drain_fakes(&mut self, out: &mut bytes::BytesMut, status: u8) -> bool {
        let mut ended = false;
        while let Some(head) = self.queue.front() {
            match head {
                Expect::FakeParseComplete { .. } => out.extend_from_slice(PARSE_COMPLETE),
                Expect::FakeCloseComplete { .. } => out.extend_from_slice(CLOSE_COMPLETE),
                Expect::FakeDeallocate if status == b'E' => {
                    crate::protocol::messages::error_response(
                        out,
                        crate::protocol::messages::Severity::Error,
                        IN_FAILED_TRANSACTION,
                        ABORTED_MESSAGE,
                        None,
                    );
                    super::deallocate::write_ready(out, status);
                }
                Expect::FakeDeallocate => {
                    super::deallocate::write_done(out, status);
                    ended |= status == b'I';
                }
                // The end of a COPY the server never reported starting: nothing to wait for.
                Expect::CopyEnd => {}
                _ => return ended,
            }
            self.queue.pop_front();
        }
        ended
    }

    /// A server message with tag `tag` that [`Expected::on_server_message`] would forward and
    /// that changes nothing here but the queue's head: a reply to a client request of the
    /// extended protocol at the head (taken off the queue if the message completes it), or a
    /// reply inside the answer to a client Query, Sync or FunctionCall (rows, their
    /// description, command tags, notices); anything but the ErrorResponse, ReadyForQuery,
    /// CopyInResponse or ParameterStatus the relay acts on. True if so: the relay forwards it
    /// without the per-message bookkeeping.
    pub(crate) fn pass(&mut self, tag: u8) -> bool {
        if matches!(tag, b'E' | b'Z' | b'G' | b'S') {
            return false;
        }
        let done = match self.queue.front() {
            Some(Expect::Query | Expect::Sync | Expect::FunctionCall) => false,
            Some(Expect::Parse { .. }) => tag == b'1',
            Some(Expect::Bind { .. }) => tag == b'2',
            Some(Expect::Close) => tag == b'3',
            Some(Expect::Describe { .. }) => matches!(tag, b'T' | b'n'),
            Some(Expect::Execute) => matches!(tag, b'C' | b'I' | b's'),
            _ => return false,
        };
        if done {
            self.queue.pop_front();
        }
        true
    }

    /// An entry [`Expected::drain_fakes`] answers is at the head of the queue.
    pub(crate) fn fake_at_head(&self) -> bool {
        self.queue.front().is_some_and(Expect::is_fake)
    }

    /// The client's statement a Bind or Describe at the head of the queue names: what an
    /// ErrorResponse arriving now is about.
    pub(crate) fn head_statement(&self) -> Option<&Arc<Prepared>> {
        match self.queue.iter().find(|e| **e != Expect::CopyEnd)? {
            Expect::Bind { statement } | Expect::Describe { statement } => statement.as_ref(),
            _ => None,
        }
    }

    /// Accounts for one server message with tag `tag`; `dropped` collects server statement
    /// names whose Parse never ran (skipped after an error).
    pub(crate) fn on_server_message(&mut self, tag: u8, dropped: &mut Vec<Box<str>>) -> Route {
        while self.queue.front() == Some(&Expect::CopyEnd) {
            self.queue.pop_front();
        }
        if matches!(tag, b'E' | b'Z') {
            // An error or ReadyForQuery: the server is out of copy-in mode.
            self.copy_in = false;
        }
        if tag == b'G' && matches!(self.queue.front(), Some(Expect::Execute | Expect::Query)) {
            self.entered_copy_in();
            return Route::Forward;
        }
        let Some(head) = self.queue.front() else {
            // Asynchronous message (notice, notification, parameter status, FATAL).
            return Route::Forward;
        };
        if tag == b'E'
            && let Expect::Refused { error, simple } = head
        {
            let (error, simple) = (error.clone(), *simple);
            self.queue.pop_front();
            // A refused Query or FunctionCall still owes its ReadyForQuery (the next entry);
            // a refused extended message makes the server skip to the next Sync.
            if !simple {
                self.skip_to_sync(dropped);
            }
            return Route::Replace(error);
        }
        let hidden = matches!(
            head,
            Expect::HiddenParse { .. } | Expect::HiddenClose | Expect::HiddenQuery
        );
        let done = match (tag, head) {
            (b'1', Expect::Parse { .. } | Expect::HiddenParse { .. }) => true,
            (b'2', Expect::Bind { .. }) => true,
            (b'3', Expect::Close | Expect::HiddenClose) => true,
            (b'T' | b'n', Expect::Describe { .. }) => true,
            (b'C' | b'I' | b's', Expect::Execute) => true,
            (b'Z', h) if h.ends_with_ready() => true,
            (b'E', h) if h.ends_with_ready() => {
                return if matches!(h, Expect::HiddenQuery) {
                    Route::SetupFailed
                } else {
                    Route::Forward
                };
            }
            (b'E', _) => {
                self.skip_to_sync(dropped);
                return Route::Forward;
            }
            _ => false,
        };
        if done {
            self.queue.pop_front();
        }
        if hidden { Route::Hide } else { Route::Forward }
    }

    /// CopyInResponse: the Syncs the client sent after the head request and before its
    /// CopyDone/CopyFail are ignored by the server; if the client has not ended the copy yet,
    /// the Syncs it sends until it does are too.
    fn entered_copy_in(&mut self) {
        let mut i = 1;
        while i < self.queue.len() {
            match self.queue[i] {
                Expect::Sync => {
                    self.queue.remove(i);
                }
                Expect::CopyEnd => {
                    self.queue.remove(i);
                    return;
                }
                _ => i += 1,
            }
        }
        self.copy_in = true;
    }

    /// After an extended-protocol error the server skips everything up to the next Sync,
    /// including requests the client has not sent yet.
    fn skip_to_sync(&mut self, dropped: &mut Vec<Box<str>>) {
        while let Some(e) = self.queue.front() {
            if matches!(e, Expect::Sync) {
                break;
            }
            match self.queue.pop_front() {
                Some(Expect::Parse { statement: Some(p) }) => {
                    dropped.push(p.server_name.clone());
                    self.unprepared.push(p);
                }
                Some(Expect::HiddenParse { prepared: p }) => dropped.push(p),
                Some(Expect::FakeParseComplete { statement }) => self.unprepared.push(statement),
                Some(Expect::FakeCloseComplete { statement: Some(p) }) => self.not_closed.push(p),
                _ => {}
            }
        }
        self.skipping = self.queue.is_empty();
    }

    /// True if no fake entry is waiting behind real ones (used in tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    #[cfg(test)]
    pub(crate) fn head_is_fake(&self) -> bool {
        self.queue.front().is_some_and(|e| {
            matches!(
                e,
                Expect::FakeParseComplete { .. } | Expect::FakeCloseComplete { .. }
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    const BIND: Expect = Expect::Bind { statement: None };

    /// A client's statement `client` as a Parse of `sql` registers it.
    fn statement(client: &str, sql: &str) -> Arc<Prepared> {
        let mut after = sql.as_bytes().to_vec();
        after.extend_from_slice(b"\0\0\0");
        super::super::prepared::Statements::default().parse(
            client.as_bytes(),
            &after,
            false,
            false,
            None,
            0,
        )
    }

    /// One entry of every kind.
    fn every_kind() -> [Expect; 16] {
        [
            Expect::Parse { statement: None },
            BIND,
            Expect::Describe { statement: None },
            Expect::Execute,
            Expect::Close,
            Expect::Sync,
            Expect::Query,
            Expect::FunctionCall,
            Expect::HiddenParse {
                prepared: "s1".into(),
            },
            Expect::HiddenClose,
            Expect::HiddenQuery,
            Expect::CopyEnd,
            fake_parse("s1", "SELECT 1"),
            Expect::FakeCloseComplete { statement: None },
            Expect::FakeDeallocate,
            Expect::Refused {
                error: bytes::Bytes::new(),
                simple: true,
            },
        ]
    }

    /// Whatever `pass` lets through, `on_server_message` forwards, leaving the queue as `pass`
    /// does, for every tag and every head.
    #[test]
    fn what_passes_changes_nothing() {
        let mut passed = 0;
        for head in every_kind() {
            for tag in 0..=u8::MAX {
                let queued = || {
                    let mut q = Expected::default();
                    q.push(head.clone());
                    q.push(fake_parse("s", "SELECT 1"));
                    q.push(Expect::Sync);
                    q
                };
                let mut fast = queued();
                if !fast.pass(tag) {
                    continue;
                }
                passed += 1;
                let mut slow = queued();
                let mut dropped = Vec::new();
                assert_eq!(
                    slow.on_server_message(tag, &mut dropped),
                    Route::Forward,
                    "{head:?} {}",
                    tag as char
                );
                assert_eq!(fast.queue, slow.queue, "{head:?} {}", tag as char);
                assert!(dropped.is_empty() && slow.unprepared.is_empty() && !slow.copy_in);
            }
        }
        // Eight heads (visible requests, Query, Sync, FunctionCall), all tags but four.
        assert_eq!(passed, 8 * 252);
    }

    fn fake_parse(client: &str, sql: &str) -> Expect {
        Expect::FakeParseComplete {
            statement: statement(client, sql),
        }
    }

    /// (client name, server name) of each statement.
    fn names(statements: &[Arc<Prepared>]) -> Vec<(String, String)> {
        statements
            .iter()
            .map(|p| {
                (
                    String::from_utf8_lossy(&p.client_name).into_owned(),
                    p.server_name.to_string(),
                )
            })
            .collect()
    }

    /// A failed Parse, and a Parse pgtenant answered itself behind it, leave the client
    /// without those statements; a failed Bind leaves nothing to take.
    #[test]
    fn a_failed_parse_unprepares_the_clients_statements() {
        let mut q = Expected::default();
        let s1 = statement("s1", "SELECT 1");
        q.push(Expect::Parse {
            statement: Some(s1.clone()),
        });
        let s2 = fake_parse("s2", "SELECT 2");
        q.push(s2);
        q.push(Expect::Sync);
        let mut dropped = Vec::new();
        assert_eq!(q.on_server_message(b'E', &mut dropped), Route::Forward);
        assert_eq!(dropped, vec![s1.server_name.clone()]);
        let taken = q.take_unprepared().expect("two statements");
        assert_eq!(
            names(&taken),
            names(&[s1.clone(), statement("s2", "SELECT 2")])
        );
        assert!(Arc::ptr_eq(&taken[0], &s1));
        assert_eq!(q.take_unprepared(), None);
        assert_eq!(q.on_server_message(b'Z', &mut dropped), Route::Forward);
        q.push(BIND);
        q.push(Expect::Sync);
        assert_eq!(q.on_server_message(b'E', &mut dropped), Route::Forward);
        assert_eq!(q.take_unprepared(), None);
    }

    /// A simple Query ends what extended-protocol messages before it began; one followed by
    /// more of them does not.
    #[test]
    fn a_query_ends_the_batch_before_it() {
        let mut q = Expected::default();
        q.push(BIND);
        q.push(Expect::Execute);
        q.push(Expect::Query);
        assert!(!q.ready_ends_batch());
        let mut dropped = Vec::new();
        for tag in [b'2', b'C'] {
            assert_eq!(q.on_server_message(tag, &mut dropped), Route::Forward);
        }
        assert!(q.ready_ends_batch());
        q.push(BIND);
        assert!(!q.ready_ends_batch());
        assert_eq!(q.on_server_message(b'Z', &mut dropped), Route::Forward);
        q.push(Expect::FunctionCall);
        assert!(!q.ready_ends_batch(), "the Bind is still owed");
        // An error before the Query: the server skips it, and only a Sync ends the batch.
        let mut q = Expected::default();
        q.push(Expect::Execute);
        q.push(Expect::Query);
        assert_eq!(q.on_server_message(b'E', &mut dropped), Route::Forward);
        assert!(q.is_empty() && q.skipping() && !q.ready_ends_batch());
    }

    /// `is_fake` (which the relay asks before draining) names exactly the entries
    /// `drain_fakes` takes off the queue.
    #[test]
    fn is_fake_names_what_drain_fakes_takes() {
        for e in every_kind() {
            let mut q = Expected::default();
            q.queue.push_back(e.clone());
            assert_eq!(q.fake_at_head(), e.is_fake(), "{e:?}");
            q.drain_fakes(&mut BytesMut::new(), b'I');
            assert_eq!(q.is_empty(), e.is_fake(), "{e:?}");
        }
    }

    #[test]
    fn fake_parse_complete_lands_before_bind_complete() {
        let mut q = Expected::default();
        q.push(fake_parse("s1", "SELECT 1"));
        q.push(BIND);
        q.push(Expect::Execute);
        q.push(Expect::Sync);
        let mut out = BytesMut::new();
        q.drain_fakes(&mut out, b'I');
        assert_eq!(&out[..], PARSE_COMPLETE);
        let mut dropped = Vec::new();
        assert_eq!(q.on_server_message(b'2', &mut dropped), Route::Forward);
        assert_eq!(q.on_server_message(b'D', &mut dropped), Route::Forward);
        assert_eq!(q.on_server_message(b'C', &mut dropped), Route::Forward);
        assert_eq!(q.len(), 1);
        assert_eq!(q.on_server_message(b'Z', &mut dropped), Route::Forward);
        assert!(q.is_empty());
    }

    /// A DEALLOCATE answered by pgtenant behind a Query still running: its reply comes after
    /// the Query's, with the status that Query left; in a failed transaction, 25P02.
    #[test]
    fn deallocate_is_answered_in_place_with_the_status_then() {
        let mut dropped = Vec::new();
        for (status, want) in [
            (b'T', &b"C\0\0\0\x0fDEALLOCATE\0Z\0\0\0\x05T"[..]),
            (b'E', &b"25P02"[..]),
        ] {
            let mut q = Expected::default();
            q.push(Expect::Query);
            q.push(Expect::FakeDeallocate);
            let mut out = BytesMut::new();
            assert!(!q.drain_fakes(&mut out, b'I'));
            assert!(out.is_empty(), "nothing before the Query's answer");
            assert_eq!(q.on_server_message(b'Z', &mut dropped), Route::Forward);
            assert!(!q.drain_fakes(&mut out, status));
            assert!(q.is_empty());
            assert!(
                out.windows(want.len()).any(|w| w == want),
                "{status}: {out:?}"
            );
            assert!(out.ends_with(&[b'Z', 0, 0, 0, 5, status]));
        }
        let mut q = Expected::default();
        q.push(Expect::FakeDeallocate);
        assert!(
            q.drain_fakes(&mut BytesMut::new(), b'I'),
            "ends a transaction"
        );
    }

    #[test]
    fn hidden_parse_reply_is_hidden_and_error_skips_to_sync() {
        let mut q = Expected::default();
        q.push(Expect::HiddenParse {
            prepared: "pgt_a".into(),
        });
        q.push(BIND);
        let s2 = statement("s2", "SELECT 2");
        q.push(Expect::Parse {
            statement: Some(s2.clone()),
        });
        let s1 = statement("s1", "SELECT 1");
        q.push(Expect::FakeCloseComplete {
            statement: Some(s1.clone()),
        });
        q.push(Expect::Sync);
        let mut dropped = Vec::new();
        assert_eq!(q.on_server_message(b'1', &mut dropped), Route::Hide);
        assert_eq!(q.on_server_message(b'E', &mut dropped), Route::Forward);
        assert_eq!(dropped, vec![s2.server_name.clone()]);
        // The client's statement whose Parse was skipped does not exist, as on PostgreSQL;
        // the one whose Close was skipped still does.
        let taken = q.take_unprepared().expect("s2");
        assert_eq!(names(&taken), names(&[s2]));
        let kept = q.take_not_closed().expect("s1");
        assert_eq!(names(&kept), names(&[s1]));
        assert_eq!(q.take_not_closed(), None);
        assert!(!q.head_is_fake());
        assert_eq!(q.on_server_message(b'Z', &mut dropped), Route::Forward);
        assert!(q.is_empty());
    }

    /// psycopg's pipeline: the error arrives before the client has sent the rest of the
    /// pipeline and its Sync; the server answers those with nothing but the Sync's
    /// ReadyForQuery.
    #[test]
    fn error_before_the_sync_is_queued_skips_later_requests() {
        let mut q = Expected::default();
        assert!(q.push(BIND));
        assert!(q.push(Expect::Execute));
        let mut dropped = Vec::new();
        assert_eq!(q.on_server_message(b'E', &mut dropped), Route::Forward);
        assert!(q.is_empty());
        assert!(!q.push(Expect::Parse {
            statement: Some(statement("c", "SELECT 3")),
        }));
        assert!(!q.push(BIND));
        assert!(!q.push(fake_parse("s1", "SELECT 1")));
        assert!(!q.push(Expect::Execute));
        assert!(q.push(Expect::Sync));
        assert_eq!(q.on_server_message(b'Z', &mut dropped), Route::Forward);
        assert!(q.is_empty());
        // After the Sync, requests are answered again.
        assert!(q.push(BIND));
        assert_eq!(q.len(), 1);
    }

    /// tokio-postgres: Bind, Execute, Sync, then the copy data, CopyFail, Sync. The server
    /// ignores the first Sync (it arrives in copy-in mode) and answers the second.
    #[test]
    fn syncs_sent_during_copy_in_owe_nothing() {
        let mut dropped = Vec::new();
        // The whole exchange queued before the server answers.
        let mut q = Expected::default();
        for e in [
            BIND,
            Expect::Execute,
            Expect::Sync,
            Expect::CopyEnd,
            Expect::Sync,
        ] {
            assert!(q.push(e));
        }
        assert_eq!(q.on_server_message(b'2', &mut dropped), Route::Forward);
        assert_eq!(q.on_server_message(b'G', &mut dropped), Route::Forward);
        assert_eq!(q.on_server_message(b'E', &mut dropped), Route::Forward);
        assert_eq!(q.on_server_message(b'Z', &mut dropped), Route::Forward);
        assert!(q.is_empty(), "{q:?}");
        // The copy still open when CopyInResponse arrives.
        let mut q = Expected::default();
        for e in [BIND, Expect::Execute, Expect::Sync] {
            assert!(q.push(e));
        }
        assert_eq!(q.on_server_message(b'2', &mut dropped), Route::Forward);
        assert_eq!(q.on_server_message(b'G', &mut dropped), Route::Forward);
        assert!(!q.push(Expect::Sync), "ignored in copy-in mode");
        assert!(!q.push(Expect::CopyEnd));
        assert!(q.push(Expect::Sync));
        assert_eq!(q.on_server_message(b'C', &mut dropped), Route::Forward);
        assert_eq!(q.on_server_message(b'Z', &mut dropped), Route::Forward);
        assert!(q.is_empty(), "{q:?}");
        // A simple-protocol COPY: the end marker is dropped at CopyInResponse.
        let mut q = Expected::default();
        assert!(q.push(Expect::Query));
        assert!(q.push(Expect::CopyEnd));
        assert_eq!(q.on_server_message(b'G', &mut dropped), Route::Forward);
        assert_eq!(q.on_server_message(b'C', &mut dropped), Route::Forward);
        assert_eq!(q.on_server_message(b'Z', &mut dropped), Route::Forward);
        assert!(q.is_empty(), "{q:?}");
    }

    #[test]
    fn setup_query_replies_are_hidden_and_errors_reported() {
        let mut q = Expected::default();
        q.push(Expect::HiddenQuery);
        q.push(Expect::Query);
        let mut dropped = Vec::new();
        assert_eq!(q.on_server_message(b'C', &mut dropped), Route::Hide);
        assert_eq!(q.on_server_message(b'Z', &mut dropped), Route::Hide);
        assert_eq!(q.on_server_message(b'T', &mut dropped), Route::Forward);
        assert_eq!(q.on_server_message(b'E', &mut dropped), Route::Forward);
        assert_eq!(q.on_server_message(b'Z', &mut dropped), Route::Forward);
        let mut q = Expected::default();
        q.push(Expect::HiddenQuery);
        assert_eq!(q.on_server_message(b'E', &mut dropped), Route::SetupFailed);
    }
}
