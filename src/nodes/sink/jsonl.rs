//! The `jsonl(path)` sink: one JSON object per line, appended; each page in one write,
//! made on a blocking thread so a slow disk never holds an async worker.

use super::{SinkWriter, WriteFuture};
use crate::nodes::extract::Emitted;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct JsonlWriter {
    pub(super) path: PathBuf,
    /// Open between pages; taken by the blocking write and given back after it.
    pub(super) file: Option<std::fs::File>,
}

impl SinkWriter for JsonlWriter {
    fn write<'a>(
        &'a mut self,
        _names: &'a [String],
        records: &'a Arc<Vec<Emitted>>,
    ) -> WriteFuture<'a> {
        let records = records.clone();
        let path = self.path.clone();
        let file = self.file.take();
        Box::pin(async move {
            let (file, result) = tokio::task::spawn_blocking(move || {
                let mut f = match file {
                    Some(f) => f,
                    None => match open_jsonl(&path) {
                        Ok(f) => f,
                        Err(e) => {
                            return (None, Err(format!("cannot open `{}`: {e}", path.display())))
                        }
                    },
                };
                let mut buf = Vec::with_capacity(records.len() * 256);
                for r in records.iter() {
                    buf.extend_from_slice(&r.json);
                    buf.push(b'\n');
                }
                match f.write_all(&buf).and_then(|_| f.flush()) {
                    Ok(()) => (Some(f), Ok(())),
                    // Reopened next time, which cuts whatever half line this left.
                    Err(e) => (None, Err(format!("cannot write `{}`: {e}", path.display()))),
                }
            })
            .await
            .map_err(|e| e.to_string())?;
            self.file = file;
            result.map_err(Into::into)
        })
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
