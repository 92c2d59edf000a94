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

/// Words whose presence means the text may drop prepared statements.
const DROPS: [&[u8]; 2] = [b"discard", b"deallocate"];

/// `table[b]`: some marker starts with byte `b` (either case): one lookup per byte of text
/// rules out almost every position.
const fn first_bytes(markers: &[&[u8]]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < markers.len() {
        let b = markers[i][0];
        t[b as usize] = true;
        t[b.to_ascii_uppercase() as usize] = true;
        i += 1;
    }
    t
}

const SETTINGS_FIRST: [bool; 256] = first_bytes(&MARKERS);

/// True if `hay` contains one of `markers` (ASCII case-insensitively); `first` is
/// [`first_bytes`] of `markers`.
fn mentions(hay: &[u8], first: &[bool; 256], markers: &[&[u8]]) -> bool {
    hay.iter().enumerate().any(|(i, &b)| {
        first[b as usize]
            && markers.iter().any(|m| {
                hay.get(i..i + m.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(m))
            })
    })
}

/// True if `sql` contains `word` (lowercase ASCII), ignoring ASCII case: the cheap test a
/// statement text passes before anything looks at it more closely.
pub(crate) fn mentions_word(sql: &[u8], word: &[u8]) -> bool {
    let first = word[0];
    memchr::memchr2_iter(first, first.to_ascii_uppercase(), sql).any(|i| {
        sql.get(i..i + word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
    })
}

/// True unless `sql` is plainly unable to change session settings.
pub(crate) fn may_change_settings(sql: &[u8]) -> bool {
    mentions(sql, &SETTINGS_FIRST, &MARKERS)
}

/// The high bit of each byte of `v` that may be `l`, `d` or `r` in either case (a superset:
/// the caller checks each one).
fn letters_l_d_or_r(v: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Setting bit 5 folds ASCII case; a byte equal to the letter becomes zero after the xor.
    let folded = v | (ONES * 0x20);
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    zero(folded ^ (ONES * u64::from(b'l')))
        | zero(folded ^ (ONES * u64::from(b'd')))
        | zero(folded ^ (ONES * u64::from(b'r')))
}

/// Longest Parse body [`LastParse`] keeps: longer texts are scanned each time.
const LAST_PARSE_LIMIT: usize = 8 * 1024;

/// The last Parse body (statement text and parameter types) scanned, and what the scans found:
/// drivers send the same unnamed statement again and again (`pgbench -M extended`, pgjdbc
/// before it prepares, node-postgres), and comparing the bytes costs less than scanning them.
#[derive(Debug, Default)]
pub(crate) struct LastParse {
    body: Vec<u8>,
    /// What the scans found, and whether `may_change_settings` was asked.
    found: Option<(Words, bool, bool)>,
}

impl LastParse {
    /// [`Words::of`] `text`, and if `settings`, [`may_change_settings`] of `body` (else
    /// false); `body` is the Parse body after the statement name, which starts with `text`.
    pub(crate) fn scan(&mut self, body: &[u8], text: &[u8], settings: bool) -> (Words, bool) {
        if let Some((words, changes, asked)) = self.found
            && asked == settings
            && self.body == body
        {
            return (words, changes);
        }
        let found = (Words::of(text), settings && may_change_settings(body));
        if body.len() <= LAST_PARSE_LIMIT {
            self.body.clear();
            self.body.extend_from_slice(body);
            self.found = Some((found.0, found.1, settings));
        } else {
            self.found = None;
        }
        found
    }
}

/// The words the relay acts on that a statement text mentions, found in one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Words {
    pub(crate) listen: bool,
    pub(crate) discard: bool,
    pub(crate) deallocate: bool,
    pub(crate) reset: bool,
}

