//! A source's key state (spec §5.2: which keys were collected, with a fingerprint of
//! their fields) as the sled store keeps it since state version 5: compact, written a
//! page at a time, read from memory.
//!
//! An entry is a 128-bit hash of the key, a 64-bit hash of the record's fields and the
//! first 16 bytes of its cursor's order ([`crate::nodes::cursor_order`]), by which it is
//! pruned: 24 bytes in a run's table without a cursor, 40 with one ([`runs::Table`]). On
//! disk it also carries the key and the cursor's JSON text, for `hamstr dump SOURCE`;
//! they are never read back into memory. sled makes a write of one key cost several
//! microseconds (it copies the tree node it lands in), about as much as everything else
//! hamstr does with a record, and keeps in memory much of what it is given to write; so
//! a page's entries are appended, as one *page*, to a file of the source's own (its key
//! log, [`log`]; sled values before state version 7), and read from a bounded index in
//! memory:
//!
//! - **recent**: the entries of the pages written since the last fold, in a hash map of
//!   at most [`FOLD_AT`] entries (about 1.5 MiB);
//! - **runs**: everything older, each fold's latest entry of each key sorted by hash, in
//!   a file of its own outside sled ([`files`]), with a Bloom filter (16 bits a key)
//!   that answers most lookups of a new key without a search. Memory keeps each run's
//!   filter and where its chunks of [`CHUNK`] entries start, the newest runs' entries
//!   whole as tables while they hold at most [`TABLE_MAX`] (a key seen again is then
//!   answered without a read), and the last few chunks read.
//!
//! A page counts once the commit that writes its number ([`committed_key`]) does. When
//! the pages since the last fold hold [`FOLD_AT`] entries, they are *folded*: written as
//! a run's file from what memory kept of them, made durable, then one write of the
//! index's meta names the run, and their key log is retired (removed after the next
//! flush). Only when there are more than [`MAX_RUNS`] runs are they merged into one
//! (which drops the entries below the prune bound), so a key is rewritten a few times
//! over its life, not at every fold. A crash before a meta write leaves the runs it
//! names in force; the files of other runs are removed when the index loads (after the
//! next flush: see [`files`]). Loading folds the committed pages the key logs hold at
//! once, so every process appends to a log of its own. A prune drops from memory whole
//! pages whose entries are all below the bound and hides single entries below it,
//! without reading anything.
//!
//! So what memory holds grows with the keys only by the filters and chunk starts (about
//! 2.25 bytes a key: 4.5 MiB at 2,000,000 keys); the rest is bounded: recent's map, at
//! most [`TABLE_MAX`] entries of tables (6 MiB without a cursor), [`CACHED_CHUNKS`]
//! chunks. Runs of state version 5 (chunks as sled values) are read where they are and
//! written as a file by the next merge.

mod files;
mod fold;
mod format;
mod log;
mod runs;

use super::sled_store::prefixed;
use super::{Result, StateError};
use files::RunFile;
pub use files::{remove_retired, RunFiles};
#[cfg(test)]
use format::encode_page;
pub use format::{committed_key, page_key, Write};
use format::{decode, item_at, meta_key, remove_all, scan, Item, Meta, FORMAT};
use log::KeyLog;
use runs::{Bloom, Logged, LoggedAt, Pages, Run, Table};

