//! The state store: per-source watermarks, key fingerprints, rejected records, child
//! request queues, and the records of sled sinks. sled sits behind [`StateStore`];
//! everything persisted carries [`STATE_VERSION`].

pub use crate::cluster::staged::StagedRows;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::path::Path;

/// The version of what is persisted; older versions are migrated on open.
/// 2: a cursor index per incremental source (`keyidx/SOURCE`); a source's keys from
/// version 1 are indexed by its first prune (`SourceMeta::indexed`).
/// 3: the parts of a composite key are escaped ([`keys`]). Nothing is rewritten: every
/// key whose values hold neither U+001E nor U+001F is spelled as before. A key that did
/// hold one is spelled anew, so its record is collected once more under its new key (a
/// sled sink keeps the row of the old key beside it); nothing is lost, and two records
/// version 2 stored as one are two again. A version-2 hamstr refuses a version-3 store.
/// 4: keys, cursor indexes, rejected records and child requests of every source in one
/// tree per kind, each entry under its source's prefix, instead of a tree per kind and
/// source; a store of an earlier version is moved over when it opens.
/// 5: a source's keys in its key index ([`key_index`]): a 128-bit hash of each key with
/// its fingerprint and cursor order, written a page at a time (tree `keylog`) instead of
/// one entry per key in `keys` with a cursor index in `keyidx`; a store of an earlier
/// version has its keys moved there when it opens.
/// 6: a key index's spilled runs in files of their own (`state/runs/`), not sled
/// values; runs of version 5 are read where they are and written anew as a file when
/// merged. Nothing is rewritten when a store opens. A version-5 hamstr refuses a
/// version-6 store.
/// 7: the pages of keys since a key index's last fold in an append-only file of its own
/// beside its runs (`state/runs/`, [`key_index`]'s `log`), not sled values (`keylog`);
/// pages of version 6 are read where they are and folded into a run when the index
/// loads. A version-6 hamstr refuses a version-7 store (it would not read the files).
pub const STATE_VERSION: u32 = 7;

pub type Result<T> = std::result::Result<T, StateError>;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the data directory `{path}` is in use by another `hamstr run`")]
    Locked { path: String },
    #[error("cannot open the data directory `{path}`: {reason}")]
    Open { path: String, reason: String },
    #[error("the data directory was written by a newer hamstr (state version {found}, this one reads up to {STATE_VERSION})")]
    TooNew { found: u32 },
    #[error("the state store failed: {0}")]
    Io(String),
    #[error("damaged state for {what}: {reason}")]
    Damaged { what: String, reason: String },
    /// A write of the store failed (a full disk, say): sled keeps its first I/O error,
    /// so nothing given to it after that is kept.
    #[error("the state store in `{path}` cannot keep what it is given: {reason}")]
    Failed { path: String, reason: String },
    /// The store's files were removed or replaced while this process held them: what
    /// it writes goes nowhere, and another run could open the same folder.
    #[error("the data directory `{path}` was {what} while this run held it")]
    Gone { path: String, what: &'static str },
    /// In a cluster (spec §14): the unit's lease is no longer this instance's (it
    /// expired, or another instance took it with a newer epoch), so nothing of it may
    /// be committed; the new owner fetches it again.
    #[error("fenced: the lease of unit `{name}` is no longer this instance's")]
    Fenced { name: String },
}

impl From<sled::Error> for StateError {
    fn from(e: sled::Error) -> Self {
        StateError::Io(e.to_string())
    }
}

/// What is remembered of one source between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceMeta {
    #[serde(default)]
    pub version: u32,
    /// The greatest cursor value committed, as JSON.
    pub watermark: Option<Json>,
    /// What the source's state belongs to (service URL, path, records path, key).
    #[serde(default)]
    pub identity: String,
    #[serde(default)]
    pub records_seen: u64,
    #[serde(default)]
    pub emitted: u64,
    #[serde(default)]
    pub rejected: u64,
    #[serde(default)]
    pub runs: u64,
    pub last_run: Option<String>,
    pub last_error: Option<String>,
    /// Every key it remembers is in its cursor index (false for state from before the
    /// index, until its first prune indexes it).
    #[serde(default)]
    pub indexed: bool,
    /// The opaque token the next run resumes from (`incremental { resume = ... }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
}

/// What is remembered of one key: a fingerprint of its fields and its cursor value.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    pub fingerprint: u64,
    pub cursor: Option<Json>,
}

