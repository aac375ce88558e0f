//! The files of a store on disk: the lock sled takes, the unfinished snapshot a killed
//! run can leave, and which file a path names (to notice a folder removed or replaced).

use super::{Result, StateError};
use std::path::Path;

/// Removes the snapshot files sled was still writing when its process died.
///
/// sled 0.34 writes a snapshot to `snap.<lsn>.generating`, syncs it, then renames it to
/// `snap.<lsn>`; but on open it reads the newest `snap.*` file, `.generating` ones
/// included, so a process killed while writing one (sled writes a snapshot each time it
/// opens a store that has grown) leaves a store that refuses to open with "Read corrupted
/// data" (spacejam/sled#1527). An unfinished snapshot holds nothing the log does not:
/// without it sled recovers from the previous snapshot and replays the log from there.
/// The files are removed only under the lock sled itself takes on `db`, so never while
/// another process is writing one.
pub(super) fn clear_unfinished_snapshots(path: &Path, shown: &str) -> Result<()> {
    let failed = |e: std::io::Error| StateError::Open {
        path: shown.to_string(),
        reason: e.to_string(),
    };
    let db = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.join("db"))
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(failed(e)),
    };
    // sled's own threads let go of the lock a moment after a store is dropped (its
    // flusher wakes every 200 ms): a store this process just closed is not "in use".
    let mut tries = 0;
    loop {
        match db.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked {
                    path: shown.to_string(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(failed(e)),
        }
    }
    for entry in std::fs::read_dir(path).map_err(failed)? {
        let name = entry.map_err(failed)?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!("removing the unfinished sled snapshot `{name}` a killed run left");
            std::fs::remove_file(path.join(&*name)).map_err(failed)?;
        }
    }
    Ok(())
}

/// Whether another process holds the lock sled takes on a store's `db` file.
pub(super) fn is_locked(path: &Path) -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.join("db"))
        .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
}

/// Which file a path names: its device and inode (where there are such things).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId(u64, u64);

pub(super) fn file_id(path: &Path) -> std::io::Result<FileId> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(FileId(meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok(FileId(0, 0))
    }
}
