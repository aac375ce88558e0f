//! The lease operations on the cluster database: an instance's registration and
//! heartbeat, the live instances, the units declared, renewed, claimed (`FOR UPDATE SKIP
//! LOCKED`, the epoch raised by one), released, and leaving. Each is one statement or
//! one short transaction.

use super::pool::{db, Pool};
use crate::state::Result;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_postgres::types::Type;

/// A unit's row, as `state --cluster` and the mismatch check read it.
#[derive(Debug, Clone)]
pub struct UnitRow {
    pub unit: String,
    pub owner: Option<i64>,
    pub epoch: i64,
    pub lease_until: Option<chrono::DateTime<chrono::Utc>>,
    pub version: String,
}

/// An instance's row.
#[derive(Debug, Clone)]
pub struct InstanceRow {
    pub id: i64,
    pub host: String,
    pub pid: i32,
    pub heartbeat: chrono::DateTime<chrono::Utc>,
    pub live: bool,
    pub mismatches: String,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The database's identity (its cluster's system identifier and its name): an instance
/// id kept in a data directory is reused only against the same database.
pub fn database_identity(pool: &Pool) -> Result<String> {
    pool.run(Box::new(|c| {
        Box::pin(async move {
            let row = c
                .query_one(
                    "SELECT (SELECT system_identifier FROM pg_control_system())::text || '/' || current_database()",
                    &[],
                )
                .await
                .map_err(db)?;
            Ok(row.get::<_, String>(0))
        })
    }))
}

