//! `LISTEN` in transaction mode. A listening session needs its own server connection for as
//! long as it listens; in transaction mode a notification would be read by whichever client
//! holds that server connection at the time, and the `LISTEN` would stay behind for the next
//! clients. So a statement text holding `LISTEN` is refused with `0A000` in transaction-mode
//! pools (session-mode pools pass it through; `UNLISTEN` passes everywhere).
//!
//! Cheap for every other statement: only a text containing `listen` (any case) is tokenised
//! with PostgreSQL's own lexer, and refused only if a statement in it starts with the keyword
//! `LISTEN` (a column named `listen`, `UNLISTEN` or a string mentioning it are fine).

use pg_query::protobuf::Token;

/// The error's message.
pub(crate) const REFUSAL: &str = "LISTEN is not supported in transaction pooling mode: \
     notifications would go to whichever client holds the server connection; use \
     pool_mode = \"session\" for listeners";

/// True if a statement in `sql` (a Query or Parse text, its NUL optional) is a `LISTEN`.
pub(crate) fn is_listen(sql: &[u8]) -> bool {
    let sql = sql.strip_suffix(b"\0").unwrap_or(sql);
    if !super::taint::mentions_word(sql, b"listen") {
        return false;
    }
    // Not UTF-8: the server will refuse the text anyway.
    let Ok(text) = std::str::from_utf8(sql) else {
        return false;
    };
    let Ok(scan) = pg_query::scan(text) else {
        // The lexer rejects it (an unterminated quote...): so will the server.
        return false;
    };
    let mut at_start = true;
    for t in &scan.tokens {
        match Token::try_from(t.token) {
            Ok(Token::SqlComment | Token::CComment) => {}
            Ok(Token::Ascii59) => at_start = true,
            Ok(Token::Listen) if at_start => return true,
            _ => at_start = false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_statements_are_found() {
        for sql in [
            "LISTEN events",
            "listen \"Events\";",
            "/* comment */ Listen events",
            "-- note\nLISTEN events",
            "SELECT 1; LISTEN events",
            "LISTEN events\0",
        ] {
            assert!(is_listen(sql.as_bytes()), "{sql}");
        }
    }

    #[test]
    fn everything_else_passes() {
        for sql in [
            "UNLISTEN *",
            "unlisten events",
            "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;",
            "SELECT 1 AS listen",
            "SELECT listen FROM t",
            "SELECT 'LISTEN x'",
            "NOTIFY listen",
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
            "SELECT 'unterminated",
        ] {
            assert!(!is_listen(sql.as_bytes()), "{sql}");
        }
    }
}
