//! Validation tests: every error names its key.

use super::Config;

const SHARD: &str = "[shards.a]\nuser = \"pgtenant\"\npassword = \"x\"\n";

fn err(toml: &str) -> String {
    match Config::from_toml_str(toml) {
        Ok(_) => panic!("config should be rejected:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn minimal_config_is_valid() {
    let c = Config::from_toml_str(SHARD).expect("valid");
    assert_eq!(c.listen().port(), 6432);
    assert_eq!(c.pool.default_pool_size, 20);
    assert_eq!(c.tenancy.tenant_column, "tenant_id");
}

#[test]
fn no_shards_is_refused() {
    assert!(err("").contains("shards"));
}

#[test]
fn bad_values_name_their_key() {
    let e = err(&format!("{SHARD}[pool]\nmode = \"statement\"\n"));
    assert!(e.contains("pool.mode"), "{e}");
    let e = err(&format!(
        "{SHARD}[tenants.acme]\nplacement = \"database\"\nshard = \"zz\"\n"
    ));
    assert!(
        e.contains("tenants.acme.shard") && e.contains("unknown shard"),
        "{e}"
    );
    let e = err(&format!("{SHARD}[tenants.acme]\nplacement = \"shared\"\n"));
    assert!(e.contains("tenants.acme.database"), "{e}");
    let e = err(&format!(
        "{SHARD}[tenants.acme]\nplacement = \"database\"\ndatabase = \"erp_{{tenantt}}\"\n"
    ));
    assert!(
        e.contains("tenants.acme.database") && e.contains("placeholder"),
        "{e}"
    );
    let e = err(&format!("{SHARD}[users.alice]\npassword = \"plaintext\"\n"));
    assert!(
        e.contains("users.alice.password") && e.contains("hash-password"),
        "{e}"
    );
    let e = err(&format!("{SHARD}[server]\nlisten = \"nowhere\"\n"));
    assert!(e.contains("server.listen"), "{e}");
    let e = err(&format!("{SHARD}[auth]\nlockout = -1\n"));
    assert!(e.contains("auth.lockout"), "{e}");
    let e = err(&format!("{SHARD}[tenancy]\ntenant_column = \"\"\n"));
    assert!(e.contains("tenancy.tenant_column"), "{e}");
    let e = err(&format!("{SHARD}[tenancy]\nunlisted = \"place\"\n"));
    assert!(e.contains("tenancy.default"), "{e}");
    let e = err("[shards.a]\nuser = \"u\"\npassword_env = \"PGTENANT_TEST_SURELY_UNSET\"\n");
    assert!(e.contains("shards.a.password_env"), "{e}");
}

#[test]
fn cpu_affinity_takes_auto_on_or_off() {
    let e = err(&format!("{SHARD}[server]\ncpu_affinity = \"yes\"\n"));
    assert!(
        e.contains("server.cpu_affinity") && e.contains("\"auto\", \"on\" or \"off\""),
        "{e}"
    );
    let pinned = |extra: &str| {
        Config::from_toml_str(&format!("{SHARD}[server]\n{extra}\n"))
            .expect("valid")
            .lane_cpus()
    };
    // One lane is never pinned, nor lanes with `off`; `on` pins two lanes whatever the CPUs.
    assert_eq!(pinned("workers = 1\ncpu_affinity = \"on\""), None);
    assert_eq!(pinned("workers = 2\ncpu_affinity = \"off\""), None);
    let all = crate::affinity::CpuSet::of_this_thread();
    assert_eq!(pinned("workers = 2\ncpu_affinity = \"on\""), all);
    // `auto` (the default): pinned when there is one lane per CPU the process may run on.
    let cpus = all.as_ref().map_or(0, |a| a.cpus().len());
    let auto = pinned(&format!("workers = {cpus}"));
    assert_eq!(auto, if cpus > 1 { all.clone() } else { None });
    assert_eq!(pinned(&format!("workers = {}", cpus + 1)), None);
}

#[test]
fn unknown_keys_are_refused() {
    let e = err(&format!("{SHARD}[pool]\ndefault_pool_sise = 5\n"));
    assert!(e.contains("default_pool_sise"), "{e}");
}

#[test]
fn templates_and_context() {
    let c = Config::from_toml_str(&format!(
        "{SHARD}[tenants.acme]\nplacement = \"shared\"\ndatabase = \"app\"\ncontext = \"3f2a\"\n\
         [tenancy]\nunlisted = \"place\"\n[tenancy.default]\nplacement = \"database\"\ndatabase = \"erp_{{tenant}}\"\n"
    ))
    .expect("valid");
    assert_eq!(c.tenants["acme"].context, "3f2a");
    assert!(c.tenancy.unlisted.is_some());
}

#[test]
fn shipped_example_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pgtenant.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    // password_file is relative to the config file: copy it next to a secret file.
    let copy = dir.path().join("pgtenant.toml");
    std::fs::copy(&path, &copy).expect("copy");
    std::fs::write(dir.path().join("eu2.password"), "pw\n").expect("secret");
    // SAFETY: this test is the only reader of this variable.
    unsafe { std::env::set_var("PGTENANT_EU1_PASSWORD", "pw") };
    let c = Config::load(&copy).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.shards["eu2"].password.as_deref(), Some("pw"));
    assert!(c.tenancy.unlisted.is_some());
    assert_eq!(
        c.tenants["globex"].context,
        "0b6f3c1e-5d0a-4a8e-9c3f-2e1d7b8a9c10"
    );
}

