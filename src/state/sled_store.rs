//! The sled-backed [`StateStore`]: one tree per kind shared by every source (each entry
//! under its source's prefix), a page's commit as one recorded unit
//! ([`commit_log`](super::commit_log)), and whether the store still keeps what it is given.

use super::commit_log::{self, Op};
use super::files::{clear_unfinished_snapshots, file_id, is_locked, FileId};
use super::key_index::{self, hash_key, Entry, KeyIndex, Keyed};
use super::{
    KeyEntry, PageCommit, Prune, Result, SourceMeta, StateError, StateStore, STATE_VERSION,
};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// The sled-backed store in a data directory.
pub struct SledStore {
    db: sled::Db,
    /// The data directory, as it was given.
    dir: PathBuf,
    /// The `db` file sled locks, as opened: when the path names another file or none,
    /// the folder was removed or replaced under the run (and its lock with it).
    lock_file: FileId,
    /// The trees opened so far, by kind and name: a key lookup per record would
    /// otherwise name its tree anew (a `format!`) and look it up in sled's own map.
    trees: RwLock<HashMap<String, HashMap<String, sled::Tree>>>,
    /// The trees every source shares (state version 4), by [`Shared`].
    shared: [sled::Tree; 5],
    /// Each source's key index, read on first use ([`key_index`]).
    key_indexes: Mutex<HashMap<String, Arc<Mutex<KeyIndex>>>>,
    /// Where the key indexes' spilled runs lie (`state/runs`), and those to remove once
    /// a flush has made their replacement durable.
    run_files: key_index::RunFiles,
    /// Set while a flush has run past [`FLUSH_LIMIT`] and not returned.
    stuck: Arc<std::sync::atomic::AtomicBool>,
}

/// How long a flush may wait for sled's writes to reach the disk before the store is
/// taken as failed. sled 0.34 writes a value larger than a quarter of its 512 KiB
/// segment to a file of its own; when that write fails (a full disk), a flush waits
/// for it forever. Bounded, the event that waits is answered 503 instead of never
/// (`full_disk::a_large_event_on_a_full_disk_is_refused_not_held`).
pub const FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The kinds of per-source state, each one tree shared by every source since state
/// version 4 (before: one tree per kind and source). sled keeps a root table of its
/// trees and rewrites it whole whenever a tree is created, so a tree per source made
/// the first run of 50,000 tenants quadratic.
#[derive(Clone, Copy)]
enum Shared {
    /// A source's key fingerprints, by key (state version 4; moved to `KeyLog` since).
    Keys = 0,
    /// A source's cursor index: the cursor's order bytes and the key, to the key (state
    /// version 4; no longer kept since).
    KeyIdx = 1,
    /// A source's rejected records, by key.
    Rejected = 2,
    /// A child source's requests, by parent key.
    Queue = 3,
    /// A source's key index since state version 5 ([`key_index`]).
    KeyLog = 4,
}

const SHARED_NAMES: [&str; 5] = ["keys", "keyidx", "rejected", "queue", "keylog"];

/// `key` under `source`'s prefix in a shared tree: the name's length, the name, the key.
/// Every entry of a source is then one contiguous range, in the order of its own keys.
pub(super) fn prefixed(source: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + source.len() + key.len());
    out.extend_from_slice(&(source.len() as u32).to_be_bytes());
    out.extend_from_slice(source.as_bytes());
    out.extend_from_slice(key);
    out
}

