//! The running graph: builds a unit of tasks per node from a checked pipeline, wires
//! them with bounded channels, drives schedules, applies reloads as diffs, stops the
//! run when the store can no longer keep what it is given, and shuts down cleanly.

mod aggregates;
mod drivers;
mod graph;
pub mod listener;
pub mod progress;
mod schedule;
mod supervise;
mod units;

use crate::nodes::tape::Tape;
use crate::plan::diff::Diff;
use crate::plan::Plan;
use crate::state::StateStore;
use crate::stop::Stop;
use graph::Graph;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub use crate::stop::SHUTDOWN_GRACE;

/// A new plan for the running graph, and what to do once it runs.
pub struct Reload {
    pub plan: Plan,
    /// Called after the graph has moved to `plan` (for those who answer questions
    /// about the running pipeline).
    pub applied: Box<dyn FnOnce() + Send>,
}

#[derive(Default)]
pub struct Options {
    /// Run every scheduled source one time, drain, and return.
    pub once: bool,
    /// The folder of the pipeline file: relative paths are resolved against it.
    pub base_dir: PathBuf,
    /// Where the services' exchanges are recorded or replayed from (`run --record`,
    /// `--replay`).
    pub tape: Option<Arc<Tape>>,
    /// `run --listen ADDR`: the listener's address, over the `server` block's.
    pub listen: Option<String>,
    /// What `GET /metrics` serves when `server { metrics = true }`.
    pub metrics: Option<listener::MetricsRender>,
    /// Told of every event the listener answers (source, status), for metrics.
    pub on_answer: Option<listener::OnAnswer>,
}

/// What each source did, for the summary and the exit code.
#[derive(Default)]
pub struct Report {
    pub sources: BTreeMap<String, SourceTotals>,
    /// Sinks with pages still waiting in their durable queue, and how many.
    pub queued: BTreeMap<String, usize>,
    /// A sink's reader left (standard output closed): the run ended early.
    pub reader_gone: bool,
}

#[derive(Debug, Default, Clone)]
pub struct SourceTotals {
    pub runs: u64,
    pub pages: u64,
    pub records: u64,
    pub emitted: u64,
    pub rejected: u64,
    pub failed_runs: u64,
    pub last_error: Option<String>,
    pub warnings: Vec<String>,
}

impl Report {
    /// A source failed, or records still wait for a sink.
    pub fn failed(&self) -> bool {
        self.sources.values().any(|s| s.failed_runs > 0) || !self.queued.is_empty()
    }
}

/// Runs a plan until `stop` (or, with `once`, until every source ran once). New plans
/// arriving on `reloads` are applied as diffs to the running graph.
pub async fn run(
    plan: Plan,
    store: Arc<dyn StateStore>,
    opts: Options,
    stop: Stop,
    reloads: Option<mpsc::Receiver<Reload>>,
) -> Result<Report, String> {
    let once = opts.once;
    let watching = stop.child();
    let watcher = tokio::spawn(watch_store(store.clone(), stop.clone(), watching.clone()));
    let mut graph = match Graph::start(plan, store.clone(), opts, stop.clone()) {
        Ok(g) => g,
        Err(e) => {
            watching.stop();
            return Err(e);
        }
    };
    let report = if once {
        tokio::select! {
            _ = graph.wait_scheduled() => {}
            _ = stop.stopped() => {}
        }
        graph.shutdown().await
    } else {
        run_reloads(&mut graph, &stop, reloads).await;
        graph.shutdown().await
    };
    watching.stop();
    let fault = match watcher.await.ok().flatten() {
        Some(fault) => Some(fault),
        // A write that failed during the shutdown (the last flush, say).
        None => tokio::task::spawn_blocking(move || store.health().err())
            .await
            .ok()
            .flatten()
            .map(|e| e.to_string()),
    };
    match fault {
        Some(fault) => Err(format!("the run stopped: {fault}")),
        None => Ok(report),
    }
}

/// How often the run asks its store whether it still keeps what it is given.
const STORE_CHECK: Duration = Duration::from_millis(500);

/// Asks the store every [`STORE_CHECK`] until `watching` stops. When the store cannot
/// keep what it is given (a write failed, its folder was removed), stops the run and
/// returns why: a run that went on would fetch and deliver the same records again and
/// again while committing none, and another run could take the same folder.
async fn watch_store(store: Arc<dyn StateStore>, run: Stop, watching: Stop) -> Option<String> {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(STORE_CHECK) => {}
            _ = watching.stopped() => return None,
        }
        let s = store.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.health()).await {
            let fault = e.to_string();
            tracing::error!(error = %fault, "the state store cannot keep what the run collects: stopping");
            run.stop();
            return Some(fault);
        }
    }
}

/// A long run: applies the plans arriving on `reloads` until `stop`.
async fn run_reloads(graph: &mut Graph, stop: &Stop, reloads: Option<mpsc::Receiver<Reload>>) {
    let mut reloads = reloads;
    loop {
        let next = async {
            match reloads.as_mut() {
                Some(r) => r.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.stopped() => break,
            r = next => match r {
                Some(Reload { plan, applied }) => {
                    let started = std::time::Instant::now();
                    let diff = Diff::new(graph.plan(), &plan);
                    match graph.apply(plan, &diff) {
                        Ok(()) => {
                            applied();
                            let summary = diff.summary();
                            tracing::info!(took_ms = started.elapsed().as_millis() as u64, "reloaded: {summary}");
                            // The log line above says it in JSON mode.
                            if !crate::logs::json() {
                                eprintln!("reloaded: {summary}");
                            }
                        }
                        Err(e) => crate::logs::say(crate::logs::Level::Error, &format!("reload failed, the previous pipeline keeps running: {e}")),
                    }
                }
                None => reloads = None,
            }
        }
    }
}

/// Installs the SIGINT/SIGTERM handler that raises `stop`.
pub fn stop_on_signals(handle: Stop) {
    stop_on_signals_with(handle, None)
}

/// Like [`stop_on_signals`], and also stops after `limit` when given.
pub fn stop_on_signals_with(handle: Stop, limit: Option<std::time::Duration>) {
    tokio::spawn(async move {
        let limit = async move {
            match limit {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        #[cfg(unix)]
        {
            let ctrl_c = tokio::signal::ctrl_c();
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                    _ = limit => {}
                },
                Err(_) => tokio::select! {
                    _ = ctrl_c => {}
                    _ = limit => {}
                },
            }
        }
        #[cfg(not(unix))]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = limit => {}
        }
        tracing::info!("stopping: no new requests; in-flight pages may finish");
        handle.stop();
    });
}
