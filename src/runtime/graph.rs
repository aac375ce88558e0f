//! The running graph: a unit of tasks per source (poller, extract node) and per sink,
//! kept by name, so a reload can start, restart and stop units one by one and rewire
//! the rest without touching them.

use super::aggregates::{self, AggregateUnit};
use super::drivers::{child_driver, scheduled_driver};
use super::{Options, Report, Stop, StopHandle};
use crate::check::{Pipeline, Schedule, Service, Sink, Source};
use crate::nodes::extract::{Batch, ExtractNode, Extractor, Outputs, Wakes};
use crate::nodes::http::{Masker, ServiceClient};
use crate::nodes::poller::Poller;
use crate::nodes::sinks::{run_sink, writer_for};
use crate::plan::diff::{same_identity, Diff};
use crate::plan::Plan;
use crate::state::StateStore;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Pages that may wait between two nodes: memory stays bounded however large an API is.
pub(super) const CHANNEL_PAGES: usize = 2;

struct SinkUnit {
    sink: Sink,
    tx: mpsc::Sender<Batch>,
    task: JoinHandle<()>,
}

struct SourceUnit {
    outputs: watch::Sender<Arc<Outputs>>,
    /// Sink and child names the outputs were built from, to rewire only on change.
    wired: (Vec<String>, Vec<String>),
    stop: StopHandle,
    driver: JoinHandle<()>,
    extract: JoinHandle<()>,
}

pub struct Graph {
    store: Arc<dyn StateStore>,
    opts: Options,
    http: reqwest::Client,
    plan: Plan,
    pipeline: Pipeline,
    clients: BTreeMap<String, (Service, Arc<ServiceClient>)>,
    sinks: BTreeMap<String, SinkUnit>,
    sources: BTreeMap<String, SourceUnit>,
    aggregates: BTreeMap<String, AggregateUnit>,
    wakes: Wakes,
    pub report: Arc<Mutex<Report>>,
    global: Stop,
}

impl Graph {
    pub fn start(
        p: &Pipeline,
        store: Arc<dyn StateStore>,
        opts: Options,
        global: Stop,
    ) -> Result<Graph, String> {
        let mut g = Graph {
            store,
            opts,
            http: crate::nodes::http::http_client(),
            plan: Plan::default(),
            pipeline: Pipeline::default(),
            clients: BTreeMap::new(),
            sinks: BTreeMap::new(),
            sources: BTreeMap::new(),
            aggregates: BTreeMap::new(),
            wakes: Arc::new(Mutex::new(BTreeMap::new())),
            report: Arc::new(Mutex::new(Report::default())),
            global,
        };
        g.apply(p)?;
        Ok(g)
    }

