//! The cluster's tables, created and migrated under an advisory lock so that instances
//! starting together do not race; the version reached is kept in `hamstr_schema`.

use super::pool::{db, Pool};
use crate::state::{Result, StateError};

/// The advisory lock the migrations hold (an arbitrary constant: "hamstr" in ASCII).
const MIGRATION_LOCK: i64 = 0x68616d737472;

/// The migrations, in order: the schema's version is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: instances, leased units, state by kind and name, the instance ids.
    "CREATE TABLE hamstr_instances (
        id bigint PRIMARY KEY,
        host text NOT NULL,
        pid integer NOT NULL,
        started timestamptz NOT NULL DEFAULT now(),
        heartbeat timestamptz NOT NULL DEFAULT now(),
        mismatches text NOT NULL DEFAULT ''
    );
    CREATE TABLE hamstr_units (
        unit text PRIMARY KEY,
        owner bigint,
        epoch bigint NOT NULL DEFAULT 0,
        lease_until timestamptz,
        version text NOT NULL DEFAULT '',
        claimed_at timestamptz
    );
    CREATE TABLE hamstr_state (
        kind text NOT NULL,
        name text NOT NULL,
        key bytea NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (kind, name, key)
    );
    CREATE SEQUENCE hamstr_instance_ids;
    CREATE SEQUENCE hamstr_ids;",
];

/// Brings the database's tables to the newest version; a database migrated by a newer
/// hamstr is refused.
pub fn migrate(pool: &Pool) -> Result<()> {
    pool.run(Box::new(|c| {
        Box::pin(async move {
            let tx = c.transaction().await.map_err(db)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(db)?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS hamstr_schema (version integer NOT NULL)")
                .await
                .map_err(db)?;
            let found: i32 = match tx
                .query_opt("SELECT version FROM hamstr_schema", &[])
                .await
                .map_err(db)?
            {
                Some(row) => row.get(0),
                None => {
                    tx.execute("INSERT INTO hamstr_schema VALUES (0)", &[])
                        .await
                        .map_err(db)?;
                    0
                }
            };
            let newest = MIGRATIONS.len() as i32;
            if found > newest {
                return Err(StateError::TooNew {
                    found: found as u32,
                });
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
                tx.batch_execute(sql).await.map_err(db)?;
                tracing::info!(version = i + 1, "migrated the cluster database");
            }
            tx.execute("UPDATE hamstr_schema SET version = $1", &[&newest])
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)
        })
    }))
}
