//! Name templates such as `erp_{tenant}`: `{tenant}` is the tenant's context value, `{name}` the
//! name clients use, `{user}` the authenticated pgtenant user.

use std::fmt;

/// A validated template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template(String);

/// Values substituted into a template.
pub(crate) struct TemplateVars<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) name: &'a str,
    pub(crate) user: &'a str,
}

const PLACEHOLDERS: [&str; 3] = ["{tenant}", "{name}", "{user}"];

impl Template {
    /// Checks that every `{...}` is a known placeholder.
    pub(crate) fn parse(s: &str) -> Result<Template, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        let mut rest = s;
        while let Some(start) = rest.find('{') {
            let after = &rest[start..];
            match PLACEHOLDERS.iter().find(|p| after.starts_with(**p)) {
                Some(p) => rest = &after[p.len()..],
                None => {
                    return Err(format!(
                        "unknown placeholder in {s:?}: only {{tenant}}, {{name}} and {{user}} exist"
                    ));
                }
            }
        }
        if rest.contains('}') {
            return Err(format!("stray '}}' in {s:?}"));
        }
        Ok(Template(s.to_owned()))
    }

    pub(crate) fn render(&self, vars: &TemplateVars<'_>) -> String {
        self.0
            .replace("{tenant}", vars.tenant)
            .replace("{name}", vars.name)
            .replace("{user}", vars.user)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
