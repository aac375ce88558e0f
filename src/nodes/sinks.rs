//! Sink nodes. A [`SinkWriter`] puts records somewhere (`sled`, `jsonl`, `stdout` here;
//! the database and webhook writers beside this file); [`run_sink`] runs one behind a
//! durable queue: a page the writer cannot take waits in the data directory and goes
//! out, in order, when the writer recovers — across restarts too.

use super::extract::{Ack, Batch, Emitted};
use super::http::http_client;
use super::postgres::PgWriter;
use super::webhook::WebhookWriter;
use crate::check::{Schema, Sink};
use crate::state::StateStore;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub type WriteFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Where a sink puts records. `write` returns once the records are held (durably, for
/// the sinks that can be).
pub trait SinkWriter: Send {
    fn write<'a>(&'a mut self, names: &'a [String], records: &'a [Emitted]) -> WriteFuture<'a>;
}

/// Builds the writer of a sink; `schema` is what feeds it (`None` when nothing does), and
/// `base` the folder of the pipeline file.
pub fn writer_for(
    sink: &Sink,
    schema: Option<&Schema>,
    base: &Path,
    store: Arc<dyn StateStore>,
) -> Box<dyn SinkWriter> {
    match sink {
        Sink::Sled { tree, .. } => Box::new(SledWriter {
            tree: tree.clone(),
            store,
        }),
        Sink::Jsonl { path, .. } => Box::new(JsonlWriter {
            path: base.join(path),
            file: None,
        }),
        Sink::Stdout { .. } => Box::new(StdoutWriter),
        Sink::Postgres {
            name,
            url,
            table,
            batch,
        } => {
            let Some(schema) = schema else {
                return Box::new(Unavailable(format!("sink `{name}`: nothing feeds it")));
            };
            match PgWriter::new(name, url, table, *batch, schema) {
                Ok(w) => Box::new(w),
                Err(e) => Box::new(Unavailable(e)),
            }
        }
        Sink::Webhook { name, url, batch } => {
            match WebhookWriter::new(name, url, *batch, http_client()) {
                Ok(w) => Box::new(w),
                Err(e) => Box::new(Unavailable(e)),
            }
        }
    }
}

pub struct SledWriter {
    tree: String,
    store: Arc<dyn StateStore>,
}

impl SinkWriter for SledWriter {
    fn write<'a>(&'a mut self, _names: &'a [String], records: &'a [Emitted]) -> WriteFuture<'a> {
        Box::pin(async move {
            let mut rows = Vec::with_capacity(records.len());
            for r in records {
                let key = match &r.key {
                    Some(k) => k.clone(),
                    None => self
                        .store
                        .next_id()
                        .map_err(|e| e.to_string())?
                        .to_be_bytes()
                        .to_vec(),
                };
                rows.push((key, r.json.clone()));
            }
            self.store
                .sink_upsert(&self.tree, &rows)
                .map_err(|e| e.to_string())
        })
    }
}

pub struct JsonlWriter {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl SinkWriter for JsonlWriter {
    fn write<'a>(&'a mut self, _names: &'a [String], records: &'a [Emitted]) -> WriteFuture<'a> {
        Box::pin(async move {
            if self.file.is_none() {
                self.file = Some(
                    open_jsonl(&self.path)
                        .map_err(|e| format!("cannot open `{}`: {e}", self.path.display()))?,
                );
            }
            let f = self.file.as_mut().expect("opened above");
            let mut buf = Vec::with_capacity(records.len() * 256);
            for r in records {
                buf.extend_from_slice(&r.json);
                buf.push(b'\n');
            }
            if let Err(e) = f.write_all(&buf).and_then(|_| f.flush()) {
                // Reopen next time, which cuts whatever half line this left.
                self.file = None;
                return Err(format!("cannot write `{}`: {e}", self.path.display()));
            }
            Ok(())
        })
    }
}

pub struct StdoutWriter;

impl SinkWriter for StdoutWriter {
    fn write<'a>(&'a mut self, _names: &'a [String], records: &'a [Emitted]) -> WriteFuture<'a> {
        Box::pin(async move {
            let mut out = std::io::stdout().lock();
            for r in records {
                out.write_all(&r.json).map_err(|e| e.to_string())?;
                out.write_all(b"\n").map_err(|e| e.to_string())?;
            }
            out.flush().map_err(|e| e.to_string())
        })
    }
}

/// A writer that always fails with a reason (its records wait in the queue).
pub struct Unavailable(pub String);

impl SinkWriter for Unavailable {
    fn write<'a>(&'a mut self, _names: &'a [String], _records: &'a [Emitted]) -> WriteFuture<'a> {
        let e = self.0.clone();
        Box::pin(async move { Err(e) })
    }
}

/// Opens a jsonl file for appending, creating folders, and cuts a last line that a
/// crash left half-written.
pub fn open_jsonl(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let len = f.metadata()?.len();
    if len > 0 {
        use std::io::{Read, Seek, SeekFrom};
        let mut tail_start = len.saturating_sub(64 * 1024);
        loop {
            f.seek(SeekFrom::Start(tail_start))?;
            let mut tail = Vec::new();
            (&mut f).take(len - tail_start).read_to_end(&mut tail)?;
            if tail.last() == Some(&b'\n') {
                break;
            }
            match tail.iter().rposition(|b| *b == b'\n') {
                Some(i) => {
                    f.set_len(tail_start + i as u64 + 1)?;
                    break;
                }
                None if tail_start == 0 => {
                    f.set_len(0)?;
                    break;
                }
                None => tail_start = tail_start.saturating_sub(1024 * 1024),
            }
        }
    }
    Ok(f)
}