impl Words {
    /// One pass over `sql`, eight bytes at a time: a word check only where a byte is `l`, `d`
    /// or `r` in either case (a statement text has a few; a `memchr` per letter costs more in
    /// setup than the whole pass on texts of the usual length).
    pub(crate) fn of(sql: &[u8]) -> Words {
        let mut w = Words {
            listen: false,
            discard: false,
            deallocate: false,
            reset: false,
        };
        let mut check = |i: usize| {
            let at = |word: &[u8]| {
                sql.get(i..i + word.len())
                    .is_some_and(|s| s.eq_ignore_ascii_case(word))
            };
            // The second letter first (setting bit 5 folds exactly the two cases of a
            // letter): most `l`s, `d`s and `r`s of a statement are not followed by `i` or `e`.
            let second = sql.get(i + 1).map_or(0, |b| b | 0x20);
            let [discard, deallocate] = DROPS;
            match (sql[i] | 0x20, second) {
                (b'l', b'i') => w.listen |= at(b"listen"),
                (b'd', b'i') => w.discard |= at(discard),
                (b'd', b'e') => w.deallocate |= at(deallocate),
                (b'r', b'e') => w.reset |= at(b"reset"),
                _ => {}
            }
        };
        let mut chunks = sql.chunks_exact(8);
        for (n, chunk) in chunks.by_ref().enumerate() {
            let mut hits = letters_l_d_or_r(u64::from_le_bytes(
                chunk.try_into().expect("chunks_exact(8) yields 8 bytes"),
            ));
            while hits != 0 {
                check(n * 8 + hits.trailing_zeros() as usize / 8);
                hits &= hits - 1;
            }
        }
        let tail = sql.len() - chunks.remainder().len();
        for i in tail..sql.len() {
            check(i);
        }
        w
    }

    /// It may drop prepared statements.
    pub(crate) fn drops(self) -> bool {
        self.discard || self.deallocate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_parse_answers_as_a_fresh_scan() {
        let mut last = LastParse::default();
        let bodies: [&[u8]; 5] = [
            b"SELECT $1\0\0\0",
            b"SELECT $1\0\0\0",
            b"DISCARD ALL\0\0\0",
            b"SELECT set_config('a', 'b', false)\0\0\0",
            b"SELECT $1\0\0\0",
        ];
        for body in bodies {
            let text = &body[..body.len() - 3];
            for settings in [true, false] {
                assert_eq!(
                    last.scan(body, text, settings),
                    (Words::of(text), settings && may_change_settings(body)),
                    "{}",
                    String::from_utf8_lossy(body)
                );
            }
        }
        assert!(
            last.scan(b"DISCARD ALL\0\0\0", b"DISCARD ALL", false)
                .0
                .discard
        );
    }

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
        assert!(Words::of(b"deallocate all").drops());
        assert!(Words::of(b"SELECT 1; DISCARD ALL").drops());
        assert!(Words::of(b"DeAllocate").drops());
        assert!(!Words::of(b"SELECT 1").drops());
        assert!(!Words::of(b"SELECT discar").drops());
        assert!(mentions_word(b"/* x */ DeAlLoCaTe s1", b"deallocate"));
        assert_eq!(
            Words::of(b"Listen x; discard all; DEALLOCATE s; ReSeT ALL"),
            Words {
                listen: true,
                discard: true,
                deallocate: true,
                reset: true
            }
        );
        assert_eq!(
            Words::of(b"SELECT d, listn, discar, dealloc, rese FROM t"),
            Words {
                listen: false,
                discard: false,
                deallocate: false,
                reset: false
            }
        );
        assert!(Words::of(b"select 1; DISCARD PLANS").drops());
        assert!(mentions_word(b"LISTEN", b"listen"));
        assert!(!mentions_word(b"listn", b"listen"));
    }

    /// The one-pass `Words::of` finds what a search per word finds, on texts built so that
    /// the words and near misses fall at every offset of the eight-byte steps, next to
    /// bytes whose bit 5 or high bit is set.
    #[test]
    fn words_agree_with_a_search_per_word() {
        let pieces: [&[u8]; 16] = [
            b"reset",
            b"RESE",
            b"listen",
            b"LISTEN",
            b"Discard",
            b"deallocate",
            b"DEALLOC",
            b"lis",
            b"d",
            b"L",
            b" ",
            b"\xec",
            b"\xc4l",
            b"(",
            b"dISCARD",
            b"x",
        ];
        let mut seed = 7u64;
        let mut found = [0usize; 4];
        for _ in 0..20_000 {
            let mut text = Vec::new();
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            for k in 0..(seed >> 60) as usize + 1 {
                text.extend_from_slice(pieces[((seed >> (4 * k)) % 16) as usize]);
            }
            let w = Words::of(&text);
            let expected = Words {
                listen: mentions_word(&text, b"listen"),
                discard: mentions_word(&text, b"discard"),
                deallocate: mentions_word(&text, b"deallocate"),
                reset: mentions_word(&text, b"reset"),
            };
            assert_eq!(w, expected, "{:?}", String::from_utf8_lossy(&text));
            found[0] += usize::from(w.listen);
            found[1] += usize::from(w.discard);
            found[2] += usize::from(w.deallocate);
            found[3] += usize::from(w.reset);
        }
        assert!(found.iter().all(|&n| n > 500), "{found:?}");
    }
}
