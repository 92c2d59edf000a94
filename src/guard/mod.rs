//! The shared-placement statement guard (DESIGN §4): every statement a tenant sends to a shared
//! database is parsed with the real PostgreSQL parser (`pg_query`, and its PL/pgSQL parser for
//! `DO` blocks) and either admitted, with what it may leave on the server connection, or
//! refused with a reason. Nothing refused is ever forwarded.
//!
//! The guard protects the tenant GUC (and its signature in signed mode): a client may set it
//! only to its own tenant's context value, by `SET`, `SET LOCAL` or `set_config(...)` with a
//! constant or a bound parameter that the relay checks at `Bind`. It refuses what could change
//! role, what it cannot see through (dynamic SQL, fast-path calls, other languages), statements
//! that change the shared schema for every tenant (DDL), and the few catalog views and
//! functions through which one tenant could read another's activity.
//!
//! Verdicts depend only on the statement text, so they are cached by text ([`VerdictCache`]);
//! the per-tenant part (is this literal our own context?) is checked per session by [`Guard`].

mod cache;
mod functions;
mod json;
mod normalize;
mod plpgsql;
mod statement;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub(crate) use cache::VerdictCache;

/// What an admitted statement may leave on the server connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Effects {
    /// Session-level state another tenant could observe (GUCs, temp objects, cursors WITH
    /// HOLD, SQL-level prepared statements, code the guard cannot see into): `DISCARD ALL`
    /// before another tenant uses the connection.
    pub(crate) session_state: bool,
    /// May have called `nextval` (directly or through a column default): `DISCARD SEQUENCES`
    /// before another tenant, so `currval`/`lastval` reveal nothing.
    pub(crate) sequences: bool,
    /// Resets the tenant GUC to its default (`RESET ALL`, `DISCARD ALL`): the tenant setup
    /// must be sent again before the next statement.
    pub(crate) resets_context: bool,
    /// Drops prepared statements (`DEALLOCATE`, `DISCARD ALL`).
    pub(crate) drops_statements: bool,
}

impl Effects {
    pub(crate) fn merge(&mut self, other: Effects) {
        self.session_state |= other.session_state;
        self.sequences |= other.sequences;
        self.resets_context |= other.resets_context;
        self.drops_statements |= other.drops_statements;
    }

    pub(crate) const SESSION: Effects = Effects {
        session_state: true,
        sequences: false,
        resets_context: false,
        drops_statements: false,
    };

    pub(crate) const SEQUENCES: Effects = Effects {
        session_state: false,
        sequences: true,
        resets_context: false,
        drops_statements: false,
    };
}

/// An admitted statement and the obligations checked per session.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Allowed {
    pub(crate) effects: Effects,
    /// Constants the statement assigns to the tenant GUC: each must be the session's context.
    pub(crate) context_literals: Vec<String>,
    /// 1-based numbers of the parameters assigned to the tenant GUC: checked at `Bind`.
    pub(crate) context_params: Vec<usize>,
}

/// The guard's answer for one statement text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allowed(Allowed),
    Rejected(Rejection),
}

/// Why a statement is not forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// The guard refuses it (`42501`); the reason says what and why.
    Refused(String),
    /// PostgreSQL's parser rejects it (`42601`); the parser's message.
    Invalid(String),
}

impl From<String> for Rejection {
    fn from(reason: String) -> Self {
        Rejection::Refused(reason)
    }
}

/// Where a statement text came from: a simple `Query` may hold several statements and may
/// reset the context on its own; an extended-protocol `Parse` holds one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    SimpleQuery,
    Parse,
}

/// The names the guard protects, lower-cased (PostgreSQL compares GUC names without case).
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) guc: String,
    pub(crate) sig_guc: String,
}

impl Policy {
    pub(crate) fn new(guc: &str) -> Self {
        let guc = guc.to_ascii_lowercase();
        Policy {
            sig_guc: format!("{guc}_sig"),
            guc,
        }
    }

