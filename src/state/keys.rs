//! How a record's key is spelled in the store: its parts joined by the byte 0x1f, with
//! the bytes 0x1e and 0x1f inside a part escaped by 0x1e, so two different keys never
//! share their bytes (a value holding U+001F once made two records one).
//!
//! A key whose parts hold neither byte (any key whose values have no U+001E or U+001F)
//! is spelled exactly as state version 2 spelled it, so a version-2 store is read as it
//! is; see [`STATE_VERSION`](super::STATE_VERSION) for the keys that did hold them.

/// Between two parts.
const SEP: u8 = 0x1f;
/// Before a 0x1e or 0x1f that belongs to a part.
const ESC: u8 = 0x1e;

/// A key of `parts`, in order.
pub fn compose<P: AsRef<[u8]>>(parts: impl IntoIterator<Item = P>) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    for (n, part) in parts.into_iter().enumerate() {
        if n > 0 {
            out.push(SEP);
        }
        for &b in part.as_ref() {
            if b == SEP || b == ESC {
                out.push(ESC);
            }
            out.push(b);
        }
    }
    out
}

/// The parts of a key [`compose`] made.
pub fn parts(key: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new()];
    let mut bytes = key.iter();
    while let Some(&b) = bytes.next() {
        match b {
            ESC => {
                if let (Some(&next), Some(last)) = (bytes.next(), out.last_mut()) {
                    last.push(next);
                }
            }
            SEP => out.push(Vec::new()),
            _ => {
                if let Some(last) = out.last_mut() {
                    last.push(b);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_separator_inside_a_value_does_not_make_two_keys_one() {
        let a = compose([&b"x\x1fy"[..], b"z"]);
        let b = compose([&b"x"[..], b"y\x1fz"]);
        assert_ne!(a, b);
        assert_eq!(parts(&a), vec![b"x\x1fy".to_vec(), b"z".to_vec()]);
        assert_eq!(parts(&b), vec![b"x".to_vec(), b"y\x1fz".to_vec()]);
        let c = compose([&b"\x1e"[..], b"\x1f\x1e"]);
        assert_eq!(parts(&c), vec![b"\x1e".to_vec(), b"\x1f\x1e".to_vec()]);
    }

    #[test]
    fn keys_without_the_two_bytes_are_spelled_as_before() {
        assert_eq!(compose([&b"eu"[..], b"42"]), b"eu\x1f42");
        assert_eq!(compose([&b"only"[..]]), b"only");
        assert_eq!(parts(b"eu\x1f42"), vec![b"eu".to_vec(), b"42".to_vec()]);
    }
}
