//! Folds, spills and merges: how runs are made, written and merged.

use super::format::{chunk_key, meta_key, remove_all, MetaRun};
use super::runs::{Run, RunCursor, Table, Writer};
use super::{KeyIndex, Result, MAX_RUNS};

impl KeyIndex {
    pub(super) fn next_run_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// Makes the pages since the last fold a run: written as a file, added to the meta
    /// with one write, their key log retired; its table kept in memory (the oldest tables
    /// go when they pass `table_max`), and the runs merged when there are too many.
    pub(super) fn fold(&mut self, tree: &sled::Tree) -> Result<()> {
        let parts = std::mem::take(&mut self.pages);
        let mut logged = std::mem::take(&mut self.pending);
        self.logged = 0;
        if parts.is_empty() {
            self.recent.clear();
            return Ok(());
        }
        logged.latest();
        let size = logged.entries.len();
        let id = self.next_run_id();
        // Entries below the prune bound are left out, as they left recent.
        let mut out = Writer::new(&self.files, &self.source, id, self.meta.bound, size)?;
        out.keep_table(true, size);
        for at in &logged.entries {
            if let Some(item) = logged.item(at) {
                out.push(item.entry, item.key, item.cursor)?;
            }
        }
        // The list's room is kept for the entries of the next fold.
        logged.pages.clear();
        logged.entries.clear();
        self.pending = logged;
        let (run, count) = out.finish()?;
        let mut meta = self.meta.clone();
        meta.runs.push(MetaRun {
            id: run.id,
            count,
            in_file: true,
        });
        meta.folded = parts
            .last()
            .map_or(meta.folded, |(s, _, _)| *s)
            .max(meta.folded);
        // The switch: one write. The key log goes once it is durable; the next page
        // starts another.
        tree.insert(meta_key(&self.source), meta.encode())?;
        if let Some(log) = self.log.take() {
            self.files.retire(log.path().to_path_buf());
        }
        self.meta = meta;
        self.runs.push(run);
        self.recent.clear();
        while tables_len(&self.runs) > self.table_max {
            match self.runs.iter_mut().find(|r| r.table.is_some()) {
                Some(r) => r.table = None,
                None => break,
            }
        }
        if self.runs.len() > MAX_RUNS {
            self.merge(tree)?;
        }
        Ok(())
    }

    /// Merges every run into one, newest entry of each key first, leaving out
    /// what is below the prune bound; then switches to it and removes the old runs.
    pub(super) fn merge(&mut self, tree: &sled::Tree) -> Result<()> {
        let total: u64 = self.meta.runs.iter().map(|m| m.count).sum();
        let id = self.next_run_id();
        let mut out = Writer::new(
            &self.files,
            &self.source,
            id,
            self.meta.bound,
            total as usize,
        )?;
        out.keep_table(total as usize <= self.table_max, total as usize);
        let what = self.what();
        // A cursor per run over its chunks; the heap yields the smallest hash, and of
        // equal hashes the newest run's (the larger position) first.
        let runs = &self.runs;
        let mut cursors: Vec<RunCursor> = runs.iter().map(|_| RunCursor::default()).collect();
        let mut heap = std::collections::BinaryHeap::new();
        for (i, c) in cursors.iter_mut().enumerate() {
            if let Some(h) = c.peek(tree, &self.source, &runs[i], &what)? {
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
            if let Some(h) = c.peek(tree, &self.source, &runs[i], &what)? {
                heap.push(std::cmp::Reverse((h, std::cmp::Reverse(i))));
            }
        }
        let (run, count) = out.finish()?;
        let mut meta = self.meta.clone();
        meta.runs = vec![MetaRun {
            id: run.id,
            count,
            in_file: true,
        }];
        tree.insert(meta_key(&self.source), meta.encode())?;
        // The old runs' sled values go in the same order as the switch; their files
        // only once it is durable.
        let mut gone: Vec<Vec<u8>> = Vec::new();
        for r in &self.runs {
            match &r.file {
                Some(file) => self.files.retire(file.path().to_path_buf()),
                None => {
                    for first in &r.fences {
                        gone.push(chunk_key(&self.source, r.id, *first));
                    }
                }
            }
        }
        remove_all(tree, gone)?;
        self.meta = meta;
        self.runs = vec![run];
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