    /// Settings a client may never touch in a shared database (other than the tenant GUC,
    /// which it may set to its own value).
    fn forbidden_setting(&self, name: &str) -> Option<&'static str> {
        let name = name.to_ascii_lowercase();
        if name == self.sig_guc {
            return Some("the tenant context signature is set by pgtenant");
        }
        match name.as_str() {
            "role" | "session_authorization" => {
                Some("changing role could bypass row-level security")
            }
            "standard_conforming_strings" | "backslash_quote" | "client_encoding" => Some(
                "changing how the server reads string literals would let statements be read \
                 differently from how pgtenant checked them",
            ),
            "row_security" => Some("row-level security is what keeps tenants apart"),
            "idle_session_timeout" => Some(
                "it would end the server connection while it waits in the pool for the next \
                 tenant",
            ),
            "transaction_timeout" => Some(
                "PostgreSQL 17 ends the whole server session when a transaction outlasts it, \
                 which the pooled server connection's next tenant would pay for",
            ),
            _ => None,
        }
    }
}

/// Checks a statement text (as sent, without its terminating NUL).
pub(crate) fn check(policy: &Policy, sql: &[u8], source: Source) -> Verdict {
    let Ok(text) = std::str::from_utf8(sql) else {
        return Verdict::Rejected(Rejection::Refused(
            "the statement is not valid UTF-8".into(),
        ));
    };
    // pg_query's protobuf decoding and the walks over the tree recurse once per nesting
    // level; a client must not be able to overflow a worker's stack with a deep statement.
    let result = stacker::maybe_grow(STACK_RED_ZONE, STACK_SIZE, || {
        statement::check_text(policy, text, source)
    });
    match result {
        Ok(allowed) => Verdict::Allowed(allowed),
        Err(rejection) => Verdict::Rejected(rejection),
    }
}

/// Below this much free stack, checking a statement moves to a fresh stack of `STACK_SIZE`
/// (reserved address space; only the pages a deep statement touches are used).
const STACK_RED_ZONE: usize = 32 * 1024 * 1024;
const STACK_SIZE: usize = 512 * 1024 * 1024;

/// One session's guard: the shared verdict cache plus this tenant's context value.
#[derive(Clone)]
pub(crate) struct Guard {
    pub(crate) cache: Arc<VerdictCache>,
    pub(crate) context: Arc<str>,
    /// The tenant's name, for logs.
    pub(crate) tenant: Arc<str>,
}

impl Guard {
    /// The verdict for a statement text, with the per-tenant checks of literals applied.
    pub(crate) fn admit(&self, sql: &[u8], source: Source) -> Result<Arc<Verdict>, Rejection> {
        let verdict = self.cache.verdict(sql, source);
        match &*verdict {
            Verdict::Rejected(r) => Err(r.clone()),
            Verdict::Allowed(a) => {
                if let Some(other) = a.context_literals.iter().find(|v| **v != *self.context) {
                    return Err(Rejection::Refused(format!(
                        "the tenant context may only be set to this session's own tenant, not \
                         {other:?}"
                    )));
                }
                Ok(verdict.clone())
            }
        }
    }

    /// Checks the parameters a `Bind` assigns to the tenant GUC. `params` is the Bind body
    /// after the portal and statement names.
    pub(crate) fn bind(&self, allowed: &Allowed, params: &[u8]) -> Result<(), String> {
        if allowed.context_params.is_empty() {
            return Ok(());
        }
        let values = bind_values(params).ok_or("malformed Bind message")?;
        for &n in &allowed.context_params {
            match values.get(n - 1) {
                Some(Some(v)) if *v == self.context.as_bytes() => {}
                Some(Some(v)) => {
                    return Err(format!(
                        "the tenant context may only be set to this session's own tenant, not \
                         {:?}",
                        String::from_utf8_lossy(v)
                    ));
                }
                _ => {
                    return Err(
                        "the tenant context may only be set to this session's own tenant".into(),
                    );
                }
            }
        }
        Ok(())
    }
}

/// The parameter values of a Bind body (after the two names): `None` for SQL NULL.
fn bind_values(mut b: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Some(head)
    }
    let nfmt = u16::from_be_bytes(take(&mut b, 2)?.try_into().ok()?) as usize;
    take(&mut b, nfmt * 2)?;
    let nparams = u16::from_be_bytes(take(&mut b, 2)?.try_into().ok()?) as usize;
    let mut out = Vec::with_capacity(nparams);
    for _ in 0..nparams {
        let len = i32::from_be_bytes(take(&mut b, 4)?.try_into().ok()?);
        if len < 0 {
            out.push(None);
        } else {
            out.push(Some(take(&mut b, len as usize)?));
        }
    }
    Some(out)
}
