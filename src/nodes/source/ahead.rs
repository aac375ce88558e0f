//! Pages in flight: the requests of a run that the paginator could name before their
//! pages arrived ([`super::Listing::upcoming`]) are sent together, up to the service's
//! `concurrency`, each in a task of its own; the poller still takes the answers one by
//! one in page order and decides each next request from the page before it, as a
//! sequential run does. An answer is used only for the very request the paginator
//! asks for; anything else in flight is dropped (its task aborted), so the pages
//! handed on, the stops and the errors are those of a run that fetched one page at a
//! time. Requests sent ahead that the run then does not use are the only difference.
//!
//! A page in flight whose records can be kept as text ([`crate::nodes::record::raw`]) is
//! split and made into records in its own task, as soon as it arrives: the pages ahead
//! are made on every core while the poller hands on the one before. Other pages are
//! kept as their bytes and parsed when their turn comes, so that pages waiting hold
//! their bytes, not their trees. A body sent ahead that is not JSON is asked for again
//! then, as a page fetched alone would be.

use super::http::{Attempt, FetchError, Request, Response, ServiceClient, Unparsed};
use crate::nodes::extract::{prepare_items, Extractor, Prepared};
use crate::nodes::record::raw::RawRecords;
use crate::nodes::record::Item;
use crate::stop::Stop;
use serde_json::{Map, Value as Json};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// A page, with its records when they were made as it arrived.
pub type Answer = Result<(Response, Option<Vec<Prepared>>), FetchError>;

/// What a request sent ahead came back with.
enum Arrived {
    /// Kept as its bytes, parsed in its turn.
    Bytes(Unparsed),
    /// Parsed, its records made when they were kept as text.
    Parsed(Response, Option<Vec<Prepared>>),
    /// Not JSON: asked for again in its turn.
    NotJson(FetchError),
}

/// The requests of one run in flight, oldest (the next page to hand on) first.
pub struct Ahead {
    client: Arc<ServiceClient>,
    stop: Stop,
    source: String,
    /// The names that lead to the records' array: the items there are kept as text.
    records: Option<Arc<[String]>>,
    /// How the pages sent ahead are made into records, and their parent record.
    ex: Arc<Extractor>,
    parent: Option<Arc<Map<String, Json>>>,
    queue: VecDeque<(Request, JoinHandle<Result<Arrived, FetchError>>)>,
}

impl Ahead {
    pub fn new(
        client: Arc<ServiceClient>,
        stop: Stop,
        source: &str,
        ex: Arc<Extractor>,
        parent: Option<Arc<Map<String, Json>>>,
    ) -> Ahead {
        Ahead {
            client,
            stop,
            source: source.to_string(),
            records: ex.split_at().map(Arc::from),
            ex,
            parent,
            queue: VecDeque::new(),
        }
    }

    /// Keeps in flight exactly `wanted` (the request to send now first, then those
    /// planned after it): what is already in flight for them stays, the rest is
    /// dropped, and the missing ones are sent. A single request is left to
    /// [`Ahead::fetch`], which sends it itself unless it is already in flight.
    pub fn keep(&mut self, wanted: Vec<Request>) {
        if wanted.len() <= 1 && self.queue.is_empty() {
            return;
        }
        let same = self
            .queue
            .iter()
            .zip(&wanted)
            .take_while(|((sent, _), want)| same_request(sent, want))
            .count();
        self.drop_from(same);
        for req in wanted.into_iter().skip(same) {
            let handle = self.spawn(req.clone());
            self.queue.push_back((req, handle));
        }
    }

