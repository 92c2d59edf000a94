//! What a tenant name may look like. Names end up in database, schema and role templates, so
//! they are restricted to characters that need no quoting anywhere. And when two names are
//! the same tenant.

use std::sync::Arc;

/// Whether two names are the same tenant: by pointer first (a listed tenant's sessions share
/// one name), then by text (unlisted tenants, and names from before a reload).
pub(crate) fn same_tenant(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}

pub(crate) fn valid_tenant_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::valid_tenant_name;

    #[test]
    fn names() {
        assert!(valid_tenant_name("acme"));
        assert!(valid_tenant_name("globex-2_b"));
        assert!(!valid_tenant_name(""));
        assert!(!valid_tenant_name("a;drop"));
        assert!(!valid_tenant_name("a.b"));
        assert!(!valid_tenant_name(&"x".repeat(64)));
    }
}
