//! Codec tests on hand-written bytes.

use super::header::Header;
use super::messages::{
    ends_session, error_fields, query, quote_ident, quote_literal, ready_status,
};
use super::startup::{FirstPacket, StartupPacketError, decode, packet_len};
use bytes::BytesMut;

#[test]
fn header_needs_five_bytes() {
    assert_eq!(Header::parse(b"Z\0\0\0"), None);
    let h = Header::parse(b"Z\0\0\0\x05I").expect("header");
    assert_eq!(h.tag, b'Z');
    assert_eq!(h.total(), 6);
    assert!(h.is_valid());
    assert!(!Header::parse(b"Q\0\0\0\x03").expect("header").is_valid());
}

#[test]
fn startup_params_in_order() {
    let mut body = vec![0, 3, 0, 0];
    body.extend_from_slice(b"user\0alice.acme\0database\0shop\0\0");
    match decode(&body).expect("decodes") {
        FirstPacket::Startup(p) => {
            assert_eq!(p.minor_version, 0);
            assert_eq!(p.get("user"), Some("alice.acme"));
            assert_eq!(p.get("database"), Some("shop"));
            assert_eq!(p.params.len(), 2);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn startup_rejects_garbage() {
    assert!(matches!(
        decode(&[0, 2, 0, 0, 0]),
        Err(StartupPacketError::UnsupportedProtocol(2, 0))
    ));
    let mut body = vec![0, 3, 0, 0];
    body.extend_from_slice(b"user\0alice");
    assert!(matches!(decode(&body), Err(StartupPacketError::Layout(_))));
    assert!(packet_len([0, 0, 0, 4]).is_err());
    assert!(packet_len([0, 1, 0, 0]).is_err());
    assert_eq!(packet_len([0, 0, 0, 8]), Ok(8));
}

#[test]
fn ssl_and_cancel_packets() {
    assert_eq!(
        decode(&[0x04, 0xd2, 0x16, 0x2f]),
        Ok(FirstPacket::SslRequest)
    );
    let body = [0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 7, 1, 2, 3, 4];
    assert_eq!(
        decode(&body),
        Ok(FirstPacket::Cancel {
            pid: 7,
            secret: vec![1, 2, 3, 4]
        })
    );
}

#[test]
fn quoting() {
    assert_eq!(quote_literal("acme"), "'acme'");
    assert_eq!(quote_literal("o'brien"), "'o''brien'");
    assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
    assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
}

#[test]
fn generated_query_frames() {
    let mut buf = BytesMut::new();
    query(&mut buf, "SELECT 1");
    assert_eq!(&buf[..], b"Q\0\0\0\x0dSELECT 1\0");
}

#[test]
fn reads_ready_status_and_error_fields() {
    assert_eq!(ready_status(b"Z\0\0\0\x05T"), Some(b'T'));
    assert_eq!(ready_status(b"Z\0\0\0\x05"), None);
    let msg = b"E\0\0\0\x1cSERROR\0C42501\0Mno way\0\0";
    assert_eq!(error_fields(msg), ("42501".to_owned(), "no way".to_owned()));
    assert!(!ends_session(msg));
    assert!(ends_session(b"E\0\0\0\x1fSFATAL\0VFATAL\0C57P05\0Mbye\0\0"));
    // The untranslated severity decides over a localized one.
    assert!(ends_session(b"E\0\0\0\x1aSFATALE\0VFATAL\0Mx\0\0"));
    assert!(!ends_session(b"E\0\0\0\x1aSFATAL\0VERROR\0Mx\0\0"));
    assert!(ends_session(b"E\0\0\0\x0fSPANIC\0Mx\0\0"));
}
