//! Classifying parsed statements: which kinds a tenant of a shared database may run, what each
//! leaves on the server connection, and every function call and relation inside them.

use pg_query::NodeEnum;
use pg_query::protobuf::{
    self, DiscardMode, ObjectType, TransactionStmtKind, VariableSetKind, VariableSetStmt,
};
use serde_json::Value;

use super::functions::{self, Class};
use super::{Allowed, Effects, Policy, Rejection, Source, json, plpgsql};

/// `CURSOR_OPT_HOLD` in PostgreSQL's `parsenodes.h`.
const CURSOR_OPT_HOLD: i32 = 0x0020;

/// Where in a text a statement is being checked.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scope {
    /// This is the last statement of the text.
    pub(super) last: bool,
    /// `$n` parameters are bound by the client's `Bind` (so the relay can check them).
    pub(super) params_bindable: bool,
}

/// Parses `text` and checks each statement in it.
pub(super) fn check_text(
    policy: &Policy,
    text: &str,
    source: Source,
) -> Result<Allowed, Rejection> {
    let parsed = pg_query::parse(text, 0).map_err(|e| match e {
        // What PostgreSQL itself would reject: the client gets a syntax error.
        pg_query::Error::Parse(msg) => Rejection::Invalid(msg),
        e => Rejection::Refused(format!("pgtenant could not parse it ({e})")),
    })?;
    let mut allowed = Allowed::default();
    let last = parsed.protobuf.stmts.len();
    check_statements(policy, text, &parsed, &mut allowed, |i, node| Scope {
        last: i + 1 == last,
        params_bindable: source == Source::Parse && !matches!(node, NodeEnum::PrepareStmt(_)),
    })?;
    Ok(allowed)
}

/// Checks each statement of `parsed` (parsed from `text`): its kind, then every call and
/// relation in it. `scope(i, node)` says where statement `i` stands.
fn check_statements(
    policy: &Policy,
    text: &str,
    parsed: &pg_query::ParseResult,
    allowed: &mut Allowed,
    scope: impl Fn(usize, &NodeEnum) -> Scope,
) -> Result<(), String> {
    for (i, raw) in parsed.protobuf.stmts.iter().enumerate() {
        let node = raw
            .stmt
            .as_ref()
            .and_then(|n| n.node.as_ref())
            .ok_or("empty statement")?;
        let scope = scope(i, node);
        let start = usize::try_from(raw.stmt_location)
            .unwrap_or(0)
            .min(text.len());
        let end = match usize::try_from(raw.stmt_len) {
            Ok(0) | Err(_) => text.len(),
            Ok(n) => (start + n).min(text.len()),
        };
        let stmt_text = text.get(start..end).unwrap_or(text);
        check_node(policy, node, scope, stmt_text, allowed)?;
        let tree = serde_json::to_value(raw).map_err(|e| format!("internal error: {e}"))?;
        check_tree(policy, &tree, scope, allowed)?;
    }
    Ok(())
}

/// Checks an expression or statement parsed in a PL/pgSQL parse mode: calls and relations
/// only (the statement kind was checked by the PL/pgSQL walk).
pub(super) fn check_tree_only(
    policy: &Policy,
    text: &str,
    mode: i32,
    allowed: &mut Allowed,
) -> Result<(), String> {
    let parsed = pg_query::parse(text, mode)
        .map_err(|e| format!("pgtenant could not parse a PL/pgSQL expression ({e})"))?;
    let scope = Scope {
        last: true,
        params_bindable: false,
    };
    for raw in &parsed.protobuf.stmts {
        let tree = serde_json::to_value(raw).map_err(|e| format!("internal error: {e}"))?;
        check_tree(policy, &tree, scope, allowed)?;
    }
    Ok(())
}

