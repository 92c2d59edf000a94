//! What `pgtenant check` audits, worked out from the config alone: every shared-placement
//! database (shard, database, upstream roles), and schema placements whose tenants share one
//! upstream role. Connects nowhere.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::check::Finding;
use crate::config::template::{Template, TemplateVars};
use crate::config::{Config, PlacementKind, Rule, Shard};
use crate::routing::hash;

/// One shared database to connect to.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) shard: Arc<Shard>,
    pub(crate) database: String,
    /// Upstream roles the proxy uses there (audited for SUPERUSER, BYPASSRLS, ownership).
    pub(crate) roles: BTreeSet<String>,
    /// Who is placed there: tenant names, or "unlisted tenants".
    pub(crate) tenants: BTreeSet<String>,
}

impl Target {
    /// The role to log in as: one the proxy uses, else the shard's user.
    pub(crate) fn login_role(&self) -> &str {
        self.roles
            .iter()
            .next()
            .map_or(self.shard.user.as_str(), String::as_str)
    }
}

/// The audit plan.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) targets: Vec<Target>,
    /// Findings the config alone shows.
    pub(crate) findings: Vec<Finding>,
    /// What could not be audited, and why.
    pub(crate) notes: Vec<String>,
}

const UNLISTED: &str = "unlisted tenants";

fn has(t: &Template, placeholder: &str) -> bool {
    t.to_string().contains(placeholder)
}

fn per_tenant(t: &Template) -> bool {
    has(t, "{tenant}") || has(t, "{name}")
}

/// Builds the plan for `config`.
pub(crate) fn plan(config: &Config) -> Plan {
    let mut plan = Plan::default();
    let mut targets: BTreeMap<(String, String), Target> = BTreeMap::new();
    // (shard, database, role) → tenants, for schema placement.
    let mut schema_roles: BTreeMap<(String, String, String), BTreeSet<String>> = BTreeMap::new();

    let mut listed: Vec<_> = config.tenants.values().collect();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    for t in listed {
        let key = format!("tenants.{}", t.name);
        let Some(shard) = config
            .shards
            .get(hash::choose(&t.rule.shards, &t.name))
            .cloned()
        else {
            continue;
        };
        let vars = TemplateVars {
            tenant: &t.context,
            name: &t.name,
            user: "",
        };
        let role = match &t.rule.role {
            Some(r) if has(r, "{user}") => None,
            Some(r) => Some(r.render(&vars)),
            None => Some(shard.user.clone()),
        };
        match t.rule.kind {
            PlacementKind::Database => {}
            PlacementKind::Schema => {
                let database = if has(&t.rule.database, "{user}") {
                    t.rule.database.to_string()
                } else {
                    t.rule.database.render(&vars)
                };
                let role = role.unwrap_or_else(|| {
                    t.rule
                        .role
                        .as_ref()
                        .map(|r| r.to_string())
                        .unwrap_or_default()
                });
                schema_roles
                    .entry((shard.name.clone(), database, role))
                    .or_default()
                    .insert(t.name.to_string());
            }
            PlacementKind::Shared => {
                if has(&t.rule.database, "{user}") {
                    plan.notes.push(format!(
                        "{key}.database {:?} depends on the client's user: not audited",
                        t.rule.database.to_string()
                    ));
                    continue;
                }
                let database = t.rule.database.render(&vars);
                let target = targets
                    .entry((shard.name.clone(), database.clone()))
                    .or_insert_with(|| new_target(&shard, database));
                target.tenants.insert(t.name.to_string());
                match role {
                    Some(r) => {
                        target.roles.insert(r);
                    }
                    None => plan.notes.push(format!(
                        "{key}.role {:?} depends on the client's user: its roles are not audited",
                        t.rule
                            .role
                            .as_ref()
                            .map(|r| r.to_string())
                            .unwrap_or_default()
                    )),
                }
            }
        }
    }

    if let Some(rule) = &config.tenancy.unlisted {
        unlisted(config, rule, &mut plan, &mut targets);
    }

    for ((shard, database, role), tenants) in schema_roles {
        if tenants.len() > 1 {
            plan.findings.push(Finding::SchemaSharedRole {
                shard,
                database,
                role,
                tenants: tenants.into_iter().collect::<Vec<_>>().join(", "),
            });
        }
    }
    plan.targets = targets.into_values().collect();
    plan
}

fn new_target(shard: &Arc<Shard>, database: String) -> Target {
    Target {
        shard: shard.clone(),
        database,
        roles: BTreeSet::new(),
        tenants: BTreeSet::new(),
    }
}

/// The `[tenancy.default]` rule: one shared database per candidate shard when its name is a
/// literal; a schema placement whose role is not per tenant.
fn unlisted(
    config: &Config,
    rule: &Rule,
    plan: &mut Plan,
    targets: &mut BTreeMap<(String, String), Target>,
) {
    let role_literal = match &rule.role {
        None => None,
        Some(r) if r.to_string().contains('{') => Some(None),
        Some(r) => Some(Some(r.to_string())),
    };
    for shard_name in &rule.shards {
        let Some(shard) = config.shards.get(shard_name) else {
            continue;
        };
        match rule.kind {
            PlacementKind::Database => {}
            PlacementKind::Schema => {
                if rule.role.as_ref().is_some_and(per_tenant) {
                    continue;
                }
                let role = match &rule.role {
                    Some(r) => r.to_string(),
                    None => shard.user.clone(),
                };
                plan.findings.push(Finding::SchemaSharedRole {
                    shard: shard.name.clone(),
                    database: rule.database.to_string(),
                    role,
                    tenants: UNLISTED.into(),
                });
            }
            PlacementKind::Shared => {
                if rule.database.to_string().contains('{') {
                    plan.notes.push(format!(
                        "tenancy.default.database {:?} is not one shared database: not audited \
                         (list the tenants under [tenants] to audit their databases)",
                        rule.database.to_string()
                    ));
                    return;
                }
                let database = rule.database.to_string();
                let target = targets
                    .entry((shard.name.clone(), database.clone()))
                    .or_insert_with(|| new_target(shard, database));
                target.tenants.insert(UNLISTED.into());
                match &role_literal {
                    None => {
                        target.roles.insert(shard.user.clone());
                    }
                    Some(Some(r)) => {
                        target.roles.insert(r.clone());
                    }
                    Some(None) => plan.notes.push(format!(
                        "tenancy.default.role {:?} is a template: the roles of unlisted tenants \
                         on shard {} are not audited",
                        rule.role
                            .as_ref()
                            .map(|r| r.to_string())
                            .unwrap_or_default(),
                        shard.name
                    )),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
