//! `hamstr run`: a pipeline on a tokio runtime until it ends or is interrupted, reloaded
//! when its file is saved, answering `dump` and `state` over the control socket.

use super::load::{self, Loaded};
use super::{control, Console, Error, Outcome};
use crate::check::Pipeline;
use crate::runtime::{self, Options, Report, Stop};
use crate::state::StateStore;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// `hamstr run FILE`. With `once`, a summary on stderr, and [`Outcome::Failure`] when a
/// source failed or records still wait in a sink's queue.
pub fn run(
    file: &Path,
    once: bool,
    watch: bool,
    data_dir: Option<&Path>,
    console: Console,
) -> Result<Outcome, Error> {
    let loaded = load::load(file, console)?;
    let dir = load::data_dir(&loaded, data_dir);
    let store = load::open_store(&dir)?;
    let report = run_loaded(file, &loaded, store, &dir, once, watch && !once, console)?;
    if !once {
        return Ok(Outcome::Success);
    }
    eprint!("{}", summary(&report));
    Ok(if report.failed() {
        Outcome::Failure
    } else {
        Outcome::Success
    })
}

/// Runs `loaded` on a fresh tokio runtime. With `watch`, saving the file reloads it: a
/// file with errors is reported and the running graph goes on untouched.
fn run_loaded(
    path: &Path,
    loaded: &Loaded,
    store: Arc<dyn StateStore>,
    data_dir: &Path,
    once: bool,
    watch: bool,
    console: Console,
) -> Result<Report, Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        let (handle, stop) = Stop::new();
        runtime::stop_on_signals(handle);
        let mut _watch = None;
        let reloads = if watch {
            let (event_tx, events) = mpsc::channel::<()>(1);
            _watch = Some(crate::watch::watch_file(path, event_tx).map_err(Error::Io)?);
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(reload_on_events(path.to_path_buf(), events, tx, console));
            Some(rx)
        } else {
            None
        };
        // What `dump` and `state` over the socket answer for: the pipeline running now.
        let running = Arc::new(Mutex::new(loaded.pipeline.clone()));
        #[cfg(unix)]
        let _control = {
            let pipeline = running.clone();
            let base_dir = loaded.base_dir.clone();
            let store = store.clone();
            let answer = move |req: control::Request| {
                let pipeline = pipeline
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone();
                let loaded = Loaded {
                    pipeline,
                    base_dir: base_dir.clone(),
                };
                super::inspect::answer(&loaded, store.as_ref(), req)
            };
            control::serve(data_dir, Arc::new(answer))?
        };
        let opts = Options {
            once,
            base_dir: loaded.base_dir.clone(),
            running: Some(running),
        };
        runtime::run(&loaded.pipeline, store, opts, stop, reloads)
            .await
            .map_err(Error::RunFailed)
    })
}

/// Turns each change of the file into a checked pipeline on `tx`; a file that cannot be
/// read or has errors is reported, and the previous pipeline keeps running.
async fn reload_on_events(
    path: std::path::PathBuf,
    mut events: mpsc::Receiver<()>,
    tx: mpsc::Sender<Pipeline>,
    console: Console,
) {
    let mut last: Option<String> = None;
    while events.recv().await.is_some() {
        let text = match load::read_pipeline(&path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("reload: {e}; the previous pipeline keeps running");
                continue;
            }
        };
        // Editors may write the same text twice; reload once.
        if last.as_deref() == Some(text.as_str()) {
            continue;
        }
        last = Some(text.clone());
        match load::load_text(&path, &text, console) {
            Ok(l) => {
                if tx.send(l.pipeline).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                eprintln!("{e}reload: the file has errors; the previous pipeline keeps running")
            }
        }
    }
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
