//! TLS for clients: the rustls acceptor built from the configured certificate and key.
//! ALPN `postgresql` is offered, as PostgreSQL 17's direct TLS requires.

use std::sync::Arc;

use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::config::{ConfigError, TlsSettings};

pub(crate) const ALPN_POSTGRESQL: &[u8] = b"postgresql";

pub(crate) fn acceptor(settings: &TlsSettings) -> Result<TlsAcceptor, ConfigError> {
    let cert_pem = std::fs::read(&settings.cert_file)
        .map_err(|e| ConfigError::invalid("tls.cert_file", e.to_string()))?;
    let key_pem = std::fs::read(&settings.key_file)
        .map_err(|e| ConfigError::invalid("tls.key_file", e.to_string()))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::invalid("tls.cert_file", e.to_string()))?;
    if certs.is_empty() {
        return Err(ConfigError::invalid(
            "tls.cert_file",
            "no PEM certificate found",
        ));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| ConfigError::invalid("tls.key_file", e.to_string()))?
        .ok_or_else(|| ConfigError::invalid("tls.key_file", "no PEM private key found"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::invalid("tls", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ConfigError::invalid("tls.key_file", e.to_string()))?;
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
