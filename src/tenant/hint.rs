//! The unverified tenant hint: what each enabled source says, and the agreement rule
//! (DESIGN §2). Also strips the tenant from `user` and `options` so nothing of it goes upstream.

use super::TenantError;
use crate::config::{Source, Tenancy};
use crate::protocol::startup::StartupParams;

/// What the client's startup said, once tenant naming is taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hint {
    /// The tenant name, from the first present source.
    pub(crate) tenant: Option<String>,
    /// The pgtenant user (the part of `user` before the separator, if the user source applied).
    pub(crate) user: String,
    /// The database name the client asked for.
    pub(crate) database: Option<String>,
    /// Every present source with its value, in `tenancy.resolve` order (all agree).
    pub(crate) found: Vec<(Source, String)>,
}

/// Reads the tenant out of the startup parameters and the TLS server name.
pub(crate) fn read(
    tenancy: &Tenancy,
    params: &StartupParams,
    sni: Option<&str>,
) -> Result<Hint, TenantError> {
    let raw_user = params.get("user").unwrap_or_default().to_owned();
    // A startup parameter of the GUC's name would be ignored (pgtenant applies only the
    // parameters it tracks): refused like the same setting in `options`, so that nobody
    // takes it for a way to name the tenant.
    if let Some((name, _)) = params
        .params
        .iter()
        .find(|(n, _)| names_guc(n, &tenancy.guc))
    {
        return Err(TenantError::ForbiddenOption(name.clone()));
    }
    let options = parse_options(params.get("options").unwrap_or_default(), &tenancy.guc)?;
    let mut user = raw_user.clone();
    let mut found: Vec<(Source, String)> = Vec::new();
    for source in &tenancy.sources {
        let value = match source {
            // Known only once the token is verified: see [`Hint::with_verified`].
            Source::Jwt => None,
            Source::Sni => sni.and_then(|name| sni_tenant(name, tenancy.sni_suffix.as_deref())),
            Source::Options => options.clone(),
            Source::User => match raw_user.rsplit_once(tenancy.user_separator.as_str()) {
                Some((u, t)) if !u.is_empty() && !t.is_empty() => {
                    user = u.to_owned();
                    Some(t.to_owned())
                }
                _ => None,
            },
            Source::Database => params
                .get("database")
                // libpq defaults the database to the user name: that names no tenant.
                .filter(|d| !d.is_empty() && *d != raw_user)
                .map(str::to_owned),
        };
        if let Some(v) = value {
            found.push((*source, v));
        }
    }
    agree(&found)?;
    Ok(Hint {
        tenant: found.first().map(|(_, v)| v.clone()),
        user,
        database: params.get("database").map(str::to_owned),
        found,
    })
}

impl Hint {
    /// Adds the tenant a verified credential names (the `jwt` source) at its place in
    /// `tenancy.resolve` and applies the agreement rule again.
    pub(crate) fn with_verified(
        mut self,
        tenancy: &Tenancy,
        source: Source,
        value: String,
    ) -> Result<Hint, TenantError> {
        let rank = |s: &Source| tenancy.sources.iter().position(|x| x == s);
        let at = self
            .found
            .iter()
            .position(|(s, _)| rank(s) > rank(&source))
            .unwrap_or(self.found.len());
        self.found.insert(at, (source, value));
        agree(&self.found)?;
        self.tenant = self.found.first().map(|(_, v)| v.clone());
        Ok(self)
    }
}

/// The agreement rule: every present source names the same tenant as the first.
fn agree(found: &[(Source, String)]) -> Result<(), TenantError> {
    if let Some((first, first_value)) = found.first()
        && let Some((second, second_value)) = found.iter().find(|(_, v)| v != first_value)
    {
        return Err(TenantError::Disagree {
            first: first.as_str(),
            first_value: first_value.clone(),
            second: second.as_str(),
            second_value: second_value.clone(),
        });
    }
    Ok(())
}

/// First label under the configured suffix: `acme.db.example.com` with suffix
/// `db.example.com` → `acme`.
fn sni_tenant(server_name: &str, suffix: Option<&str>) -> Option<String> {
    let suffix = suffix?;
    let name = server_name.to_ascii_lowercase();
    let head = name.strip_suffix(suffix)?.strip_suffix('.')?;
    let label = head.rsplit('.').next()?;
    (!label.is_empty()).then(|| label.to_owned())
}

/// Reads `-c tenant=acme` / `--tenant=acme` out of the startup `options`; refuses any option
/// that would set the tenant GUC.
fn parse_options(options: &str, guc: &str) -> Result<Option<String>, TenantError> {
    let mut tenant = None;
    for (name, value) in option_settings(options)? {
        let canonical = option_name(&name);
        if canonical.eq_ignore_ascii_case(guc) {
            return Err(TenantError::ForbiddenOption(name));
        }
        if canonical.eq_ignore_ascii_case("tenant") {
            tenant = Some(value);
        }
    }
    Ok(tenant)
}

/// A setting's name as a client wrote it names the tenant GUC.
fn names_guc(name: &str, guc: &str) -> bool {
    option_name(name).eq_ignore_ascii_case(guc)
}

/// A setting's name as PostgreSQL reads it from options, but for case (compare ignoring
/// it): `-` is `_`.
fn option_name(name: &str) -> String {
    name.trim().replace('-', "_")
}

/// Every `-c name=value`, `-cname=value` and `--name=value` in the startup `options`, in order.
pub(crate) fn option_settings(options: &str) -> Result<Vec<(String, String)>, TenantError> {
    let words = split_options(options);
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let setting = if w == "-c" {
            i += 1;
            match words.get(i) {
                Some(s) => s.clone(),
                None => return Err(TenantError::BadOptions("-c without a setting".into())),
            }
        } else if let Some(s) = w.strip_prefix("--") {
            s.to_owned()
        } else if let Some(s) = w.strip_prefix("-c") {
            s.to_owned()
        } else {
            i += 1;
            continue;
        };
        i += 1;
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| TenantError::BadOptions(format!("{setting:?} has no '='")))?;
        out.push((name.to_owned(), value.to_owned()));
    }
    Ok(out)
}

/// Splits `options` on unescaped spaces, as PostgreSQL's `pg_split_opts` does.
fn split_options(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_ascii_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests;
