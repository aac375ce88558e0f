//! How the key index lies in the `keylog` tree: the values (pages, chunks, the meta) and
//! their keys.

use super::{hash_key, Entry, Full, Result, StateError, NO_ORDER};
use crate::state::sled_store::prefixed;

/// One entry as a value holds it, with its key and cursor text.
pub(super) struct Item<'a> {
    pub(super) entry: Entry,
    pub(super) key: &'a [u8],
    pub(super) cursor: &'a [u8],
}

impl Item<'_> {
    pub(super) fn full(&self) -> Full {
        Full {
            entry: self.entry,
            key: self.key.to_vec(),
            cursor: self.cursor.to_vec(),
        }
    }
}

/// Appends an entry in [`FORMAT`]: its fingerprint (8 bytes); its order as a length
/// byte and the order's bytes without their trailing zeros (`0xff` alone: no order);
/// then its key and its cursor text, each after its length (LEB128). The key's hash is
/// not kept: it is the key's. About half the bytes of [`FORMAT_V1`]'s entries, and sled
/// keeps much of what it is given to write in memory (a run of 200,000 keys peaked
/// 10 MiB lower).
pub(super) fn encode_item(out: &mut Vec<u8>, entry: &Entry, key: &[u8], cursor: &[u8]) {
    out.extend_from_slice(&entry.fingerprint.to_be_bytes());
    if entry.order == NO_ORDER {
        out.push(0xff);
    } else {
        let n = entry
            .order
            .iter()
            .rposition(|b| *b != 0)
            .map_or(0, |i| i + 1);
        out.push(n as u8);
        out.extend_from_slice(&entry.order[..n]);
    }
    for part in [key, cursor] {
        let mut len = part.len() as u32;
        loop {
            let low = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(low);
                break;
            }
            out.push(low | 0x80);
        }
        out.extend_from_slice(part);
    }
}

/// A page of entries as it is written.
#[cfg(test)]
pub(super) fn encode_page(entries: &[Full]) -> Vec<u8> {
    let mut out = vec![FORMAT];
    for f in entries {
        encode_item(&mut out, &f.entry, &f.key, &f.cursor);
    }
    out
}

/// The entry at the start of `bytes`, in a value of `format`, and its length; `None`
/// when it is cut short. Its key's hash is `known`, or else computed (format 2 does not
/// keep it).
fn item(format: u8, bytes: &[u8], known: Option<u128>) -> Option<(Item<'_>, usize)> {
    let (fingerprint, order, mut at, hash) = if format == FORMAT_V1 {
        let head = bytes.get(..HEAD_V1)?;
        let hash = u128::from_be_bytes(head[..16].try_into().ok()?);
        let fingerprint = u64::from_be_bytes(head[16..24].try_into().ok()?);
        let order: [u8; 16] = head[24..HEAD_V1].try_into().ok()?;
        (fingerprint, order, HEAD_V1, Some(hash))
    } else {
        let fingerprint = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let tag = *bytes.get(8)?;
        let (order, at) = if tag == 0xff {
            (NO_ORDER, 9)
        } else {
            let n = usize::from(tag);
            let mut order = [0u8; 16];
            order.get_mut(..n)?.copy_from_slice(bytes.get(9..9 + n)?);
            (order, 9 + n)
        };
        (fingerprint, order, at, None)
    };
    let mut part = || -> Option<&[u8]> {
        let len = if format == FORMAT_V1 {
            let len = u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?);
            at += 4;
            len as usize
        } else {
            let mut len: u64 = 0;
            for shift in (0..35).step_by(7) {
                let b = *bytes.get(at)?;
                at += 1;
                len |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    break;
                }
            }
            usize::try_from(len).ok()?
        };
        let out = bytes.get(at..at.checked_add(len)?)?;
        at += len;
        Some(out)
    };
    let key = part()?;
    let cursor = part()?;
    let entry = Entry {
        hash: hash.or(known).unwrap_or_else(|| hash_key(key)),
        fingerprint,
        order,
    };
    Some((Item { entry, key, cursor }, at))
}

/// The entries of a value, each with where its bytes lie in it.
pub(super) fn scan(bytes: &[u8], what: &str) -> Result<Vec<(Entry, std::ops::Range<usize>)>> {
    let damaged = |reason: &str| StateError::Damaged {
        what: what.to_string(),
        reason: reason.to_string(),
    };
    let format = match bytes.first() {
        None => return Err(damaged("it is empty")),
        Some(&f) if f == FORMAT || f == FORMAT_V1 => f,
        Some(_) => return Err(damaged("an unknown format")),
    };
    let mut out = Vec::new();
    let mut at = 1;
    while at < bytes.len() {
        let (item, len) =
            item(format, &bytes[at..], None).ok_or_else(|| damaged("it is cut short"))?;
        out.push((item.entry, at..at + len));
        at += len;
    }
    Ok(out)
}

