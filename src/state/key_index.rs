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
//! - **runs**: everything older, each fold's latest entry of each key sorted by hash,
//!   with a Bloom filter (16 bits a key) that answers most lookups of a new key without
//!   a search. A run is first held in memory only, as a table, its pages staying in the
//!   store as what it is made of; while the tables hold at most [`TABLE_MAX`] entries
//!   nothing more is written (a source of 200,000 keys writes each key once). Past that
//!   the oldest run in memory is *spilled*: written in *chunks* of [`CHUNK`] entries, one
//!   sled value each, then one write of the index's meta adds the run and its pages are
//!   removed. Of a spilled run memory keeps each chunk's first hash and the filter, and
//!   the last few chunks read.
//!
//! When the pages since the last fold hold [`FOLD_AT`] entries, they are *folded* into a
//! run in memory, from the hash map, without reading anything. Spilled runs are written
//! once; only when there are more than [`MAX_RUNS`] are they merged into one (which
//! drops the entries below the prune bound), so a key is rewritten a few times over its
//! life, not at every fold. A crash before a meta write leaves the runs it names in
//! force; chunks of other runs and spilled pages are removed when the index loads, and
//! the pages after them are folded again. A prune drops whole pages whose entries are
//! all below the bound and hides single entries below it, without reading anything.

use super::sled_store::prefixed;
use super::{Result, StateError};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Entries in recent before it is folded: a hash map of 32,768 slots (1.5 MiB, made once)
/// holds 28,672, and a page adds at most a part's writes ([`crate::nodes::extract`]
/// commits in parts of 1,000) before the check. A spill reads its run's pages back, so
/// a run's size is the most a spill holds at once.
pub const FOLD_AT: usize = 27_000;
/// The slots recent is made with (see [`FOLD_AT`]).
const RECENT_ROOM: usize = FOLD_AT + 1_000;
/// Entries per chunk of a run (about 2 KB): a lookup that the filter lets through
/// reads one chunk.
pub const CHUNK: usize = 32;
/// Entries per value a page is written in (about 3.5 KB): sled keeps the nodes of large
/// values in memory past its cache size (a sled-sink run of 200,000 keys peaked at 118 MiB
/// with a page of 500 keys in one value, 110 MiB with values of 64).
pub const PAGE_PART: usize = 64;
/// Runs before they are merged into one: a new key is looked up in every run's filter.
pub const MAX_RUNS: usize = 16;
/// Folded entries a source keeps whole in memory (10 MiB): a key seen again is then
/// answered without a read, and runs held in memory only write nothing more. Past it
/// runs are spilled and read a chunk at a time.
pub const TABLE_MAX: usize = 262_144;
/// A run's Bloom filter: 16 bits per key, at most 32 Mibit (4 MiB).
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

