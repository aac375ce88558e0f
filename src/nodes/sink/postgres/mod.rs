//! The `postgres(url, table = ..., batch = N)` sink: connects lazily (TLS as the URL's
//! `sslmode` and `sslrootcert` ask, see [`crate::pg_tls`]), creates or checks the table on
//! first connect, and writes each page in one transaction as
//! upserts (keyed records) or inserts, `batch` rows per statement. The password of the
//! URL never appears in its errors. On a cluster's own database, a page's rows are
//! written by the store in the page's commit instead ([`PgWriter::fenced_by`]).

mod cells;
mod table;

pub use table::{ident, sql_type, Column, Table};

use super::{Origin, SinkWriter, WriteError, WriteFuture};
use crate::check::postgres_url;
use crate::check::{Schema, Text};
use crate::cluster::staged::StagedFuture;
use crate::masking::Masker;
use crate::nodes::extract::Emitted;
use crate::state::{Lease, StagedRows, StateStore};
use cells::{push_record, Cells};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;
use table::Failure;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Statement, Transaction};

/// How long a connection attempt may take before the page goes to the queue.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct PgWriter {
    sink: String,
    config: Config,
    tls: crate::pg_tls::Tls,
    /// The URL with its password masked, to say which database an error is about.
    shown_url: String,
    masker: Masker,
    table: Table,
    batch: usize,
    conn: Option<Conn>,
    /// The table was created or found fitting on this writer's connection so far.
    table_ready: bool,
    /// In a cluster, the store that says which lease a page's write must still hold.
    leases: Option<Arc<dyn StateStore>>,
    /// The database this sink writes to, as leases name theirs.
    database: String,
    /// Set by a staged write the database refused: the table is checked again.
    table_lost: Arc<AtomicBool>,
}

struct Conn {
    client: Client,
    insert: Statement,
}

impl PgWriter {
    /// A writer for sink `sink`; it connects on its first write. `Err` when the URL
    /// cannot be used at all (an unknown `sslmode`, or it does not parse).
    pub fn new(
        sink: &str,
        url: &Text,
        table: &str,
        batch: u32,
        schema: &Schema,
    ) -> Result<PgWriter, String> {
        let (shown_url, masker) = postgres_url::mask_for(&url.value);
        let crate::pg_tls::Target { mut config, tls } = postgres_url::usable_url(&url.value)
            .map_err(|why| format!("sink `{sink}`: the database URL {shown_url} {why}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("hamstr");
        }
        let database = postgres_url::database_key(&config);
        Ok(PgWriter {
            sink: sink.to_string(),
            leases: None,
            database,
            config,
            tls,
            shown_url,
            masker,
            table: Table::new(table, schema),
            batch: batch.max(1) as usize,
            conn: None,
            table_ready: false,
            table_lost: Arc::new(AtomicBool::new(false)),
        })
    }

    /// In a cluster (spec §14): when this sink writes to the cluster's own database, a
    /// page of a leased unit is staged in `store`, which writes its rows in the page's
    /// commit, after the lease check and with the state (exactly once across instances);
    /// a queued page is written in the transaction that removes its entry.
    pub fn fenced_by(mut self, store: Arc<dyn StateStore>) -> PgWriter {
        self.leases = Some(store);
        self
    }

    /// A connection, made (with the table created or checked) when there is none.
    async fn connect(&mut self) -> Result<&mut Conn, Failure> {
        if self.conn.is_none() {
            // Built for each connection: a CA file fixed meanwhile is read again.
            let tls = self.tls.connector().map_err(Failure::Tls)?;
            let (client, connection) = self.config.connect(tls).await.map_err(Failure::Db)?;
            let sink = self.sink.clone();
            let masker = self.masker.clone();
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(sink = %sink, error = %masker.mask(&error_text(&e)), "database connection closed");
                }
            });
            // Timestamps without a zone (an existing table's choice) then hold UTC.
            client
                .batch_execute("SET TIME ZONE 'UTC'")
                .await
                .map_err(Failure::Db)?;
            if !self.table_ready {
                if self.table.ensure(&client).await? {
                    tracing::info!(sink = %self.sink, table = %self.table.shown(), "created the table");
                }
                self.table_ready = true;
            }
            let insert = client
                .prepare(&self.table.insert_sql())
                .await
                .map_err(Failure::Db)?;
            self.conn = Some(Conn { client, insert });
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Writes a page's rows in one transaction, `batch` rows per statement, after what
    /// `guard` checks.
    async fn write_page(
        &mut self,
        cols: &[Cells],
        rows: usize,
        guard: Guard<'_>,
    ) -> Result<(), Failure> {
        let batch = self.batch;
        let conn = self.connect().await?;
        let tx = conn.client.transaction().await.map_err(Failure::Db)?;
        match guard {
            Guard::None => {}
            Guard::Lease(l) => {
                let held = tx
                    .query(
                        "SELECT 1 FROM hamstr_units WHERE unit = $1 AND owner = $2 AND epoch = $3 AND lease_until > now() FOR SHARE",
                        &[&l.unit, &l.owner, &l.epoch],
                    )
                    .await
                    .map_err(Failure::Db)?;
                if held.is_empty() {
                    return Err(Failure::Fenced(format!(
                        "fenced: the lease of unit `{}` (epoch {}) is no longer this instance's",
                        l.unit, l.epoch
                    )));
                }
            }
            Guard::Entry { space, id } => {
                // Whoever removes the entry writes the rows: another instance draining
                // the same queue found it first when there is nothing to remove.
                let removed = tx
                    .execute(crate::cluster::store::KV_REMOVE, &[&space, &id])
                    .await
                    .map_err(Failure::Db)?;
                if removed == 0 {
                    return Ok(());
                }
            }
        }
        insert(&tx, &conn.insert, cols, rows, batch)
            .await
            .map_err(Failure::Db)?;
        tx.commit().await.map_err(Failure::Db)
    }

