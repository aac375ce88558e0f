//! The pages of keys written since the last fold, as an append-only file of the source's
//! own beside its runs (state version 7), not sled values. Writing a page's entries
//! through sled cost a run of 200,000 keys about 13 % of its CPU (its inserts, its IO
//! threads, and the removals at each fold) and 7 MiB of peak memory; appended to a file
//! a page is one `write` (docs/performance.md).
//!
//! A page is appended before the commit that names its number
//! ([`super::committed_key`]), so what a commit made durable names only pages the file
//! holds; after a crash the pages past the committed number, and a record a crash cut
//! short, are not read. The store syncs the file before each of its flushes
//! ([`KeyIndex::sync_log`](super::KeyIndex::sync_log)); sled also writes on its own
//! between flushes, so a power cut (not a killed process) can lose the last pages of a
//! file whose commit sled kept: their keys are then unknown, and their records collected
//! again, never lost.
//!
//! Each load of the index folds what the files hold into a run and retires them (see
//! [`super::files`]), and the pages after it go to a new file, so a file is only ever
//! appended to by the process that made it. Numbers are unique within a file; a page
//! number in several files (a crash before an older file was removed) is read from the
//! newest.
//!
//! The layout: [`MAGIC`]; then one record per page part: its length (u32, big-endian),
//! the page number (u64), the part (u16), an xxh3 hash of those and the bytes (u64), and
//! the part's bytes as [`super::format`] encodes a page.

use super::files::{io_error, sync_dir, RunFiles};
use super::{Result, StateError};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The first bytes of a key log.
pub(super) const MAGIC: &[u8; 8] = b"hmrlog\x00\x01";
/// A record's length, page number, part and hash.
const HEAD: usize = 4 + 8 + 2 + 8;
/// Key logs kept open between pages, over every source: past it a log is opened for each
/// page (a store of thousands of sources would run out of file descriptors).
const OPEN_MAX: usize = 256;
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// A page part as a log holds it: the page, the part, its bytes.
pub(super) type LoggedPart = (u64, u16, Vec<u8>);

/// The log a source's pages are appended to.
pub(super) struct KeyLog {
    path: PathBuf,
    /// Open while fewer than [`OPEN_MAX`] are; counted in [`OPEN`] then.
    file: Option<File>,
    /// Written since the last sync.
    dirty: bool,
    /// The folders whose entries must be made durable at the first sync: the source's,
    /// and those made for it.
    dirs: Vec<PathBuf>,
    buf: Vec<u8>,
}

impl KeyLog {
    /// Makes a new, empty log `id` of `source`.
    pub(super) fn create(files: &RunFiles, source: &str, id: u32) -> Result<KeyLog> {
        let dirs = files.make_folder(source)?;
        let path = files.log_path(source, id);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_error(&path, "making", e))?;
        file.set_len(0)
            .and_then(|()| file.write_all(MAGIC))
            .map_err(|e| io_error(&path, "writing", e))?;
        let mut log = KeyLog {
            path,
            file: None,
            dirty: true,
            dirs,
            buf: Vec::new(),
        };
        log.keep(file);
        Ok(log)
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps `file` open if few logs are.
    fn keep(&mut self, file: File) {
        let kept = OPEN
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < OPEN_MAX).then_some(n + 1)
            })
            .is_ok();
        if kept {
            self.file = Some(file);
        }
    }

    /// Appends a page's parts in one write.
    pub(super) fn append<'a>(
        &mut self,
        seq: u64,
        parts: impl Iterator<Item = &'a [u8]> + Clone,
    ) -> Result<()> {
        let room = parts
            .clone()
            .fold(0usize, |n, p| n.saturating_add(HEAD + p.len()));
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.reserve(room);
        for (part, bytes) in parts.enumerate() {
            let part = u16::try_from(part).unwrap_or(u16::MAX);
            let len = u32::try_from(bytes.len())
                .map_err(|_| StateError::Io("a page of keys is past 4 GiB".into()))?;
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(&seq.to_be_bytes());
            buf.extend_from_slice(&part.to_be_bytes());
            buf.extend_from_slice(&check(seq, part, bytes).to_be_bytes());
            buf.extend_from_slice(bytes);
        }
        let path = &self.path;
        let written = match &mut self.file {
            Some(f) => f.write_all(&buf).map_err(|e| io_error(path, "writing", e)),
            None => open_append(path)
                .and_then(|mut f| f.write_all(&buf).map_err(|e| io_error(path, "writing", e))),
        };
        // A page's room is kept for the next (pages are alike), unless it grew large.
        if buf.capacity() <= 1 << 20 {
            self.buf = buf;
        }
        written?;
        self.dirty = true;
        Ok(())
    }

    /// Makes what was appended durable (with the file's name, the first time).
    pub(super) fn sync(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let synced = match &self.file {
            Some(f) => f.sync_data(),
            None => open_append(&self.path)?.sync_data(),
        };
        synced.map_err(|e| io_error(&self.path, "syncing", e))?;
        for dir in std::mem::take(&mut self.dirs) {
            sync_dir(&dir)?;
        }
        self.dirty = false;
        Ok(())
    }
}

