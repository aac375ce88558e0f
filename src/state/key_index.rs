//! A source's key state (spec §5.2: which keys were collected, with a fingerprint of
//! their fields) as the sled store keeps it since state version 5: compact, written a
//! page at a time, read from memory.
//!
//! An entry is 40 bytes in memory: a 128-bit hash of the key, a 64-bit hash of the
//! record's fields and the first 16 bytes of its cursor's order
//! ([`crate::nodes::cursor_order`]), by which it is pruned. On disk it also carries the
//! key and the cursor's JSON text, for `hamstr dump SOURCE`; they are never read back
//! into memory. sled makes a write of one key cost several microseconds (it copies
//! the tree node it lands in), about as much as everything else hamstr does with a
//! record; so a page's entries are written as one value, a *page*, and read back from a
//! bounded index in memory:
//!
//! - **recent**: the entries of the pages written since the last fold, in a hash map of
//!   at most [`FOLD_AT`] entries (about 5 MiB);
//! - **folded**: everything older, sorted by hash in *chunks* of [`CHUNK`] entries, one
//!   sled value each; in memory only each chunk's first hash, a Bloom filter of at most
//!   [`BLOOM_MAX_BITS`] bits (4 MiB) that answers most lookups of a new key, and the last
//!   few chunks read.
//!
//! When recent fills up, it is *folded*: merged with the chunks into a new generation of
//! chunks (entries below the prune bound are dropped on the way), then one write of the
//! index's meta switches to it, and the old chunks and the folded pages are removed. A
//! crash before the switch leaves the old generation in force; leftovers of either kind
//! are removed when the index loads. A prune drops whole pages whose entries are all
//! below the bound and hides single entries below it, without reading anything.

use super::sled_store::prefixed;
use super::{Result, StateError};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Entries in recent before it is folded: a hash map of 131,072 slots holds 114,688, and
/// a page adds at most a part's writes ([`crate::nodes::extract`] commits in parts of
/// 1,000) before the check.
pub const FOLD_AT: usize = 110_000;
/// Entries per chunk of the folded entries (40 KiB).
pub const CHUNK: usize = 1024;
/// The Bloom filter's size: 10 bits per folded key, at most 32 Mibit (4 MiB).
pub const BLOOM_MAX_BITS: usize = 1 << 25;
/// Chunks kept decoded in memory.
const CACHED_CHUNKS: usize = 4;
/// An entry's fixed part: hash, fingerprint, order.
const HEAD: usize = 40;
/// The first byte of every value this module writes.
const FORMAT: u8 = 1;
/// The order of an entry without a cursor: after every cursor, so never pruned.
pub const NO_ORDER: [u8; 16] = [0xff; 16];

/// One key's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub hash: u128,
    pub fingerprint: u64,
    pub order: [u8; 16],
}

/// An entry with what the disk keeps beside it: the key and its cursor's JSON text
/// (empty without a cursor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Full {
    pub entry: Entry,
    pub key: Vec<u8>,
    pub cursor: Vec<u8>,
}

/// The hash a key is kept under.
pub fn hash_key(key: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key)
}

/// The first 16 bytes of a cursor's order bytes, padded with zeros; [`NO_ORDER`] without
/// one. A padded prefix strictly below another's belongs to a strictly smaller cursor,
/// so a prune by prefixes may keep a key a little longer, never drop one too early.
pub fn order16(order: Option<&[u8]>) -> [u8; 16] {
    let Some(order) = order else {
        return NO_ORDER;
    };
    let mut out = [0u8; 16];
    let n = order.len().min(16);
    out[..n].copy_from_slice(&order[..n]);
    out
}

/// A hasher for keys that are hashes already: their low bits are as good as any.
#[derive(Default)]
pub struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

type Recent = HashMap<u128, (u64, [u8; 16]), BuildHasherDefault<Prehashed>>;

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

