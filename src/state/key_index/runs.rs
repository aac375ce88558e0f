//! A run's parts in memory: its filter, its table or chunks; a run being written, read
//! back for a merge, and the pages since the last fold read back for a spill or a dump.

use super::files::{FileWriter, RunFile, RunFiles};
use super::format::{chunk_key, encode_item, item_at, scan, Item};
use super::{Entry, Result, BLOOM_MAX_BITS, CHUNK, FORMAT, NO_ORDER};

/// A run's entries in memory, in hash order: 24 bytes a key (the hash as two `u64`s, so
/// without `u128`'s 16-byte alignment, and the fingerprint), and each key's cursor order
/// beside them only once some entry has one: a source without a cursor keeps no orders
/// (an [`Entry`] in a `Vec` is 48 bytes).
#[derive(Default)]
pub(super) struct Table {
    slots: Vec<Slot>,
    /// Empty while every order is [`NO_ORDER`]; else one per slot.
    orders: Vec<[u8; 16]>,
}

#[derive(Clone, Copy)]
struct Slot {
    hash: [u64; 2],
    fingerprint: u64,
}

fn halves(h: u128) -> [u64; 2] {
    [(h >> 64) as u64, h as u64]
}

impl Table {
    pub(super) fn with_capacity(size: usize) -> Table {
        Table {
            slots: Vec::with_capacity(size),
            orders: Vec::new(),
        }
    }

    /// Entries sorted by hash.
    #[cfg(test)]
    pub(super) fn of_sorted(entries: &[Entry]) -> Table {
        let mut table = Table::with_capacity(entries.len());
        for e in entries {
            table.push(*e);
        }
        table
    }

    /// Adds an entry after those held (entries come in hash order).
    pub(super) fn push(&mut self, e: Entry) {
        if e.order != NO_ORDER && self.orders.is_empty() {
            self.orders.reserve_exact(self.slots.capacity());
            self.orders.resize(self.slots.len(), NO_ORDER);
            // The first entry may be the first with an order: the list is empty still.
            self.orders.push(e.order);
        } else if !self.orders.is_empty() {
            self.orders.push(e.order);
        }
        self.slots.push(Slot {
            hash: halves(e.hash),
            fingerprint: e.fingerprint,
        });
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The bytes its entries take.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>() + self.orders.len() * 16
    }

    /// The entry of a key's hash.
    pub(super) fn find(&self, h: u128) -> Option<Entry> {
        let key = halves(h);
        let i = self.slots.binary_search_by(|s| s.hash.cmp(&key)).ok()?;
        Some(Entry {
            hash: h,
            fingerprint: self.slots[i].fingerprint,
            order: self.orders.get(i).copied().unwrap_or(NO_ORDER),
        })
    }
}

/// A Bloom filter over a run's hashes, blocked: 16 bits a key in blocks of 512 bits, one
/// cache line each. A hash's high half picks its block, its low half one bit in each of
/// the block's eight words, so a lookup or an insert touches one line and divides
/// nothing: a new key is asked of every run's filter, and with its eight probes spread
/// over the whole filter the cache misses and divisions took a tenth of a keyed run's
/// time at 1,000,000 keys. About one false "maybe" in 1,100 (a standard filter of the
/// same size: one in 1,700); a "maybe" reads a chunk of the run.
pub(super) struct Bloom {
    blocks: Vec<Block>,
}

/// 512 bits, aligned to a cache line.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Block([u64; 8]);

/// Odd multipliers, one per word: the top six bits of the low half times each pick the
/// word's bit.
const SALTS: [u64; 8] = [
    0x9e37_79b9_7f4a_7c15,
    0xbf58_476d_1ce4_e5b9,
    0x94d0_49bb_1331_11eb,
    0xd6e8_feb8_6659_fd93,
    0xa076_1d64_78bd_642f,
    0xe703_7ed1_a0b4_28db,
    0x8ebc_6af0_9c88_c6e3,
    0x5899_65cc_7537_4cc3,
];

impl Bloom {
    pub(super) fn sized(count: usize) -> Bloom {
        let bits = count.saturating_mul(16).clamp(512, BLOOM_MAX_BITS);
        Bloom {
            blocks: vec![Block::default(); bits.div_ceil(512)],
        }
    }

