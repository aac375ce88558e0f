//! The `hamstr` binary: parses arguments, hands each command to [`hamstr::app`], and
//! turns how it ended into an exit code, here and nowhere else.

mod cli;

/// sled and record extraction allocate a lot from several threads; glibc's allocator
/// spends much of that time on its arena locks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use cli::{Cli, Command};
use hamstr::app::{self, Console, Error, Outcome};
use std::process::ExitCode;

fn main() -> ExitCode {
    #[cfg(not(target_os = "linux"))]
    tune_allocator();
    let code = match Cli::try_parse().map_err(Error::from).and_then(command) {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            e.report();
            e.exit_code()
        }
    };
    ExitCode::from(code)
}

fn command(cli: Cli) -> Result<Outcome, Error> {
    if let Command::Run {
        log_format: app::LogFormat::Json,
        ..
    } = cli.command
    {
        hamstr::logs::set_json();
    }
    let live = matches!(cli.command, Command::Run { .. } | Command::Demo { .. });
    let console = if matches!(
        cli.command,
        Command::Try { .. } | Command::Test { .. } | Command::Lsp
    ) {
        Console::start_quiet()
    } else {
        Console::start(live)
    };
    match cli.command {
        Command::Check {
            file,
            format,
            cluster,
        } => {
            let mode = if cluster {
                hamstr::check::Mode::Cluster
            } else {
                hamstr::check::Mode::Single
            };
            app::check(&file, format, mode, console)
        }
        Command::Run {
            file,
            once,
            no_watch,
            data_dir,
            record,
            replay,
            cluster,
            lease,
            listen,
            log_format: _,
        } => {
            let cluster = cluster_args(cluster, lease);
            let exchanges = match (record, replay) {
                (Some(dir), _) => app::Exchanges::Record(dir),
                (None, Some(dir)) => app::Exchanges::Replay(dir),
                (None, None) => app::Exchanges::Live,
            };
            app::run(
                &file,
                once,
                !no_watch,
                data_dir.as_deref(),
                &exchanges,
                cluster.as_ref(),
                listen.as_deref(),
                console,
            )
        }
        Command::Try {
            file,
            source,
            pages,
            tenant,
            format,
            data_dir,
        } => {
            let args = app::TryArgs {
                source,
                pages,
                tenant,
                format,
                data_dir,
            };
            app::try_source(&file, &args, console)
        }
        Command::Test { file, update } => app::test(&file, update, console),
        Command::Dump {
            file,
            name,
            format,
            rejected,
            tenant,
            data_dir,
        } => {
            let name = match tenant {
                Some(t) => hamstr::check::tenants::unit_name(&name, &t),
                None => name,
            };
            app::dump(&file, name, format, rejected, data_dir.as_deref(), console)
        }
        Command::State {
            file,
            reset,
            data_dir,
            cluster,
            lease,
        } => {
            let cluster = cluster_args(cluster, lease);
            app::state(&file, reset, data_dir.as_deref(), cluster.as_ref(), console)
        }
        Command::Graph { file, format } => app::graph(&file, format, console),
        Command::Fmt { file, check } => app::fmt(&file, check, console),
        Command::Completions { shell } => completions(shell),
        Command::Lsp => app::lsp(),
        Command::Demo {
            port,
            data_dir,
            seconds,
        } => app::demo::run(port, data_dir, seconds),
    }
}

/// `--cluster URL`, else a non-empty `HAMSTR_CLUSTER`.
fn cluster_args(url: Option<String>, lease: std::time::Duration) -> Option<app::ClusterArgs> {
    url.or_else(|| {
        std::env::var("HAMSTR_CLUSTER")
            .ok()
            .filter(|u| !u.is_empty())
    })
    .map(|url| app::ClusterArgs { url, lease })
}

/// `hamstr completions SHELL`: the script, from the same definitions clap parses with.
fn completions(shell: clap_complete::Shell) -> Result<Outcome, Error> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "hamstr", &mut script);
    app::print_stdout(&String::from_utf8_lossy(&script))?;
    Ok(Outcome::Success)
}

/// hamstr prefers a small resident size to mimalloc's defaults: arenas committed as they
/// are used, and freed memory returned to the system after 5 ms instead of a second.
/// `mi_option_set_default` leaves alone an option the user set in the environment
/// (`MIMALLOC_ARENA_EAGER_COMMIT`, `MIMALLOC_PURGE_DELAY`), whenever mimalloc reads it.
extern "C" fn tune_allocator() {
    for (option, value) in [(ARENA_EAGER_COMMIT, 0), (PURGE_DELAY, 5)] {
        // SAFETY: a store into mimalloc's option table, made before any thread exists
        // (the option functions are not thread safe); it allocates nothing.
        unsafe { libmimalloc_sys::mi_option_set_default(option, value) };
    }
}

/// The first allocation, in the runtime before `main`, reserves mimalloc's first arena
/// (1 GiB) under the options of that moment; set in `main`, eager commit would stay on for
/// the arena that serves almost everything (about 25 MiB more resident for `demo`). The
/// loader calls the functions in `.init_array` before the runtime starts.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static TUNE_ALLOCATOR_AT_LOAD: extern "C" fn() = tune_allocator;

// Options of mimalloc v3 (`mi_option_e` in `mimalloc.h`) that `libmimalloc-sys` does not
// name.
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
