//! The running graph: builds a task per node from a checked pipeline, wires them with
//! bounded channels, drives schedules, and shuts down cleanly.

mod schedule;

use crate::check::{Pipeline, Schedule};
use crate::nodes::extract::{Batch, ExtractNode, Extractor};
use crate::nodes::http::{http_client, Masker, ServiceClient};
use crate::nodes::poller::{Poller, RunOutcome};
use crate::nodes::sinks::{run_sink, writer_for};
use crate::state::StateStore;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Pages that may wait between two nodes: memory stays bounded however large an API is.
const CHANNEL_PAGES: usize = 2;

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
}

impl StopHandle {
    pub fn stop(&self) {
        let _ = self.tx.send(true);
    }
}

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

type Wake = mpsc::Sender<Option<oneshot::Sender<()>>>;

/// Runs a pipeline until `stop` (or, with `once`, until every source ran once).
pub async fn run(
    p: &Pipeline,
    store: Arc<dyn StateStore>,
    opts: Options,
    stop: Stop,
) -> Result<Report, String> {
    let masker = Masker::new(p.secrets());
    let http = http_client();
    let mut clients = BTreeMap::new();
    for (name, svc) in &p.services {
        clients.insert(
            name.clone(),
            Arc::new(ServiceClient::new(http.clone(), svc, masker.clone())?),
        );
    }
    let report = Arc::new(Mutex::new(Report::default()));
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();

    // Sinks first, so sources can be wired to them.
    let mut sink_tx: BTreeMap<&str, mpsc::Sender<Batch>> = BTreeMap::new();
    for (name, sink) in &p.sinks {
        let (tx, rx) = mpsc::channel(CHANNEL_PAGES);
        let input = p.flows.iter().find(|(_, to)| to == name);
        let schema = input.and_then(|(from, _)| p.schema_of(from));
        let writer = writer_for(sink, schema.as_ref(), &opts.base_dir, store.clone());
        tasks.push(tokio::spawn(run_sink(
            name.clone(),
            writer,
            store.clone(),
            rx,
        )));
        sink_tx.insert(name, tx);
    }

    // Wake channels of child sources, by parent.
    let mut wakes: BTreeMap<String, (Wake, mpsc::Receiver<Option<oneshot::Sender<()>>>)> =
        BTreeMap::new();
    for (name, src) in &p.sources {
        if src.for_each.is_some() {
            wakes.insert(name.clone(), mpsc::channel(64));
        }
    }
    let children_of = |parent: &str| -> Vec<(String, Wake)> {
        p.sources
            .values()
            .filter(|s| s.for_each.as_deref() == Some(parent))
            .filter_map(|s| {
                wakes
                    .get(&s.name)
                    .map(|(tx, _)| (s.name.clone(), tx.clone()))
            })
            .collect()
    };

    let mut pollers: Vec<(Arc<Poller>, Vec<(String, Wake)>)> = Vec::new();
    for (name, src) in &p.sources {
        let ex = Arc::new(Extractor::new(src));
        let (tx, rx) = mpsc::channel(CHANNEL_PAGES);
        let children = children_of(name);
        let node = ExtractNode {
            source: Arc::from(name.as_str()),
            ex: ex.clone(),
            store: store.clone(),
            sinks: p
                .outputs_of(name)
                .filter_map(|s| sink_tx.get(s).cloned())
                .collect(),
            children: children
                .iter()
                .map(|(n, w)| (n.clone(), wake_only(w.clone())))
                .collect(),
            incremental: src.incremental.is_some(),
            newest_first: src.incremental.as_ref().is_some_and(|i| i.newest_first),
        };
        tasks.push(tokio::spawn(node.run(rx)));
        let client = clients
            .get(&src.service)
            .cloned()
            .ok_or_else(|| format!("source `{name}`: no service `{}`", src.service))?;
        let poller = Arc::new(Poller {
            src: Arc::new(src.clone()),
            client,
            ex,
            tx,
            store: store.clone(),
            stop: stop.clone(),
        });
        pollers.push((poller, children));
    }
    drop(sink_tx);
    for name in p.aggregates.keys() {
        tracing::warn!(aggregate = %name, "aggregates are checked but not yet maintained by this version");
    }

    let mut drivers: Vec<JoinHandle<()>> = Vec::new();
    for (poller, children) in pollers {
        let report = report.clone();
        let stop = stop.clone();
        if poller.src.schedule == Schedule::Parent {
            let Some((_, wake_rx)) = wakes.remove(&poller.src.name) else {
                continue;
            };
            drivers.push(tokio::spawn(child_driver(
                poller, children, wake_rx, report, stop,
            )));
        } else {
            drivers.push(tokio::spawn(scheduled_driver(
                poller, children, report, stop, opts.once,
            )));
        }
    }
    drop(wakes);

    // Scheduled drivers end on their own with `once`; child drivers end when every
    // parent is gone (their wake senders dropped).
    for d in drivers {
        let _ = d.await;
    }
    for t in tasks {
        let _ = t.await;
    }
    store.flush().map_err(|e| e.to_string())?;
    let mut report = std::mem::take(&mut *report.lock().map_err(|_| "report lock poisoned")?);
    for name in p.sinks.keys() {
        let waiting = store
            .kv_len(&crate::nodes::sinks::queue_space(name))
            .unwrap_or(0);
        if waiting > 0 {
            report.queued.insert(name.clone(), waiting);
        }
    }
    Ok(report)
}

