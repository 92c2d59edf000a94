//! Statement texts that differ only in their constants (`... WHERE aid = 48213`) share one
//! verdict: the text is tokenized with PostgreSQL's own lexer (`pg_query::scan`) and each
//! constant replaced by a parameter (`$1`, `$2`...), so a simple-protocol workload parses each
//! statement shape once instead of once per literal.
//!
//! Why a verdict for the shape holds for the text: the guard reads constant values only in
//! places where a parameter is refused or is a syntax error (`set_config` names and values,
//! `SET` values, `DO` bodies, `COPY` file names, `query_to_xml` statements...). So a shape the
//! guard admits with no per-tenant obligations contains none of those, and the text's parse
//! tree is the shape's with constants where the parameters are. Any other outcome for the
//! shape sends the text itself through the guard.

use std::fmt::Write;

use pg_query::protobuf::Token;

/// The text with every constant replaced by `$n`, or `None` if it has no constants or the
/// lexer rejects it.
pub(super) fn shape(text: &str) -> Option<String> {
    let scan = pg_query::scan(text).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut last = 0usize;
    let mut n = 0usize;
    for t in &scan.tokens {
        let constant = matches!(
            Token::try_from(t.token),
            Ok(Token::Sconst
                | Token::Usconst
                | Token::Iconst
                | Token::Fconst
                | Token::Bconst
                | Token::Xconst)
        );
        if !constant {
            continue;
        }
        let start = usize::try_from(t.start).ok()?;
        let end = usize::try_from(t.end).ok()?;
        out.push_str(text.get(last..start)?);
        n += 1;
        let _ = write!(out, "${n}");
        last = end;
    }
    if n == 0 {
        return None;
    }
    out.push_str(text.get(last..)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_become_parameters() {
        assert_eq!(
            shape("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;").as_deref(),
            Some("SELECT abalance FROM pgbench_accounts WHERE aid = $1;")
        );
        assert_eq!(
            shape("SELECT 'a''b', $$x$$, 1.5e3, x'ff' -- 'c'").as_deref(),
            Some("SELECT $1, $2, $3, $4 -- 'c'")
        );
        assert_eq!(shape("SELECT name FROM items"), None);
    }
}
