//! The source node: one run of a source — build requests, follow the paginator, parse
//! pages and hand them to the extract node; stop early for newest-first listings.

mod ahead;
pub mod http;
mod listing;
pub mod paginate;
pub mod request;

pub use listing::{base_url, url_of, Failed, Listing};

use crate::check::Source;
use crate::nodes::extract::{prepare, Extractor, Page, RunSummary, SourceMsg};
use crate::state::StateStore;
use crate::stop::Stop;
use ahead::Ahead;
use http::ServiceClient;
use paginate::Next;
use serde_json::Value as Json;
use std::cmp::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

pub struct Poller {
    pub src: Arc<Source>,
    pub client: Arc<ServiceClient>,
    pub ex: Arc<Extractor>,
    pub tx: mpsc::Sender<SourceMsg>,
    pub store: Arc<dyn StateStore>,
    pub stop: Stop,
}

/// How a run ended.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    pub summary: RunSummary,
    pub error: Option<String>,
    pub warnings: Vec<String>,
}

impl Poller {
    /// One full run; `parent` is the parent record (and its key) for a child source.
    pub async fn run(&self, parent: Option<(Vec<u8>, Json)>) -> RunOutcome {
        let name = &self.src.name;
        let mut out = RunOutcome::default();
        if self.tx.send(SourceMsg::RunStart).await.is_err() {
            out.error = Some("the source's graph is gone".into());
            return out;
        }
        let parent_obj = parent
            .as_ref()
            .and_then(|(_, r)| r.as_object().cloned())
            .map(Arc::new);
        let (complete, error) = match self.pages(parent_obj.clone(), &mut out.warnings).await {
            Ok(complete) => (complete, None),
            Err(Failed::Error(e)) => (false, Some(e)),
            // The parent record cannot name a request: it is rejected, with the reason,
            // and its request is done (asking again would name the same path).
            Err(Failed::Rejected(reason)) => {
                tracing::warn!(source = %name, reason = %reason, "a parent record names no request");
                let item = parent.as_ref().map_or(Json::Null, |(_, r)| r.clone());
                if self
                    .tx
                    .send(SourceMsg::Rejected { reason, item })
                    .await
                    .is_err()
                {
                    out.error = Some("the source's graph is gone".into());
                    return out;
                }
                (true, None)
            }
        };
        let (done_tx, done_rx) = oneshot::channel();
        let end = SourceMsg::RunEnd {
            complete,
            error: error.clone(),
            child_of: parent.map(|(k, _)| k),
            done: done_tx,
        };
        if self.tx.send(end).await.is_err() {
            out.error = Some("the source's graph is gone".into());
            return out;
        }
        out.summary = done_rx.await.unwrap_or_default();
        out.error = error.or_else(|| {
            (!out.summary.committed).then(|| "a sink did not take every page".to_string())
        });
        out
    }

    /// Fetches every page; `Ok(true)` when the listing was seen to its end: its last page,
    /// or (newest first) a page reaching below the watermark. Any other stop — a loop, a
    /// link that leaves the origin or is not a URL, a `has_more` or total that the pages
    /// contradict, `max_pages` — leaves the run incomplete (spec §5.2): a newest-first
    /// watermark stays where it was, so the next run reads the pages this one did not.
    async fn pages(
        &self,
        parent: Option<Arc<serde_json::Map<String, Json>>>,
        warnings: &mut Vec<String>,
    ) -> Result<bool, Failed> {
        let src = &self.src;
        let name = &src.name;
        let meta = self.store.meta(&src.name).map_err(|e| e.to_string())?;
        // The newest-first early stop is bounded by the watermark minus `lookback`.
        let watermark = self
            .ex
            .watermark(meta.watermark.as_ref())
            .map(|w| self.ex.floor(w));
        let mut listing = Listing::new(src, &self.client, &self.ex, &meta, parent.as_deref())?;
        let resume = src
            .incremental
            .as_ref()
            .and_then(|i| i.resume.as_ref())
            .map(paginate::Picker::compile);
        let newest_first = src.incremental.as_ref().is_some_and(|i| i.newest_first);
        // Pages in flight: up to the service's `concurrency` once the paginator can
        // name the requests ahead. Newest first, where an early page may end the
        // listing, asks for one page at a time.
        let window = if newest_first {
            1
        } else {
            self.client.pages_in_flight()
        };
        let mut ahead = Ahead::new(
            Arc::clone(&self.client),
            self.stop.clone(),
            name,
            Arc::clone(&self.ex),
            parent.clone(),
        );
        loop {
            if self.stop.is_stopping() {
                return Ok(false);
            }
            let req = listing.request()?;
            let (resp, made) = match ahead.fetch(&req).await {
                Ok(answer) => answer,
                // Interrupted, not failed: the page is fetched again next time.
                Err(_) if self.stop.is_stopping() => return Ok(false),
                Err(e) => return Err(e.message.into()),
            };
            if listing.repeats_previous(&resp) {
                let w = "a page repeated the previous one byte for byte (a pagination loop)";
                tracing::warn!(source = %name, warning = %w, "pagination stopped early");
                warnings.push(w.into());
                return Ok(false);
            }
            let count = self.ex.count(&resp.body, resp.records.as_ref())?;
            let token = resume
                .as_ref()
                .and_then(|r| r.get(&resp))
                .and_then(|t| match t {
                    Json::Null => None,
                    Json::String(s) if s.is_empty() => None,
                    Json::String(s) => Some(s),
                    other => Some(other.to_string()),
                });
            let next = listing.next(&resp, count, &self.client);
            if let Next::Fetch(_) = next {
                // Sent before this page is handed on, so that they overlap its
                // extraction and commit.
                ahead.keep(listing.upcoming(window)?);
            }
            for w in listing.take_notes() {
                tracing::warn!(source = %name, warning = %w, "the server sent fewer records than asked");
                warnings.push(w);
            }
            // The records made as the page arrived, or here, while the extract node
            // works on the page before.
            let records = match made {
                Some(made) => made,
                None => {
                    let items = self.ex.items(resp.body, resp.records)?;
                    prepare(&self.ex, &items, parent.as_deref())
                }
            };
            let older_seen = newest_first
                && watermark.as_ref().is_some_and(|w| {
                    records.iter().any(|p| {
                        p.cursor()
                            .is_some_and(|c| c.compare(w) == Some(Ordering::Less))
                    })
                });
            if self
                .tx
                .send(SourceMsg::Page(Box::new(Page {
                    records,
                    resume: token,
                })))
                .await
                .is_err()
            {
                return Err("the source's graph is gone".to_string().into());
            }
            if older_seen {
                return Ok(true);
            }
            match next {
                Next::Fetch(_) => {}
                Next::Done => return Ok(true),
                Next::Stop(w) | Next::Limit(w) => {
                    tracing::warn!(source = %name, warning = %w, "pagination stopped early");
                    warnings.push(w);
                    return Ok(false);
                }
            }
        }
    }
}
