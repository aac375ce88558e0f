//! `run --cluster URL` and `state --cluster URL` (spec §14): the commands of an instance
//! of a cluster sharing one pipeline through PostgreSQL.

use super::load::{self, Loaded};
use super::run::{run_loaded, How};
use super::{Console, Error, Outcome};
use crate::check::Mode;
use crate::cluster::Cluster;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The cluster options of `run` and `state`.
#[derive(Debug, Clone)]
pub struct ClusterArgs {
    /// The cluster database's URL (`--cluster`, else `HAMSTR_CLUSTER`).
    pub url: String,
    /// The lease period (`--lease`, 30 s by default).
    pub lease: Duration,
}

impl ClusterArgs {
    /// `--lease` as written (`30s`, `2s`, `1m`); at least a second, so that a heartbeat
    /// (every third of it) has time for its round trip.
    pub fn parse_lease(text: &str) -> Result<Duration, String> {
        let ms = crate::check::parse_duration(text)?;
        if ms < 1000 {
            return Err(format!("the lease `{text}` is shorter than a second"));
        }
        Ok(Duration::from_millis(ms))
    }
}

/// `hamstr run FILE --cluster URL`: this process is one instance of the cluster.
pub fn run(
    file: &Path,
    once: bool,
    watch: bool,
    data_dir: Option<&Path>,
    args: &ClusterArgs,
    console: Console,
) -> Result<Outcome, Error> {
    if once {
        return Err(Error::Usage(
            "`--once` cannot be used with `--cluster`: a cluster's instances share units that run on schedules and are handed over as instances come and go; run `--once` without `--cluster`".into(),
        ));
    }
    super::private_files();
    let text = load::read_pipeline(file)?;
    let loaded = load::load_text_for(file, &text, Mode::Cluster, console)?;
    let dir = load::data_dir(&loaded, data_dir);
    load::make_private_dir(&dir);
    let _lock = lock(&dir)?;
    let cluster = Arc::new(Cluster::join(&args.url, &dir, args.lease)?);
    eprintln!(
        "joined the cluster as instance {} (lease {}s)",
        cluster.id(),
        args.lease.as_secs_f64()
    );
    let store = cluster.store();
    let how = How {
        once: false,
        watch,
        tape: None,
        listen: None,
        cluster: Some(cluster),
    };
    let report = run_loaded(file, &loaded, store, &dir, how, console)?;
    if report.reader_gone {
        return Err(Error::ReaderLeft);
    }
    Ok(Outcome::Success)
}

/// Holds the data directory for this instance: two instances with one data directory
/// would share one instance id.
fn lock(dir: &Path) -> Result<std::fs::File, Error> {
    let path = dir.join("cluster.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Io(format!("cannot open `{}`: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; released when it closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(Error::Locked {
                path: dir.display().to_string(),
                then: "",
            });
        }
    }
    Ok(file)
}

/// `hamstr state FILE --cluster URL`: the instances, and each unit's owner, epoch, lease
/// expiry, version and state.
pub fn state(file: &Path, args: &ClusterArgs, console: Console) -> Result<Outcome, Error> {
    let Loaded { pipeline, .. } = load::load(file, console)?;
    let plan = crate::plan::Plan::new(&pipeline);
    let text = crate::cluster::describe(&args.url, &plan, args.lease)?;
    super::print_stdout(&text)?;
    Ok(Outcome::Success)
}