    /// Moves the running graph to a new pipeline; returns what changed. Anything that
    /// can fail is prepared before the first unit is touched, so a failed apply leaves
    /// the old graph running as it was.
    pub fn apply(&mut self, p: &Pipeline) -> Result<Diff, String> {
        let plan = Plan::new(p);
        let diff = Diff::new(&self.plan, &plan);
        let masker = Masker::new(p.secrets());
        let mut clients = BTreeMap::new();
        for (name, svc) in &p.services {
            let client = match self.clients.get(name) {
                Some((old, c)) if old == svc => c.clone(),
                _ => Arc::new(ServiceClient::new(self.http.clone(), svc, masker.clone())?),
            };
            clients.insert(name.clone(), (svc.clone(), client));
        }
        let views = aggregates::compile(p)?;
        let restart = |id: &str| diff.changed.iter().chain(&diff.removed).any(|c| c == id);

        // New and changed sinks first, so sources can be wired to them.
        let mut retired_sinks = Vec::new();
        for (name, sink) in &p.sinks {
            let id = format!("sink:{name}");
            if self.sinks.contains_key(name) && !restart(&id) {
                continue;
            }
            let (tx, rx) = mpsc::channel(CHANNEL_PAGES);
            // Every input of a sink carries the same schema (the checker sees to it).
            let schema = p
                .flows
                .iter()
                .find(|(_, to)| to == name)
                .and_then(|(from, _)| p.schema_of(from));
            let writer = writer_for(
                sink,
                schema.as_ref(),
                &self.opts.base_dir,
                self.store.clone(),
            );
            let task = tokio::spawn(run_sink(name.clone(), writer, self.store.clone(), rx));
            if let Some(old) = self.sinks.insert(
                name.clone(),
                SinkUnit {
                    sink: sink.clone(),
                    tx,
                    task,
                },
            ) {
                retired_sinks.push(old);
            }
        }
        let removed_sinks: Vec<String> = self
            .sinks
            .keys()
            .filter(|n| !p.sinks.contains_key(*n))
            .cloned()
            .collect();
        for name in removed_sinks {
            if let Some(old) = self.sinks.remove(&name) {
                retired_sinks.push(old);
            }
        }
        self.clients = clients;
        self.pipeline = p.clone();
        let sinks = &self.sinks;
        aggregates::apply(
            &mut self.aggregates,
            views,
            p,
            &restart,
            &self.store,
            &|s| sinks.get(s).map(|u| u.tx.clone()),
        );

        // Changed and removed sources stop (their current run finishes first).
        let stopping: Vec<String> = self
            .sources
            .keys()
            .filter(|n| restart(&format!("source:{n}")) || !p.sources.contains_key(*n))
            .cloned()
            .collect();
        let mut stopped = Vec::new();
        for name in stopping {
            if let Some(unit) = self.sources.remove(&name) {
                unit.stop.stop();
                if let Ok(mut w) = self.wakes.lock() {
                    w.remove(&name);
                }
                stopped.push((name, unit));
            }
        }
        // Whether each stopped source keeps its state, decided on the two plans before
        // the new one replaces the old (no copy of either).
        let keep: BTreeMap<String, bool> = stopped
            .iter()
            .map(|(name, _)| {
                let id = format!("source:{name}");
                let same = match (self.plan.nodes.get(&id), plan.nodes.get(&id)) {
                    (Some(a), Some(b)) => same_identity(a, b),
                    _ => true,
                };
                (name.clone(), same)
            })
            .collect();
        self.plan = plan;
        let store = self.store.clone();
        let to_start: Vec<Source> = p
            .sources
            .iter()
            .filter(|(name, _)| !self.sources.contains_key(*name))
            .map(|(_, s)| s.clone())
            .collect();
        // Stopped units are awaited in the background; their replacements start after
        // the old ones are gone, so a source never runs twice at once.
        let mut waits: BTreeMap<String, tokio::sync::oneshot::Receiver<()>> = BTreeMap::new();
        for (name, unit) in stopped {
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let id = format!("source:{name}");
            let keep_state = keep.get(&name).copied().unwrap_or(true);
            let store = store.clone();
            tokio::spawn(async move {
                let _ = unit.driver.await;
                drop(unit.outputs);
                let _ = unit.extract.await;
                if !keep_state {
                    if let Err(e) = store.reset(&name) {
                        tracing::error!(source = %name, error = %e, "cannot reset the state of a changed source");
                    } else {
                        tracing::info!(source = %name, "its service URL, path, records path or key changed: collecting from scratch");
                    }
                }
                let _ = done_tx.send(());
            });
            waits.insert(id, done_rx);
        }
        let mut outputs = self.all_outputs();
        for src in to_start {
            let wait = waits.remove(&format!("source:{}", src.name));
            let wired = outputs.remove(&src.name).unwrap_or_default();
            self.start_source(&src, wired, wait)?;
        }
        self.rewire();
        // Retired sinks end once no source holds their sender any more.
        for old in retired_sinks {
            drop(old.tx);
            tokio::spawn(async move {
                let _ = old.task.await;
                let _ = old.sink;
            });
        }
        Ok(diff)
    }

