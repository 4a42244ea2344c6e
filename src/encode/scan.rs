//! Word-at-a-time (SWAR) checks for "does this string hold any byte that needs care?", so
//! the common string, which holds none, is checked 8 bytes per step and then copied whole.
//!
//! Each test sets the high bit of at least one byte of the result exactly when some byte of
//! the word matches (borrows can only set bits above a real match, so "any" is exact).

/// `b` in every byte of a word.
const fn splat(b: u8) -> u64 {
    0x0101_0101_0101_0101 * b as u64
}

/// Non-zero if some byte of `x` equals `b`.
#[inline(always)]
pub(super) fn has_byte(x: u64, b: u8) -> u64 {
    let y = x ^ splat(b);
    y.wrapping_sub(splat(1)) & !y & splat(0x80)
}

/// Non-zero if some byte of `x` is below `n` (`n` at most 0x80).
#[inline(always)]
pub(super) fn has_less(x: u64, n: u8) -> u64 {
    x.wrapping_sub(splat(n)) & !x & splat(0x80)
}

/// True if `hit` finds a match in some 8-byte word of `bytes`. `hit` must not match `b'a'`,
/// which fills the word of a string shorter than 4 bytes.
#[inline(always)]
pub(super) fn any(bytes: &[u8], hit: impl Fn(u64) -> u64) -> bool {
    let word = |c: &[u8]| c.try_into().map_or(0, u64::from_le_bytes);
    let len = bytes.len();
    if len < 8 {
        // Two overlapping 4-byte loads, or three single bytes: every byte is in the word at
        // least once, and repeats cannot make a match.
        let w = if len >= 4 {
            let lo = bytes[..4].try_into().map_or(0, u32::from_le_bytes);
            let hi = bytes[len - 4..].try_into().map_or(0, u32::from_le_bytes);
            u64::from(lo) | (u64::from(hi) << 32)
        } else if len > 0 {
            let (a, b, c) = (bytes[0], bytes[len / 2], bytes[len - 1]);
            u64::from_le_bytes([a, b, c, b'a', b'a', b'a', b'a', b'a'])
        } else {
            return false;
        };
        return hit(w) != 0;
    }
    let mut chunks = bytes.chunks_exact(8);
    let mut acc = 0;
    for c in &mut chunks {
        acc |= hit(word(c));
    }
    // The last 8 bytes, overlapping the last whole word when the length is not a multiple.
    if !chunks.remainder().is_empty() {
        acc |= hit(word(&bytes[bytes.len() - 8..]));
    }
    acc != 0
}

/// Index of the first byte of `bytes` that `hit` matches, or `bytes.len()`. Same contract for
/// `hit` as [`any`]. Exact: the lowest flagged byte of a word is always a real match.
#[inline(always)]
pub(super) fn find(bytes: &[u8], hit: impl Fn(u64) -> u64) -> usize {
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let m = hit(c.try_into().map_or(0, u64::from_le_bytes));
        if m != 0 {
            return at + (m.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    let rest = chunks.remainder();
    if rest.is_empty() {
        return at;
    }
    let mut word = [b'a'; 8];
    word[..rest.len()].copy_from_slice(rest);
    let m = hit(u64::from_le_bytes(word));
    if m == 0 {
        return bytes.len();
    }
    at + (m.trailing_zeros() / 8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn care(bytes: &[u8]) -> bool {
        any(bytes, |x| {
            has_less(x, 0x21) | has_byte(x, b',') | has_byte(x, b'\\')
        })
    }

    #[test]
    fn finds_the_first_special_byte() {
        let hit = |x| has_less(x, 0x21) | has_byte(x, b',') | has_byte(x, b'\\');
        for len in 0..40 {
            let plain: Vec<u8> = (0..len).map(|i| b"az09.-_~\xc3\xa9\xff!"[i % 12]).collect();
            assert_eq!(find(&plain, hit), len);
            for at in 0..len {
                for s in [b' ', 0, b',', b'\\'] {
                    let mut v = plain.clone();
                    v[at] = s;
                    if at + 1 < len {
                        v[len - 1] = b',';
                    }
                    assert_eq!(find(&v, hit), at, "{v:?}");
                }
            }
        }
    }

    #[test]
    fn matches_exactly_the_strings_with_a_special_byte() {
        let specials = [b' ', b'\n', 0, 0x1f, b',', b'\\'];
        for len in 0..40 {
            let plain: Vec<u8> = (0..len).map(|i| b"az09.-_~\xc3\xa9\xff!"[i % 12]).collect();
            assert!(!care(&plain), "{plain:?}");
            for at in 0..len {
                for &s in &specials {
                    let mut v = plain.clone();
                    v[at] = s;
                    assert!(care(&v), "{v:?}");
                }
            }
        }
    }
}
