//! The commands over the library: each loads what it needs, calls the stages, prints what
//! it has to say, and ends in an [`Outcome`] or an [`Error`], each with its exit code.
//!
//! Exit codes (spec §9): 0 success; 1 the pipeline has errors, or a command that ran to
//! its end found something wrong (`check` errors, `fmt --check` changes, `run --once` a
//! failed source or records still queued); 2 bad usage or an I/O problem.

mod cluster;
mod control;
pub mod demo;
mod fmt;
mod inspect;
mod load;
mod lsp;
mod run;
mod test_pipeline;
mod try_source;

pub use cluster::ClusterArgs;
pub use fmt::fmt;
pub use inspect::{dump, graph, state, DumpFormat, GraphFormat};
pub use load::{check, open_store, CheckFormat};
pub use lsp::lsp;
pub use run::{run, Exchanges};
pub use test_pipeline::test;
pub use try_source::{try_source, TryArgs, TryFormat};

use std::io::{IsTerminal, Write};

/// How a command that did its work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Outcome {
    /// Everything asked was done.
    Success,
    /// The command ran to its end and has said what is wrong: `check` found errors,
    /// `fmt --check` a file that would change, `run --once` a source that failed or
    /// records still waiting in a sink's queue.
    Failure,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Failure => 1,
        }
    }
}

/// Why a command stopped short.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The arguments do not parse, or help or the version was asked for (clap's own
    /// message, and clap's exit code: 2, or 0 for help).
    #[error("{0}")]
    Args(#[from] clap::Error),
    /// The pipeline file has errors: its diagnostics, rendered as `check` renders them.
    #[error("{0}")]
    Pipeline(String),
    /// `fmt` left a file alone because its canonical form would not mean the same.
    #[error("`{path}` was left as it is: {why}")]
    Unformattable { path: String, why: String },
    /// Arguments that parse but name nothing usable: no such sink or source, a data
    /// directory nothing has run in.
    #[error("{0}")]
    Usage(String),
    /// A file, socket or stream could not be read or written.
    #[error("{0}")]
    Io(String),
    /// Another `hamstr run` holds the data directory.
    #[error("the data directory `{path}` is in use by another `hamstr run`{then}")]
    Locked { path: String, then: &'static str },
    /// The data directory could not be opened or read.
    #[error(transparent)]
    Store(crate::state::StateError),
    /// What the data directory holds could not be turned into records.
    #[error("{0}")]
    Stored(String),
    /// The run holding the data directory could not answer `dump` or `state`; its reason.
    #[error("{0}")]
    Remote(String),
    /// `run` stopped on an error of its own (a full disk, say), not of one source.
    #[error("{0}")]
    RunFailed(String),
    /// Stdout was closed before everything was written (`hamstr dump … | head -1`): the
    /// reader has what it wanted. Not an error of ours, so silent and exit 0.
    #[error("the reader of stdout left")]
    ReaderLeft,
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::ReaderLeft => 0,
            Error::Args(e) => u8::try_from(e.exit_code()).unwrap_or(2),
            Error::Pipeline(_) | Error::Unformattable { .. } | Error::RunFailed(_) => 1,
            Error::Usage(_)
            | Error::Io(_)
            | Error::Locked { .. }
            | Error::Store(_)
            | Error::Stored(_)
            | Error::Remote(_) => 2,
        }
    }

    /// Tells the person on stderr (or, for `--help`, on stdout as clap does).
    pub fn report(&self) {
        match self {
            Error::ReaderLeft => {}
            // clap knows where its help goes; a closed stream leaves nothing to tell.
            Error::Args(e) => {
                let _ = e.print();
            }
            Error::Pipeline(rendered) if crate::logs::json() => {
                crate::logs::say(crate::logs::Level::Error, rendered)
            }
            Error::Pipeline(rendered) => eprint!("{rendered}"),
            other => crate::logs::say(crate::logs::Level::Error, &format!("error: {other}")),
        }
    }
}

impl From<crate::state::StateError> for Error {
    fn from(e: crate::state::StateError) -> Self {
        match e {
            crate::state::StateError::Locked { path } => Error::Locked { path, then: "" },
            other => Error::Store(other),
        }
    }
}

/// Writes `text` to stdout: the one way a command prints its answer. A reader that
/// closed the pipe becomes [`Error::ReaderLeft`] instead of `print!`'s panic.
pub fn print_stdout(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Error::ReaderLeft,
            _ => Error::Io(format!("cannot write to stdout: {e}")),
        })
}

/// How `run` writes its messages on stderr (spec §15).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object a line: `timestamp`, `level`, `message` and the event's fields.
    Json,
}

/// Where a command talks to the person: stderr, in colour or not.
#[derive(Debug, Clone, Copy)]
pub struct Console {
    pub color: bool,
}

impl Console {
    /// Decides colour, and starts the logs on stderr. `live`: the command runs pipelines,
    /// which on a terminal show a live line per source; logs then keep to warnings unless
    /// `RUST_LOG` asks for more.
    pub fn start(live: bool) -> Console {
        Console::start_with(live, false)
    }

    /// For commands that report what runs did themselves (`try`, `test`): logs keep to
    /// warnings unless `RUST_LOG` asks for more.
    pub fn start_quiet() -> Console {
        Console::start_with(false, true)
    }

    fn start_with(live: bool, quiet: bool) -> Console {
        let json = crate::logs::json();
        let terminal = std::io::stderr().is_terminal();
        // no-color.org: only a NO_COLOR that is set and not empty turns colour off.
        let color = !json && terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let live = live && !json && terminal && std::env::var_os("RUST_LOG").is_none();
        if live {
            crate::runtime::progress::enable();
        }
        let default = if live || quiet {
            "hamstr=warn"
        } else {
            "hamstr=info"
        };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
        let logs = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(MaskedLine::default)
            .with_ansi(color)
            .with_target(false);
        let _ = if json {
            // One JSON object a line, the event's fields beside `message`.
            logs.json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .try_init()
        } else {
            logs.try_init()
        };
        Console { color }
    }
}

/// A log line on its way to stderr, written whole once formatted, with every secret
/// the process knows masked: a library logging at `trace` (a signer's parameters, a
/// request's headers) shows none either.
#[derive(Default)]
struct MaskedLine(Vec<u8>);

impl Write for MaskedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for MaskedLine {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let line = crate::masking::mask_log(&String::from_utf8_lossy(&self.0));
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// Makes what this process creates from now on private to its user, whatever the umask
/// (077 is added to it): the data directory and its store, jsonl files, the control
/// socket. Records and state are nobody else's business.
pub(crate) fn private_files() {
    #[cfg(unix)]
    // SAFETY: umask only swaps the process's file mode mask. It is called before any
    // thread that creates files is started, so nothing is created under the
    // intermediate mask.
    unsafe {
        let given = libc::umask(0o077);
        libc::umask(given | 0o077);
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
