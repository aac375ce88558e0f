//! The aggregate units of the running graph: a node per aggregate, fed like a sink by
//! the extract nodes of its `from` sources and feeding the sinks its flows name. A
//! changed aggregate, or one whose sinks were restarted, is replaced; the replacement
//! opens the view only once the old node is gone, so one view never has two writers.

use super::graph::CHANNEL_PAGES;
use crate::check::Pipeline;
use crate::nodes::aggregate::{AggregateNode, View};
use crate::nodes::extract::Batch;
use crate::state::StateStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub(super) struct AggregateUnit {
    tx: mpsc::Sender<Batch>,
    task: JoinHandle<()>,
    /// The sinks it was started with, to see when one was restarted.
    sinks: Vec<mpsc::Sender<Batch>>,
}

/// How a source's outputs name an aggregate (sinks go by their bare name).
pub(super) fn input_name(aggregate: &str) -> String {
    format!("aggregate:{aggregate}")
}

/// The sender of an aggregate named by [`input_name`].
pub(super) fn input_of<'a>(
    units: &'a BTreeMap<String, AggregateUnit>,
    name: &str,
) -> Option<&'a mpsc::Sender<Batch>> {
    let agg = name.strip_prefix("aggregate:")?;
    units.get(agg).map(|u| &u.tx)
}

/// Compiles every aggregate of `p`, before any unit is touched.
pub(super) fn compile(p: &Pipeline) -> Result<BTreeMap<String, View>, String> {
    p.aggregates
        .keys()
        .map(|name| {
            View::new(p, name)
                .map(|v| (name.clone(), v))
                .map_err(|e| format!("aggregate `{name}`: {e}"))
        })
        .collect()
}

/// Brings the units in line with `p`: starts new aggregates, replaces changed ones and
/// ones whose sinks changed, retires removed ones. `sink` gives a sink's sender.
pub(super) fn apply(
    units: &mut BTreeMap<String, AggregateUnit>,
    mut views: BTreeMap<String, View>,
    p: &Pipeline,
    changed: &dyn Fn(&str) -> bool,
    store: &Arc<dyn StateStore>,
    sink: &dyn Fn(&str) -> Option<mpsc::Sender<Batch>>,
) {
    units.retain(|name, _| p.aggregates.contains_key(name));
    for name in p.aggregates.keys() {
        let sinks: Vec<mpsc::Sender<Batch>> = p.outputs_of(name).filter_map(sink).collect();
        if let Some(unit) = units.get(name) {
            let same_sinks = unit.sinks.len() == sinks.len()
                && unit
                    .sinks
                    .iter()
                    .zip(&sinks)
                    .all(|(a, b)| a.same_channel(b));
            if same_sinks && !changed(&format!("aggregate:{name}")) {
                continue;
            }
        }
        let Some(view) = views.remove(name) else {
            continue;
        };
        let previous = units.remove(name).map(|old| old.task);
        let (tx, rx) = mpsc::channel(CHANNEL_PAGES);
        let node = AggregateNode {
            view,
            store: store.clone(),
            sinks: sinks.clone(),
        };
        let task = tokio::spawn(async move {
            // The old node ends once no source holds its sender any more.
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            node.run(rx).await
        });
        units.insert(name.clone(), AggregateUnit { tx, task, sinks });
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