use serde_json::Value as Json;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Entries in recent before it is folded: a hash map of 32,768 slots (1.5 MiB, made once)
/// holds 28,672, and a page adds at most a part's writes ([`crate::nodes::extract`]
/// commits in parts of 1,000) before the check. Until a fold the parts of its pages are
/// kept (their bytes and where each entry lies), so this bounds them too.
pub const FOLD_AT: usize = 27_000;
/// The slots recent is made with (see [`FOLD_AT`]).
const RECENT_ROOM: usize = FOLD_AT + 1_000;
/// Entries per chunk of a run (about 1 KB): a lookup that the filter lets through
/// reads one chunk.
pub const CHUNK: usize = 32;
/// Entries per part of a page (about 3.5 KB), a record of the key log each. In state
/// version 6 a part was a sled value, and sled keeps the nodes of large values in memory
/// past its cache size (a sled-sink run of 200,000 keys peaked at 118 MiB with a page of
/// 500 keys in one value, 110 MiB with values of 64).
pub const PAGE_PART: usize = 64;
/// Runs before they are merged into one: a new key is looked up in every run's filter.
pub const MAX_RUNS: usize = 16;
/// Folded entries a source keeps whole in memory, the newest runs' (6 MiB without a
/// cursor, 10 MiB with one): a key seen again is then answered without a read. Older
/// runs are read a chunk at a time.
pub const TABLE_MAX: usize = 262_144;
/// A run's Bloom filter: 16 bits per key, at most 32 Mibit (4 MiB).
pub const BLOOM_MAX_BITS: usize = 1 << 25;
/// Chunks kept decoded in memory.
const CACHED_CHUNKS: usize = 4;
/// Pages made and not yet written that are kept (see [`KeyIndex::page`]): one is the
/// rule, a source's pages being committed one at a time.
const STAGED_MAX: usize = 4;
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

impl Entry {
    /// A key's entry: its hash, its fingerprint and the order bytes of its cursor (if
    /// any).
    pub fn of(hash: u128, fingerprint: u64, order: Option<&[u8]>) -> Entry {
        Entry {
            hash,
            fingerprint,
            order: order16(order),
        }
    }
}

/// A cursor as the disk keeps it beside its key: its JSON text, empty without one.
pub fn cursor_text(cursor: Option<&Json>) -> Vec<u8> {
    cursor
        .map(|c| serde_json::to_vec(c).unwrap_or_default())
        .unwrap_or_default()
}

impl Full {
    /// A key's entry: its fingerprint, the order bytes of its cursor (if any) and the
    /// cursor itself.
    pub fn of(key: &[u8], fingerprint: u64, order: Option<&[u8]>, cursor: Option<&Json>) -> Full {
        Full {
            entry: Entry::of(hash_key(key), fingerprint, order),
            key: key.to_vec(),
            cursor: cursor_text(cursor),
        }
    }

    /// The entry with its key and cursor borrowed.
    pub fn keyed(&self) -> Keyed<'_> {
        Keyed {
            entry: self.entry,
            key: &self.key,
            cursor: &self.cursor,
        }
    }
}

/// An entry with its key and cursor text, borrowed: what a page is written from.
#[derive(Debug, Clone, Copy)]
pub struct Keyed<'a> {
    pub entry: Entry,
    pub key: &'a [u8],
    pub cursor: &'a [u8],
}

/// Page `seq` of `source` as sled values, its parts of [`PAGE_PART`] entries: how state
/// version 6 kept the pages since the last fold (still read when an index loads), and
/// how a store of version 4 has its keys moved.
pub fn page_writes(source: &str, seq: u64, entries: &[Full]) -> Vec<Write> {
    let keyed: Vec<Keyed> = entries.iter().map(Full::keyed).collect();
    encode_parts(&keyed)
        .into_iter()
        .enumerate()
        .map(|(part, (bytes, _))| {
            let part = u16::try_from(part).unwrap_or(u16::MAX);
            (page_key(source, seq, part), bytes)
        })
        .collect()
}

