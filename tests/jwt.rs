//! JWT as the password (issue 6.1): signatures (HS256, RS256, ES256), `alg: none` and algorithm
//! confusion, `exp`/`nbf`/`iss`/`aud`, the tenant claim under the agreement rule (SNI, user),
//! the role claim allowlist, token size, and TLS-only delivery. A real cluster, the proxy
//! in-process, clients over TLS with SNI; every refusal is checked by its SQLSTATE.

mod common;
use common::*;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{Buf, BytesMut};
use fallible_iterator::FallibleIterator;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use postgres_protocol::message::{backend::Message, frontend};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Test-only RSA key pair (generated for these tests; protects nothing).
const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/jwt-test-only-rsa-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("fixtures/jwt-test-only-rsa-public.pem");
/// Test-only HMAC secret.
const HS_SECRET: &str = "pgtenant-test-only-hmac-secret-0123456789abcdef";
const ISSUER: &str = "https://issuer.pgtenant.test";
const AUDIENCE: &str = "pgtenant";

const INVALID_PASSWORD: &str = "28P01";
const INVALID_AUTHORIZATION: &str = "28000";

struct World {
    proxy: pgtenant::server::Proxy,
    _dir: tempfile::TempDir,
    ca_der: Vec<u8>,
    ec_private_pem: String,
}

/// A proxy with TLS (cert for `*.db.pgtenant.test`), tenants `acme` and `globex` in one shared
/// database, and `[jwt]` trusting an HS256 secret, the RSA fixture and a fresh EC key.
/// `jwt_extra` adds lines to `[jwt]`.
async fn world(jwt_extra: &str) -> World {
    world_with(jwt_extra, true).await
}

async fn world_with(jwt_extra: &str, all_keys: bool) -> World {
    let db = unique("jwt_shared");
    create_shared_db(
        &db,
        &[
            ("acme", "acme-1"),
            ("acme", "acme-2"),
            ("globex", "globex-1"),
        ],
    );
    let cert = rcgen::generate_simple_self_signed(vec![
        "*.db.pgtenant.test".to_owned(),
        "localhost".to_owned(),
    ])
    .expect("test certificate");
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("EC key");
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write fixture");
        p.display().to_string()
    };
    let cert_path = write("test-server.crt", cert.cert.pem().as_bytes());
    let key_path = write("test-server.key", cert.key_pair.serialize_pem().as_bytes());
    let secret_path = write("jwt-test.secret", format!("{HS_SECRET}\n").as_bytes());
    let rsa_path = write("jwt-test-rsa.pub.pem", RSA_PUBLIC);
    let ec_path = write("jwt-test-ec.pub.pem", ec.public_key_pem().as_bytes());
    let keys = if all_keys {
        format!(
            "secret_file = \"{secret_path}\"\npublic_key_files = [\"{rsa_path}\", \"{ec_path}\"]"
        )
    } else {
        format!("public_key_files = [\"{rsa_path}\"]")
    };
    let toml = config_text(&format!(
        r#"
[tls]
cert_file = "{cert_path}"
key_file = "{key_path}"

[tenancy]
resolve = ["jwt", "sni", "user", "database"]
sni_suffix = "db.pgtenant.test"

[jwt]
{keys}
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
leeway_seconds = 5
{jwt_extra}

{acme}
{globex}
"#,
        acme = tenant_toml("acme", "shared", &db, ""),
        globex = tenant_toml("globex", "shared", &db, ""),
    ));
    World {
        proxy: start_proxy(&toml).await,
        _dir: dir,
        ca_der: cert.cert.der().to_vec(),
        ec_private_pem: ec.serialize_pem(),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Claims of a token that passes every check, for tenant `tenant`.
fn claims(tenant: &str) -> Value {
    json!({
        "sub": "alice",
        "tenant": tenant,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now(),
        "exp": now() + 600,
    })
}

fn with(mut c: Value, key: &str, value: Value) -> Value {
    c[key] = value;
    c
}

fn without(mut c: Value, key: &str) -> Value {
    c.as_object_mut().expect("object").remove(key);
    c
}

fn hs256(c: &Value) -> String {
    sign(
        Algorithm::HS256,
        c,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
}

fn rs256(c: &Value) -> String {
    sign(
        Algorithm::RS256,
        c,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("RSA key"),
    )
}

fn es256(w: &World, c: &Value) -> String {
    sign(
        Algorithm::ES256,
        c,
        &EncodingKey::from_ec_pem(w.ec_private_pem.as_bytes()).expect("EC key"),
    )
}

fn sign(alg: Algorithm, c: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), c, key).expect("sign")
}