    /// The block of `h` and the bit each of its words must have.
    fn probes(&self, h: u128) -> (usize, [u64; 8]) {
        // The high half scaled to the number of blocks (always below it).
        let high = (h >> 64) as u64;
        let block = ((u128::from(high) * self.blocks.len() as u128) >> 64) as usize;
        let low = h as u64;
        let bits = SALTS.map(|salt| 1u64 << (low.wrapping_mul(salt) >> 58));
        (block, bits)
    }

    pub(super) fn insert(&mut self, h: u128) {
        let (at, bits) = self.probes(h);
        if let Some(Block(words)) = self.blocks.get_mut(at) {
            for (word, bit) in words.iter_mut().zip(bits) {
                *word |= bit;
            }
        }
    }

    pub(super) fn may_hold(&self, h: u128) -> bool {
        let (at, bits) = self.probes(h);
        self.blocks.get(at).is_some_and(|Block(words)| {
            let missing = words
                .iter()
                .zip(bits)
                .fold(0, |missing, (word, bit)| missing | (bit & !word));
            missing == 0
        })
    }
}

/// A run: its id, its chunks' first hashes in order, its filter, and its entries when
/// they fit in [`TABLE_MAX`]. Its chunks are in its `file`; without one (a run written
/// by state version 5) they are sled values.
pub(super) struct Run {
    pub(super) id: u32,
    pub(super) fences: Vec<u128>,
    pub(super) bloom: Bloom,
    pub(super) table: Option<Table>,
    pub(super) file: Option<RunFile>,
}

impl Run {
    /// The bytes of chunk `at`, from the run's file (through `open` when the caller
    /// holds it open) or its sled value.
    pub(super) fn chunk_bytes(
        &self,
        tree: &sled::Tree,
        source: &str,
        at: usize,
        open: Option<&std::fs::File>,
    ) -> Result<Option<Vec<u8>>> {
        if let Some(file) = &self.file {
            return (at < file.chunks())
                .then(|| file.read(open, at))
                .transpose();
        }
        let Some(first) = self.fences.get(at) else {
            return Ok(None);
        };
        Ok(tree
            .get(chunk_key(source, self.id, *first))?
            .map(|v| v.to_vec()))
    }
}

/// Page parts: their page's sequence number, their number in it and their greatest
/// order.
pub(super) type Pages = Vec<(u64, u16, [u8; 16])>;

/// The page parts written since the last fold, as they were given to sled (the same
/// bytes, shared), and where each entry lies in them, in the order written: what a fold
/// writes as a run, without reading the parts back or hashing their keys again.
#[derive(Default, Clone)]
pub(super) struct Logged {
    pub(super) pages: Vec<sled::IVec>,
    pub(super) entries: Vec<LoggedAt>,
}

/// Where a logged entry's bytes lie (32 bytes: a fold of [`FOLD_AT`] entries holds one
/// each beside the pages).
#[derive(Clone, Copy)]
pub(super) struct LoggedAt {
    pub(super) hash: u128,
    pub(super) page: u32,
    pub(super) start: u32,
    pub(super) end: u32,
}

impl LoggedAt {
    /// Where `entry` lies in its part (`page` is set when the part is added).
    pub(super) fn of(entry: &Entry, at: std::ops::Range<usize>) -> LoggedAt {
        LoggedAt {
            hash: entry.hash,
            page: 0,
            start: at.start as u32,
            end: at.end as u32,
        }
    }
}

impl Logged {
    /// Adds a part and where its entries lie in it.
    pub(super) fn add(&mut self, part: sled::IVec, entries: impl Iterator<Item = LoggedAt>) {
        let page = self.pages.len() as u32;
        self.pages.push(part);
        self.entries
            .extend(entries.map(|at| LoggedAt { page, ..at }));
    }

    /// Keeps the latest entry of each key (latest page, then latest in its page), in
    /// hash order; in place, without a second list.
    pub(super) fn latest(&mut self) {
        self.entries.sort_unstable_by_key(|at| {
            (
                at.hash,
                std::cmp::Reverse(at.page),
                std::cmp::Reverse(at.start),
            )
        });
        self.entries.dedup_by_key(|at| at.hash);
    }

    /// An entry, found valid by [`scan`] when its page was read (or written by
    /// [`super::encode_parts`]).
    pub(super) fn item(&self, at: &LoggedAt) -> Option<Item<'_>> {
        item_at(
            self.pages.get(at.page as usize)?,
            at.start as usize..at.end as usize,
            at.hash,
        )
    }
}

