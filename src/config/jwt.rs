//! `[jwt]` → [`JwtPolicy`]: reads the secret and key files it names, checks that every accepted
//! algorithm has a key of its family, and that the role allowlist makes sense. Every error names
//! its key.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, AlgorithmFamily};

use super::ConfigError;
use super::model::RawJwt;
use super::validate::resolve_path;
use crate::auth::jwt::JwtPolicy;
use crate::auth::jwt::keys::{self, Key};

/// Largest `max_token_bytes` accepted (a token rides in one password message).
const MAX_TOKEN_LIMIT: u32 = 1024 * 1024;
/// Smallest `max_token_bytes` accepted: below this even a small RS256 token does not fit.
const MIN_TOKEN_LIMIT: u32 = 1024;

pub(super) fn policy(
    raw: Option<RawJwt>,
    listed: bool,
    base: Option<&Path>,
) -> Result<Option<Arc<JwtPolicy>>, ConfigError> {
    let raw = match (raw, listed) {
        (None, false) => return Ok(None),
        (None, true) => {
            return Err(ConfigError::invalid(
                "tenancy.resolve",
                "lists jwt but there is no [jwt] section with a key (secret_env, secret_file, public_key_files or jwks_file)",
            ));
        }
        (Some(_), false) => {
            return Err(ConfigError::invalid(
                "jwt",
                "a [jwt] section is configured but tenancy.resolve does not list jwt: add it there or remove [jwt]",
            ));
        }
        (Some(raw), true) => raw,
    };
    let keys = load_keys(&raw, base)?;
    let algorithms = algorithms(&raw, &keys)?;
    if raw.tenant_claim.is_empty() {
        return Err(ConfigError::invalid(
            "jwt.tenant_claim",
            "must not be empty",
        ));
    }
    match (&raw.role_claim, raw.roles.is_empty()) {
        (Some(c), _) if c.is_empty() => {
            return Err(ConfigError::invalid("jwt.role_claim", "must not be empty"));
        }
        (Some(_), true) => {
            return Err(ConfigError::invalid(
                "jwt.roles",
                "jwt.role_claim is set but the allowlist is empty: map claim values to upstream roles, e.g. roles = { reader = \"app_ro\" }",
            ));
        }
        (None, false) => {
            return Err(ConfigError::invalid(
                "jwt.role_claim",
                "jwt.roles is set but no role_claim names the claim to read",
            ));
        }
        _ => {}
    }
    for (value, role) in &raw.roles {
        if role.is_empty() || role.contains('\0') {
            return Err(ConfigError::invalid(
                format!("jwt.roles.{value}"),
                "must be an upstream role name",
            ));
        }
    }
    if !(MIN_TOKEN_LIMIT..=MAX_TOKEN_LIMIT).contains(&raw.max_token_bytes) {
        return Err(ConfigError::invalid(
            "jwt.max_token_bytes",
            format!("must be between {MIN_TOKEN_LIMIT} and {MAX_TOKEN_LIMIT}"),
        ));
    }
    for (key, v) in [("jwt.issuer", &raw.issuer), ("jwt.audience", &raw.audience)] {
        if v.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::invalid(
                key,
                "must not be empty; leave it out to not check",
            ));
        }
    }
    Ok(Some(Arc::new(JwtPolicy {
        keys,
        algorithms,
        issuer: raw.issuer,
        audience: raw.audience,
        leeway_seconds: raw.leeway_seconds,
        tenant_claim: raw.tenant_claim,
        role_claim: raw.role_claim,
        roles: raw.roles.into_iter().collect::<BTreeMap<_, _>>(),
        allow_plaintext_loopback: raw.allow_plaintext_loopback,
        max_token_bytes: raw.max_token_bytes as usize,
    })))
}

fn read(key: &str, base: Option<&Path>, file: &str) -> Result<Vec<u8>, ConfigError> {
    let path = resolve_path(base, file);
    std::fs::read(&path).map_err(|e| ConfigError::invalid(key, format!("{}: {e}", path.display())))
}

fn load_keys(raw: &RawJwt, base: Option<&Path>) -> Result<Vec<Key>, ConfigError> {
    let mut keys = Vec::new();
    let secret = match (&raw.secret_env, &raw.secret_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                "jwt",
                "set only one of secret_env, secret_file",
            ));
        }
        (Some(var), None) => Some((
            "jwt.secret_env",
            std::env::var(var)
                .map_err(|_| {
                    ConfigError::invalid(
                        "jwt.secret_env",
                        format!("environment variable {var} is not set"),
                    )
                })?
                .into_bytes(),
        )),
        (None, Some(file)) => {
            let mut bytes = read("jwt.secret_file", base, file)?;
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            Some(("jwt.secret_file", bytes))
        }
        (None, None) => None,
    };
    if let Some((key, bytes)) = secret {
        keys.push(keys::secret(&bytes).map_err(|r| ConfigError::invalid(key, r))?);
    }
    for (i, file) in raw.public_key_files.iter().enumerate() {
        let key = format!("jwt.public_key_files[{i}]");
        let text = read(&key, base, file)?;
        keys.push(
            keys::pem(&text).map_err(|r| ConfigError::invalid(&key, format!("{file}: {r}")))?,
        );
    }
    if let Some(file) = &raw.jwks_file {
        let text = read("jwt.jwks_file", base, file)?;
        keys.extend(
            keys::jwks(&text)
                .map_err(|r| ConfigError::invalid("jwt.jwks_file", format!("{file}: {r}")))?,
        );
    }
    if keys.is_empty() {
        return Err(ConfigError::invalid(
            "jwt",
            "no verification key: set secret_env or secret_file (HS256), public_key_files or jwks_file (RS256, ES256)",
        ));
    }
    Ok(keys)
}

/// The accepted algorithms: as listed, or by default HS256 / RS256 / ES256 for the families
/// that have keys. Each listed algorithm needs a key of its family; `none` is never accepted.
fn algorithms(raw: &RawJwt, keys: &[Key]) -> Result<Vec<Algorithm>, ConfigError> {
    let has = |f: AlgorithmFamily| keys.iter().any(|k| k.family() == f);
    let Some(listed) = &raw.algorithms else {
        return Ok([
            (AlgorithmFamily::Hmac, Algorithm::HS256),
            (AlgorithmFamily::Rsa, Algorithm::RS256),
            (AlgorithmFamily::Ec, Algorithm::ES256),
        ]
        .into_iter()
        .filter(|(f, _)| has(*f))
        .map(|(_, a)| a)
        .collect());
    };
    if listed.is_empty() {
        return Err(ConfigError::invalid(
            "jwt.algorithms",
            "list at least one algorithm, or leave it out for the default",
        ));
    }
    let mut out = Vec::new();
    for (i, name) in listed.iter().enumerate() {
        let key = format!("jwt.algorithms[{i}]");
        if name.eq_ignore_ascii_case("none") {
            return Err(ConfigError::invalid(
                key,
                "unsigned tokens (alg none) are never accepted",
            ));
        }
        let alg = Algorithm::from_str(name).map_err(|_| {
            ConfigError::invalid(
                &key,
                format!("{name:?} is not a JWT algorithm: use e.g. HS256, RS256 or ES256"),
            )
        })?;
        if !has(alg.family()) {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "{name} needs a key of its kind: HS* a secret_env/secret_file, RS*/PS* an RSA key, ES* an EC key"
                ),
            ));
        }
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    Ok(out)
}
