//! Scale-out (spec §14): several `hamstr run --cluster URL` processes share one
//! pipeline through PostgreSQL. [`Cluster::join`] connects, migrates the tables and
//! registers the instance; [`Cluster::lead`] keeps its leases (heartbeat, renew, hand
//! back over its fair share, claim under it) and gives the runtime the plan of only the
//! units it holds; the [`store::PgStore`] fences every commit with the lease's epoch.

mod fence;
mod lease;
mod pool;
mod schema;
pub mod staged;
pub mod store;
pub mod units;

use crate::plan::Plan;
use crate::runtime::Reload;
use crate::state::{Result, StateError, StateStore};
use crate::stop::Stop;
use pool::Pool;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{Fence, PgStore};
use tokio::sync::mpsc;

pub use lease::{InstanceRow, UnitRow};

/// The lease period when `--lease` does not say.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The file in the data directory that keeps the instance's id across restarts.
const INSTANCE_FILE: &str = "cluster-instance";

/// The URL as it may be shown: its password masked.
pub(crate) fn shown(url: &str) -> String {
    crate::check::postgres_url::mask_for(url).0
}

/// This instance's membership of a cluster.
pub struct Cluster {
    pool: Arc<Pool>,
    fence: Arc<Fence>,
    id: i64,
    lease: Duration,
}

impl Cluster {
    /// Connects to `url`, brings its tables up to date and registers the instance, under
    /// the id kept in `data_dir` when it was made for the same database.
    pub fn join(url: &str, data_dir: &Path, lease: Duration) -> Result<Cluster> {
        let pool = Arc::new(Pool::connect(url, Some(lease))?);
        schema::migrate(&pool)?;
        let database = lease::database_identity(&pool)?;
        let file = data_dir.join(INSTANCE_FILE);
        let known = std::fs::read_to_string(&file).ok().and_then(|text| {
            let (db, id) = text.trim().rsplit_once(' ')?;
            (db == database).then(|| id.parse().ok()).flatten()
        });
        let id = lease::register(&pool, known)?;
        if known != Some(id) {
            std::fs::write(&file, format!("{database} {id}\n")).map_err(|e| StateError::Open {
                path: data_dir.display().to_string(),
                reason: format!("cannot keep the instance id: {e}"),
            })?;
        }
        tracing::info!(instance = id, database = %shown(url), "joined the cluster");
        Ok(Cluster {
            pool,
            fence: Arc::new(Fence::new(id)),
            id,
            lease,
        })
    }

    pub fn id(&self) -> i64 {
        self.id
    }

    /// The state store of this instance: the cluster's, fenced by its leases.
    pub fn store(&self) -> Arc<dyn StateStore> {
        Arc::new(PgStore::new(self.pool.clone(), Some(self.fence.clone())))
    }

    /// Keeps the leases until `stop`: every third of the lease period, a heartbeat,
    /// the units declared, held ones renewed, those over the fair share handed back and
    /// those under it claimed; each change of what is held goes to the runtime as the
    /// plan of the held units. New plans of the file arrive on `plans`.
    pub async fn lead(
        &self,
        plan: Plan,
        mut plans: Option<mpsc::Receiver<Reload>>,
        runtime: mpsc::Sender<Reload>,
        stop: Stop,
    ) {
        let mut leader = Leader {
            cluster: self,
            versions: units::versions(&plan),
            plan,
            held: BTreeMap::new(),
            last_renewed: Instant::now(),
            mismatched: BTreeMap::new(),
            runtime,
        };
        self.fence.set_units(units::unit_of(&leader.plan));
        let tick = self.lease / 3;
        loop {
            leader.tick().await;
            tokio::select! {
                _ = stop.stopped() => break,
                _ = tokio::time::sleep(tick) => {}
                reload = next_plan(&mut plans) => match reload {
                    Some(reload) => leader.reload(reload).await,
                    None => plans = None,
                }
            }
        }
    }

    /// Hands every lease back at once and leaves the cluster (at shutdown).
    pub async fn leave(&self) {
        self.fence.clear();
        report_lease_overhead();
        match lease::leave(&self.pool, self.id).await {
            Ok(()) => tracing::info!(instance = self.id, "left the cluster, leases handed back"),
            Err(e) => {
                tracing::warn!(instance = self.id, error = %e, "cannot hand the leases back; they expire")
            }
        }
    }
}

/// The next plan of the file; never, when the file is not watched.
async fn next_plan(plans: &mut Option<mpsc::Receiver<Reload>>) -> Option<Reload> {
    match plans.as_mut() {
        Some(p) => p.recv().await,
        None => std::future::pending().await,
    }
}

/// The lease loop's state.
struct Leader<'a> {
    cluster: &'a Cluster,
    /// The whole plan of this instance's file, and its units' versions.
    plan: Plan,
    versions: BTreeMap<String, String>,
    /// Units held, with their epoch.
    held: BTreeMap<String, i64>,
    /// When a renewal last succeeded (the instant before it was sent).
    last_renewed: Instant,
    /// Units another instance runs with another definition: (their version, owner).
    mismatched: BTreeMap<String, (String, Option<i64>)>,
    runtime: mpsc::Sender<Reload>,
}