/// The entries of a value, each with where its bytes (fixed part, key, cursor) lie.
fn scan(bytes: &[u8], what: &str) -> Result<Vec<(Entry, std::ops::Range<usize>)>> {
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
fn head(bytes: &[u8]) -> Entry {
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

fn decode(bytes: &[u8], what: &str) -> Result<Vec<Entry>> {
    Ok(scan(bytes, what)?.into_iter().map(|(e, _)| e).collect())
}

/// An entry's key and cursor text from its bytes (as [`scan`] found them).
fn full(entry: Entry, raw: &[u8]) -> Full {
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
fn remove_all<K: AsRef<[u8]>>(tree: &sled::Tree, keys: Vec<K>) -> Result<()> {
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
struct Meta {
    runs: Vec<(u32, u64)>,
    folded: u64,
    bound: Option<[u8; 16]>,
}

impl Meta {
    fn encode(&self) -> Vec<u8> {
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

    fn decode(bytes: &[u8]) -> Option<Meta> {
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
fn meta_key(source: &str) -> Vec<u8> {
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

fn chunk_key(source: &str, run: u32, first: u128) -> Vec<u8> {
    let mut k = prefixed(source, b"c");
    k.extend_from_slice(&run.to_be_bytes());
    k.extend_from_slice(&first.to_be_bytes());
    k
}

/// A Bloom filter over a run's hashes: 16 bits a key, eight probes from the hash's two
/// halves, about one false "maybe" in 1,700. A "maybe" reads a chunk, and every chunk
/// sled reads stays in its memory a while: with 10 bits a key, a first run of 2,000,000
/// keys (a dozen runs asked per new key) read enough chunks to hold about 100 MB.
struct Bloom {
    bits: Vec<u64>,
}

impl Bloom {
    fn sized(count: usize) -> Bloom {
        let bits = count.saturating_mul(16).clamp(64, BLOOM_MAX_BITS);
        Bloom {
            bits: vec![0; bits.div_ceil(64)],
        }
    }
    fn probes(&self, h: u128) -> [usize; 8] {
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

/// A run: its id, its chunks' first hashes in order, its filter, and its entries when
/// they fit in [`TABLE_MAX`]. A run held in memory only has no id or chunks; its table
/// and the pages it was folded from are `held`.
struct Run {
    id: u32,
    fences: Vec<u128>,
    bloom: Bloom,
    table: Option<Vec<Entry>>,
    held: Option<Pages>,
}

/// Page parts: their page's sequence number, their number in it and their greatest
/// order.
type Pages = Vec<(u64, u16, [u8; 16])>;

/// One source's key state.
pub struct KeyIndex {
    source: String,
    meta: Meta,
    recent: Recent,
    /// The parts of the pages written since the last fold.
    pages: Pages,
    /// How many entries those pages hold (a key written twice counts twice).
    logged: usize,
    next_seq: u64,
    /// The runs in force, oldest first.
    runs: Vec<Run>,
    /// Chunks read lately: (run id, chunk's first hash) and its entries.
    cache: VecDeque<((u32, u128), Vec<Entry>)>,
    /// The most entries the runs' tables hold ([`TABLE_MAX`]; tests set less).
    table_max: usize,
}

impl KeyIndex {
    /// Reads a source's index: the runs' first hashes and filters, the pages since the
    /// last fold (folding as it goes, so memory stays bounded); removes what an
    /// interrupted fold or merge left.
    pub fn load(tree: &sled::Tree, source: &str) -> Result<KeyIndex> {
        let what = format!("the key index of `{source}`");
        let meta = match tree.get(meta_key(source))? {
            Some(v) => Meta::decode(&v).ok_or_else(|| StateError::Damaged {
                what: what.clone(),
                reason: "its record does not decode".into(),
            })?,
            None => Meta::default(),
        };
        let committed = match tree.get(committed_key(source))? {
            Some(v) => {
                u64::from_be_bytes(v.as_ref().try_into().map_err(|_| StateError::Damaged {
                    what: what.clone(),
                    reason: "its last page number is not 8 bytes".into(),
                })?)
            }
            None => 0,
        };
        let mut budget = TABLE_MAX;
        let mut runs: Vec<Run> = meta
            .runs
            .iter()
            .rev()
            .map(|(id, count)| {
                let count = *count as usize;
                // The newest runs first, while they fit.
                let table = (count <= budget).then(|| {
                    budget -= count;
                    Vec::with_capacity(count)
                });
                Run {
                    id: *id,
                    fences: Vec::new(),
                    bloom: Bloom::sized(count),
                    table,
                    held: None,
                }
            })
            .collect();
        runs.reverse();
        let chunks = prefixed(source, b"c");
        let mut stale: Vec<sled::IVec> = Vec::new();
        for kv in tree.scan_prefix(&chunks) {
            let (k, v) = kv?;
            let rest = &k[chunks.len()..];
            let id = rest
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes);
            let first = rest
                .get(4..20)
                .and_then(|b| b.try_into().ok())
                .map(u128::from_be_bytes);
            let run = id.and_then(|id| runs.iter_mut().find(|r| r.id == id));
            let (Some(run), Some(first)) = (run, first) else {
                stale.push(k);
                continue;
            };
            run.fences.push(first);
            for e in decode(&v, &what)? {
                run.bloom.insert(e.hash);
                if let Some(t) = &mut run.table {
                    t.push(e);
                }
            }
        }
        remove_all(tree, stale)?;
        let mut index = KeyIndex {
            source: source.to_string(),
            next_seq: meta.folded.max(committed) + 1,
            meta,
            recent: Recent::with_capacity_and_hasher(RECENT_ROOM, Default::default()),
            pages: Vec::new(),
            logged: 0,
            runs,
            cache: VecDeque::new(),
            table_max: TABLE_MAX,
        };
        let pages = prefixed(source, b"p");
        let mut stale: Vec<sled::IVec> = Vec::new();
        for kv in tree.scan_prefix(&pages) {
            let (k, v) = kv?;
            let at = k.get(pages.len()..).unwrap_or_default();
            let seq = at
                .get(..8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let part = at
                .get(8..10)
                .and_then(|s| s.try_into().ok())
                .map(u16::from_be_bytes);
            let Some(part) = part.filter(|_| seq > index.meta.folded && seq <= committed) else {
                stale.push(k);
                continue;
            };
            let entries = decode(&v, &what)?;
            index.add(seq, part, &entries);
            if index.logged >= FOLD_AT {
                index.fold(tree)?;
            }
        }
        remove_all(tree, stale)?;
        Ok(index)
    }

    fn what(&self) -> String {
        format!("the key index of `{}`", self.source)
    }

    fn below(&self, order: &[u8; 16]) -> bool {
        self.meta.bound.is_some_and(|b| *order < b)
    }

    /// The entries of one chunk, from the cache or the store.
    fn chunk(&mut self, tree: &sled::Tree, run: u32, first: u128) -> Result<&[Entry]> {
        let pos = match self.cache.iter().position(|(at, _)| *at == (run, first)) {
            Some(p) => p,
            None => {
                let entries = match tree.get(chunk_key(&self.source, run, first))? {
                    Some(v) => decode(&v, &self.what())?,
                    None => Vec::new(),
                };
                if self.cache.len() == CACHED_CHUNKS {
                    self.cache.pop_front();
                }
                self.cache.push_back(((run, first), entries));
                self.cache.len() - 1
            }
        };
        Ok(&self.cache[pos].1)
    }

    /// The fingerprint of a key's hash, unless it is unknown or was pruned.
    pub fn get(&mut self, tree: &sled::Tree, h: u128) -> Result<Option<u64>> {
        if let Some((fp, order)) = self.recent.get(&h) {
            return Ok((!self.below(order)).then_some(*fp));
        }
        // Newest run first: a key's latest entry is in the newest run that holds it.
        for r in (0..self.runs.len()).rev() {
            let run = &self.runs[r];
            if !run.bloom.may_hold(h) {
                continue;
            }
            if let Some(table) = &run.table {
                match table.binary_search_by(|e| e.hash.cmp(&h)) {
                    Ok(i) => {
                        let e = table[i];
                        return Ok((!self.below(&e.order)).then_some(e.fingerprint));
                    }
                    Err(_) => continue,
                }
            }
            let Some(at) = run.fences.partition_point(|f| *f <= h).checked_sub(1) else {
                continue;
            };
            let (id, first) = (run.id, run.fences[at]);
            let found = {
                let chunk = self.chunk(tree, id, first)?;
                chunk
                    .binary_search_by(|e| e.hash.cmp(&h))
                    .ok()
                    .map(|i| chunk[i])
            };
            if let Some(e) = found {
                return Ok((!self.below(&e.order)).then_some(e.fingerprint));
            }
        }
        Ok(None)
    }

    /// A page of entries as the writes to make, with its sequence number.
    pub fn page(&mut self, entries: &[Full]) -> (u64, Vec<Write>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let writes = entries
            .chunks(PAGE_PART)
            .enumerate()
            .map(|(part, e)| {
                let part = u16::try_from(part).unwrap_or(u16::MAX);
                (page_key(&self.source, seq, part), encode_page(e))
            })
            .collect();
        (seq, writes)
    }

    fn add(&mut self, seq: u64, part: u16, entries: &[Entry]) {
        let mut top = [0u8; 16];
        for e in entries {
            top = top.max(e.order);
            self.recent.insert(e.hash, (e.fingerprint, e.order));
        }
        self.logged += entries.len();
        self.pages.push((seq, part, top));
    }

    /// Takes in a page once it is written; folds when the pages since the last fold
    /// hold [`FOLD_AT`] entries (so recent holds at most that many).
    pub fn written(&mut self, tree: &sled::Tree, seq: u64, entries: &[Full]) -> Result<()> {
        for (part, e) in entries.chunks(PAGE_PART).enumerate() {
            let part = u16::try_from(part).unwrap_or(u16::MAX);
            let e: Vec<Entry> = e.iter().map(|f| f.entry).collect();
            self.add(seq, part, &e);
        }
        if self.logged >= FOLD_AT {
            self.fold(tree)?;
        }
        Ok(())
    }

    /// The pages since the last fold, and their entries (the latest of each key only)
    /// in hash order, each with its page and where its bytes lie: a fold copies those
    /// bytes without taking them apart.
    fn logged(&self, tree: &sled::Tree, parts: &Pages) -> Result<Logged> {
        let mut pages = Vec::with_capacity(parts.len());
        let mut entries = Vec::new();
        for (seq, part, _) in parts {
            if let Some(v) = tree.get(page_key(&self.source, *seq, *part))? {
                let page = pages.len() as u32;
                for (e, range) in scan(&v, &self.what())? {
                    entries.push(LoggedAt {
                        hash: e.hash,
                        page,
                        start: range.start as u32,
                        end: range.end as u32,
                    });
                }
                pages.push(v);
            }
        }
        // Of a key's entries the last written (latest page, then latest in its page)
        // sorts first and is the one kept; in place, without a second list.
        entries.sort_unstable_by_key(|at| {
            (
                at.hash,
                std::cmp::Reverse(at.page),
                std::cmp::Reverse(at.start),
            )
        });
        entries.dedup_by_key(|at| at.hash);
        Ok(Logged { pages, entries })
    }

    fn next_run_id(&self) -> u32 {
        self.meta
            .runs
            .iter()
            .map(|(id, _)| *id)
            .max()
            .map_or(1, |m| m.wrapping_add(1))
    }

    /// Makes the pages since the last fold a run held in memory, its entries taken from
    /// recent; then makes room ([`KeyIndex::make_room`]).
    fn fold(&mut self, tree: &sled::Tree) -> Result<()> {
        let mut table: Vec<Entry> = self
            .recent
            .drain()
            .map(|(hash, (fingerprint, order))| Entry {
                hash,
                fingerprint,
                order,
            })
            .collect();
        table.sort_unstable_by_key(|e| e.hash);
        let mut bloom = Bloom::sized(table.len());
        for e in &table {
            bloom.insert(e.hash);
        }
        self.runs.push(Run {
            id: 0,
            fences: Vec::new(),
            bloom,
            table: Some(table),
            held: Some(std::mem::take(&mut self.pages)),
        });
        self.logged = 0;
        self.make_room(tree)
    }

    /// Keeps the tables within `table_max` entries: drops the tables of spilled runs,
    /// oldest first, then spills the oldest runs held in memory; merges the spilled runs
    /// when there are too many.
    fn make_room(&mut self, tree: &sled::Tree) -> Result<()> {
        loop {
            let held: usize = self
                .runs
                .iter()
                .filter_map(|r| r.table.as_ref().map(Vec::len))
                .sum();
            if held <= self.table_max {
                break;
            }
            if let Some(r) = self
                .runs
                .iter_mut()
                .find(|r| r.held.is_none() && r.table.is_some())
            {
                r.table = None;
                continue;
            }
            match self.runs.iter().position(|r| r.held.is_some()) {
                Some(at) => self.spill(tree, at)?,
                None => break,
            }
        }
        if self.runs.iter().filter(|r| r.held.is_none()).count() > MAX_RUNS {
            self.merge(tree)?;
        }
        Ok(())
    }

    /// Writes the run held in memory at `at` (the oldest such) as chunks, adds it to the
    /// meta with one write, removes its pages; it keeps no table.
    fn spill(&mut self, tree: &sled::Tree, at: usize) -> Result<()> {
        let parts = self.runs[at].held.take().unwrap_or_default();
        let logged = self.logged(tree, &parts)?;
        let size = logged.entries.len();
        let mut out = Writer::new(tree, &self.source, self.next_run_id(), None, size);
        for at in &logged.entries {
            let bytes = logged.bytes(at);
            out.push(head(bytes), bytes)?;
        }
        let (run, count) = out.finish()?;
        let mut meta = self.meta.clone();
        meta.runs.push((run.id, count));
        meta.folded = parts
            .last()
            .map_or(meta.folded, |(s, _, _)| *s)
            .max(meta.folded);
        // The switch: one write.
        tree.insert(meta_key(&self.source), meta.encode())?;
        let gone: Vec<Vec<u8>> = parts
            .iter()
            .map(|(seq, part, _)| page_key(&self.source, *seq, *part))
            .collect();
        remove_all(tree, gone)?;
        self.meta = meta;
        self.runs[at] = run;
        Ok(())
    }

    /// Merges every spilled run into one, newest entry of each key first, leaving out
    /// what is below the prune bound; then switches to it and removes the old runs.
    fn merge(&mut self, tree: &sled::Tree) -> Result<()> {
        let total: u64 = self.meta.runs.iter().map(|(_, c)| *c).sum();
        // The spilled runs are the oldest: runs are spilled oldest first.
        let spilled = self.runs.iter().take_while(|r| r.held.is_none()).count();
        let in_memory: usize = self.runs[spilled..]
            .iter()
            .filter_map(|r| r.table.as_ref().map(Vec::len))
            .sum();
        let mut out = Writer::new(
            tree,
            &self.source,
            self.next_run_id(),
            self.meta.bound,
            total as usize,
        );
        out.keep_table(
            total as usize <= self.table_max.saturating_sub(in_memory),
            total as usize,
        );
        let what = self.what();
        // A cursor per run over its chunks; the heap yields the smallest hash, and of
        // equal hashes the newest run's (the larger position) first.
        let mut cursors: Vec<RunCursor> = self.runs[..spilled]
            .iter()
            .map(|r| RunCursor {
                id: r.id,
                fences: r.fences.clone(),
                next_chunk: 0,
                bytes: None,
                entries: Vec::new(),
                at: 0,
            })
            .collect();
        let mut heap = std::collections::BinaryHeap::new();
        for (i, c) in cursors.iter_mut().enumerate() {
            if let Some(h) = c.peek(tree, &self.source, &what)? {
                heap.push(std::cmp::Reverse((h, std::cmp::Reverse(i))));
            }
        }
        let mut last: Option<u128> = None;
        while let Some(std::cmp::Reverse((h, std::cmp::Reverse(i)))) = heap.pop() {
            let c = &mut cursors[i];
            if let Some((e, bytes)) = c.take() {
                if last != Some(h) {
                    out.push(e, &bytes)?;
                    last = Some(h);
                }
            }
            if let Some(h) = c.peek(tree, &self.source, &what)? {
                heap.push(std::cmp::Reverse((h, std::cmp::Reverse(i))));
            }
        }
        let (run, count) = out.finish()?;
        let mut meta = self.meta.clone();
        meta.runs = vec![(run.id, count)];
        tree.insert(meta_key(&self.source), meta.encode())?;
        let mut gone: Vec<Vec<u8>> = Vec::new();
        for r in &self.runs[..spilled] {
            for first in &r.fences {
                gone.push(chunk_key(&self.source, r.id, *first));
            }
        }
        remove_all(tree, gone)?;
        self.meta = meta;
        self.runs.splice(..spilled, [run]);
        self.cache.clear();
        Ok(())
    }

    /// Forgets the keys whose cursor order is below `bound`: pages wholly below it are
    /// removed, recent entries below it dropped, those in runs hidden until the next
    /// merge leaves them out. Returns how many entries left memory.
    pub fn prune(&mut self, tree: &sled::Tree, bound: &[u8]) -> Result<usize> {
        let bound = order16(Some(bound));
        if self.meta.bound.is_some_and(|b| b >= bound) {
            return Ok(0);
        }
        self.meta.bound = Some(bound);
        tree.insert(meta_key(&self.source), self.meta.encode())?;
        let before = self.recent.len();
        self.recent.retain(|_, (_, order)| *order >= bound);
        let mut gone: Vec<Vec<u8>> = Vec::new();
        let source = &self.source;
        let held = self.runs.iter_mut().filter_map(|r| r.held.as_mut());
        for pages in std::iter::once(&mut self.pages).chain(held) {
            pages.retain(|(seq, part, top)| {
                let keep = *top >= bound;
                if !keep {
                    gone.push(page_key(source, *seq, *part));
                }
                keep
            });
        }
        // A page's entry count is not kept: until the next fold, `logged` may still
        // count the entries of dropped pages (a fold then comes a little early).
        remove_all(tree, gone)?;
        Ok(before - self.recent.len())
    }

    /// Calls `each` with the latest entry of every key held and its bytes (key and
    /// cursor text), newest first: the pages since the last fold, then the runs from
    /// the newest. Entries below the prune bound are left out.
    fn each_latest(&mut self, tree: &sled::Tree, mut each: impl FnMut(Entry, &[u8])) -> Result<()> {
        let logged = self.logged(tree, &self.pages)?;
        let mut seen: std::collections::HashSet<u128, BuildHasherDefault<Prehashed>> =
            Default::default();
        let mut visit = |e: Entry, bytes: &[u8]| {
            if seen.insert(e.hash) && !self.below(&e.order) {
                each(e, bytes);
            }
        };
        for at in &logged.entries {
            let bytes = logged.bytes(at);
            visit(head(bytes), bytes);
        }
        for r in self.runs.iter().rev() {
            if let Some(parts) = &r.held {
                let logged = self.logged(tree, parts)?;
                for at in &logged.entries {
                    let bytes = logged.bytes(at);
                    visit(head(bytes), bytes);
                }
            }
            for first in &r.fences {
                if let Some(v) = tree.get(chunk_key(&self.source, r.id, *first))? {
                    for (e, range) in scan(&v, &self.what())? {
                        visit(e, &v[range]);
                    }
                }
            }
        }
        Ok(())
    }

    /// How many keys the index holds (not counting those below the prune bound).
    pub fn count(&mut self, tree: &sled::Tree) -> Result<usize> {
        let mut n = 0;
        self.each_latest(tree, |_, _| n += 1)?;
        Ok(n)
    }

    /// Every key held, with its entry and cursor text, in key order (not those below
    /// the prune bound): what `hamstr dump SOURCE` shows.
    pub fn entries(&mut self, tree: &sled::Tree) -> Result<Vec<Full>> {
        let mut out: Vec<Full> = Vec::new();
        self.each_latest(tree, |e, bytes| out.push(full(e, bytes)))?;
        out.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

/// The pages since the last fold, read for a fold or a dump.
struct Logged {
    pages: Vec<sled::IVec>,
    entries: Vec<LoggedAt>,
}

/// Where a logged entry's bytes lie (32 bytes: a fold of [`FOLD_AT`] entries holds one
/// each beside the pages).
struct LoggedAt {
    hash: u128,
    page: u32,
    start: u32,
    end: u32,
}

impl Logged {
    /// An entry's bytes, found valid by [`scan`] when the page was read.
    fn bytes(&self, at: &LoggedAt) -> &[u8] {
        &self.pages[at.page as usize][at.start as usize..at.end as usize]
    }
}

/// One run read chunk by chunk, for a merge.
struct RunCursor {
    id: u32,
    fences: Vec<u128>,
    next_chunk: usize,
    bytes: Option<sled::IVec>,
    entries: Vec<(Entry, std::ops::Range<usize>)>,
    at: usize,
}

impl RunCursor {
    /// The hash of the next entry, reading the next chunk when this one is done.
    fn peek(&mut self, tree: &sled::Tree, source: &str, what: &str) -> Result<Option<u128>> {
        while self.at >= self.entries.len() {
            let Some(first) = self.fences.get(self.next_chunk) else {
                return Ok(None);
            };
            self.next_chunk += 1;
            let v = tree.get(chunk_key(source, self.id, *first))?;
            self.entries = match &v {
                Some(v) => scan(v, what)?,
                None => Vec::new(),
            };
            self.bytes = v;
            self.at = 0;
        }
        Ok(self.entries.get(self.at).map(|(e, _)| e.hash))
    }

    /// The next entry and its bytes.
    fn take(&mut self) -> Option<(Entry, Vec<u8>)> {
        let (e, range) = self.entries.get(self.at)?.clone();
        self.at += 1;
        let bytes = self.bytes.as_ref()?.get(range)?.to_vec();
        Some((e, bytes))
    }
}

/// A run being written: its chunks written as they fill.
struct Writer<'a> {
    tree: &'a sled::Tree,
    source: &'a str,
    id: u32,
    /// The chunk being filled, as it is written: its entries' bytes after the format.
    chunk: Vec<u8>,
    first: Option<u128>,
    in_chunk: usize,
    fences: Vec<u128>,
    count: u64,
    bound: Option<[u8; 16]>,
    bloom: Bloom,
    table: Option<Vec<Entry>>,
}

impl<'a> Writer<'a> {
    fn new(
        tree: &'a sled::Tree,
        source: &'a str,
        id: u32,
        bound: Option<[u8; 16]>,
        size: usize,
    ) -> Writer<'a> {
        Writer {
            tree,
            source,
            id,
            chunk: vec![FORMAT],
            first: None,
            in_chunk: 0,
            fences: Vec::new(),
            count: 0,
            bound,
            bloom: Bloom::sized(size),
            table: None,
        }
    }

    /// Keeps the run's entries in memory too (room for `size` made at once: grown by
    /// doubling, the table briefly took twice its size).
    fn keep_table(&mut self, keep: bool, size: usize) {
        self.table = keep.then(|| Vec::with_capacity(size));
    }

    fn push(&mut self, e: Entry, bytes: &[u8]) -> Result<()> {
        if self.bound.is_some_and(|b| e.order < b) {
            return Ok(());
        }
        self.bloom.insert(e.hash);
        if let Some(t) = &mut self.table {
            t.push(e);
        }
        self.count += 1;
        self.first.get_or_insert(e.hash);
        self.chunk.extend_from_slice(bytes);
        self.in_chunk += 1;
        if self.in_chunk == CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let Some(first) = self.first.take() else {
            return Ok(());
        };
        self.tree
            .insert(chunk_key(self.source, self.id, first), &self.chunk[..])?;
        self.chunk.truncate(1);
        self.in_chunk = 0;
        self.fences.push(first);
        Ok(())
    }

    /// The run written, in memory, and how many entries it holds.
    fn finish(mut self) -> Result<(Run, u64)> {
        self.flush()?;
        let run = Run {
            id: self.id,
            fences: self.fences,
            bloom: self.bloom,
            table: self.table,
            held: None,
        };
        Ok((run, self.count))
    }
}

#[cfg(test)]
#[path = "key_index_tests.rs"]
mod tests;
