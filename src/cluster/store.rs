//! The PostgreSQL [`StateStore`]: the same state as the sled store (watermarks, keys and
//! their cursor index, rejected records, child requests, sled sinks' rows, the generic
//! spaces of sink queues and stored tokens) as rows of `hamstr_state`, by kind, name and
//! key. What advances a unit's state is fenced: its transaction first checks, with the
//! row locked `FOR SHARE`, that this instance still holds the unit's lease at the epoch
//! it claimed, and commits nothing otherwise. A page with rows staged by a `postgres`
//! sink on this database ([`super::staged`]) commits those rows in the same transaction.

pub use super::fence::Fence;
use super::pool::{db, Job, Pool};
use super::staged::{StagedRows, Staging};
use crate::state::{
    KeyEntry, Lease, PageCommit, Prune, Result, SourceMeta, StateError, StateStore, STATE_VERSION,
};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

/// The state in the cluster database; fenced when made with a [`Fence`].
pub struct PgStore {
    pool: Arc<Pool>,
    fence: Option<Arc<Fence>>,
    /// Rows of `postgres` sinks on this database, waiting for their page's commit.
    staging: Staging,
}

/// Removes an entry of a generic space (`kv_apply`'s rows): a `postgres` sink on this
/// database removes a queued page's entry in the transaction that writes its rows.
pub const KV_REMOVE: &str = "DELETE FROM hamstr_state WHERE kind = 'kv' AND name = $1 AND key = $2";

