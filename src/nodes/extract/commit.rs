//! A page's commit and a run's end: what the extract node writes to the state store once
//! every sink has a page, in page order, off the async workers.

use super::{ExtractNode, Pending, RunEnd, RunState};
use crate::nodes::cursor_order;
use crate::state::{Prune, SourceMeta};
use serde_json::Value as Json;
use std::cmp::Ordering;

impl ExtractNode {
    /// Commits a page whose records every sink has; false when it was not committed
    /// (a sink refused a page of the run, or the store failed).
    pub(super) fn commit(&self, p: Pending, run: &mut RunState, meta: &mut SourceMeta) -> bool {
        if !p.event {
            run.summary.pages += u64::from(p.fetched);
            run.summary.records += p.seen;
            run.summary.emitted += p.emitted;
            run.summary.rejected += p.rejected;
        }
        if run.broken {
            // Rows a sink staged for the page are not written either.
            self.store.discard(&self.source, p.page);
            return false;
        }
        // The watermark tells how far the polls have read: events do not move it, or
        // the next poll would skip what a dropped event did not bring.
        let max_cursor = if p.event { None } else { p.max_cursor.as_ref() };
        if let Some(c) = max_cursor {
            if run
                .max_cursor
                .as_ref()
                .is_none_or(|m| c.compare(m) == Some(Ordering::Greater))
            {
                run.max_cursor = Some(c.clone());
            }
        }
        let mut next = meta.clone();
        next.records_seen += p.seen;
        next.emitted += p.emitted;
        next.rejected += p.rejected;
        // Without newest-first, the watermark follows every committed page; with it,
        // only a run seen to its end moves it (see `finish`).
        if !self.newest_first {
            if let Some(c) = max_cursor {
                let current = self.ex.watermark(next.watermark.as_ref());
                if current.is_none_or(|w| c.compare(&w) == Some(Ordering::Greater)) {
                    next.watermark = Some(c.to_json());
                }
            }
        }
        if let Some(token) = &p.resume {
            next.resume = Some(token.clone());
        }
        // Each part is one transaction; the meta as it was goes with all but the last,
        // which moves the watermark and the counts.
        let count = p.parts.len();
        let next_id = || self.store.next_id().unwrap_or(0);
        for (i, part) in p.parts.into_iter().enumerate() {
            let commit = part.into_commit(&p.at, &next_id);
            let last = i + 1 == count;
            let with = if last { &next } else { &*meta };
            if let Err(e) = self
                .store
                .commit_part(&self.source, p.page, last, &commit, with)
            {
                self.store.discard(&self.source, p.page);
                tracing::error!(source = %self.source, error = %e, "cannot commit a page");
                run.broken = true;
                return false;
            }
            // In the store now: forgotten here, unless a later page changed it again.
            for &h in commit.key_hashes().iter() {
                if run.keys.get(&h).is_some_and(|(_, page)| *page == p.page) {
                    run.keys.remove(&h);
                }
            }
            if !commit.child_requests.is_empty() {
                if let Ok(wakes) = self.wakes.lock() {
                    for (child, _, _) in &commit.child_requests {
                        if let Some(w) = wakes.get(child) {
                            let _ = w.try_send(None);
                        }
                    }
                }
            }
        }
        *meta = next;
        true
    }

    pub(super) fn finish(&self, run: &mut RunState, meta: &mut SourceMeta) {
        let Some(RunEnd {
            complete,
            error,
            child_of,
            done,
        }) = run.end.take()
        else {
            return;
        };
        // Every page reached every sink; `complete` says whether the listing was also
        // seen to its end (not cut by `max_pages`, an error or a stop).
        let committed = !run.broken;
        if committed && complete && self.newest_first {
            if let Some(c) = &run.max_cursor {
                let current = self.ex.watermark(meta.watermark.as_ref());
                if current.is_none_or(|w| c.compare(&w) == Some(Ordering::Greater)) {
                    meta.watermark = Some(c.to_json());
                }
            }
        }
        if committed && self.incremental {
            // Keys below the watermark minus `lookback` are forgotten: the key state
            // stays bounded, and what is older is not emitted again (spec §5.2).
            if let Some(w) = meta
                .watermark
                .as_ref()
                .and_then(|w| self.ex.cursor_value(w))
                .map(|w| self.ex.floor(w))
            {
                let ex = &self.ex;
                let below = |c: &Json| {
                    ex.cursor_value(c)
                        .is_some_and(|c| c.compare(&w) == Some(Ordering::Less))
                };
                let order = |c: &Json| ex.cursor_value(c).as_ref().and_then(cursor_order::encode);
                let bound = cursor_order::bound(&w).unwrap_or_default();
                let prune = Prune {
                    bound: &bound,
                    below: &below,
                    order: &order,
                };
                // State from before the index is indexed by one full pass; after that
                // only the keys below the watermark are touched.
                match self.store.prune_keys(&self.source, &prune, !meta.indexed) {
                    Ok(_) => meta.indexed = true,
                    Err(e) => {
                        tracing::warn!(source = %self.source, error = %e, "cannot prune keys below the watermark")
                    }
                }
            }
        }
        meta.runs += 1;
        meta.last_run = Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        meta.last_error =
            error.or_else(|| (!committed).then(|| "the run did not reach every sink".to_string()));
        if let Err(e) = self.store.put_meta(&self.source, meta) {
            tracing::error!(source = %self.source, error = %e, "cannot save the source's state");
        }
        if let (true, Some(parent_key)) = (committed && complete, child_of) {
            if let Err(e) = self.store.child_done(&self.source, &parent_key) {
                tracing::error!(source = %self.source, error = %e, "cannot mark a child request done");
            }
        }
        run.active = false;
        let mut summary = std::mem::take(&mut run.summary);
        summary.committed = committed;
        let _ = done.send(summary);
    }
}
