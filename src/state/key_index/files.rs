//! Spilled runs as files of their own (state version 6), beside the sled store, not in
//! it, with the key logs of the pages since the last fold ([`super::log`], version 7):
//! sled keeps in memory much of what it is given to write and grows with what it holds,
//! so a source of 2,000,000 keys whose runs were sled values peaked at 90 MiB
//! against 65 with them in files (docs/performance.md).
//!
//! A run's file is written once, synced with its folder, and only then named in the
//! index's meta (a sled value); a file no meta names is what a crash cut short, or a run
//! a merge replaced. Such files are *retired*: removed after the next flush of the store
//! has made the meta that no longer names them durable ([`RunFiles::retire`],
//! `SledStore::flush`), never before, so a crash never leaves a meta naming a file that
//! is gone.
//!
//! The layout: [`MAGIC`]; then the chunks, each its length (u32, big-endian) and its
//! bytes (a value as [`super::format`] encodes it: the format byte and the entries); then
//! a zero length and the number of chunks (u64). Of a run memory keeps where each chunk
//! starts (8 bytes a chunk of [`super::CHUNK`] keys); a lookup reads one chunk with one
//! positioned read. No file is kept open between reads: a store of thousands of sources,
//! each with up to 17 runs, would run out of file descriptors.

use super::{Result, StateError};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The first bytes of a run's file.
pub(super) const MAGIC: &[u8; 8] = b"hmrrun\x00\x01";

/// Where the spilled runs of a store lie, and the files to remove after the next flush
/// of the store (shared by every source's index and the store).
#[derive(Clone)]
pub struct RunFiles {
    dir: PathBuf,
    pub(super) retired: Arc<Mutex<Vec<PathBuf>>>,
}

impl RunFiles {
    pub fn new(dir: PathBuf) -> RunFiles {
        RunFiles {
            dir,
            retired: Arc::default(),
        }
    }

    /// A source's folder: the hash of its name (names are the user's, and may be long or
    /// hold any character). A folder each, so that loading one source's index lists its
    /// own files, not those of thousands of others.
    fn folder(&self, source: &str) -> PathBuf {
        self.dir
            .join(format!("{:032x}", super::hash_key(source.as_bytes())))
    }

    pub(super) fn path(&self, source: &str, id: u32) -> PathBuf {
        self.folder(source).join(format!("{id:08x}.run"))
    }

    /// Where key log `id` of `source` lies ([`super::log`]).
    pub(super) fn log_path(&self, source: &str, id: u32) -> PathBuf {
        self.folder(source).join(format!("{id:08x}.log"))
    }

    /// Makes the folder of `source` if it is missing; returns the folders whose entries
    /// must be made durable with the first file written there: the source's, and those
    /// made for it.
    pub(super) fn make_folder(&self, source: &str) -> Result<Vec<PathBuf>> {
        let folder = self.folder(source);
        let mut dirs = vec![folder.clone()];
        if !folder.is_dir() {
            // Made now: their own names must last too.
            dirs.extend(folder.ancestors().skip(1).take(2).map(Path::to_path_buf));
            std::fs::create_dir_all(&folder).map_err(|e| io_error(&folder, "making", e))?;
        }
        Ok(dirs)
    }

    /// The ids of the run files of `source` there are, with their paths.
    pub(super) fn present(&self, source: &str) -> Result<Vec<(u32, PathBuf)>> {
        self.listed(source, ".run")
    }

    /// The ids of the key logs of `source` there are, with their paths, oldest first.
    pub(super) fn logs(&self, source: &str) -> Result<Vec<(u32, PathBuf)>> {
        let mut logs = self.listed(source, ".log")?;
        logs.sort_unstable();
        Ok(logs)
    }

    /// The files of `source` whose names end with `suffix`, by the id before it.
    fn listed(&self, source: &str, suffix: &str) -> Result<Vec<(u32, PathBuf)>> {
        let folder = self.folder(source);
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&folder, "reading", e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&folder, "reading", e))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(suffix))
                .and_then(|n| u32::from_str_radix(n, 16).ok())
            else {
                continue;
            };
            out.push((id, entry.path()));
        }
        Ok(out)
    }

    /// The files retired so far, taken: to remove once a flush that began after their
    /// retirement has succeeded.
    pub fn take_retired(&self) -> Vec<PathBuf> {
        match self.retired.lock() {
            Ok(mut r) => std::mem::take(&mut *r),
            Err(_) => Vec::new(),
        }
    }

    /// Removes every file of `source` after the next flush of the store (its state was
    /// reset: the removal of its meta is durable then).
    pub fn retire_source(&self, source: &str) -> Result<()> {
        for (_, path) in self.present(source)?.into_iter().chain(self.logs(source)?) {
            self.retire(path);
        }
        Ok(())
    }

    /// Removes `path` after the next flush of the store.
    pub fn retire(&self, path: PathBuf) {
        if let Ok(mut retired) = self.retired.lock() {
            retired.push(path);
        }
    }
}

/// Removes the files retired before a flush that has since succeeded.
pub fn remove_retired(paths: Vec<PathBuf>) {
    for path in paths {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "could not remove a key run that is no longer used"
            ),
        }
    }
}

pub(super) fn io_error(path: &Path, doing: &str, e: std::io::Error) -> StateError {
    StateError::Io(format!("{doing} `{}`: {e}", path.display()))
}

