//! FNV-1a 64 (Fowler–Noll–Vo), the crate's one non-cryptographic hash:
//! the optimizer state file's checksum (`optim::state`), the forgetting
//! experiment's cache keys and `mofo train`'s data identity, and the
//! digests `mofo bench optim` prints. Stable across runs and platforms.
//!
//! ```text
//! h ← 0xcbf29ce484222325
//! every byte b:  h ← (h ⊕ b) · 0x100000001b3   (mod 2⁶⁴)
//! ```

/// FNV-1a 64's starting state (its offset basis).
pub const FNV1A64_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a 64 of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_extend(FNV1A64_OFFSET, bytes)
}

/// FNV-1a 64 continued from the state `h` over `bytes`: hashing a
/// sequence piece by piece, `fnv1a64_extend(fnv1a64(a), b)` equals
/// `fnv1a64` of `a` followed by `b`.
pub fn fnv1a64_extend(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_pieces() {
        // The published test vectors of FNV-1a 64.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a64_extend(fnv1a64(b"foo"), b"bar"), fnv1a64(b"foobar"));
    }
}
