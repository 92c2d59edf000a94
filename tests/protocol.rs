//! Protocol versions: a PostgreSQL 18 client asking for protocol 3.2 (and `_pq_.` options)
//! is told 3.0 with NegotiateProtocolVersion and logs in; a 4.0 request is refused.

mod common;
use common::*;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn startup_packet(major: u16, minor: u16, params: &[(&str, &str)]) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_u16(major);
    body.put_u16(minor);
    for (k, v) in params {
        body.put_slice(k.as_bytes());
        body.put_u8(0);
        body.put_slice(v.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut out = BytesMut::new();
    out.put_u32(body.len() as u32 + 4);
    out.put_slice(&body);
    out
}

fn cstr(b: &mut BytesMut) -> String {
    let end = b.iter().position(|c| *c == 0).expect("NUL");
    let s = String::from_utf8(b.split_to(end).to_vec()).expect("utf8");
    b.advance(1);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_3_2_is_negotiated_down_to_3_0() {
    let db = unique("proto");
    create_db(&db, "");
    let proxy = start_proxy(&config_text(&tenant_toml("acme", "database", &db, ""))).await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("tcp");
    let startup = startup_packet(
        3,
        2,
        &[
            ("user", "app"),
            ("database", "acme"),
            ("_pq_.unknown_option", "on"),
        ],
    );
    s.write_all(&startup).await.expect("startup");
    let mut buf = BytesMut::new();
    while buf.len() < 5 {
        assert!(s.read_buf(&mut buf).await.expect("read") > 0, "closed");
    }
    assert_eq!(buf[0], b'v', "NegotiateProtocolVersion first");
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    while buf.len() < 1 + len {
        assert!(s.read_buf(&mut buf).await.expect("read") > 0, "closed");
    }
    let mut msg = buf.split_to(1 + len);
    msg.advance(5);
    assert_eq!(
        msg.get_i32(),
        0,
        "newest minor version pgtenant speaks: 3.0"
    );
    assert_eq!(msg.get_i32(), 1, "one option not recognised");
    assert_eq!(cstr(&mut msg), "_pq_.unknown_option");
    // The login then goes on in protocol 3.0.
    raw_login_after_startup(&mut s, &mut buf).await;
    let mut q = BytesMut::new();
    postgres_protocol::message::frontend::query("SELECT current_database()", &mut q)
        .expect("query");
    s.write_all(&q).await.expect("send");
    let mut rows = Vec::new();
    loop {
        match read_msg(&mut s, &mut buf).await {
            postgres_protocol::message::backend::Message::DataRow(r) => {
                let mut raw = r.buffer();
                let n = raw.get_i32() as usize;
                rows.push(String::from_utf8_lossy(&raw[..n]).into_owned());
            }
            postgres_protocol::message::backend::Message::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    assert_eq!(rows, [db]);

    // A major version pgtenant does not speak is refused with 08P01.
    let mut s = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("tcp");
    s.write_all(&startup_packet(4, 0, &[("user", "app")]))
        .await
        .expect("startup");
    let mut buf = BytesMut::new();
    let postgres_protocol::message::backend::Message::ErrorResponse(e) =
        read_msg(&mut s, &mut buf).await
    else {
        panic!("expected an error");
    };
    use fallible_iterator::FallibleIterator;
    let code = e
        .fields()
        .find(|f| Ok(f.type_() == b'C'))
        .expect("fields")
        .map(|f| String::from_utf8_lossy(f.value_bytes()).into_owned());
    assert_eq!(code.as_deref(), Some("08P01"));
    proxy.shutdown().await;
}