impl Leader<'_> {
    async fn tick(&mut self) {
        let c = self.cluster;
        let sent = Instant::now();
        let before: BTreeSet<String> = self.held.keys().cloned().collect();
        if let Err(e) = self.keep(sent).await {
            tracing::warn!(instance = c.id, error = %e, "cannot keep the leases");
            if sent.duration_since(self.last_renewed) >= c.lease && !self.held.is_empty() {
                tracing::error!(
                    instance = c.id,
                    "no lease renewed for a whole lease period: stopping every unit"
                );
                self.held.clear();
                c.fence.clear();
            }
        }
        let after: BTreeSet<String> = self.held.keys().cloned().collect();
        if before != after {
            self.send(Box::new(|| {})).await;
        }
    }

    /// One round: heartbeat, declare, renew, hand back or claim.
    async fn keep(&mut self, sent: Instant) -> Result<()> {
        let c = self.cluster;
        let pool = &c.pool;
        let mismatches = self
            .mismatched
            .iter()
            .map(|(u, (v, o))| match o {
                Some(o) => format!("{u} (instance {o} runs version {v})"),
                None => format!("{u} (version {v} recorded)"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let live = lease::heartbeat(pool, c.id, c.lease, mismatches)
            .await?
            .max(1);
        lease::declare(pool, &self.versions).await?;
        let held: Vec<(String, i64, String)> = self
            .held
            .iter()
            .map(|(u, e)| {
                (
                    u.clone(),
                    *e,
                    self.versions.get(u).cloned().unwrap_or_default(),
                )
            })
            .collect();
        let renewed: BTreeSet<String> = lease::renew(pool, c.id, c.lease, held)
            .await?
            .into_iter()
            .collect();
        self.last_renewed = sent;
        let until = sent + c.lease;
        for (unit, epoch) in std::mem::take(&mut self.held) {
            if renewed.contains(&unit) {
                c.fence.hold(&unit, epoch, until);
                self.held.insert(unit, epoch);
            } else {
                c.fence.drop_unit(&unit);
                tracing::warn!(instance = c.id, unit = %unit, "lost the lease of a unit (it expired or another instance took it)");
            }
        }
        // The fair share: units over live instances, rounded up.
        let total = self.versions.len() as i64;
        let share = (total + live - 1) / live;
        let over = self.held.len() as i64 - share;
        if over > 0 {
            let back: Vec<String> = self
                .held
                .keys()
                .rev()
                .take(over as usize)
                .cloned()
                .collect();
            for u in &back {
                self.held.remove(u);
                c.fence.drop_unit(u);
            }
            tracing::info!(
                instance = c.id,
                units = back.len(),
                live,
                "handing units back for the fair share"
            );
            lease::release(pool, c.id, back).await?;
        } else if over < 0 {
            let wanted: Vec<(String, String)> = self
                .versions
                .iter()
                .filter(|(u, _)| !self.held.contains_key(*u))
                .map(|(u, v)| (u.clone(), v.clone()))
                .collect();
            if !wanted.is_empty() {
                let claimed = lease::claim(pool, c.id, c.lease, -over, wanted).await?;
                for (unit, epoch) in claimed {
                    tracing::info!(instance = c.id, unit = %unit, epoch, "claimed a unit");
                    c.fence.hold(&unit, epoch, sent + c.lease);
                    self.held.insert(unit.clone(), epoch);
                    self.mismatched.remove(&unit);
                }
            }
        }
        self.check_versions().await
    }

    /// Notes the units another instance runs with a definition other than this file's.
    async fn check_versions(&mut self) -> Result<()> {
        let pool = self.cluster.pool.clone();
        let rows = tokio::task::spawn_blocking(move || lease::units(&pool))
            .await
            .map_err(|e| StateError::Io(e.to_string()))??;
        for row in rows {
            let Some(mine) = self.versions.get(&row.unit) else {
                continue;
            };
            let running =
                row.owner.is_some() && row.lease_until.is_some_and(|t| t > chrono::Utc::now());
            if running && row.owner != Some(self.cluster.id) && &row.version != mine {
                let seen = (row.version.clone(), row.owner);
                if self.mismatched.get(&row.unit) != Some(&seen) {
                    tracing::warn!(
                        instance = self.cluster.id,
                        unit = %row.unit,
                        owner = row.owner.unwrap_or_default(),
                        theirs = %row.version,
                        ours = %mine,
                        "version mismatch: another instance runs this unit with another definition; this file's is not run until the unit is free"
                    );
                    self.mismatched.insert(row.unit, seen);
                }
            } else {
                self.mismatched.remove(&row.unit);
            }
        }
        Ok(())
    }

    /// A new plan of the file: its units' versions, and the held part to the runtime.
    async fn reload(&mut self, reload: Reload) {
        self.plan = reload.plan;
        self.versions = units::versions(&self.plan);
        self.cluster.fence.set_units(units::unit_of(&self.plan));
        // Units gone from the file are handed back.
        let gone: Vec<String> = self
            .held
            .keys()
            .filter(|u| !self.versions.contains_key(*u))
            .cloned()
            .collect();
        for u in &gone {
            self.held.remove(u);
            self.cluster.fence.drop_unit(u);
        }
        if !gone.is_empty() {
            if let Err(e) = lease::release(&self.cluster.pool, self.cluster.id, gone).await {
                tracing::warn!(error = %e, "cannot hand back the units gone from the file");
            }
        }
        self.send(reload.applied).await;
    }

    async fn send(&self, applied: Box<dyn FnOnce() + Send>) {
        let held: BTreeSet<String> = self.held.keys().cloned().collect();
        let plan = units::restrict(&self.plan, &held);
        let _ = self.runtime.send(Reload { plan, applied }).await;
    }
}

/// What `state FILE --cluster URL` shows: the instances, then every unit with its
/// owner, epoch, lease expiry, version, and its sources' watermark and last error.
pub fn describe(url: &str, plan: &Plan, lease: Duration) -> Result<String> {
    let pool = Arc::new(Pool::connect(url, None)?);
    schema::migrate(&pool)?;
    let store = PgStore::new(pool.clone(), None);
    let mut out = String::from("instances:\n");
    let instances = lease::instances(&pool, lease)?;
    if instances.is_empty() {
        out.push_str("  (none)\n");
    }
    for i in &instances {
        out.push_str(&format!(
            "  {}: {} pid {}, heartbeat {}, {}\n",
            i.id,
            i.host,
            i.pid,
            i.heartbeat
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            if i.live { "live" } else { "not live" }
        ));
        if !i.mismatches.is_empty() {
            out.push_str(&format!("    version mismatch: {}\n", i.mismatches));
        }
    }
    let rows: BTreeMap<String, UnitRow> = lease::units(&pool)?
        .into_iter()
        .map(|r| (r.unit.clone(), r))
        .collect();
    let unit_of = units::unit_of(plan);
    let versions = units::versions(plan);
    out.push_str("units:\n");
    let now = chrono::Utc::now();
    for (unit, version) in &versions {
        let row = rows.get(unit);
        let held = row.filter(|r| r.owner.is_some() && r.lease_until.is_some_and(|t| t > now));
        let owner = match held {
            Some(r) => format!(
                "owner {}, epoch {}, lease until {}",
                r.owner.unwrap_or_default(),
                r.epoch,
                r.lease_until
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default()
            ),
            None => format!("not held, epoch {}", row.map_or(0, |r| r.epoch)),
        };
        let recorded = row.map(|r| r.version.as_str()).unwrap_or("");
        let agrees = if recorded.is_empty() || recorded == version {
            format!("version {version}")
        } else {
            format!("version {recorded} recorded, this file's {version}: MISMATCH")
        };
        out.push_str(&format!("  {unit}: {owner}, {agrees}\n"));
        let mut sources: Vec<&String> = unit_of
            .iter()
            .filter(|(_, u)| *u == unit)
            .map(|(s, _)| s)
            .collect();
        sources.sort();
        for s in sources {
            let meta = store.meta(s)?;
            out.push_str(&format!(
                "    {s}: watermark {}, {} records seen, {} runs, last run {}, last error {}\n",
                meta.watermark.map_or("none".to_string(), |w| w.to_string()),
                meta.records_seen,
                meta.runs,
                meta.last_run.as_deref().unwrap_or("never"),
                meta.last_error.as_deref().unwrap_or("none"),
            ));
        }
    }
    Ok(out)
}

/// A store on the cluster database without fencing: for tests and inspection.
pub fn open_store(url: &str) -> Result<Arc<dyn StateStore>> {
    let pool = Arc::new(Pool::connect(url, None)?);
    schema::migrate(&pool)?;
    Ok(Arc::new(PgStore::new(pool, None)))
}

/// A store on the cluster database fenced by `fence`: what an instance's run uses, for
/// tests that hold leases by hand.
pub fn open_fenced_store(url: &str, fence: Arc<Fence>) -> Result<Arc<dyn StateStore>> {
    let pool = Arc::new(Pool::connect(url, None)?);
    schema::migrate(&pool)?;
    Ok(Arc::new(PgStore::new(pool, Some(fence))))
}

/// What checking the lease cost this instance's commits: logged when it leaves.
fn report_lease_overhead() {
    use std::sync::atomic::Ordering::Relaxed;
    let (checks, check_ns) = (
        store::LEASE_CHECKS.load(Relaxed),
        store::LEASE_CHECK_NANOS.load(Relaxed),
    );
    let (commits, commit_ns) = (
        store::FENCED_COMMITS.load(Relaxed),
        store::FENCED_COMMIT_NANOS.load(Relaxed),
    );
    if checks == 0 || commits == 0 {
        return;
    }
    tracing::info!(
        lease_checks = checks,
        lease_check_us = check_ns / checks / 1000,
        fenced_commits = commits,
        fenced_commit_us = commit_ns / commits / 1000,
        "lease overhead: the mean lease check and the mean fenced commit it is part of"
    );
}
