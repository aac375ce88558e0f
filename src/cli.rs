//! Command-line arguments (clap).

use clap::{Parser, Subcommand};
use hamstr::app::{CheckFormat, DumpFormat, GraphFormat, LogFormat, TryFormat};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "hamstr",
    version,
    about = "Gather data from many HTTP APIs into one store"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Report every error and warning in a pipeline file
    Check {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = CheckFormat::Human)]
        format: CheckFormat,
        /// Check for a run with `--cluster`: state kept on one machine (`sled` sinks,
        /// aggregates) is an error
        #[arg(long)]
        cluster: bool,
    },
    /// Run a pipeline: poll its sources on their schedules into its sinks
    Run {
        file: PathBuf,
        /// Run every scheduled source one full time, deliver everything, and exit
        #[arg(long)]
        once: bool,
        /// Do not reload the pipeline when the file changes
        #[arg(long)]
        no_watch: bool,
        /// Where state and sled sinks live (default: .hamstr/ beside the file)
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Write every HTTP exchange of the services to DIR, one readable file each,
        /// secrets masked (DIR is created)
        #[arg(long, value_name = "DIR", conflicts_with = "replay")]
        record: Option<PathBuf>,
        /// Answer the services' requests from the exchanges recorded in DIR, without
        /// any network
        #[arg(long, value_name = "DIR")]
        replay: Option<PathBuf>,
        /// Run as one instance of a cluster sharing the pipeline through this PostgreSQL
        /// database (default: the HAMSTR_CLUSTER environment variable)
        #[arg(long, value_name = "URL")]
        cluster: Option<String>,
        /// The cluster's lease period: a dead instance's units are taken over after it
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_lease)]
        lease: std::time::Duration,
        /// The address of hamstr's HTTP listener (events, /health, /metrics), over the
        /// pipeline's `server { listen }` (default 127.0.0.1:8787)
        #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
        listen: Option<String>,
        /// How messages are written on stderr: text, or one JSON object a line
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Run one source for a few pages and show what a run would make of them, touching
    /// no state and no sink: requests, answers, records, rejections, the next request,
    /// and fields null in every item
    Try {
        file: PathBuf,
        source: String,
        /// How many pages to follow
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        pages: u64,
        /// The tenant to try the source for (a source of a service for tenants)
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value_t = TryFormat::Human)]
        format: TryFormat,
        /// Where a run keeps its state (default: .hamstr/ beside the file): `try` reads
        /// and keeps a rotated OAuth2 refresh token there, and touches nothing else
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run the pipeline's offline tests: each recording in tests/NAME/recording/ beside
    /// it, replayed into a fresh data directory, against tests/NAME/expected/SINK.jsonl
    Test {
        file: PathBuf,
        /// Write the expected files from what the sinks receive
        #[arg(long)]
        update: bool,
    },
    /// Print what a sled sink, an aggregate or a source holds (a source: its keys; with --rejected, its rejected records)
    Dump {
        file: PathBuf,
        name: String,
        #[arg(long, value_enum, default_value_t = DumpFormat::Jsonl)]
        format: DumpFormat,
        /// The rejected records of source NAME
        #[arg(long)]
        rejected: bool,
        /// The tenant whose source NAME to read (the unit `NAME[TENANT]`)
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Per source: watermark, records seen, last run, last error
    State {
        file: PathBuf,
        /// Forget everything about this source (it collects from scratch next run)
        #[arg(long)]
        reset: Option<String>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The instances and each unit's owner, epoch, lease expiry and state, from this
        /// cluster database (default: the HAMSTR_CLUSTER environment variable)
        #[arg(long, value_name = "URL")]
        cluster: Option<String>,
        /// The lease period the instances run with (who counts as live)
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_lease)]
        lease: std::time::Duration,
    },
    /// Print the compiled dataflow graph
    Graph {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Rewrite a pipeline file in canonical layout, keeping its comments
    Fmt {
        file: PathBuf,
        /// Write nothing; exit 1 and print a diff when the file is not canonical
        #[arg(long)]
        check: bool,
    },
    /// The language server, on standard input and output, for editors
    Lsp,
    /// Print a completion script for a shell (bash, zsh, fish, powershell, elvish)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Start the bundled demo restaurant API and collect from it
    Demo {
        /// Port of the demo API on 127.0.0.1
        #[arg(long, default_value_t = 8700)]
        port: u16,
        /// Where the demo keeps its data (default: a fresh temporary folder)
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Stop after this many seconds (default: run until Ctrl-C)
        #[arg(long)]
        seconds: Option<u64>,
    },
}

/// `--lease`: a duration of at least a second.
fn parse_lease(text: &str) -> Result<std::time::Duration, String> {
    hamstr::app::ClusterArgs::parse_lease(text)
}

/// `--listen ADDR`: an IP address and a port.
fn parse_listen(text: &str) -> Result<String, String> {
    text.parse::<std::net::SocketAddr>()
        .map(|_| text.to_string())
        .map_err(|_| format!("`{text}` is not an IP address and port like 127.0.0.1:8787"))
}