impl PageCommit {
    /// The hashes of `keys`, in order ([`hashes_of`]).
    pub fn key_hashes(&self) -> std::borrow::Cow<'_, [u128]> {
        hashes_of(self.keys.iter().map(|(k, _)| k.as_slice()), &self.hashes)
    }
}

/// The [`hash_key`]s of `keys`: `given` when it holds one per key, else computed.
pub fn hashes_of<'a>(
    keys: impl ExactSizeIterator<Item = &'a [u8]>,
    given: &'a [u128],
) -> std::borrow::Cow<'a, [u128]> {
    if given.len() == keys.len() {
        std::borrow::Cow::Borrowed(given)
    } else {
        std::borrow::Cow::Owned(keys.map(hash_key).collect())
    }
}

impl KeyEntry {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = self.fingerprint.to_be_bytes().to_vec();
        if let Some(c) = &self.cursor {
            out.extend(serde_json::to_vec(c).unwrap_or_default());
        }
        out
    }
    pub(crate) fn decode(bytes: &[u8]) -> Option<KeyEntry> {
        let fp = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let cursor = if bytes.len() > 8 {
            Some(serde_json::from_slice(&bytes[8..]).ok()?)
        } else {
            None
        };
        Some(KeyEntry {
            fingerprint: fp,
            cursor,
        })
    }
}

/// Everything a page commits for its source, applied together after the sinks have it.
#[derive(Debug, Default)]
pub struct PageCommit {
    pub keys: Vec<(Vec<u8>, KeyEntry)>,
    /// The keys' hashes ([`hash_key`]), in the order of `keys`, when the one who made
    /// the page had them (the extract node does); else empty, and a store computes them
    /// ([`PageCommit::key_hashes`]).
    pub hashes: Vec<u128>,
    /// Rejected records by key (or sequence), as JSON.
    pub rejected: Vec<(Vec<u8>, Json)>,
    /// Keys whose record converted again: their rejected entry goes.
    pub unrejected: Vec<Vec<u8>>,
    /// Requests for child sources: (child, parent key, parent record).
    pub child_requests: Vec<(String, Vec<u8>, Json)>,
    /// Cursor index entries: (the cursor's order bytes followed by the key, the key).
    pub index: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What a prune removes: keys whose cursor is below the watermark.
pub struct Prune<'a> {
    /// Index entries below these bytes have a cursor below the watermark.
    pub bound: &'a [u8],
    /// Whether a stored cursor is below the watermark.
    pub below: &'a dyn Fn(&Json) -> bool,
    /// The order bytes of a stored cursor, to index keys stored before the index.
    pub order: &'a dyn Fn(&Json) -> Option<Vec<u8>>,
}

