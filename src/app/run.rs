//! `hamstr run`: a pipeline on a tokio runtime until it ends or is interrupted, reloaded
//! when its file is saved, answering `dump` and `state` over the control socket.

use super::load::{self, Loaded};
use super::{control, Console, Error, Outcome};
use crate::check::Pipeline;
use crate::nodes::tape::Tape;
use crate::plan::Plan;
use crate::runtime::{self, Options, Reload, Report};
use crate::state::StateStore;
use crate::stop::Stop;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Threads for blocking work (sled, files, standard output, extraction). Each thread
/// that allocates keeps its own allocator heap, so a few threads kept busy use less
/// memory than many (measured: 17 threads and 104 MiB against 11 and 86 MiB at the
/// default of 512); a few more than the work in flight at once, so a stalled stdout
/// reader holding one cannot stop the rest.
const BLOCKING_THREADS: usize = 4;

/// Where the services' exchanges go: to the network, recorded on the way, or answered
/// from a recording (spec §16).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Exchanges {
    #[default]
    Live,
    Record(PathBuf),
    Replay(PathBuf),
}

impl Exchanges {
    /// The tape of a run; a folder that cannot be recorded into or replayed from is an
    /// error before anything runs.
    pub(super) fn tape(&self) -> Result<Option<Arc<Tape>>, Error> {
        let tape = match self {
            Exchanges::Live => return Ok(None),
            Exchanges::Record(dir) => Tape::record(dir),
            Exchanges::Replay(dir) => Tape::replay(dir),
        };
        tape.map(|t| Some(Arc::new(t))).map_err(Error::Io)
    }
}

/// `hamstr run FILE`. With `once`, a summary on stderr, and [`Outcome::Failure`] when a
/// source failed or records still wait in a sink's queue.
#[allow(clippy::too_many_arguments)]
pub fn run(
    file: &Path,
    once: bool,
    watch: bool,
    data_dir: Option<&Path>,
    exchanges: &Exchanges,
    cluster: Option<&super::ClusterArgs>,
    listen: Option<&str>,
    console: Console,
) -> Result<Outcome, Error> {
    if let Some(args) = cluster {
        if *exchanges != Exchanges::Live {
            return Err(Error::Usage(
                "`--record` and `--replay` cannot be used with `--cluster`".into(),
            ));
        }
        return super::cluster::run(file, once, watch, data_dir, args, console);
    }
    super::private_files();
    let loaded = load::load(file, console)?;
    let tape = exchanges.tape()?;
    let dir = load::data_dir(&loaded, data_dir);
    let store = load::open_store(&dir)?;
    let how = How {
        once,
        watch: watch && !once,
        tape,
        cluster: None,
        listen: listen.map(str::to_string),
    };
    let report = run_loaded(file, &loaded, store, &dir, how, console)?;
    if report.reader_gone {
        // A `stdout()` sink's reader left: the run ended like any tool whose reader is
        // gone; what was not written was not committed and is fetched again next time.
        return Err(Error::ReaderLeft);
    }
    if !once {
        return Ok(Outcome::Success);
    }
    crate::logs::say(crate::logs::Level::Info, &summary(&report));
    Ok(if report.failed() {
        Outcome::Failure
    } else {
        Outcome::Success
    })
}

/// How a run goes: one time or on schedules, reloaded on saves or not, and through
/// which tape its exchanges go.
pub(super) struct How {
    pub once: bool,
    pub watch: bool,
    pub tape: Option<Arc<Tape>>,
    /// The cluster this run is an instance of (spec §14): it runs only the units it
    /// holds, and the file's plans go through the lease loop.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// `--listen ADDR`: the listener's address, over the `server` block's.
    pub listen: Option<String>,
}

