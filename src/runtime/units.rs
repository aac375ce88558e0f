//! A unit of work: one source with its extract (and filter) node. Its identity (service
//! URL, path, records path, key) is a value of the plan, stored with its state and
//! compared whenever the unit starts — at start-up as at a reload — so state collected
//! for one endpoint never filters another's records. Its tasks run under
//! [`supervise`](super::supervise): a panic is the unit's reported failure.

use super::drivers::{child_driver, push_driver, scheduled_driver};
use super::graph::CHANNEL_PAGES;
use super::listener::Listener;
use super::supervise::{panic_text, supervise};
use super::Report;
use crate::check::{Schedule, Source};
use crate::nodes::extract::{ExtractNode, Extractor, Outputs, Wakes};
use crate::nodes::receive::Receiver;
use crate::nodes::source::http::ServiceClient;
use crate::nodes::source::Poller;
use crate::state::StateStore;
use crate::stop::Stop;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};

/// Everything a unit needs to run, taken from the plan and the graph.
pub(super) struct Unit {
    pub source: Arc<Source>,
    pub identity: String,
    pub client: Arc<ServiceClient>,
    pub store: Arc<dyn StateStore>,
    pub outputs: watch::Receiver<Arc<Outputs>>,
    pub wakes: Wakes,
    pub report: Arc<Mutex<Report>>,
    pub stop: Stop,
    pub once: bool,
    /// The listener its events arrive by, when it receives (spec §11).
    pub listener: Option<Arc<Listener>>,
}

/// Keeps the unit's state if it was collected for the same identity; else forgets it
/// (saying why) and stores the new identity.
pub(super) fn adopt_identity(
    store: &dyn StateStore,
    name: &str,
    identity: &str,
) -> Result<(), String> {
    let meta = store.meta(name).map_err(|e| e.to_string())?;
    if meta.identity == identity {
        return Ok(());
    }
    // State from before identities were stored is adopted as it is.
    if !meta.identity.is_empty() {
        store.reset(name).map_err(|e| e.to_string())?;
        tracing::info!(source = %name, "its service URL, path, records path or key changed: collecting from scratch");
    }
    let mut meta = store.meta(name).map_err(|e| e.to_string())?;
    meta.identity = identity.to_string();
    // A source that never ran has no keys: its index is complete from the start.
    if meta.runs == 0 && meta.watermark.is_none() && meta.records_seen == 0 {
        meta.indexed = true;
    }
    store.put_meta(name, &meta).map_err(|e| e.to_string())
}

impl Unit {
    /// Runs the unit until its stop (or, with `once`, one run), after `after` resolves
    /// (the unit it replaces is gone).
    pub async fn run(self, after: Option<oneshot::Receiver<()>>) {
        if let Some(after) = after {
            // An error means the waiting task is gone: nothing left to wait for.
            let _ = after.await;
        }
        if self.stop.is_stopping() {
            return;
        }
        let name = self.source.name.clone();
        let (store, n, id) = (self.store.clone(), name.clone(), self.identity.clone());
        let adopted = tokio::task::spawn_blocking(move || adopt_identity(store.as_ref(), &n, &id))
            .await
            .map_err(panic_text)
            .and_then(|r| r);
        if let Err(e) = adopted {
            tracing::error!(source = %name, error = %e, "cannot read or reset the source's state");
            if let Ok(mut r) = self.report.lock() {
                let t = r.sources.entry(name.clone()).or_default();
                t.failed_runs += 1;
                t.last_error = Some(e);
            }
            return;
        }
        supervise(&name, &self.stop, self.once, &self.report, || {
            self.attempt()
        })
        .await;
        if let Ok(mut w) = self.wakes.lock() {
            w.remove(&name);
        }
    }

    /// One life of the unit's tasks; `Err` when one of them panicked.
    async fn attempt(&self) -> Result<(), String> {
        let src = &self.source;
        let run_stop = self.stop.child();
        let ex = Arc::new(Extractor::new(src));
        let (tx, rx) = mpsc::channel(CHANNEL_PAGES);
        let node = ExtractNode {
            source: Arc::from(src.name.as_str()),
            ex: ex.clone(),
            store: self.store.clone(),
            outputs: self.outputs.clone(),
            wakes: self.wakes.clone(),
            incremental: src.incremental.is_some(),
            newest_first: src.incremental.as_ref().is_some_and(|i| i.newest_first),
        };
        let poller = Arc::new(Poller {
            src: src.clone(),
            client: self.client.clone(),
            ex,
            tx,
            store: self.store.clone(),
            stop: run_stop.clone(),
        });
        // A receiving source takes events while this life of it runs; the listener holds
        // only a weak sender, so the extract node ends when the driver drops its own.
        let receiver = match (&self.listener, &src.receive) {
            (Some(listener), Some(_)) => {
                let r = Arc::new(Receiver::new(
                    src.clone(),
                    self.client.clone(),
                    &poller.tx,
                    run_stop.clone(),
                ));
                listener.attach(r.clone());
                Some((listener.clone(), r))
            }
            _ => None,
        };
        let mut extract = tokio::spawn(node.run(rx));
        let (children, wakes, report) = (
            self.outputs.clone(),
            self.wakes.clone(),
            self.report.clone(),
        );
        let mut driver = if src.schedule == Schedule::Push {
            tokio::spawn(push_driver(poller, run_stop.clone(), self.once))
        } else if src.schedule == Schedule::Parent {
            let (wake_tx, wake_rx) = mpsc::channel(64);
            if let Ok(mut w) = self.wakes.lock() {
                w.insert(src.name.clone(), wake_tx);
            }
            tokio::spawn(child_driver(
                poller,
                children,
                wakes,
                wake_rx,
                report,
                run_stop.clone(),
            ))
        } else {
            tokio::spawn(scheduled_driver(
                poller,
                children,
                wakes,
                report,
                run_stop.clone(),
                self.once,
            ))
        };
        // The extract node ends well only once its input closed, that is once the
        // driver dropped the poller; it ends early only by a panic.
        let ended = tokio::select! {
            ended = &mut driver => {
                let extracted = extract.await.map_err(panic_text);
                ended.map_err(panic_text).and(extracted)
            }
            ended = &mut extract => match ended {
                Ok(()) => driver.await.map_err(panic_text),
                Err(e) => {
                    run_stop.stop();
                    let _ = driver.await;
                    Err(panic_text(e))
                }
            },
        };
        if let Some((listener, r)) = receiver {
            listener.detach(&r);
        }
        ended
    }
}