    /// Hands a page's rows to the store, to be written in the page's commit (spec §14),
    /// once the table was created or checked on this writer's connection.
    async fn stage(
        &mut self,
        store: &Arc<dyn StateStore>,
        source: &str,
        page: u64,
        cols: Vec<Cells>,
        rows: usize,
    ) -> Result<(), WriteError> {
        // A staged write found the table changed: checked again, as a failed write of
        // the sink's own would have it.
        if self.table_lost.swap(false, AtomicOrdering::SeqCst) {
            self.table_ready = false;
            self.conn = None;
        }
        if !self.table_ready {
            if let Err(f) = self.connect().await {
                self.conn = None;
                return Err(self.describe(&f).into());
            }
        }
        let staged = Box::new(Staged {
            sink: self.sink.clone(),
            table: self.table.shown(),
            sql: self.table.insert_sql(),
            cols,
            rows,
            batch: self.batch,
            lost: self.table_lost.clone(),
        });
        if store.stage(source, page, staged) {
            Ok(())
        } else {
            // Not so for a store that gives leases: it takes what it fences.
            Err(WriteError::Failed(format!(
                "sink `{}`: the state store took no rows to commit",
                self.sink
            )))
        }
    }

    /// The page as typed columns: keyed records deduplicated (the last one of a key
    /// wins, as it would row by row), in their order.
    fn columns(
        &self,
        names: &[String],
        records: &[Emitted],
    ) -> Result<(Vec<Cells>, usize), String> {
        let keep: Vec<&Emitted> = if self.table.key.is_empty() {
            records.iter().collect()
        } else {
            let mut last: HashMap<&[u8], usize> = HashMap::with_capacity(records.len());
            for (i, r) in records.iter().enumerate() {
                last.insert(r.key.as_deref().unwrap_or(&r.json), i);
            }
            records
                .iter()
                .enumerate()
                .filter(|(i, r)| last.get(r.key.as_deref().unwrap_or(&r.json)) == Some(i))
                .map(|(_, r)| r)
                .collect()
        };
        let columns: Vec<String> = self.table.columns.iter().map(|c| c.name.clone()).collect();
        if let Some(missing) = columns.iter().find(|n| !names.contains(n)) {
            return Err(format!(
                "sink `{}`: records without field `{missing}` reached it",
                self.sink
            ));
        }
        let mut cols: Vec<Cells> = self
            .table
            .columns
            .iter()
            .map(|c| Cells::new(c.ty, keep.len()))
            .collect();
        for r in &keep {
            push_record(&mut cols, &columns, &r.json)
                .map_err(|e| format!("sink `{}`: a record that does not fit: {e}", self.sink))?;
        }
        Ok((cols, keep.len()))
    }