/// Runs `loaded` on a fresh tokio runtime. With `watch`, saving the file reloads it: a
/// file with errors is reported and the running graph goes on untouched.
pub(super) fn run_loaded(
    path: &Path,
    loaded: &Loaded,
    store: Arc<dyn StateStore>,
    data_dir: &Path,
    how: How,
    console: Console,
) -> Result<Report, Error> {
    let How {
        once,
        watch,
        tape,
        cluster,
        listen,
    } = how;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
        .map_err(|e| Error::Io(format!("cannot start the async runtime: {e}")))?;
    let result = rt.block_on(async {
        let stop = Stop::new();
        runtime::stop_on_signals(stop.clone());
        // What `dump` and `state` over the socket answer for: the pipeline running now.
        let running = Arc::new(Mutex::new(loaded.pipeline.clone()));
        let mut _watch = None;
        let reloads = if watch {
            let (event_tx, events) = mpsc::channel::<()>(1);
            // The tenants files too: a row added, removed or changed reloads.
            let mut files = vec![path.to_path_buf()];
            files.extend(
                loaded
                    .pipeline
                    .files
                    .iter()
                    .map(|f| loaded.base_dir.join(f)),
            );
            _watch = Some(crate::watch::watch_files(&files, event_tx).map_err(Error::Io)?);
            let (tx, rx) = mpsc::channel(1);
            let mode = if cluster.is_some() {
                crate::check::Mode::Cluster
            } else {
                crate::check::Mode::Single
            };
            let reloading = reload_on_events(
                path.to_path_buf(),
                events,
                tx,
                running.clone(),
                mode,
                console,
            );
            tokio::spawn(reloading);
            Some(rx)
        } else {
            None
        };
        #[cfg(unix)]
        let _control = {
            let pipeline = running.clone();
            let base_dir = loaded.base_dir.clone();
            let store = store.clone();
            let answer = move |req: control::Request, out: &mut dyn std::io::Write| {
                let pipeline = pipeline
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone();
                let loaded = Loaded {
                    pipeline,
                    base_dir: base_dir.clone(),
                };
                super::inspect::answer(&loaded, store.as_ref(), req, out)
            };
            control::serve(data_dir, Arc::new(answer))?
        };
        let opts = Options {
            once,
            base_dir: loaded.base_dir.clone(),
            tape,
            listen,
            metrics: Some(Arc::new(crate::metrics::render)),
            on_answer: Some(Arc::new(crate::metrics::event_answered)),
        };
        let plan = Plan::new(&loaded.pipeline);
        let Some(cluster) = cluster else {
            return runtime::run(plan, store, opts, stop, reloads)
                .await
                .map_err(Error::RunFailed);
        };
        // The runtime starts with no unit and is given those the lease loop holds; the
        // loop goes on through the shutdown's grace, so that pages in flight still
        // commit, and then hands every lease back.
        let (to_runtime, from_leader) = mpsc::channel(4);
        let leading = Stop::new();
        let leader = {
            let (cluster, plan, leading) = (cluster.clone(), plan.clone(), leading.clone());
            tokio::spawn(async move { cluster.lead(plan, reloads, to_runtime, leading).await })
        };
        let empty = crate::cluster::units::restrict(&plan, &Default::default());
        let ran = runtime::run(empty, store, opts, stop, Some(from_leader)).await;
        leading.stop();
        let _ = leader.await;
        cluster.leave().await;
        ran.map_err(Error::RunFailed)
    });
    // A sink write abandoned at the end of the grace may still hold a blocking thread
    // (a reader that never reads): the process does not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}

/// Turns each change of the file into a plan on `tx`; a file that cannot be read or
/// has errors is reported, and the previous pipeline keeps running. Reading and checking
/// are blocking work, done off the async workers.
async fn reload_on_events(
    path: std::path::PathBuf,
    mut events: mpsc::Receiver<()>,
    tx: mpsc::Sender<Reload>,
    running: Arc<Mutex<Pipeline>>,
    mode: crate::check::Mode,
    console: Console,
) {
    while events.recv().await.is_some() {
        let p = path.clone();
        let read = tokio::task::spawn_blocking(move || -> Result<_, Error> {
            let text = load::read_pipeline(&p)?;
            Ok(load::load_text_for(&p, &text, mode, console))
        })
        .await;
        let loaded = match read {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                say_error(&format!("reload: {e}; the previous pipeline keeps running"));
                continue;
            }
            Err(e) => {
                say_error(&format!("reload: {e}; the previous pipeline keeps running"));
                continue;
            }
        };
        match loaded {
            // Editors may write the same text twice, and a tenants file may be saved
            // unchanged: the same pipeline is not reloaded.
            Ok(l) if *running.lock().unwrap_or_else(|p| p.into_inner()) == l.pipeline => {}
            Ok(l) => {
                let plan = Plan::new(&l.pipeline);
                let running = running.clone();
                let applied = Box::new(move || {
                    *running.lock().unwrap_or_else(|p| p.into_inner()) = l.pipeline;
                });
                if tx.send(Reload { plan, applied }).await.is_err() {
                    break;
                }
            }
            Err(e) => say_error(&format!(
                "{e}reload: the file has errors; the previous pipeline keeps running"
            )),
        }
    }
}

fn say_error(text: &str) {
    crate::logs::say(crate::logs::Level::Error, text);
}

/// One line per source: what the run did.
pub(super) fn summary(report: &Report) -> String {
    use super::plural;
    let mut out = String::new();
    for (name, t) in &report.sources {
        out.push_str(&format!(
            "{name}: {} run{}, {} page{}, {} record{}, {} new, {} rejected{}\n",
            t.runs,
            plural(t.runs),
            t.pages,
            plural(t.pages),
            t.records,
            plural(t.records),
            t.emitted,
            t.rejected,
            t.last_error
                .as_ref()
                .map(|e| format!(", FAILED: {e}"))
                .unwrap_or_default()
        ));
        for w in &t.warnings {
            out.push_str(&format!("  warning: {w}\n"));
        }
    }
    for (sink, pages) in &report.queued {
        let (page, wait, they) = if *pages == 1 {
            ("page", "waits", "it goes")
        } else {
            ("pages", "wait", "they go")
        };
        out.push_str(&format!(
            "sink {sink}: {pages} {page} still {wait} in its queue; {they} out on the next run\n"
        ));
    }
    out
}