/// Registers the instance (a new id when `known` is `None`) and returns its id.
pub fn register(pool: &Pool, known: Option<i64>) -> Result<i64> {
    let host = hostname();
    let pid = std::process::id() as i32;
    pool.run(Box::new(move |c| {
        Box::pin(async move {
            let id: i64 = match known {
                Some(id) => id,
                None => c
                    .query_one("SELECT nextval('hamstr_instance_ids')", &[])
                    .await
                    .map_err(db)?
                    .get(0),
            };
            c.execute(
                "INSERT INTO hamstr_instances (id, host, pid) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET host = $2, pid = $3, started = now(), heartbeat = now(), mismatches = ''",
                &[&id, &host, &pid],
            )
            .await
            .map_err(db)?;
            Ok(id)
        })
    }))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Refreshes the heartbeat (registering again if the row went) and the mismatches
/// shown; returns how many instances are live (this one included).
pub async fn heartbeat(pool: &Pool, id: i64, lease: Duration, mismatches: String) -> Result<i64> {
    let host = hostname();
    let pid = std::process::id() as i32;
    pool.run_async(Box::new(move |c| {
        Box::pin(async move {
            c.execute(
                "INSERT INTO hamstr_instances (id, host, pid, mismatches) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET heartbeat = now(), mismatches = $4",
                &[&id, &host, &pid, &mismatches],
            )
            .await
            .map_err(db)?;
            let live = c
                .query_one(
                    "SELECT count(*) FROM hamstr_instances WHERE heartbeat > now() - make_interval(secs => $1)",
                    &[&secs(lease)],
                )
                .await
                .map_err(db)?;
            Ok(live.get(0))
        })
    }))
    .await
}

/// Makes sure each unit has a row.
pub async fn declare(pool: &Pool, versions: &BTreeMap<String, String>) -> Result<()> {
    let (units, vs): (Vec<String>, Vec<String>) = versions.clone().into_iter().unzip();
    pool.run_async(Box::new(move |c| {
        Box::pin(async move {
            c.query_typed(
                "INSERT INTO hamstr_units (unit, version) SELECT * FROM unnest($1::text[], $2::text[])
                 ON CONFLICT (unit) DO NOTHING",
                &[(&units, Type::TEXT_ARRAY), (&vs, Type::TEXT_ARRAY)],
            )
            .await
            .map_err(db)?;
            Ok(())
        })
    }))
    .await
}

/// Extends the leases still this instance's at the epochs it holds (recording the
/// version it runs each at); returns those renewed.
pub async fn renew(
    pool: &Pool,
    id: i64,
    lease: Duration,
    held: Vec<(String, i64, String)>,
) -> Result<Vec<String>> {
    pool.run_async(Box::new(move |c| {
        Box::pin(async move {
            let units: Vec<String> = held.iter().map(|h| h.0.clone()).collect();
            let epochs: Vec<i64> = held.iter().map(|h| h.1).collect();
            let versions: Vec<String> = held.iter().map(|h| h.2.clone()).collect();
            let rows = c
                .query_typed(
                    "UPDATE hamstr_units u SET lease_until = now() + make_interval(secs => $2), version = d.version
                     FROM unnest($3::text[], $4::int8[], $5::text[]) AS d(unit, epoch, version)
                     WHERE u.unit = d.unit AND u.epoch = d.epoch AND u.owner = $1 AND u.lease_until > now()
                     RETURNING u.unit",
                    &[
                        (&id, Type::INT8),
                        (&secs(lease), Type::FLOAT8),
                        (&units, Type::TEXT_ARRAY),
                        (&epochs, Type::INT8_ARRAY),
                        (&versions, Type::TEXT_ARRAY),
                    ],
                )
                .await
                .map_err(db)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }))
    .await
}

/// Claims up to `n` of `wanted` (unit, version) whose lease ran out, that nobody holds,
/// or that a former life of this instance held; each claim raises the epoch by one and
/// records the version this instance runs. Units whose recorded version is this one's
/// come first. Returns (unit, epoch) claimed.
pub async fn claim(
    pool: &Pool,
    id: i64,
    lease: Duration,
    n: i64,
    wanted: Vec<(String, String)>,
) -> Result<Vec<(String, i64)>> {
    pool.run_async(Box::new(move |c| {
        Box::pin(async move {
            let (units, versions): (Vec<String>, Vec<String>) = wanted.into_iter().unzip();
            let tx = c.transaction().await.map_err(db)?;
            let rows = tx
                .query_typed(
                    "WITH free AS (
                       SELECT u.unit FROM hamstr_units u
                       JOIN unnest($4::text[], $5::text[]) AS d(unit, version) ON d.unit = u.unit
                       WHERE u.owner IS NULL OR u.lease_until IS NULL OR u.lease_until <= now()
                          OR (u.owner = $1 AND u.claimed_at < (SELECT started FROM hamstr_instances WHERE id = $1))
                       ORDER BY (u.version = d.version) DESC, u.unit
                       LIMIT $3
                       FOR UPDATE OF u SKIP LOCKED)
                     UPDATE hamstr_units u SET owner = $1, epoch = u.epoch + 1,
                       lease_until = now() + make_interval(secs => $2), claimed_at = now(), version = d.version
                     FROM free, unnest($4::text[], $5::text[]) AS d(unit, version)
                     WHERE u.unit = free.unit AND d.unit = u.unit
                     RETURNING u.unit, u.epoch",
                    &[
                        (&id, Type::INT8),
                        (&secs(lease), Type::FLOAT8),
                        (&n, Type::INT8),
                        (&units, Type::TEXT_ARRAY),
                        (&versions, Type::TEXT_ARRAY),
                    ],
                )
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }))
    .await
}

/// Hands units back at once: another instance may claim them without waiting.
pub async fn release(pool: &Pool, id: i64, units: Vec<String>) -> Result<()> {
    pool.run_async(Box::new(move |c| {
        Box::pin(async move {
            c.query_typed(
                "UPDATE hamstr_units SET owner = NULL, lease_until = NULL WHERE owner = $1 AND unit = ANY($2::text[])",
                &[(&id, Type::INT8), (&units, Type::TEXT_ARRAY)],
            )
            .await
            .map_err(db)?;
            Ok(())
        })
    }))
    .await
}

/// Hands every lease back and removes the instance.
pub async fn leave(pool: &Pool, id: i64) -> Result<()> {
    pool.run_async(Box::new(move |c| {
        Box::pin(async move {
            let tx = c.transaction().await.map_err(db)?;
            tx.execute(
                "UPDATE hamstr_units SET owner = NULL, lease_until = NULL WHERE owner = $1",
                &[&id],
            )
            .await
            .map_err(db)?;
            tx.execute("DELETE FROM hamstr_instances WHERE id = $1", &[&id])
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)
        })
    }))
    .await
}

/// Every unit's row.
pub fn units(pool: &Pool) -> Result<Vec<UnitRow>> {
    pool.run(Box::new(|c| {
        Box::pin(async move {
            let rows = c
                .query(
                    "SELECT unit, owner, epoch, lease_until, version FROM hamstr_units ORDER BY unit",
                    &[],
                )
                .await
                .map_err(db)?;
            Ok(rows
                .iter()
                .map(|r| UnitRow {
                    unit: r.get(0),
                    owner: r.get(1),
                    epoch: r.get(2),
                    lease_until: r.get(3),
                    version: r.get(4),
                })
                .collect())
        })
    }))
}

/// Every instance's row; `live` by the lease period given.
pub fn instances(pool: &Pool, lease: Duration) -> Result<Vec<InstanceRow>> {
    pool.run(Box::new(move |c| {
        Box::pin(async move {
            let rows = c
                .query(
                    "SELECT id, host, pid, heartbeat, heartbeat > now() - make_interval(secs => $1), mismatches
                     FROM hamstr_instances ORDER BY id",
                    &[&secs(lease)],
                )
                .await
                .map_err(db)?;
            Ok(rows
                .iter()
                .map(|r| InstanceRow {
                    id: r.get(0),
                    host: r.get(1),
                    pid: r.get(2),
                    heartbeat: r.get(3),
                    live: r.get(4),
                    mismatches: r.get(5),
                })
                .collect())
        })
    }))
}