/// A row of `hamstr_state`: kind, name, key.
pub(super) type Row = (&'static str, String, Vec<u8>);

/// A row to write (`Some`) or delete (`None`).
pub(super) type Write = (Row, Option<Vec<u8>>);

/// An index entry below the bound, its key, and that key's entry if it has one.
type Indexed = (Vec<u8>, Vec<u8>, Option<Vec<u8>>);

impl PgStore {
    pub fn new(pool: Arc<Pool>, fence: Option<Arc<Fence>>) -> PgStore {
        PgStore {
            pool,
            fence,
            staging: Staging::default(),
        }
    }

    fn run<T: Send + 'static>(&self, job: Job<T>) -> Result<T> {
        self.pool.run(job)
    }

    /// The lease to check in a transaction, if this store is fenced.
    fn lease(&self, source: &str) -> Result<Option<(String, i64, i64)>> {
        match &self.fence {
            None => Ok(None),
            Some(f) => {
                let (unit, epoch) = f.check(source)?;
                Ok(Some((unit, f.instance, epoch)))
            }
        }
    }

    /// Applies `writes` in one transaction, after the lease check when fenced.
    fn write(&self, source: &str, writes: Vec<Write>) -> Result<()> {
        self.write_with_rows(source, Vec::new(), writes)
    }

    /// Writes `rows` a `postgres` sink staged, then applies `writes`, in one transaction,
    /// after the lease check when fenced.
    fn write_with_rows(
        &self,
        source: &str,
        rows: Vec<Box<dyn StagedRows>>,
        writes: Vec<Write>,
    ) -> Result<()> {
        let lease = self.lease(source)?;
        self.run(Box::new(move |c| {
            Box::pin(async move {
                let started = std::time::Instant::now();
                let tx = c.transaction().await.map_err(db)?;
                if let Some((unit, owner, epoch)) = &lease {
                    check_lease(&tx, unit, *owner, *epoch).await?;
                }
                if !rows.is_empty() {
                    // As the sink's own connection does: a timestamp column without a
                    // zone holds UTC.
                    tx.batch_execute("SET LOCAL TIME ZONE 'UTC'")
                        .await
                        .map_err(db)?;
                }
                for r in &rows {
                    r.write(&tx).await.map_err(StateError::Io)?;
                }
                apply(&tx, writes).await?;
                tx.commit().await.map_err(db)?;
                if lease.is_some() {
                    committed(started);
                }
                Ok(())
            })
        }))
    }

    /// The rows a page's commit writes, in the order of the sled store's commit.
    fn writes_of(source: &str, page: &PageCommit, meta: &SourceMeta) -> Result<Vec<Write>> {
        let encode = |v: &Json| serde_json::to_vec(v).map_err(|e| StateError::Io(e.to_string()));
        let mut writes: Vec<Write> = Vec::new();
        // The order of the sled store's commit: child requests, rejections, keys, the
        // index, the watermark.
        for (child, key, record) in &page.child_requests {
            writes.push((("queue", child.clone(), key.clone()), Some(encode(record)?)));
        }
        for (k, v) in &page.rejected {
            writes.push((
                ("rejected", source.to_string(), k.clone()),
                Some(encode(v)?),
            ));
        }
        for k in &page.unrejected {
            writes.push((("rejected", source.to_string(), k.clone()), None));
        }
        for (k, e) in &page.keys {
            writes.push((("keys", source.to_string(), k.clone()), Some(e.encode())));
        }
        for (at, k) in &page.index {
            writes.push((("keyidx", source.to_string(), at.clone()), Some(k.clone())));
        }
        writes.push((
            ("meta", source.to_string(), Vec::new()),
            Some(Self::meta_bytes(meta)?),
        ));
        Ok(writes)
    }

    fn get(&self, kind: &'static str, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let (name, key) = (name.to_string(), key.to_vec());
        self.run(Box::new(move |c| {
            Box::pin(async move {
                let rows = c
                    .query_typed(
                        "SELECT value FROM hamstr_state WHERE kind = $1 AND name = $2 AND key = $3",
                        &[
                            (&kind, Type::TEXT),
                            (&name, Type::TEXT),
                            (&key, Type::BYTEA),
                        ],
                    )
                    .await
                    .map_err(db)?;
                Ok(rows.first().map(|r| r.get::<_, Vec<u8>>(0)))
            })
        }))
    }

    /// Up to `limit` rows of a kind and name in key order, from `from` (inclusive) or
    /// after `after` (exclusive).
    fn scan(
        &self,
        kind: &'static str,
        name: &str,
        from: Option<(Vec<u8>, bool)>,
        limit: Option<usize>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let name = name.to_string();
        let limit = limit.map_or(i64::MAX, |l| l as i64);
        self.run(Box::new(move |c| {
            Box::pin(async move {
                let (start, inclusive) = from.unwrap_or((Vec::new(), true));
                let op = if inclusive { ">=" } else { ">" };
                let sql = format!(
                    "SELECT key, value FROM hamstr_state WHERE kind = $1 AND name = $2 AND key {op} $3 ORDER BY key LIMIT $4"
                );
                let rows = c
                    .query_typed(
                        &sql,
                        &[
                            (&kind, Type::TEXT),
                            (&name, Type::TEXT),
                            (&start, Type::BYTEA),
                            (&limit, Type::INT8),
                        ],
                    )
                    .await
                    .map_err(db)?;
                Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            })
        }))
    }

    fn count(&self, kind: &'static str, name: &str) -> Result<usize> {
        let name = name.to_string();
        self.run(Box::new(move |c| {
            Box::pin(async move {
                let rows = c
                    .query_typed(
                        "SELECT count(*) FROM hamstr_state WHERE kind = $1 AND name = $2",
                        &[(&kind, Type::TEXT), (&name, Type::TEXT)],
                    )
                    .await
                    .map_err(db)?;
                Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)) as usize)
            })
        }))
    }

    fn meta_bytes(meta: &SourceMeta) -> Result<Vec<u8>> {
        let mut m = meta.clone();
        m.version = STATE_VERSION;
        serde_json::to_vec(&m).map_err(|e| StateError::Io(e.to_string()))
    }
}

/// What the lease checks of this process's fenced transactions cost: how many, and
/// their time in nanoseconds (the statement's round trip, its row lock included).
/// Reported when the instance leaves the cluster, and read by `benches/cluster.sh`.
pub static LEASE_CHECKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static LEASE_CHECK_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// The fenced transactions that committed, and their whole time in nanoseconds.
pub static FENCED_COMMITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static FENCED_COMMIT_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts a fenced transaction that committed, begun at `started`.
fn committed(started: std::time::Instant) {
    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    FENCED_COMMITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    FENCED_COMMIT_NANOS.fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
}

