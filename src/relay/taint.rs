//! Which client statements may change session settings, so that the tenant setup statement
//! (`SET search_path` / `SET <guc>`) already in force on a server connection can be trusted
//! for the next transaction instead of being sent again.
//!
//! This is deliberately crude and conservative: any statement text that mentions one of the
//! words below, or calls anything with parentheses, counts as "may have changed settings" and
//! the setup is sent again on the next attachment. False alarms only cost one `SET`. It is not
//! a security boundary: a client can always change settings inside its own transaction; the
//! shared-placement statement guard (real parser) is what refuses that.

/// Words (matched case-insensitively anywhere in the text) that may change session settings
/// directly (`SET`, `RESET`, `set_config`, `DISCARD`, `SET ROLE`) or run code that can
/// (`DO`, `CALL`, `EXECUTE`, `PREPARE`, `CREATE`, `ALTER`, `COPY`, `LOAD`), plus `(`, which every
/// function call needs.
const MARKERS: [&[u8]; 12] = [
    b"set", b"discard", b"do", b"call", b"execute", b"prepare", b"create", b"alter", b"copy",
    b"load", b"(", b"listen",
];

/// `FIRST[b]`: some marker starts with byte `b` (either case): one lookup per byte of text
/// rules out almost every position.
const FIRST: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < MARKERS.len() {
        let b = MARKERS[i][0];
        t[b as usize] = true;
        t[b.to_ascii_uppercase() as usize] = true;
        i += 1;
    }
    t
};

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// True unless `sql` is plainly unable to change session settings.
pub(crate) fn may_change_settings(sql: &[u8]) -> bool {
    sql.iter().enumerate().any(|(i, &b)| {
        FIRST[b as usize]
            && MARKERS
                .iter()
                .any(|m| sql.len() - i >= m.len() && sql[i..i + m.len()].eq_ignore_ascii_case(m))
    })
}

/// True if `sql` may drop prepared statements (`DISCARD`, `DEALLOCATE`).
pub(crate) fn may_drop_statements(sql: &[u8]) -> bool {
    contains_ignore_case(sql, b"discard") || contains_ignore_case(sql, b"deallocate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_statements_are_trusted() {
        assert!(!may_change_settings(
            b"SELECT abalance FROM pgbench_accounts WHERE aid = $1;"
        ));
        assert!(!may_change_settings(b"INSERT INTO items SELECT 1"));
    }

    #[test]
    fn anything_that_may_change_settings_is_flagged() {
        for sql in [
            "SET app.current_tenant = 'x'",
            "reset all",
            "SELECT set_config('a.b', 'x', false)",
            "DISCARD ALL",
            "do $$ begin perform 1; end $$",
            "CALL p()",
            "EXECUTE stmt",
            "select f()",
            "Set Role other",
            "UPDATE items SET name = 'x'",
        ] {
            assert!(may_change_settings(sql.as_bytes()), "{sql}");
        }
        assert!(may_drop_statements(b"deallocate all"));
        assert!(!may_drop_statements(b"SELECT 1"));
    }
}
