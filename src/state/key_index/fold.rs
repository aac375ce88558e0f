//! Folds, spills and merges: how runs are made, written and merged.

use super::format::{chunk_key, meta_key, page_key, remove_all};
use super::runs::{Bloom, Run, RunCursor, Table, Writer};
use super::{Entry, KeyIndex, Result, MAX_RUNS};

impl KeyIndex {
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
    pub(super) fn fold(&mut self, tree: &sled::Tree) -> Result<()> {
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
            table: Some(Table::of_sorted(&table)),
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
            if tables_len(&self.runs) <= self.table_max {
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
            if let Some(item) = logged.item(at) {
                out.push(item.entry, item.key, item.cursor)?;
            }
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
    pub(super) fn merge(&mut self, tree: &sled::Tree) -> Result<()> {
        let total: u64 = self.meta.runs.iter().map(|(_, c)| *c).sum();
        // The spilled runs are the oldest: runs are spilled oldest first.
        let spilled = self.runs.iter().take_while(|r| r.held.is_none()).count();
        let in_memory = tables_len(&self.runs[spilled..]);
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
            if let Some((e, key, cursor)) = c.take() {
                if last != Some(h) {
                    out.push(e, &key, &cursor)?;
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
}

/// How many entries the tables of `runs` hold.
fn tables_len(runs: &[Run]) -> usize {
    runs.iter()
        .filter_map(|r| r.table.as_ref().map(Table::len))
        .sum()
}
