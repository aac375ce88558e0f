//! How the key index lies in the `keylog` tree: the values (pages, chunks, the meta) and
//! their keys.

use super::{Entry, Full, Result, StateError, FORMAT, HEAD};
use crate::state::sled_store::prefixed;

/// Entries as one value: after the format byte, each entry's fixed part, then its key
/// and cursor text, each after its length (u32).
fn encode<'a>(entries: impl Iterator<Item = &'a Full>) -> Vec<u8> {
    let mut out = vec![FORMAT];
    for f in entries {
        let e = &f.entry;
        out.extend_from_slice(&e.hash.to_be_bytes());
        out.extend_from_slice(&e.fingerprint.to_be_bytes());
        out.extend_from_slice(&e.order);
        for part in [&f.key, &f.cursor] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

/// A page of entries as it is written.
pub fn encode_page(entries: &[Full]) -> Vec<u8> {
    encode(entries.iter())
}

/// The entries of a value, each with where its bytes (fixed part, key, cursor) lie.
pub(super) fn scan(bytes: &[u8], what: &str) -> Result<Vec<(Entry, std::ops::Range<usize>)>> {
    let damaged = |reason: &str| StateError::Damaged {
        what: what.to_string(),
        reason: reason.to_string(),
    };
    if bytes.first() != Some(&FORMAT) {
        return Err(damaged(if bytes.is_empty() {
            "it is empty"
        } else {
            "an unknown format"
        }));
    }
    let cut = || damaged("it is cut short");
    let mut out = Vec::new();
    let mut at = 1;
    while at < bytes.len() {
        let start = at;
        let entry = bytes.get(at..at + HEAD).map(head).ok_or_else(cut)?;
        at += HEAD;
        for _ in 0..2 {
            let len = bytes.get(at..at + 4).ok_or_else(cut)?;
            let len = u32::from_be_bytes(len.try_into().map_err(|_| cut())?) as usize;
            at = at.checked_add(4 + len).ok_or_else(cut)?;
            if at > bytes.len() {
                return Err(cut());
            }
        }
        out.push((entry, start..at));
    }
    Ok(out)
}

/// The entry an entry's bytes start with: at least [`HEAD`] bytes, as [`scan`] found them.
pub(super) fn head(bytes: &[u8]) -> Entry {
    let mut hash = [0u8; 16];
    let mut fingerprint = [0u8; 8];
    let mut order = [0u8; 16];
    hash.copy_from_slice(&bytes[..16]);
    fingerprint.copy_from_slice(&bytes[16..24]);
    order.copy_from_slice(&bytes[24..HEAD]);
    Entry {
        hash: u128::from_be_bytes(hash),
        fingerprint: u64::from_be_bytes(fingerprint),
        order,
    }
}

pub(super) fn decode(bytes: &[u8], what: &str) -> Result<Vec<Entry>> {
    Ok(scan(bytes, what)?.into_iter().map(|(e, _)| e).collect())
}

/// An entry's key and cursor text from its bytes (as [`scan`] found them).
pub(super) fn full(entry: Entry, raw: &[u8]) -> Full {
    let part = |at: usize| -> (Vec<u8>, usize) {
        let len = raw
            .get(at..at + 4)
            .and_then(|l| l.try_into().ok())
            .map_or(0, |l| u32::from_be_bytes(l) as usize);
        let bytes = raw.get(at + 4..at + 4 + len).unwrap_or_default();
        (bytes.to_vec(), at + 4 + len)
    };
    let (key, next) = part(HEAD);
    let (cursor, _) = part(next);
    Full { entry, key, cursor }
}

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
pub type Write = (Vec<u8>, Vec<u8>);

/// The index's own record: the runs in force (oldest first, with their entry counts),
/// the last page folded into them, and the last prune bound.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Meta {
    pub(super) runs: Vec<(u32, u64)>,
    pub(super) folded: u64,
    pub(super) bound: Option<[u8; 16]>,
}

impl Meta {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        out.extend_from_slice(&self.folded.to_be_bytes());
        match &self.bound {
            Some(b) => {
                out.push(1);
                out.extend_from_slice(b);
            }
            None => out.push(0),
        }
        out.extend_from_slice(&(self.runs.len() as u32).to_be_bytes());
        for (id, count) in &self.runs {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&count.to_be_bytes());
        }
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Meta> {
        if bytes.first() != Some(&FORMAT) {
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
            runs.push((u32_at(at)?, u64_at(at + 4)?));
            at += 12;
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
