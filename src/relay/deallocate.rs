//! SQL `DEALLOCATE name` of a protocol-level statement. The server knows a client's named
//! statements only under their content-addressed names (`pgt_<hash>`, shared with other
//! clients), so a `DEALLOCATE` of the client's own name would fail there with `26000`. A simple
//! Query that is exactly one `DEALLOCATE [PREPARE] name` of a statement in the client's name
//! map is answered by pgtenant instead, as PostgreSQL would answer it: the name leaves the map
//! and the client gets `CommandComplete "DEALLOCATE"` and `ReadyForQuery` (the server's
//! statement stays for other clients, as after a protocol `Close`).
//!
//! Recognising the statement costs nothing for other queries: only a text containing
//! `deallocate` is tokenised (PostgreSQL's own lexer, no recursion), and only a text whose
//! tokens are `DEALLOCATE [PREPARE] <name> [;...]` is parsed to learn the name as PostgreSQL
//! resolves it (case folding, quoting, Unicode escapes).

use bytes::{BufMut, BytesMut};
use pg_query::NodeEnum;
use pg_query::protobuf::Token;

/// The statement name of `sql` if it is a single `DEALLOCATE [PREPARE] name` (not `ALL`).
/// `sql` is the Query body: the text, possibly followed by its terminating NUL; the caller
/// asks only about a text that mentions `deallocate` ([`super::taint::Words`]).
pub(crate) fn named(sql: &[u8]) -> Option<String> {
    let sql = sql.strip_suffix(b"\0").unwrap_or(sql);
    let text = std::str::from_utf8(sql).ok()?;
    if !single_deallocate_tokens(text) {
        return None;
    }
    // A handful of tokens: parsing them recurses no deeper than one statement.
    let parsed = pg_query::parse(text, 0).ok()?;
    let [stmt] = parsed.protobuf.stmts.as_slice() else {
        return None;
    };
    match stmt.stmt.as_ref()?.node.as_ref()? {
        NodeEnum::DeallocateStmt(d) if !d.isall && !d.name.is_empty() => Some(d.name.clone()),
        _ => None,
    }
}

/// The lexer's tokens, comments aside, are `DEALLOCATE`, optionally `PREPARE`, one name
/// token, then nothing but semicolons.
fn single_deallocate_tokens(text: &str) -> bool {
    let Ok(scan) = pg_query::scan(text) else {
        return false;
    };
    let mut tokens = scan.tokens.iter().filter_map(|t| {
        Token::try_from(t.token)
            .ok()
            .filter(|t| !matches!(t, Token::SqlComment | Token::CComment))
    });
    if tokens.next() != Some(Token::Deallocate) {
        return false;
    }
    let mut rest: Vec<Token> = tokens.collect();
    while rest.last() == Some(&Token::Ascii59) {
        rest.pop();
    }
    // `DEALLOCATE PREPARE name` or `DEALLOCATE name` (which may itself be the word
    // `prepare`); the parser has the last word on which tokens make a name.
    matches!(rest.len(), 1 | 2) && !rest.contains(&Token::Ascii59)
}

/// Writes PostgreSQL's answer to a successful `DEALLOCATE`: CommandComplete and
/// ReadyForQuery with transaction status `status`.
pub(crate) fn write_done(out: &mut BytesMut, status: u8) {
    const TAG: &[u8] = b"DEALLOCATE\0";
    out.put_u8(b'C');
    out.put_u32((4 + TAG.len()) as u32);
    out.put_slice(TAG);
    write_ready(out, status);
}

/// Writes ReadyForQuery with transaction status `status`.
pub(crate) fn write_ready(out: &mut BytesMut, status: u8) {
    out.put_slice(&[b'Z', 0, 0, 0, 5, status]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the relay asks: `deallocate` is mentioned, and the text names one statement.
    fn statement_name(sql: &[u8]) -> Option<String> {
        let text = sql.strip_suffix(b"\0").unwrap_or(sql);
        crate::relay::taint::Words::of(text)
            .deallocate
            .then(|| named(sql))
            .flatten()
    }

    #[test]
    fn names_as_postgresql_resolves_them() {
        for (sql, name) in [
            ("DEALLOCATE _pg3_0", "_pg3_0"),
            ("deallocate prepare S_1;", "s_1"),
            ("DEALLOCATE \"S_1\"", "S_1"),
            (
                "  /* evict */ DEALLOCATE\n\t__asyncpg_stmt_1__ ;  -- done\n",
                "__asyncpg_stmt_1__",
            ),
            ("DEALLOCATE \"a \"\"b\"\"\"", "a \"b\""),
            ("DEALLOCATE U&\"d\\0061t\"", "dat"),
            ("DEALLOCATE prepare", "prepare"),
            ("DEALLOCATE PREPARE prepare;;", "prepare"),
        ] {
            assert_eq!(
                statement_name(sql.as_bytes()).as_deref(),
                Some(name),
                "{sql}"
            );
        }
        assert_eq!(
            statement_name(b"DEALLOCATE s1\0").as_deref(),
            Some("s1"),
            "with the Query's NUL"
        );
    }

    #[test]
    fn anything_else_is_not_intercepted() {
        for sql in [
            "DEALLOCATE ALL",
            "DEALLOCATE PREPARE ALL",
            "DEALLOCATE a; DEALLOCATE b",
            "DEALLOCATE a; SELECT 1",
            "SELECT 'DEALLOCATE a'",
            "DEALLOCATE",
            "DEALLOCATE a b",
            "EXECUTE deallocate",
            "SELECT 1",
        ] {
            assert_eq!(statement_name(sql.as_bytes()), None, "{sql}");
        }
    }

    #[test]
    fn answer_frames() {
        let mut out = BytesMut::new();
        write_done(&mut out, b'T');
        assert_eq!(&out[..], b"C\0\0\0\x0fDEALLOCATE\0Z\0\0\0\x05T");
    }
}