impl Drop for KeyLog {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            OPEN.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn open_append(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| io_error(path, "opening", e))
}

fn check(seq: u64, part: u16, bytes: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&seq.to_be_bytes());
    h.update(&part.to_be_bytes());
    h.update(bytes);
    h.digest()
}

/// The page parts a log holds, in the order they were written, up to the first record
/// that is cut short or does not match its hash (what a crash left half-written).
pub(super) fn read(path: &Path) -> Result<Vec<LoggedPart>> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, "reading", e))?;
    let Some(mut rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        // A log whose first write a crash cut short holds nothing.
        if MAGIC.starts_with(&bytes) {
            return Ok(Vec::new());
        }
        return Err(StateError::Damaged {
            what: format!("the key log `{}`", path.display()),
            reason: "it does not begin as a key log's".into(),
        });
    };
    let mut out = Vec::new();
    while rest.len() >= HEAD {
        let (head, body) = rest.split_at(HEAD);
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let seq = u64::from_be_bytes(head[4..12].try_into().unwrap_or_default());
        let part = u16::from_be_bytes([head[12], head[13]]);
        let sum = u64::from_be_bytes(head[14..22].try_into().unwrap_or_default());
        let Some(part_bytes) = body.get(..len) else {
            break;
        };
        if check(seq, part, part_bytes) != sum {
            break;
        }
        out.push((seq, part, part_bytes.to_vec()));
        rest = &body[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_in(dir: &Path) -> (RunFiles, KeyLog) {
        let files = RunFiles::new(dir.join("runs"));
        let log = KeyLog::create(&files, "s", 3).unwrap();
        (files, log)
    }

    #[test]
    fn pages_are_read_back_as_they_were_appended() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut log) = log_in(dir.path());
        log.append(1, [b"ab".as_slice(), b"cde"].into_iter())
            .unwrap();
        log.append(2, [b"".as_slice()].into_iter()).unwrap();
        log.sync().unwrap();
        assert_eq!(
            read(log.path()).unwrap(),
            vec![
                (1, 0, b"ab".to_vec()),
                (1, 1, b"cde".to_vec()),
                (2, 0, Vec::new())
            ]
        );
    }

    /// What a crash leaves: a record cut anywhere, or bytes that never were written
    /// (zeros from a power cut), ends the log there; what came before is read.
    #[test]
    fn a_log_is_read_up_to_a_record_cut_short_or_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut log) = log_in(dir.path());
        log.append(1, [b"first".as_slice()].into_iter()).unwrap();
        log.append(2, [b"second".as_slice()].into_iter()).unwrap();
        let path = log.path().to_path_buf();
        drop(log);
        let whole = std::fs::read(&path).unwrap();
        let first_end = MAGIC.len() + HEAD + 5;
        for cut in first_end..whole.len() {
            std::fs::write(&path, &whole[..cut]).unwrap();
            assert_eq!(
                read(&path).unwrap(),
                vec![(1, 0, b"first".to_vec())],
                "{cut}"
            );
        }
        let mut zeroed = whole.clone();
        zeroed[first_end + HEAD..].fill(0);
        std::fs::write(&path, &zeroed).unwrap();
        assert_eq!(read(&path).unwrap().len(), 1);
        let mut flipped = whole.clone();
        *flipped.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert_eq!(read(&path).unwrap().len(), 1);
        for cut in 0..MAGIC.len() {
            std::fs::write(&path, &whole[..cut]).unwrap();
            assert!(read(&path).unwrap().is_empty());
        }
        std::fs::write(&path, b"not a log at all").unwrap();
        assert!(matches!(read(&path), Err(StateError::Damaged { .. })));
    }

    #[test]
    fn a_log_past_the_open_limit_is_opened_for_each_page() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut log) = log_in(dir.path());
        // As if every slot were taken when it was made.
        if log.file.take().is_some() {
            OPEN.fetch_sub(1, Ordering::SeqCst);
        }
        log.append(7, [b"x".as_slice()].into_iter()).unwrap();
        log.sync().unwrap();
        assert_eq!(read(log.path()).unwrap(), vec![(7, 0, b"x".to_vec())]);
    }
}
