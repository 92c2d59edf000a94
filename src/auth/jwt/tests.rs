//! JWT verification without a network: signatures, algorithm confusion, claims, roles.
