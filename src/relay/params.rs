//! Session parameters a client gave at startup (`application_name`, `DateStyle`, `TimeZone`…,
//! as startup parameters or `-c name=value` in `options`), applied to whichever server
//! connection runs its next transaction: one `SET` statement, sent in the same write as the
//! client's first message and only when the connection carries another client's set.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::config::PlacementKind;
use crate::protocol::messages::quote_literal;
use crate::protocol::startup::StartupParams;
use crate::tenant::TenantError;
use crate::tenant::hint::option_settings;

/// The parameters pgtenant carries over, by their canonical names. Others are not applied
/// (pgtenant speaks UTF8 to clients: `client_encoding` is not among them).
const TRACKED: &[&str] = &[
    "application_name",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "extra_float_digits",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "search_path",
];

/// `params_key` of a server connection whose settings pgtenant cannot vouch for.
pub(crate) const UNKNOWN: u64 = u64::MAX;
/// `params_key` of a fresh (or `DISCARD ALL`ed) server connection.
pub(crate) const DEFAULTS: u64 = 0;

/// A `params_key` for the settings one client session changed itself: random, so that no
/// other client's key matches it.
pub(crate) fn session_key() -> u64 {
    loop {
        let key = rand::random::<u64>();
        if key != UNKNOWN && key != DEFAULTS {
            return key;
        }
    }
}

/// One client's parameters and the statement that puts them in force.
#[derive(Debug, Clone)]
pub(crate) struct SessionParams {
    /// What the client gave, by canonical name (for ParameterStatus at login).
    pub(crate) given: Vec<(&'static str, String)>,
    /// `SET`s of the given parameters and `RESET`s of the others.
    pub(crate) sql: Arc<str>,
    /// Identifies `sql`; [`DEFAULTS`] when the client gave none.
    pub(crate) key: u64,
}

impl SessionParams {
    /// From the startup packet. `search_path` is honoured only in database placement (schema
    /// placement sets it per tenant; shared placement keeps the server's).
    pub(crate) fn from_startup(
        params: &StartupParams,
        placement: PlacementKind,
    ) -> Result<SessionParams, TenantError> {
        let mut given: Vec<(&'static str, String)> = Vec::new();
        let options = option_settings(params.get("options").unwrap_or_default())?;
        let startup = params.params.iter().map(|(k, v)| (k.clone(), v.clone()));
        // Options come after the packet's own parameters and win, as in PostgreSQL.
        for (name, value) in startup.chain(options) {
            let Some(canonical) = TRACKED.iter().find(|t| t.eq_ignore_ascii_case(name.trim()))
            else {
                continue;
            };
            if *canonical == "search_path" && placement != PlacementKind::Database {
                continue;
            }
            given.retain(|(n, _)| n != canonical);
            given.push((canonical, value));
        }
        given.sort();
        // set_config reads a value as a startup parameter would (a list for search_path).
        let mut resets = Vec::new();
        let mut sets = Vec::new();
        for t in TRACKED
            .iter()
            .filter(|t| **t != "search_path" || placement == PlacementKind::Database)
        {
            match given.iter().find(|(n, _)| n == t) {
                Some((_, v)) => sets.push(format!(
                    "pg_catalog.set_config('{t}', {}, false)",
                    quote_literal(v)
                )),
                // A direct connection without application_name shows ''.
                None if *t == "application_name" => {
                    sets.push(format!("pg_catalog.set_config('{t}', '', false)"));
                }
                None => resets.push(format!("RESET {t}")),
            }
        }
        resets.push(format!("SELECT {}", sets.join(", ")));
        let sql = resets.join("; ");
        let key = if given.is_empty() {
            DEFAULTS
        } else {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            sql.hash(&mut h);
            // Never collide with the two reserved values.
            h.finish().clamp(1, UNKNOWN - 1)
        };
        Ok(SessionParams {
            given,
            sql: Arc::from(sql),
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(pairs: &[(&str, &str)]) -> StartupParams {
        StartupParams {
            params: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..StartupParams::default()
        }
    }

    #[test]
    fn tracked_parameters_from_the_packet_and_options() {
        let p = SessionParams::from_startup(
            &startup(&[
                ("user", "app"),
                ("datestyle", "SQL, DMY"),
                ("client_encoding", "UTF8"),
                (
                    "options",
                    "-c tenant=acme -c TimeZone=Asia/Tokyo --statement_timeout=5s",
                ),
            ]),
            PlacementKind::Shared,
        )
        .expect("valid");
        assert_eq!(
            p.given,
            [
                ("DateStyle", "SQL, DMY".to_owned()),
                ("TimeZone", "Asia/Tokyo".to_owned()),
                ("statement_timeout", "5s".to_owned())
            ]
        );
        assert!(
            p.sql
                .contains("pg_catalog.set_config('DateStyle', 'SQL, DMY', false)"),
            "{}",
            p.sql
        );
        assert!(p.sql.contains("RESET lock_timeout"), "{}", p.sql);
        assert!(
            !p.sql.contains("search_path"),
            "not in shared placement: {}",
            p.sql
        );
        assert!(p.key != DEFAULTS && p.key != UNKNOWN);
    }

    #[test]
    fn no_parameters_is_the_defaults_key() {
        let p = SessionParams::from_startup(&startup(&[("user", "app")]), PlacementKind::Database)
            .expect("valid");
        assert_eq!(p.key, DEFAULTS);
        assert!(
            p.sql.contains("set_config('application_name', '', false)")
                && p.sql.contains("RESET search_path"),
            "{}",
            p.sql
        );
        let q = SessionParams::from_startup(
            &startup(&[("user", "app"), ("application_name", "x")]),
            PlacementKind::Database,
        )
        .expect("valid");
        assert_ne!(q.key, p.key);
    }
}
