//! Reading and checking a pipeline file: `hamstr check`, and the loading every other
//! command starts with; where the data directory is, and opening its store.

use super::{Console, Error, Outcome};
use crate::check::{self, Pipeline};
use crate::state::{SledStore, StateStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// `hamstr check`: every error and warning at once.
pub fn check(file: &Path, format: CheckFormat, console: Console) -> Result<Outcome, Error> {
    let text = read_pipeline(file)?;
    let checked = check::check(&file.display().to_string(), &text, &env);
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

/// Reads a pipeline file as UTF-8 text, with an error a person can act on.
pub(super) fn read_pipeline(path: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Io(format!("cannot read `{}`: {e}", path.display())))?;
    String::from_utf8(bytes).map_err(|e| {
        Error::Io(format!(
            "`{}` is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
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
    let checked = check::check(&path.display().to_string(), text, &env);
    let Some(pipeline) = checked.pipeline else {
        return Err(Error::Pipeline(checked.report.render(console.color, 100)));
    };
    if checked.report.warnings() > 0 {
        eprint!("{}", checked.report.render(console.color, 100));
    }
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(Loaded { pipeline, base_dir })
}

/// The data directory: `--data-dir`, else `.hamstr/` beside the pipeline file.
pub(super) fn data_dir(loaded: &Loaded, given: Option<&Path>) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .unwrap_or_else(|| loaded.base_dir.join(".hamstr"))
}

/// Opens (creating it if need be) the store of a data directory, for a run.
pub fn open_store(dir: &Path) -> Result<Arc<dyn StateStore>, Error> {
    Ok(Arc::new(SledStore::open(dir)?))
}
