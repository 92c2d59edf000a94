//! `DO` blocks: the body is parsed with PL/pgSQL's own parser (through `pg_query`), and every
//! SQL statement and expression in it is checked like a statement the client sent. Dynamic SQL
//! (`EXECUTE`, `FOR ... IN EXECUTE`, `OPEN ... FOR EXECUTE`, `RETURN QUERY EXECUTE`) is
//! refused: its text exists only at run time.

use serde_json::Value;

use super::statement::{check_nested, check_tree_only};
use super::{Allowed, Policy};

/// Checks the `DO` statement `text`.
pub(super) fn check_block(
    policy: &Policy,
    text: &str,
    allowed: &mut Allowed,
) -> Result<(), String> {
    let tree = pg_query::parse_plpgsql(text)
        .map_err(|e| format!("pgtenant could not parse the DO block ({e})"))?;
    check_value(policy, &tree, allowed)
}

fn check_value(policy: &Policy, v: &Value, allowed: &mut Allowed) -> Result<(), String> {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                match k.as_str() {
                    "PLpgSQL_stmt_dynexecute" | "PLpgSQL_stmt_dynfors" => return dynamic(),
                    "dynquery" if !child.is_null() => return dynamic(),
                    "PLpgSQL_expr" => check_expr(policy, child, allowed)?,
                    _ => check_value(policy, child, allowed)?,
                }
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|c| check_value(policy, c, allowed)),
        _ => Ok(()),
    }
}

fn dynamic() -> Result<(), String> {
    Err(
        "dynamic SQL (EXECUTE) in a DO block is not allowed in a shared database: pgtenant \
         cannot check a statement that exists only at run time"
            .into(),
    )
}

/// One SQL statement or expression of the block, parsed in the mode PL/pgSQL itself uses.
fn check_expr(policy: &Policy, expr: &Value, allowed: &mut Allowed) -> Result<(), String> {
    let Some(query) = expr.get("query").and_then(Value::as_str) else {
        return Ok(());
    };
    let mode = expr.get("parseMode").and_then(Value::as_i64).unwrap_or(0);
    let result = match mode {
        0 => check_nested(policy, query, allowed),
        2..=5 => check_tree_only(policy, query, mode as i32, allowed),
        _ => Err(format!("unknown PL/pgSQL parse mode {mode}")),
    };
    result.map_err(|e| format!("in the DO block: {e}"))
}
