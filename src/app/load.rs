//! Reading and checking a pipeline file: `hamstr check`, and the loading every other
//! command starts with; where the data directory is, and opening its store.

use super::{Console, Error, Outcome};
use crate::check::{self, Pipeline};
use crate::state::{SledStore, StateError, StateStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How `check` reports: rendered diagnostics on stderr, or one JSON object on stdout.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckFormat {
    Human,
    Json,
}

/// A checked pipeline and where it lives.
pub struct Loaded {
    pub pipeline: Pipeline,
    pub base_dir: PathBuf,
}

/// `hamstr check`: every error and warning at once; with `mode` cluster, also what
/// cannot be shared by a cluster's instances.
pub fn check(
    file: &Path,
    format: CheckFormat,
    mode: check::Mode,
    console: Console,
) -> Result<Outcome, Error> {
    let text = read_pipeline(file)?;
    let checked = check_file(file, &text, mode);
    let report = &checked.report;
    match format {
        CheckFormat::Json => super::print_stdout(&format!("{}\n", report.to_json()))?,
        CheckFormat::Human => eprint!("{}", report.render(console.color, 100)),
    }
    Ok(if report.errors() > 0 {
        Outcome::Failure
    } else {
        Outcome::Success
    })
}

/// Reads a pipeline file as UTF-8 text, with an error a person can act on. Only a
/// regular file is read: a FIFO would block until someone writes to it (hanging `check`,
/// or a reload), and a device can be endless. The file is opened without blocking and
/// judged by what was opened, so a file swapped for a FIFO after a look is refused too.
pub(super) fn read_pipeline(path: &Path) -> Result<String, Error> {
    use std::io::Read;
    let cannot = |e: std::io::Error| Error::Io(format!("cannot read `{}`: {e}", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Opening a FIFO for reading waits for a writer unless asked not to; on a
        // regular file the flag changes nothing.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let mut file = options.open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(Error::Io(format!(
            "cannot read `{}`: it is {}, not a regular file",
            path.display(),
            file_kind(&meta.file_type())
        )));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(cannot)?;
    String::from_utf8(bytes).map_err(|e| {
        Error::Io(format!(
            "`{}` is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// What a file that is not a regular file is, for an error message.
fn file_kind(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    if t.is_dir() {
        "a folder"
    } else {
        "a special file"
    }
}

/// Checks the text of the pipeline file at `path`, with the environment and the files
/// it names (a tenants file), read beside it.
pub(super) fn check_file(path: &Path, text: &str, mode: check::Mode) -> check::Checked {
    let dir = base_dir(path);
    let files = |name: &str| read_beside(&dir, name);
    check::check_with(&path.display().to_string(), text, &env, &files, mode)
}

/// A file a pipeline names, by its path relative to the pipeline's folder (or absolute).
pub(super) fn read_beside(dir: &Path, name: &str) -> Result<String, String> {
    read_pipeline(&dir.join(name)).map_err(|e| match e {
        Error::Io(m) => m,
        other => other.to_string(),
    })
}

/// The folder a pipeline file's relative paths start from.
pub(super) fn base_dir(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The environment the pipeline's `env(..)` reads.
pub(super) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads and checks a pipeline; warnings go to stderr, errors end it.
pub(super) fn load(path: &Path, console: Console) -> Result<Loaded, Error> {
    let text = read_pipeline(path)?;
    load_text(path, &text, console)
}

/// Checks `text` read from `path`.
pub(super) fn load_text(path: &Path, text: &str, console: Console) -> Result<Loaded, Error> {
    load_text_for(path, text, check::Mode::Single, console)
}

/// Checks `text` read from `path` for a run in `mode`.
pub(super) fn load_text_for(
    path: &Path,
    text: &str,
    mode: check::Mode,
    console: Console,
) -> Result<Loaded, Error> {
    let checked = check_file(path, text, mode);
    if crate::logs::json() && !checked.report.diagnostics.is_empty() {
        // One log event per diagnostic; the error then has nothing left to show.
        crate::logs::diagnostics(&checked.report.to_json());
        if checked.pipeline.is_none() {
            return Err(Error::Pipeline(String::new()));
        }
    }
    let Some(pipeline) = checked.pipeline else {
        return Err(Error::Pipeline(checked.report.render(console.color, 100)));
    };
    if checked.report.warnings() > 0 && !crate::logs::json() {
        eprint!("{}", checked.report.render(console.color, 100));
    }
    Ok(Loaded {
        pipeline,
        base_dir: base_dir(path),
    })
}

/// The data directory: `--data-dir`, else `.hamstr/` beside the pipeline file.
pub(super) fn data_dir(loaded: &Loaded, given: Option<&Path>) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .unwrap_or_else(|| loaded.base_dir.join(".hamstr"))
}

/// How long `run` waits for a `dump` or `state` holding the store to let go of it.
const READERS_WAIT: Duration = Duration::from_secs(30);

/// Opens the store of a data directory for a run, creating the directory (0700) if
/// need be. A store held while no run answers on its socket is held by a `dump` or
/// `state`, which let go once they have read it: that is waited for, a run is not.
pub fn open_store(dir: &Path) -> Result<Arc<dyn StateStore>, Error> {
    make_private_dir(dir);
    let deadline = Instant::now() + READERS_WAIT;
    let mut told = false;
    loop {
        match SledStore::open(dir) {
            Ok(store) => return Ok(Arc::new(store)),
            Err(StateError::Locked { path }) => {
                if super::control::serving(dir) {
                    return Err(Error::Locked { path, then: "" });
                }
                if Instant::now() >= deadline {
                    return Err(Error::Locked {
                        path,
                        then: ", or by a `dump` or `state` that did not let go of it in 30 seconds",
                    });
                }
                if !told {
                    tracing::info!(data_dir = %dir.display(), "waiting for a `dump` or `state` reading the data directory");
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Creates a missing data directory readable by its user only (its parents as the
/// umask says). A failure is left for the store to report as it opens.
pub(super) fn make_private_dir(dir: &Path) {
    if dir.exists() {
        return;
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(parent);
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    let _ = builder.create(dir);
}