impl SledStore {
    /// Opens (or creates) the store; a second process gets [`StateError::Locked`].
    pub fn open(dir: &Path) -> Result<SledStore> {
        let path = dir.join("state");
        let shown = dir.display().to_string();
        if dir.exists() && !dir.is_dir() {
            return Err(StateError::Open {
                path: shown,
                reason: "it is a file, not a folder".into(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| StateError::Open {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        clear_unfinished_snapshots(&path, &shown)?;
        // A 4 MiB page cache: sled holds several times its cache in node memory. On the
        // throughput benchmark 8 MiB against 16 MiB gave 76 against 89 MiB peak at the same
        // records/s, and 4 MiB against 8 MiB (with one page between nodes) 77 against 83
        // (docs/performance.md).
        let config = sled::Config::new()
            .path(&path)
            .cache_capacity(4 * 1024 * 1024)
            .flush_every_ms(Some(200));
        let mut tries = 0;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                // Another process holds sled's lock on `db`: asked of the file itself,
                // not guessed from the error's text.
                Err(_) if is_locked(&path) => {
                    return Err(StateError::Locked {
                        path: shown.clone(),
                    })
                }
                // Refused by a holder that let go before the file was asked (a `state`
                // done reading): opened again, a few times at most.
                Err(_) if tries < 3 => tries += 1,
                Err(e) => {
                    return Err(StateError::Open {
                        path: shown.clone(),
                        reason: e.to_string(),
                    })
                }
            }
        };
        let lock_file = file_id(&path.join("db")).map_err(|e| StateError::Open {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        // A commit a stopped run recorded is finished first, in the layout it was
        // recorded for; then the layout is brought to this version.
        let replayed = commit_log::replay(&db)?;
        if replayed > 0 {
            tracing::info!(
                commits = replayed,
                "finished the commits a stopped run had recorded"
            );
        }
        let open = |name: &str| db.open_tree(name);
        let shared = [
            open(SHARED_NAMES[0])?,
            open(SHARED_NAMES[1])?,
            open(SHARED_NAMES[2])?,
            open(SHARED_NAMES[3])?,
            open(SHARED_NAMES[4])?,
        ];
        let store = SledStore {
            db,
            dir: dir.to_path_buf(),
            lock_file,
            trees: RwLock::default(),
            shared,
            key_indexes: Mutex::default(),
            run_files: key_index::RunFiles::new(path.join("runs")),
            stuck: Arc::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    fn shared(&self, kind: Shared) -> &sled::Tree {
        &self.shared[kind as usize]
    }

    /// The key index of `source`, read from the store on first use.
    fn key_index(&self, source: &str) -> Result<Arc<Mutex<KeyIndex>>> {
        let mut all = self
            .key_indexes
            .lock()
            .map_err(|_| StateError::Io("the key indexes' lock is poisoned".into()))?;
        if let Some(index) = all.get(source) {
            return Ok(index.clone());
        }
        let index = Arc::new(Mutex::new(KeyIndex::load(
            self.shared(Shared::KeyLog),
            &self.run_files,
            source,
        )?));
        all.insert(source.to_string(), index.clone());
        Ok(index)
    }

    /// Runs `f` on the key index of `source`.
    fn with_keys<T>(&self, source: &str, f: impl FnOnce(&mut KeyIndex) -> Result<T>) -> Result<T> {
        let index = self.key_index(source)?;
        let mut index = index
            .lock()
            .map_err(|_| StateError::Io("a key index's lock is poisoned".into()))?;
        f(&mut index)
    }

    /// Every entry of `source` in a shared tree, with the key without its prefix.
    fn entries(
        &self,
        kind: Shared,
        source: &str,
    ) -> impl Iterator<Item = Result<(Vec<u8>, sled::IVec)>> + '_ {
        let skip = 4 + source.len();
        self.shared(kind)
            .scan_prefix(prefixed(source, &[]))
            .map(move |kv| {
                let (k, v) = kv?;
                Ok((k[skip..].to_vec(), v))
            })
    }

    fn tree(&self, kind: &str, name: &str) -> Result<sled::Tree> {
        if let Some(tree) = self
            .trees
            .read()
            .ok()
            .and_then(|t| t.get(kind).and_then(|n| n.get(name)).cloned())
        {
            return Ok(tree);
        }
        let tree = self.db.open_tree(format!("{kind}/{name}"))?;
        if let Ok(mut trees) = self.trees.write() {
            trees
                .entry(kind.to_string())
                .or_default()
                .insert(name.to_string(), tree.clone());
        }
        Ok(tree)
    }
}

impl StateStore for SledStore {
    /// Quick unless a key index has to be read first, is busy, or folds (writes and
    /// syncs a run file) within the next `keys` keys. sled's own writes go to its log
    /// buffers, its flusher thread writes them out.
    fn quick(&self, source: &str, keys: usize) -> bool {
        if keys == 0 {
            return true;
        }
        let index = match self.key_indexes.lock() {
            Ok(all) => all.get(source).cloned(),
            Err(_) => None,
        };
        index.is_some_and(|index| index.try_lock().is_ok_and(|i| !i.folds_within(keys)))
    }

    fn meta(&self, source: &str) -> Result<SourceMeta> {
        match self.tree("meta", "sources")?.get(source)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError::Damaged {
                what: format!("source `{source}`"),
                reason: e.to_string(),
            }),
            None => Ok(SourceMeta {
                version: STATE_VERSION,
                ..SourceMeta::default()
            }),
        }
    }

    fn put_meta(&self, source: &str, meta: &SourceMeta) -> Result<()> {
        let mut m = meta.clone();
        m.version = STATE_VERSION;
        let bytes = serde_json::to_vec(&m).map_err(|e| StateError::Io(e.to_string()))?;
        self.tree("meta", "sources")?.insert(source, bytes)?;
        Ok(())
    }

    fn key(&self, source: &str, key: &[u8]) -> Result<Option<KeyEntry>> {
        let tree = self.shared(Shared::KeyLog);
        let fp = self.with_keys(source, |index| index.get(tree, hash_key(key)))?;
        Ok(fp.map(|fingerprint| KeyEntry {
            fingerprint,
            cursor: None,
        }))
    }

    fn fingerprints(
        &self,
        source: &str,
        keys: &[&[u8]],
        hashes: &[u128],
    ) -> Result<Vec<Option<u64>>> {
        let tree = self.shared(Shared::KeyLog);
        let hashes = super::hashes_of(keys.iter().copied(), hashes);
        self.with_keys(source, |index| {
            hashes.iter().map(|h| index.get(tree, *h)).collect()
        })
    }

    fn commit(&self, source: &str, page: &PageCommit, meta: &SourceMeta) -> Result<()> {
        let encode = |v: &Json| serde_json::to_vec(v).map_err(|e| StateError::Io(e.to_string()));
        let mut m = meta.clone();
        m.version = STATE_VERSION;
        let meta_bytes = serde_json::to_vec(&m).map_err(|e| StateError::Io(e.to_string()))?;
        // The page's keys as one write to the source's key index, each with the order
        // of its cursor (from the page's cursor index entries: order bytes, then key).
        let orders: HashMap<&[u8], &[u8]> = page
            .index
            .iter()
            .filter_map(|(at, key)| {
                Some((key.as_slice(), at.get(..at.len().checked_sub(key.len())?)?))
            })
            .collect();
        // The keys borrowed from the page, the cursors' texts made here (none without a
        // cursor).
        let cursors: Vec<Vec<u8>> = page
            .keys
            .iter()
            .map(|(_, e)| key_index::cursor_text(e.cursor.as_ref()))
            .collect();
        let entries: Vec<Keyed> = page
            .keys
            .iter()
            .zip(page.key_hashes().iter())
            .zip(&cursors)
            .map(|(((k, e), h), cursor)| Keyed {
                entry: Entry::of(*h, e.fingerprint, orders.get(k.as_slice()).copied()),
                key: k,
                cursor,
            })
            .collect();
        // The page of keys is appended to the source's key log first, outside sled; the
        // commit makes it count by writing its number (see `key_index::committed_key`).
        let key_page = if entries.is_empty() {
            None
        } else {
            let seq = self.with_keys(source, |index| index.page(&entries))?;
            Some((seq, key_index::committed_key(source), seq.to_be_bytes()))
        };
        let rejected = page
            .rejected
            .iter()
            .map(|(_, v)| encode(v))
            .collect::<Result<Vec<_>>>()?;
        let requests = page
            .child_requests
            .iter()
            .map(|(_, _, record)| encode(record))
            .collect::<Result<Vec<_>>>()?;
        let trees = [
            "meta/sources".to_string(),
            SHARED_NAMES[Shared::Keys as usize].to_string(),
            SHARED_NAMES[Shared::Rejected as usize].to_string(),
            SHARED_NAMES[Shared::KeyIdx as usize].to_string(),
            SHARED_NAMES[Shared::Queue as usize].to_string(),
            SHARED_NAMES[Shared::KeyLog as usize].to_string(),
        ];
        // Every key under its source's prefix (a child request under its child's).
        let requests_at: Vec<Vec<u8>> = page
            .child_requests
            .iter()
            .map(|(child, key, _)| prefixed(child, key))
            .collect();
        let rejected_at: Vec<Vec<u8>> = page
            .rejected
            .iter()
            .map(|(k, _)| prefixed(source, k))
            .collect();
        let unrejected_at: Vec<Vec<u8>> = page
            .unrejected
            .iter()
            .map(|k| prefixed(source, k))
            .collect();
        // Child requests first, the watermark last (the order replays keep too).
        let mut ops: Vec<Op> = Vec::new();
        for (key, record) in requests_at.iter().zip(&requests) {
            ops.push(Op {
                tree: 4,
                key,
                value: Some(record),
            });
        }
        for (k, v) in rejected_at.iter().zip(&rejected) {
            ops.push(Op {
                tree: 2,
                key: k,
                value: Some(v),
            });
        }
        for k in &unrejected_at {
            ops.push(Op {
                tree: 2,
                key: k,
                value: None,
            });
        }
        if let Some((_, at, seq)) = &key_page {
            ops.push(Op {
                tree: 5,
                key: at,
                value: Some(seq),
            });
        }
        ops.push(Op {
            tree: 0,
            key: source.as_bytes(),
            value: Some(&meta_bytes),
        });
        commit_log::commit(&self.db, source, &trees, &ops)?;
        if let Some((seq, _, _)) = key_page {
            let tree = self.shared(Shared::KeyLog);
            self.with_keys(source, |index| index.written(tree, seq, &entries))?;
        }
        Ok(())
    }

    /// Forgets the keys whose cursor is below the bound ([`KeyIndex::prune`]); the key
    /// index keeps each key's cursor order, so neither `below` nor a full pass is needed.
    fn prune_keys(&self, source: &str, prune: &Prune, _full: bool) -> Result<usize> {
        let tree = self.shared(Shared::KeyLog);
        self.with_keys(source, |index| index.prune(tree, prune.bound))
    }

    fn key_count(&self, source: &str) -> Result<usize> {
        let tree = self.shared(Shared::KeyLog);
        self.with_keys(source, |index| index.count(tree))
    }

    fn keys(&self, source: &str) -> Result<Vec<(Vec<u8>, KeyEntry)>> {
        let tree = self.shared(Shared::KeyLog);
        let entries = self.with_keys(source, |index| index.entries(tree))?;
        entries
            .into_iter()
            .map(|f| {
                let cursor = if f.cursor.is_empty() {
                    None
                } else {
                    Some(
                        serde_json::from_slice(&f.cursor).map_err(|e| StateError::Damaged {
                            what: format!("the keys of `{source}`"),
                            reason: e.to_string(),
                        })?,
                    )
                };
                Ok((
                    f.key,
                    KeyEntry {
                        fingerprint: f.entry.fingerprint,
                        cursor,
                    },
                ))
            })
            .collect()
    }

    fn rejected(&self, source: &str) -> Result<Vec<Json>> {
        let mut out = Vec::new();
        for kv in self.entries(Shared::Rejected, source) {
            let (_, v) = kv?;
            out.push(serde_json::from_slice(&v).map_err(|e| StateError::Damaged {
                what: format!("rejected records of `{source}`"),
                reason: e.to_string(),
            })?);
        }
        Ok(out)
    }

    fn rejected_keys(&self, source: &str) -> Result<std::collections::HashSet<Vec<u8>>> {
        let mut out = std::collections::HashSet::new();
        for kv in self.entries(Shared::Rejected, source) {
            out.insert(kv?.0);
        }
        Ok(out)
    }

    fn child_queue(&self, child: &str) -> Result<Vec<(Vec<u8>, Json)>> {
        let mut out = Vec::new();
        for kv in self.entries(Shared::Queue, child) {
            let (k, v) = kv?;
            let record = serde_json::from_slice(&v).map_err(|e| StateError::Damaged {
                what: format!("child requests of `{child}`"),
                reason: e.to_string(),
            })?;
            out.push((k, record));
        }
        Ok(out)
    }

    fn child_done(&self, child: &str, parent_key: &[u8]) -> Result<()> {
        self.shared(Shared::Queue)
            .remove(prefixed(child, parent_key))?;
        Ok(())
    }

    fn reset(&self, source: &str) -> Result<()> {
        if let Ok(mut all) = self.key_indexes.lock() {
            all.remove(source);
        }
        for tree in &self.shared {
            let mut batch = sled::Batch::default();
            for k in tree.scan_prefix(prefixed(source, &[])).keys() {
                batch.remove(k?);
            }
            tree.apply_batch(batch)?;
        }
        self.tree("meta", "sources")?.remove(source)?;
        // Its runs' files go once those removals are durable.
        self.run_files.retire_source(source)?;
        Ok(())
    }

    fn sink_upsert(&self, tree: &str, records: &[(&[u8], &[u8])]) -> Result<()> {
        // See `commit`: inserts run beside other writers, a batch would not.
        let tree = self.tree("sink", tree)?;
        for &(k, v) in records {
            tree.insert(k, v)?;
        }
        Ok(())
    }

    fn sink_records(&self, tree: &str) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for kv in self.tree("sink", tree)?.iter() {
            out.push(kv?.1.to_vec());
        }
        Ok(out)
    }

    fn sink_records_after(
        &self,
        tree: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        use std::ops::Bound;
        let tree = self.tree("sink", tree)?;
        let from = after.map_or(Bound::Unbounded, |k| Bound::Excluded(k.to_vec()));
        let mut out = Vec::new();
        for kv in tree
            .range::<Vec<u8>, _>((from, Bound::Unbounded))
            .take(limit)
        {
            let (k, v) = kv?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn sink_len(&self, tree: &str) -> Result<usize> {
        Ok(self.tree("sink", tree)?.len())
    }

    fn next_id(&self) -> Result<u64> {
        Ok(self.db.generate_id()?)
    }

    fn flush(&self) -> Result<()> {
        // The runs retired before this flush are replaced by writes it makes durable.
        let retired = self.run_files.take_retired();
        // The key logs first: what the flush makes durable names pages they hold.
        let indexes: Vec<_> = match self.key_indexes.lock() {
            Ok(all) => all.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        for index in indexes {
            if let Ok(mut index) = index.lock() {
                index.sync_log()?;
            }
        }
        match self.bounded_flush() {
            Ok(()) => {
                key_index::remove_retired(retired);
                Ok(())
            }
            Err(Flushed::Sled(e)) => Err(e.into()),
            Err(Flushed::Stuck(reason)) => Err(StateError::Failed {
                path: self.dir.display().to_string(),
                reason,
            }),
        }
    }

    fn kv_get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tree("kv", space)?.get(key)?.map(|v| v.to_vec()))
    }

    fn kv_apply(&self, space: &str, ops: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
        let tree = self.tree("kv", space)?;
        for (k, v) in ops {
            match v {
                Some(v) => tree.insert(k.as_slice(), v.as_slice())?,
                None => tree.remove(k.as_slice())?,
            };
        }
        Ok(())
    }

    fn kv_scan(&self, space: &str, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for kv in self.tree("kv", space)?.iter().take(limit) {
            let (k, v) = kv?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn kv_scan_from(
        &self,
        space: &str,
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for kv in self.tree("kv", space)?.range(start..).take(limit) {
            let (k, v) = kv?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn kv_len(&self, space: &str) -> Result<usize> {
        Ok(self.tree("kv", space)?.len())
    }

    fn location(&self) -> Option<&Path> {
        Some(&self.dir)
    }

    fn health(&self) -> Result<()> {
        let path = self.dir.display().to_string();
        match file_id(&self.dir.join("state").join("db")) {
            Ok(id) if id == self.lock_file => {}
            Ok(_) => {
                return Err(StateError::Gone {
                    path,
                    what: "replaced",
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::Gone {
                    path,
                    what: "removed",
                })
            }
            // A folder made unreadable still holds the files sled has open.
            Err(_) => {}
        }
        // sled keeps the first error of a write it made in the background and fails
        // every later write with it; a flush waits for what is not yet on disk, so it
        // says so. With nothing waiting it returns at once.
        self.bounded_flush().map_err(|e| StateError::Failed {
            path,
            reason: match e {
                Flushed::Sled(e) => e.to_string(),
                Flushed::Stuck(reason) => reason,
            },
        })
    }
}

/// Why a flush failed: sled said so, or it did not return in time.
enum Flushed {
    Sled(sled::Error),
    Stuck(String),
}

impl SledStore {
    /// sled's flush, on a thread of its own, waited for at most [`FLUSH_LIMIT`]: past it
    /// the store fails, and keeps failing at once while that flush has not returned.
    fn bounded_flush(&self) -> std::result::Result<(), Flushed> {
        use std::sync::atomic::Ordering;
        let stuck = || {
            Flushed::Stuck(format!(
                "its writes have not reached the disk after {} s (a full disk can do this)",
                FLUSH_LIMIT.as_secs()
            ))
        };
        if self.stuck.load(Ordering::SeqCst) {
            return Err(stuck());
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (db, flag) = (self.db.clone(), self.stuck.clone());
        std::thread::Builder::new()
            .name("sled-flush".into())
            .spawn(move || {
                let _ = tx.send(db.flush());
                flag.store(false, Ordering::SeqCst);
            })
            .map_err(|e| Flushed::Stuck(format!("cannot start a thread to flush: {e}")))?;
        match rx.recv_timeout(FLUSH_LIMIT) {
            Ok(done) => done.map(drop).map_err(Flushed::Sled),
            Err(_) => {
                self.stuck.store(true, Ordering::SeqCst);
                // It may have returned meanwhile (then the flag is set back by it, or here).
                match rx.try_recv() {
                    Ok(done) => {
                        self.stuck.store(false, Ordering::SeqCst);
                        done.map(drop).map_err(Flushed::Sled)
                    }
                    Err(_) => Err(stuck()),
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "sled_store_tests.rs"]
mod tests;

#[path = "sled_migrate.rs"]
mod migrate;
