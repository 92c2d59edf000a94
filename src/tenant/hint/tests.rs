//! Tenant hint and agreement rule on hand-written startup parameters.

use super::{parse_options, read, sni_tenant};
use crate::config::{Source, Tenancy};
use crate::protocol::startup::StartupParams;
use crate::tenant::TenantError;

fn tenancy(sources: &[Source]) -> Tenancy {
    Tenancy {
        sources: sources.to_vec(),
        user_separator: ".".into(),
        sni_suffix: Some("db.example.com".into()),
        guc: "app.current_tenant".into(),
        guard: true,
        signing_key: None,
        tenant_column: "tenant_id".into(),
        unlisted: None,
    }
}

fn params(pairs: &[(&str, &str)]) -> StartupParams {
    StartupParams {
        minor_version: 0,
        params: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

const ALL: [Source; 4] = [Source::Sni, Source::Options, Source::User, Source::Database];

#[test]
fn user_source_splits_at_the_last_separator() {
    let h = read(
        &tenancy(&ALL),
        &params(&[("user", "alice.smith.acme")]),
        None,
    )
    .expect("ok");
    assert_eq!(h.tenant.as_deref(), Some("acme"));
    assert_eq!(h.user, "alice.smith");
}

#[test]
fn default_database_equal_to_user_names_no_tenant() {
    let h = read(
        &tenancy(&ALL),
        &params(&[("user", "alice.acme"), ("database", "alice.acme")]),
        None,
    )
    .expect("ok");
    assert_eq!(h.tenant.as_deref(), Some("acme"));
}

#[test]
fn sources_must_agree() {
    let e = read(
        &tenancy(&ALL),
        &params(&[("user", "alice.acme"), ("database", "globex")]),
        None,
    )
    .expect_err("disagree");
    assert!(matches!(
        e,
        TenantError::Disagree {
            first: "user",
            second: "database",
            ..
        }
    ));
    let e = read(
        &tenancy(&ALL),
        &params(&[("user", "alice.acme")]),
        Some("globex.db.example.com"),
    )
    .expect_err("disagree");
    assert!(e.to_string().contains("sni says \"globex\""), "{e}");
}

#[test]
fn disabled_sources_are_ignored() {
    let h = read(
        &tenancy(&[Source::Database]),
        &params(&[("user", "alice.acme"), ("database", "globex")]),
        None,
    )
    .expect("ok");
    assert_eq!(h.tenant.as_deref(), Some("globex"));
    assert_eq!(h.user, "alice.acme");
}

#[test]
fn sni_takes_the_label_under_the_suffix() {
    assert_eq!(
        sni_tenant("acme.db.example.com", Some("db.example.com")).as_deref(),
        Some("acme")
    );
    assert_eq!(
        sni_tenant("ACME.DB.example.com", Some("db.example.com")).as_deref(),
        Some("acme")
    );
    assert_eq!(
        sni_tenant("x.acme.db.example.com", Some("db.example.com")).as_deref(),
        Some("acme")
    );
    assert_eq!(sni_tenant("db.example.com", Some("db.example.com")), None);
    assert_eq!(sni_tenant("acme.other.com", Some("db.example.com")), None);
    assert_eq!(sni_tenant("acme.db.example.com", None), None);
}

#[test]
fn options_name_the_tenant_and_may_not_set_the_guc() {
    assert_eq!(
        parse_options("-c tenant=acme", "app.current_tenant")
            .expect("ok")
            .as_deref(),
        Some("acme")
    );
    assert_eq!(
        parse_options("--tenant=acme -c x=y", "app.current_tenant")
            .expect("ok")
            .as_deref(),
        Some("acme")
    );
    assert_eq!(
        parse_options("-ctenant=acme", "app.current_tenant")
            .expect("ok")
            .as_deref(),
        Some("acme")
    );
    assert!(matches!(
        parse_options("-c App.Current_Tenant=globex", "app.current_tenant"),
        Err(TenantError::ForbiddenOption(_))
    ));
    assert!(matches!(
        parse_options("--app.current-tenant=globex", "app.current_tenant"),
        Err(TenantError::ForbiddenOption(_))
    ));
    assert!(parse_options("-c", "app.current_tenant").is_err());
}

#[test]
fn a_startup_parameter_of_the_gucs_name_is_refused() {
    for name in ["app.current_tenant", "APP.Current_Tenant"] {
        let e = read(
            &tenancy(&ALL),
            &params(&[("user", "alice.acme"), (name, "globex")]),
            None,
        )
        .expect_err(name);
        assert!(
            matches!(e, TenantError::ForbiddenOption(ref n) if n == name),
            "{e:?}"
        );
    }
    assert!(
        read(
            &tenancy(&ALL),
            &params(&[("user", "alice.acme"), ("application_name", "x")]),
            None,
        )
        .is_ok()
    );
}

#[test]
fn verified_jwt_tenant_joins_the_agreement_rule_at_its_place() {
    let t = tenancy(&[Source::Sni, Source::Jwt, Source::User]);
    let h = read(&t, &params(&[("user", "alice.acme")]), None).expect("ok");
    let h = h
        .with_verified(&t, Source::Jwt, "acme".into())
        .expect("agrees");
    assert_eq!(h.tenant.as_deref(), Some("acme"));
    assert_eq!(h.user, "alice");
    let h = read(
        &t,
        &params(&[("user", "alice")]),
        Some("globex.db.example.com"),
    )
    .expect("ok");
    match h.with_verified(&t, Source::Jwt, "acme".into()) {
        Err(TenantError::Disagree {
            first,
            first_value,
            second,
            second_value,
        }) => {
            assert_eq!((first, first_value.as_str()), ("sni", "globex"));
            assert_eq!((second, second_value.as_str()), ("jwt", "acme"));
        }
        other => panic!("expected disagreement, got {other:?}"),
    }
    // The token alone names the tenant.
    let h = read(&t, &params(&[("user", "alice")]), None).expect("ok");
    let h = h.with_verified(&t, Source::Jwt, "acme".into()).expect("ok");
    assert_eq!(h.tenant.as_deref(), Some("acme"));
}
