//! Moving a store of an earlier state version into the current layout, when it opens:
//! per-source trees into the shared ones (before version 4), keys into the key index
//! (version 4).

use super::*;
use crate::state::key_index::Full;

impl SledStore {
    /// Moves the keys of state version 4 (`keys`, with their order from `keyidx`) into
    /// each source's key index, a page of up to 1,000 entries at a time. A crash in
    /// between moves them again (the pages are written anew, the same).
    fn index_keys(&self) -> Result<usize> {
        let (keys, keyidx) = (self.shared(Shared::Keys), self.shared(Shared::KeyIdx));
        let log = self.shared(Shared::KeyLog);
        let source_of = |k: &[u8]| -> Option<(String, usize)> {
            let len = u32::from_be_bytes(k.get(..4)?.try_into().ok()?) as usize;
            let name = k.get(4..4 + len)?;
            Some((String::from_utf8_lossy(name).into_owned(), 4 + len))
        };
        // The greatest order of each key (a key may have stale entries below it).
        let mut orders: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        for kv in keyidx.iter() {
            let (at, key) = kv?;
            let Some((source, skip)) = source_of(&at) else {
                continue;
            };
            let order = at[skip..at.len().saturating_sub(key.len())].to_vec();
            let full = prefixed(&source, &key);
            if orders.get(&full).is_none_or(|o| *o < order) {
                orders.insert(full, order);
            }
        }
        let mut moved = 0;
        let mut pages: HashMap<String, (u64, Vec<Full>)> = HashMap::new();
        let flush = |source: &str, seq: &mut u64, entries: &mut Vec<Full>| -> Result<()> {
            if !entries.is_empty() {
                *seq += 1;
                for (at, value) in key_index::page_writes(source, *seq, entries) {
                    log.insert(at, value)?;
                }
                log.insert(key_index::committed_key(source), &seq.to_be_bytes())?;
                entries.clear();
            }
            Ok(())
        };
        for kv in keys.iter() {
            let (k, v) = kv?;
            let Some((source, skip)) = source_of(&k) else {
                continue;
            };
            let Some(entry) = KeyEntry::decode(&v) else {
                continue;
            };
            let (seq, entries) = pages.entry(source.clone()).or_default();
            let order = orders.get(k.as_ref()).map(Vec::as_slice);
            entries.push(Full::of(
                &k[skip..],
                entry.fingerprint,
                order,
                entry.cursor.as_ref(),
            ));
            moved += 1;
            if entries.len() == 1000 {
                flush(&source, seq, entries)?;
            }
        }
        for (source, (seq, entries)) in pages.iter_mut() {
            flush(source, seq, entries)?;
        }
        keys.clear()?;
        keyidx.clear()?;
        Ok(moved)
    }

    /// Moves the trees of a store before version 4 (`keys/SOURCE`, ...) into the shared
    /// ones. Each tree is copied, then dropped: a crash in between copies it again.
    fn share_trees(&self) -> Result<usize> {
        let mut moved = 0;
        for name in self.db.tree_names() {
            let name = String::from_utf8_lossy(&name).into_owned();
            let Some((kind, source)) = name.split_once('/') else {
                continue;
            };
            let Some(at) = SHARED_NAMES.iter().position(|k| *k == kind) else {
                continue;
            };
            let old = self.db.open_tree(&name)?;
            let mut batch = sled::Batch::default();
            for kv in old.iter() {
                let (k, v) = kv?;
                batch.insert(prefixed(source, &k), v);
            }
            self.shared[at].apply_batch(batch)?;
            self.db.drop_tree(&name)?;
            moved += 1;
        }
        Ok(moved)
    }

    pub(super) fn migrate(&self) -> Result<()> {
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
        // Version 0 is a fresh store (or one from before versioning). Version 2 added an
        // index its first prune builds, version 3 spells only keys with U+001E or U+001F
        // anew (see STATE_VERSION): neither rewrote anything. Version 4 moves each
        // source's trees into the shared ones.
        if found < 4 {
            let moved = self.share_trees()?;
            if moved > 0 {
                tracing::info!(
                    trees = moved,
                    "moved each source's state into the shared trees of state version 4"
                );
            }
        }
        if found < 5 {
            let moved = self.index_keys()?;
            if moved > 0 {
                tracing::info!(
                    keys = moved,
                    "moved the keys into the key index of state version 5"
                );
            }
        }
        meta.insert("version", &STATE_VERSION.to_be_bytes())?;
        Ok(())
    }
}
