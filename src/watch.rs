//! File events to a debounced "reload" signal. The parent directory is watched and
//! events are filtered by file name, since editors save by writing a new file and
//! renaming it over the old one, which silences a watch on the file itself.

use notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long events are gathered before one reload is signalled.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Keeps the watch alive; dropping it stops watching.
pub struct Watch {
    _debouncer: Box<dyn std::any::Any + Send>,
}

/// Sends `()` on `tx` after the file at `path` was written or replaced.
pub fn watch_file(path: &Path, tx: mpsc::Sender<()>) -> Result<Watch, String> {
    watch_files(&[path.to_path_buf()], tx)
}

/// Sends `()` on `tx` after any of `paths` (a pipeline and the tenants files it reads)
/// was written or replaced. Each file's folder is watched once.
pub fn watch_files(paths: &[PathBuf], tx: mpsc::Sender<()>) -> Result<Watch, String> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for path in paths {
        let file = std::fs::canonicalize(path)
            .map_err(|e| format!("cannot watch `{}`: {e}", path.display()))?;
        let dir = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
        files.push(file);
    }
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |res: DebounceEventResult| {
        let Ok(events) = res else { return };
        let ours = events.iter().any(|e| {
            !e.kind.is_access()
                && e.paths.iter().any(|p| {
                    files.iter().any(|f| {
                        p.file_name() == f.file_name()
                            && p.parent()
                                .and_then(|d| std::fs::canonicalize(d).ok())
                                .as_deref()
                                == f.parent()
                    })
                })
        });
        if ours {
            let _ = tx.try_send(());
        }
    })
    .map_err(|e| format!("cannot watch: {e}"))?;
    for dir in &dirs {
        debouncer
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch `{}`: {e}", dir.display()))?;
    }
    Ok(Watch {
        _debouncer: Box::new(debouncer),
    })
}