/// Reads a value back; `full` also copies each key and cursor text (else left empty).
fn decode_with(bytes: &[u8], what: &str, full: bool) -> Result<Vec<Full>> {
    let damaged = |reason: &str| StateError::Damaged {
        what: what.to_string(),
        reason: reason.to_string(),
    };
    let (format, mut body) = bytes.split_first().ok_or_else(|| damaged("it is empty"))?;
    if *format != FORMAT {
        return Err(damaged("an unknown format"));
    }
    let mut out = Vec::new();
    let cut = || damaged("it is cut short");
    while !body.is_empty() {
        let head = body.get(..HEAD).ok_or_else(cut)?;
        let mut rest = &body[HEAD..];
        let mut parts = [Vec::new(), Vec::new()];
        for part in &mut parts {
            let len = rest.get(..4).ok_or_else(cut)?;
            let len = u32::from_be_bytes(len.try_into().map_err(|_| cut())?) as usize;
            let bytes = rest.get(4..4 + len).ok_or_else(cut)?;
            if full {
                *part = bytes.to_vec();
            }
            rest = &rest[4 + len..];
        }
        let mut order = [0u8; 16];
        order.copy_from_slice(&head[24..]);
        let [key, cursor] = parts;
        out.push(Full {
            entry: Entry {
                hash: u128::from_be_bytes(head[..16].try_into().map_err(|_| cut())?),
                fingerprint: u64::from_be_bytes(head[16..24].try_into().map_err(|_| cut())?),
                order,
            },
            key,
            cursor,
        });
        body = rest;
    }
    Ok(out)
}

fn decode(bytes: &[u8], what: &str) -> Result<Vec<Entry>> {
    Ok(decode_with(bytes, what, false)?
        .into_iter()
        .map(|f| f.entry)
        .collect())
}

/// The index's own record: which generation of chunks is in force, the last page folded
/// into it, how many entries it holds, and the last prune bound.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Meta {
    generation: u32,
    folded: u64,
    count: u64,
    bound: Option<[u8; 16]>,
}

