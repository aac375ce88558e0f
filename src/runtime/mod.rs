//! The running graph: builds a unit of tasks per node from a checked pipeline, wires
//! them with bounded channels, drives schedules, applies reloads as diffs, and shuts
//! down cleanly.

mod aggregates;
mod drivers;
mod graph;
pub mod progress;
mod schedule;

use crate::check::Pipeline;
use crate::state::StateStore;
use graph::Graph;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// How long in-flight pages get to finish once a stop is asked for (spec §8).
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// A shared "stop now" signal.
#[derive(Clone)]
pub struct Stop {
    rx: watch::Receiver<bool>,
}

/// The side that raises [`Stop`].
pub struct StopHandle {
    tx: watch::Sender<bool>,
}

impl Stop {
    pub fn new() -> (StopHandle, Stop) {
        let (tx, rx) = watch::channel(false);
        (StopHandle { tx }, Stop { rx })
    }
    pub fn is_stopping(&self) -> bool {
        *self.rx.borrow()
    }
    pub async fn stopped(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
    /// A signal raised when either this one or `other` is.
    pub fn or(&self, other: &Stop) -> Stop {
        let (handle, stop) = Stop::new();
        let (a, b) = (self.clone(), other.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = a.stopped() => {}
                _ = b.stopped() => {}
            }
            handle.stop();
        });
        stop
    }
    /// Resolves [`SHUTDOWN_GRACE`] after the stop: in-flight work gives up then.
    pub async fn grace_over(&self) {
        self.stopped().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    }
}

impl StopHandle {
    pub fn stop(&self) {
        let _ = self.tx.send(true);
    }
}

#[derive(Default)]
pub struct Options {
    /// Run every scheduled source one time, drain, and return.
    pub once: bool,
    /// The folder of the pipeline file: relative paths are resolved against it.
    pub base_dir: PathBuf,
    /// Set to each pipeline once the graph runs it (a reload applied), for those who
    /// answer questions about the running pipeline (`dump` and `state` over the socket).
    pub running: Option<Arc<std::sync::Mutex<Pipeline>>>,
}

/// What each source did, for the summary and the exit code.
#[derive(Default)]
pub struct Report {
    pub sources: BTreeMap<String, SourceTotals>,
    /// Sinks with pages still waiting in their durable queue, and how many.
    pub queued: BTreeMap<String, usize>,
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

/// Runs a pipeline until `stop` (or, with `once`, until every source ran once). New
/// pipelines arriving on `reloads` are applied as diffs to the running graph.
pub async fn run(
    p: &Pipeline,
    store: Arc<dyn StateStore>,
    opts: Options,
    stop: Stop,
    reloads: Option<mpsc::Receiver<Pipeline>>,
) -> Result<Report, String> {
    let once = opts.once;
    let running = opts.running.clone();
    let mut graph = Graph::start(p, store, opts, stop.clone())?;
    if once {
        graph.wait_scheduled().await;
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
            p = next => match p {
                Some(p) => {
                    let started = std::time::Instant::now();
                    match graph.apply(&p) {
                        Ok(diff) => {
                            if let Some(Ok(mut current)) = running.as_ref().map(|r| r.lock()) {
                                *current = p.clone();
                            }
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
pub fn stop_on_signals(handle: StopHandle) {
    stop_on_signals_with(handle, None)
}

/// Like [`stop_on_signals`], and also stops after `limit` when given.
pub fn stop_on_signals_with(handle: StopHandle, limit: Option<std::time::Duration>) {
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
