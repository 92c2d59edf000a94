//! Rendezvous (highest random weight) hashing: each tenant goes to the shard with the highest
//! `hash(shard, tenant)`. Adding a shard moves only the tenants it now wins, about 1/N.
//! The hash is SHA-256, so placement is stable across versions and platforms.

use sha2::{Digest, Sha256};

fn weight(shard: &str, tenant: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(shard.as_bytes());
    h.update([0u8]);
    h.update(tenant.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// The shard `tenant` is placed on among `shards` (empty input gives "").
pub(crate) fn choose<'a>(shards: &'a [String], tenant: &str) -> &'a str {
    shards
        .iter()
        .max_by_key(|s| (weight(s, tenant), s.as_str()))
        .map(String::as_str)
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::choose;

    #[test]
    fn single_shard_always_wins() {
        let shards = vec!["a".to_owned()];
        assert_eq!(choose(&shards, "acme"), "a");
    }

    #[test]
    fn adding_a_shard_moves_about_one_in_n() {
        let three: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let four: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let tenants: Vec<String> = (0..2000).map(|i| format!("t{i}")).collect();
        let moved = tenants
            .iter()
            .filter(|t| choose(&three, t) != choose(&four, t))
            .count();
        // Expect ~1/4 (500); every move must be to the new shard.
        assert!((350..650).contains(&moved), "moved {moved}");
        for t in &tenants {
            let (before, after) = (choose(&three, t), choose(&four, t));
            assert!(before == after || after == "d");
        }
        // All shards get tenants.
        for s in &four {
            assert!(tenants.iter().any(|t| choose(&four, t) == s));
        }
    }
}