/// The entry `scan` found at `range` of `value`.
pub(super) fn item_at(value: &[u8], range: std::ops::Range<usize>, hash: u128) -> Option<Item<'_>> {
    let format = *value.first()?;
    item(format, value.get(range)?, Some(hash)).map(|(item, _)| item)
}

pub(super) fn decode(bytes: &[u8], what: &str) -> Result<Vec<Entry>> {
    Ok(scan(bytes, what)?.into_iter().map(|(e, _)| e).collect())
}

/// The first byte of the values this module writes: entries as [`encode_item`] lays them
/// out.
pub(super) const FORMAT: u8 = 2;
/// The first byte of values written before: each entry a 40-byte head (hash,
/// fingerprint, order) and its key and cursor text after u32 lengths. Read, not written.
pub(super) const FORMAT_V1: u8 = 1;
const HEAD_V1: usize = 40;
/// The first byte of the index's meta: each run with where its chunks lie (state
/// version 6).
const META_FORMAT: u8 = 2;
/// The meta before: every run's chunks are sled values. Read, not written.
const META_FORMAT_V1: u8 = 1;

/// Removes `keys`, a few at a time: sled keeps every node version a batch touched until
/// the batch ends (measured: one batch removing the chunks of a 1.4-million-key merge
/// held 510 MB).
pub(super) fn remove_all<K: AsRef<[u8]>>(tree: &sled::Tree, keys: Vec<K>) -> Result<()> {
    for some in keys.chunks(64) {
        let mut batch = sled::Batch::default();
        for k in some {
            batch.remove(k.as_ref());
        }
        tree.apply_batch(batch)?;
    }
    Ok(())
}

/// A write to make: a key of the `keylog` tree and its value.
pub type Write = (Vec<u8>, sled::IVec);

/// The index's own record: the runs in force (oldest first), the last page folded into
/// them, and the last prune bound.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Meta {
    pub(super) runs: Vec<MetaRun>,
    pub(super) folded: u64,
    pub(super) bound: Option<[u8; 16]>,
}

/// A run in force: its id, how many entries it holds, and whether its chunks are in a
/// file of its own ([`super::files`]) or sled values (runs spilled by state version 5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct MetaRun {
    pub(super) id: u32,
    pub(super) count: u64,
    pub(super) in_file: bool,
}

impl Meta {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = vec![META_FORMAT];
        out.extend_from_slice(&self.folded.to_be_bytes());
        match &self.bound {
            Some(b) => {
                out.push(1);
                out.extend_from_slice(b);
            }
            None => out.push(0),
        }
        out.extend_from_slice(&(self.runs.len() as u32).to_be_bytes());
        for run in &self.runs {
            out.extend_from_slice(&run.id.to_be_bytes());
            out.extend_from_slice(&run.count.to_be_bytes());
            out.push(u8::from(run.in_file));
        }
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Meta> {
        let format = *bytes.first()?;
        if format != META_FORMAT && format != META_FORMAT_V1 {
            return None;
        }
        let u64_at = |at: usize| Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
        let u32_at = |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        let folded = u64_at(1)?;
        let (bound, mut at) = match bytes.get(9)? {
            0 => (None, 10),
            1 => (Some(bytes.get(10..26)?.try_into().ok()?), 26),
            _ => return None,
        };
        let n = u32_at(at)? as usize;
        at += 4;
        let mut runs = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let (id, count) = (u32_at(at)?, u64_at(at + 4)?);
            at += 12;
            let in_file = if format == META_FORMAT {
                at += 1;
                match bytes.get(at - 1)? {
                    0 => false,
                    1 => true,
                    _ => return None,
                }
            } else {
                false
            };
            runs.push(MetaRun { id, count, in_file });
        }
        (at == bytes.len()).then_some(Meta {
            runs,
            folded,
            bound,
        })
    }
}

/// Where the index's values lie in the `keylog` tree, under the source's prefix.
pub(super) fn meta_key(source: &str) -> Vec<u8> {
    prefixed(source, b"m")
}

/// The sequence number of the last page a commit made part of the index. A page is
/// written before its commit and counts only once the commit (which writes this) is
/// applied; pages after it are what a crash cut off, removed when the index loads.
pub fn committed_key(source: &str) -> Vec<u8> {
    prefixed(source, b"s")
}

/// Where part `part` of page `seq` lies (a page is written in values of [`PAGE_PART`]
/// entries).
pub fn page_key(source: &str, seq: u64, part: u16) -> Vec<u8> {
    let mut k = prefixed(source, b"p");
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(&part.to_be_bytes());
    k
}

pub(super) fn chunk_key(source: &str, run: u32, first: u128) -> Vec<u8> {
    let mut k = prefixed(source, b"c");
    k.extend_from_slice(&run.to_be_bytes());
    k.extend_from_slice(&first.to_be_bytes());
    k
}
