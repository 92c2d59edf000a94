//! TLS: SSLRequest and PostgreSQL 17 direct TLS (ALPN `postgresql`), the tenant from the TLS
//! server name (SNI), agreement with other sources, and `require`.

mod common;
use common::*;
use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use postgres_protocol::message::{backend, frontend};
use tokio::io::AsyncWriteExt;

struct TlsWorld {
    proxy: pgtenant::server::Proxy,
    _dir: tempfile::TempDir,
    ca_der: Vec<u8>,
}

async fn world(require: bool) -> TlsWorld {
    let acme = unique("erp_tls_acme");
    let globex = unique("erp_tls_globex");
    create_db(
        &acme,
        "CREATE TABLE items (name text); INSERT INTO items VALUES ('acme-secret');",
    );
    create_db(
        &globex,
        "CREATE TABLE items (name text); INSERT INTO items VALUES ('globex-secret');",
    );
    let cert = rcgen::generate_simple_self_signed(vec![
        "*.db.pgtenant.test".to_owned(),
        "localhost".to_owned(),
    ])
    .expect("test certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let cert_path = dir.path().join("test-server.crt");
    let key_path = dir.path().join("test-server.key");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).expect("write key");
    let toml = config_text(&format!(
        r#"
[tls]
cert_file = "{cert}"
key_file = "{key}"
require = {require}

[tenancy]
resolve = ["sni", "user", "database"]
sni_suffix = "db.pgtenant.test"

[tenants.acme]
placement = "database"
shard = "main"
database = "{acme}"

[tenants.globex]
placement = "database"
shard = "main"
database = "{globex}"
"#,
        cert = cert_path.display(),
        key = key_path.display(),
    ));
    TlsWorld {
        proxy: start_proxy(&toml).await,
        _dir: dir,
        ca_der: cert.cert.der().to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_names_the_tenant_over_ssl_request() {
    let w = world(false).await;
    let (ok, out, err) = psql(
        &w.proxy,
        "host=acme.db.pgtenant.test hostaddr=127.0.0.1 sslmode=require user=app",
        "SELECT name FROM items",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "acme-secret");
    let (ok, out, err) = psql(
        &w.proxy,
        "host=globex.db.pgtenant.test hostaddr=127.0.0.1 sslmode=require user=app",
        "SELECT name FROM items",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "globex-secret");
    // SNI and user disagree: refused, naming both.
    let (ok, _, err) = psql(
        &w.proxy,
        "host=acme.db.pgtenant.test hostaddr=127.0.0.1 sslmode=require user=app.globex",
        "SELECT 1",
    );
    assert!(!ok);
    assert!(
        err.contains("sni says \"acme\"") && err.contains("user says \"globex\""),
        "{err}"
    );
    // Plain TCP still works when TLS is optional.
    let (ok, out, err) = psql(
        &w.proxy,
        "sslmode=disable user=app.acme",
        "SELECT name FROM items",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "acme-secret");
    w.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_refuses_plain_tcp() {
    let w = world(true).await;
    let (ok, _, err) = psql(&w.proxy, "sslmode=disable user=app.acme", "SELECT 1");
    assert!(!ok);
    assert!(err.contains("requires TLS"), "{err}");
    let (ok, out, err) = psql(
        &w.proxy,
        "sslmode=require user=app.acme",
        "SELECT name FROM items",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "acme-secret");
    w.proxy.shutdown().await;
}

/// A direct-TLS client stream to the proxy with SNI `name`, trusting the test certificate.
async fn direct_tls(
    w: &TlsWorld,
    name: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(w.ca_der.clone().into()).expect("root");
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"postgresql".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(w.proxy.addr())
        .await
        .expect("tcp");
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("name");
    connector
        .connect(name, tcp)
        .await
        .expect("direct TLS handshake")
}

/// Sends a startup packet and returns the SASL mechanisms the proxy offers.
async fn offered_mechanisms<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    user: &str,
) -> Vec<String> {
    use fallible_iterator::FallibleIterator;
    let mut out = BytesMut::new();
    frontend::startup_message(vec![("user", user)], &mut out).expect("startup");
    s.write_all(&out).await.expect("write");
    let backend::Message::AuthenticationSasl(body) = read_msg(s, buf).await else {
        panic!("expected SASL");
    };
    body.mechanisms()
        .map(|m| Ok(m.to_owned()))
        .collect()
        .expect("mechanisms")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_plus_binds_the_login_to_the_tls_certificate() {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    let w = world(false).await;
    // libpq computes tls-server-end-point from the certificate it saw and insists on -PLUS.
    let (ok, out, err) = psql(
        &w.proxy,
        "host=acme.db.pgtenant.test hostaddr=127.0.0.1 sslmode=require channel_binding=require user=app",
        "SELECT name FROM items",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "acme-secret");
    // Without TLS there is nothing to bind to: -PLUS is not offered.
    let mut tcp = tokio::net::TcpStream::connect(w.proxy.addr())
        .await
        .expect("tcp");
    let mut buf = BytesMut::new();
    let plain = offered_mechanisms(&mut tcp, &mut buf, "app.acme").await;
    assert_eq!(plain, ["SCRAM-SHA-256"]);
    let (ok, _, err) = psql(
        &w.proxy,
        "sslmode=disable channel_binding=require user=app.acme",
        "SELECT 1",
    );
    assert!(!ok, "channel binding without TLS must fail: {err}");

    // A client bound to another certificate (a relay in between) is refused.
    let mut tls = direct_tls(&w, "acme.db.pgtenant.test").await;
    let mut buf = BytesMut::new();
    let offered = offered_mechanisms(&mut tls, &mut buf, "app").await;
    assert_eq!(offered, ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
    let mut scram = ScramSha256::new(
        CLIENT_PASSWORD.as_bytes(),
        ChannelBinding::tls_server_end_point(vec![7u8; 32]),
    );
    let mut out = BytesMut::new();
    frontend::sasl_initial_response("SCRAM-SHA-256-PLUS", scram.message(), &mut out).expect("sasl");
    tls.write_all(&out).await.expect("write");
    let backend::Message::AuthenticationSaslContinue(body) = read_msg(&mut tls, &mut buf).await
    else {
        panic!("expected SASL continue");
    };
    scram.update(body.data()).expect("server-first");
    out.clear();
    frontend::sasl_response(scram.message(), &mut out).expect("sasl");
    tls.write_all(&out).await.expect("write");
    let backend::Message::ErrorResponse(e) = read_msg(&mut tls, &mut buf).await else {
        panic!("a wrong channel binding must be refused");
    };
    let fields = error_fields(&e);
    assert_eq!(
        fields.get(&b'C').map(String::as_str),
        Some("28P01"),
        "{fields:?}"
    );
    assert!(fields[&b'M'].contains("channel binding"), "{fields:?}");
    w.proxy.shutdown().await;
}

/// The fields of an ErrorResponse by type byte.
fn error_fields(
    e: &postgres_protocol::message::backend::ErrorResponseBody,
) -> std::collections::HashMap<u8, String> {
    use fallible_iterator::FallibleIterator;
    e.fields()
        .map(|f| {
            Ok((
                f.type_(),
                String::from_utf8_lossy(f.value_bytes()).into_owned(),
            ))
        })
        .collect()
        .expect("fields")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_with_alpn_logs_in() {
    let w = world(false).await;
    let mut tls = direct_tls(&w, "globex.db.pgtenant.test").await;

    let mut buf = BytesMut::new();
    raw_login(&mut tls, &mut buf, "app", None).await;
    let mut out = BytesMut::new();
    out.clear();
    frontend::query("SELECT name FROM items", &mut out).expect("query");
    tls.write_all(&out).await.expect("write");
    let mut names = Vec::new();
    loop {
        match read_msg(&mut tls, &mut buf).await {
            backend::Message::DataRow(row) => {
                let mut raw = row.buffer();
                let len = raw.get_i32() as usize;
                names.push(String::from_utf8_lossy(&raw[..len]).into_owned());
            }
            backend::Message::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    assert_eq!(names, ["globex-secret"]);
    let mut bye = BytesMut::new();
    bye.put_u8(b'X');
    bye.put_u32(4);
    tls.write_all(&bye).await.expect("terminate");
    w.proxy.shutdown().await;
}
