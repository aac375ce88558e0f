//! The aggregate node: takes the pages of the sources it reads like a sink, keeps its
//! view exact under updates ([`view`]), sends the groups that changed to its own sinks,
//! and acknowledges a page once the view holds it.

mod codec;
mod rows;
mod tx;
pub mod view;

use super::blocking;
use super::extract::{Ack, Batch};
use crate::check::Pipeline;
use crate::state::StateStore;
use std::sync::Arc;
use tokio::sync::mpsc;
pub use view::View;

/// Groups sent to the sinks in one page.
const OUT_PAGE: usize = 512;

/// The running node of one aggregate.
pub struct AggregateNode {
    pub view: View,
    pub store: Arc<dyn StateStore>,
    pub sinks: Vec<mpsc::Sender<Batch>>,
}

impl AggregateNode {
    /// Opens the view (finishing what a crash interrupted), then runs until every
    /// source feeding it is gone.
    pub async fn run(self, mut rx: mpsc::Receiver<Batch>) {
        let node = Arc::new(self);
        let n = node.clone();
        if let Err(e) = blocking(move || n.view.recover(n.store.as_ref())).await {
            tracing::error!(aggregate = %node.view.name, error = %e, "cannot open the view; its sources' pages are refused");
            while let Some(batch) = rx.recv().await {
                let _ = batch.ack.send(Ack {
                    page: batch.page,
                    ok: false,
                });
            }
            return;
        }
        node.run_view(rx).await
    }

    /// Applies each page to the view (sled work, on the blocking pool) and sends the
    /// groups that changed onward.
    async fn run_view(self: &Arc<Self>, mut rx: mpsc::Receiver<Batch>) {
        let (ack_tx, ack_rx) = mpsc::unbounded_channel::<Ack>();
        let mut out = Outgoing {
            page: 0,
            ack_tx,
            ack_rx,
        };
        // Groups an earlier run changed but could not deliver.
        let n = self.clone();
        let mut waiting = blocking(move || n.view.has_outbox(n.store.as_ref())).await;
        if waiting {
            waiting = !self.deliver(&mut out).await;
        }
        let outbox = !self.sinks.is_empty();
        while let Some(batch) = rx.recv().await {
            let (n, source, records) = (self.clone(), batch.source.clone(), batch.records.clone());
            let applied =
                blocking(move || n.view.apply(n.store.as_ref(), &source, &records, outbox)).await;
            let ok = match applied {
                Ok(changed) => {
                    tracing::debug!(aggregate = %self.view.name, source = %batch.source, records = batch.records.len(), groups = changed, "view updated");
                    if changed > 0 || waiting {
                        waiting = !self.deliver(&mut out).await;
                    }
                    // The view and its outbox hold the page now, durably; groups a sink
                    // did not take go out again with the next page or run.
                    true
                }
                Err(e) => {
                    tracing::error!(aggregate = %self.view.name, source = %batch.source, error = %e, "cannot update the view");
                    false
                }
            };
            let _ = batch.ack.send(Ack {
                page: batch.page,
                ok,
            });
        }
    }

    /// Sends every group in the outbox to the sinks and waits for them; true when all
    /// took everything.
    async fn deliver(self: &Arc<Self>, out: &mut Outgoing) -> bool {
        if self.sinks.is_empty() {
            return true;
        }
        loop {
            let n = self.clone();
            let rows = match blocking(move || n.view.outbox(n.store.as_ref(), OUT_PAGE)).await {
                Ok(rows) if rows.is_empty() => return true,
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(aggregate = %self.view.name, error = %e, "cannot read the groups to send");
                    return false;
                }
            };
            let (groups, records): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
            out.page += 1;
            let records = Arc::new(records);
            let mut remaining = 0;
            for sink in &self.sinks {
                let batch = Batch {
                    source: self.view.name.clone(),
                    names: self.view.names.clone(),
                    records: records.clone(),
                    page: out.page,
                    ack: out.ack_tx.clone(),
                };
                if sink.send(batch).await.is_ok() {
                    remaining += 1;
                }
            }
            let mut ok = remaining == self.sinks.len();
            while remaining > 0 {
                match out.ack_rx.recv().await {
                    Some(a) if a.page == out.page => {
                        remaining -= 1;
                        ok &= a.ok;
                    }
                    Some(_) => {}
                    None => return false,
                }
            }
            if !ok {
                tracing::error!(aggregate = %self.view.name, groups = groups.len(), "a sink did not take the aggregate's groups; they are sent again with the next page");
                return false;
            }
            let n = self.clone();
            if let Err(e) = blocking(move || n.view.delivered(n.store.as_ref(), &groups)).await {
                tracing::error!(aggregate = %self.view.name, error = %e, "cannot mark groups as sent");
                return false;
            }
        }
    }
}

/// The node's side of its sinks' acknowledgements.
struct Outgoing {
    page: u64,
    ack_tx: mpsc::UnboundedSender<Ack>,
    ack_rx: mpsc::UnboundedReceiver<Ack>,
}

/// Every group of an aggregate's view, as JSON objects: group fields, then computed ones.
pub fn dump(
    p: &Pipeline,
    name: &str,
    store: &dyn StateStore,
) -> Result<Vec<serde_json::Value>, String> {
    let view = View::new(p, name)?;
    let rows = view.rows(store)?;
    if !rows.is_empty() && !view.is_current(store)? {
        return Err(format!("the view of `{name}` was built by another definition of the aggregate; the next run starts it afresh"));
    }
    rows.into_iter()
        .map(|r| {
            serde_json::from_slice(&r.json).map_err(|e| format!("a damaged group in `{name}`: {e}"))
        })
        .collect()
}

/// How many groups the view of `name` holds, and how many wait for its sinks.
pub fn sizes(name: &str, store: &dyn StateStore) -> Result<(usize, usize), String> {
    let spaces = codec::Spaces::new(name);
    let len = |s| store.kv_len(spaces.name(s)).map_err(|e| e.to_string());
    Ok((len(codec::Space::Groups)?, len(codec::Space::Outbox)?))
}
