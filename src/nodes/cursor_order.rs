//! Cursor values as bytes that sort like the values: the key of the state store's cursor
//! index, so keys that fell below the watermark are found by a range scan of just those
//! keys instead of a scan of every key (spec §5.2: the key state stays bounded).

use super::value::Val;

/// The order-preserving bytes of a cursor value, or `None` for a value that has no
/// place in the order (null, json). A decimal sorts by its nearest `f64`: a prune may
/// keep a decimal key a little longer, never drop one too early.
pub fn encode(v: &Val) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(16);
    match v {
        Val::Bool(b) => {
            out.push(1);
            out.push(u8::from(*b));
        }
        Val::Int(i) => {
            out.push(2);
            out.extend_from_slice(&((*i as u64) ^ (1 << 63)).to_be_bytes());
        }
        Val::Float(_) | Val::Decimal(_) => {
            let f = v.as_f64().filter(|f| f.is_finite())?;
            let bits = f.to_bits();
            let ordered = if bits >> 63 == 1 {
                !bits
            } else {
                bits ^ (1 << 63)
            };
            out.push(3);
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        Val::Datetime(t) => {
            out.push(4);
            out.extend_from_slice(&((t.timestamp() as u64) ^ (1 << 63)).to_be_bytes());
            out.extend_from_slice(&t.timestamp_subsec_nanos().to_be_bytes());
        }
        Val::Str(s) => {
            out.push(5);
            for b in s.bytes() {
                out.push(b);
                if b == 0 {
                    out.push(0xFF);
                }
            }
            out.extend_from_slice(&[0, 0]);
        }
        Val::Null | Val::Json(_) => return None,
    }
    Some(out)
}

/// The bound below which cursors are strictly smaller than `v`: index keys of records
/// tied with `v` sort after it (they start with its bytes).
pub fn bound(v: &Val) -> Option<Vec<u8>> {
    encode(v)
}

/// An index key: the cursor's bytes, then the record's key.
pub fn index_key(cursor: &[u8], key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cursor.len() + key.len());
    out.extend_from_slice(cursor);
    out.extend_from_slice(key);
    out
}

/// The record key inside an index key.
pub fn key_of(index_key: &[u8]) -> Option<&[u8]> {
    let len = match *index_key.first()? {
        1 => 2,
        2 | 3 => 9,
        4 => 13,
        5 => {
            let mut i = 1;
            loop {
                match (index_key.get(i)?, index_key.get(i + 1)) {
                    (0, Some(0)) => break i + 2,
                    (0, Some(_)) => i += 2,
                    _ => i += 1,
                }
            }
        }
        _ => return None,
    };
    index_key.get(len..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    fn sorted(vals: &[Val]) {
        for w in vals.windows(2) {
            let (a, b) = (encode(&w[0]).unwrap(), encode(&w[1]).unwrap());
            assert!(a < b, "{:?} !< {:?}", w[0], w[1]);
        }
    }

    #[test]
    fn each_kind_sorts_like_its_values() {
        sorted(&[
            Val::Int(i64::MIN),
            Val::Int(-1),
            Val::Int(0),
            Val::Int(7),
            Val::Int(i64::MAX),
        ]);
        sorted(&[
            Val::Float(-1e300),
            Val::Float(-0.5),
            Val::Float(0.0),
            Val::Float(2.5),
        ]);
        sorted(&[
            Val::Datetime(Utc.timestamp_opt(-5, 0).unwrap()),
            Val::Datetime(Utc.timestamp_opt(0, 1).unwrap()),
            Val::Datetime(Utc.timestamp_opt(0, 2).unwrap()),
            Val::Datetime(Utc.timestamp_opt(1_700_000_000, 0).unwrap()),
        ]);
        sorted(&[
            Val::Str(String::new()),
            Val::Str("\0".into()),
            Val::Str("\0\0".into()),
            Val::Str("a".into()),
            Val::Str("a\0".into()),
            Val::Str("ab".into()),
        ]);
    }

    #[test]
    fn ties_sort_after_the_bound_and_keys_come_back() {
        for v in [Val::Int(5), Val::Str("x\0y".into()), Val::Float(1.5)] {
            let c = encode(&v).unwrap();
            let k = index_key(&c, b"key\0\x01");
            assert!(k.as_slice() >= bound(&v).unwrap().as_slice());
            assert_eq!(key_of(&k), Some(&b"key\0\x01"[..]));
        }
    }

    proptest! {
        #[test]
        fn strings_and_ints_keep_their_order(a: String, b: String, x: i64, y: i64) {
            let (ea, eb) = (encode(&Val::Str(a.clone())).unwrap(), encode(&Val::Str(b.clone())).unwrap());
            prop_assert_eq!(a.cmp(&b), ea.cmp(&eb));
            let (ex, ey) = (encode(&Val::Int(x)).unwrap(), encode(&Val::Int(y)).unwrap());
            prop_assert_eq!(x.cmp(&y), ex.cmp(&ey));
            let k = index_key(&ea, b"k");
            prop_assert_eq!(key_of(&k), Some(&b"k"[..]));
        }
    }
}
