//! The `jsonl(path)` sink: one JSON object per line, appended; each page in one write
//! and one `fdatasync` — the pages that arrived while it synced the one before, and
//! those arriving within a millisecond of each other (`GATHER`), in one write and one
//! `fdatasync` together — made on a blocking thread so a slow disk never holds an async
//! worker.
//!
//! It only appends. What it owns of a file is what lies past the length the file had
//! when it first opened it, remembered in the store with the file's identity and moved
//! on after each write: a last line left half-written (a crash, a full disk) is cut
//! back only within that part, in that same file. A file it did not write is never cut;
//! when its last line has no newline, the first record starts on a line of its own.

use super::{SinkWriter, WriteFuture};
use crate::nodes::extract::{Batch, Emitted};
use crate::state::StateStore;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Where the store keeps, per file (its resolved path), the identity and the length of
/// the file after hamstr's last write.
pub const OWNED_SPACE: &str = "jsonl";

pub struct JsonlWriter {
    pub(super) path: PathBuf,
    pub(super) store: Arc<dyn StateStore>,
    /// Open between pages; taken by the blocking write and given back after it.
    pub(super) file: Option<Jsonl>,
}

/// An open jsonl file.
pub struct Jsonl {
    file: File,
    /// The file's resolved path, its key in [`OWNED_SPACE`].
    key: Vec<u8>,
    id: FileId,
    /// Its last line has no newline (it is not ours): the next write starts with one.
    lead: bool,
    /// The bytes of a write, kept between writes: room made once is not handed back
    /// to the system and faulted in again for every write (up to [`KEEP_ROOM`]).
    buf: Vec<u8>,
}

/// The most room a jsonl file keeps for its next write.
const KEEP_ROOM: usize = 8 << 20;

impl SinkWriter for JsonlWriter {
    fn write<'a>(
        &'a mut self,
        _source: &'a str,
        _names: &'a [String],
        records: &'a Arc<Vec<Emitted>>,
    ) -> WriteFuture<'a> {
        self.append_pages(vec![records.clone()])
    }

    fn pages_at_once(&self) -> usize {
        super::PAGES_AT_ONCE
    }

    fn write_pages<'a>(&'a mut self, pages: &'a [&'a Batch]) -> WriteFuture<'a> {
        self.append_pages(pages.iter().map(|b| b.records.clone()).collect())
    }
}

impl JsonlWriter {
    /// Appends pages in one write and one sync, off the async workers.
    fn append_pages(&mut self, pages: Vec<Arc<Vec<Emitted>>>) -> WriteFuture<'_> {
        let path = self.path.clone();
        let store = self.store.clone();
        let file = self.file.take();
        Box::pin(async move {
            let (file, result) = tokio::task::spawn_blocking(move || {
                let mut open = match file {
                    Some(f) => f,
                    None => match Jsonl::open(&path, store.as_ref()) {
                        Ok(f) => f,
                        Err(e) => {
                            return (None, Err(format!("cannot open `{}`: {e}", path.display())))
                        }
                    },
                };
                match open.append(pages.iter().flat_map(|p| p.iter()), store.as_ref()) {
                    Ok(()) => (Some(open), Ok(())),
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

impl Jsonl {
    /// Opens a jsonl file for appending, creating folders; cuts a last line hamstr left
    /// half-written, and nothing else.
    pub fn open(path: &Path, store: &dyn StateStore) -> std::io::Result<Jsonl> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let key = path.canonicalize()?.as_os_str().as_encoded_bytes().to_vec();
        let meta = file.metadata()?;
        let id = FileId::of(&meta);
        let len = meta.len();
        let owned_from = store
            .kv_get(OWNED_SPACE, &key)
            .ok()
            .flatten()
            .and_then(|v| decode_owned(&v))
            .filter(|(owner, from)| *owner == id && *from <= len)
            .map(|(_, from)| from);
        let owned_from = match owned_from {
            Some(from) => from,
            None => {
                // Not ours (or replaced, or cut by someone else since): what it holds
                // now stays; what comes after is ours. Made durable before the first
                // write, or a kill could leave a torn line in a file we then disown;
                // the lengths of later writes may be lost to a kill (an older length
                // still marks only whole lines of ours).
                remember(store, &key, id, len);
                if let Err(e) = store.flush() {
                    tracing::warn!(error = %e, "cannot keep how far a jsonl file was written");
                }
                len
            }
        };
        let end = cut_torn_tail(&mut file, owned_from, len)?;
        let lead = end > 0 && last_byte(&mut file, end)? != b'\n';
        Ok(Jsonl {
            file,
            key,
            id,
            lead,
            buf: Vec::new(),
        })
    }

    /// Appends the records in one write and remembers the new length.
    fn append<'r>(
        &mut self,
        records: impl Iterator<Item = &'r Emitted> + Clone,
        store: &dyn StateStore,
    ) -> std::io::Result<()> {
        let size = records.clone().fold(1usize, |n, r| {
            n.saturating_add(r.json.len()).saturating_add(1)
        });
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.reserve(size);
        if self.lead {
            buf.push(b'\n');
        }
        for r in records {
            buf.extend_from_slice(&r.json);
            buf.push(b'\n');
        }
        let written = self.file.write_all(&buf);
        if buf.capacity() <= KEEP_ROOM {
            self.buf = buf;
        }
        written?;
        // On disk before the page commits (the watermark may reach disk any moment after).
        self.file.sync_data()?;
        self.lead = false;
        // Not kept (the store failing is the run's to report): a later repair then
        // reaches back to an older length, still only over what hamstr wrote.
        let len = self.file.metadata()?.len();
        remember(store, &self.key, self.id, len);
        Ok(())
    }
}

/// Which file a path names: its device and inode (where there are such things).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(u64, u64);

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            FileId(meta.dev(), meta.ino())
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            FileId(0, 0)
        }
    }
}

fn remember(store: &dyn StateStore, key: &[u8], id: FileId, len: u64) {
    let mut v = Vec::with_capacity(24);
    for n in [id.0, id.1, len] {
        v.extend_from_slice(&n.to_be_bytes());
    }
    if let Err(e) = store.kv_apply(OWNED_SPACE, &[(key.to_vec(), Some(v))]) {
        tracing::warn!(error = %e, "cannot remember how far a jsonl file was written");
    }
}

fn decode_owned(v: &[u8]) -> Option<(FileId, u64)> {
    let n = |i: usize| {
        Some(u64::from_be_bytes(
            v.get(i * 8..i * 8 + 8)?.try_into().ok()?,
        ))
    };
    Some((FileId(n(0)?, n(1)?), n(2)?))
}

fn last_byte(file: &mut File, len: u64) -> std::io::Result<u8> {
    let mut b = [0u8];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut b)?;
    Ok(b[0])
}

