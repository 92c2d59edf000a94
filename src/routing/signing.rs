//! Signed context mode (issue: defense in depth): besides the tenant GUC, pgtenant sets
//! `<guc>_sig` = hex HMAC-SHA256(key, context || '/' || backend pid) on each server
//! connection. Policies written with `pgtenant rls --signed` trust the GUC only through
//! `pgtenant.verified_tenant()`, a SECURITY DEFINER function that recomputes the signature
//! with the key the upstream role cannot read; a GUC forged past the guard matches no rows.
//! The pid binds a signature to one server connection, so a value seen on one is useless on
//! another.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::protocol::messages::quote_literal;

/// What a signed route needs to build its setup statement per server connection.
#[derive(Debug, Clone)]
pub(crate) struct Signing {
    pub(crate) key: Arc<[u8]>,
    /// `SET <guc> = '<context>'`.
    pub(crate) base_sql: Arc<str>,
    pub(crate) sig_guc: Arc<str>,
    pub(crate) context: Arc<str>,
}

impl Signing {
    /// The signature for the server connection whose backend pid is `pid`.
    pub(crate) fn signature(&self, pid: i32) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            // HMAC accepts keys of any length.
            Err(_) => return String::new(),
        };
        mac.update(self.context.as_bytes());
        mac.update(b"/");
        mac.update(pid.to_string().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The setup statement for the server connection whose backend pid is `pid`.
    pub(crate) fn setup_for(&self, pid: i32) -> Arc<str> {
        Arc::from(format!(
            "{}; SET {} = {}",
            self.base_sql,
            self.sig_guc,
            quote_literal(&self.signature(pid))
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_hmac_sha256_of_context_and_pid() {
        let s = Signing {
            key: Arc::from(&b"key"[..]),
            base_sql: Arc::from("SET app.current_tenant = 'acme'"),
            sig_guc: Arc::from("app.current_tenant_sig"),
            context: Arc::from("acme"),
        };
        // HMAC-SHA256("key", "acme/42"), computed independently.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").expect("key");
        mac.update(b"acme/42");
        let want = hex::encode(mac.finalize().into_bytes());
        assert_eq!(s.signature(42), want);
        assert_ne!(s.signature(43), want);
        assert_eq!(
            &*s.setup_for(42),
            format!("SET app.current_tenant = 'acme'; SET app.current_tenant_sig = '{want}'")
        );
    }
}