impl Meta {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        out.extend_from_slice(&self.generation.to_be_bytes());
        out.extend_from_slice(&self.folded.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        if let Some(b) = &self.bound {
            out.extend_from_slice(b);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Meta> {
        if bytes.first() != Some(&FORMAT) {
            return None;
        }
        let n = |at: usize| Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
        Some(Meta {
            generation: u32::from_be_bytes(bytes.get(1..5)?.try_into().ok()?),
            folded: n(5)?,
            count: n(13)?,
            bound: bytes.get(21..37).and_then(|b| b.try_into().ok()),
        })
    }
}

/// Where the index's values lie in the `keylog` tree, under the source's prefix.
fn meta_key(source: &str) -> Vec<u8> {
    prefixed(source, b"m")
}

pub fn page_key(source: &str, seq: u64) -> Vec<u8> {
    let mut k = prefixed(source, b"p");
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn chunk_key(source: &str, generation: u32, first: u128) -> Vec<u8> {
    let mut k = prefixed(source, b"c");
    k.extend_from_slice(&generation.to_be_bytes());
    k.extend_from_slice(&first.to_be_bytes());
    k
}

/// A Bloom filter over the folded hashes: six probes from the hash's two halves.
struct Bloom {
    bits: Vec<u64>,
}

impl Bloom {
    fn sized(count: usize) -> Bloom {
        let bits = count.saturating_mul(10).clamp(64, BLOOM_MAX_BITS);
        Bloom {
            bits: vec![0; bits.div_ceil(64)],
        }
    }
    fn probes(&self, h: u128) -> [usize; 6] {
        let m = (self.bits.len() * 64) as u64;
        let (a, b) = (h as u64, ((h >> 64) as u64) | 1);
        std::array::from_fn(|i| (a.wrapping_add((i as u64).wrapping_mul(b)) % m) as usize)
    }
    fn insert(&mut self, h: u128) {
        for p in self.probes(h) {
            self.bits[p / 64] |= 1 << (p % 64);
        }
    }
    fn may_hold(&self, h: u128) -> bool {
        self.probes(h)
            .iter()
            .all(|&p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }
}

/// One source's key state.
pub struct KeyIndex {
    source: String,
    meta: Meta,
    recent: Recent,
    /// The pages written since the last fold: their sequence number and greatest order.
    pages: Vec<(u64, [u8; 16])>,
    /// How many entries those pages hold (a key written twice counts twice).
    logged: usize,
    next_seq: u64,
    /// The first hash of each chunk in force, in order.
    fences: Vec<u128>,
    bloom: Bloom,
    cache: VecDeque<(usize, Vec<Entry>)>,
}

impl KeyIndex {
    /// Reads a source's index: the chunks' first hashes and filter, the pages since the
    /// last fold (folding as it goes, so memory stays bounded); removes what an
    /// interrupted fold left.
    pub fn load(tree: &sled::Tree, source: &str) -> Result<KeyIndex> {
        let meta = match tree.get(meta_key(source))? {
            Some(v) => Meta::decode(&v).ok_or_else(|| StateError::Damaged {
                what: format!("the key index of `{source}`"),
                reason: "its record does not decode".into(),
            })?,
            None => Meta::default(),
        };
        let mut index = KeyIndex {
            source: source.to_string(),
            meta,
            recent: Recent::default(),
            pages: Vec::new(),
            logged: 0,
            next_seq: meta.folded + 1,
            fences: Vec::new(),
            bloom: Bloom::sized(meta.count as usize),
            cache: VecDeque::new(),
        };
        let chunks = prefixed(source, b"c");
        let mut stale = sled::Batch::default();
        for kv in tree.scan_prefix(&chunks) {
            let (k, v) = kv?;
            let rest = &k[chunks.len()..];
            let (Some(generation), Some(first)) = (rest.get(..4), rest.get(4..20)) else {
                stale.remove(k);
                continue;
            };
            if u32::from_be_bytes(generation.try_into().unwrap_or_default()) != meta.generation {
                stale.remove(k);
                continue;
            }
            index
                .fences
                .push(u128::from_be_bytes(first.try_into().unwrap_or_default()));
            for e in decode(&v, &index.what())? {
                index.bloom.insert(e.hash);
            }
        }
        tree.apply_batch(stale)?;
        let pages = prefixed(source, b"p");
        let mut stale = sled::Batch::default();
        for kv in tree.scan_prefix(&pages) {
            let (k, v) = kv?;
            let seq = k
                .get(pages.len()..)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if seq <= meta.folded {
                stale.remove(k);
                continue;
            }
            let entries = decode(&v, &index.what())?;
            index.next_seq = seq + 1;
            index.add(seq, &entries);
            if index.logged >= FOLD_AT {
                index.fold(tree)?;
            }
        }
        tree.apply_batch(stale)?;
        Ok(index)
    }

    fn what(&self) -> String {
        format!("the key index of `{}`", self.source)
    }

    fn below(&self, order: &[u8; 16]) -> bool {
        self.meta.bound.is_some_and(|b| *order < b)
    }

    /// The fingerprint of a key's hash, unless it is unknown or was pruned.
    pub fn get(&mut self, tree: &sled::Tree, h: u128) -> Result<Option<u64>> {
        if let Some((fp, order)) = self.recent.get(&h) {
            return Ok((!self.below(order)).then_some(*fp));
        }
        if self.fences.is_empty() || !self.bloom.may_hold(h) {
            return Ok(None);
        }
        let at = self.fences.partition_point(|f| *f <= h);
        let Some(at) = at.checked_sub(1) else {
            return Ok(None);
        };
        let pos = match self.cache.iter().position(|(i, _)| *i == at) {
            Some(p) => p,
            None => {
                let key = chunk_key(&self.source, self.meta.generation, self.fences[at]);
                let entries = match tree.get(key)? {
                    Some(v) => decode(&v, &self.what())?,
                    None => Vec::new(),
                };
                if self.cache.len() == CACHED_CHUNKS {
                    self.cache.pop_front();
                }
                self.cache.push_back((at, entries));
                self.cache.len() - 1
            }
        };
        let chunk = &self.cache[pos].1;
        Ok(chunk
            .binary_search_by(|e| e.hash.cmp(&h))
            .ok()
            .map(|i| chunk[i])
            .filter(|e| !self.below(&e.order))
            .map(|e| e.fingerprint))
    }

    /// A page of entries as the value to write, with its sequence number.
    pub fn page(&mut self, entries: &[Full]) -> (u64, Vec<u8>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        (seq, encode_page(entries))
    }

    fn add(&mut self, seq: u64, entries: &[Entry]) {
        let mut top = [0u8; 16];
        for e in entries {
            top = top.max(e.order);
            self.recent.insert(e.hash, (e.fingerprint, e.order));
        }
        self.logged += entries.len();
        self.pages.push((seq, top));
    }

    /// Takes in a page once it is written; folds when the pages since the last fold
    /// hold [`FOLD_AT`] entries (so recent holds at most that many).
    pub fn written(&mut self, tree: &sled::Tree, seq: u64, entries: &[Full]) -> Result<()> {
        let entries: Vec<Entry> = entries.iter().map(|f| f.entry).collect();
        self.add(seq, &entries);
        if self.logged >= FOLD_AT {
            self.fold(tree)?;
        }
        Ok(())
    }

    /// The entries of the pages since the last fold, with their keys and cursors, the
    /// latest of each key only, in hash order.
    fn logged_entries(&self, tree: &sled::Tree) -> Result<Vec<Full>> {
        let mut latest: HashMap<u128, Full> = HashMap::with_capacity(self.recent.len());
        for (seq, _) in &self.pages {
            if let Some(v) = tree.get(page_key(&self.source, *seq))? {
                for f in decode_with(&v, &self.what(), true)? {
                    latest.insert(f.entry.hash, f);
                }
            }
        }
        let mut out: Vec<Full> = latest.into_values().collect();
        out.sort_unstable_by_key(|f| f.entry.hash);
        Ok(out)
    }

    /// Merges the pages since the last fold into a new generation of chunks, switches
    /// to it, removes the old.
    fn fold(&mut self, tree: &sled::Tree) -> Result<()> {
        let fresh = self.logged_entries(tree)?;
        let generation = self.meta.generation.wrapping_add(1);
        let mut out = Fold {
            tree,
            source: &self.source,
            generation,
            chunk: Vec::with_capacity(CHUNK),
            fences: Vec::new(),
            hashes: 0,
            bound: self.meta.bound,
            bloom: Bloom::sized(self.meta.count as usize + fresh.len()),
        };
        let mut fresh = fresh.into_iter().peekable();
        for &first in &self.fences.clone() {
            let old = match tree.get(chunk_key(&self.source, self.meta.generation, first))? {
                Some(v) => decode_with(&v, &self.what(), true)?,
                None => Vec::new(),
            };
            for e in old {
                while let Some(f) = fresh.next_if(|f| f.entry.hash < e.entry.hash) {
                    out.push(f)?;
                }
                match fresh.next_if(|f| f.entry.hash == e.entry.hash) {
                    Some(f) => out.push(f)?,
                    None => out.push(e)?,
                }
            }
        }
        for f in fresh {
            out.push(f)?;
        }
        out.flush()?;
        let (fences, count, bloom) = (out.fences, out.hashes, out.bloom);
        let folded = self.pages.last().map_or(self.meta.folded, |(s, _)| *s);
        let meta = Meta {
            generation,
            folded,
            count,
            bound: self.meta.bound,
        };
        // The switch: one write.
        tree.insert(meta_key(&self.source), meta.encode())?;
        let mut gone = sled::Batch::default();
        for first in &self.fences {
            gone.remove(chunk_key(&self.source, self.meta.generation, *first));
        }
        for (seq, _) in &self.pages {
            gone.remove(page_key(&self.source, *seq));
        }
        tree.apply_batch(gone)?;
        self.meta = meta;
        self.fences = fences;
        self.bloom = bloom;
        self.recent.clear();
        self.pages.clear();
        self.logged = 0;
        self.cache.clear();
        Ok(())
    }

    /// Forgets the keys whose cursor order is below `bound`: pages wholly below it are
    /// removed, recent entries below it dropped, folded ones hidden until the next fold
    /// leaves them out. Returns how many entries left memory or the store.
    pub fn prune(&mut self, tree: &sled::Tree, bound: &[u8]) -> Result<usize> {
        let bound = order16(Some(bound));
        if self.meta.bound.is_some_and(|b| b >= bound) {
            return Ok(0);
        }
        self.meta.bound = Some(bound);
        tree.insert(meta_key(&self.source), self.meta.encode())?;
        let before = self.recent.len();
        self.recent.retain(|_, (_, order)| *order >= bound);
        let mut gone = sled::Batch::default();
        let source = &self.source;
        let mut dropped = 0;
        self.pages.retain(|(seq, top)| {
            let keep = *top >= bound;
            if !keep {
                gone.remove(page_key(source, *seq));
                dropped += 1;
            }
            keep
        });
        // A page's entry count is not kept: until the next fold, `logged` may count
        // the entries of dropped pages (a fold comes a little early, no harm).
        let _ = dropped;
        tree.apply_batch(gone)?;
        Ok(before - self.recent.len())
    }

    /// How many keys the index holds (not counting those below the prune bound).
    pub fn count(&mut self, tree: &sled::Tree) -> Result<usize> {
        Ok(self.entries(tree)?.len())
    }

    /// Every key held, with its entry and cursor text, in key order (not those below
    /// the prune bound): what `hamstr dump SOURCE` shows.
    pub fn entries(&mut self, tree: &sled::Tree) -> Result<Vec<Full>> {
        let logged = self.logged_entries(tree)?;
        let mut out: Vec<Full> = Vec::new();
        for first in self.fences.clone() {
            if let Some(v) = tree.get(chunk_key(&self.source, self.meta.generation, first))? {
                out.extend(
                    decode_with(&v, &self.what(), true)?
                        .into_iter()
                        .filter(|e| {
                            logged
                                .binary_search_by_key(&e.entry.hash, |f| f.entry.hash)
                                .is_err()
                        }),
                );
            }
        }
        out.extend(logged);
        out.retain(|f| !self.below(&f.entry.order));
        out.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

/// The output of a fold: chunks of the new generation, written as they fill.
struct Fold<'a> {
    tree: &'a sled::Tree,
    source: &'a str,
    generation: u32,
    chunk: Vec<Full>,
    fences: Vec<u128>,
    hashes: u64,
    bound: Option<[u8; 16]>,
    bloom: Bloom,
}

impl Fold<'_> {
    fn push(&mut self, f: Full) -> Result<()> {
        if self.bound.is_some_and(|b| f.entry.order < b) {
            return Ok(());
        }
        self.bloom.insert(f.entry.hash);
        self.hashes += 1;
        self.chunk.push(f);
        if self.chunk.len() == CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let Some(first) = self.chunk.first().map(|f| f.entry.hash) else {
            return Ok(());
        };
        self.tree.insert(
            chunk_key(self.source, self.generation, first),
            encode(self.chunk.iter()),
        )?;
        self.chunk.clear();
        self.fences.push(first);
        Ok(())
    }
}

#[cfg(test)]
#[path = "key_index_tests.rs"]
mod tests;