#[test]
fn jwt_section_is_validated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("jwt.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").expect("secret");
    let jwt = |extra: &str| {
        format!(
            "{SHARD}[tenancy]\nresolve = [\"jwt\", \"user\"]\n[jwt]\nsecret_file = \"{}\"\n{extra}",
            secret.display()
        )
    };
    let c = Config::from_toml_str(&jwt("")).expect("valid");
    let p = c.jwt.as_ref().expect("jwt policy");
    assert_eq!(p.tenant_claim, "tenant");
    assert_eq!(p.algorithms, [jsonwebtoken::Algorithm::HS256]);
    let e = err(&jwt("algorithms = [\"none\"]\n"));
    assert!(
        e.contains("jwt.algorithms[0]") && e.contains("never"),
        "{e}"
    );
    let e = err(&jwt("algorithms = [\"RS256\"]\n"));
    assert!(
        e.contains("jwt.algorithms[0]") && e.contains("RSA key"),
        "{e}"
    );
    let e = err(&jwt("role_claim = \"role\"\n"));
    assert!(e.contains("jwt.roles"), "{e}");
    let e = err(&jwt("roles = { reader = \"app_ro\" }\n"));
    assert!(e.contains("jwt.role_claim"), "{e}");
    let e = err(&jwt("max_token_bytes = 10\n"));
    assert!(e.contains("jwt.max_token_bytes"), "{e}");
    let e = err(&jwt("public_key_files = [\"/nonexistent/key.pem\"]\n"));
    assert!(e.contains("jwt.public_key_files[0]"), "{e}");
    let e = err(&format!(
        "{SHARD}[tenancy]\nresolve = [\"jwt\"]\n[jwt]\nsecret_env = \"PGTENANT_TEST_SURELY_UNSET\"\n"
    ));
    assert!(e.contains("jwt.secret_env"), "{e}");
    let e = err(&format!("{SHARD}[tenancy]\nresolve = [\"jwt\"]\n"));
    assert!(e.contains("tenancy.resolve") && e.contains("[jwt]"), "{e}");
    let e = err(&format!(
        "{SHARD}[jwt]\nsecret_file = \"{}\"\n",
        secret.display()
    ));
    assert!(e.contains("jwt") && e.contains("does not list jwt"), "{e}");
    let short = dir.path().join("short.secret");
    std::fs::write(&short, "short").expect("secret");
    let e = err(&format!(
        "{SHARD}[tenancy]\nresolve = [\"jwt\"]\n[jwt]\nsecret_file = \"{}\"\n",
        short.display()
    ));
    assert!(
        e.contains("jwt.secret_file") && e.contains("32 bytes"),
        "{e}"
    );
}

#[test]
fn docker_stack_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/pgtenant.toml");
    // SAFETY: this test is the only reader of these variables.
    unsafe {
        std::env::set_var("PGTENANT_EU2_PASSWORD", "pw");
        std::env::set_var("PGTENANT_EU1_PASSWORD", "pw");
    }
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.server.metrics_addr,
        Some("0.0.0.0:9930".parse().expect("addr"))
    );
    assert!(
        c.users.values().any(|u| u.admin),
        "the stack has a console user"
    );
}

#[test]
fn pool_limits_and_health_checks() {
    let c = Config::from_toml_str(SHARD).expect("valid");
    assert_eq!(c.pool.tenant_max_server_connections, 0);
    assert_eq!(c.pool.max_shard_connections, 0);
    assert_eq!(
        c.pool.health_check_interval,
        std::time::Duration::from_secs(2)
    );
    let c = Config::from_toml_str(&format!(
        "{SHARD}[pool]\ntenant_max_server_connections = 3\nmax_shard_connections = 50\nhealth_check_interval = 0.5\n\
         [tenants.acme]\nplacement = \"database\"\nmax_server_connections = 1\n\
         [tenants.big]\nplacement = \"database\"\nmax_server_connections = 0\n\
         [tenancy]\nunlisted = \"place\"\n[tenancy.default]\nplacement = \"database\"\nmax_server_connections = 2\n"
    ))
    .expect("valid");
    assert_eq!(c.pool.tenant_max_server_connections, 3);
    assert_eq!(c.pool.max_shard_connections, 50);
    assert_eq!(c.tenants["acme"].rule.max_server_connections, Some(1));
    assert_eq!(c.tenants["big"].rule.max_server_connections, Some(0));
    let default = c.tenancy.unlisted.as_ref().expect("default rule");
    assert_eq!(default.max_server_connections, Some(2));
    let e = err(&format!("{SHARD}[pool]\nhealth_check_interval = 0\n"));
    assert!(e.contains("pool.health_check_interval"), "{e}");
    let e = err(&format!("{SHARD}[pool]\nmax_shard_connections = -1\n"));
    assert!(e.contains("max_shard_connections"), "{e}");
}