/// A page's entries as its parts of [`PAGE_PART`] entries, each with where its entries
/// lie in it.
fn encode_parts(entries: &[Keyed]) -> Vec<Part> {
    entries
        .chunks(PAGE_PART)
        .map(|e| {
            // Room for every entry: its fingerprint, order (a length and up to 16
            // bytes), and key and cursor, each after a length of up to 5 bytes.
            let room = e
                .iter()
                .map(|f| {
                    35usize
                        .saturating_add(f.key.len())
                        .saturating_add(f.cursor.len())
                })
                .fold(1usize, usize::saturating_add);
            let mut bytes = Vec::with_capacity(room);
            bytes.push(FORMAT);
            let mut at = Vec::with_capacity(e.len());
            for f in e {
                let start = bytes.len();
                format::encode_item(&mut bytes, &f.entry, f.key, f.cursor);
                at.push(LoggedAt::of(&f.entry, start..bytes.len()));
            }
            (bytes.into(), at)
        })
        .collect()
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

/// A page as the key logs hold it: the log it was read from, and its parts' bytes.
type LoggedPage = (u32, Vec<(u16, Vec<u8>)>);

/// A page part's bytes, and where its entries lie in them.
type Part = (sled::IVec, Vec<LoggedAt>);

/// One source's key state.
pub struct KeyIndex {
    source: String,
    meta: Meta,
    recent: Recent,
    /// The parts of the pages written since the last fold.
    pages: Pages,
    /// Their bytes and where their entries lie: what the next fold writes.
    pending: Logged,
    /// Pages made by [`KeyIndex::page`] and not yet [`KeyIndex::written`]: their
    /// sequence numbers and parts (a commit that failed leaves one, dropped later).
    staged: VecDeque<(u64, Vec<Part>)>,
    /// How many entries those pages hold (a key written twice counts twice).
    logged: usize,
    next_seq: u64,
    /// The runs in force, oldest first.
    runs: Vec<Run>,
    /// Chunks read lately: (run id, chunk's first hash) and its entries.
    cache: VecDeque<((u32, u128), Vec<Entry>)>,
    /// The most entries the runs' tables hold ([`TABLE_MAX`]; tests set less).
    table_max: usize,
    /// Where spilled runs are written.
    files: RunFiles,
    /// The id the next run or key log written takes: past every run's in force and
    /// every file's there was when the index loaded (a file retired then may still be
    /// there).
    next_id: u32,
    /// Where the pages since the last fold are appended ([`log`]); made by the first.
    log: Option<KeyLog>,
}

impl KeyIndex {
    /// Reads a source's index: the runs' first hashes and filters, the pages since the
    /// last fold (folding as it goes, so memory stays bounded); removes what an
    /// interrupted fold or merge left.
    pub fn load(tree: &sled::Tree, files: &RunFiles, source: &str) -> Result<KeyIndex> {
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
            .map(|m| {
                let count = m.count as usize;
                // The newest runs first, while they fit.
                let table = (count <= budget).then(|| {
                    budget -= count;
                    Table::with_capacity(count)
                });
                Run {
                    id: m.id,
                    fences: Vec::new(),
                    bloom: Bloom::sized(count),
                    table,
                    file: None,
                }
            })
            .collect();
        runs.reverse();
        // Runs in files: each read once, whole.
        for (run, m) in runs.iter_mut().zip(&meta.runs) {
            if !m.in_file {
                continue;
            }
            let Run {
                fences,
                bloom,
                table,
                ..
            } = run;
            let file = RunFile::open(files.path(source, m.id), |chunk| {
                let entries = decode(chunk, &what)?;
                let first = entries.first().ok_or_else(|| StateError::Damaged {
                    what: what.clone(),
                    reason: "a chunk of its run holds no entry".into(),
                })?;
                fences.push(first.hash);
                for e in entries {
                    bloom.insert(e.hash);
                    if let Some(t) = table.as_mut() {
                        t.push(e);
                    }
                }
                Ok(())
            })?;
            run.file = Some(file);
        }
        let mut next_id = meta.runs.iter().map(|m| m.id).max().unwrap_or(0);
        for (id, path) in files.present(source)? {
            next_id = next_id.max(id);
            if !meta.runs.iter().any(|m| m.in_file && m.id == id) {
                files.retire(path);
            }
        }
        let logs = files.logs(source)?;
        next_id = logs.iter().map(|(id, _)| *id).fold(next_id, u32::max);
        // Runs of state version 5: their chunks are sled values.
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
            let run = id.and_then(|id| {
                runs.iter_mut()
                    .zip(&meta.runs)
                    .find(|(_, m)| m.id == id && !m.in_file)
                    .map(|(r, _)| r)
            });
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
            pending: Logged::default(),
            staged: VecDeque::new(),
            logged: 0,
            runs,
            cache: VecDeque::new(),
            table_max: TABLE_MAX,
            files: files.clone(),
            next_id: next_id.wrapping_add(1).max(1),
            log: None,
        };
        // Pages of state version 6 and before: sled values, each removed once read.
        let pages = prefixed(source, b"p");
        let mut sled_pages: Vec<sled::IVec> = Vec::new();
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
            let keep = part.filter(|_| seq > index.meta.folded && seq <= committed);
            sled_pages.push(k);
            if let Some(part) = keep {
                index.take_in(tree, seq, part, v)?;
            }
        }
        // The key logs: a page number in several is read from the newest.
        let mut logged: std::collections::BTreeMap<u64, LoggedPage> = Default::default();
        for (id, path) in &logs {
            for (seq, part, bytes) in log::read(path)? {
                if seq <= index.meta.folded || seq > committed {
                    continue;
                }
                let page = logged.entry(seq).or_insert((*id, Vec::new()));
                if page.0 != *id {
                    *page = (*id, Vec::new());
                }
                page.1.push((part, bytes));
            }
        }
        for (seq, (_, parts)) in logged {
            for (part, bytes) in parts {
                index.take_in(tree, seq, part, bytes.into())?;
            }
        }
        // What was read becomes a run, so that the files and values it was read from
        // can go (once the run's meta is durable) and new pages go to a file of their own.
        index.fold(tree)?;
        remove_all(tree, sled_pages)?;
        for (_, path) in logs {
            files.retire(path);
        }
        Ok(index)
    }

    /// Takes in a page part read from the store as it loads, folding when the pages
    /// hold [`FOLD_AT`] entries.
    fn take_in(&mut self, tree: &sled::Tree, seq: u64, part: u16, v: sled::IVec) -> Result<()> {
        let entries = scan(&v, &self.what())?;
        self.add(seq, part, entries.iter().map(|(e, _)| *e));
        self.pending
            .add(v, entries.into_iter().map(|(e, at)| LoggedAt::of(&e, at)));
        if self.logged >= FOLD_AT {
            self.fold(tree)?;
        }
        Ok(())
    }

    fn what(&self) -> String {
        format!("the key index of `{}`", self.source)
    }

    fn below(&self, order: &[u8; 16]) -> bool {
        self.meta.bound.is_some_and(|b| *order < b)
    }

    /// The entries of chunk `at` of run `r`, from the cache or the run's file.
    fn chunk(&mut self, tree: &sled::Tree, r: usize, at: usize) -> Result<&[Entry]> {
        let run = &self.runs[r];
        let name = (run.id, run.fences[at]);
        let pos = match self.cache.iter().position(|(n, _)| *n == name) {
            Some(p) => p,
            None => {
                let entries = match run.chunk_bytes(tree, &self.source, at, None)? {
                    Some(v) => decode(&v, &self.what())?,
                    None => Vec::new(),
                };
                if self.cache.len() == CACHED_CHUNKS {
                    self.cache.pop_front();
                }
                self.cache.push_back((name, entries));
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
                match table.find(h) {
                    Some(e) => return Ok((!self.below(&e.order)).then_some(e.fingerprint)),
                    None => continue,
                }
            }
            let Some(at) = run.fences.partition_point(|f| *f <= h).checked_sub(1) else {
                continue;
            };
            let found = {
                let chunk = self.chunk(tree, r, at)?;
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

    /// Appends a page of entries to the key log; returns its number, which the commit
    /// then writes ([`committed_key`]): until it does, the page does not count.
    pub fn page(&mut self, entries: &[Keyed]) -> Result<u64> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let parts: Vec<Part> = encode_parts(entries);
        let log = match &mut self.log {
            Some(log) => log,
            None => {
                let id = self.next_run_id();
                self.log
                    .insert(KeyLog::create(&self.files, &self.source, id)?)
            }
        };
        log.append(seq, parts.iter().map(|(bytes, _)| bytes.as_ref()))?;
        // A commit that failed never says its page was written; a few are kept.
        if self.staged.len() == STAGED_MAX {
            self.staged.pop_front();
        }
        self.staged.push_back((seq, parts));
        Ok(seq)
    }

    /// Makes the pages appended so far durable: before the store flushes, so that a
    /// commit it makes durable names no page that is not.
    pub fn sync_log(&mut self) -> Result<()> {
        match &mut self.log {
            Some(log) => log.sync(),
            None => Ok(()),
        }
    }

    fn add(&mut self, seq: u64, part: u16, entries: impl Iterator<Item = Entry>) {
        let mut top = [0u8; 16];
        for e in entries {
            top = top.max(e.order);
            self.recent.insert(e.hash, (e.fingerprint, e.order));
            self.logged += 1;
        }
        self.pages.push((seq, part, top));
    }

    /// Whether taking in `keys` more keys folds (see [`KeyIndex::written`]).
    pub fn folds_within(&self, keys: usize) -> bool {
        self.logged.saturating_add(keys) >= FOLD_AT
    }

    /// Takes in a page once it is written; folds when the pages since the last fold
    /// hold [`FOLD_AT`] entries (so recent holds at most that many).
    pub fn written(&mut self, tree: &sled::Tree, seq: u64, entries: &[Keyed]) -> Result<()> {
        let staged = match self.staged.iter().position(|(s, _)| *s == seq) {
            Some(at) => self.staged.remove(at).map(|(_, parts)| parts),
            None => None,
        };
        // Dropped from `staged` (commits failed in between): made again.
        let parts = staged.unwrap_or_else(|| encode_parts(entries));
        for (part, e) in entries.chunks(PAGE_PART).enumerate() {
            let part = u16::try_from(part).unwrap_or(u16::MAX);
            self.add(seq, part, e.iter().map(|f| f.entry));
        }
        for (bytes, at) in parts {
            self.pending.add(bytes, at.into_iter());
        }
        if self.logged >= FOLD_AT {
            self.fold(tree)?;
        }
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
        // Its pages stay in the key log (a reload hides their entries again, by the
        // bound in the meta).
        self.pages.retain(|(_, _, top)| *top >= bound);
        // A page's entry count is not kept: until the next fold, `logged` may still
        // count the entries of dropped pages (a fold then comes a little early).
        Ok(before - self.recent.len())
    }

    /// Calls `each` with the latest entry of every key held and its bytes (key and
    /// cursor text), newest first: the pages since the last fold, then the runs from
    /// the newest. Entries below the prune bound are left out.
    fn each_latest(&mut self, tree: &sled::Tree, mut each: impl FnMut(Item)) -> Result<()> {
        let mut logged = self.pending.clone();
        logged.latest();
        let mut seen: std::collections::HashSet<u128, BuildHasherDefault<Prehashed>> =
            Default::default();
        let mut visit = |item: Option<Item>| {
            if let Some(item) = item {
                if seen.insert(item.entry.hash) && !self.below(&item.entry.order) {
                    each(item);
                }
            }
        };
        for at in &logged.entries {
            visit(logged.item(at));
        }
        for r in self.runs.iter().rev() {
            let open = r.file.as_ref().map(|f| f.open_for_reads()).transpose()?;
            for at in 0..r.fences.len() {
                if let Some(v) = r.chunk_bytes(tree, &self.source, at, open.as_ref())? {
                    for (e, range) in scan(&v, &self.what())? {
                        visit(item_at(&v, range, e.hash));
                    }
                }
            }
        }
        Ok(())
    }

    /// How many keys the index holds (not counting those below the prune bound).
    pub fn count(&mut self, tree: &sled::Tree) -> Result<usize> {
        let mut n = 0;
        self.each_latest(tree, |_| n += 1)?;
        Ok(n)
    }

    /// Every key held, with its entry and cursor text, in key order (not those below
    /// the prune bound): what `hamstr dump SOURCE` shows.
    pub fn entries(&mut self, tree: &sled::Tree) -> Result<Vec<Full>> {
        let mut out: Vec<Full> = Vec::new();
        self.each_latest(tree, |item| out.push(item.full()))?;
        out.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