/// Checks text found inside another statement (PL/pgSQL, `query_to_xml`): one statement,
/// no client parameters, no context reset.
pub(super) fn check_nested(
    policy: &Policy,
    text: &str,
    allowed: &mut Allowed,
) -> Result<(), String> {
    let parsed = pg_query::parse(text, 0).map_err(|e| format!("pgtenant could not parse ({e})"))?;
    check_statements(policy, text, &parsed, allowed, |_, _| Scope {
        last: false,
        params_bindable: false,
    })
}

const DDL: &str = "statements that change the shared schema affect every tenant; run them on a \
                   direct connection";

fn refuse<T>(what: &str, why: &str) -> Result<T, String> {
    Err(format!("{what} is not allowed in a shared database: {why}"))
}

/// Checks one statement by kind; inner statements (EXPLAIN, PREPARE, DECLARE, COPY (query),
/// CREATE TEMP ... AS) are checked the same way.
fn check_node(
    policy: &Policy,
    node: &NodeEnum,
    scope: Scope,
    text: &str,
    allowed: &mut Allowed,
) -> Result<(), String> {
    let inner = |n: &Option<Box<protobuf::Node>>, allowed: &mut Allowed| -> Result<(), String> {
        match n.as_ref().and_then(|n| n.node.as_ref()) {
            Some(node) => check_node(policy, node, scope, text, allowed),
            None => Ok(()),
        }
    };
    match node {
        NodeEnum::SelectStmt(s) => {
            if let Some(into) = &s.into_clause {
                if !is_temp(into.rel.as_ref()) {
                    return refuse("SELECT INTO", DDL);
                }
                allowed.effects.merge(Effects::SESSION);
            }
            Ok(())
        }
        NodeEnum::InsertStmt(_)
        | NodeEnum::UpdateStmt(_)
        | NodeEnum::DeleteStmt(_)
        | NodeEnum::MergeStmt(_) => {
            allowed.effects.merge(Effects::SEQUENCES);
            Ok(())
        }
        NodeEnum::TransactionStmt(t) => match TransactionStmtKind::try_from(t.kind) {
            Ok(
                TransactionStmtKind::TransStmtPrepare
                | TransactionStmtKind::TransStmtCommitPrepared
                | TransactionStmtKind::TransStmtRollbackPrepared,
            ) => refuse(
                "two-phase commit",
                "prepared transactions outlive the session and its tenant",
            ),
            _ => Ok(()),
        },
        NodeEnum::VariableSetStmt(v) => check_set(policy, v, scope, allowed),
        NodeEnum::VariableShowStmt(_)
        | NodeEnum::FetchStmt(_)
        | NodeEnum::ClosePortalStmt(_)
        | NodeEnum::UnlistenStmt(_)
        | NodeEnum::NotifyStmt(_)
        | NodeEnum::LockStmt(_)
        | NodeEnum::VacuumStmt(_)
        | NodeEnum::ConstraintsSetStmt(_) => Ok(()),
        NodeEnum::ExecuteStmt(e) => own_statement_name(&e.name),
        NodeEnum::DiscardStmt(d) => match DiscardMode::try_from(d.target) {
            Ok(DiscardMode::DiscardAll) => {
                reset_alone("DISCARD ALL", scope)?;
                allowed.effects.resets_context = true;
                allowed.effects.drops_statements = true;
                Ok(())
            }
            _ => Ok(()),
        },
        NodeEnum::DeallocateStmt(d) => {
            own_statement_name(&d.name)?;
            allowed.effects.drops_statements = true;
            Ok(())
        }
        NodeEnum::PrepareStmt(p) => {
            own_statement_name(&p.name)?;
            allowed.effects.merge(Effects::SESSION);
            inner(&p.query, allowed)
        }
        NodeEnum::ExplainStmt(e) => inner(&e.query, allowed),
        NodeEnum::DeclareCursorStmt(d) => {
            if d.options & CURSOR_OPT_HOLD != 0 {
                allowed.effects.merge(Effects::SESSION);
            }
            inner(&d.query, allowed)
        }
        NodeEnum::CopyStmt(c) => {
            if c.is_program || !c.filename.is_empty() {
                return refuse(
                    "COPY to or from a server file or program",
                    "it reaches the server outside row-level security",
                );
            }
            if c.is_from {
                allowed.effects.merge(Effects::SEQUENCES);
            }
            inner(&c.query, allowed)
        }
        NodeEnum::ListenStmt(_) => refuse(
            "LISTEN",
            "notification channels are shared by every tenant of a shared database",
        ),
        NodeEnum::CallStmt(_) => {
            allowed.effects.merge(Effects::SESSION);
            Ok(())
        }
        NodeEnum::DoStmt(d) => {
            let language = d.args.iter().find_map(|a| match a.node.as_ref() {
                Some(NodeEnum::DefElem(e)) if e.defname == "language" => {
                    match e.arg.as_ref().and_then(|a| a.node.as_ref()) {
                        Some(NodeEnum::String(s)) => Some(s.sval.to_ascii_lowercase()),
                        _ => Some(String::new()),
                    }
                }
                _ => None,
            });
            if language.as_deref().is_some_and(|l| l != "plpgsql") {
                return refuse(
                    "a DO block in a language other than PL/pgSQL",
                    "pgtenant cannot check what it runs",
                );
            }
            allowed.effects.merge(Effects::SESSION);
            plpgsql::check_block(policy, text, allowed)
        }
        NodeEnum::CreateStmt(c) if is_temp(c.relation.as_ref()) => {
            allowed.effects.merge(Effects::SESSION);
            Ok(())
        }
        NodeEnum::CreateTableAsStmt(c)
            if c.objtype != ObjectType::ObjectMatview as i32
                && is_temp(c.into.as_ref().and_then(|i| i.rel.as_ref())) =>
        {
            allowed.effects.merge(Effects::SESSION);
            inner(&c.query, allowed)
        }
        NodeEnum::ViewStmt(v) if is_temp(v.view.as_ref()) => {
            allowed.effects.merge(Effects::SESSION);
            inner(&v.query, allowed)
        }
        NodeEnum::DropStmt(d) if drops_only_temp(&d.objects) => {
            allowed.effects.merge(Effects::SESSION);
            Ok(())
        }
        NodeEnum::TruncateStmt(_) => refuse(
            "TRUNCATE",
            "row-level security does not apply to it, so it would empty every tenant's rows",
        ),
        other => refuse(statement_name(other), DDL),
    }
}

