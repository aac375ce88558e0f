//! Sink nodes: `sled` (keyed upsert into the data directory), `jsonl` (appended lines,
//! a half-written last line cut on start) and `stdout`. Each acknowledges a page once
//! it holds the page's records.

use super::extract::{Ack, Batch};
use crate::check::Sink;
use crate::state::StateStore;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Where a sink puts records.
pub enum Writer {
    Sled {
        tree: String,
        store: Arc<dyn StateStore>,
    },
    Jsonl {
        path: PathBuf,
        file: Option<std::fs::File>,
    },
    Stdout,
}

impl Writer {
    /// `base` is the folder of the pipeline file, for relative paths.
    pub fn new(sink: &Sink, base: &Path, store: Arc<dyn StateStore>) -> Writer {
        match sink {
            Sink::Sled { tree, .. } => Writer::Sled {
                tree: tree.clone(),
                store,
            },
            Sink::Jsonl { path, .. } => Writer::Jsonl {
                path: base.join(path),
                file: None,
            },
            Sink::Stdout { .. } => Writer::Stdout,
            // The database and webhook sinks come with their own writers.
            Sink::Postgres { .. } | Sink::Webhook { .. } => Writer::Stdout,
        }
    }

    /// Writes one page's records; `Err` leaves the page unacknowledged as delivered.
    pub fn write(&mut self, batch: &Batch) -> Result<(), String> {
        match self {
            Writer::Sled { tree, store } => {
                let mut rows = Vec::with_capacity(batch.records.len());
                for r in batch.records.iter() {
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
                store.sink_upsert(tree, &rows).map_err(|e| e.to_string())
            }
            Writer::Jsonl { path, file } => {
                if file.is_none() {
                    *file = Some(
                        open_jsonl(path)
                            .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?,
                    );
                }
                let f = file.as_mut().expect("opened above");
                let mut buf = Vec::with_capacity(batch.records.len() * 256);
                for r in batch.records.iter() {
                    buf.extend_from_slice(&r.json);
                    buf.push(b'\n');
                }
                f.write_all(&buf).and_then(|_| f.flush()).map_err(|e| {
                    // Reopen next time, cutting whatever half line this left.
                    *file = None;
                    format!("cannot write `{}`: {e}", path.display())
                })
            }
            Writer::Stdout => {
                let mut out = std::io::stdout().lock();
                for r in batch.records.iter() {
                    out.write_all(&r.json).map_err(|e| e.to_string())?;
                    out.write_all(b"\n").map_err(|e| e.to_string())?;
                }
                out.flush().map_err(|e| e.to_string())
            }
        }
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

/// Runs a sink node until its inputs close.
pub async fn run_sink(name: String, mut writer: Writer, mut rx: mpsc::Receiver<Batch>) {
    while let Some(batch) = rx.recv().await {
        let result = if batch.records.is_empty() {
            Ok(())
        } else {
            writer.write(&batch)
        };
        if let Err(e) = &result {
            tracing::error!(sink = %name, source = %batch.source, error = %e, "sink could not take a page");
        }
        let _ = batch.ack.send(Ack {
            page: batch.page,
            ok: result.is_ok(),
        });
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
