//! Hash maps on per-transaction paths (pool bookkeeping, prepared-statement names): foldhash,
//! seeded per process, rather than the standard library's SipHash, which costs several times
//! more per lookup on the short keys these maps hold.

/// A `HashMap` hashed with foldhash.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
