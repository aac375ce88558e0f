//! Sink nodes. A [`SinkWriter`] puts records somewhere (one file per kind beside this
//! one); [`SinkNode`] runs one behind a durable [`queue`]: a page the writer cannot take
//! waits in the data directory and goes out, in order, when the writer recovers.
//!
//! A sink stops with its [`Stop`]: the page it is writing gets the grace period, later
//! pages go to its queue, so a sink that hangs cannot hold a shutdown past the grace.

mod exec;
mod jsonl;
pub mod postgres;
mod queue;
mod resume;
mod sled;
mod stdout;
mod webhook;

pub use jsonl::refuse_in_data_dir;
pub use queue::{last_error, queue_space, ERROR_SPACE};

use super::extract::{Ack, Batch, Emitted};
use crate::check::{Schema, Sink};
use crate::state::StateStore;
use crate::stop::Stop;
use queue::Queue;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The sink cannot take the page now: it waits in the queue and is tried again.
    Failed(String),
    /// Whoever reads the sink is gone (standard output closed): nothing is queued for
    /// nobody, the page is not committed, and the run ends.
    Closed,
    /// In a cluster, the lease of the page's unit is no longer this instance's: the
    /// page is dropped (not queued), and the unit's new owner fetches it again.
    Fenced(String),
    /// The page is neither taken nor queued: its run fails and the page is fetched again
    /// (a `postgres` sink on the cluster's database, whose rows commit with the page's
    /// state or not at all: a queue entry would be a second transaction).
    Refused(String),
}

impl From<String> for WriteError {
    fn from(e: String) -> Self {
        WriteError::Failed(e)
    }
}

impl std::error::Error for WriteError {}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Failed(e) => f.write_str(e),
            WriteError::Closed => f.write_str("the reader of the sink is gone"),
            WriteError::Fenced(e) | WriteError::Refused(e) => f.write_str(e),
        }
    }
}

pub type WriteFuture<'a> = Pin<Box<dyn Future<Output = Result<(), WriteError>> + Send + 'a>>;

/// Where a sink puts records. `write` returns once the records are held (durably, for
/// the sinks that can be); `source` names what emitted them. Blocking work (files,
/// sled, standard output) runs off the async workers.
pub trait SinkWriter: Send {
    fn write<'a>(
        &'a mut self,
        source: &'a str,
        names: &'a [String],
        records: &'a Arc<Vec<Emitted>>,
    ) -> WriteFuture<'a>;

    /// Writes a page of `source` that comes from `origin`. A `postgres` sink on the
    /// cluster's database stages a page in flight for the page's commit, and removes a
    /// queued page's entry in its own write; the others write.
    fn write_for<'a>(
        &'a mut self,
        source: &'a str,
        _origin: Origin<'a>,
        names: &'a [String],
        records: &'a Arc<Vec<Emitted>>,
    ) -> WriteFuture<'a> {
        self.write(source, names, records)
    }

    /// How many pages waiting the writer takes in one [`SinkWriter::write_pages`]: more
    /// than one where that is cheaper than one by one (a file synced once for them all).
    fn pages_at_once(&self) -> usize {
        1
    }

    /// Writes pages, in order, held all or none: at most [`SinkWriter::pages_at_once`]
    /// of them, the pages that arrived while the one before was written or within
    /// `GATHER` of each other. By default the one page, with [`SinkWriter::write_for`].
    fn write_pages<'a>(&'a mut self, pages: &'a [&'a Batch]) -> WriteFuture<'a> {
        Box::pin(async move {
            for b in pages {
                self.write_for(&b.source, Origin::Page(b.page), &b.names, &b.records)
                    .await?;
            }
            Ok(())
        })
    }
}

/// The most pages a `jsonl` sink writes in one go ([`SinkWriter::write_pages`]).
const PAGES_AT_ONCE: usize = 16;

/// How long a sink that takes pages together waits after a page for more, before the
/// write and sync that hold them all: a group commit. On the throughput benchmark (400
/// pages to a jsonl file) the syncs went from 288 to 107 and a run from 276 to 267 ms
/// (medians of 13); a page waits at most this much longer for its commit.
const GATHER: Duration = Duration::from_millis(1);

/// Where a page a sink writes comes from.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A page in flight, by its id: it is committed once every sink has it.
    Page(u64),
    /// A page from the sink's durable queue: its entry (space and key in the store)
    /// goes once it is written.
    Queued { space: &'a str, id: &'a [u8] },
}