/// `RESET ALL` and `DISCARD ALL` clear the tenant context: pgtenant sets it again before the
/// client's next simple query or next extended-protocol batch, so in a simple query nothing
/// may run after them. (Connection pools send `...; RESET ALL` as their reset query; drivers
/// such as pgjdbc send `DISCARD ALL` through the extended protocol, where later messages of
/// the same batch run with the setting at its default: unset, so they see no rows.)
fn reset_alone(what: &str, scope: Scope) -> Result<(), String> {
    if !scope.last {
        return refuse(
            &format!("{what} before other statements"),
            "it clears the tenant context; send it as the last statement of a simple query",
        );
    }
    Ok(())
}

/// Statements named `pgt_...` are pgtenant's own, prepared for whichever client sends their
/// text and kept on the server connection across tenants: SQL may not run or drop them.
fn own_statement_name(name: &str) -> Result<(), String> {
    if name.to_ascii_lowercase().starts_with("pgt_") {
        return refuse(
            &format!("using the prepared statement {name} from SQL"),
            "names starting with pgt_ are pgtenant's statements, shared by every client of the \
             server connection",
        );
    }
    Ok(())
}

fn check_set(
    policy: &Policy,
    v: &VariableSetStmt,
    scope: Scope,
    allowed: &mut Allowed,
) -> Result<(), String> {
    let kind = VariableSetKind::try_from(v.kind).unwrap_or(VariableSetKind::Undefined);
    match kind {
        VariableSetKind::VarResetAll => {
            reset_alone("RESET ALL", scope)?;
            allowed.effects.resets_context = true;
            return Ok(());
        }
        VariableSetKind::VarSetMulti => {
            // SET TRANSACTION ... / SET SESSION CHARACTERISTICS AS TRANSACTION ...
            if !v.name.eq_ignore_ascii_case("transaction")
                && !v.name.eq_ignore_ascii_case("transaction snapshot")
            {
                allowed.effects.merge(Effects::SESSION);
            }
            return Ok(());
        }
        _ => {}
    }
    let name = v.name.to_ascii_lowercase();
    if name == policy.guc {
        let value = match (kind, v.args.as_slice()) {
            (VariableSetKind::VarSetValue, [arg]) => {
                let arg = serde_json::to_value(arg).map_err(|e| format!("internal error: {e}"))?;
                json::const_text(&arg)
            }
            _ => None,
        };
        return match value {
            Some(value) => {
                allowed.context_literals.push(value);
                Ok(())
            }
            None => refuse(
                &format!(
                    "changing {} other than to this tenant's own value",
                    policy.guc
                ),
                "the tenant context is set by pgtenant",
            ),
        };
    }
    if let Some(why) = policy.forbidden_setting(&name) {
        return refuse(&format!("setting {name}"), why);
    }
    if !v.is_local {
        allowed.effects.merge(Effects::SESSION);
    }
    Ok(())
}

