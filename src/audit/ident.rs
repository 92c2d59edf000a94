//! SQL names as a person types them on the command line (`items`, `app."Orders"`), read the
//! way PostgreSQL reads them (bare words fold to lower case, `"..."` keeps case), and written
//! back with `quote_ident` rules: quoted only when needed.
//!
//! Owns no SQL beyond names; whatever it returns is safe to splice into generated SQL.

use thiserror::Error;

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1); longer ones would be truncated.
const MAX_IDENT_BYTES: usize = 63;

/// Why a name was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdentError {
    #[error("empty name")]
    Empty,
    #[error("a name must not contain NUL")]
    Nul,
    #[error("a name must not contain control characters such as newlines")]
    Control,
    #[error("unterminated double quote")]
    Unterminated,
    #[error("unexpected {0:?}: quote the name (\"My Table\") if it really contains it")]
    Unexpected(char),
    #[error("{0:?} is longer than {MAX_IDENT_BYTES} bytes")]
    TooLong(String),
    #[error("at most {0} dotted parts are allowed")]
    TooManyParts(usize),
}

/// Reads a dotted name of at most `max_parts` identifiers; bare words fold to lower case.
pub(crate) fn parse_name(input: &str, max_parts: usize) -> Result<Vec<String>, IdentError> {
    if input.contains('\0') {
        return Err(IdentError::Nul);
    }
    // A newline in a quoted name would end the comment lines the name also appears in.
    if input.chars().any(char::is_control) {
        return Err(IdentError::Control);
    }
    let mut parts = Vec::new();
    let mut chars = input.trim().chars().peekable();
    loop {
        let mut part = String::new();
        match chars.peek() {
            None => return Err(IdentError::Empty),
            Some('"') => {
                chars.next();
                loop {
                    match chars.next() {
                        None => return Err(IdentError::Unterminated),
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            part.push('"');
                        }
                        Some('"') => break,
                        Some(c) => part.push(c),
                    }
                }
            }
            Some(&c) if c.is_ascii_alphabetic() || c == '_' => {
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '$' {
                        part.push(c.to_ascii_lowercase());
                        chars.next();
                    } else {
                        break;
                    }
                }
            }
            Some(&c) => return Err(IdentError::Unexpected(c)),
        }
        if part.is_empty() {
            return Err(IdentError::Empty);
        }
        if part.len() > MAX_IDENT_BYTES {
            return Err(IdentError::TooLong(part));
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => {}
            Some(c) => return Err(IdentError::Unexpected(c)),
        }
    }
    if parts.len() > max_parts {
        return Err(IdentError::TooManyParts(max_parts));
    }
    Ok(parts)
}

/// `quote_ident`: the name as is when it is a lower-case word that is not a reserved keyword,
/// else in double quotes with `"` doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && RESERVED.binary_search(&name).is_err();
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Parts joined with dots, each quoted as needed.
pub(crate) fn quote_qualified(parts: &[String]) -> String {
    parts
        .iter()
        .map(|p| quote_ident(p))
        .collect::<Vec<_>>()
        .join(".")
}

/// A command-line argument as a POSIX shell reads it back: bare when it is made of safe
/// characters, else in single quotes.
pub(crate) fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-/=:,@%+".contains(c));
    if safe {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// Keywords that `quote_ident` quotes (every category but unreserved), PostgreSQL 15 to 17,
/// sorted for binary search: `SELECT word FROM pg_get_keywords() WHERE catcode <> 'U'`.
const RESERVED: [&str; 164] = [
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "json",
    "json_array",
    "json_arrayagg",
    "json_exists",
    "json_object",
    "json_objectagg",
    "json_query",
    "json_scalar",
    "json_serialize",
    "json_table",
    "json_value",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "merge_action",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_sorted_for_binary_search() {
        assert!(RESERVED.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn bare_words_fold_and_quoted_words_keep_case() {
        assert_eq!(parse_name("Items", 2), Ok(vec!["items".to_owned()]));
        assert_eq!(
            parse_name("App.\"Order Lines\"", 2),
            Ok(vec!["app".to_owned(), "Order Lines".to_owned()])
        );
        assert_eq!(parse_name("\"a\"\"b\"", 1), Ok(vec!["a\"b".to_owned()]));
    }

    #[test]
    fn weird_input_is_refused() {
        assert_eq!(parse_name("", 2), Err(IdentError::Empty));
        assert_eq!(parse_name("a.", 2), Err(IdentError::Empty));
        assert_eq!(parse_name("\"\"", 2), Err(IdentError::Empty));
        assert_eq!(parse_name("a.b.c", 2), Err(IdentError::TooManyParts(2)));
        assert_eq!(parse_name("\"abc", 2), Err(IdentError::Unterminated));
        assert_eq!(
            parse_name("items; DROP TABLE x", 2),
            Err(IdentError::Unexpected(';'))
        );
        assert_eq!(parse_name("1abc", 2), Err(IdentError::Unexpected('1')));
        assert_eq!(parse_name("a\0b", 2), Err(IdentError::Nul));
        assert_eq!(
            parse_name("\"x\nDROP TABLE y; --\"", 2),
            Err(IdentError::Control)
        );
        assert!(matches!(
            parse_name(&"x".repeat(64), 2),
            Err(IdentError::TooLong(_))
        ));
    }

    #[test]
    fn quoting_follows_quote_ident() {
        assert_eq!(quote_ident("items"), "items");
        assert_eq!(quote_ident("tenant_id"), "tenant_id");
        assert_eq!(quote_ident("Items"), "\"Items\"");
        assert_eq!(quote_ident("user"), "\"user\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("1x"), "\"1x\"");
        assert_eq!(quote_ident("a$b"), "\"a$b\"");
        assert_eq!(
            quote_qualified(&["app".into(), "Order Lines".into()]),
            "app.\"Order Lines\""
        );
    }

    #[test]
    fn shell_quoting_round_trips_through_sh() {
        assert_eq!(shell_quote("public.items"), "public.items");
        assert_eq!(shell_quote("\"My T\""), "'\"My T\"'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
