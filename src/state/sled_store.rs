//! The sled-backed [`StateStore`]: one tree per kind and source, a page's commit in one
//! transaction, and the repair of the unfinished snapshot a killed run can leave.

use super::{
    KeyEntry, PageCommit, Prune, Result, SourceMeta, StateError, StateStore, STATE_VERSION,
};
use serde_json::Value as Json;
use sled::Transactional;
use std::path::Path;

/// Removes the snapshot files sled was still writing when its process died.
///
/// sled 0.34 writes a snapshot to `snap.<lsn>.generating`, syncs it, then renames it to
/// `snap.<lsn>`; but on open it reads the newest `snap.*` file, `.generating` ones
/// included, so a process killed while writing one (sled writes a snapshot each time it
/// opens a store that has grown) leaves a store that refuses to open with "Read corrupted
/// data" (spacejam/sled#1527). An unfinished snapshot holds nothing the log does not:
/// without it sled recovers from the previous snapshot and replays the log from there.
/// The files are removed only under the lock sled itself takes on `db`, so never while
/// another process is writing one.
fn clear_unfinished_snapshots(path: &Path, shown: &str) -> Result<()> {
    let failed = |e: std::io::Error| StateError::Open {
        path: shown.to_string(),
        reason: e.to_string(),
    };
    let db = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.join("db"))
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(failed(e)),
    };
    // sled's own threads let go of the lock a moment after a store is dropped (its
    // flusher wakes every 200 ms): a store this process just closed is not "in use".
    let mut tries = 0;
    loop {
        match db.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked {
                    path: shown.to_string(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(failed(e)),
        }
    }
    for entry in std::fs::read_dir(path).map_err(failed)? {
        let name = entry.map_err(failed)?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!("removing the unfinished sled snapshot `{name}` a killed run left");
            std::fs::remove_file(path.join(&*name)).map_err(failed)?;
        }
    }
    Ok(())
}

/// Whether another process holds the lock sled takes on a store's `db` file.
fn is_locked(path: &Path) -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.join("db"))
        .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
}

/// The sled-backed store in a data directory.
pub struct SledStore {
    db: sled::Db,
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
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(16 * 1024 * 1024)
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
        let store = SledStore { db };
        store.migrate()?;
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
        // Version 0 is a fresh store (or one from before versioning): nothing to rewrite.
        meta.insert("version", &STATE_VERSION.to_be_bytes())?;
        Ok(())
    }

    fn tree(&self, kind: &str, name: &str) -> Result<sled::Tree> {
        Ok(self.db.open_tree(format!("{kind}/{name}"))?)
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
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        let encode = |v: &Json| serde_json::to_vec(v).map_err(|e| StateError::Io(e.to_string()));
        let mut m = meta.clone();
        m.version = STATE_VERSION;
        let meta_bytes =
            encode(&serde_json::to_value(&m).map_err(|e| StateError::Io(e.to_string()))?)?;
        let keys: Vec<(&[u8], Vec<u8>)> = page
            .keys
            .iter()
            .map(|(k, e)| (k.as_slice(), e.encode()))
            .collect();
        let rejected = page
            .rejected
            .iter()
            .map(|(k, v)| Ok((k.as_slice(), encode(v)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut children: Vec<&str> = page
            .child_requests
            .iter()
            .map(|(c, _, _)| c.as_str())
            .collect();
        children.sort_unstable();
        children.dedup();
        let requests = page
            .child_requests
            .iter()
            .map(|(child, key, record)| {
                let at = 4 + children.binary_search(&child.as_str()).unwrap_or(0);
                Ok((at, key.as_slice(), encode(record)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut trees = vec![
            self.tree("meta", "sources")?,
            self.tree("keys", source)?,
            self.tree("rejected", source)?,
            self.tree("keyidx", source)?,
        ];
        for child in &children {
            trees.push(self.tree("queue", child)?);
        }
        // One transaction: the page's keys, rejections, child requests, cursor index and
        // watermark are committed together or not at all.
        trees
            .as_slice()
            .transaction(|t| {
                for (at, key, record) in &requests {
                    t[*at].insert(*key, record.as_slice())?;
                }
                for (k, v) in &rejected {
                    t[2].insert(*k, v.as_slice())?;
                }
                for k in &page.unrejected {
                    t[2].remove(k.as_slice())?;
                }
                for (k, v) in &keys {
                    t[1].insert(*k, v.as_slice())?;
                }
                for (i, k) in &page.index {
                    t[3].insert(i.as_slice(), k.as_slice())?;
                }
                t[0].insert(source.as_bytes(), meta_bytes.as_slice())?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StateError::Io(e.to_string()),
                TransactionError::Abort(()) => StateError::Io("the commit was aborted".into()),
            })
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
            self.db.drop_tree(format!("{kind}/{source}"))?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let page = PageCommit {
            keys: vec![
                (
                    b"a".to_vec(),
                    KeyEntry {
                        fingerprint: 1,
                        cursor: Some(Json::from(5)),
                    },
                ),
                (
                    b"b".to_vec(),
                    KeyEntry {
                        fingerprint: 2,
                        cursor: Some(Json::from(9)),
                    },
                ),
            ],
            ..PageCommit::default()
        };
        let meta = SourceMeta {
            watermark: Some(Json::from(9)),
            ..SourceMeta::default()
        };
        store.commit("s", &page, &meta).unwrap();
        assert_eq!(store.key("s", b"a").unwrap().unwrap().fingerprint, 1);
        assert_eq!(store.meta("s").unwrap().watermark, Some(Json::from(9)));
        let order = |c: &Json| Some(c.as_i64()?.to_be_bytes().to_vec());
        let bound = 9i64.to_be_bytes();
        let prune = Prune {
            bound: &bound,
            below: &|c| c.as_i64().unwrap() < 9,
            order: &order,
        };
        // Keys stored without index entries (as by version 1): a full prune indexes them.
        assert_eq!(store.prune_keys("s", &prune, true).unwrap(), 1);
        assert_eq!(store.key_count("s").unwrap(), 1);
        // b (cursor 9) is indexed now; once the watermark passes it, the index finds it.
        let bound = 10i64.to_be_bytes();
        let prune = Prune {
            bound: &bound,
            below: &|c| c.as_i64().unwrap() < 10,
            order: &order,
        };
        assert_eq!(store.prune_keys("s", &prune, false).unwrap(), 1);
        assert_eq!(store.key_count("s").unwrap(), 0);
        store.commit("s", &page, &meta).unwrap();
        assert_eq!(store.key_count("s").unwrap(), 2);
        store.reset("s").unwrap();
        assert_eq!(store.key_count("s").unwrap(), 0);
        assert_eq!(store.meta("s").unwrap().watermark, None);
    }

    #[test]
    fn a_second_open_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledStore::open(dir.path()).unwrap();
        match SledStore::open(dir.path()) {
            Err(StateError::Locked { .. }) => {}
            Err(other) => panic!("expected Locked, got {other}"),
            Ok(_) => panic!("expected Locked, got a second store"),
        }
    }
}