    /// The sinks and child sources of every source, in one pass over the pipeline.
    fn all_outputs(&self) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
        let mut out: BTreeMap<String, (Vec<String>, Vec<String>)> = self
            .pipeline
            .sources
            .keys()
            .map(|n| (n.clone(), Default::default()))
            .collect();
        for (from, to) in &self.pipeline.flows {
            if let Some(o) = out.get_mut(from) {
                o.0.push(to.clone());
            }
        }
        for a in self.pipeline.aggregates.values() {
            for src in &a.from {
                if let Some(o) = out.get_mut(src) {
                    o.0.push(aggregates::input_name(&a.name));
                }
            }
        }
        for s in self.pipeline.sources.values() {
            if let Some(o) = s.for_each.as_ref().and_then(|p| out.get_mut(p)) {
                o.1.push(s.name.clone());
            }
        }
        out
    }

    /// The sender of a sink, or of an aggregate named by [`aggregates::input_name`].
    fn input(&self, name: &str) -> Option<&mpsc::Sender<Batch>> {
        aggregates::input_of(&self.aggregates, name).or_else(|| self.sinks.get(name).map(|u| &u.tx))
    }

    fn build_outputs(&self, wired: &(Vec<String>, Vec<String>)) -> Arc<Outputs> {
        Arc::new(Outputs {
            sinks: wired
                .0
                .iter()
                .filter_map(|s| self.input(s).cloned())
                .collect(),
            children: wired.1.clone(),
        })
    }

    /// Points every source at its current sinks and children; only units whose
    /// outputs differ are touched (a restarted sink has a new sender).
    fn rewire(&mut self) {
        for (name, wired) in self.all_outputs() {
            let Some(unit) = self.sources.get(&name) else {
                continue;
            };
            let senders_same = {
                let current = unit.outputs.borrow();
                current.sinks.len() == wired.0.len()
                    && current
                        .sinks
                        .iter()
                        .zip(wired.0.iter())
                        .all(|(tx, s)| self.input(s).is_some_and(|u| u.same_channel(tx)))
            };
            if unit.wired == wired && senders_same {
                continue;
            }
            let outputs = self.build_outputs(&wired);
            if let Some(unit) = self.sources.get_mut(&name) {
                let _ = unit.outputs.send(outputs);
                unit.wired = wired;
            }
        }
    }

    fn start_source(
        &mut self,
        src: &Source,
        wired: (Vec<String>, Vec<String>),
        after: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> Result<(), String> {
        let name = src.name.clone();
        let client = self
            .clients
            .get(&src.service)
            .map(|(_, c)| c.clone())
            .ok_or_else(|| format!("source `{name}`: no service `{}`", src.service))?;
        let ex = Arc::new(Extractor::new(src));
        let (outputs_tx, outputs_rx) = watch::channel(self.build_outputs(&wired));
        let (tx, rx) = mpsc::channel(CHANNEL_PAGES);
        let (stop_handle, stop) = Stop::new();
        let node = ExtractNode {
            source: Arc::from(name.as_str()),
            ex: ex.clone(),
            store: self.store.clone(),
            outputs: outputs_rx,
            wakes: self.wakes.clone(),
            incremental: src.incremental.is_some(),
            newest_first: src.incremental.as_ref().is_some_and(|i| i.newest_first),
        };
        let stop = stop.or(&self.global);
        let poller = Arc::new(Poller {
            src: Arc::new(src.clone()),
            client,
            ex,
            tx,
            store: self.store.clone(),
            stop: stop.clone(),
        });
        let report = self.report.clone();
        let wakes = self.wakes.clone();
        let children = outputs_tx.subscribe();
        let once = self.opts.once;
        // A replacement waits, both its extract node and its driver, until the unit it
        // replaces is gone and its state reset: the old run's pages are committed, and
        // the first request of the new one sees the state it is meant to start from.
        let (gate_tx, gate) = watch::channel(after.is_none());
        if let Some(after) = after {
            tokio::spawn(async move {
                let _ = after.await;
                let _ = gate_tx.send(true);
            });
        }
        let opened = |mut gate: watch::Receiver<bool>| async move {
            // An error means the waiting task is gone: nothing left to wait for.
            let _ = gate.wait_for(|open| *open).await;
        };
        let extract = {
            let opened = opened(gate.clone());
            tokio::spawn(async move {
                opened.await;
                node.run(rx).await
            })
        };
        let opened = opened(gate);
        let driver = if src.schedule == Schedule::Parent {
            let (wake_tx, wake_rx) = mpsc::channel(64);
            if let Ok(mut w) = self.wakes.lock() {
                w.insert(name.clone(), wake_tx);
            }
            tokio::spawn(async move {
                opened.await;
                if !stop.is_stopping() {
                    child_driver(poller, children, wakes, wake_rx, report, stop).await
                }
            })
        } else {
            tokio::spawn(async move {
                opened.await;
                if !stop.is_stopping() {
                    scheduled_driver(poller, children, wakes, report, stop, once).await
                }
            })
        };
        self.sources.insert(
            name,
            SourceUnit {
                outputs: outputs_tx,
                wired,
                stop: stop_handle,
                driver,
                extract,
            },
        );
        Ok(())
    }

    /// Waits for every scheduled source to finish (with `once`), then drains.
    pub async fn wait_scheduled(&mut self) {
        let scheduled: Vec<String> = self
            .pipeline
            .sources
            .values()
            .filter(|s| s.schedule != Schedule::Parent)
            .map(|s| s.name.clone())
            .collect();
        for name in scheduled {
            if let Some(unit) = self.sources.get_mut(&name) {
                // Leave a finished handle behind: `shutdown` awaits every driver again.
                let driver = std::mem::replace(&mut unit.driver, tokio::spawn(async {}));
                let _ = driver.await;
            }
        }
    }

    /// Stops every unit: no new requests; in-flight pages finish; sinks drain.
    pub async fn shutdown(mut self) -> Report {
        if let Ok(mut w) = self.wakes.lock() {
            w.clear();
        }
        let sources = std::mem::take(&mut self.sources);
        for unit in sources.values() {
            unit.stop.stop();
        }
        for (_, unit) in sources {
            let _ = unit.driver.await;
            drop(unit.outputs);
            let _ = unit.extract.await;
        }
        aggregates::shutdown(std::mem::take(&mut self.aggregates)).await;
        for (_, unit) in std::mem::take(&mut self.sinks) {
            drop(unit.tx);
            let _ = unit.task.await;
        }
        let _ = self.store.flush();
        let mut report = self
            .report
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        for name in self.pipeline.sinks.keys() {
            let waiting = self
                .store
                .kv_len(&crate::nodes::sinks::queue_space(name))
                .unwrap_or(0);
            if waiting > 0 {
                report.queued.insert(name.clone(), waiting);
            }
        }
        report
    }
}