/// A page waiting in a sink's durable queue.
#[derive(Serialize, Deserialize)]
struct Queued {
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

/// The durable queue of one sink.
struct Queue {
    space: String,
    store: Arc<dyn StateStore>,
}

impl Queue {
    fn len(&self) -> usize {
        self.store.kv_len(&self.space).unwrap_or(0)
    }

    /// Keeps why the sink failed (the writers' errors carry no secret), or forgets it.
    fn note_error(&self, sink: &str, error: Option<&str>) {
        let value = error.map(|e| e.chars().take(500).collect::<String>().into_bytes());
        let _ = self
            .store
            .kv_apply(ERROR_SPACE, &[(sink.as_bytes().to_vec(), value)]);
    }

    fn push(&self, batch: &Batch) -> Result<(), String> {
        let q = Queued {
            names: batch.names.to_vec(),
            records: batch
                .records
                .iter()
                .map(|r| (r.key.clone(), String::from_utf8_lossy(&r.json).into_owned()))
                .collect(),
        };
        let bytes = serde_json::to_vec(&q).map_err(|e| e.to_string())?;
        let id = self.store.next_id().map_err(|e| e.to_string())?;
        self.store
            .kv_apply(&self.space, &[(id.to_be_bytes().to_vec(), Some(bytes))])
            .map_err(|e| e.to_string())
    }

    /// Delivers queued pages in order until the queue is empty or the writer fails, and
    /// keeps the failure for `hamstr state` (or forgets it once the queue is empty).
    async fn drain(&self, name: &str, writer: &mut dyn SinkWriter) -> Result<(), String> {
        let result = self.deliver(name, writer).await;
        self.note_error(name, result.as_ref().err().map(String::as_str));
        result
    }

    async fn deliver(&self, name: &str, writer: &mut dyn SinkWriter) -> Result<(), String> {
        loop {
            let Some((id, bytes)) = self
                .store
                .kv_scan(&self.space, 1)
                .map_err(|e| e.to_string())?
                .pop()
            else {
                return Ok(());
            };
            let q: Queued = serde_json::from_slice(&bytes)
                .map_err(|e| format!("a damaged entry in the queue of sink `{name}`: {e}"))?;
            let records: Vec<Emitted> = q
                .records
                .into_iter()
                .map(|(key, json)| Emitted {
                    key,
                    json: json.into_bytes(),
                })
                .collect();
            writer.write(&q.names, &records).await?;
            self.store
                .kv_apply(&self.space, &[(id, None)])
                .map_err(|e| e.to_string())?;
            tracing::info!(sink = %name, records = records.len(), "delivered a queued page");
        }
    }
}

/// Runs a sink node until its inputs close: writes each page, or queues it durably when
/// the writer fails, and acknowledges the page once it is held either way.
pub async fn run_sink(
    name: String,
    mut writer: Box<dyn SinkWriter>,
    store: Arc<dyn StateStore>,
    mut rx: mpsc::Receiver<Batch>,
) {
    let queue = Queue {
        space: queue_space(&name),
        store,
    };
    const FIRST_RETRY: Duration = Duration::from_millis(500);
    let mut backoff = FIRST_RETRY;
    // When the queue is tried next: a deadline, not a sleep started afresh in every
    // turn of the loop, so pages arriving more often than the backoff cannot put the
    // retry off for ever.
    let mut retry_at = tokio::time::Instant::now() + backoff;
    let mut queued = queue.len() > 0;
    if queued {
        queued = queue.drain(&name, writer.as_mut()).await.is_err();
    }
    loop {
        let batch = if queued {
            // Retry the queue now and then while new pages keep coming.
            tokio::select! {
                b = rx.recv() => b,
                _ = tokio::time::sleep_until(retry_at) => {
                    match queue.drain(&name, writer.as_mut()).await {
                        Ok(()) => {
                            queued = false;
                            backoff = FIRST_RETRY;
                        }
                        Err(e) => {
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                            tracing::debug!(sink = %name, error = %e, "sink still down");
                        }
                    }
                    retry_at = tokio::time::Instant::now() + backoff;
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some(batch) = batch else { break };
        let ok = if batch.records.is_empty() {
            true
        } else if queued {
            queue.push(&batch).is_ok()
        } else {
            match writer.write(&batch.names, &batch.records).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(sink = %name, source = %batch.source, error = %e, "sink cannot take records now; they wait in its queue");
                    queue.note_error(&name, Some(&e));
                    queued = true;
                    retry_at = tokio::time::Instant::now() + backoff;
                    match queue.push(&batch) {
                        Ok(()) => true,
                        Err(qe) => {
                            tracing::error!(sink = %name, error = %qe, "cannot queue records either");
                            false
                        }
                    }
                }
            }
        };
        let _ = batch.ack.send(Ack {
            page: batch.page,
            ok,
        });
    }
    // One last try, so a short outage does not leave records behind at exit.
    if queued {
        if let Err(e) = queue.drain(&name, writer.as_mut()).await {
            tracing::warn!(sink = %name, waiting = queue.len(), error = %e, "records still wait in the sink's queue; they go out on the next run");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_half_written_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b.jsonl");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        drop(super::open_jsonl(&path).unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
        std::fs::write(&path, "{\"a\":").unwrap();
        drop(super::open_jsonl(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }
}