    /// A failure as a message: database errors carry the server's own words; the URL's
    /// password is masked.
    fn describe(&self, f: &Failure) -> String {
        let text = match f {
            Failure::Db(e) => format!(
                "sink `{}` ({}, table `{}`): {}",
                self.sink,
                self.shown_url,
                self.table.shown(),
                error_text(e)
            ),
            Failure::Table(msg) | Failure::Fenced(msg) | Failure::Tls(msg) => {
                format!("sink `{}` ({}): {msg}", self.sink, self.shown_url)
            }
        };
        self.masker.mask(&text)
    }
}

impl SinkWriter for PgWriter {
    fn write<'a>(
        &'a mut self,
        _source: &'a str,
        names: &'a [String],
        records: &'a Arc<Vec<Emitted>>,
    ) -> WriteFuture<'a> {
        self.write_for("", Origin::Page(0), names, records)
    }

    fn write_for<'a>(
        &'a mut self,
        source: &'a str,
        origin: Origin<'a>,
        names: &'a [String],
        records: &'a Arc<Vec<Emitted>>,
    ) -> WriteFuture<'a> {
        Box::pin(async move {
            // The lease of a page in flight: only for a source of a cluster whose database
            // this is.
            let lease = match (&self.leases, origin) {
                (Some(store), Origin::Page(_)) if !source.is_empty() => {
                    match store.lease_of(source) {
                        Ok(lease) => lease.filter(|l| l.database == self.database),
                        Err(e) => return Err(WriteError::Fenced(e.to_string())),
                    }
                }
                _ => None,
            };
            // A queued page on the cluster's database: its entry goes in the rows' own
            // transaction.
            let entry = match origin {
                Origin::Queued { space, id }
                    if self.leases.as_ref().and_then(|s| s.database()).as_deref()
                        == Some(self.database.as_str()) =>
                {
                    Some((space, id))
                }
                _ => None,
            };
            if let (Some(_), Origin::Page(page), Some(store)) =
                (&lease, origin, self.leases.clone())
            {
                // Rows commit with the page's state or not at all: what fails here is not
                // queued (a queue entry would be a transaction of its own).
                let (cols, rows) = self.columns(names, records).map_err(WriteError::Refused)?;
                if rows == 0 {
                    return Ok(());
                }
                return self
                    .stage(&store, source, page, cols, rows)
                    .await
                    .map_err(|e| WriteError::Refused(e.to_string()));
            }
            let (cols, rows) = self.columns(names, records)?;
            if rows == 0 {
                return Ok(());
            }
            let guard = match (&lease, entry) {
                (Some(l), _) => Guard::Lease(l),
                (None, Some((space, id))) => Guard::Entry { space, id },
                (None, None) => Guard::None,
            };
            let mut retried = false;
            loop {
                let reused = self.conn.is_some();
                let Err(f) = self.write_page(&cols, rows, guard).await else {
                    return Ok(());
                };
                if let Failure::Fenced(e) = f {
                    // The transaction rolled back with the connection's next use.
                    return Err(WriteError::Fenced(e));
                }
                let closed = self.conn.as_ref().is_none_or(|c| c.client.is_closed());
                // Start afresh after any failure: a new connection, the table checked
                // again (it may have been altered or dropped meanwhile).
                self.conn = None;
                if matches!(f, Failure::Db(ref e) if e.as_db_error().is_some())
                    || matches!(f, Failure::Table(_))
                {
                    self.table_ready = false;
                }
                // A pooled connection the server closed (a restart) gets one more try
                // on a new one before the page goes to the queue.
                if reused && closed && !retried {
                    retried = true;
                    continue;
                }
                return Err(self.describe(&f).into());
            }
        })
    }
}

