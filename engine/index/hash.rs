//! The keys of the persistent index: a stable, seeded 64-bit hash of a stream name, a category or an event
//! type, and what a stream's category is.
//!
//! The hash is XXH3-64 with a per-store seed (chosen at random when the index is first built and written into
//! every table), so that it is the same in every build and on every platform, and so that nobody can pick
//! stream names that collide on purpose. Different keys may still share a hash: every lookup confirms the
//! name in the record it finds.

/// What a key names; each kind is hashed apart, so that a stream and a category of the same spelling never
/// share entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stream = 1,
    Category = 2,
    EventType = 3,
}

/// The hash of `key` as a `kind` under `seed`.
pub fn hash(seed: u64, kind: Kind, key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), seed ^ (kind as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The category of `stream`: the part before the first `separator` (`account` for `account-42`), or the whole
/// name if it holds none (KurrentDB's convention).
pub fn category(stream: &str, separator: char) -> &str {
    stream.split_once(separator).map_or(stream, |(category, _)| category)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_stable_and_kinds_differ() {
        // Pinned: a table written by one build is read by every later one.
        assert_eq!(hash(0, Kind::Stream, "account-42"), 4_029_820_897_691_837_885);
        assert_eq!(hash(7, Kind::Stream, ""), xxhash_rust::xxh3::xxh3_64_with_seed(b"", 7 ^ 0x9E37_79B9_7F4A_7C15));
        assert_ne!(hash(1, Kind::Stream, "account"), hash(1, Kind::Category, "account"));
        assert_ne!(hash(1, Kind::Stream, "account"), hash(2, Kind::Stream, "account"));
    }

    #[test]
    fn the_category_is_the_name_before_the_first_separator() {
        assert_eq!(category("account-42", '-'), "account");
        assert_eq!(category("order-7-line-3", '-'), "order");
        assert_eq!(category("transfers", '-'), "transfers");
        assert_eq!(category("-x", '-'), "");
        assert_eq!(category("a.b", '.'), "a");
    }
}
