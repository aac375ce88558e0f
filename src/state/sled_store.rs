//! The sled-backed [`StateStore`]: one tree per kind and source, a page's commit as one
//! recorded unit ([`commit_log`](super::commit_log)), and whether the store still keeps what it is given.

use super::commit_log::{self, Op};
use super::files::{clear_unfinished_snapshots, file_id, is_locked, FileId};
use super::{
    KeyEntry, PageCommit, Prune, Result, SourceMeta, StateError, StateStore, STATE_VERSION,
};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

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
        // An 8 MiB page cache: against 16 MiB, side by side on the throughput benchmark,
        // 42,890 against 44,066 records/s and 76 against 89 MiB peak (docs/performance.md).
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(8 * 1024 * 1024)
            .flush_every_ms(Some(200))
            .open()
            .map_err(|e| {
                // Another process holds sled's lock on `db`: asked of the file itself,
                // not guessed from the error's text.
                if is_locked(&path) {
                    StateError::Locked {
                        path: shown.clone(),
                    }
                } else {
                    StateError::Open {
                        path: shown.clone(),
                        reason: e.to_string(),
                    }
                }
            })?;
        let lock_file = file_id(&path.join("db")).map_err(|e| StateError::Open {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let store = SledStore {
            db,
            dir: dir.to_path_buf(),
            lock_file,
            trees: RwLock::default(),
        };
        store.migrate()?;
        let replayed = commit_log::replay(&store.db)?;
        if replayed > 0 {
            tracing::info!(
                commits = replayed,
                "finished the commits a stopped run had recorded"
            );
        }
        Ok(store)
    }

    fn migrate(&self) -> Result<()> {
        let meta = self.db.open_tree("meta")?;
        let found = match meta.get("version")? {
            Some(v) => {
                u32::from_be_bytes(v.as_ref().try_into().map_err(|_| StateError::Damaged {
                    what: "the version".into(),
                    reason: "not 4 bytes".into(),
                })?)
            }
            None => 0,
        };
        if found > STATE_VERSION {
            return Err(StateError::TooNew { found });
        }
        // Version 0 is a fresh store (or one from before versioning), and no version
        // since has needed a rewrite: version 2 added an index its first prune builds,
        // version 3 spells only keys with U+001E or U+001F anew (see STATE_VERSION).
        meta.insert("version", &STATE_VERSION.to_be_bytes())?;
        Ok(())
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

    /// Drops a tree, and the handle kept of it.
    fn drop_tree(&self, kind: &str, name: &str) -> Result<()> {
        // Held across the drop: no handle of the old tree is cached again meanwhile.
        let mut trees = self.trees.write().ok();
        if let Some(names) = trees.as_mut().and_then(|t| t.get_mut(kind)) {
            names.remove(name);
        }
        self.db.drop_tree(format!("{kind}/{name}"))?;
        Ok(())
    }
}

impl StateStore for SledStore {
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
        Ok(self
            .tree("keys", source)?
            .get(key)?
            .and_then(|b| KeyEntry::decode(&b)))
    }

    fn commit(&self, source: &str, page: &PageCommit, meta: &SourceMeta) -> Result<()> {
        let encode = |v: &Json| serde_json::to_vec(v).map_err(|e| StateError::Io(e.to_string()));
        let mut m = meta.clone();
        m.version = STATE_VERSION;
        let meta_bytes = serde_json::to_vec(&m).map_err(|e| StateError::Io(e.to_string()))?;
        let entries: Vec<Vec<u8>> = page.keys.iter().map(|(_, e)| e.encode()).collect();
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
        let mut trees = vec![
            "meta/sources".to_string(),
            format!("keys/{source}"),
            format!("rejected/{source}"),
            format!("keyidx/{source}"),
        ];
        let mut child_tree = |child: &str| {
            let name = format!("queue/{child}");
            let at = trees.iter().position(|t| *t == name).unwrap_or_else(|| {
                trees.push(name);
                trees.len() - 1
            });
            at as u32
        };
        // Child requests first, the watermark last (the order replays keep too).
        let mut ops: Vec<Op> = Vec::new();
        for ((child, key, _), record) in page.child_requests.iter().zip(&requests) {
            let tree = child_tree(child);
            ops.push(Op {
                tree,
                key,
                value: Some(record),
            });
        }
        for ((k, _), v) in page.rejected.iter().zip(&rejected) {
            ops.push(Op {
                tree: 2,
                key: k,
                value: Some(v),
            });
        }
        for k in &page.unrejected {
            ops.push(Op {
                tree: 2,
                key: k,
                value: None,
            });
        }
        for ((k, _), e) in page.keys.iter().zip(&entries) {
            ops.push(Op {
                tree: 1,
                key: k,
                value: Some(e),
            });
        }
        for (i, k) in &page.index {
            ops.push(Op {
                tree: 3,
                key: i,
                value: Some(k),
            });
        }
        ops.push(Op {
            tree: 0,
            key: source.as_bytes(),
            value: Some(&meta_bytes),
        });
        commit_log::commit(&self.db, source, &trees, &ops)
    }

    fn prune_keys(&self, source: &str, prune: &Prune, full: bool) -> Result<usize> {
        let keys = self.tree("keys", source)?;
        let index = self.tree("keyidx", source)?;
        let mut removed = 0;
        let (mut drop_keys, mut index_ops) = (sled::Batch::default(), sled::Batch::default());
        if full {
            for kv in keys.iter() {
                let (k, v) = kv?;
                let Some(KeyEntry {
                    cursor: Some(c), ..
                }) = KeyEntry::decode(&v)
                else {
                    continue;
                };
                if (prune.below)(&c) {
                    drop_keys.remove(k);
                    removed += 1;
                } else if let Some(mut at) = (prune.order)(&c) {
                    at.extend_from_slice(&k);
                    index_ops.insert(at, k);
                }
            }
        } else {
            // Only the index entries below the bound: the keys that fell below the
            // watermark (and entries a later cursor of the same key left behind).
            for kv in index.range(..prune.bound) {
                let (at, key) = kv?;
                index_ops.remove(at);
                let below = keys
                    .get(&key)?
                    .and_then(|v| KeyEntry::decode(&v))
                    .and_then(|e| e.cursor)
                    .is_some_and(|c| (prune.below)(&c));
                if below {
                    drop_keys.remove(key);
                    removed += 1;
                }
            }
        }
        keys.apply_batch(drop_keys)?;
        index.apply_batch(index_ops)?;
        Ok(removed)
    }

    fn key_count(&self, source: &str) -> Result<usize> {
        Ok(self.tree("keys", source)?.len())
    }

    fn keys(&self, source: &str) -> Result<Vec<(Vec<u8>, KeyEntry)>> {
        let mut out = Vec::new();
        for kv in self.tree("keys", source)?.iter() {
            let (k, v) = kv?;
            let entry = KeyEntry::decode(&v).ok_or_else(|| StateError::Damaged {
                what: format!("the keys of `{source}`"),
                reason: "an entry does not decode".into(),
            })?;
            out.push((k.to_vec(), entry));
        }
        Ok(out)
    }

    fn rejected(&self, source: &str) -> Result<Vec<Json>> {
        let mut out = Vec::new();
        for kv in self.tree("rejected", source)?.iter() {
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
        for k in self.tree("rejected", source)?.iter().keys() {
            out.insert(k?.to_vec());
        }
        Ok(out)
    }

    fn child_queue(&self, child: &str) -> Result<Vec<(Vec<u8>, Json)>> {
        let mut out = Vec::new();
        for kv in self.tree("queue", child)?.iter() {
            let (k, v) = kv?;
            let record = serde_json::from_slice(&v).map_err(|e| StateError::Damaged {
                what: format!("child requests of `{child}`"),
                reason: e.to_string(),
            })?;
            out.push((k.to_vec(), record));
        }
        Ok(out)
    }

    fn child_done(&self, child: &str, parent_key: &[u8]) -> Result<()> {
        self.tree("queue", child)?.remove(parent_key)?;
        Ok(())
    }

    fn reset(&self, source: &str) -> Result<()> {
        for kind in ["keys", "keyidx", "rejected", "queue"] {
            self.drop_tree(kind, source)?;
        }
        self.tree("meta", "sources")?.remove(source)?;
        Ok(())
    }

    fn sink_upsert(&self, tree: &str, records: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        // See `commit`: inserts run beside other writers, a batch would not.
        let tree = self.tree("sink", tree)?;
        for (k, v) in records {
            tree.insert(k.as_slice(), v.as_slice())?;
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
        self.db.flush()?;
        Ok(())
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
        self.db.flush().map(drop).map_err(|e| StateError::Failed {
            path,
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
#[path = "sled_store_tests.rs"]
mod tests;