/// Refuses (rolls back) unless `owner` still holds `unit` at `epoch` with time left.
async fn check_lease(tx: &Transaction<'_>, unit: &str, owner: i64, epoch: i64) -> Result<()> {
    let started = std::time::Instant::now();
    let held = tx
        .query_typed(
            "SELECT 1 FROM hamstr_units WHERE unit = $1 AND owner = $2 AND epoch = $3 AND lease_until > now() FOR SHARE",
            &[(&unit, Type::TEXT), (&owner, Type::INT8), (&epoch, Type::INT8)],
        )
        .await
        .map_err(db);
    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    LEASE_CHECKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    LEASE_CHECK_NANOS.fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
    let held = held?;
    if held.is_empty() {
        tracing::warn!(unit = %unit, epoch, "fenced: a commit was refused, the lease is no longer this instance's");
        return Err(StateError::Fenced {
            name: unit.to_string(),
        });
    }
    Ok(())
}

/// Writes rows in the order given (a later write of a row wins), as one upsert and one
/// delete.
async fn apply(tx: &Transaction<'_>, writes: Vec<Write>) -> Result<()> {
    let mut last: BTreeMap<Row, Option<Vec<u8>>> = BTreeMap::new();
    for (at, value) in writes {
        last.insert(at, value);
    }
    let (mut kinds, mut names, mut keys, mut values) = (vec![], vec![], vec![], vec![]);
    let (mut dkinds, mut dnames, mut dkeys) = (vec![], vec![], vec![]);
    for ((kind, name, key), value) in last {
        match value {
            Some(v) => {
                kinds.push(kind.to_string());
                names.push(name);
                keys.push(key);
                values.push(v);
            }
            None => {
                dkinds.push(kind.to_string());
                dnames.push(name);
                dkeys.push(key);
            }
        }
    }
    if !kinds.is_empty() {
        tx.query_typed(
            "INSERT INTO hamstr_state (kind, name, key, value)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[])
             ON CONFLICT (kind, name, key) DO UPDATE SET value = excluded.value",
            &[
                (&kinds, Type::TEXT_ARRAY),
                (&names, Type::TEXT_ARRAY),
                (&keys, Type::BYTEA_ARRAY),
                (&values, Type::BYTEA_ARRAY),
            ],
        )
        .await
        .map_err(db)?;
    }
    if !dkinds.is_empty() {
        tx.query_typed(
            "DELETE FROM hamstr_state s USING unnest($1::text[], $2::text[], $3::bytea[]) AS d(kind, name, key)
             WHERE s.kind = d.kind AND s.name = d.name AND s.key = d.key",
            &[
                (&dkinds, Type::TEXT_ARRAY),
                (&dnames, Type::TEXT_ARRAY),
                (&dkeys, Type::BYTEA_ARRAY),
            ],
        )
        .await
        .map_err(db)?;
    }
    Ok(())
}

fn damaged(what: String) -> impl FnOnce(serde_json::Error) -> StateError {
    move |e| StateError::Damaged {
        what,
        reason: e.to_string(),
    }
}

