//! Statement texts that differ only in their constants (`... WHERE aid = 48213`) share one
//! verdict: the text is tokenized with PostgreSQL's own lexer (`pg_query::scan`) and each
//! constant replaced by a parameter (`$1`, `$2`...), so a simple-protocol workload parses each
//! statement shape once instead of once per literal.
//!
//! Texts of the plainest kind skip the lexer: ASCII letters, digits, white space and operator
//! punctuation only, whose constants are all whole integers. There a run of digits is a
//! constant exactly when no letter or underscore comes right before it (then it is the tail of
//! an identifier), and a run that touches a `.`, a letter or an underscore on its other side
//! sends the text to the lexer; so do quotes, `$`, backslashes, comments and anything not
//! ASCII, the only ways a digit could belong to a string, a parameter, a comment or a
//! non-integer number. A test holds this scanner to the lexer's answer on generated texts.
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
    match plain_shape(text) {
        Some(shape) => shape,
        None => lexed_shape(text),
    }
}

/// [`shape`] of a plain text (see the module's description) without the lexer: `None` if the
/// text is not plain, `Some(None)` if it is and has no constants.
fn plain_shape(text: &str) -> Option<Option<String>> {
    let b = text.as_bytes();
    let mut shape = Builder::new(text);
    let mut i = 0usize;
    while i < b.len() {
        match b[i] {
            b'0'..=b'9' => {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let before = start.checked_sub(1).map(|j| b[j]);
                if before.is_some_and(|c| c.is_ascii_alphabetic() || c == b'_') {
                    // The tail of an identifier such as `t1` or `int4`.
                    continue;
                }
                let touches = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'.';
                if before == Some(b'.') || b.get(i).is_some_and(|&c| touches(c)) {
                    // `1.5`, `.5`, `1e3`, `0x1f`, `1_000`: left to the lexer.
                    return None;
                }
                shape.constant(start, i)?;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => return None,
            b'/' if b.get(i + 1) == Some(&b'*') => return None,
            b'a'..=b'z'
            | b'A'..=b'Z'
            | b'_'
            | b' '
            | b'\t'
            | b'\n'
            | b'\r'
            | b'('
            | b')'
            | b'['
            | b']'
            | b','
            | b';'
            | b'.'
            | b':'
            | b'+'
            | b'-'
            | b'*'
            | b'/'
            | b'%'
            | b'^'
            | b'<'
            | b'>'
            | b'='
            | b'~'
            | b'!'
            | b'@'
            | b'#'
            | b'&'
            | b'|'
            | b'?' => i += 1,
            _ => return None,
        }
    }
    Some(shape.finish())
}

/// [`shape`] by PostgreSQL's lexer.
fn lexed_shape(text: &str) -> Option<String> {
    let scan = pg_query::scan(text).ok()?;
    let mut shape = Builder::new(text);
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
        shape.constant(start, end)?;
    }
    shape.finish()
}

/// A shape being written: the text with `$1`, `$2`... in place of each constant so far.
struct Builder<'a> {
    text: &'a str,
    out: String,
    /// End of the text already copied or replaced.
    last: usize,
    constants: usize,
}

impl<'a> Builder<'a> {
    fn new(text: &'a str) -> Self {
        Builder {
            text,
            out: String::new(),
            last: 0,
            constants: 0,
        }
    }

    /// Replaces `text[start..end]`, the next constant, by a parameter (`None`: not a span of
    /// the text after the previous constant).
    fn constant(&mut self, start: usize, end: usize) -> Option<()> {
        if self.constants == 0 {
            self.out.reserve(self.text.len() + 8);
        }
        self.out.push_str(self.text.get(self.last..start)?);
        self.constants += 1;
        let _ = write!(self.out, "${}", self.constants);
        self.last = end;
        Some(())
    }

    /// The shape, or `None` if the text had no constants.
    fn finish(mut self) -> Option<String> {
        if self.constants == 0 {
            return None;
        }
        self.out.push_str(self.text.get(self.last..)?);
        Some(self.out)
    }
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

    #[test]
    fn plain_texts_skip_the_lexer() {
        let select = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";
        assert_eq!(
            plain_shape(select),
            Some(Some(
                "SELECT abalance FROM pgbench_accounts WHERE aid = $1;".into()
            ))
        );
        assert_eq!(
            plain_shape("UPDATE t1 SET v = v + -2150 WHERE id = 7"),
            Some(Some("UPDATE t1 SET v = v + -$1 WHERE id = $2".into()))
        );
        assert_eq!(plain_shape("SELECT c1::int4 FROM t2"), Some(None));
        for not_plain in [
            "SELECT 'x' FROM t WHERE id = 1",
            "SELECT 1.5",
            "SELECT 1e3",
            "SELECT 1 -- 2",
            "SELECT /* 1 */ 2",
            "SELECT $1",
            "SELECT \"c1\" FROM t WHERE id = 1",
            "SELECT 1 FROM tëst",
        ] {
            assert_eq!(plain_shape(not_plain), None, "{not_plain}");
        }
    }

    /// The plain scanner gives the lexer's answer on every text it takes: texts made of
    /// pieces chosen to sit next to each other (digits touching letters, dots, operators,
    /// quotes, comments...).
    #[test]
    fn plain_shape_agrees_with_the_lexer() {
        const PIECES: [&str; 64] = [
            "SELECT",
            "FROM",
            "WHERE",
            "LIMIT",
            "aid",
            "t1",
            "int4",
            "_x9",
            "e",
            "E",
            "x",
            "b",
            "U",
            "0",
            "1",
            "42",
            "007",
            "99999999999999999999",
            "1.5",
            ".5",
            "1e3",
            "0x1f",
            "1_000",
            " ",
            " ",
            " ",
            "\t",
            "\n",
            "\r",
            "(",
            ")",
            ",",
            ";",
            ".",
            "::",
            ":",
            "+",
            "-",
            "*",
            "/",
            "%",
            "^",
            "<",
            ">",
            "=",
            "<=",
            "!=",
            "~",
            "@",
            "#",
            "&",
            "|",
            "?",
            "[",
            "]",
            "'a'",
            "$1",
            "$$x$$",
            "--c\n",
            "/*c*/",
            "\"Q1\"",
            "é",
            "\\",
            "&'x'",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut plain, mut with_constants) = (0, 0);
        for _ in 0..20_000 {
            let len = 1 + next() % 12;
            let text: String = (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            if let Some(fast) = plain_shape(&text) {
                plain += 1;
                with_constants += usize::from(fast.is_some());
                assert_eq!(fast, lexed_shape(&text), "text {text:?}");
            }
        }
        // The generator must reach the scanner's interesting cases, not only its refusals.
        assert!(
            plain > 2_000 && with_constants > 1_000,
            "{plain} {with_constants}"
        );
    }
}