/// Cuts the file back to its last newline at or after `from` when it does not end with
/// one (the bytes before `from` are not hamstr's to touch); returns the new length.
fn cut_torn_tail(file: &mut File, from: u64, len: u64) -> std::io::Result<u64> {
    if len <= from || last_byte(file, len)? == b'\n' {
        return Ok(len);
    }
    let mut end = len;
    while end > from {
        let start = end.saturating_sub(64 * 1024).max(from);
        let mut block = Vec::new();
        file.seek(SeekFrom::Start(start))?;
        file.take(end - start).read_to_end(&mut block)?;
        if let Some(i) = block.iter().rposition(|b| *b == b'\n') {
            let keep = start + i as u64 + 1;
            file.set_len(keep)?;
            return Ok(keep);
        }
        end = start;
    }
    file.set_len(from)?;
    Ok(from)
}

/// Refuses a jsonl path inside the data directory: appending there would damage the
/// state store. Both paths are resolved (links, `..`) as far as they exist.
pub fn refuse_in_data_dir(path: &Path, data_dir: &Path) -> Result<(), String> {
    if resolve(path).starts_with(resolve(data_dir)) {
        return Err(format!(
            "`{}` is inside the data directory `{}`: a jsonl sink must not write there, it would damage the state store",
            path.display(),
            data_dir.display()
        ));
    }
    Ok(())
}

/// The path with its longest existing part resolved by the file system and the rest
/// (folders not made yet, which cannot be links) resolved by their names.
fn resolve(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    let base = loop {
        let probe = if existing.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &existing
        };
        if let Ok(real) = probe.canonicalize() {
            break real;
        }
        match existing.components().next_back() {
            Some(Component::Normal(name)) => rest.push(name.to_os_string()),
            Some(Component::ParentDir) => rest.push("..".into()),
            Some(Component::CurDir) => {}
            // A root that does not resolve: the names alone.
            _ => break std::path::absolute(&existing).unwrap_or(existing),
        }
        existing.pop();
    };
    let mut out = base;
    for part in rest.iter().rev() {
        match Path::new(part).components().next() {
            Some(Component::ParentDir) => {
                out.pop();
            }
            Some(Component::CurDir) | None => {}
            Some(_) => out.push(part),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::SledStore;

    #[test]
    fn a_half_written_line_is_cut_only_in_what_hamstr_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("data")).unwrap();
        let path = dir.path().join("a/b.jsonl");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // Someone else's file, its last line unfinished: kept whole.
        std::fs::write(&path, "theirs\n{\"a\":").unwrap();
        let mut f = Jsonl::open(&path, &store).unwrap();
        let r = |s: &str| Emitted {
            key: None,
            json: s.as_bytes().to_vec().into(),
        };
        f.append([r("{\"b\":1}")].iter(), &store).unwrap();
        drop(f);
        let ours = "theirs\n{\"a\":\n{\"b\":1}\n";
        assert_eq!(std::fs::read_to_string(&path).unwrap(), ours);
        // A write of hamstr's cut short: cut back to its last whole line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"b\":2}\n{\"b\":")
            .unwrap();
        drop(Jsonl::open(&path, &store).unwrap());
        let whole = format!("{ours}{{\"b\":2}}\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), whole);
        // Replaced by another file: not ours any more.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "{\"c\":1}\n{\"c\":").unwrap();
        drop(Jsonl::open(&path, &store).unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"c\":1}\n{\"c\":"
        );
    }

    #[test]
    fn paths_inside_the_data_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("state")).unwrap();
        let base = dir.path();
        assert!(refuse_in_data_dir(&base.join("data/state/db"), &data).is_err());
        assert!(refuse_in_data_dir(&base.join("data/new/x.jsonl"), &data).is_err());
        assert!(refuse_in_data_dir(&base.join("out/../data/x.jsonl"), &data).is_err());
        assert!(refuse_in_data_dir(&base.join("data/../out/x.jsonl"), &data).is_ok());
        assert!(refuse_in_data_dir(&base.join("out/x.jsonl"), &data).is_ok());
        assert!(refuse_in_data_dir(&base.join("data.jsonl"), &data).is_ok());
    }
}
