//! The `sled(tree)` sink: records upserted by key (or appended under a fresh id) into a
//! tree of the data directory, in one blocking call per page off the async workers.

use super::{SinkWriter, WriteFuture};
use crate::nodes::extract::Emitted;
use crate::state::StateStore;
use std::sync::Arc;

pub struct SledWriter {
    pub(super) tree: String,
    pub(super) store: Arc<dyn StateStore>,
}

impl SinkWriter for SledWriter {
    fn write<'a>(
        &'a mut self,
        _names: &'a [String],
        records: &'a Arc<Vec<Emitted>>,
    ) -> WriteFuture<'a> {
        let (store, tree, records) = (self.store.clone(), self.tree.clone(), records.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut rows = Vec::with_capacity(records.len());
                for r in records.iter() {
                    let key = match &r.key {
                        Some(k) => k.clone(),
                        None => store
                            .next_id()
                            .map_err(|e| e.to_string())?
                            .to_be_bytes()
                            .to_vec(),
                    };
                    rows.push((key, r.json.clone()));
                }
                store.sink_upsert(&tree, &rows).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())??;
            Ok(())
        })
    }
}