/// A wake sender that carries no reply: for the extract node's "new requests" signal.
fn wake_only(w: Wake) -> mpsc::Sender<()> {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            if w.send(None).await.is_err() {
                break;
            }
        }
    });
    tx
}

fn record(report: &Mutex<Report>, name: &str, outcome: &RunOutcome) {
    let s = &outcome.summary;
    match &outcome.error {
        Some(e) => {
            tracing::error!(source = %name, pages = s.pages, records = s.records, emitted = s.emitted, rejected = s.rejected, error = %e, "run failed")
        }
        None => {
            tracing::info!(source = %name, pages = s.pages, records = s.records, emitted = s.emitted, rejected = s.rejected, "run finished")
        }
    }
    if let Ok(mut r) = report.lock() {
        let t = r.sources.entry(name.to_string()).or_default();
        t.runs += 1;
        t.pages += s.pages;
        t.records += s.records;
        t.emitted += s.emitted;
        t.rejected += s.rejected;
        t.warnings.extend(outcome.warnings.iter().cloned());
        if outcome.error.is_some() {
            t.failed_runs += 1;
            t.last_error = outcome.error.clone();
        }
    }
}

/// Waits until every child (and their children) has worked through its queue.
async fn drain_children(children: &[(String, Wake)]) {
    for (_, wake) in children {
        let (tx, rx) = oneshot::channel();
        if wake.send(Some(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn scheduled_driver(
    poller: Arc<Poller>,
    children: Vec<(String, Wake)>,
    report: Arc<Mutex<Report>>,
    stop: Stop,
    once: bool,
) {
    let name = poller.src.name.clone();
    let mut next_start = tokio::time::Instant::now();
    loop {
        let started = tokio::time::Instant::now();
        let outcome = poller.run(None).await;
        record(&report, &name, &outcome);
        if once {
            drain_children(&children).await;
            break;
        }
        // Children get a chance to retry failed requests after every parent run.
        for (_, wake) in &children {
            let _ = wake.try_send(None);
        }
        next_start = match schedule::next_after(&poller.src.schedule, started.max(next_start)) {
            Some(t) => t,
            None => break,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next_start) => {}
            _ = stop.stopped() => break,
        }
        if stop.is_stopping() {
            break;
        }
    }
}

async fn child_driver(
    poller: Arc<Poller>,
    children: Vec<(String, Wake)>,
    mut wake: mpsc::Receiver<Option<oneshot::Sender<()>>>,
    report: Arc<Mutex<Report>>,
    stop: Stop,
) {
    let name = poller.src.name.clone();
    while let Some(reply) = wake.recv().await {
        // Coalesce wake-ups that piled up while a queue was being worked.
        let mut replies: Vec<oneshot::Sender<()>> = reply.into_iter().collect();
        while let Ok(more) = wake.try_recv() {
            replies.extend(more);
        }
        let queue = match poller.store.child_queue(&name) {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(source = %name, error = %e, "cannot read child requests");
                Vec::new()
            }
        };
        for (key, parent) in queue {
            if stop.is_stopping() {
                break;
            }
            let outcome = poller.run(Some((key, parent))).await;
            record(&report, &name, &outcome);
        }
        if !replies.is_empty() {
            drain_children(&children).await;
        }
        for r in replies {
            let _ = r.send(());
        }
    }
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
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        tokio::select! {
                            _ = ctrl_c => {}
                            _ = limit => {}
                        }
                        handle.stop();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
                _ = limit => {}
            }
        }
        #[cfg(not(unix))]
        tokio::select! {
            _ = ctrl_c => {}
            _ = limit => {}
        }
        tracing::info!("stopping: no new requests; in-flight pages may finish");
        handle.stop();
    });
}
