//! The running graph: builds a unit of tasks per node from a checked pipeline, wires
//! them with bounded channels, drives schedules, applies reloads as diffs, and shuts
//! down cleanly.

mod aggregates;
mod drivers;
mod graph;
pub mod progress;
mod schedule;
mod supervise;
mod units;

use crate::plan::diff::Diff;
use crate::plan::Plan;
use crate::state::StateStore;
use crate::stop::Stop;
use graph::Graph;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
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
    let mut graph = Graph::start(plan, store, opts, stop.clone())?;
    if once {
        tokio::select! {
            _ = graph.wait_scheduled() => {}
            _ = stop.stopped() => {}
        }
        return Ok(graph.shutdown().await);
    }
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
                            eprintln!("reloaded: {summary}");
                        }
                        Err(e) => eprintln!("reload failed, the previous pipeline keeps running: {e}"),
                    }
                }
                None => reloads = None,
            }
        }
    }
    Ok(graph.shutdown().await)
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
