//! The running graph: consumes a [`Plan`] and the [`Diff`] from the plan it runs, and
//! keeps a unit per source ([`units`](super::units)), a node per aggregate and per sink,
//! wired by bounded channels. A reload starts, restarts and stops exactly the nodes the
//! diff names and rewires the rest without touching them. Every task is tracked and
//! stops with a child of the run's [`Stop`].

use super::aggregates::{self, AggregateUnit};
use super::listener::{self, Listener};
use super::units::Unit;
use super::{Options, Report};
use crate::check::{Schedule, Service, Sink};
use crate::masking::Masker;
use crate::nodes::extract::{Batch, Outputs, Wakes};
use crate::nodes::sink::{queue_space, refuse_in_data_dir, writer_for, SinkExit, SinkNode};
use crate::nodes::source::http::ServiceClient;
use crate::plan::diff::Diff;
use crate::plan::{Node, NodeId, Plan};
use crate::state::StateStore;
use crate::stop::Stop;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

/// Pages that may wait between two nodes: memory stays bounded however large an API is.
/// One: a page waits while the next is parsed (a page's tree is a few times its bytes).
pub(super) const CHANNEL_PAGES: usize = 1;

/// Pages that may wait for a sink that writes several pages together
/// ([`crate::nodes::sink::SinkWriter::pages_at_once`]): those that arrive while it writes
/// (and syncs) one go out together next. They are records already made, a few hundred
/// kilobytes a page. A sink that writes page by page has [`CHANNEL_PAGES`]: more pages
/// waiting would only hold more memory (the sled sink: 74 against 67 MiB at peak).
const SINK_CHANNEL_PAGES: usize = 8;

struct SinkUnit {
    tx: mpsc::Sender<Batch>,
    task: JoinHandle<SinkExit>,
    stop: Stop,
    retired: Arc<AtomicBool>,
}

struct SourceUnit {
    outputs: watch::Sender<Arc<Outputs>>,
    /// The nodes its records go to, to rewire only on change.
    wired: Vec<NodeId>,
    stop: Stop,
    task: JoinHandle<()>,
}

pub struct Graph {
    store: Arc<dyn StateStore>,
    opts: Options,
    http: reqwest::Client,
    plan: Plan,
    clients: BTreeMap<String, (Service, Arc<ServiceClient>)>,
    sinks: BTreeMap<String, SinkUnit>,
    units: BTreeMap<String, SourceUnit>,
    aggregates: BTreeMap<String, AggregateUnit>,
    wakes: Wakes,
    pub report: Arc<Mutex<Report>>,
    root: Stop,
    tasks: TaskTracker,
    /// hamstr's HTTP listener, once a plan needed it; up until the run ends.
    listener: Option<Arc<Listener>>,
}

impl Graph {
    pub fn start(
        plan: Plan,
        store: Arc<dyn StateStore>,
        opts: Options,
        root: Stop,
    ) -> Result<Graph, String> {
        let mut g = Graph {
            store,
            opts,
            http: crate::nodes::net::http_client()?,
            plan: Plan::default(),
            clients: BTreeMap::new(),
            sinks: BTreeMap::new(),
            units: BTreeMap::new(),
            aggregates: BTreeMap::new(),
            wakes: Arc::new(Mutex::new(BTreeMap::new())),
            report: Arc::new(Mutex::new(Report::default())),
            root,
            tasks: TaskTracker::new(),
            listener: None,
        };
        let diff = Diff::start(&plan);
        g.apply(plan, &diff)?;
        Ok(g)
    }