impl StateStore for PgStore {
    fn meta(&self, source: &str) -> Result<SourceMeta> {
        match self.get("meta", source, b"")? {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(damaged(format!("source `{source}`")))
            }
            None => Ok(SourceMeta {
                version: STATE_VERSION,
                ..SourceMeta::default()
            }),
        }
    }

    fn put_meta(&self, source: &str, meta: &SourceMeta) -> Result<()> {
        let bytes = Self::meta_bytes(meta)?;
        self.write(
            source,
            vec![(("meta", source.to_string(), Vec::new()), Some(bytes))],
        )
    }

    fn key(&self, source: &str, key: &[u8]) -> Result<Option<KeyEntry>> {
        Ok(self
            .get("keys", source, key)?
            .and_then(|b| KeyEntry::decode(&b)))
    }

    fn commit(&self, source: &str, page: &PageCommit, meta: &SourceMeta) -> Result<()> {
        let writes = Self::writes_of(source, page, meta)?;
        self.write(source, writes)
    }

    fn stage(&self, source: &str, page: u64, rows: Box<dyn StagedRows>) -> bool {
        self.staging.stage(source, page, rows);
        true
    }

    fn commit_part(
        &self,
        source: &str,
        page: u64,
        last: bool,
        commit: &PageCommit,
        meta: &SourceMeta,
    ) -> Result<()> {
        if !self.staging.has(source, page) {
            // Pages of the source staged before this one were abandoned.
            self.staging.discard(source, page);
            return self.commit(source, commit, meta);
        }
        let writes = Self::writes_of(source, commit, meta)?;
        if !last {
            self.staging.buffer(source, page, writes);
            return Ok(());
        }
        // Taken out first: whatever happens below, the page is staged no more.
        let staged = self.staging.take(source, page).unwrap_or_default();
        let mut all = staged.parts;
        all.extend(writes);
        self.write_with_rows(source, staged.rows, all)
    }

    fn discard(&self, source: &str, page: u64) {
        self.staging.discard(source, page);
    }

    fn database(&self) -> Option<String> {
        Some(self.pool.database())
    }

    fn prune_keys(&self, source: &str, prune: &Prune, full: bool) -> Result<usize> {
        // Read, decide here (the predicates are this thread's), then write fenced.
        let mut writes: Vec<Write> = Vec::new();
        let mut removed = 0;
        if full {
            for (k, v) in self.scan("keys", source, None, None)? {
                let Some(KeyEntry {
                    cursor: Some(c), ..
                }) = KeyEntry::decode(&v)
                else {
                    continue;
                };
                if (prune.below)(&c) {
                    writes.push((("keys", source.to_string(), k), None));
                    removed += 1;
                } else if let Some(mut at) = (prune.order)(&c) {
                    at.extend_from_slice(&k);
                    writes.push((("keyidx", source.to_string(), at), Some(k)));
                }
            }
        } else {
            let (name, bound) = (source.to_string(), prune.bound.to_vec());
            let rows: Vec<Indexed> = self.run(Box::new(move |c| {
                Box::pin(async move {
                    let rows = c
                        .query_typed(
                            "SELECT i.key, i.value, k.value FROM hamstr_state i
                             LEFT JOIN hamstr_state k ON k.kind = 'keys' AND k.name = i.name AND k.key = i.value
                             WHERE i.kind = 'keyidx' AND i.name = $1 AND i.key < $2",
                            &[(&name, Type::TEXT), (&bound, Type::BYTEA)],
                        )
                        .await
                        .map_err(db)?;
                    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
                })
            }))?;
            for (at, key, entry) in rows {
                writes.push((("keyidx", source.to_string(), at), None));
                let below = entry
                    .and_then(|v| KeyEntry::decode(&v))
                    .and_then(|e| e.cursor)
                    .is_some_and(|c| (prune.below)(&c));
                if below {
                    writes.push((("keys", source.to_string(), key), None));
                    removed += 1;
                }
            }
        }
        if !writes.is_empty() {
            self.write(source, writes)?;
        }
        Ok(removed)
    }

    fn key_count(&self, source: &str) -> Result<usize> {
        self.count("keys", source)
    }

    fn keys(&self, source: &str) -> Result<Vec<(Vec<u8>, KeyEntry)>> {
        self.scan("keys", source, None, None)?
            .into_iter()
            .map(|(k, v)| {
                let entry = KeyEntry::decode(&v).ok_or_else(|| StateError::Damaged {
                    what: format!("the keys of `{source}`"),
                    reason: "an entry does not decode".into(),
                })?;
                Ok((k, entry))
            })
            .collect()
    }

    fn rejected(&self, source: &str) -> Result<Vec<Json>> {
        self.scan("rejected", source, None, None)?
            .into_iter()
            .map(|(_, v)| {
                serde_json::from_slice(&v)
                    .map_err(damaged(format!("rejected records of `{source}`")))
            })
            .collect()
    }

    fn rejected_keys(&self, source: &str) -> Result<std::collections::HashSet<Vec<u8>>> {
        Ok(self
            .scan("rejected", source, None, None)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    fn child_queue(&self, child: &str) -> Result<Vec<(Vec<u8>, Json)>> {
        self.scan("queue", child, None, None)?
            .into_iter()
            .map(|(k, v)| {
                let record = serde_json::from_slice(&v)
                    .map_err(damaged(format!("child requests of `{child}`")))?;
                Ok((k, record))
            })
            .collect()
    }

    fn child_done(&self, child: &str, parent_key: &[u8]) -> Result<()> {
        self.write(
            child,
            vec![(("queue", child.to_string(), parent_key.to_vec()), None)],
        )
    }

    fn reset(&self, source: &str) -> Result<()> {
        let lease = self.lease(source)?;
        let name = source.to_string();
        self.run(Box::new(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await.map_err(db)?;
                if let Some((unit, owner, epoch)) = &lease {
                    check_lease(&tx, unit, *owner, *epoch).await?;
                }
                tx.query_typed(
                    "DELETE FROM hamstr_state WHERE name = $1 AND kind IN ('keys', 'keyidx', 'rejected', 'queue', 'meta')",
                    &[(&name, Type::TEXT)],
                )
                .await
                .map_err(db)?;
                tx.commit().await.map_err(db)
            })
        }))
    }

    fn sink_upsert(&self, tree: &str, records: &[(&[u8], &[u8])]) -> Result<()> {
        let writes = records
            .iter()
            .map(|&(k, v)| (("sink", tree.to_string(), k.to_vec()), Some(v.to_vec())))
            .collect();
        self.run(Box::new(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await.map_err(db)?;
                apply(&tx, writes).await?;
                tx.commit().await.map_err(db)
            })
        }))
    }

    fn sink_records(&self, tree: &str) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .scan("sink", tree, None, None)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    fn sink_records_after(
        &self,
        tree: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan(
            "sink",
            tree,
            after.map(|k| (k.to_vec(), false)),
            Some(limit),
        )
    }

    fn sink_len(&self, tree: &str) -> Result<usize> {
        self.count("sink", tree)
    }

    fn next_id(&self) -> Result<u64> {
        self.run(Box::new(|c| {
            Box::pin(async move {
                let rows = c
                    .query_typed("SELECT nextval('hamstr_ids')", &[])
                    .await
                    .map_err(db)?;
                Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)) as u64)
            })
        }))
    }

    fn flush(&self) -> Result<()> {
        // Every write was committed when it returned.
        Ok(())
    }

    fn kv_get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get("kv", space, key)
    }

    fn kv_apply(&self, space: &str, ops: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
        let writes = ops
            .iter()
            .map(|(k, v)| (("kv", space.to_string(), k.clone()), v.clone()))
            .collect();
        self.run(Box::new(move |c| {
            Box::pin(async move {
                let tx = c.transaction().await.map_err(db)?;
                apply(&tx, writes).await?;
                tx.commit().await.map_err(db)
            })
        }))
    }

    fn kv_scan(&self, space: &str, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan("kv", space, None, Some(limit))
    }

    fn kv_scan_from(
        &self,
        space: &str,
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan("kv", space, Some((start.to_vec(), true)), Some(limit))
    }

    fn kv_len(&self, space: &str) -> Result<usize> {
        self.count("kv", space)
    }

    fn fence(&self, source: &str) -> Result<()> {
        match &self.fence {
            Some(f) => f.check(source).map(drop),
            None => Ok(()),
        }
    }

    fn lease_of(&self, source: &str) -> Result<Option<Lease>> {
        Ok(self.lease(source)?.map(|(unit, owner, epoch)| Lease {
            database: self.pool.database(),
            unit,
            owner,
            epoch,
        }))
    }
}
