//! The `hamstr` binary: parses arguments, hands each command to the library, and turns
//! the outcome into an exit code.

mod cli;

/// sled and record extraction allocate a lot from several threads; glibc's allocator
/// spends much of that time on its arena locks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use cli::{CheckFormat, Cli, Command, DumpFormat, GraphFormat, Outcome};
use hamstr::commands;
use hamstr::state::StateStore;
use std::io::IsTerminal;
use std::path::Path;

/// mimalloc reads its options from the environment only when the process starts. For
/// the long-running commands hamstr prefers a small resident size (lazily committed
/// arenas, freed memory returned soon) and so starts itself again with them set, unless
/// the user set them.
fn tune_allocator() {
    #[cfg(unix)]
    if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
        use std::os::unix::process::CommandExt;
        if let Ok(exe) = std::env::current_exe() {
            let error = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env("MIMALLOC_ARENA_EAGER_COMMIT", "0")
                .env("MIMALLOC_PURGE_DELAY", "5")
                .exec();
            // `exec` returns only when it failed: go on with the defaults.
            tracing::debug!(error = %error, "could not restart with allocator options");
        }
    }
}

fn main() {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run { .. } | Command::Demo { .. }) {
        tune_allocator();
    }
    // no-color.org: only a NO_COLOR that is set and not empty turns colour off.
    let color = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // On a terminal, `run` shows a live line per source; logs then keep to warnings
    // unless RUST_LOG asks for more.
    let live = matches!(cli.command, Command::Run { .. } | Command::Demo { .. })
        && std::io::stderr().is_terminal()
        && std::env::var_os("RUST_LOG").is_none();
    if live {
        hamstr::runtime::progress::enable();
    }
    init_logs(color, if live { "hamstr=warn" } else { "hamstr=info" });
    let outcome = match cli.command {
        Command::Check { file, format } => check(&file, format, color),
        Command::Run {
            file,
            once,
            no_watch,
            data_dir,
        } => run(&file, once, !no_watch, data_dir.as_deref(), color),
        Command::Dump {
            file,
            name,
            format,
            rejected,
            data_dir,
        } => with_store(
            &file,
            data_dir.as_deref(),
            color,
            hamstr::control::Request::Dump {
                name,
                rejected,
                csv: format == DumpFormat::Csv,
            },
            None,
        ),
        Command::State {
            file,
            reset,
            data_dir,
        } => with_store(
            &file,
            data_dir.as_deref(),
            color,
            hamstr::control::Request::State,
            reset,
        ),
        Command::Graph { file, format } => match commands::load(&file, color) {
            Ok(loaded) => {
                let plan = hamstr::plan::Plan::new(&loaded.pipeline);
                print!(
                    "{}",
                    if format == GraphFormat::Dot {
                        plan.to_dot()
                    } else {
                        plan.to_mermaid()
                    }
                );
                Outcome::Ok
            }
            Err(e) => fail(&e),
        },
        Command::Fmt { file, check } => fmt(&file, check, color),
        Command::Demo {
            port,
            data_dir,
            seconds,
        } => match hamstr::demo_run::demo(port, data_dir, seconds) {
            Ok(()) => Outcome::Ok,
            Err(e) => {
                eprintln!("error: {e}");
                Outcome::Failed
            }
        },
    };
    std::process::exit(outcome.code());
}

fn init_logs(color: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false)
        .try_init();
}

/// Pipeline errors are printed as diagnostics (exit 1); I/O errors are one line (exit 2).
fn fail(e: &str) -> Outcome {
    if e.contains("hamstr::") {
        eprint!("{e}");
        Outcome::Failed
    } else {
        eprintln!("error: {e}");
        Outcome::Usage
    }
}

fn check(file: &Path, format: CheckFormat, color: bool) -> Outcome {
    let text = match hamstr::read_pipeline(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Usage;
        }
    };
    let checked = hamstr::check::check(&file.display().to_string(), &text, &|k| {
        std::env::var(k).ok()
    });
    let report = &checked.report;
    match format {
        CheckFormat::Json => println!("{}", report.to_json()),
        CheckFormat::Human => eprint!("{}", report.render(color, 100)),
    }
    if report.errors() > 0 {
        Outcome::Failed
    } else {
        Outcome::Ok
    }
}

fn fmt(file: &Path, check: bool, color: bool) -> Outcome {
    match commands::fmt(file, check, color) {
        Ok(commands::Fmt::Canonical | commands::Fmt::Rewritten) => Outcome::Ok,
        Ok(commands::Fmt::WouldChange(diff)) => {
            eprintln!("`{}` is not formatted", file.display());
            print!("{diff}");
            Outcome::Failed
        }
        Err(commands::FmtFailure::Pipeline(report)) => {
            eprint!("{report}");
            Outcome::Failed
        }
        Err(commands::FmtFailure::Io(e)) => {
            eprintln!("error: {e}");
            Outcome::Usage
        }
    }
}

fn run(file: &Path, once: bool, watch: bool, data_dir: Option<&Path>, color: bool) -> Outcome {
    let loaded = match commands::load(file, color) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let dir = commands::data_dir(&loaded, data_dir);
    let store = match commands::open_store(&dir) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    match commands::run(file, &loaded, store, &dir, once, watch, color) {
        Ok(report) => {
            if once {
                eprint!("{}", commands::summary(&report));
            }
            if once && report.failed() {
                Outcome::Failed
            } else {
                Outcome::Ok
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            Outcome::Failed
        }
    }
}

/// Runs `req` on the store of the data directory, or asks the run that holds it.
fn with_store(
    file: &Path,
    data_dir: Option<&Path>,
    color: bool,
    req: hamstr::control::Request,
    reset: Option<String>,
) -> Outcome {
    let loaded = match commands::load(file, color) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let dir = commands::data_dir(&loaded, data_dir);
    // Only a folder a run has used holds a store; reading must not create one.
    if !dir.join("state").exists() && !dir.is_file() {
        eprintln!(
            "error: no data directory at `{}`: nothing has run there yet",
            dir.display()
        );
        return Outcome::Usage;
    }
    let result = match hamstr::state::SledStore::open(&dir) {
        Ok(store) => {
            let reset = match reset {
                Some(source) if !loaded.pipeline.sources.contains_key(&source) => Err(format!("no source named `{source}`")),
                Some(source) => store.reset(&source).map(|_| eprintln!("source `{source}` was reset: it collects from scratch on its next run")).map_err(|e| e.to_string()),
                None => Ok(()),
            };
            reset.and_then(|_| commands::answer(&loaded, &store, req))
        }
        Err(hamstr::state::StateError::Locked { .. }) if reset.is_some() => Err("the data directory is in use by a running `hamstr run`: stop it before resetting a source".to_string()),
        Err(hamstr::state::StateError::Locked { .. }) => hamstr::control::ask(&dir, &req),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            Outcome::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            Outcome::Usage
        }
    }
}