    /// The plan the graph runs.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Moves the running graph to `plan`, starting, restarting and stopping what `diff`
    /// (from the running plan to `plan`) names. Anything that can fail is prepared
    /// before the first node is touched, so a failed apply leaves the old graph running
    /// as it was.
    pub fn apply(&mut self, plan: Plan, diff: &Diff) -> Result<(), String> {
        let masker = Masker::new(plan.secrets.clone());
        let mut clients = BTreeMap::new();
        for (_, _, svc) in plan.sources() {
            if clients.contains_key(&svc.name) {
                continue;
            }
            let client = match self.clients.get(&svc.name) {
                Some((old, c)) if old == svc => c.clone(),
                _ => Arc::new(
                    ServiceClient::new(
                        self.http.clone(),
                        svc,
                        masker.clone(),
                        &crate::nodes::auth::TokenHome::of(&self.store),
                    )?
                    .with_tape(self.opts.tape.clone()),
                ),
            };
            clients.insert(svc.name.clone(), (svc.clone(), client));
        }
        let views = aggregates::compile(&plan)?;
        self.refuse_sink_paths(&plan, diff)?;
        self.listen(&plan)?;

        self.apply_sinks(&plan, diff);
        self.clients = clients;
        let sinks = &self.sinks;
        aggregates::apply(
            &mut self.aggregates,
            views,
            &plan,
            diff,
            &self.store,
            &|s| sinks.get(s).map(|u| u.tx.clone()),
            &self.tasks,
        );

        // Changed and removed units stop (their current run finishes first); their
        // replacements start once they are gone, so a source never runs twice at once.
        let stopping: Vec<String> = self
            .units
            .keys()
            .filter(|n| diff.restarts(&NodeId::Source(n.to_string())))
            .cloned()
            .collect();
        let mut waits: BTreeMap<String, oneshot::Receiver<()>> = BTreeMap::new();
        for name in stopping {
            let Some(unit) = self.units.remove(&name) else {
                continue;
            };
            unit.stop.stop();
            if let Ok(mut w) = self.wakes.lock() {
                w.remove(&name);
            }
            let (done_tx, done_rx) = oneshot::channel();
            self.tasks.spawn(async move {
                let _ = unit.task.await;
                drop(unit.outputs);
                let _ = done_tx.send(());
            });
            waits.insert(name, done_rx);
        }
        self.plan = plan;
        let to_start: Vec<String> = self
            .plan
            .sources()
            .map(|(name, _, _)| name.to_string())
            .filter(|name| !self.units.contains_key(name))
            .collect();
        for name in to_start {
            let wait = waits.remove(&name);
            self.start_unit(&name, wait)?;
        }
        self.rewire();
        Ok(())
    }

    /// Starts the listener when `plan` is the first to need it (a bind that fails fails
    /// the apply, before anything changed); a running one takes the plan's paths.
    fn listen(&mut self, plan: &Plan) -> Result<(), String> {
        let wanted = self
            .opts
            .listen
            .clone()
            .or_else(|| plan.server.as_ref().and_then(|s| s.listen.clone()))
            .unwrap_or_else(|| crate::check::DEFAULT_LISTEN.to_string());
        match &self.listener {
            Some(l)
                if wanted.parse::<std::net::SocketAddr>().ok() != Some(l.addr())
                    && !wanted.ends_with(":0") =>
            {
                tracing::warn!(listening = %l.addr(), wanted = %wanted, "the listener keeps its address until hamstr restarts");
            }
            Some(_) => {}
            // `--once` runs the polls one time: there are no events to wait for.
            None if listener::needed(plan) && !self.opts.once => {
                self.listener = Some(Listener::start(
                    &wanted,
                    plan,
                    self.opts.metrics.clone(),
                    self.opts.on_answer.clone(),
                )?);
            }
            None => {}
        }
        if let Some(l) = &self.listener {
            l.apply(plan);
        }
        Ok(())
    }

    /// Refuses a jsonl sink about to start whose file is inside the data directory
    /// (`check` catches `.hamstr/`; only here is `--data-dir` known). A few lookups of
    /// folders that exist, made once per started sink.
    fn refuse_sink_paths(&self, plan: &Plan, diff: &Diff) -> Result<(), String> {
        let Some(data_dir) = self.store.location() else {
            return Ok(());
        };
        for (id, node) in &plan.nodes {
            let Node::Sink {
                sink: Sink::Jsonl { name, path },
                ..
            } = node
            else {
                continue;
            };
            if self.sinks.contains_key(name) && !diff.restarts(id) {
                continue;
            }
            refuse_in_data_dir(&self.opts.base_dir.join(path), data_dir)
                .map_err(|e| format!("sink `{name}`: {e}"))?;
        }
        Ok(())
    }