/// The operations the engine needs from its store.
pub trait StateStore: Send + Sync {
    fn meta(&self, source: &str) -> Result<SourceMeta>;
    fn put_meta(&self, source: &str, meta: &SourceMeta) -> Result<()>;
    fn key(&self, source: &str, key: &[u8]) -> Result<Option<KeyEntry>>;
    /// The fingerprints of a page's keys, `None` for a key not known: one call per page,
    /// so a store can answer from memory without a lookup per record. The third
    /// argument holds the keys' [`hash_key`]s, in the same order, or is empty
    /// ([`hashes_of`]); a store that looks keys up by their text ignores it.
    fn fingerprints(
        &self,
        source: &str,
        keys: &[&[u8]],
        _hashes: &[u128],
    ) -> Result<Vec<Option<u64>>> {
        keys.iter()
            .map(|k| Ok(self.key(source, k)?.map(|e| e.fingerprint)))
            .collect()
    }
    fn commit(&self, source: &str, page: &PageCommit, meta: &SourceMeta) -> Result<()>;
    /// Whether the lookups of a page and the commits of pages before it, `keys` keys in
    /// all, may be made on an async worker: only where they need memory and a few small
    /// reads of files the system keeps cached, no sync and no other machine (no key
    /// index to read first, no fold due). Handing such a step to the blocking pool and
    /// back costs more than the step. By default, never.
    fn quick(&self, _source: &str, _keys: usize) -> bool {
        false
    }
    /// Commits one part of page `page` (an id unique in the process) of `source`; `last`
    /// for its last part. A store that took rows staged for the page ([`Self::stage`])
    /// writes them, and every part of the page, in the transaction of the last part.
    fn commit_part(
        &self,
        source: &str,
        _page: u64,
        _last: bool,
        commit: &PageCommit,
        meta: &SourceMeta,
    ) -> Result<()> {
        self.commit(source, commit, meta)
    }
    /// In a cluster: takes the rows a `postgres` sink on the cluster's database has for
    /// page `page` of `source`, to write them in that page's commit (spec §14: exactly
    /// once). `false` (the rows dropped) when this store writes no rows: the sink writes
    /// them itself.
    fn stage(&self, _source: &str, _page: u64, _rows: Box<dyn StagedRows>) -> bool {
        false
    }
    /// Forgets the rows staged for page `page` of `source` and its pages before: the
    /// page will not be committed (its run broke).
    fn discard(&self, _source: &str, _page: u64) {}
    /// In a cluster: the database the store keeps its state in, as
    /// [`crate::check::postgres_url::database_key`] names it.
    fn database(&self) -> Option<String> {
        None
    }
    /// Forgets keys whose cursor is below the watermark: from the cursor index, touching
    /// only those keys; with `full`, by a scan of every key that also indexes the rest
    /// (state from before the index).
    fn prune_keys(&self, source: &str, prune: &Prune, full: bool) -> Result<usize>;
    fn key_count(&self, source: &str) -> Result<usize>;
    /// Every key the source remembers, in key order.
    fn keys(&self, source: &str) -> Result<Vec<(Vec<u8>, KeyEntry)>>;
    fn rejected(&self, source: &str) -> Result<Vec<Json>>;
    /// The keys of a source's rejected records.
    fn rejected_keys(&self, source: &str) -> Result<std::collections::HashSet<Vec<u8>>>;
    fn child_queue(&self, child: &str) -> Result<Vec<(Vec<u8>, Json)>>;
    fn child_done(&self, child: &str, parent_key: &[u8]) -> Result<()>;
    /// Forgets everything about a source.
    fn reset(&self, source: &str) -> Result<()>;
    fn sink_upsert(&self, tree: &str, records: &[(&[u8], &[u8])]) -> Result<()>;
    fn sink_records(&self, tree: &str) -> Result<Vec<Vec<u8>>>;
    /// Up to `limit` records of a sled sink with their keys, in key order, from the
    /// first key after `after` (from the first key with `None`): a dump reads a large
    /// sink a part at a time.
    fn sink_records_after(
        &self,
        tree: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    fn sink_len(&self, tree: &str) -> Result<usize>;
    fn next_id(&self) -> Result<u64>;
    fn flush(&self) -> Result<()>;
    /// A generic ordered key-value space, for node state that has no method of its own
    /// (sink queues, aggregate views).
    fn kv_get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Applies puts (`Some`) and removes (`None`) in order.
    fn kv_apply(&self, space: &str, ops: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()>;
    /// Up to `limit` entries in key order, from the first.
    fn kv_scan(&self, space: &str, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Up to `limit` entries in key order, from the first key at or after `start`.
    fn kv_scan_from(
        &self,
        space: &str,
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    fn kv_len(&self, space: &str) -> Result<usize>;
    /// The data directory the store keeps its files in, if it has one: no sink may
    /// write there.
    fn location(&self) -> Option<&Path> {
        None
    }
    /// Whether the store still keeps what it is given: an error once one of its writes
    /// failed, or once its files were removed or replaced. Cheap enough to ask often.
    fn health(&self) -> Result<()> {
        Ok(())
    }
    /// Whether this process may still deliver and commit the source's pages: always for
    /// a store of its own; in a cluster, only while it holds the lease of the source's
    /// unit. Asked before a page goes to the sinks, so a stalled instance that lost its
    /// lease drops what it fetched; cheap (no round trip).
    fn fence(&self, _source: &str) -> Result<()> {
        Ok(())
    }
    /// In a cluster: the lease a write for `source` must still hold (a sink on the
    /// cluster's database stages its rows under it, see [`Self::stage`]);
    /// [`StateError::Fenced`] when this instance's lease already ran out. `None` outside
    /// a cluster.
    fn lease_of(&self, _source: &str) -> Result<Option<Lease>> {
        Ok(None)
    }
}

/// A unit's lease as this instance holds it, and the database it is kept in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The database, as [`crate::check::postgres_url::database_key`] names it.
    pub database: String,
    pub unit: String,
    pub owner: i64,
    pub epoch: i64,
}

mod commit_log;
mod files;
mod key_index;
pub mod keys;

pub use key_index::{hash_key, Prehashed};
mod sled_store;

pub use sled_store::SledStore;