/// What a page's transaction checks before its rows.
#[derive(Clone, Copy)]
enum Guard<'a> {
    None,
    /// The source's lease, in a cluster.
    Lease(&'a Lease),
    /// The page's entry in the sink's queue on the cluster's database, removed with it.
    Entry {
        space: &'a str,
        id: &'a [u8],
    },
}

/// Inserts `rows` rows of `cols` with `insert`, `batch` rows per statement.
async fn insert(
    tx: &Transaction<'_>,
    insert: &Statement,
    cols: &[Cells],
    rows: usize,
    batch: usize,
) -> Result<(), tokio_postgres::Error> {
    let mut start = 0;
    while start < rows {
        let end = (start + batch).min(rows);
        let params: Vec<Box<dyn ToSql + Sync + Send + '_>> =
            cols.iter().map(|c| c.slice(start..end)).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        tx.execute(insert, &refs).await?;
        start = end;
    }
    Ok(())
}

/// A page's rows staged for its commit: written by the store in that transaction.
struct Staged {
    sink: String,
    table: String,
    sql: String,
    cols: Vec<Cells>,
    rows: usize,
    batch: usize,
    /// Set when the database refused the rows: the writer checks its table again.
    lost: Arc<AtomicBool>,
}

impl StagedRows for Staged {
    fn write<'t>(&'t self, tx: &'t Transaction<'t>) -> StagedFuture<'t> {
        Box::pin(async move {
            let written = async {
                let mut start = 0;
                while start < self.rows {
                    let end = (start + self.batch).min(self.rows);
                    let params: Vec<_> = self
                        .cols
                        .iter()
                        .map(|c| (c.slice(start..end), c.array_type()))
                        .collect();
                    let typed: Vec<(&(dyn ToSql + Sync), tokio_postgres::types::Type)> = params
                        .iter()
                        .map(|(p, t)| (p.as_ref() as &(dyn ToSql + Sync), t.clone()))
                        .collect();
                    tx.query_typed(&self.sql, &typed).await?;
                    start = end;
                }
                Ok::<(), tokio_postgres::Error>(())
            }
            .await;
            written.map_err(|e| {
                if e.as_db_error().is_some() {
                    self.lost.store(true, AtomicOrdering::SeqCst);
                }
                format!(
                    "sink `{}` (table `{}`): {}",
                    self.sink,
                    self.table,
                    error_text(&e)
                )
            })
        })
    }
}

/// A tokio-postgres error with its cause: the server's message, detail and hint for
/// database errors.
pub use crate::pg_tls::error_text;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_masked() {
        let (shown, masker) = postgres_url::mask_for("postgres://app:p%40ss@db.local:5432/shop");
        assert_eq!(shown, "postgres://app:***@db.local:5432/shop");
        assert_eq!(masker.mask("auth p@ss / p%40ss"), "auth *** / ***");
    }

    #[test]
    fn an_unknown_sslmode_is_refused_clearly_and_tls_modes_are_taken() {
        let schema = Schema {
            fields: vec![("id".into(), crate::check::Type::String, false)],
            key: vec![],
        };
        let writer = |url: &str| PgWriter::new("db", &Text::plain(url), "t", 10, &schema);
        let err = writer("postgres://u:hunter2@h/db?sslmode=sometimes")
            .err()
            .unwrap();
        assert!(err.contains("sslmode=sometimes"), "{err}");
        assert!(err.contains("postgres://u:***@h/db"), "{err}");
        assert!(!err.contains("hunter2"));
        for mode in ["disable", "prefer", "require", "verify-full"] {
            assert!(
                writer(&format!("postgres://u@h/db?sslmode={mode}")).is_ok(),
                "{mode}"
            );
        }
    }
}
