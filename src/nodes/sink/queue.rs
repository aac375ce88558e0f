//! The durable queue of one sink: pages the writer could not take wait here, in the data
//! directory, and go out in order when it recovers — across restarts too.

use super::{Origin, SinkWriter, WriteError};
use crate::nodes::extract::{Batch, Emitted};
use crate::state::StateStore;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A page waiting in a sink's durable queue.
#[derive(Serialize, Deserialize)]
struct Queued {
    /// What emitted the page (an `exec` sink tells its program); pages queued before
    /// this was kept have none.
    #[serde(default)]
    source: String,
    names: Vec<String>,
    records: Vec<(Option<Vec<u8>>, String)>,
}

/// The name of a sink's queue in the store.
pub fn queue_space(sink: &str) -> String {
    format!("sinkq/{sink}")
}

/// Where the last reason a sink could not take records is kept (per sink name), for
/// `hamstr state`; gone once its queue is empty again.
pub const ERROR_SPACE: &str = "sinkerr";

/// Why sink `sink` last failed, while records wait in its queue.
pub fn last_error(store: &dyn StateStore, sink: &str) -> Option<String> {
    let bytes = store.kv_get(ERROR_SPACE, sink.as_bytes()).ok()??;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The durable queue of one sink. Its store calls are short sled operations; the
/// pages it hands the writer go through the writer's own off-worker path.
pub(super) struct Queue {
    pub(super) name: String,
    space: String,
    store: Arc<dyn StateStore>,
}

impl Queue {
    pub(super) fn new(name: &str, store: Arc<dyn StateStore>) -> Queue {
        Queue {
            name: name.to_string(),
            space: queue_space(name),
            store,
        }
    }

    pub(super) async fn len(&self) -> usize {
        let (store, space) = (self.store.clone(), self.space.clone());
        tokio::task::spawn_blocking(move || store.kv_len(&space).unwrap_or(0))
            .await
            .unwrap_or(0)
    }

    /// Keeps why the sink failed (the writers' errors carry no secret), or forgets it.
    pub(super) async fn note_error(&self, error: Option<&str>) {
        let value = error.map(|e| e.chars().take(500).collect::<String>().into_bytes());
        let (store, key) = (self.store.clone(), self.name.as_bytes().to_vec());
        let _ =
            tokio::task::spawn_blocking(move || store.kv_apply(ERROR_SPACE, &[(key, value)])).await;
    }

    pub(super) async fn push(&self, batch: &Batch) -> Result<(), String> {
        let q = Queued {
            source: batch.source.to_string(),
            names: batch.names.to_vec(),
            records: batch
                .records
                .iter()
                .map(|r| (r.key.clone(), String::from_utf8_lossy(&r.json).into_owned()))
                .collect(),
        };
        let bytes = serde_json::to_vec(&q).map_err(|e| e.to_string())?;
        let (store, space) = (self.store.clone(), self.space.clone());
        tokio::task::spawn_blocking(move || {
            let id = store.next_id().map_err(|e| e.to_string())?;
            store
                .kv_apply(&space, &[(id.to_be_bytes().to_vec(), Some(bytes))])
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        self.count_depth().await;
        Ok(())
    }

    /// The queue's depth in the metrics, when they are on.
    pub(super) async fn count_depth(&self) {
        if crate::metrics::enabled() {
            crate::metrics::sink_queue_depth(&self.name, self.len().await);
        }
    }

    /// Delivers queued pages in order until the queue is empty or the writer fails, and
    /// keeps the failure for `hamstr state` (or forgets it once the queue is empty).
    pub(super) async fn drain(&self, writer: &mut dyn SinkWriter) -> Result<(), WriteError> {
        let result = self.deliver(writer).await;
        if matches!(result, Err(WriteError::Failed(_))) {
            crate::metrics::sink_failure(&self.name);
        }
        self.count_depth().await;
        let error = match &result {
            Err(WriteError::Failed(e)) => Some(e.as_str()),
            _ => None,
        };
        self.note_error(error).await;
        result
    }

    async fn deliver(&self, writer: &mut dyn SinkWriter) -> Result<(), WriteError> {
        loop {
            let (store, space) = (self.store.clone(), self.space.clone());
            let head = tokio::task::spawn_blocking(move || store.kv_scan(&space, 1))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
                .pop();
            let Some((id, bytes)) = head else {
                return Ok(());
            };
            let q: Queued = serde_json::from_slice(&bytes).map_err(|e| {
                format!("a damaged entry in the queue of sink `{}`: {e}", self.name)
            })?;
            let records: Arc<Vec<Emitted>> = Arc::new(
                q.records
                    .into_iter()
                    .map(|(key, json)| Emitted {
                        key,
                        json: json.into_bytes().into(),
                    })
                    .collect(),
            );
            let origin = Origin::Queued {
                space: &self.space,
                id: &id,
            };
            match writer
                .write_for(&q.source, origin, &q.names, &records)
                .await
            {
                Ok(()) => {}
                // Queued by an owner whose lease is gone: the new owner fetches it again.
                Err(WriteError::Fenced(e)) => {
                    tracing::warn!(sink = %self.name, source = %q.source, error = %e, "fenced: a queued page is dropped; the unit's new owner fetches it again");
                }
                Err(e) => return Err(e),
            }
            let (store, space) = (self.store.clone(), self.space.clone());
            tokio::task::spawn_blocking(move || store.kv_apply(&space, &[(id, None)]))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            crate::metrics::sink_delivered(&self.name, records.len() as u64);
            tracing::info!(sink = %self.name, records = records.len(), "delivered a queued page");
        }
    }
}