/// One run read chunk by chunk, for a merge.
#[derive(Default)]
pub(super) struct RunCursor {
    /// The run's file, open while the merge reads it.
    pub(super) open: Option<std::fs::File>,
    pub(super) next_chunk: usize,
    pub(super) bytes: Vec<u8>,
    pub(super) entries: Vec<(Entry, std::ops::Range<usize>)>,
    pub(super) at: usize,
}

impl RunCursor {
    /// The hash of the next entry of `run`, reading its next chunk when this one is done.
    pub(super) fn peek(
        &mut self,
        tree: &sled::Tree,
        source: &str,
        run: &Run,
        what: &str,
    ) -> Result<Option<u128>> {
        while self.at >= self.entries.len() {
            if self.next_chunk >= run.fences.len() {
                return Ok(None);
            }
            if let (None, Some(file)) = (&self.open, &run.file) {
                self.open = Some(file.open_for_reads()?);
            }
            let bytes = run.chunk_bytes(tree, source, self.next_chunk, self.open.as_ref())?;
            self.next_chunk += 1;
            self.entries = match &bytes {
                Some(v) => scan(v, what)?,
                None => Vec::new(),
            };
            self.bytes = bytes.unwrap_or_default();
            self.at = 0;
        }
        Ok(self.entries.get(self.at).map(|(e, _)| e.hash))
    }

    /// The next entry and its bytes.
    pub(super) fn take(&mut self) -> Option<(Entry, Vec<u8>, Vec<u8>)> {
        let (e, range) = self.entries.get(self.at)?.clone();
        self.at += 1;
        let item = item_at(&self.bytes, range, e.hash)?;
        Some((item.entry, item.key.to_vec(), item.cursor.to_vec()))
    }
}

/// A run being written: its chunks written to its file as they fill.
pub(super) struct Writer {
    pub(super) out: FileWriter,
    pub(super) id: u32,
    /// The chunk being filled, as it is written: its entries' bytes after the format.
    pub(super) chunk: Vec<u8>,
    pub(super) first: Option<u128>,
    pub(super) in_chunk: usize,
    pub(super) fences: Vec<u128>,
    pub(super) count: u64,
    pub(super) bound: Option<[u8; 16]>,
    pub(super) bloom: Bloom,
    pub(super) table: Option<Table>,
}

impl Writer {
    pub(super) fn new(
        files: &RunFiles,
        source: &str,
        id: u32,
        bound: Option<[u8; 16]>,
        size: usize,
    ) -> Result<Writer> {
        Ok(Writer {
            out: FileWriter::create(files, source, id)?,
            id,
            chunk: vec![FORMAT],
            first: None,
            in_chunk: 0,
            fences: Vec::new(),
            count: 0,
            bound,
            bloom: Bloom::sized(size),
            table: None,
        })
    }

    /// Keeps the run's entries in memory too (room for `size` made at once: grown by
    /// doubling, the table briefly took twice its size).
    pub(super) fn keep_table(&mut self, keep: bool, size: usize) {
        self.table = keep.then(|| Table::with_capacity(size));
    }

    pub(super) fn push(&mut self, e: Entry, key: &[u8], cursor: &[u8]) -> Result<()> {
        if self.bound.is_some_and(|b| e.order < b) {
            return Ok(());
        }
        self.bloom.insert(e.hash);
        if let Some(t) = &mut self.table {
            t.push(e);
        }
        self.count += 1;
        self.first.get_or_insert(e.hash);
        encode_item(&mut self.chunk, &e, key, cursor);
        self.in_chunk += 1;
        if self.in_chunk == CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    pub(super) fn flush(&mut self) -> Result<()> {
        let Some(first) = self.first.take() else {
            return Ok(());
        };
        self.out.chunk(&self.chunk)?;
        self.chunk.truncate(1);
        self.in_chunk = 0;
        self.fences.push(first);
        Ok(())
    }

    /// The run written and durable, in memory, and how many entries it holds.
    pub(super) fn finish(mut self) -> Result<(Run, u64)> {
        self.flush()?;
        let run = Run {
            id: self.id,
            fences: self.fences,
            bloom: self.bloom,
            table: self.table,
            file: Some(self.out.finish()?),
        };
        Ok((run, self.count))
    }
}