/// Checks every function call and relation anywhere in a serialized statement.
fn check_tree(
    policy: &Policy,
    tree: &Value,
    scope: Scope,
    allowed: &mut Allowed,
) -> Result<(), String> {
    json::walk(tree, &mut |kind, fields| match kind {
        "FuncCall" => check_call(policy, fields, scope, allowed),
        "RangeVar" => {
            let rel = fields.get("relname").and_then(Value::as_str).unwrap_or("");
            match functions::refused_relation(rel) {
                Some(why) => refuse(&format!("reading {rel}"), why),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    })
}

fn check_call(
    policy: &Policy,
    call: &Value,
    scope: Scope,
    allowed: &mut Allowed,
) -> Result<(), String> {
    let names = json::names(call.get("funcname"));
    let Some(name) = names.last() else {
        return Ok(());
    };
    let args: &[Value] = call
        .get("args")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    match functions::classify(name) {
        Class::Pure => Ok(()),
        Class::Sequences => {
            allowed.effects.merge(Effects::SEQUENCES);
            Ok(())
        }
        Class::Other => {
            allowed.effects.merge(Effects::SESSION);
            Ok(())
        }
        Class::Refused(why) => refuse(&format!("calling {name}"), why),
        Class::RunsSql => match args.first().and_then(json::const_text) {
            Some(sql) => check_nested(policy, &sql, allowed)
                .map_err(|e| format!("the statement given to {name}: {e}")),
            None => refuse(
                &format!("calling {name} with a statement that is not a constant"),
                "pgtenant cannot check what it runs",
            ),
        },
        Class::SetConfig => check_set_config(policy, args, call, scope, allowed),
    }
}

fn check_set_config(
    policy: &Policy,
    args: &[Value],
    call: &Value,
    scope: Scope,
    allowed: &mut Allowed,
) -> Result<(), String> {
    let variadic = call.get("func_variadic").and_then(Value::as_bool) == Some(true);
    let named = args
        .iter()
        .any(|a| matches!(json::variant(a), Some(("NamedArgExpr", _))));
    let [name_arg, value_arg, local_arg] = args else {
        return refuse(
            "set_config with other than three arguments",
            "pgtenant cannot check it",
        );
    };
    if variadic || named {
        return refuse(
            "set_config with named or variadic arguments",
            "pgtenant cannot check it",
        );
    }
    let Some(setting) = json::const_text(name_arg) else {
        return refuse(
            "set_config with a setting name that is not a constant",
            "it could change the tenant context",
        );
    };
    let setting = setting.to_ascii_lowercase();
    if setting == policy.guc {
        if let Some(v) = json::const_text(value_arg) {
            allowed.context_literals.push(v);
            return Ok(());
        }
        if let Some(n) = json::param_number(value_arg)
            && scope.params_bindable
        {
            allowed.context_params.push(n);
            return Ok(());
        }
        return refuse(
            &format!(
                "set_config of {} with a value pgtenant cannot check",
                policy.guc
            ),
            "the tenant context may only be set to this session's own tenant (a constant or a \
             bound parameter)",
        );
    }
    if let Some(why) = policy.forbidden_setting(&setting) {
        return refuse(&format!("setting {setting}"), why);
    }
    if json::const_bool(local_arg) != Some(true) {
        allowed.effects.merge(Effects::SESSION);
    }
    Ok(())
}

fn is_temp(rel: Option<&protobuf::RangeVar>) -> bool {
    rel.is_some_and(|r| r.relpersistence == "t" || r.schemaname.eq_ignore_ascii_case("pg_temp"))
}

/// `DROP ... pg_temp.x`: every object is qualified with `pg_temp`.
fn drops_only_temp(objects: &[protobuf::Node]) -> bool {
    !objects.is_empty()
        && objects.iter().all(|o| match o.node.as_ref() {
            Some(NodeEnum::List(l)) => {
                l.items.len() == 2
                    && matches!(
                        l.items[0].node.as_ref(),
                        Some(NodeEnum::String(s)) if s.sval.eq_ignore_ascii_case("pg_temp")
                    )
            }
            _ => false,
        })
}

/// A readable name for a refused statement kind.
fn statement_name(node: &NodeEnum) -> &'static str {
    match node {
        NodeEnum::CreateFunctionStmt(_) => "CREATE FUNCTION / PROCEDURE",
        NodeEnum::AlterFunctionStmt(_) => "ALTER FUNCTION",
        NodeEnum::CreatePolicyStmt(_) | NodeEnum::AlterPolicyStmt(_) => {
            "creating or altering a policy"
        }
        NodeEnum::AlterTableStmt(_) => "ALTER TABLE",
        NodeEnum::CreateTrigStmt(_) => "CREATE TRIGGER",
        NodeEnum::RuleStmt(_) => "CREATE RULE",
        NodeEnum::AlterRoleSetStmt(_) | NodeEnum::AlterDatabaseSetStmt(_) => {
            "ALTER ROLE / DATABASE ... SET"
        }
        NodeEnum::AlterSystemStmt(_) => "ALTER SYSTEM",
        NodeEnum::GrantStmt(_) | NodeEnum::GrantRoleStmt(_) => "GRANT / REVOKE",
        NodeEnum::DropStmt(_) => "DROP (except of pg_temp objects)",
        NodeEnum::CreateStmt(_) => "CREATE TABLE (except TEMP)",
        NodeEnum::ViewStmt(_) => "CREATE VIEW (except TEMP)",
        NodeEnum::CreateTableAsStmt(_) => "CREATE TABLE AS / MATERIALIZED VIEW (except TEMP)",
        NodeEnum::IndexStmt(_) => "CREATE INDEX",
        NodeEnum::CreateSchemaStmt(_) => "CREATE SCHEMA",
        NodeEnum::LoadStmt(_) => "LOAD",
        NodeEnum::CheckPointStmt(_) => "CHECKPOINT",
        NodeEnum::CreateRoleStmt(_) | NodeEnum::AlterRoleStmt(_) | NodeEnum::DropRoleStmt(_) => {
            "creating or altering roles"
        }
        NodeEnum::CreateExtensionStmt(_) => "CREATE EXTENSION",
        NodeEnum::ReindexStmt(_) | NodeEnum::ClusterStmt(_) => "REINDEX / CLUSTER",
        _ => "this kind of statement",
    }
}
