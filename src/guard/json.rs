//! Reading `pg_query` parse trees in their serialized (JSON) form. Walking the serialized tree
//! visits every field of every node, so no node kind can hide a function call from the guard.
//!
//! Shapes: a `Node` is `{"node": {"Kind": {...fields}}}`; an `A_Const` value is
//! `{"val": {"Sval": {"sval": "..."}}}` (or `Ival`, `Fval`, `Boolval`, `Bsval`).

use serde_json::Value;

/// The kind and fields of a serialized `Node`.
pub(super) fn variant(node: &Value) -> Option<(&str, &Value)> {
    let inner = node.get("node")?.as_object()?;
    let (kind, fields) = inner.iter().next()?;
    Some((kind.as_str(), fields))
}

/// Calls `f(kind, fields)` for every node in `v`, depth first.
pub(super) fn walk<F>(v: &Value, f: &mut F) -> Result<(), String>
where
    F: FnMut(&str, &Value) -> Result<(), String>,
{
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if child.is_object() && k.starts_with(|c: char| c.is_ascii_uppercase()) {
                    f(k, child)?;
                }
                walk(child, f)?;
            }
        }
        Value::Array(items) => {
            for child in items {
                walk(child, f)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The `sval`s of a list of `String` nodes (qualified names).
pub(super) fn names(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|n| match variant(n) {
                    Some(("String", s)) => s.get("sval")?.as_str().map(str::to_owned),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Strips casts to plain text types, which leave a string's value as it is.
fn uncast(node: &Value) -> Option<(&str, &Value)> {
    let (kind, fields) = variant(node)?;
    if kind != "TypeCast" {
        return Some((kind, fields));
    }
    let ty = names(fields.get("type_name").and_then(|t| t.get("names")));
    let typmods = fields
        .get("type_name")
        .and_then(|t| t.get("typmods"))
        .and_then(Value::as_array)
        .is_some_and(|m| !m.is_empty());
    let plain_text = matches!(
        ty.last().map(String::as_str),
        Some("text" | "varchar" | "name")
    ) && !typmods;
    if !plain_text {
        return None;
    }
    uncast(fields.get("arg")?)
}

/// A constant's value as text (strings and integers), looking through text casts.
pub(super) fn const_text(node: &Value) -> Option<String> {
    let (kind, fields) = uncast(node)?;
    if kind != "AConst" || fields.get("isnull").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let val = fields.get("val")?.as_object()?;
    let (vk, vv) = val.iter().next()?;
    match vk.as_str() {
        "Sval" => vv.get("sval")?.as_str().map(str::to_owned),
        "Ival" => Some(
            vv.get("ival")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .to_string(),
        ),
        _ => None,
    }
}

/// A boolean constant (`true`/`false`, or the strings PostgreSQL accepts for them).
pub(super) fn const_bool(node: &Value) -> Option<bool> {
    let (kind, fields) = variant(node)?;
    if kind == "AConst"
        && let Some(b) = fields.get("val").and_then(|v| v.get("Boolval"))
    {
        return Some(b.get("boolval").and_then(Value::as_bool).unwrap_or(false));
    }
    match const_text(node)?.to_ascii_lowercase().as_str() {
        "true" | "on" | "t" | "yes" | "1" => Some(true),
        "false" | "off" | "f" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// A parameter reference (`$n`), looking through text casts.
pub(super) fn param_number(node: &Value) -> Option<usize> {
    let (kind, fields) = uncast(node)?;
    if kind != "ParamRef" {
        return None;
    }
    fields
        .get("number")
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .filter(|n| *n > 0)
}