    /// Starts new and changed sinks (a replacement only once the sink it replaces has
    /// stopped: one queue never has two readers) and retires removed ones.
    fn apply_sinks(&mut self, plan: &Plan, diff: &Diff) {
        for (id, node) in &plan.nodes {
            let Node::Sink { sink, schema } = node else {
                continue;
            };
            let name = id.name();
            if self.sinks.contains_key(name) && !diff.restarts(id) {
                continue;
            }
            let previous = self.sinks.remove(name).map(retire);
            let writer = writer_for(
                sink,
                schema.as_ref(),
                &self.opts.base_dir,
                self.store.clone(),
                &self.http,
            );
            let (tx, rx) = mpsc::channel(if writer.pages_at_once() > 1 {
                SINK_CHANNEL_PAGES
            } else {
                CHANNEL_PAGES
            });
            let stop = self.root.child();
            let retired = Arc::new(AtomicBool::new(false));
            let node = SinkNode {
                name: name.to_string(),
                writer,
                store: self.store.clone(),
                stop: stop.clone(),
                retired: retired.clone(),
                end_run: self.root.clone(),
            };
            let task = self.tasks.spawn(async move {
                if let Some(previous) = previous {
                    let _ = previous.await;
                }
                node.run(rx).await
            });
            self.sinks.insert(
                name.to_string(),
                SinkUnit {
                    tx,
                    task,
                    stop,
                    retired,
                },
            );
        }
        let removed: Vec<String> = self
            .sinks
            .keys()
            .filter(|n| !plan.nodes.contains_key(&NodeId::Sink(n.to_string())))
            .cloned()
            .collect();
        for name in removed {
            if let Some(old) = self.sinks.remove(&name) {
                let task = retire(old);
                self.tasks.spawn(async move {
                    let _ = task.await;
                });
            }
        }
    }

    /// The sender of a sink or an aggregate.
    fn input(&self, id: &NodeId) -> Option<&mpsc::Sender<Batch>> {
        match id {
            NodeId::Sink(n) => self.sinks.get(n).map(|u| &u.tx),
            NodeId::Aggregate(n) => aggregates::input_of(&self.aggregates, n),
            _ => None,
        }
    }

    /// What a source's records feed, from the plan's edges.
    fn wiring(&self, source: &str) -> Vec<NodeId> {
        self.plan
            .outputs(&self.plan.output_of(source))
            .cloned()
            .collect()
    }

    fn build_outputs(&self, wired: &[NodeId]) -> Arc<Outputs> {
        Arc::new(Outputs {
            sinks: wired
                .iter()
                .filter_map(|id| self.input(id).cloned())
                .collect(),
            children: wired
                .iter()
                .filter_map(|id| match id {
                    NodeId::Source(n) => Some(n.clone()),
                    _ => None,
                })
                .collect(),
        })
    }

    /// Points every unit at its current sinks and children; only units whose outputs
    /// differ are touched (a restarted sink has a new sender).
    fn rewire(&mut self) {
        let names: Vec<String> = self.units.keys().cloned().collect();
        for name in names {
            let wired = self.wiring(&name);
            let Some(unit) = self.units.get(&name) else {
                continue;
            };
            let senders: Vec<&mpsc::Sender<Batch>> =
                wired.iter().filter_map(|id| self.input(id)).collect();
            let same = unit.wired == wired && {
                let current = unit.outputs.borrow();
                current.sinks.len() == senders.len()
                    && current
                        .sinks
                        .iter()
                        .zip(&senders)
                        .all(|(a, b)| a.same_channel(b))
            };
            if same {
                continue;
            }
            let outputs = self.build_outputs(&wired);
            if let Some(unit) = self.units.get_mut(&name) {
                // `send_replace`: the value must change even when no task reads it now (a
                // unit between runs), or it would keep a retired sink's sender alive.
                unit.outputs.send_replace(outputs);
                unit.wired = wired;
            }
        }
    }

