//! What calling a function by name can do, as far as the guard is concerned.
//!
//! Names are compared on their last part, lower-cased, whatever schema qualifies them: a
//! `public.set_config` is treated like `pg_catalog.set_config`. Functions not listed here
//! (including every function the database's owners wrote) are admitted, but a call to one
//! counts as leaving session state, so the server connection is fully reset before another
//! tenant uses it.

/// The guard's view of one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// Built-in, leaves no session state.
    Pure,
    /// Touches sequences (`currval`/`lastval` would show the value to the next user).
    Sequences,
    /// `set_config(name, value, is_local)`.
    SetConfig,
    /// Runs the SQL text in its first argument.
    RunsSql,
    /// Never allowed in a shared database; the reason.
    Refused(&'static str),
    /// Anything else: allowed, but may leave session state.
    Other,
}

/// Built-in functions that neither change nor expose session state.
const PURE: &[&str] = &[
    "abs",
    "age",
    "array_agg",
    "array_append",
    "array_length",
    "array_position",
    "array_remove",
    "array_to_string",
    "avg",
    "bool_and",
    "bool_or",
    "btrim",
    "cardinality",
    "ceil",
    "ceiling",
    "char_length",
    "clock_timestamp",
    "concat",
    "concat_ws",
    "count",
    "current_setting",
    "date_part",
    "date_trunc",
    "decode",
    "dense_rank",
    "encode",
    "every",
    "exp",
    "extract",
    "first_value",
    "floor",
    "format",
    "gen_random_uuid",
    "generate_series",
    "greatest",
    "initcap",
    "json_agg",
    "json_build_array",
    "json_build_object",
    "jsonb_agg",
    "jsonb_array_elements",
    "jsonb_build_array",
    "jsonb_build_object",
    "jsonb_each",
    "jsonb_extract_path_text",
    "jsonb_set",
    "lag",
    "last_value",
    "lead",
    "least",
    "left",
    "length",
    "ln",
    "log",
    "lower",
    "lpad",
    "ltrim",
    "make_interval",
    "max",
    "md5",
    "min",
    "mod",
    "now",
    "nullif",
    "octet_length",
    "pg_backend_pid",
    "position",
    "power",
    "random",
    "rank",
    "regexp_match",
    "regexp_matches",
    "regexp_replace",
    "repeat",
    "replace",
    "reverse",
    "right",
    "round",
    "row_number",
    "row_to_json",
    "rpad",
    "rtrim",
    "sign",
    "split_part",
    "sqrt",
    "statement_timestamp",
    "string_agg",
    "strpos",
    "substr",
    "substring",
    "sum",
    "timezone",
    "to_char",
    "to_date",
    "to_json",
    "to_jsonb",
    "to_number",
    "to_timestamp",
    "transaction_timestamp",
    "trim",
    "trunc",
    "unnest",
    "upper",
    "uuid_generate_v4",
    "version",
];

/// Classifies a call of `name` (the last part of a possibly qualified name).
pub(super) fn classify(name: &str) -> Class {
    let name = name.to_ascii_lowercase();
    let n = name.as_str();
    match n {
        "set_config" => return Class::SetConfig,
        "nextval" | "currval" | "setval" | "lastval" => return Class::Sequences,
        "query_to_xml" | "query_to_xmlschema" | "query_to_xml_and_xmlschema" | "ts_stat" => {
            return Class::RunsSql;
        }
        "pg_cancel_backend" | "pg_terminate_backend" => {
            return Class::Refused(
                "server connections are shared by every tenant of a shared database",
            );
        }
        "pg_stat_get_activity"
        | "pg_stat_statements"
        | "pg_stat_statements_reset"
        | "pg_prepared_statement" => {
            return Class::Refused("it shows the statements of every tenant of a shared database");
        }
        "setseed" => {
            return Class::Refused(
                "it would seed random() for the tenants that use the server connection next",
            );
        }
        "pg_reload_conf" | "pg_read_file" | "pg_read_binary_file" | "pg_ls_dir" => {
            return Class::Refused("it reaches the server outside row-level security");
        }
        _ => {}
    }
    // pg_stat_get_backend_activity(), _pid(), _client_addr() ...: other server connections'
    // statements and clients.
    if n.starts_with("pg_stat_get_backend_") {
        return Class::Refused("it shows the statements of every tenant of a shared database");
    }
    if n.starts_with("dblink") {
        return Class::Refused("it runs statements on a connection pgtenant cannot check");
    }
    if n.starts_with("lo_") || n == "loread" || n == "lowrite" {
        return Class::Refused("large objects are not covered by row-level security");
    }
    if PURE.binary_search(&n).is_ok() {
        Class::Pure
    } else {
        Class::Other
    }
}

/// Relations (views) a tenant session may not read: they show every tenant's statements.
pub(super) fn refused_relation(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "pg_stat_activity"
        | "pg_stat_statements"
        | "pg_stat_statements_info"
        | "pg_prepared_statements" => {
            Some("it shows the statements of every tenant of a shared database")
        }
        "pg_largeobject" | "pg_largeobject_metadata" => {
            Some("large objects are not covered by row-level security")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pure_list_is_sorted_for_binary_search() {
        assert!(
            PURE.windows(2).all(|w| w[0] < w[1]),
            "PURE must stay sorted"
        );
        assert_eq!(classify("COUNT"), Class::Pure);
        assert_eq!(classify("my_function"), Class::Other);
        assert_eq!(classify("Set_Config"), Class::SetConfig);
        assert!(matches!(classify("dblink_exec"), Class::Refused(_)));
        for refused in [
            "pg_prepared_statement",
            "pg_stat_get_backend_activity",
            "PG_STAT_GET_BACKEND_PID",
            "setseed",
        ] {
            assert!(matches!(classify(refused), Class::Refused(_)), "{refused}");
        }
        assert!(refused_relation("PG_PREPARED_STATEMENTS").is_some());
    }
}