/// Builds the writer of a sink; `schema` is what feeds it (`None` when nothing does), and
/// `base` the folder of the pipeline file.
pub fn writer_for(
    sink: &Sink,
    schema: Option<&Schema>,
    base: &Path,
    store: Arc<dyn StateStore>,
    http: &reqwest::Client,
) -> Box<dyn SinkWriter> {
    match sink {
        Sink::Sled { tree, .. } => Box::new(sled::SledWriter {
            tree: tree.clone(),
            store,
            thread: None,
        }),
        Sink::Jsonl { path, .. } => Box::new(jsonl::JsonlWriter {
            path: base.join(path),
            store,
            file: None,
        }),
        Sink::Stdout { .. } => Box::new(stdout::StdoutWriter),
        Sink::Postgres {
            name,
            url,
            table,
            batch,
        } => {
            let Some(schema) = schema else {
                return Box::new(Unavailable(format!("sink `{name}`: nothing feeds it")));
            };
            match postgres::PgWriter::new(name, url, table, *batch, schema) {
                Ok(w) => Box::new(w.fenced_by(store)),
                Err(e) => Box::new(Unavailable(e)),
            }
        }
        Sink::Webhook { name, url, batch } => {
            match webhook::WebhookWriter::new(name, url, *batch, http.clone()) {
                Ok(w) => Box::new(w),
                Err(e) => Box::new(Unavailable(e)),
            }
        }
        Sink::Exec {
            name,
            command,
            batch,
            timeout_ms,
        } => match exec::ExecWriter::new(name, command, *batch, *timeout_ms, base) {
            Ok(w) => Box::new(w),
            Err(e) => Box::new(Unavailable(e)),
        },
    }
}

/// A writer that always fails with a reason (its records wait in the queue).
pub struct Unavailable(pub String);

impl SinkWriter for Unavailable {
    fn write<'a>(
        &'a mut self,
        _source: &'a str,
        _names: &'a [String],
        _records: &'a Arc<Vec<Emitted>>,
    ) -> WriteFuture<'a> {
        let e = self.0.clone();
        Box::pin(async move { Err(WriteError::Failed(e)) })
    }
}

/// How a sink node ended.
#[derive(Debug, Default, Clone, Copy)]
pub struct SinkExit {
    /// Its reader left (standard output closed).
    pub reader_gone: bool,
}

/// A running sink: its writer behind its durable queue.
pub struct SinkNode {
    pub name: String,
    pub writer: Box<dyn SinkWriter>,
    pub store: Arc<dyn StateStore>,
    /// Fires at shutdown, or when a reload retires this sink.
    pub stop: Stop,
    /// Set before `stop` fires when a reload retires the sink: its replacement drains the
    /// queue, so it does not try a last time.
    pub retired: Arc<AtomicBool>,
    /// The run's root: a reader that left ends the whole run.
    pub end_run: Stop,
}

const FIRST_RETRY: Duration = Duration::from_millis(500);

/// Runs `fut` unless the grace period after `stop` ends first (`None` then). The
/// deadline is set the first time the stop is seen, and kept, so every later wait ends
/// at the same instant.
async fn within_grace<F: Future>(
    stop: &Stop,
    deadline: &mut Option<Instant>,
    fut: F,
) -> Option<F::Output> {
    tokio::pin!(fut);
    loop {
        match *deadline {
            Some(d) => {
                return tokio::select! {
                    r = &mut fut => Some(r),
                    _ = tokio::time::sleep_until(d) => None,
                }
            }
            None => tokio::select! {
                r = &mut fut => return Some(r),
                _ = stop.stopped() => *deadline = Some(Instant::now() + stop.grace()),
            },
        }
    }
}

