//! The tenant directory: listed tenants from config, and the rule for unlisted ones.
//! A seam for a catalog database later (DESIGN §9): callers only see [`lookup`].

use std::sync::Arc;

use super::TenantError;
use super::name::valid_tenant_name;
use crate::config::{Config, Rule, TenantStatus};

/// A known, active tenant and how to place it.
#[derive(Debug, Clone)]
pub(crate) struct Tenant<'a> {
    pub(crate) name: Arc<str>,
    pub(crate) context: String,
    pub(crate) rule: &'a Rule,
}

/// Finds the tenant named `name`; unknown and suspended tenants are refused.
pub(crate) fn lookup<'a>(config: &'a Config, name: &str) -> Result<Tenant<'a>, TenantError> {
    if let Some(entry) = config.tenants.get(name) {
        if entry.status == TenantStatus::Suspended {
            return Err(TenantError::Suspended(entry.name.to_string()));
        }
        return Ok(Tenant {
            name: entry.name.clone(),
            context: entry.context.clone(),
            rule: &entry.rule,
        });
    }
    match &config.tenancy.unlisted {
        Some(rule) if valid_tenant_name(name) => Ok(Tenant {
            name: Arc::from(name),
            context: name.to_owned(),
            rule,
        }),
        _ => Err(TenantError::Unknown(name.to_owned())),
    }
}