/// A run's file: where it is and where its chunks start.
pub(super) struct RunFile {
    path: PathBuf,
    /// Where each chunk's length lies, and last where the chunks end.
    offsets: Vec<u64>,
}

impl RunFile {
    /// Opens a run's file and reads it whole once, giving each chunk to `each`.
    pub(super) fn open(
        path: PathBuf,
        mut each: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<RunFile> {
        let what = || format!("the key run `{}`", path.display());
        let damaged = |reason: &str| StateError::Damaged {
            what: what(),
            reason: reason.to_string(),
        };
        let file = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => damaged("its file is missing"),
            _ => io_error(&path, "opening", e),
        })?;
        let mut reader = BufReader::with_capacity(64 * 1024, &file);
        let cut = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => damaged("its file is cut short"),
            _ => io_error(&path, "reading", e),
        };
        let mut magic = [0u8; 8];
        reader.read_exact(&mut magic).map_err(cut)?;
        if &magic != MAGIC {
            return Err(damaged("its file does not begin as a run's"));
        }
        let mut offsets = Vec::new();
        let mut at = MAGIC.len() as u64;
        let mut chunk = Vec::new();
        loop {
            let mut len = [0u8; 4];
            reader.read_exact(&mut len).map_err(cut)?;
            offsets.push(at);
            let len = u32::from_be_bytes(len);
            if len == 0 {
                break;
            }
            chunk.resize(len as usize, 0);
            reader.read_exact(&mut chunk).map_err(cut)?;
            each(&chunk)?;
            at += 4 + u64::from(len);
        }
        let mut count = [0u8; 8];
        reader.read_exact(&mut count).map_err(cut)?;
        if u64::from_be_bytes(count) != offsets.len() as u64 - 1 {
            return Err(damaged("its chunk count is not what it holds"));
        }
        if reader.read(&mut [0u8; 1]).map_err(cut)? != 0 {
            return Err(damaged("it goes on past its end"));
        }
        drop(reader);
        Ok(RunFile { path, offsets })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// How many chunks it holds.
    pub(super) fn chunks(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// The file, opened for reads of many chunks (a merge, a dump).
    pub(super) fn open_for_reads(&self) -> Result<File> {
        File::open(&self.path).map_err(|e| io_error(&self.path, "opening", e))
    }

    /// The bytes of chunk `at`: one positioned read, from `file` when it is open, else
    /// from the file opened for this read alone.
    pub(super) fn read(&self, file: Option<&File>, at: usize) -> Result<Vec<u8>> {
        let (Some(start), Some(end)) = (self.offsets.get(at), self.offsets.get(at + 1)) else {
            return Ok(Vec::new());
        };
        let start = start + 4;
        let mut out = vec![0u8; end.saturating_sub(start) as usize];
        let opened;
        let file = match file {
            Some(f) => f,
            None => {
                opened = self.open_for_reads()?;
                &opened
            }
        };
        read_at(file, &mut out, start).map_err(|e| io_error(&self.path, "reading", e))?;
        Ok(out)
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, at)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut at: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, buf, at)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                at += n as u64;
            }
        }
    }
    Ok(())
}

/// A run's file being written, chunk by chunk.
pub(super) struct FileWriter {
    out: BufWriter<File>,
    path: PathBuf,
    /// The folders whose entries must be made durable: the source's, and those made
    /// for it.
    dirs: Vec<PathBuf>,
    at: u64,
    offsets: Vec<u64>,
}

impl FileWriter {
    pub(super) fn create(files: &RunFiles, source: &str, id: u32) -> Result<FileWriter> {
        let path = files.path(source, id);
        let fail = |e| io_error(&path, "writing", e);
        let dirs = files.make_folder(source)?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(fail)?;
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        out.write_all(MAGIC).map_err(fail)?;
        Ok(FileWriter {
            out,
            dirs,
            path,
            at: MAGIC.len() as u64,
            offsets: Vec::new(),
        })
    }

    pub(super) fn chunk(&mut self, bytes: &[u8]) -> Result<()> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| StateError::Io("a key run's chunk is past 4 GiB".into()))?;
        let fail = |e| io_error(&self.path, "writing", e);
        self.out.write_all(&len.to_be_bytes()).map_err(fail)?;
        self.out.write_all(bytes).map_err(fail)?;
        self.offsets.push(self.at);
        self.at += 4 + u64::from(len);
        Ok(())
    }

    /// Ends the file and makes it durable, with its name in its folder.
    pub(super) fn finish(mut self) -> Result<RunFile> {
        let fail = |e| io_error(&self.path, "writing", e);
        let chunks = self.offsets.len() as u64;
        self.offsets.push(self.at);
        self.out.write_all(&0u32.to_be_bytes()).map_err(fail)?;
        self.out.write_all(&chunks.to_be_bytes()).map_err(fail)?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| io_error(&self.path, "writing", e.into_error()))?;
        file.sync_all()
            .map_err(|e| io_error(&self.path, "syncing", e))?;
        drop(file);
        for dir in &self.dirs {
            sync_dir(dir)?;
        }
        Ok(RunFile {
            path: self.path,
            offsets: self.offsets,
        })
    }
}

/// Makes a folder's entries durable.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error(dir, "syncing", e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
