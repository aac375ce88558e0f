//! The aggregate nodes of the running graph: a node per aggregate, fed like a sink by
//! the extract nodes of its `from` sources and feeding the sinks its flows name. A
//! changed aggregate, or one whose sinks were restarted, is replaced; the replacement
//! opens the view only once the old node is gone, so one view never has two writers.

use super::graph::CHANNEL_PAGES;
use crate::nodes::aggregate::{AggregateNode, View};
use crate::nodes::extract::Batch;
use crate::plan::diff::Diff;
use crate::plan::{Node, NodeId, Plan};
use crate::state::StateStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

pub(super) struct AggregateUnit {
    tx: mpsc::Sender<Batch>,
    task: JoinHandle<()>,
    /// The sinks it was started with, to see when one was restarted.
    sinks: Vec<mpsc::Sender<Batch>>,
}

/// The sender of aggregate `name`.
pub(super) fn input_of<'a>(
    units: &'a BTreeMap<String, AggregateUnit>,
    name: &str,
) -> Option<&'a mpsc::Sender<Batch>> {
    units.get(name).map(|u| &u.tx)
}

/// Compiles every aggregate of `plan`, before any node is touched.
pub(super) fn compile(plan: &Plan) -> Result<BTreeMap<String, View>, String> {
    plan.nodes
        .values()
        .filter_map(|n| match n {
            Node::Aggregate { aggregate, inputs } => Some((aggregate, inputs)),
            _ => None,
        })
        .map(|(agg, inputs)| {
            View::compile(agg, inputs)
                .map(|v| (agg.name.clone(), v))
                .map_err(|e| format!("aggregate `{}`: {e}", agg.name))
        })
        .collect()
}

/// Brings the nodes in line with `plan`: starts new aggregates, replaces changed ones and
/// ones whose sinks changed, retires removed ones. `sink` gives a sink's sender.
pub(super) fn apply(
    units: &mut BTreeMap<String, AggregateUnit>,
    mut views: BTreeMap<String, View>,
    plan: &Plan,
    diff: &Diff,
    store: &Arc<dyn StateStore>,
    sink: &dyn Fn(&str) -> Option<mpsc::Sender<Batch>>,
    tasks: &TaskTracker,
) {
    units.retain(|name, _| views.contains_key(name));
    let names: Vec<String> = views.keys().cloned().collect();
    for name in names {
        let id = NodeId::Aggregate(name.clone());
        let sinks: Vec<mpsc::Sender<Batch>> = plan
            .outputs(&id)
            .filter_map(|to| match to {
                NodeId::Sink(s) => sink(s),
                _ => None,
            })
            .collect();
        if let Some(unit) = units.get(&name) {
            let same_sinks = unit.sinks.len() == sinks.len()
                && unit
                    .sinks
                    .iter()
                    .zip(&sinks)
                    .all(|(a, b)| a.same_channel(b));
            if same_sinks && !diff.restarts(&id) {
                continue;
            }
        }
        let Some(view) = views.remove(&name) else {
            continue;
        };
        let previous = units.remove(&name).map(|old| old.task);
        let (tx, rx) = mpsc::channel(CHANNEL_PAGES);
        let node = AggregateNode {
            view,
            store: store.clone(),
            sinks: sinks.clone(),
        };
        let task = tasks.spawn(async move {
            // The old node ends once no source holds its sender any more.
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            node.run(rx).await
        });
        units.insert(name, AggregateUnit { tx, task, sinks });
    }
}

/// Waits for every aggregate to take in what its sources sent and deliver it: after the
/// sources have stopped, before the sinks do.
pub(super) async fn shutdown(units: BTreeMap<String, AggregateUnit>) {
    for (_, unit) in units {
        drop(unit.tx);
        drop(unit.sinks);
        let _ = unit.task.await;
    }
}