    /// The answer to `req`: the one in flight when it is the oldest there (everything
    /// else in flight is dropped when it is not), or a request sent now.
    pub async fn fetch(&mut self, req: &Request) -> Answer {
        if !self
            .queue
            .front()
            .is_some_and(|(sent, _)| same_request(sent, req))
        {
            self.drop_from(0);
            crate::metrics::source_request(&self.source);
            return self.fetch_now(req).await;
        }
        let Some((_, handle)) = self.queue.pop_front() else {
            crate::metrics::source_request(&self.source);
            return self.fetch_now(req).await;
        };
        let answer = handle.await.unwrap_or_else(|e| {
            Err(FetchError {
                message: format!(
                    "the request to {} did not finish: {e}",
                    self.client.shown_url(&req.url)
                ),
                status: None,
            })
        })?;
        let not_json = match answer {
            Arrived::Parsed(resp, made) => return Ok((resp, made)),
            Arrived::Bytes(bytes) => match self.client.parse(bytes, self.records.as_deref()) {
                Ok(resp) => return Ok((resp, None)),
                Err(Attempt::Retry(e, _) | Attempt::Fatal(e)) => e,
            },
            Arrived::NotJson(e) => e,
        };
        tracing::debug!(source = %self.source, error = %not_json.message, "a page sent ahead is asked for again");
        crate::metrics::source_request(&self.source);
        self.fetch_now(req).await
    }

    async fn fetch_now(&self, req: &Request) -> Answer {
        let records = self.records.as_deref();
        let resp = self.client.fetch_split(req, &self.stop, records).await?;
        Ok((resp, None))
    }

    fn spawn(&self, req: Request) -> JoinHandle<Result<Arrived, FetchError>> {
        crate::metrics::source_request(&self.source);
        let client = Arc::clone(&self.client);
        let stop = self.stop.clone();
        let records = self.records.clone();
        let ex = Arc::clone(&self.ex);
        let parent = self.parent.clone();
        tokio::spawn(async move {
            let bytes = client.fetch_unparsed(&req, &stop).await?;
            let Some(records) = records else {
                return Ok(Arrived::Bytes(bytes));
            };
            Ok(match client.parse(bytes, Some(&records)) {
                Ok(mut resp) => {
                    let made = match &mut resp.records {
                        Some(raw) => {
                            let made = make(&ex, raw, parent.as_deref()).await;
                            // The page waits its turn with its text alone.
                            raw.forget_members();
                            Some(made)
                        }
                        None => None,
                    };
                    Arrived::Parsed(resp, made)
                }
                Err(Attempt::Retry(e, _) | Attempt::Fatal(e)) => Arrived::NotJson(e),
            })
        })
    }

    /// Drops what is in flight from position `at` on.
    fn drop_from(&mut self, at: usize) {
        for (_, handle) in self.queue.drain(at.min(self.queue.len())..) {
            handle.abort();
        }
    }
}

impl Drop for Ahead {
    /// A run that ends (done, stopped, failed) takes nothing in flight with it.
    fn drop(&mut self) {
        self.drop_from(0);
    }
}

/// The records of a page's items, made 500 at a time: between them the worker runs
/// what else waits for it (the extract node's next step), instead of holding it for the
/// whole of a large page. 500 records of a dozen fields take about half a millisecond.
/// Smaller turns cost more than they gave: at each the other worker took the page over,
/// its caches cold (50 at a time: a keyed jsonl run of pages of 500 took 378 ms of CPU
/// against 342, and 240 ms against 231; medians of 9 and 13).
async fn make(
    ex: &Extractor,
    raw: &RawRecords,
    parent: Option<&Map<String, Json>>,
) -> Vec<Prepared> {
    const AT_ONCE: usize = 500;
    let items: Vec<Item> = raw.items().collect();
    let mut made = Vec::with_capacity(items.len());
    for (i, chunk) in items.chunks(AT_ONCE).enumerate() {
        if i > 0 {
            tokio::task::yield_now().await;
        }
        made.extend(prepare_items(ex, chunk.iter().copied(), parent));
    }
    made
}

fn same_request(a: &Request, b: &Request) -> bool {
    a.post == b.post && a.url == b.url && a.body == b.body
}
