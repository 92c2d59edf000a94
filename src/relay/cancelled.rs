//! A request cancelled before it reached a server: the client's cancel arrived while the
//! request waited for a server connection (pool queue, `PAUSE`). pgtenant answers as
//! PostgreSQL answers a cancelled statement (`57014`, then `ReadyForQuery`) and drops the
//! request's messages: a simple Query or FunctionCall alone, or extended-protocol messages up
//! to and including the next Sync, which PostgreSQL would skip after the error.

use bytes::Buf;

use super::Relay;
use crate::error::QUERY_CANCELED;
use crate::protocol::header::{Header, frontend};
use crate::protocol::messages::{self, Severity};

/// The client input still to drop for a cancelled request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Skip {
    /// Bytes of the message being dropped that have not arrived yet.
    rem: usize,
    /// The message being dropped is the request's last.
    last: bool,
    /// A simple Query or FunctionCall: one message; otherwise up to a Sync.
    simple: bool,
}

impl Relay {
    /// The request at the head of `cin` was cancelled while it waited for a server
    /// connection: its error goes out now, its messages are dropped as they arrive.
    pub(super) fn cancel_waiting(&mut self) {
        let simple = matches!(
            self.cin.first(),
            Some(&frontend::QUERY | &frontend::FUNCTION_CALL)
        );
        messages::error_response(
            &mut self.cout,
            Severity::Error,
            QUERY_CANCELED,
            "canceling statement due to user request",
            Some("The request was still waiting for a server connection."),
        );
        self.skip = Some(Skip {
            rem: 0,
            last: false,
            simple,
        });
        self.skip_cancelled();
    }

    /// Drops what has arrived of a cancelled request; once all of it is gone, queues the
    /// ReadyForQuery that ends it.
    pub(super) fn skip_cancelled(&mut self) {
        let Some(mut skip) = self.skip else { return };
        loop {
            if skip.rem > 0 {
                let n = skip.rem.min(self.cin.len());
                self.cin.advance(n);
                skip.rem -= n;
                if skip.rem > 0 {
                    break;
                }
                if skip.last {
                    return self.skipped();
                }
                continue;
            }
            let Some(h) = Header::parse(&self.cin) else {
                break;
            };
            // A Terminate, or bytes that are not a message, end the skipping: the session
            // handles them as it would without a cancel.
            if h.tag == frontend::TERMINATE || !h.is_valid_frontend() {
                return self.skipped();
            }
            skip.last = skip.simple || h.tag == frontend::SYNC;
            skip.rem = h.total();
        }
        self.skip = Some(skip);
    }

    /// The cancelled request is gone: it ends as PostgreSQL ends a failed one.
    fn skipped(&mut self) {
        self.skip = None;
        messages::ready_for_query_idle(&mut self.cout);
    }

    /// No cancelled request is being dropped and a message header is in: a request for a
    /// server connection.
    pub(super) fn request_ready(&self) -> bool {
        self.skip.is_none() && Header::parse(&self.cin).is_some()
    }
}