/// What a login attempt came to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Logged in; the first column of each row of the query.
    Rows(Vec<String>),
    /// Refused with this SQLSTATE and message.
    Refused(String, String),
}

impl Outcome {
    fn code(&self) -> &str {
        match self {
            Outcome::Rows(r) => panic!("expected a refusal, logged in and got {r:?}"),
            Outcome::Refused(code, _) => code,
        }
    }

    fn rows(self) -> Vec<String> {
        match self {
            Outcome::Rows(r) => r,
            Outcome::Refused(code, msg) => panic!("refused: {code} {msg}"),
        }
    }
}

/// How the client reaches the proxy.
#[derive(Clone, Copy)]
enum Transport<'a> {
    /// SSLRequest, then TLS with this server name.
    Tls(&'a str),
    Plain,
}

/// Logs in as `user` with `token` as the password (as libpq does when the server asks for a
/// cleartext password) and runs `sql`.
async fn login(w: &World, t: Transport<'_>, user: &str, token: &str, sql: &str) -> Outcome {
    let mut tcp = tokio::net::TcpStream::connect(w.proxy.addr())
        .await
        .expect("tcp");
    match t {
        Transport::Plain => converse(&mut tcp, user, token, sql).await,
        Transport::Tls(server_name) => {
            let mut out = BytesMut::new();
            frontend::ssl_request(&mut out);
            tcp.write_all(&out).await.expect("write");
            let mut answer = [0u8; 1];
            tcp.read_exact(&mut answer).await.expect("read");
            assert_eq!(answer[0], b'S', "proxy refused SSL");
            let mut roots = rustls::RootCertStore::empty();
            roots.add(w.ca_der.clone().into()).expect("root");
            let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name =
                rustls::pki_types::ServerName::try_from(server_name.to_owned()).expect("name");
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(name, tcp)
                .await
                .expect("TLS handshake");
            converse(&mut tls, user, token, sql).await
        }
    }
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    user: &str,
    token: &str,
    sql: &str,
) -> Outcome {
    let mut out = BytesMut::new();
    let mut buf = BytesMut::new();
    frontend::startup_message([("user", user)], &mut out).expect("startup");
    s.write_all(&out).await.expect("write");
    match read_msg(s, &mut buf).await {
        Message::AuthenticationCleartextPassword => {}
        Message::ErrorResponse(e) => return refused(&e),
        _ => panic!("expected AuthenticationCleartextPassword"),
    }
    out.clear();
    frontend::password_message(token.as_bytes(), &mut out).expect("password");
    s.write_all(&out).await.expect("write");
    loop {
        match read_msg(s, &mut buf).await {
            Message::ReadyForQuery(_) => break,
            Message::ErrorResponse(e) => return refused(&e),
            _ => {}
        }
    }
    out.clear();
    frontend::query(sql, &mut out).expect("query");
    s.write_all(&out).await.expect("write");
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        match read_msg(s, &mut buf).await {
            Message::DataRow(row) => {
                let mut raw = row.buffer();
                let len = raw.get_i32() as usize;
                rows.push(String::from_utf8_lossy(&raw[..len]).into_owned());
            }
            Message::ErrorResponse(e) => error = Some(refused(&e)),
            Message::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    out.clear();
    frontend::terminate(&mut out);
    let _ = s.write_all(&out).await;
    error.unwrap_or(Outcome::Rows(rows))
}

fn refused(e: &postgres_protocol::message::backend::ErrorResponseBody) -> Outcome {
    let mut code = String::new();
    let mut message = String::new();
    let mut fields = e.fields();
    while let Some(f) = fields.next().expect("error fields") {
        match f.type_() {
            b'C' => code = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            b'M' => message = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            _ => {}
        }
    }
    Outcome::Refused(code, message)
}

const ACME: Transport<'static> = Transport::Tls("acme.db.pgtenant.test");
/// A server name under no tenant suffix: the token alone names the tenant.
const NEUTRAL: Transport<'static> = Transport::Tls("localhost");
const ITEMS: &str = "SELECT name FROM items ORDER BY name";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_tokens_see_only_their_tenant() {
    let w = world("").await;
    let acme = ["acme-1", "acme-2"];
    assert_eq!(
        login(&w, NEUTRAL, "alice", &hs256(&claims("acme")), ITEMS)
            .await
            .rows(),
        acme
    );
    assert_eq!(
        login(&w, NEUTRAL, "alice", &rs256(&claims("globex")), ITEMS)
            .await
            .rows(),
        ["globex-1"]
    );
    assert_eq!(
        login(&w, NEUTRAL, "alice", &es256(&w, &claims("acme")), ITEMS)
            .await
            .rows(),
        acme
    );
    // SNI agreeing with the token.
    assert_eq!(
        login(&w, ACME, "alice", &rs256(&claims("acme")), ITEMS)
            .await
            .rows(),
        acme
    );
    // A token of several KB (padding claim) fits under the default max_token_bytes.
    let big = with(claims("acme"), "pad", json!("x".repeat(6000)));
    let token = rs256(&big);
    assert!(token.len() > 8000, "{}", token.len());
    assert_eq!(login(&w, ACME, "alice", &token, ITEMS).await.rows(), acme);
    w.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_connects_with_a_token_as_pgpassword() {
    let w = world("").await;
    let token = rs256(&claims("globex"));
    let out = std::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg(format!(
            "host=globex.db.pgtenant.test hostaddr=127.0.0.1 port={} sslmode=require user=alice dbname=globex",
            w.proxy.addr().port()
        ))
        .args(["-c", ITEMS])
        .env("PGPASSWORD", &token)
        .output()
        .expect("psql runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "globex-1");
    // A bad token through psql: refused, and the message does not echo it.
    // One signature character changed (not the last: its spare bits may not count).
    let at = token.len() - 10;
    let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
    let bad = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
    let out = std::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-q"])
        .arg(format!(
            "host=globex.db.pgtenant.test hostaddr=127.0.0.1 port={} sslmode=require user=alice dbname=globex",
            w.proxy.addr().port()
        ))
        .args(["-c", ITEMS])
        .env("PGPASSWORD", &bad)
        .output()
        .expect("psql runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("signature does not verify"), "{stderr}");
    assert!(!stderr.contains(&bad[..40]), "token echoed: {stderr}");
    w.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_issuer_and_audience_are_checked() {
    let w = world("").await;
    let cases = [
        (
            "expired",
            with(claims("acme"), "exp", json!(now() - 600)),
            INVALID_AUTHORIZATION,
            "expired",
        ),
        (
            "not yet valid",
            with(claims("acme"), "nbf", json!(now() + 600)),
            INVALID_AUTHORIZATION,
            "not valid yet",
        ),
        (
            "wrong issuer",
            with(claims("acme"), "iss", json!("https://evil.example")),
            INVALID_PASSWORD,
            "issuer",
        ),
        (
            "wrong audience",
            with(claims("acme"), "aud", json!("someone-else")),
            INVALID_PASSWORD,
            "audience",
        ),
        (
            "no exp",
            without(claims("acme"), "exp"),
            INVALID_PASSWORD,
            "\"exp\"",
        ),
        (
            "no tenant claim",
            without(claims("acme"), "tenant"),
            INVALID_PASSWORD,
            "\"tenant\"",
        ),
    ];
    for (what, c, code, text) in cases {
        let outcome = login(&w, NEUTRAL, "alice", &rs256(&c), ITEMS).await;
        assert_eq!(outcome.code(), code, "{what}: {outcome:?}");
        let Outcome::Refused(_, msg) = &outcome else {
            unreachable!()
        };
        assert!(msg.contains(text), "{what}: {msg}");
    }
    // Within the leeway (5 s) an expired-by-2-seconds token still passes.
    let c = with(claims("acme"), "exp", json!(now() - 2));
    assert_eq!(
        login(&w, NEUTRAL, "alice", &rs256(&c), ITEMS).await.rows(),
        ["acme-1", "acme-2"]
    );
    w.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_are_refused() {
    let w = world("").await;
    let good = rs256(&claims("acme"));
    // Bad signature: the payload changed to another tenant, signature kept.
    let parts: Vec<&str> = good.split('.').collect();
    let forged_payload = URL_SAFE_NO_PAD.encode(claims("globex").to_string());
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    // Signed with a key pgtenant does not trust.
    let stranger = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("EC key");
    let untrusted = sign(
        Algorithm::ES256,
        &claims("acme"),
        &EncodingKey::from_ec_pem(stranger.serialize_pem().as_bytes()).expect("key"),
    );
    // alg: none, no signature.
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims("acme").to_string());
    let unsigned = format!("{header}.{payload}.");
    // HS256 with the RSA public key as the HMAC secret (algorithm confusion).
    let confused = sign(
        Algorithm::HS256,
        &claims("acme"),
        &EncodingKey::from_secret(RSA_PUBLIC),
    );
    let cases = [
        ("tampered", tampered, "signature"),
        ("untrusted key", untrusted, "signature"),
        ("alg none", unsigned, "not a JWT"),
        ("HS/RS confusion", confused, "signature"),
        ("not a JWT", "hunter2".to_owned(), "not a JWT"),
    ];
    for (what, token, text) in cases {
        let outcome = login(&w, NEUTRAL, "alice", &token, ITEMS).await;
        assert_eq!(outcome.code(), INVALID_PASSWORD, "{what}: {outcome:?}");
        let Outcome::Refused(_, msg) = &outcome else {
            unreachable!()
        };
        assert!(msg.contains(text), "{what}: {msg}");
        assert!(
            !msg.contains(&token[..token.len().min(20)]),
            "{what}: token echoed"
        );
    }
    w.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_is_refused_where_only_rsa_is_configured() {
    let w = world_with("", false).await;
    let confused = sign(
        Algorithm::HS256,
        &claims("acme"),
        &EncodingKey::from_secret(RSA_PUBLIC),
    );
    let outcome = login(&w, NEUTRAL, "alice", &confused, ITEMS).await;
    assert_eq!(outcome.code(), INVALID_PASSWORD, "{outcome:?}");
    assert_eq!(
        login(&w, NEUTRAL, "alice", &rs256(&claims("acme")), ITEMS)
            .await
            .rows(),
        ["acme-1", "acme-2"]
    );
    w.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_tenant_must_agree_with_sni_and_user() {
    let w = world("").await;
    let token = rs256(&claims("acme"));
    let outcome = login(
        &w,
        Transport::Tls("globex.db.pgtenant.test"),
        "alice",
        &token,
        ITEMS,
    )
    .await;
    assert_eq!(outcome.code(), INVALID_AUTHORIZATION, "{outcome:?}");
    let Outcome::Refused(_, msg) = &outcome else {
        unreachable!()
    };
    assert!(
        msg.contains("jwt says \"acme\"") && msg.contains("sni says \"globex\""),
        "{msg}"
    );
    let outcome = login(&w, NEUTRAL, "alice.globex", &token, ITEMS).await;
    assert_eq!(outcome.code(), INVALID_AUTHORIZATION, "{outcome:?}");
    let Outcome::Refused(_, msg) = &outcome else {
        unreachable!()
    };
    assert!(
        msg.contains("jwt says \"acme\"") && msg.contains("user says \"globex\""),
        "{msg}"
    );
    // Agreeing user source: the pgtenant user is "alice", the tenant acme.
    assert_eq!(
        login(&w, NEUTRAL, "alice.acme", &token, ITEMS).await.rows(),
        ["acme-1", "acme-2"]
    );
    w.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_tokens_are_refused() {
    let w = world("max_token_bytes = 4096").await;
    let big = with(claims("acme"), "pad", json!("x".repeat(5000)));
    let outcome = login(&w, NEUTRAL, "alice", &rs256(&big), ITEMS).await;
    assert_eq!(outcome.code(), INVALID_PASSWORD, "{outcome:?}");
    let Outcome::Refused(_, msg) = &outcome else {
        unreachable!()
    };
    assert!(msg.contains("4096"), "{msg}");
    let fits = with(claims("acme"), "pad", json!("x".repeat(2000)));
    assert_eq!(
        login(&w, NEUTRAL, "alice", &rs256(&fits), ITEMS)
            .await
            .rows(),
        ["acme-1", "acme-2"]
    );
    w.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_need_tls_unless_loopback_is_allowed() {
    let w = world("").await;
    let token = rs256(&claims("acme"));
    let outcome = login(&w, Transport::Plain, "alice", &token, ITEMS).await;
    assert_eq!(outcome.code(), INVALID_AUTHORIZATION, "{outcome:?}");
    let Outcome::Refused(_, msg) = &outcome else {
        unreachable!()
    };
    assert!(msg.contains("TLS"), "{msg}");
    // SCRAM users keep working over plain TCP next to JWT users.
    let client = connect(&w.proxy, "app.acme", "acme").await;
    assert_eq!(item_names(&client).await, ["acme-1", "acme-2"]);
    w.proxy.shutdown().await;

    let w = world("allow_plaintext_loopback = true").await;
    assert_eq!(
        login(&w, Transport::Plain, "alice", &token, ITEMS)
            .await
            .rows(),
        ["acme-1", "acme-2"]
    );
    w.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_claim_maps_through_the_allowlist() {
    let reader = unique("jwt_reader");
    cluster()
        .psql(
            "postgres",
            &format!("CREATE ROLE {reader} LOGIN PASSWORD '{UPSTREAM_PASSWORD}'"),
        )
        .expect("role");
    let w = world(&format!(
        "role_claim = \"db_role\"\nroles = {{ reader = \"{reader}\" }}"
    ))
    .await;
    let who = "SELECT current_user::text";
    let c = with(claims("acme"), "db_role", json!("reader"));
    assert_eq!(
        login(&w, NEUTRAL, "alice", &rs256(&c), who).await.rows(),
        [reader.as_str()]
    );
    // No role claim: the placement's default role.
    assert_eq!(
        login(&w, NEUTRAL, "alice", &rs256(&claims("acme")), who)
            .await
            .rows(),
        ["pgtenant"]
    );
    // A role outside the allowlist, even one that exists upstream, is refused.
    for role in ["admin", "pgtenant", "postgres"] {
        let c = with(claims("acme"), "db_role", json!(role));
        let outcome = login(&w, NEUTRAL, "alice", &rs256(&c), who).await;
        assert_eq!(outcome.code(), INVALID_AUTHORIZATION, "{role}: {outcome:?}");
    }
    w.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_lock_the_address_out() {
    let w = world("\n[auth]\nmax_failures = 3\nfailure_window = 60\nlockout = 2").await;
    let good = rs256(&claims("acme"));
    // Refusals that are not failed credentials (28000) do not count.
    let expired = rs256(&with(claims("acme"), "exp", json!(now() - 600)));
    for _ in 0..4 {
        let outcome = login(&w, NEUTRAL, "alice", &expired, ITEMS).await;
        assert_eq!(outcome.code(), INVALID_AUTHORIZATION, "{outcome:?}");
    }
    // Two invalid tokens and one wrong SCRAM password: three failures from 127.0.0.1.
    for _ in 0..2 {
        let outcome = login(&w, NEUTRAL, "alice", "not-a-token", ITEMS).await;
        assert_eq!(outcome.code(), INVALID_PASSWORD, "{outcome:?}");
    }
    let mut cfg = client_config(&w.proxy, "app.acme", "acme");
    cfg.password("wrong");
    let e = try_connect(cfg).await.expect_err("wrong password refused");
    assert_eq!(sqlstate(&e), INVALID_PASSWORD);
    // Locked out: even a valid token or the right password is refused before it is asked for.
    let outcome = login(&w, NEUTRAL, "alice", &good, ITEMS).await;
    assert_eq!(outcome.code(), INVALID_AUTHORIZATION, "{outcome:?}");
    let Outcome::Refused(_, msg) = &outcome else {
        unreachable!()
    };
    assert!(msg.contains("too many failed logins"), "{msg}");
    let e = try_connect(client_config(&w.proxy, "app.acme", "acme"))
        .await
        .expect_err("locked out");
    assert_eq!(sqlstate(&e), INVALID_AUTHORIZATION);
    // After the lockout the address may log in again.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(
        login(&w, NEUTRAL, "alice", &good, ITEMS).await.rows(),
        ["acme-1", "acme-2"]
    );
    w.proxy.shutdown().await;
}