    fn start_unit(
        &mut self,
        name: &str,
        after: Option<oneshot::Receiver<()>>,
    ) -> Result<(), String> {
        let id = NodeId::Source(name.to_string());
        let Some(node @ Node::Source { source, service }) = self.plan.nodes.get(&id) else {
            return Err(format!("no source `{name}` in the plan"));
        };
        let client = self
            .clients
            .get(&service.name)
            .map(|(_, c)| c.clone())
            .ok_or_else(|| format!("source `{name}`: no service `{}`", service.name))?;
        let wired = self.wiring(name);
        let (outputs_tx, outputs_rx) = watch::channel(self.build_outputs(&wired));
        let stop = self.root.child();
        let unit = Unit {
            source: source.clone(),
            identity: node.identity().unwrap_or_default(),
            client,
            store: self.store.clone(),
            outputs: outputs_rx,
            wakes: self.wakes.clone(),
            report: self.report.clone(),
            stop: stop.clone(),
            once: self.opts.once,
            listener: self.listener.clone(),
        };
        let task = self.tasks.spawn(unit.run(after));
        self.units.insert(
            name.to_string(),
            SourceUnit {
                outputs: outputs_tx,
                wired,
                stop,
                task,
            },
        );
        Ok(())
    }

    /// Waits for every scheduled source to finish (with `once`).
    pub async fn wait_scheduled(&mut self) {
        let scheduled: Vec<String> = self
            .plan
            .sources()
            .filter(|(_, s, _)| !matches!(s.schedule, Schedule::Parent | Schedule::Push))
            .map(|(n, _, _)| n.to_string())
            .collect();
        for name in scheduled {
            if let Some(unit) = self.units.get_mut(&name) {
                // Leave a finished handle behind: `shutdown` awaits every unit again.
                let task = std::mem::replace(&mut unit.task, tokio::spawn(async {}));
                let _ = task.await;
            }
        }
    }

    /// Stops every unit: no new requests; in-flight pages finish; sinks drain.
    pub async fn shutdown(mut self) -> Report {
        if let Some(l) = &self.listener {
            l.stopping();
        }
        if let Ok(mut w) = self.wakes.lock() {
            w.clear();
        }
        let units = std::mem::take(&mut self.units);
        for unit in units.values() {
            unit.stop.stop();
        }
        for (_, unit) in units {
            let _ = unit.task.await;
            drop(unit.outputs);
        }
        aggregates::shutdown(std::mem::take(&mut self.aggregates)).await;
        let mut reader_gone = false;
        for (_, unit) in std::mem::take(&mut self.sinks) {
            drop(unit.tx);
            if let Ok(exit) = unit.task.await {
                reader_gone |= exit.reader_gone;
            }
        }
        self.tasks.close();
        let grace = self.root.grace();
        let _ = tokio::time::timeout(grace, self.tasks.wait()).await;
        if let Some(l) = self.listener.take() {
            l.close().await;
        }
        let mut report = self
            .report
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        report.reader_gone = reader_gone;
        let store = self.store.clone();
        let sinks: Vec<String> = self
            .plan
            .nodes
            .keys()
            .filter_map(|id| match id {
                NodeId::Sink(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        let queued = tokio::task::spawn_blocking(move || {
            let _ = store.flush();
            sinks
                .into_iter()
                .filter_map(|name| {
                    let waiting = store.kv_len(&queue_space(&name)).unwrap_or(0);
                    (waiting > 0).then_some((name, waiting))
                })
                .collect()
        })
        .await
        .unwrap_or_default();
        report.queued = queued;
        report
    }
}

/// Stops a sink a reload replaces or removes: its page in flight gets the grace, what
/// comes later waits in its queue for the replacement; no last drain of its own.
fn retire(old: SinkUnit) -> JoinHandle<SinkExit> {
    old.retired.store(true, Ordering::SeqCst);
    old.stop.stop();
    drop(old.tx);
    old.task
}
