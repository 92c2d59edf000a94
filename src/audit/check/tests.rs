//! Finding text, severity and the report's exit code; tests/audit.rs runs the queries.

use super::{CheckError, DatabaseReport, Finding, Report, Severity};

fn report(result: Result<Vec<Finding>, CheckError>, config_findings: Vec<Finding>) -> Report {
    Report {
        guc: "app.current_tenant".into(),
        column: "tenant_id".into(),
        databases: vec![DatabaseReport {
            shard: "main".into(),
            addr: "127.0.0.1:5432".into(),
            database: "saas".into(),
            login_role: "pgtenant".into(),
            tenants: vec!["acme".into()],
            tables: 2,
            result,
        }],
        config_findings,
        notes: vec![],
    }
}

fn no_rls(ty: &str) -> Finding {
    Finding::RlsDisabled {
        table: "public.items".into(),
        column: "tenant_id".into(),
        column_type: ty.into(),
        guc: "app.current_tenant".into(),
        database: "my db".into(),
    }
}

#[test]
fn exit_code_is_0_1_or_2() {
    assert_eq!(report(Ok(vec![]), vec![]).exit_code(), 0);
    assert_eq!(report(Ok(vec![no_rls("text")]), vec![]).exit_code(), 1);
    let warning = Finding::OwnsTable {
        role: "pgtenant".into(),
        table: "public.items".into(),
        forced: true,
    };
    assert_eq!(warning.severity(), Severity::Warning);
    assert_eq!(report(Ok(vec![]), vec![warning]).exit_code(), 1);
    let down = report(Err(CheckError::Connect("refused".into())), vec![]);
    assert_eq!(down.exit_code(), 2);
    assert!(down.render().contains(
        "unreachable: shard main (127.0.0.1:5432), database saas as pgtenant: cannot connect: refused"
    ));
}

#[test]
fn a_finding_is_one_line_with_a_fix() {
    let text = no_rls("uuid").to_string();
    assert!(!text.contains('\n'));
    assert!(text.starts_with("error: public.items has the tenant column tenant_id"));
    assert!(
        text.ends_with(
            "fix: pgtenant rls --table public.items --column tenant_id --type uuid \
             | psql -v ON_ERROR_STOP=1 -d 'my db'"
        ),
        "{text}"
    );
    let text = no_rls("text").to_string();
    assert!(!text.contains("--type"), "{text}");
}

#[test]
fn the_summary_counts_errors_and_warnings() {
    let r = report(
        Ok(vec![
            no_rls("text"),
            Finding::RlsNotForced {
                table: "public.b".into(),
            },
        ]),
        vec![Finding::SchemaSharedRole {
            shard: "main".into(),
            database: "t".into(),
            role: "pgtenant".into(),
            tenants: "x, y".into(),
        }],
    );
    let text = r.render();
    assert!(
        text.contains(
            "pgtenant check: 3 finding(s) (2 error(s), 1 warning(s)) in 1 shared database(s) \
             on 1 shard(s); 0 unreachable"
        ),
        "{text}"
    );
    assert!(
        text.contains("config:\n  warning: schema placement: x, y"),
        "{text}"
    );
}
