//! Hash maps on per-transaction paths (pool bookkeeping, prepared-statement names): foldhash,
//! seeded per process, rather than the standard library's SipHash, which costs several times
//! more per lookup on the short keys these maps hold. foldhash is not built to resist keys chosen
//! to collide. Here the seed is random per process and never leaves it; a client's statement
//! names go only into that client's own map; and the pool's maps hold entries only for
//! checkouts in progress and for tenants that have clients in the pool or a configured cap.

/// A `HashMap` hashed with foldhash.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
