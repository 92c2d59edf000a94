//! Which databases and roles `check` audits, from config text alone.

use super::plan;
use crate::audit::check::Finding;
use crate::config::Config;

const SHARDS: &str = "[shards.a]\nuser = \"up\"\npassword = \"x\"\n\
                      [shards.b]\nport = 5433\nuser = \"up_b\"\npassword = \"x\"\n";

fn config(extra: &str) -> Config {
    Config::from_toml_str(&format!("{SHARDS}{extra}")).unwrap_or_else(|e| panic!("{e}"))
}

/// (shard, database, roles, tenants) of each target.
fn targets(c: &Config) -> Vec<(String, String, Vec<String>, Vec<String>)> {
    plan(c)
        .targets
        .iter()
        .map(|t| {
            (
                t.shard.name.clone(),
                t.database.clone(),
                t.roles.iter().cloned().collect(),
                t.tenants.iter().cloned().collect(),
            )
        })
        .collect()
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn listed_shared_tenants_share_one_target_per_database() {
    let c = config(
        "[tenants.acme]\nplacement = \"shared\"\nshard = \"a\"\ndatabase = \"saas\"\n\
         [tenants.globex]\nplacement = \"shared\"\nshard = \"a\"\ndatabase = \"saas\"\nrole = \"r_{tenant}\"\n\
         [tenants.hooli]\nplacement = \"shared\"\nshard = \"b\"\ndatabase = \"saas\"\n\
         [tenants.initech]\nplacement = \"database\"\nshard = \"a\"\n",
    );
    assert_eq!(
        targets(&c),
        vec![
            (
                "a".into(),
                "saas".into(),
                owned(&["r_globex", "up"]),
                owned(&["acme", "globex"])
            ),
            (
                "b".into(),
                "saas".into(),
                owned(&["up_b"]),
                owned(&["hooli"])
            ),
        ]
    );
    let p = plan(&c);
    assert_eq!(p.targets[0].login_role(), "r_globex");
    assert!(p.findings.is_empty() && p.notes.is_empty());
}

#[test]
fn default_shared_rule_is_one_target_per_candidate_shard() {
    let c = config(
        "[tenancy]\nunlisted = \"place\"\n\
         [tenancy.default]\nplacement = \"shared\"\ndatabase = \"pool\"\nshards = [\"b\"]\n",
    );
    assert_eq!(
        targets(&c),
        vec![(
            "b".into(),
            "pool".into(),
            owned(&["up_b"]),
            owned(&["unlisted tenants"])
        )]
    );
}

#[test]
fn templates_that_name_no_single_database_or_role_become_notes() {
    let c = config(
        "[tenancy]\nunlisted = \"place\"\n\
         [tenancy.default]\nplacement = \"shared\"\ndatabase = \"db_{tenant}\"\n\
         [tenants.acme]\nplacement = \"shared\"\nshard = \"a\"\ndatabase = \"saas_{user}\"\n",
    );
    let p = plan(&c);
    assert!(p.targets.is_empty(), "{:?}", p.targets);
    assert_eq!(p.notes.len(), 2, "{:?}", p.notes);
    assert!(p.notes.iter().any(|n| n.contains("tenants.acme.database")));
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("tenancy.default.database"))
    );
}

#[test]
fn schema_tenants_sharing_a_role_are_a_finding() {
    let c = config(
        "[tenants.x]\nplacement = \"schema\"\nshard = \"a\"\ndatabase = \"t\"\n\
         [tenants.y]\nplacement = \"schema\"\nshard = \"a\"\ndatabase = \"t\"\n\
         [tenants.z]\nplacement = \"schema\"\nshard = \"a\"\ndatabase = \"t\"\nrole = \"z_only\"\n",
    );
    assert_eq!(
        plan(&c).findings,
        vec![Finding::SchemaSharedRole {
            shard: "a".into(),
            database: "t".into(),
            role: "up".into(),
            tenants: "x, y".into(),
        }]
    );
    let per_tenant = config(
        "[tenancy]\nunlisted = \"place\"\n\
         [tenancy.default]\nplacement = \"schema\"\ndatabase = \"t\"\nrole = \"t_{name}\"\n",
    );
    assert!(plan(&per_tenant).findings.is_empty());
    let one_role = config(
        "[tenancy]\nunlisted = \"place\"\n\
         [tenancy.default]\nplacement = \"schema\"\ndatabase = \"t\"\nshards = [\"a\"]\n",
    );
    assert_eq!(plan(&one_role).findings.len(), 1);
}
