//! SCRAM keys pgtenant logs in to shards with, besides configured passwords: keys passed
//! through from clients' own SCRAM logins (a shard without a password), and a cache of the
//! PBKDF2 derivations of configured passwords, so a new server connection costs a few HMACs
//! instead of 4,096 hash rounds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use sha2::{Digest, Sha256};

use crate::auth::keys::ScramKeys;

/// Derivations kept at most (one per shard password, salt and iteration count in use); the
/// cache is emptied when full.
const MAX_DERIVATIONS: usize = 1024;

/// (SHA-256 of the password, salt, iterations): the password itself is not kept as a key.
type DerivationKey = ([u8; 32], Vec<u8>, usize);

#[derive(Default)]
pub(crate) struct Credentials {
    /// By user name: the keys of that user's last successful SCRAM login.
    passthrough: DashMap<String, Arc<ScramKeys>>,
    derived: Mutex<HashMap<DerivationKey, Arc<ScramKeys>>>,
}

impl Credentials {
    /// Keeps the keys `user` just proved it holds; the upstream role of the same name can then
    /// log in with them on a shard that has no password configured.
    pub(crate) fn remember(&self, user: &str, keys: ScramKeys) {
        match self.passthrough.get(user) {
            Some(old) if **old == keys => {}
            _ => {
                self.passthrough.insert(user.to_owned(), Arc::new(keys));
            }
        }
    }

    /// The keys remembered for `role`.
    pub(crate) fn passthrough(&self, role: &str) -> Option<Arc<ScramKeys>> {
        self.passthrough.get(role).map(|k| k.clone())
    }

    /// Drops remembered keys `still_valid` rejects (a user removed or given a new verifier).
    pub(crate) fn retain(&self, still_valid: impl Fn(&str, &ScramKeys) -> bool) {
        self.passthrough
            .retain(|user, keys| still_valid(user, keys));
    }

    /// The keys for `password` under the shard's salt and iteration count: from the cache, or
    /// derived on a blocking thread and cached.
    pub(crate) async fn derive(
        &self,
        password: &str,
        salt: &[u8],
        iterations: usize,
    ) -> Result<Arc<ScramKeys>, tokio::task::JoinError> {
        let key: DerivationKey = (
            Sha256::digest(password.as_bytes()).into(),
            salt.to_vec(),
            iterations,
        );
        if let Some(keys) = self.lock().get(&key) {
            return Ok(keys.clone());
        }
        let (password, salt_owned) = (password.to_owned(), salt.to_vec());
        let keys = tokio::task::spawn_blocking(move || {
            Arc::new(ScramKeys::from_password(&password, &salt_owned, iterations))
        })
        .await?;
        let mut cache = self.lock();
        if cache.len() >= MAX_DERIVATIONS {
            cache.clear();
        }
        cache.insert(key, keys.clone());
        Ok(keys)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DerivationKey, Arc<ScramKeys>>> {
        self.derived.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_derivation_is_made_once_per_password_and_salt() {
        let creds = Credentials::default();
        let a = creds.derive("pw", b"salt-1", 4096).await.expect("derives");
        let again = creds.derive("pw", b"salt-1", 4096).await.expect("derives");
        assert!(
            Arc::ptr_eq(&a, &again),
            "second derivation comes from the cache"
        );
        let other_salt = creds.derive("pw", b"salt-2", 4096).await.expect("derives");
        let other_pw = creds.derive("pw2", b"salt-1", 4096).await.expect("derives");
        assert!(*other_salt != *a && *other_pw != *a);
        assert_eq!(*a, ScramKeys::from_password("pw", b"salt-1", 4096));
    }

    #[test]
    fn remembered_keys_are_found_by_name_and_dropped_when_invalid() {
        let creds = Credentials::default();
        creds.remember("app", ScramKeys::from_password("pw", b"s", 16));
        assert!(creds.passthrough("app").is_some());
        assert!(creds.passthrough("other").is_none());
        creds.retain(|user, _| user != "app");
        assert!(creds.passthrough("app").is_none());
    }
}