fn over(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

impl SinkNode {
    fn out_of_grace(&self) -> WriteError {
        WriteError::Failed(format!(
            "sink `{}` did not finish a page within the shutdown grace period",
            self.name
        ))
    }

    /// Runs until its inputs close: writes each page, or queues it durably when the
    /// writer fails, and acknowledges the page once it is held either way.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Batch>) -> SinkExit {
        let queue = Queue::new(&self.name, self.store.clone());
        let mut exit = SinkExit::default();
        let mut deadline: Option<Instant> = None;
        let mut backoff = FIRST_RETRY;
        // When the queue is tried next: a deadline, not a sleep started afresh in every
        // turn of the loop, so pages arriving more often than the backoff cannot put the
        // retry off for ever.
        let mut retry_at = Instant::now() + backoff;
        let mut queued = queue.len().await > 0;
        if queued {
            let drained =
                within_grace(&self.stop, &mut deadline, queue.drain(self.writer.as_mut())).await;
            queued = !matches!(drained, Some(Ok(())));
        }
        loop {
            let batch = tokio::select! {
                b = rx.recv() => b,
                _ = self.stop.stopped(), if deadline.is_none() => {
                    deadline = Some(Instant::now() + self.stop.grace());
                    continue;
                }
                _ = tokio::time::sleep_until(retry_at), if queued && !self.stop.is_stopping() => {
                    match queue.drain(self.writer.as_mut()).await {
                        Ok(()) => {
                            queued = false;
                            backoff = FIRST_RETRY;
                        }
                        Err(e) => {
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                            tracing::debug!(sink = %self.name, error = %e, "sink still down");
                        }
                    }
                    retry_at = Instant::now() + backoff;
                    continue;
                }
            };
            let Some(batch) = batch else { break };
            let mut batches = vec![batch];
            // Where the writer takes pages together, the pages that arrived meanwhile go
            // with this one, and those that arrive within GATHER of it.
            let until = Instant::now() + GATHER;
            while batches.len() < self.writer.pages_at_once() {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(b)) => batches.push(b),
                    Ok(None) | Err(_) => break,
                }
            }
            let oks = if exit.reader_gone {
                vec![false; batches.len()]
            } else if queued || over(deadline) {
                let mut oks = Vec::with_capacity(batches.len());
                for b in &batches {
                    oks.push(b.records.is_empty() || queue.push(b).await.is_ok());
                }
                oks
            } else {
                let pages: Vec<&Batch> = batches.iter().filter(|b| !b.records.is_empty()).collect();
                let written = if pages.is_empty() {
                    Ok(())
                } else {
                    within_grace(&self.stop, &mut deadline, self.writer.write_pages(&pages))
                        .await
                        .unwrap_or_else(|| Err(self.out_of_grace()))
                };
                let mut oks = Vec::with_capacity(batches.len());
                let mut failed = false;
                for b in &batches {
                    let ok = match &written {
                        _ if b.records.is_empty() => true,
                        Ok(()) => {
                            crate::metrics::sink_delivered(&self.name, b.records.len() as u64);
                            true
                        }
                        Err(WriteError::Closed) => {
                            if !exit.reader_gone {
                                tracing::info!(sink = %self.name, "the reader of standard output left: the run ends; the page is fetched again next time");
                                exit.reader_gone = true;
                                self.end_run.stop();
                            }
                            false
                        }
                        Err(WriteError::Refused(e)) => {
                            crate::metrics::sink_failure(&self.name);
                            tracing::warn!(sink = %self.name, source = %b.source, error = %e, "sink cannot take records now; the page is not committed and is fetched again");
                            false
                        }
                        Err(WriteError::Fenced(e)) => {
                            tracing::warn!(sink = %self.name, source = %b.source, error = %e, "fenced: the page is dropped; the unit's new owner fetches it again");
                            false
                        }
                        Err(WriteError::Failed(e)) => {
                            if !failed {
                                failed = true;
                                crate::metrics::sink_failure(&self.name);
                                tracing::warn!(sink = %self.name, source = %b.source, error = %e, "sink cannot take records now; they wait in its queue");
                                queue.note_error(Some(e)).await;
                                queued = true;
                                retry_at = Instant::now() + backoff;
                            }
                            match queue.push(b).await {
                                Ok(()) => true,
                                Err(qe) => {
                                    tracing::error!(sink = %self.name, error = %qe, "cannot queue records either");
                                    false
                                }
                            }
                        }
                    };
                    oks.push(ok);
                }
                oks
            };
            for (b, ok) in batches.iter().zip(oks) {
                let _ = b.ack.send(Ack { page: b.page, ok });
            }
        }
        // One last try, so a short outage does not leave records behind at exit; not
        // for a retired sink (its replacement drains the queue) nor past the grace.
        if queued && !self.retired.load(AtomicOrdering::SeqCst) && !over(deadline) {
            let drained =
                within_grace(&self.stop, &mut deadline, queue.drain(self.writer.as_mut())).await;
            let error = match drained {
                Some(Ok(())) => None,
                Some(Err(e)) => Some(e.to_string()),
                None => Some("the shutdown grace period is over".to_string()),
            };
            if let Some(error) = error {
                let waiting = queue.len().await;
                tracing::warn!(sink = %self.name, waiting, error = %error, "records still wait in the sink's queue; they go out on the next run");
            }
        }
        exit
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests;
